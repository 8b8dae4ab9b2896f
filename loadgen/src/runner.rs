//! `headroom loadgen`: its arguments, the workers that send at a target rate, and the report
//! of what was sent and what the server acknowledged.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::error::LoadgenError;
use crate::scenario::{BackfillError, BackfillReport, Scenario, backfill};
use crate::{exporter::*, template::*, topology::*, util::*};

/// `headroom loadgen` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// OTLP endpoint: `http://host:4317` for gRPC, the base URL (`http://host:4318`) for HTTP.
    #[arg(
        long,
        env = "HEADROOM_LOADGEN_ENDPOINT",
        default_value = "http://127.0.0.1:4317"
    )]
    pub endpoint: String,
    /// Wire protocol.
    #[arg(long, env = "HEADROOM_LOADGEN_PROTOCOL", value_enum, default_value_t = Protocol::Grpc)]
    pub protocol: Protocol,
    /// Target spans per second; 0 sends as fast as possible.
    #[arg(long, env = "HEADROOM_LOADGEN_RATE", default_value_t = 10_000)]
    pub rate: u64,
    /// How long to send for.
    #[arg(long, env = "HEADROOM_LOADGEN_DURATION_SECONDS", default_value_t = 10)]
    pub duration_seconds: u64,
    /// Maximum spans per request (smaller at low rates, so at least ~10 requests/s go out).
    #[arg(long, env = "HEADROOM_LOADGEN_BATCH_SPANS", default_value_t = 512)]
    pub batch_spans: usize,
    /// Concurrent in-flight trace requests.
    #[arg(long, env = "HEADROOM_LOADGEN_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
    /// Also send one metrics request per second (`--metrics=false` to disable).
    #[arg(
        long,
        env = "HEADROOM_LOADGEN_METRICS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub metrics: bool,
    /// Seed of the simulated topology (services, instances, traffic mix).
    #[arg(long, env = "HEADROOM_LOADGEN_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Retries of a request the server refused as retryable (OTLP: gRPC UNAVAILABLE, or
    /// RESOURCE_EXHAUSTED with RetryInfo; HTTP 429, 502, 503, 504), after the delay the server
    /// asked for. 0 counts every refusal as an error.
    #[arg(long, env = "HEADROOM_LOADGEN_MAX_RETRIES", default_value_t = 5)]
    pub max_retries: u32,
    /// Services of the simulated shop; more than its own 7 grow it with backend tiers.
    #[arg(long, env = "HEADROOM_LOADGEN_SERVICES", default_value_t = 0)]
    pub services: usize,
    /// Server endpoints of the simulated shop, about; more than its own 19 add routes and
    /// methods.
    #[arg(long, env = "HEADROOM_LOADGEN_ENDPOINTS", default_value_t = 0)]
    pub endpoints: usize,
    /// Instead of live traffic, write this many days of history ending now, at `--rate` spans
    /// per second on average (the demo's daily and weekly cycle and its incidents), as fast as
    /// the server acknowledges it (OTLP/gRPC).
    #[arg(long, env = "HEADROOM_LOADGEN_HISTORY_DAYS", default_value_t = 0.0)]
    pub history_days: f64,
}

impl Default for LoadgenArgs {
    fn default() -> Self {
        LoadgenArgs {
            endpoint: "http://127.0.0.1:4317".to_owned(),
            protocol: Protocol::Grpc,
            rate: 10_000,
            duration_seconds: 10,
            batch_spans: 512,
            concurrency: 4,
            metrics: true,
            seed: 42,
            max_retries: 5,
            services: 0,
            endpoints: 0,
            history_days: 0.0,
        }
    }
}

