//! Rolling-origin backtests of the forecaster against seasonal naive baselines.
//!
//! Protocol: the horizon defaults to one day of steps; origins every horizon over the last
//! `test_days` days (fewer when the series is short, always leaving at least 7 days of
//! history); at each origin every method sees only the data before it. MASE is scaled by the
//! seasonal naive (daily lag) mean absolute error over the data before the first origin.
//! The seasonal naive baselines get intervals from their own in-sample errors at the same lag
//! over the 28 days before the origin.

use std::io::Write;
use std::path::Path;

use polars::prelude::*;

use super::features::{Grid, regular_grid};
use super::metrics::{coverage, mase, pinball, seasonal_naive_scale, share_above, smape};
use super::{ForecastError, ForecastOptions, forecast};

/// Reads a `timestamp,value` CSV (timestamps as ISO 8601 date-times, UTC unless they carry an
/// offset) onto its regular grid.
pub fn read_csv(path: &Path) -> Result<Grid, ForecastError> {
    let frame = CsvReadOptions::default()
        .with_has_header(true)
        .map_parse_options(|o| o.with_try_parse_dates(true))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))?
        .finish()
        .map_err(|e| ForecastError::Input(format!("{}: {e}", path.display())))?;
    let column = |name: &str| {
        frame.column(name).map_err(|_| {
            ForecastError::Input(format!(
                "{}: the header must be `timestamp,value`, got {:?}",
                path.display(),
                frame.get_column_names()
            ))
        })
    };
    let timestamps = column("timestamp")?
        .cast(&DataType::Datetime(TimeUnit::Nanoseconds, None))
        .map_err(|e| ForecastError::Input(format!("{}: timestamp: {e}", path.display())))?;
    let timestamps: Vec<Option<i64>> = timestamps
        .datetime()
        .map_err(|e| ForecastError::Input(format!("{}: timestamp: {e}", path.display())))?
        .physical()
        .iter()
        .collect();
    let values: Vec<Option<f64>> = column("value")?
        .cast(&DataType::Float64)?
        .f64()?
        .iter()
        .collect();
    let mut ts = Vec::with_capacity(values.len());
    let mut vs = Vec::with_capacity(values.len());
    for (row, (t, v)) in timestamps.into_iter().zip(values).enumerate() {
        match (t, v) {
            (Some(t), Some(v)) => {
                ts.push(t);
                vs.push(v);
            }
            _ => {
                return Err(ForecastError::Input(format!(
                    "{}: row {} has no timestamp or no number",
                    path.display(),
                    row + 2
                )));
            }
        }
    }
    regular_grid(&ts, &vs)
}

/// One forecast point of the backtest.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub origin: usize,
    pub index: usize,
    pub step: usize,
    pub actual: f64,
    pub yhat: f64,
    pub p10: f64,
    pub p90: f64,
}

/// Accuracy of one method over all origins.
#[derive(Debug, Clone, PartialEq)]
pub struct Accuracy {
    pub method: String,
    pub mase: f64,
    pub smape: f64,
    /// Share of actuals within [p10, p90].
    pub coverage_80: f64,
    pub above_p90: f64,
    /// Pinball loss at 0.9, divided by the MASE scale.
    pub scaled_pinball_90: f64,
}

#[derive(Debug, Clone)]
pub struct Backtest {
    pub horizon: usize,
    pub origins: Vec<usize>,
    pub scale: f64,
    pub points: Vec<Point>,
    /// The forecaster first, then the daily and weekly seasonal naive.
    pub accuracy: Vec<Accuracy>,
    /// Fit and forecast time per origin, in seconds.
    pub fit_seconds: Vec<f64>,
    /// The model chosen at each origin.
    pub models: Vec<String>,
}

/// Seasonal naive with period `m` from the end of `history`, with 10 % and 90 % quantiles of
/// its in-sample errors at the same lag over the last 28 days.
fn naive_with_intervals(history: &[f64], m: usize, horizon: usize, day: usize) -> Vec<[f64; 3]> {
    let n = history.len();
    (1..=horizon)
        .map(|h| {
            let back = m * h.div_ceil(m);
            let point = history[n + h - 1 - back];
            let from = n.saturating_sub(28 * day).max(back);
            let mut errors: Vec<f64> = (from..n).map(|t| history[t] - history[t - back]).collect();
            errors.sort_by(f64::total_cmp);
            let q = |level: f64| super::empirical_quantile(&errors, level);
            [point, (point + q(0.1)).max(0.0), (point + q(0.9)).max(0.0)]
        })
        .collect()
}

fn accuracy(method: &str, points: &[Point], scale: f64) -> Accuracy {
    let actual: Vec<f64> = points.iter().map(|p| p.actual).collect();
    let yhat: Vec<f64> = points.iter().map(|p| p.yhat).collect();
    let p10: Vec<f64> = points.iter().map(|p| p.p10).collect();
    let p90: Vec<f64> = points.iter().map(|p| p.p90).collect();
    Accuracy {
        method: method.to_owned(),
        mase: mase(&actual, &yhat, scale),
        smape: smape(&actual, &yhat),
        coverage_80: coverage(&actual, &p10, &p90),
        above_p90: share_above(&actual, &p90),
        scaled_pinball_90: pinball(&actual, &p90, 0.9) / scale,
    }
}

