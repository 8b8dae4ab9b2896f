//! `headroom forecast`: the forecaster's benchmarks on real series, as commands (rolling-origin
//! backtests of a `timestamp,value` CSV, and the M4 hourly protocol).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use headroom_analytics::forecast::features::Grid;
use headroom_analytics::forecast::{self, ForecastOptions, Seasonality, backtest, live, m4};

#[derive(Subcommand, Debug, Clone)]
pub enum ForecastCommand {
    /// Rolling-origin backtest of one series against seasonal naive.
    Backtest(BacktestArgs),
    /// The M4 competition's hourly protocol (horizon 48, MASE with m = 24, sMAPE, OWA).
    M4(M4Args),
    /// Times one refresh of the `forecasts` table for a fleet of services whose load is cut
    /// from a real series.
    Fleet(FleetArgs),
}

#[derive(Args, Debug, Clone)]
pub struct FleetArgs {
    /// CSV with header `timestamp,value`: the load each service's history is cut from.
    #[arg(long, env = "HEADROOM_FLEET_INPUT")]
    pub input: PathBuf,
    /// How many services.
    #[arg(long, env = "HEADROOM_FLEET_SERVICES", default_value_t = 500)]
    pub services: usize,
    /// History per service, as the live forecaster reads it.
    #[arg(long, env = "HEADROOM_FLEET_HISTORY_DAYS", default_value_t = 28)]
    pub history_days: usize,
    /// Step of the forecasts.
    #[arg(long, env = "HEADROOM_FLEET_STEP_SECONDS", default_value_t = 300)]
    pub step_seconds: u64,
    /// How far ahead.
    #[arg(long, env = "HEADROOM_FLEET_HORIZON_SECONDS", default_value_t = 86_400)]
    pub horizon_seconds: u64,
}

#[derive(Args, Debug, Clone)]
pub struct BacktestArgs {
    /// CSV with header `timestamp,value` and a regular step (inferred).
    #[arg(long, env = "HEADROOM_FORECAST_INPUT")]
    pub input: PathBuf,
    /// Steps ahead; one day of steps by default.
    #[arg(long, env = "HEADROOM_FORECAST_HORIZON")]
    pub horizon: Option<usize>,
    /// Days at the end of the series with forecast origins.
    #[arg(long, env = "HEADROOM_FORECAST_TEST_DAYS", default_value_t = 14)]
    pub test_days: usize,
    /// Write every forecast point here (`origin,timestamp,step,actual,yhat,p10,p90`).
    #[arg(long, env = "HEADROOM_FORECAST_OUTPUT")]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct M4Args {
    /// M4 `Hourly-train.csv`.
    #[arg(long, env = "HEADROOM_M4_TRAIN")]
    pub train: PathBuf,
    /// M4 `Hourly-test.csv`.
    #[arg(long, env = "HEADROOM_M4_TEST")]
    pub test: PathBuf,
    /// Write every forecast point here (`series,step,actual,yhat,p10,p90,model`).
    #[arg(long, env = "HEADROOM_M4_OUTPUT")]
    pub output: Option<PathBuf>,
}