/// What the load generator sent and what the server acknowledged.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadgenReport {
    /// Trace and metrics requests attempted.
    pub requests_sent: u64,
    /// Requests answered with success (2xx / gRPC OK).
    pub requests_acked: u64,
    pub spans_sent: u64,
    /// Spans in acknowledged requests minus `partial_success.rejected_spans`.
    pub spans_acked: u64,
    /// Sum of `partial_success.rejected_spans`.
    pub spans_rejected: u64,
    pub metric_points_sent: u64,
    /// Data points in acknowledged requests minus rejected ones.
    pub metric_points_acked: u64,
    /// Failed requests (transport errors, non-2xx, gRPC non-OK), after any retries.
    pub errors: u64,
    /// Attempts repeated because the server asked for a retry.
    pub retries: u64,
    pub elapsed: Duration,
    /// Ack latency percentiles over all successful requests.
    pub ack_latency_p50_ms: f64,
    pub ack_latency_p99_ms: f64,
    pub ack_latency_max_ms: f64,
}

impl LoadgenReport {
    /// Acknowledged spans per second of wall-clock time.
    pub fn spans_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.spans_acked as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for LoadgenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "loadgen: {:.0} spans/s acknowledged over {:.2} s",
            self.spans_per_second(),
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  requests: {} sent, {} acked, {} errors, {} retries",
            self.requests_sent, self.requests_acked, self.errors, self.retries
        )?;
        writeln!(
            f,
            "  spans:    {} sent, {} acked, {} rejected",
            self.spans_sent, self.spans_acked, self.spans_rejected
        )?;
        writeln!(
            f,
            "  metrics:  {} points sent, {} acked",
            self.metric_points_sent, self.metric_points_acked
        )?;
        write!(
            f,
            "  ack latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.ack_latency_p50_ms, self.ack_latency_p99_ms, self.ack_latency_max_ms
        )
    }
}

pub(crate) struct Stats {
    pub(crate) requests_sent: u64,
    pub(crate) requests_acked: u64,
    pub(crate) spans_sent: u64,
    pub(crate) spans_acked: u64,
    pub(crate) spans_rejected: u64,
    pub(crate) metric_points_sent: u64,
    pub(crate) metric_points_acked: u64,
    pub(crate) errors: u64,
    pub(crate) retries: u64,
    pub(crate) last_error: Option<String>,
    /// Ack latency in microseconds.
    pub(crate) latency: Histogram<u64>,
}

impl Stats {
    pub(crate) fn new() -> Result<Self, LoadgenError> {
        let latency = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .map_err(|e| LoadgenError::Task(format!("latency histogram: {e}")))?;
        Ok(Stats {
            requests_sent: 0,
            requests_acked: 0,
            spans_sent: 0,
            spans_acked: 0,
            spans_rejected: 0,
            metric_points_sent: 0,
            metric_points_acked: 0,
            errors: 0,
            retries: 0,
            last_error: None,
            latency,
        })
    }

    pub(crate) fn record_latency(&mut self, since: tokio::time::Instant) {
        let us = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(us.max(1));
    }

    pub(crate) fn error(&mut self, e: String) {
        self.errors += 1;
        tracing::debug!(error = %e, "loadgen request failed");
        self.last_error = Some(e);
    }

    pub(crate) fn merge(&mut self, o: Stats) {
        self.requests_sent += o.requests_sent;
        self.requests_acked += o.requests_acked;
        self.spans_sent += o.spans_sent;
        self.spans_acked += o.spans_acked;
        self.spans_rejected += o.spans_rejected;
        self.metric_points_sent += o.metric_points_sent;
        self.metric_points_acked += o.metric_points_acked;
        self.errors += o.errors;
        self.retries += o.retries;
        // Keep the first error seen (trace workers are merged first).
        if self.last_error.is_none() {
            self.last_error = o.last_error;
        }
        if let Err(e) = self.latency.add(&o.latency) {
            tracing::warn!(error = %e, "could not merge latency histograms");
        }
    }
}

/// Spans per request: `batch_spans`, but smaller at low rates so that at
/// least ~10 requests per second go out (smooth traffic for the demo).
pub(crate) fn effective_batch(batch_spans: usize, rate: u64) -> usize {
    if rate == 0 {
        return batch_spans;
    }
    let per_tick = usize::try_from(rate / 10).unwrap_or(usize::MAX).max(1);
    batch_spans.min(per_tick)
}

pub(crate) struct Schedule {
    pub(crate) start: tokio::time::Instant,
    pub(crate) deadline: tokio::time::Instant,
    /// Nanoseconds between consecutive requests (0 = unpaced).
    pub(crate) interval_ns: u64,
    pub(crate) next: AtomicU64,
}

