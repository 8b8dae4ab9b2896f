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

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::config::ServeConfig;
use crate::loadgen::{self, Exporter, Fault, Protocol, Topology};
use crate::serve::{self, ServeError};

const NANOS_PER_SECOND: i64 = 1_000_000_000;
const NANOS_PER_MINUTE: i64 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: i64 = 60 * NANOS_PER_MINUTE;
const NANOS_PER_DAY: i64 = 24 * NANOS_PER_HOUR;

/// A service's full-CPU rate is this many times its mean rate (what `cpu_request` simulates).
const FULL_CPU_FACTOR: f64 = 2.0;
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
pub const DEMO_SLOS: &str = r#"# SLOs of `headroom demo` (see the README for the format).
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
    #[error("writing the demo history failed: {0}")]
    Backfill(String),
}

/// Something that happens to the shop during the demo.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: &'static str,
    pub start_ns: i64,
    /// None: it stays.
    pub end_ns: Option<i64>,
    pub fault: Fault,
}

/// The demo's load and trouble over time, a pure function of the time: the history and the
/// live traffic follow the same one.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub spans_per_second: f64,
    pub events: Vec<Event>,
}

fn minute_floor(t: i64) -> i64 {
    t.div_euclid(NANOS_PER_MINUTE) * NANOS_PER_MINUTE
}

impl Scenario {
    /// The scenario of a history from `from_ns` to `to_ns`: the deploy at 60 % of it, the
    /// incident at 75 %, the downstream failure at 90 %. The incident lasts 4 % of the
    /// history and the failure 2.5 %, within 30–75 and 20–40 minutes: long enough to page.
    pub fn new(spans_per_second: f64, from_ns: i64, to_ns: i64) -> Self {
        let length = (to_ns - from_ns).max(0);
        let at = |fraction: f64| minute_floor(from_ns + (length as f64 * fraction) as i64);
        let lasting = |fraction: f64, min_minutes: i64, max_minutes: i64| {
            minute_floor(((length as f64 * fraction) as i64).clamp(
                min_minutes * NANOS_PER_MINUTE,
                max_minutes * NANOS_PER_MINUTE,
            ))
        };
        let deploy = at(0.60);
        let incident = at(0.75);
        let outage = at(0.90);
        let events = vec![
            Event {
                name: "deploy: checkout 1.10.0 is slower",
                start_ns: deploy,
                end_ns: None,
                fault: Fault::Service {
                    service: "checkout".into(),
                    version: Some("1.10.0".into()),
                    latency_factor: 8.0,
                    error_prob: 0.0,
                    endpoint: None,
                },
            },
            Event {
                name: "incident: payment fails a third of its charges",
                start_ns: incident,
                end_ns: Some(incident + lasting(0.04, 30, 75)),
                fault: Fault::Service {
                    service: "payment".into(),
                    version: None,
                    latency_factor: 1.0,
                    error_prob: 0.35,
                    endpoint: Some("oteldemo.PaymentService/Charge".into()),
                },
            },
            Event {
                name: "downstream failure: PostgreSQL refuses most queries",
                start_ns: outage,
                end_ns: Some(outage + lasting(0.025, 20, 40)),
                fault: Fault::Database {
                    system: "postgresql".into(),
                    error_prob: 0.6,
                },
            },
        ];
        Scenario {
            spans_per_second,
            events,
        }
    }

    /// Load relative to the mean: a daily cycle peaking at 15:00 UTC (1.55) with its trough
    /// at 03:00 (0.45), and weekends at 70 %.
    pub fn load_factor(t_ns: i64) -> f64 {
        let day = t_ns.div_euclid(NANOS_PER_DAY);
        let hour = t_ns.rem_euclid(NANOS_PER_DAY) as f64 / NANOS_PER_HOUR as f64;
        let daily = 1.0 + 0.55 * (std::f64::consts::TAU * (hour - 9.0) / 24.0).sin();
        // 1970-01-01 was a Thursday: (day + 3) % 7 is 0 on Mondays.
        let weekly = if (day + 3).rem_euclid(7) >= 5 {
            0.7
        } else {
            1.0
        };
        daily * weekly
    }

