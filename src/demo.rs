//! `headroom demo`: the server on the embedded default storage, two weeks of history from the
//! simulated shop written through the real OTLP ingest path, then live traffic, so that every
//! view, dashboard, forecast and recommendation has something to show within minutes of a
//! fresh start.
//!
//! The history follows a [`Scenario`]: a daily and weekly load cycle, and three kinds of
//! trouble an operator meets, placed at fixed fractions of the history so a short backfill
//! (as the tests use) has them too:
//! - a deploy of `checkout` that makes it slower, and stays;
//! - an incident: `payment` fails a third of its charges for over an hour, burning its error
//!   budget and its callers';
//! - a downstream failure: PostgreSQL refuses most queries for 40 minutes, and the failure
//!   propagates through `product-catalog` and `checkout` to the `frontend`.
//!
//! A restarted demo on the same data directory only fills the gap since its newest span.

use std::path::PathBuf;

use arrow::array::Array;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::ServeConfig;
use crate::error::ServeError;
use crate::serve;
use headroom_loadgen::{
    BackfillError, BackfillReport, Exporter, FULL_CPU_FACTOR, Protocol, Scenario, Topology,
    backfill, minute_floor, to_u64,
};

const NANOS_PER_SECOND: i64 = 1_000_000_000;
const NANOS_PER_MINUTE: i64 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: i64 = 60 * NANOS_PER_MINUTE;
const NANOS_PER_DAY: i64 = 24 * NANOS_PER_HOUR;

/// Seconds of live traffic per request.
const LIVE_TICK_SECONDS: u64 = 5;

/// Per-service RED over the last minute, from the `spans` table.
const SUMMARY_SQL: &str = "SELECT service_name, count(*) AS requests, \
    round(100.0 * avg(CAST(is_error AS DOUBLE)), 2) AS error_pct, \
    round(approx_percentile_cont(duration_ns / 1e6, 0.5), 1) AS p50_ms, \
    round(approx_percentile_cont(duration_ns / 1e6, 0.99), 1) AS p99_ms \
    FROM spans WHERE span_kind = 'SERVER' AND start_time > now() - INTERVAL '1 minute' \
    GROUP BY service_name ORDER BY requests DESC";

/// The demo's SLOs, used unless `--slo-config-path` names others. The shop runs at about
/// 99.8 % availability, so 99.5 % holds except when trouble strikes; checkout's latency
/// objective holds before its slower release and burns budget after it.
pub const DEMO_SLOS: &str = r#"# SLOs of `headroom demo` (see docs/configuration.md for the format).
[defaults]
objective_percent = 99.5
window_days = 28

[[slo]]
name = "checkout-latency"
service = "checkout"
indicator = "latency"
latency_threshold_ms = 150
objective_percent = 99.0
window_days = 7
"#;

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    #[command(flatten)]
    pub serve: ServeConfig,
    /// Average spans per second the simulated shop sends, in the history and live; the daily
    /// peak is about 1.5 times this.
    #[arg(long, env = "HEADROOM_DEMO_SPANS_PER_SECOND", default_value_t = 10.0,
          value_parser = parse_rate)]
    pub spans_per_second: f64,
    /// Days of history written before the live traffic starts (0: none).
    #[arg(long, env = "HEADROOM_DEMO_BACKFILL_DAYS", default_value_t = 14.0,
          value_parser = parse_days)]
    pub backfill_days: f64,
    /// OTLP requests in flight while the history is written.
    #[arg(long, env = "HEADROOM_DEMO_BACKFILL_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=64))]
    pub backfill_concurrency: u64,
    /// Seed of the simulated shop and its traffic.
    #[arg(long, env = "HEADROOM_DEMO_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Seconds between printed per-service summaries (0: none).
    #[arg(long, env = "HEADROOM_DEMO_REPORT_SECONDS", default_value_t = 0)]
    pub report_seconds: u64,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e6 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a rate in (0, 1000000] spans per second"
        )),
    }
}