pub(crate) async fn trace_worker(
    pool: Arc<Vec<Template>>,
    mut sender: TraceSender,
    schedule: Arc<Schedule>,
    max_retries: u32,
    mut stats: Stats,
) -> Stats {
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    loop {
        let n = schedule.next.fetch_add(1, Ordering::Relaxed);
        if schedule.interval_ns > 0 {
            let at = schedule.start + Duration::from_nanos(schedule.interval_ns.saturating_mul(n));
            if at >= schedule.deadline {
                break;
            }
            tokio::time::sleep_until(at).await;
        } else if tokio::time::Instant::now() >= schedule.deadline {
            break;
        }
        let Some(template) = pool.get(usize::try_from(n).unwrap_or(0) % pool.len().max(1)) else {
            break;
        };
        let body = template.instantiate(now_unix_nano(), &mut rng);
        stats.requests_sent += 1;
        stats.spans_sent += template.spans;
        let sent_at = tokio::time::Instant::now();
        let mut retry = Retry::new(max_retries);
        let sent = loop {
            match sender.send(body.clone()).await {
                Ok(rejected) => break Ok(rejected),
                Err(e) => {
                    if let Err(e) = retry.wait(e).await {
                        break Err(e);
                    }
                }
            }
        };
        stats.retries += u64::from(retry.attempt);
        match sent {
            Ok(rejected) => {
                stats.record_latency(sent_at);
                let rejected = u64::try_from(rejected.max(0))
                    .unwrap_or(0)
                    .min(template.spans);
                stats.requests_acked += 1;
                stats.spans_rejected += rejected;
                stats.spans_acked += template.spans - rejected;
            }
            Err(e) => {
                stats.error(e);
                if tokio::time::Instant::now() + ERROR_BACKOFF < schedule.deadline {
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            }
        }
    }
    stats
}

pub(crate) async fn metrics_worker(
    mut topo: Topology,
    transport: Transport,
    deadline: tokio::time::Instant,
    max_retries: u32,
    mut stats: Stats,
) -> Stats {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let req = topo.metrics_request(now_unix_nano());
        let points = metric_point_count(&req);
        stats.requests_sent += 1;
        stats.metric_points_sent += points;
        let sent_at = tokio::time::Instant::now();
        let mut retry = Retry::new(max_retries);
        let sent = loop {
            match transport.send_metrics(req.clone()).await {
                Ok(rejected) => break Ok(rejected),
                Err(e) => {
                    if let Err(e) = retry.wait(e).await {
                        break Err(e);
                    }
                }
            }
        };
        stats.retries += u64::from(retry.attempt);
        match sent {
            Ok(rejected) => {
                stats.record_latency(sent_at);
                let rejected = u64::try_from(rejected.max(0)).unwrap_or(0).min(points);
                stats.requests_acked += 1;
                stats.metric_points_acked += points - rejected;
            }
            Err(e) => stats.error(e),
        }
    }
    stats
}

/// Run the load generator as configured and report what was sent and acked.
///
/// Before the clock starts, a pool of up to 64 traces requests is generated
/// and prost-encoded; during the run they are re-sent round-robin, each copy
/// with fresh ids and current timestamps (see the module docs). With
/// `rate > 0` requests are paced on a shared schedule across `concurrency`
/// tasks (a slow server turns it into a closed loop limited by
/// `concurrency`); with `rate == 0` every task sends back to back. Requests
/// the server refuses as retryable are retried up to `max_retries` times, as an
/// OTLP exporter would; other failures are counted. If every request failed,
/// the error names the endpoint.
/// `--history-days`: the demo's scenario over the past days, at `--rate` spans per second.
pub async fn history(args: &LoadgenArgs) -> Result<BackfillReport, LoadgenError> {
    if !(args.history_days > 0.0 && args.history_days <= 366.0) || args.rate == 0 {
        return Err(LoadgenError::InvalidArgs(
            "--history-days must be in (0, 366] with a --rate above 0".to_owned(),
        ));
    }
    let endpoint = normalize_endpoint(&args.endpoint)?;
    let to = now_unix_nano() as i64;
    let from = to - (args.history_days * 86_400e9) as i64;
    let topo = Topology::with_size(args.seed, args.services, args.endpoints);
    let scenario = Scenario::new(args.rate as f64, from, to);
    let progress = indicatif::ProgressBar::hidden();
    let concurrency = args.concurrency;
    let (_, report) = backfill(topo, scenario, &endpoint, from, to, concurrency, &progress)
        .await
        .map_err(|e| match e {
            BackfillError::Exporter(cause) => cause,
            BackfillError::Send(_) => LoadgenError::Task(e.to_string()),
        })?;
    Ok(report)
}

