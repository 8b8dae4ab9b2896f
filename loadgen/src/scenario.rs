//! The demo's shop over time: a [`Scenario`] is a daily and weekly load cycle and three kinds
//! of trouble an operator meets (a slow deploy, an incident that pages, a downstream
//! failure), placed at fixed fractions of the history so a short one has them too; and
//! [`backfill`], which writes a scenario's history through OTLP/gRPC as fast as the server
//! acknowledges it.

use futures::StreamExt;
use indicatif::ProgressBar;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::error::LoadgenError;
use crate::exporter::{Exporter, Protocol};
use crate::fault::Fault;
use crate::topology::{Topology, metric_point_count, span_count};

const NANOS_PER_SECOND: i64 = 1_000_000_000;
const NANOS_PER_MINUTE: i64 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: i64 = 60 * NANOS_PER_MINUTE;
const NANOS_PER_DAY: i64 = 24 * NANOS_PER_HOUR;

/// A service's full-CPU rate is this many times its mean rate (what `cpu_request` simulates).
pub const FULL_CPU_FACTOR: f64 = 2.0;

/// Why a backfill stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("cannot set up the OTLP exporter")]
    Exporter(#[source] LoadgenError),
    #[error("sending a minute of history failed: {0}")]
    Send(String),
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

pub fn minute_floor(t: i64) -> i64 {
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
    pub fn traces(
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

pub fn to_u64(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
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
    pub fn add(&mut self, other: &BackfillReport) {
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
) -> Result<(Topology, BackfillReport), BackfillError> {
    let exporter = Exporter::new(Protocol::Grpc, endpoint, 10).map_err(BackfillError::Exporter)?;
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
                let spans = span_count(&step.traces);
                let rejected = exporter.traces(&step.traces).await?;
                let points = metric_point_count(&step.cpu);
                let points_rejected = exporter.metrics(&step.cpu).await?;
                Ok::<_, String>((spans, rejected, points.saturating_sub(points_rejected)))
            }
        })
        .buffer_unordered(concurrency);
    while let Some(sent) = sends.next().await {
        let (spans, rejected, points) = sent.map_err(BackfillError::Send)?;
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
        .map_err(|e| BackfillError::Send(format!("generator: {e}")))?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok((topo, report))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

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
}