/// Runs the protocol over `grid`.
pub fn run(
    grid: &Grid,
    horizon: Option<usize>,
    test_days: usize,
) -> Result<Backtest, ForecastError> {
    let season = grid.seasonality();
    let horizon = horizon.unwrap_or(season.day);
    if horizon == 0 || test_days == 0 {
        return Err(ForecastError::Input(
            "the horizon and the test days must be positive".into(),
        ));
    }
    let y = &grid.values;
    let n = y.len();
    let min_history = 7 * season.day;
    if n < min_history + horizon {
        return Err(ForecastError::Input(format!(
            "{n} steps: a backtest needs 7 days of history ({min_history} steps) and one horizon \
             ({horizon} steps)"
        )));
    }
    let count = (test_days * season.day / horizon)
        .min((n - min_history) / horizon)
        .max(1);
    let origins: Vec<usize> = (1..=count).rev().map(|k| n - k * horizon).collect();
    let scale = seasonal_naive_scale(&y[..origins[0]], season.day);
    let options = ForecastOptions {
        horizon,
        quantiles: vec![0.1, 0.9],
    };
    let mut ours = Vec::new();
    let mut naive_day = Vec::new();
    let mut naive_week = Vec::new();
    let mut fit_seconds = Vec::new();
    let mut models = Vec::new();
    for &origin in &origins {
        let history = &y[..origin];
        let f = forecast(history, season, &options)?;
        fit_seconds.push(f.fit_seconds);
        models.push(f.model.clone());
        let p10 = f.quantile(0.1).unwrap_or(&f.yhat).to_vec();
        let p90 = f.quantile(0.9).unwrap_or(&f.yhat).to_vec();
        let day = naive_with_intervals(history, season.day, horizon, season.day);
        let week = naive_with_intervals(history, season.week.min(origin), horizon, season.day);
        for h in 0..horizon {
            let point = |yhat: f64, p10: f64, p90: f64| Point {
                origin,
                index: origin + h,
                step: h + 1,
                actual: y[origin + h],
                yhat,
                p10,
                p90,
            };
            ours.push(point(f.yhat[h], p10[h], p90[h]));
            naive_day.push(point(day[h][0], day[h][1], day[h][2]));
            naive_week.push(point(week[h][0], week[h][1], week[h][2]));
        }
    }
    let accuracy = vec![
        accuracy("headroom", &ours, scale),
        accuracy("seasonal_naive_day", &naive_day, scale),
        accuracy("seasonal_naive_week", &naive_week, scale),
    ];
    Ok(Backtest {
        horizon,
        origins,
        scale,
        points: ours,
        accuracy,
        fit_seconds,
        models,
    })
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Writes the forecasts as `origin,timestamp,step,actual,yhat,p10,p90`.
pub fn write_csv(backtest: &Backtest, grid: &Grid, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "origin,timestamp,step,actual,yhat,p10,p90")?;
    for p in &backtest.points {
        writeln!(
            out,
            "{},{},{},{},{},{},{}",
            rfc3339(grid.timestamp_ns(p.origin)),
            rfc3339(grid.timestamp_ns(p.index)),
            p.step,
            p.actual,
            p.yhat,
            p.p10,
            p.p90
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nyc_taxi_day_ahead_beats_seasonal_naive_with_calibrated_intervals() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/forecast/nyc_taxi.csv");
        let grid = read_csv(&path).unwrap();
        assert_eq!(grid.values.len(), 10_320);
        assert_eq!(grid.step_ns, 1_800_000_000_000);
        let result = run(&grid, None, 14).unwrap();
        assert_eq!(result.horizon, 48);
        assert_eq!(result.origins.len(), 14);
        assert_eq!(result.points.len(), 14 * 48);
        let [ours, day, week] = &result.accuracy[..] else {
            panic!("{:?}", result.accuracy)
        };
        assert!(week.mase < day.mase, "{:?}", result.accuracy);
        // The targets: MASE at most 0.71, the 80 % interval covering 75–85 %.
        assert!(ours.mase <= 0.71, "{:?}", result.accuracy);
        assert!((0.75..=0.85).contains(&ours.coverage_80), "{ours:?}");
        // No origin sees its own future: the first origin's forecast is unchanged when the
        // data after it is removed.
        let origin = result.origins[0];
        let cut = Grid {
            values: grid.values[..origin + 48].to_vec(),
            filled: grid.filled[..origin + 48].to_vec(),
            ..grid.clone()
        };
        let again = run(&cut, None, 1).unwrap();
        assert_eq!(again.origins, vec![origin]);
        assert_eq!(again.points, result.points[..48].to_vec());
        let mut csv = Vec::new();
        write_csv(&result, &grid, &mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert!(csv.starts_with("origin,timestamp,step,actual,yhat,p10,p90\n2015-01-18T00:00:00Z,2015-01-18T00:00:00Z,1,"), "{}", &csv[..200]);
        assert_eq!(csv.lines().count(), 1 + 14 * 48);
    }

    #[test]
    fn bad_input_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.csv");
        std::fs::write(&path, "time,load\n2024-01-01 00:00:00,1\n").unwrap();
        let e = read_csv(&path).unwrap_err().to_string();
        assert!(e.contains("timestamp,value"), "{e}");
        std::fs::write(
            &path,
            "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 01:00:00,2\n",
        )
        .unwrap();
        let grid = read_csv(&path).unwrap();
        let e = run(&grid, None, 14).unwrap_err().to_string();
        assert!(e.contains("7 days of history"), "{e}");
    }
}
