//! `headroom demo`: the server on the embedded default storage with the simulated shop sending
//! it traffic, and a per-service summary printed from SQL every few seconds. The quickest way
//! to see the whole pipeline work on one machine.

use std::time::Duration;

use crate::config::ServeConfig;
use crate::loadgen::{self, LoadgenArgs, Protocol};
use crate::serve::{self, ServeError};

/// Per-service RED over the last minute, from the `spans` table.
const SUMMARY_SQL: &str = "SELECT service_name, count(*) AS requests, \
    round(100.0 * avg(CAST(is_error AS DOUBLE)), 2) AS error_pct, \
    round(approx_percentile_cont(duration_ns / 1e6, 0.5), 1) AS p50_ms, \
    round(approx_percentile_cont(duration_ns / 1e6, 0.99), 1) AS p99_ms \
    FROM spans WHERE span_kind = 'SERVER' AND start_time > now() - INTERVAL '1 minute' \
    GROUP BY service_name ORDER BY requests DESC";

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    #[command(flatten)]
    pub serve: ServeConfig,
    /// Spans per second the simulated shop sends.
    #[arg(long, env = "HEADROOM_DEMO_RATE", default_value_t = 2000)]
    pub rate: u64,
    /// Seconds between printed summaries.
    #[arg(long, env = "HEADROOM_DEMO_REPORT_SECONDS", default_value_t = 10)]
    pub report_seconds: u64,
}

/// Runs until `stop` resolves, then shuts the server down gracefully.
pub async fn run(
    args: DemoArgs,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let running = serve::start(&args.serve).await?;
    println!("{}", running.ready_line());
    let load = LoadgenArgs {
        endpoint: format!("http://{}", running.otlp_grpc_addr),
        protocol: Protocol::Grpc,
        rate: args.rate,
        // Runs until the demo stops; the task is dropped then.
        duration_seconds: 365 * 24 * 3600,
        ..LoadgenArgs::default()
    };
    let loadgen = tokio::spawn(async move { loadgen::run(&load).await });
    let engine = running.engine.clone();
    let report = async {
        let mut tick = tokio::time::interval(Duration::from_secs(args.report_seconds.max(1)));
        tick.tick().await;
        loop {
            tick.tick().await;
            match engine.sql(SUMMARY_SQL).await {
                Ok(batches) => match arrow::util::pretty::pretty_format_batches(&batches) {
                    Ok(t) => println!("server spans, last minute:\n{t}"),
                    Err(e) => tracing::warn!(error = %e, "formatting summary"),
                },
                Err(e) => tracing::warn!(error = %e, "summary query failed"),
            }
        }
    };
    tokio::select! {
        () = stop => {}
        () = report => {}
    }
    loadgen.abort();
    running.shutdown().await
}
