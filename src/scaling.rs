//! `headroom scaling`: replays a load series through a scaling policy and prints the outcome
//! as JSON (see `headroom_analytics::scaling::simulate`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use headroom_analytics::forecast::backtest;
use headroom_analytics::scaling::simulate::{self, Policy, Settings};

#[derive(Subcommand, Debug, Clone)]
pub enum ScalingCommand {
    /// Replay a load series through a policy, every 15 s, with replicas ready a lead time
    /// after they are asked for.
    Simulate(SimulateArgs),
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyArg {
    /// Forecast upper quantile over the lead time, never below the observed load's need.
    Predictive,
    /// Headroom's live recommender every minute, acted on by KEDA's HPA.
    Recommender,
    /// The Kubernetes HPA on the observed load.
    Reactive,
    /// A fixed count for the series' peak.
    StaticPeak,
}

#[derive(Args, Debug, Clone)]
pub struct SimulateArgs {
    /// CSV with header `timestamp,value` and a regular step: the load.
    #[arg(long, env = "HEADROOM_SCALING_INPUT")]
    pub input: PathBuf,
    /// Load one replica serves at full utilisation, in the series' units.
    #[arg(long, env = "HEADROOM_SCALING_CAPACITY_PER_REPLICA")]
    pub capacity_per_replica: f64,
    /// Seconds from asking for a replica to its serving.
    #[arg(
        long,
        env = "HEADROOM_SCALING_LEAD_TIME_SECONDS",
        default_value_t = 300
    )]
    pub lead_time_seconds: u64,
    #[arg(long, env = "HEADROOM_SCALING_POLICY", value_enum)]
    pub policy: PolicyArg,
    /// Utilisation every policy aims for.
    #[arg(
        long,
        env = "HEADROOM_SCALING_TARGET_UTILIZATION",
        default_value_t = 0.8
    )]
    pub target_utilization: f64,
    /// Forecast quantile the predictive policy provisions for.
    #[arg(long, env = "HEADROOM_SCALING_QUANTILE", default_value_t = 0.7)]
    pub quantile: f64,
    /// Days at the end of the series that are replayed.
    #[arg(long, env = "HEADROOM_SCALING_TEST_DAYS", default_value_t = 14)]
    pub test_days: usize,
    #[arg(long, env = "HEADROOM_SCALING_MIN_REPLICAS", default_value_t = 1)]
    pub min_replicas: u32,
    #[arg(long, env = "HEADROOM_SCALING_MAX_REPLICAS", default_value_t = 10_000)]
    pub max_replicas: u32,
    /// Write every sync period here (`timestamp,demand,replicas,ready`).
    #[arg(long, env = "HEADROOM_SCALING_OUTPUT")]
    pub output: Option<PathBuf>,
}

pub fn run(command: &ScalingCommand) -> anyhow::Result<String> {
    match command {
        ScalingCommand::Simulate(args) => run_simulate(args),
    }
}

fn run_simulate(args: &SimulateArgs) -> anyhow::Result<String> {
    let grid = backtest::read_csv(&args.input)?;
    let policy = match args.policy {
        PolicyArg::Predictive => Policy::Predictive,
        PolicyArg::Recommender => Policy::Recommender,
        PolicyArg::Reactive => Policy::Reactive,
        PolicyArg::StaticPeak => Policy::StaticPeak,
    };
    let settings = Settings {
        capacity_per_replica: args.capacity_per_replica,
        lead_time_seconds: args.lead_time_seconds,
        target_utilization: args.target_utilization,
        quantile: args.quantile,
        test_days: args.test_days,
        min_replicas: args.min_replicas,
        max_replicas: args.max_replicas,
    };
    let (outcome, ticks) = simulate::run(&grid, policy, &settings)?;
    if let Some(path) = &args.output {
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        simulate::write_csv(&ticks, &mut file)?;
    }
    Ok(serde_json::to_string_pretty(&outcome)? + "\n")
}