pub async fn run(args: &LoadgenArgs) -> Result<LoadgenReport, LoadgenError> {
    if args.batch_spans == 0 {
        return Err(LoadgenError::InvalidArgs(
            "--batch-spans must be > 0".to_owned(),
        ));
    }
    if args.concurrency == 0 {
        return Err(LoadgenError::InvalidArgs(
            "--concurrency must be > 0".to_owned(),
        ));
    }
    let endpoint = normalize_endpoint(&args.endpoint)?;
    let transport = Transport::new(args.protocol, &endpoint)?;
    let batch = effective_batch(args.batch_spans, args.rate);
    let seed = args.seed;

    let (services, endpoints) = (args.services, args.endpoints);
    let pool = tokio::task::spawn_blocking(move || {
        let mut topo = Topology::with_size(seed, services, endpoints);
        build_pool(&mut topo, batch, now_unix_nano())
    })
    .await
    .map_err(|e| LoadgenError::Task(e.to_string()))??;
    let avg_spans = pool.iter().map(|t| t.spans).sum::<u64>() as f64 / pool.len().max(1) as f64;
    let interval_ns = if args.rate == 0 {
        0
    } else {
        ((avg_spans * 1e9 / args.rate as f64) as u64).max(1)
    };
    let pool = Arc::new(pool);
    tracing::info!(
        endpoint = %endpoint,
        protocol = %args.protocol,
        rate = args.rate,
        batch,
        pool = pool.len(),
        "loadgen starting"
    );

    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_secs(args.duration_seconds);
    let schedule = Arc::new(Schedule {
        start,
        deadline,
        interval_ns,
        next: AtomicU64::new(0),
    });
    let mut handles = Vec::with_capacity(args.concurrency + 1);
    for _ in 0..args.concurrency {
        handles.push(tokio::spawn(trace_worker(
            pool.clone(),
            transport.trace_sender(),
            schedule.clone(),
            args.max_retries,
            Stats::new()?,
        )));
    }
    if args.metrics {
        handles.push(tokio::spawn(metrics_worker(
            Topology::new(seed),
            transport.clone(),
            deadline,
            args.max_retries,
            Stats::new()?,
        )));
    }
    let mut total = Stats::new()?;
    for h in handles {
        total.merge(h.await.map_err(|e| LoadgenError::Task(e.to_string()))?);
    }
    let elapsed = start.elapsed();

    if total.requests_sent > 0 && total.requests_acked == 0 {
        return Err(LoadgenError::AllFailed {
            endpoint,
            errors: total.errors,
            last_error: total.last_error.unwrap_or_default(),
        });
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let has_latency = !total.latency.is_empty();
    Ok(LoadgenReport {
        requests_sent: total.requests_sent,
        requests_acked: total.requests_acked,
        spans_sent: total.spans_sent,
        spans_acked: total.spans_acked,
        spans_rejected: total.spans_rejected,
        metric_points_sent: total.metric_points_sent,
        metric_points_acked: total.metric_points_acked,
        errors: total.errors,
        retries: total.retries,
        elapsed,
        ack_latency_p50_ms: if has_latency {
            ms(total.latency.value_at_quantile(0.5))
        } else {
            0.0
        },
        ack_latency_p99_ms: if has_latency {
            ms(total.latency.value_at_quantile(0.99))
        } else {
            0.0
        },
        ack_latency_max_ms: if has_latency {
            ms(total.latency.max())
        } else {
            0.0
        },
    })
}
