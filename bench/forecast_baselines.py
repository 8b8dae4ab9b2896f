#!/usr/bin/env python3
"""Standard forecasters under Headroom's backtest protocol, for a side-by-side comparison with
`headroom forecast backtest`.

Protocol (the same as the Rust command): a `timestamp,value` CSV on a regular grid; horizon one
day of steps; origins every horizon over the last TEST_DAYS days (default 14), each method fit
only on the data before the origin; MASE scaled by the daily seasonal naive MAE over the data
before the first origin; 80 % intervals.

Methods: statsforecast AutoETS (daily season; statsforecast's ETS drops seasons longer than 24
steps, so on 30-minute data it fits a model without one), MSTL (daily and weekly seasons,
AutoETS trend), AutoARIMA (daily season; very slow with long seasons, hence not run by default),
and Prophet (daily and weekly seasonality).

Usage: bench/forecast_baselines.py data/forecast/nyc_taxi.csv [TEST_DAYS [METHOD,...]]
Needs: pip install statsforecast prophet
"""

import logging
import sys
import time
import warnings

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")
logging.getLogger("cmdstanpy").disabled = True
logging.getLogger("prophet").disabled = True


def metrics(actual, yhat, lo, hi, scale):
    actual, yhat, lo, hi = map(np.asarray, (actual, yhat, lo, hi))
    denom = np.abs(actual) + np.abs(yhat)
    smape = np.mean(np.where(denom == 0, 0.0, 200 * np.abs(actual - yhat) / np.where(denom == 0, 1, denom)))
    return {
        "MASE": np.mean(np.abs(actual - yhat)) / scale,
        "sMAPE": smape,
        "coverage 80%": np.mean((lo <= actual) & (actual <= hi)),
        "above p90": np.mean(actual > hi),
    }


def main():
    path = sys.argv[1]
    test_days = int(sys.argv[2]) if len(sys.argv) > 2 else 14
    chosen = sys.argv[3].split(",") if len(sys.argv) > 3 else ["AutoETS", "MSTL", "Prophet"]
    df = pd.read_csv(path, parse_dates=["timestamp"])
    step = df["timestamp"].diff().mode()[0]
    day = int(round(pd.Timedelta("1D") / step))
    week = 7 * day
    y = df["value"].to_numpy(dtype=float)
    n = len(y)
    horizon = day
    count = max(1, min(test_days * day // horizon, (n - 7 * day) // horizon))
    origins = [n - k * horizon for k in range(count, 0, -1)]
    first = origins[0]
    scale = np.mean(np.abs(y[day:first] - y[: first - day]))

    from statsforecast.models import MSTL, AutoARIMA, AutoETS
    from prophet import Prophet

    def sf(model):
        def run(history):
            f = model.forecast(y=history, h=horizon, level=[80])
            return f["mean"], f["lo-80"], f["hi-80"]
        return run

    def prophet(history, origin):
        frame = pd.DataFrame({"ds": df["timestamp"].iloc[:origin], "y": history})
        m = Prophet(daily_seasonality=True, weekly_seasonality=True, yearly_seasonality=False,
                    interval_width=0.8)
        m.fit(frame)
        future = pd.DataFrame({"ds": df["timestamp"].iloc[origin:origin + horizon]})
        f = m.predict(future)
        return f["yhat"].to_numpy(), f["yhat_lower"].to_numpy(), f["yhat_upper"].to_numpy()

    methods = {
        "AutoETS": sf(AutoETS(season_length=day)),
        "MSTL": sf(MSTL(season_length=[day, week], trend_forecaster=AutoETS(model="ZZN"))),
        "AutoARIMA": sf(AutoARIMA(season_length=day)),
        "Prophet": None,
    }
    print(f"{path}: {n} steps, horizon {horizon}, {len(origins)} origins, MASE scale {scale:.3f}")
    print(f"{'method':<12} {'MASE':>7} {'sMAPE':>7} {'coverage 80%':>13} {'above p90':>10} {'s/origin':>9}")
    for name in chosen:
        run = methods[name]
        actual, yhat, lo, hi = [], [], [], []
        started = time.time()
        for origin in origins:
            history = y[:origin]
            if run is None:
                p, l, h = prophet(history, origin)
            else:
                p, l, h = run(history)
            actual.extend(y[origin:origin + horizon])
            yhat.extend(p)
            lo.extend(l)
            hi.extend(h)
        elapsed = (time.time() - started) / len(origins)
        m = metrics(actual, yhat, lo, hi, scale)
        print(f"{name:<12} {m['MASE']:>7.3f} {m['sMAPE']:>7.2f} {m['coverage 80%']:>13.3f} "
              f"{m['above p90']:>10.3f} {elapsed:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