    /// The faults in force at `t_ns`: a healthier baseline than the load generator's
    /// (one seventh of its failure rates, so SLOs hold between events), plus the events.
    pub fn faults_at(&self, t_ns: i64) -> Vec<Fault> {
        let mut faults = vec![Fault::ErrorScale(0.15)];
        faults.extend(
            self.events
                .iter()
                .filter(|e| e.start_ns <= t_ns && e.end_ns.is_none_or(|end| t_ns < end))
                .map(|e| e.fault.clone()),
        );
        faults
    }

    /// Spans to send for `[t_ns, t_ns + seconds)`.
    pub fn spans_in(&self, t_ns: i64, seconds: f64) -> usize {
        (self.spans_per_second * seconds * Self::load_factor(t_ns)).round() as usize
    }

    /// The traces of `[from_ns, to_ns)`, at the load and with the faults of `from_ns`.
    fn traces(
        &self,
        topo: &mut Topology,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<ExportTraceServiceRequest, String> {
        topo.set_faults(&self.faults_at(from_ns))?;
        let seconds = (to_ns - from_ns) as f64 / NANOS_PER_SECOND as f64;
        let spans = self.spans_in(from_ns, seconds);
        Ok(topo.traces_request_over(spans, to_u64(from_ns), to_u64(to_ns - from_ns)))
    }
}

/// One minute of traffic: its traces, and the CPU gauges at its end.
struct Step {
    traces: ExportTraceServiceRequest,
    cpu: ExportMetricsServiceRequest,
}

/// Generates the minute that starts at `minute_ns`, with the faults in force then (events
/// start and end on minute boundaries).
fn generate(topo: &mut Topology, scenario: &Scenario, minute_ns: i64) -> Result<Step, String> {
    let traces = scenario.traces(topo, minute_ns, minute_ns + NANOS_PER_MINUTE)?;
    let cpu = topo.cpu_request(to_u64(minute_ns + NANOS_PER_MINUTE), FULL_CPU_FACTOR);
    Ok(Step { traces, cpu })
}

fn to_u64(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// What a backfill wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackfillReport {
    pub minutes: u64,
    pub spans: u64,
    pub spans_rejected: u64,
    pub metric_points: u64,
    pub seconds: f64,
}

impl BackfillReport {
    fn add(&mut self, other: &BackfillReport) {
        self.minutes += other.minutes;
        self.spans += other.spans;
        self.spans_rejected += other.spans_rejected;
        self.metric_points += other.metric_points;
        self.seconds += other.seconds;
    }
}

/// Writes the history of `[from_ns, to_ns)` (whole minutes) through OTLP/gRPC at `endpoint`,
/// with `concurrency` requests in flight; `progress` grows by the minutes to write and advances
/// by one per minute written.
pub async fn backfill(
    topo: Topology,
    scenario: Scenario,
    endpoint: &str,
    from_ns: i64,
    to_ns: i64,
    concurrency: usize,
    progress: &ProgressBar,
) -> Result<(Topology, BackfillReport), DemoError> {
    let exporter =
        Exporter::new(Protocol::Grpc, endpoint, 10).map_err(|e| DemoError::Setup(e.to_string()))?;
    let started = std::time::Instant::now();
    let first = minute_floor(from_ns);
    let minutes = u64::try_from((to_ns - first) / NANOS_PER_MINUTE).unwrap_or(0);
    progress.inc_length(minutes);
    // Generation is CPU work: a blocking thread feeds the senders through a bounded channel.
    let concurrency = concurrency.max(1);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Step, String>>(concurrency * 2);
    let generator = tokio::task::spawn_blocking(move || {
        let mut topo = topo;
        // Starts the CPU gauges' clock on a first backfill; a later one continues it.
        topo.cpu_request(to_u64(first), FULL_CPU_FACTOR);
        for m in 0..minutes {
            let step = generate(&mut topo, &scenario, first + m as i64 * NANOS_PER_MINUTE);
            let failed = step.is_err();
            if tx.blocking_send(step).is_err() || failed {
                break;
            }
        }
        topo
    });
    let mut report = BackfillReport::default();
    let mut sends = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|step| {
            let exporter = exporter.clone();
            async move {
                let step = step?;
                let spans = loadgen::span_count(&step.traces);
                let rejected = exporter.traces(&step.traces).await?;
                let points = loadgen::metric_point_count(&step.cpu);
                let points_rejected = exporter.metrics(&step.cpu).await?;
                Ok::<_, String>((spans, rejected, points.saturating_sub(points_rejected)))
            }
        })
        .buffer_unordered(concurrency);
    while let Some(sent) = sends.next().await {
        let (spans, rejected, points) = sent.map_err(DemoError::Backfill)?;
        report.minutes += 1;
        report.spans += spans;
        report.spans_rejected += rejected;
        report.metric_points += points;
        progress.inc(1);
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        progress.set_message(format!("{:.0} spans/s", report.spans as f64 / secs));
    }
    drop(sends);
    let topo = generator
        .await
        .map_err(|e| DemoError::Backfill(format!("generator: {e}")))?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok((topo, report))
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
    fn load_cycles() {
        // 2026-11-25 was a Wednesday, 2026-11-28 a Saturday.
        let wed = chrono::DateTime::parse_from_rfc3339("2026-11-25T00:00:00Z")
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap();
        let at = |day: i64, hour: i64| {
            Scenario::load_factor(wed + day * NANOS_PER_DAY + hour * NANOS_PER_HOUR)
        };
        assert!((at(0, 15) - 1.55).abs() < 1e-9);
        assert!((at(0, 3) - 0.45).abs() < 1e-9);
        assert!((at(0, 9) - 1.0).abs() < 1e-9);
        assert!((at(3, 15) - 0.7 * 1.55).abs() < 1e-9, "Saturday");
        assert!((at(4, 15) - 0.7 * 1.55).abs() < 1e-9, "Sunday");
        assert!((at(5, 15) - 1.55).abs() < 1e-9, "Monday");
        // The mean over a week: 5/7 + 2/7 * 0.7.
        let mean: f64 = (0..7 * 24 * 60)
            .map(|m| Scenario::load_factor(wed + m * NANOS_PER_MINUTE))
            .sum::<f64>()
            / (7.0 * 24.0 * 60.0);
        assert!((mean - (5.0 + 1.4) / 7.0).abs() < 1e-6, "{mean}");
    }

