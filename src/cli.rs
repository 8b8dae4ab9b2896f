//! The command line: one subcommand per job, each with its flags in the module that runs it
//! (the server's in `config`).

use clap::{Parser, Subcommand};
use headroom_loadgen::LoadgenArgs;

use crate::anomaly::AnomalyCommand;
use crate::config::{BallistaCommand, QueryArgs, ServeConfig};
use crate::demo::DemoArgs;
use crate::forecast::ForecastCommand;
use crate::scaling::ScalingCommand;

#[derive(Parser, Debug)]
#[command(
    name = "headroom",
    version,
    about = "OpenTelemetry analytics backend: OTLP in, KPIs out"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the OTLP receivers and the query API.
    Serve(ServeConfig),
    /// Run the server with simulated microservice traffic and print live KPIs.
    Demo(DemoArgs),
    /// Run a query over a data directory's Parquet files and print a table.
    Query(QueryArgs),
    /// Send simulated microservice traffic to an OTLP endpoint.
    Loadgen(LoadgenArgs),
    /// Forecast benchmarks: rolling-origin backtests and the M4 hourly protocol.
    Forecast {
        #[command(subcommand)]
        command: ForecastCommand,
    },
    /// Scaling policies replayed over a load series.
    Scaling {
        #[command(subcommand)]
        command: ScalingCommand,
    },
    /// Anomaly detection benchmarks: the Numenta Anomaly Benchmark.
    Anomaly {
        #[command(subcommand)]
        command: AnomalyCommand,
    },
    /// Print the storage schema as Markdown.
    Schema,
    /// Run a node of an Apache Ballista cluster that `headroom serve --query-engine ballista`
    /// sends its queries to.
    Ballista {
        #[command(subcommand)]
        command: BallistaCommand,
    },
}
