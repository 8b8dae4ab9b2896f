//! `headroom anomaly`: the anomaly detector's benchmark on the Numenta Anomaly Benchmark.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use headroom_analytics::anomaly::nab;

#[derive(Subcommand, Debug, Clone)]
pub enum AnomalyCommand {
    /// Runs the detector over every NAB series, writes NAB-format results and scores them
    /// under NAB's three profiles.
    Nab(NabArgs),
}

#[derive(Args, Debug, Clone)]
pub struct NabArgs {
    /// A NAB checkout's root (holding `data/` and `labels/combined_windows.json`).
    #[arg(long, env = "HEADROOM_NAB_DIR", default_value = "data/nab")]
    pub nab_dir: PathBuf,
    /// Where to write the per-file results, in NAB's layout.
    #[arg(
        long,
        env = "HEADROOM_NAB_RESULTS_DIR",
        default_value = "target/nab-results"
    )]
    pub results_dir: PathBuf,
}

pub fn run(command: &AnomalyCommand) -> anyhow::Result<String> {
    match command {
        AnomalyCommand::Nab(args) => run_nab(args),
    }
}

fn run_nab(args: &NabArgs) -> anyhow::Result<String> {
    let files = nab::load_corpus(&args.nab_dir)
        .with_context(|| format!("loading the NAB corpus at {}", args.nab_dir.display()))?;
    let points: usize = files.iter().map(|f| f.values.len()).sum();
    let windows: usize = files.iter().map(|f| f.windows.len()).sum();
    let started = Instant::now();
    let scores = nab::detect(&files);
    let elapsed = started.elapsed();
    nab::write_results(&args.results_dir, "headroom", &files, &scores)?;

    let mut out = String::new();
    writeln!(
        out,
        "NAB: {} files, {points} points, {windows} windows",
        files.len()
    )?;
    writeln!(
        out,
        "detector: {:.3} s, {:.3} µs per point",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / points as f64
    )?;
    writeln!(
        out,
        "{:<20} {:>7} {:>9} {:>9} {:>7} {:>8} {:>8} {:>7}",
        "profile", "score", "threshold", "raw", "null", "tp rows", "fp rows", "missed"
    )?;
    for profile in &nab::PROFILES {
        let r = nab::evaluate(&files, &scores, profile);
        writeln!(
            out,
            "{:<20} {:>7.2} {:>9.4} {:>9.2} {:>7.1} {:>8} {:>8} {:>7}",
            profile.name,
            r.normalized,
            r.threshold,
            r.raw,
            r.null,
            r.tp_rows,
            r.fp_rows,
            r.windows_missed
        )?;
    }
    writeln!(
        out,
        "results: {}",
        args.results_dir.join("headroom").display()
    )?;
    Ok(out)
}