    #[test]
    fn events_in_short_and_long_histories() {
        for days in [0.25, 14.0] {
            let to = 1_000 * NANOS_PER_DAY;
            let from = to - (days * NANOS_PER_DAY as f64) as i64;
            let s = Scenario::new(10.0, from, to);
            let mut last_end = from;
            for e in &s.events {
                assert!(e.start_ns >= last_end && e.start_ns < to, "{e:?}");
                assert_eq!(e.start_ns % NANOS_PER_MINUTE, 0);
                if let Some(end) = e.end_ns {
                    assert!(
                        end <= to && end - e.start_ns >= 20 * NANOS_PER_MINUTE,
                        "{e:?}"
                    );
                    last_end = end;
                }
            }
            let incident = &s.events[1];
            let during = s.faults_at(incident.start_ns);
            assert!(during.contains(&incident.fault) && during.contains(&s.events[0].fault));
            assert!(
                !s.faults_at(incident.end_ns.unwrap())
                    .contains(&incident.fault)
            );
            assert_eq!(s.faults_at(from), vec![Fault::ErrorScale(0.15)]);
        }
        // A 14-day history gets the full-length outages.
        let s = Scenario::new(10.0, 0, 14 * NANOS_PER_DAY);
        assert_eq!(
            s.events[1].end_ns.unwrap() - s.events[1].start_ns,
            75 * NANOS_PER_MINUTE
        );
        assert_eq!(
            s.events[2].end_ns.unwrap() - s.events[2].start_ns,
            40 * NANOS_PER_MINUTE
        );
    }

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