fn parse_days(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=90.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of days in [0, 90]")),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("demo setup: {0}")]
    Setup(String),
    #[error("writing the demo history failed")]
    Backfill(#[from] BackfillError),
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Sends the scenario's traffic from `from_ns` on as it happens, every few seconds, until
/// dropped.
async fn live(mut topo: Topology, scenario: Scenario, exporter: Exporter, from_ns: i64) {
    let mut tick = tokio::time::interval(Duration::from_secs(LIVE_TICK_SECONDS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next_cpu = minute_floor(from_ns) + NANOS_PER_MINUTE;
    let mut last = from_ns;
    loop {
        tick.tick().await;
        let now = now_ns();
        let traces = match scenario.traces(&mut topo, last, now) {
            Ok(traces) => traces,
            Err(e) => {
                tracing::error!(error = %e, "demo faults");
                return;
            }
        };
        last = now;
        if let Err(e) = exporter.traces(&traces).await {
            tracing::warn!(error = %e, "demo traffic not accepted");
        }
        if now >= next_cpu {
            next_cpu += NANOS_PER_MINUTE;
            let cpu = topo.cpu_request(to_u64(now), FULL_CPU_FACTOR);
            if let Err(e) = exporter.metrics(&cpu).await {
                tracing::warn!(error = %e, "demo metrics not accepted");
            }
        }
    }
}

/// The newest span start stored, if any.
async fn newest_span_ns(running: &serve::Running) -> Result<Option<i64>, DemoError> {
    let batches = running
        .engine
        .sql("SELECT CAST(max(start_time) AS BIGINT) AS t FROM spans")
        .await
        .map_err(|e| DemoError::Setup(format!("reading the stored history: {e}")))?;
    let value = batches.first().filter(|b| b.num_rows() > 0).and_then(|b| {
        b.column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .filter(|a| a.is_valid(0))
            .map(|a| a.value(0))
    });
    Ok(value)
}

/// The SLO file the demo runs with unless one was given: written next to the data.
fn demo_slo_file(cfg: &ServeConfig) -> Result<PathBuf, DemoError> {
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| DemoError::Setup(format!("creating {}: {e}", cfg.data_dir.display())))?;
    let path = cfg.data_dir.join("demo-slos.toml");
    std::fs::write(&path, DEMO_SLOS)
        .map_err(|e| DemoError::Setup(format!("writing {}: {e}", path.display())))?;
    Ok(path)
}

fn print_urls(running: &serve::Running, cfg: &ServeConfig) {
    println!(
        "\nHeadroom demo is running. Data: {}\n\
         \x20 Console         http://{http}/\n\
         \x20 SQL over HTTP   curl -s http://{http}/api/v1/sql -H 'content-type: application/json' -d '{{\"sql\": \"SELECT * FROM slo_status\"}}'\n\
         \x20 API             http://{http}/api/v1/services  ·  /api/v1/slos  ·  /api/v1/forecast/frontend  ·  /api/v1/recommendations\n\
         \x20 PostgreSQL      psql postgresql://{user}@{pg}/headroom\n\
         \x20 OTLP            gRPC {grpc}  ·  HTTP http://{otlp_http}/v1/traces\n\
         \x20 Grafana         dashboards/README.md: one docker run with the shipped provisioning\n",
        cfg.data_dir.display(),
        http = running.http_addr,
        pg = running.pg_addr,
        user = cfg.pg_user,
        grpc = running.otlp_grpc_addr,
        otlp_http = running.otlp_http_addr,
    );
}

/// Runs until `stop` resolves, then shuts the server down gracefully.
pub async fn run(
    mut args: DemoArgs,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), DemoError> {
    if args.serve.slo_config_path.is_none() {
        args.serve.slo_config_path = Some(demo_slo_file(&args.serve)?);
    }
    let running = serve::start(&args.serve).await?;
    println!("{}", running.ready_line());
    let endpoint = format!("http://{}", running.otlp_grpc_addr);
    let now = minute_floor(now_ns());
    let from = now - (args.backfill_days * NANOS_PER_DAY as f64) as i64;
    let scenario = Scenario::new(args.spans_per_second, from, now);
    let mut topo = Topology::new(args.seed);
    let resume = match newest_span_ns(&running).await? {
        Some(t) if t >= from => minute_floor(t) + NANOS_PER_MINUTE,
        _ => from,
    };
    tokio::pin!(stop);
    let mut history_end = resume;
    if resume < now {
        for e in &scenario.events {
            println!(
                "scenario: {} at {}",
                e.name,
                chrono::DateTime::from_timestamp_nanos(e.start_ns).format("%Y-%m-%d %H:%M UTC")
            );
        }
        let progress = ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "history {bar:40} {percent:>3}% of {len} minutes, {msg}, eta {eta}",
            )
            .map_err(|e| DemoError::Setup(e.to_string()))?,
        );
        let mut total = BackfillReport::default();
        // Rounds until the history reaches the current minute: the first one takes minutes.
        loop {
            let end = minute_floor(now_ns());
            if history_end >= end {
                break;
            }
            let written = backfill(
                topo,
                scenario.clone(),
                &endpoint,
                history_end,
                end,
                usize::try_from(args.backfill_concurrency).unwrap_or(4),
                &progress,
            );
            let (t, report) = tokio::select! {
                r = written => r?,
                () = &mut stop => {
                    progress.abandon();
                    return Ok(running.shutdown().await?);
                }
            };
            topo = t;
            total.add(&report);
            history_end = end;
        }
        progress.finish_and_clear();
        println!(
            "history: {} minutes, {} spans ({} rejected), {} metric points in {:.1} s ({:.0} spans/s)",
            total.minutes,
            total.spans,
            total.spans_rejected,
            total.metric_points,
            total.seconds,
            total.spans as f64 / total.seconds.max(1e-3)
        );
        running.refresh_plans();
    }
    print_urls(&running, &args.serve);
    let exporter =
        Exporter::new(Protocol::Grpc, &endpoint, 3).map_err(|e| DemoError::Setup(e.to_string()))?;
    let live_from = history_end.max(now_ns() - NANOS_PER_MINUTE);
    let traffic = tokio::spawn(live(topo, scenario, exporter, live_from));
    let engine = running.engine.clone();
    let report_every = args.report_seconds;
    let report = async {
        if report_every == 0 {
            return std::future::pending().await;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(report_every));
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
    traffic.abort();
    Ok(running.shutdown().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_applies_to_the_shop() {
        let s = Scenario::new(10.0, 0, NANOS_PER_DAY);
        let mut topo = Topology::new(1);
        for e in &s.events {
            topo.set_faults(&s.faults_at(e.start_ns)).unwrap();
        }
        let slos = headroom_analytics::slo::SloConfig::from_toml(DEMO_SLOS).unwrap();
        assert!(format!("{slos:?}").contains("checkout-latency"));
    }
}
