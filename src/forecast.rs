//! `headroom forecast`: the forecaster's benchmarks on real series, as commands (rolling-origin
//! backtests of a `timestamp,value` CSV, and the M4 hourly protocol).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use headroom_analytics::forecast::{self, ForecastOptions, Seasonality, backtest, m4};

#[derive(Subcommand, Debug, Clone)]
pub enum ForecastCommand {
    /// Rolling-origin backtest of one series against seasonal naive.
    Backtest(BacktestArgs),
    /// The M4 competition's hourly protocol (horizon 48, MASE with m = 24, sMAPE, OWA).
    M4(M4Args),
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
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
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