pub fn run(command: &ForecastCommand) -> anyhow::Result<String> {
    match command {
        ForecastCommand::Backtest(args) => run_backtest(args),
        ForecastCommand::M4(args) => run_m4(args),
        ForecastCommand::Fleet(args) => run_fleet(args),
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn run_backtest(args: &BacktestArgs) -> anyhow::Result<String> {
    let grid = backtest::read_csv(&args.input)?;
    let filled = grid.filled.iter().filter(|f| **f).count();
    let result = backtest::run(&grid, args.horizon, args.test_days)?;
    if let Some(path) = &args.output {
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        backtest::write_csv(&result, &grid, &mut file)?;
    }
    let mut out = String::new();
    writeln!(
        out,
        "{}: {} steps of {} s ({} filled), horizon {} steps, {} origins, MASE scale {:.3}",
        args.input.display(),
        grid.values.len(),
        grid.step_ns / 1_000_000_000,
        filled,
        result.horizon,
        result.origins.len(),
        result.scale
    )?;
    writeln!(
        out,
        "{:<22} {:>7} {:>7} {:>13} {:>10} {:>15}",
        "method", "MASE", "sMAPE", "coverage 80%", "above p90", "pinball 0.9/s"
    )?;
    for a in &result.accuracy {
        writeln!(
            out,
            "{:<22} {:>7.3} {:>7.2} {:>13.3} {:>10.3} {:>15.4}",
            a.method, a.mase, a.smape, a.coverage_80, a.above_p90, a.scaled_pinball_90
        )?;
    }
    let mut times = result.fit_seconds.clone();
    times.sort_by(f64::total_cmp);
    writeln!(
        out,
        "fit + forecast per origin: median {:.1} ms, max {:.1} ms",
        percentile(&times, 0.5) * 1e3,
        times.last().copied().unwrap_or(0.0) * 1e3
    )?;
    writeln!(out, "models chosen: {}", tally(&result.models))?;
    Ok(out)
}

/// How often each model was chosen, most often first.
fn tally(models: &[String]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for m in models {
        match counts.iter_mut().find(|(name, _)| name == m) {
            Some((_, count)) => *count += 1,
            None => counts.push((m, 1)),
        }
    }
    counts.sort_by_key(|(_, c)| std::cmp::Reverse(*c));
    const SHOWN: usize = 8;
    let mut shown: Vec<String> = counts
        .iter()
        .take(SHOWN)
        .map(|(m, c)| format!("{m} ×{c}"))
        .collect();
    if counts.len() > SHOWN {
        let rest: usize = counts[SHOWN..].iter().map(|(_, c)| c).sum();
        shown.push(format!("{} others ×{rest}", counts.len() - SHOWN));
    }
    shown.join(", ")
}

fn run_m4(args: &M4Args) -> anyhow::Result<String> {
    const HORIZON: usize = 48;
    const M: usize = 24;
    let train = m4::read(&args.train)?;
    let test = m4::read(&args.test)?;
    anyhow::ensure!(
        train.len() == test.len() && train.iter().zip(&test).all(|(a, b)| a.0 == b.0),
        "{} and {} hold different series",
        args.train.display(),
        args.test.display()
    );
    if let Some((id, _)) = test.iter().find(|(_, v)| v.len() != HORIZON) {
        anyhow::bail!("{id}: the test part must have {HORIZON} values");
    }
    let season = Seasonality {
        day: M,
        week: 7 * M,
    };
    let options = ForecastOptions {
        horizon: HORIZON,
        quantiles: vec![0.1, 0.9],
    };
    let started = Instant::now();
    let mut ours = Vec::new();
    let mut times = Vec::new();
    let mut models = Vec::new();
    let mut csv = String::from("series,step,actual,yhat,p10,p90,model\n");
    let (mut covered, mut points) = (0usize, 0usize);
    for ((id, history), (_, actual)) in train.iter().zip(&test) {
        let f = forecast::forecast(history, season, &options).with_context(|| id.clone())?;
        times.push(f.fit_seconds);
        let (lo, hi) = (
            f.quantile(0.1).unwrap_or(&[]),
            f.quantile(0.9).unwrap_or(&[]),
        );
        for (h, ((a, l), u)) in actual.iter().zip(lo).zip(hi).enumerate() {
            covered += usize::from(l <= a && a <= u);
            points += 1;
            writeln!(
                csv,
                "{id},{},{a},{},{l},{u},\"{}\"",
                h + 1,
                f.yhat[h],
                f.model
            )?;
        }
        models.push(f.model);
        ours.push(f.yhat);
    }
    if let Some(path) = &args.output {
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let naive: Vec<Vec<f64>> = train
        .iter()
        .map(|(_, x)| m4::seasonal_naive(x, HORIZON, M))
        .collect();
    let naive2: Vec<Vec<f64>> = train
        .iter()
        .map(|(_, x)| m4::naive2(x, HORIZON, M))
        .collect();
    let reference = m4::score(&train, &test, &naive2, M);
    let mut out = String::new();
    writeln!(out, "M4 hourly: {} series, horizon {HORIZON}", train.len())?;
    writeln!(
        out,
        "{:<22} {:>7} {:>7} {:>7}",
        "method", "sMAPE", "MASE", "OWA"
    )?;
    for (name, forecasts) in [
        ("headroom", &ours),
        ("seasonal_naive", &naive),
        ("naive2", &naive2),
    ] {
        let s = m4::score(&train, &test, forecasts, M);
        writeln!(
            out,
            "{name:<22} {:>7.3} {:>7.3} {:>7.3}",
            s.smape,
            s.mase,
            s.owa(&reference)
        )?;
    }
    times.sort_by(f64::total_cmp);
    writeln!(
        out,
        "coverage of [p10, p90]: {:.3}; fit + forecast per series: median {:.1} ms, p99 {:.1} ms; \
         total {elapsed:.1} s",
        covered as f64 / points.max(1) as f64,
        percentile(&times, 0.5) * 1e3,
        percentile(&times, 0.99) * 1e3
    )?;
    writeln!(out, "models chosen: {}", tally(&models))?;
    Ok(out)
}

/// Each service's history is a window of the input, resampled to the step by linear
/// interpolation (counts scaled to the step), starting at its own offset and scaled by its own
/// factor, so the services differ in level, phase and events.
fn fleet_histories(args: &FleetArgs) -> anyhow::Result<Vec<(String, live::Metric, Grid)>> {
    anyhow::ensure!(args.services > 0, "--services must be at least 1");
    anyhow::ensure!(
        args.step_seconds > 0 && args.horizon_seconds >= args.step_seconds,
        "--step-seconds must be positive and at most --horizon-seconds"
    );
    let input = backtest::read_csv(&args.input)?;
    let step_ns = i64::try_from(args.step_seconds)? * 1_000_000_000;
    let ratio = step_ns as f64 / input.step_ns as f64;
    let available = ((input.values.len() - 1) as f64 / ratio).floor() as usize;
    let length = args.history_days * 86_400 / args.step_seconds as usize;
    anyhow::ensure!(
        length >= 2 && length <= available,
        "{} holds {} steps of {} s, fewer than the {length} of --history-days {}",
        args.input.display(),
        available,
        args.step_seconds,
        args.history_days
    );
    let at = |position: f64| {
        let i = position.floor() as usize;
        let next = input.values[(i + 1).min(input.values.len() - 1)];
        (input.values[i] + (next - input.values[i]) * (position - i as f64)) * ratio
    };
    Ok((0..args.services)
        .map(|k| {
            let offset = (k * 7919) % (available - length + 1);
            let scale = 0.05 + (k % 97) as f64 / 24.0;
            let values = (0..length)
                .map(|t| scale * at((offset + t) as f64 * ratio))
                .collect();
            let grid = Grid {
                start_ns: 0,
                step_ns,
                values,
                filled: vec![false; length],
            };
            (format!("service-{k:03}"), live::Metric::Requests, grid)
        })
        .collect())
}

fn run_fleet(args: &FleetArgs) -> anyhow::Result<String> {
    let work = fleet_histories(args)?;
    let horizon = args.horizon_seconds.div_ceil(args.step_seconds) as usize;
    let started = Instant::now();
    let forecasts = live::forecast_all(&work, horizon, 0, &[]);
    let batch = live::batch(&forecasts)?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut times: Vec<f64> = forecasts.iter().map(|f| f.forecast.fit_seconds).collect();
    times.sort_by(f64::total_cmp);
    let mut out = String::new();
    writeln!(
        out,
        "{} services × {} steps of {} s, horizon {horizon} steps, {} cores",
        work.len(),
        work[0].2.values.len(),
        args.step_seconds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )?;
    writeln!(
        out,
        "forecast {} of {} in {elapsed:.1} s ({} rows published); per series: median {:.1} ms, \
         p99 {:.1} ms",
        forecasts.len(),
        work.len(),
        batch.num_rows(),
        percentile(&times, 0.5) * 1e3,
        percentile(&times, 0.99) * 1e3
    )?;
    let models: Vec<String> = forecasts.iter().map(|f| f.forecast.model.clone()).collect();
    writeln!(out, "models chosen: {}", tally(&models))?;
    Ok(out)
}
