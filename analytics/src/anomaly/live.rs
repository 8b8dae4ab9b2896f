//! Live anomalies: every service's KPI series scored minute by minute, published as the
//! `anomaly_scores` and `anomalies` tables.
//!
//! Series, per service and minute (complete minutes only: a minute is scored once, when
//! [`SETTLE_NS`] has passed since its end):
//! - `request_rate`: requests per second served (a minute without requests is a real zero);
//! - `error_ratio`: failed requests over requests (minutes with requests);
//! - `p95_ms`: the 95th percentile of server span durations (as `service_kpi_1m`);
//! - `cpu_utilization`: the mean over the service's instances, where the data has it
//!   (`service_saturation_1m`).
//!
//! Each series has its own [`Detector`], fed in time order, so a score never depends on later
//! minutes. An anomaly (one row of `anomalies`) starts at a minute that
//! - scores [`ANOMALY_THRESHOLD`] or more,
//! - lies outside the expected band, and
//! - for counts (requests, errors), is unlikely under the expected rate: a Poisson tail below
//!   [`SIGNIFICANCE`], so one failed request among thirty is not an incident;
//! - for p95, stands on at least 20 requests;
//!
//! and lasts while the series stays outside its band; it ends at the first minute back inside
//! (`end_time` is null while it lasts), and goes on if the series alerts again within five
//! minutes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use headroom_storage::schema::timestamp_type;

use super::{ANOMALY_THRESHOLD, Detector};
use crate::QueryEngine;
use crate::error::QueryError;

/// The table of anomalies (one row per event).
pub const TABLE: &str = "anomalies";
/// The table of per-minute scores, observed values and expected bands.
pub const SCORES_TABLE: &str = "anomaly_scores";

const MINUTE_NS: i64 = 60_000_000_000;
/// How long after a minute's end it is scored: exporters' batching (5 s by default in the
/// OpenTelemetry SDKs) and requests that started in it and ran up to 30 s are in by then.
/// Later spans are not counted: a minute is scored once.
pub const SETTLE_NS: i64 = 30_000_000_000;
/// History read per query while catching up, to bound each query's memory.
const CHUNK_NS: i64 = 24 * 60 * MINUTE_NS;
/// How long per-minute scores are kept in `anomaly_scores`.
const SCORES_KEPT_NS: i64 = 24 * 60 * MINUTE_NS;
/// How many anomalies are kept (the oldest go first).
const EVENTS_KEPT: usize = 10_000;
/// The largest chance, under the expected rate, of a count at least as far from it as the one
/// observed, for the minute to open an anomaly.
pub const SIGNIFICANCE: f64 = 0.001;
/// The error ratio assumed when a service has hardly ever failed: below it, a single error
/// would be "significant".
const ERROR_RATIO_FLOOR: f64 = 0.005;
/// An anomaly that ended less than this long before the series alerts again goes on.
const MERGE_GAP_NS: i64 = 5 * MINUTE_NS;
/// Fewer requests than this in a minute make its p95 little more than its slowest request:
/// such minutes are scored but open no anomaly.
const MIN_PERCENTILE_REQUESTS: f64 = 20.0;
/// An anomaly this many typical errors away from the expected value is `critical`.
const CRITICAL_DEVIATION: f64 = 6.0;

/// A KPI series scored per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    RequestRate,
    ErrorRatio,
    P95Latency,
    CpuUtilization,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::RequestRate => "request_rate",
            Metric::ErrorRatio => "error_ratio",
            Metric::P95Latency => "p95_ms",
            Metric::CpuUtilization => "cpu_utilization",
        }
    }
}

/// One anomaly: a run of minutes of one series outside what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub service: String,
    pub metric: Metric,
    pub start_ns: i64,
    /// The first minute back inside the band; None while the anomaly lasts.
    pub end_ns: Option<i64>,
    /// Minutes outside the band.
    pub minutes: i64,
    /// The most deviating minute: its value, what was expected and the band.
    pub peak_ns: i64,
    pub observed: f64,
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    /// |observed − expected| in typical errors (a third of the band's half-width).
    pub deviation: f64,
    /// The highest score of its minutes.
    pub score: f64,
}

impl Anomaly {
    /// `<service>:<metric>@<start as YYYYMMDDTHHMM>Z`: what `GET /api/v1/incidents/{id}/explain`
    /// takes.
    pub fn id(&self) -> String {
        let start = chrono::DateTime::from_timestamp_nanos(self.start_ns);
        format!(
            "{}:{}@{}",
            self.service,
            self.metric.name(),
            start.format("%Y%m%dT%H%MZ")
        )
    }

    /// One more minute outside the band.
    fn extend(&mut self, t: i64, value: f64, s: &super::Scored, deviation: f64) {
        self.minutes += 1;
        self.score = self.score.max(s.undamped);
        if deviation > self.deviation {
            self.peak_ns = t;
            self.observed = value;
            self.expected = s.expected;
            self.lower = s.lower;
            self.upper = s.upper;
            self.deviation = deviation;
        }
    }

    pub fn severity(&self) -> &'static str {
        if self.deviation >= CRITICAL_DEVIATION {
            "critical"
        } else {
            "warning"
        }
    }
}

/// One scored minute of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredMinute {
    pub time_ns: i64,
    pub service: String,
    pub metric: Metric,
    pub observed: f64,
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    pub score: f64,
}

/// One minute of one series: its value and, for rates and ratios, the requests behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub time_ns: i64,
    pub value: f64,
    pub requests: Option<f64>,
}

/// The chance of a count at least as far from `expected` as `observed` (on its side), for a
/// Poisson count; a normal approximation from a mean of 100 on.
pub fn poisson_tail(observed: f64, expected: f64) -> f64 {
    let (k, lambda) = (observed.round().max(0.0), expected.max(1e-9));
    if lambda >= 100.0 {
        let z = (k - lambda).abs() / lambda.sqrt();
        return 0.5 * libm::erfc(z / std::f64::consts::SQRT_2);
    }
    // Terms of the probability mass function, from P(0) up.
    let mut term = (-lambda).exp();
    let mut below = 0.0; // P(X < k)
    let mut i = 0.0;
    while i < k {
        below += term;
        i += 1.0;
        term *= lambda / i;
        if i > 1e4 {
            break;
        }
    }
    if k > lambda {
        (1.0 - below).max(0.0)
    } else {
        (below + term).min(1.0) // P(X <= k)
    }
}

#[derive(Debug, Default)]
struct Series {
    detector: Detector,
    /// The last minute fed.
    last_ns: Option<i64>,
    /// Index (counting dropped ones) of the series' latest anomaly.
    last_event: Option<usize>,
}

/// What the live detectors have done, for `/metrics`: copied from the monitor at each publish.
#[derive(Debug, Default)]
pub struct Stats {
    pub series: AtomicU64,
    pub ongoing_warning: AtomicU64,
    pub ongoing_critical: AtomicU64,
    pub minutes_scored_total: AtomicU64,
    pub anomalies_total: AtomicU64,
}

impl Stats {
    pub fn record(&self, monitor: &Monitor) {
        let ongoing = |severity: &str| {
            monitor
                .events
                .iter()
                .filter(|a| a.end_ns.is_none() && a.severity() == severity)
                .count() as u64
        };
        self.series
            .store(monitor.series.len() as u64, Ordering::Relaxed);
        self.ongoing_warning
            .store(ongoing("warning"), Ordering::Relaxed);
        self.ongoing_critical
            .store(ongoing("critical"), Ordering::Relaxed);
        self.minutes_scored_total
            .store(monitor.minutes_scored, Ordering::Relaxed);
        self.anomalies_total.store(
            (monitor.dropped + monitor.events.len()) as u64,
            Ordering::Relaxed,
        );
    }
}

/// The detectors of every series and what they found.
#[derive(Debug)]
pub struct Monitor {
    series: BTreeMap<(String, Metric), Series>,
    /// Minutes before this are scored.
    scored_until_ns: Option<i64>,
    /// How far back the first refresh reads.
    history_ns: i64,
    events: VecDeque<Anomaly>,
    /// Events dropped from the front of `events`, so `Series::last_event` indices stay valid.
    dropped: usize,
    scores: VecDeque<ScoredMinute>,
    /// Series-minutes scored since the monitor started.
    minutes_scored: u64,
}

impl Monitor {
    /// A monitor whose first refresh learns from the last `history_ns` of data.
    pub fn new(history_ns: i64) -> Self {
        Monitor {
            series: BTreeMap::new(),
            scored_until_ns: None,
            history_ns,
            events: VecDeque::new(),
            dropped: 0,
            scores: VecDeque::new(),
            minutes_scored: 0,
        }
    }

    pub fn anomalies(&self) -> impl Iterator<Item = &Anomaly> {
        self.events.iter()
    }

    pub fn scores(&self) -> impl Iterator<Item = &ScoredMinute> {
        self.scores.iter()
    }

    /// Scores every complete minute up to `now_ns` not scored yet; returns how many minutes
    /// of series were scored.
    pub async fn refresh(
        &mut self,
        engine: &QueryEngine,
        now_ns: i64,
    ) -> Result<usize, QueryError> {
        let to_ns = (now_ns - SETTLE_NS).div_euclid(MINUTE_NS) * MINUTE_NS;
        let mut from_ns = self
            .scored_until_ns
            .unwrap_or_else(|| (to_ns - self.history_ns).div_euclid(MINUTE_NS) * MINUTE_NS);
        let mut scored = 0;
        while from_ns < to_ns {
            let chunk_end = (from_ns + CHUNK_NS).min(to_ns);
            let points = read_minutes(engine, from_ns, chunk_end).await?;
            scored += self.feed(points, chunk_end);
            self.scored_until_ns = Some(chunk_end);
            from_ns = chunk_end;
        }
        let keep_from = to_ns - SCORES_KEPT_NS;
        while self.scores.front().is_some_and(|s| s.time_ns < keep_from) {
            self.scores.pop_front();
        }
        Ok(scored)
    }

    /// Feeds one chunk of minutes (each series' points in any order) ending before `end_ns`.
    fn feed(&mut self, mut points: BTreeMap<(String, Metric), Vec<Point>>, end_ns: i64) -> usize {
        // A service that served requests before and none in this chunk served zero.
        for (service, metric) in self.series.keys() {
            if *metric == Metric::RequestRate {
                points.entry((service.clone(), *metric)).or_default();
            }
        }
        let mut scored = 0;
        for ((service, metric), mut minutes) in points {
            minutes.sort_unstable_by_key(|p| p.time_ns);
            let key = (service, metric);
            if !self.series.contains_key(&key) && minutes.is_empty() {
                continue;
            }
            let mut filled = Vec::with_capacity(minutes.len());
            let last_ns = self.series.get(&key).and_then(|s| s.last_ns);
            if metric == Metric::RequestRate {
                // Zeros for the minutes without requests, from the series' first minute.
                let mut t = last_ns.map_or_else(|| minutes[0].time_ns, |l| l + MINUTE_NS);
                let mut it = minutes.iter().peekable();
                while t < end_ns {
                    match it.peek() {
                        Some(p) if p.time_ns == t => {
                            filled.push(**p);
                            it.next();
                        }
                        _ => filled.push(Point {
                            time_ns: t,
                            value: 0.0,
                            requests: Some(0.0),
                        }),
                    }
                    t += MINUTE_NS;
                }
            } else {
                filled.extend(
                    minutes
                        .into_iter()
                        .filter(|p| last_ns.is_none_or(|l| p.time_ns > l)),
                );
            }
            for point in filled {
                self.score(&key, point);
                scored += 1;
            }
        }
        self.minutes_scored += scored as u64;
        scored
    }

    fn score(&mut self, key: &(String, Metric), point: Point) {
        let Point {
            time_ns: t,
            value,
            requests,
        } = point;
        let series = self.series.entry(key.clone()).or_default();
        let mut s = series.detector.update(t / 1_000_000_000, value);
        // Every series here is a rate, a ratio or a duration: none goes below zero.
        s.lower = s.lower.max(0.0);
        series.last_ns = Some(t);
        let typical = (s.upper - s.expected) / 3.0;
        let deviation = if typical > 0.0 {
            (value - s.expected).abs() / typical
        } else {
            0.0
        };
        let outside = value < s.lower || value > s.upper;
        let significant = match (key.1, requests) {
            (Metric::RequestRate, _) => {
                poisson_tail(value * 60.0, s.expected * 60.0) < SIGNIFICANCE
            }
            (Metric::ErrorRatio, Some(n)) => {
                let p0 = s.expected.max(ERROR_RATIO_FLOOR);
                value > p0 && poisson_tail(value * n, p0 * n) < SIGNIFICANCE
            }
            (Metric::P95Latency, Some(n)) => n >= MIN_PERCENTILE_REQUESTS,
            _ => true,
        };
        let alert = s.undamped >= ANOMALY_THRESHOLD && outside && significant;
        let last = series
            .last_event
            .and_then(|i| i.checked_sub(self.dropped))
            .and_then(|i| self.events.get_mut(i));
        match last {
            Some(event) if event.end_ns.is_none() => {
                if outside {
                    event.extend(t, value, &s, deviation);
                } else {
                    event.end_ns = Some(t);
                }
            }
            // Back outside soon after it ended: the same anomaly.
            Some(event) if alert && event.end_ns.is_some_and(|end| t - end < MERGE_GAP_NS) => {
                event.end_ns = None;
                event.extend(t, value, &s, deviation);
            }
            _ if alert => {
                self.events.push_back(Anomaly {
                    service: key.0.clone(),
                    metric: key.1,
                    start_ns: t,
                    end_ns: None,
                    minutes: 1,
                    peak_ns: t,
                    observed: value,
                    expected: s.expected,
                    lower: s.lower,
                    upper: s.upper,
                    deviation,
                    score: s.undamped,
                });
                series.last_event = Some(self.dropped + self.events.len() - 1);
                if self.events.len() > EVENTS_KEPT {
                    self.events.pop_front();
                    self.dropped += 1;
                }
            }
            _ => {}
        }
        self.scores.push_back(ScoredMinute {
            time_ns: t,
            service: key.0.clone(),
            metric: key.1,
            observed: value,
            expected: s.expected,
            lower: s.lower,
            upper: s.upper,
            score: s.undamped,
        });
    }

    /// The anomalies as rows of the `anomalies` table.
    pub fn anomalies_batch(&self) -> Result<RecordBatch, QueryError> {
        let e: Vec<&Anomaly> = self.events.iter().collect();
        let columns: Vec<ArrayRef> = vec![
            strings(e.iter().map(|a| a.id())),
            strings(e.iter().map(|a| a.service.as_str())),
            strings(e.iter().map(|a| a.metric.name())),
            times(e.iter().map(|a| Some(a.start_ns))),
            times(e.iter().map(|a| a.end_ns)),
            Arc::new(e.iter().map(|a| a.minutes).collect::<Int64Array>()),
            times(e.iter().map(|a| Some(a.peak_ns))),
            floats(e.iter().map(|a| a.observed)),
            floats(e.iter().map(|a| a.expected)),
            floats(e.iter().map(|a| a.lower)),
            floats(e.iter().map(|a| a.upper)),
            floats(e.iter().map(|a| a.deviation)),
            floats(e.iter().map(|a| a.score)),
            strings(e.iter().map(|a| a.severity())),
        ];
        Ok(RecordBatch::try_new(anomalies_schema(), columns)?)
    }

    /// The kept per-minute scores as rows of the `anomaly_scores` table.
    pub fn scores_batch(&self) -> Result<RecordBatch, QueryError> {
        let s: Vec<&ScoredMinute> = self.scores.iter().collect();
        let columns: Vec<ArrayRef> = vec![
            times(s.iter().map(|m| Some(m.time_ns))),
            strings(s.iter().map(|m| m.service.as_str())),
            strings(s.iter().map(|m| m.metric.name())),
            floats(s.iter().map(|m| m.observed)),
            floats(s.iter().map(|m| m.expected)),
            floats(s.iter().map(|m| m.lower)),
            floats(s.iter().map(|m| m.upper)),
            floats(s.iter().map(|m| m.score)),
        ];
        Ok(RecordBatch::try_new(scores_schema(), columns)?)
    }
}

fn times(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(
        values
            .collect::<TimestampNanosecondArray>()
            .with_timezone("UTC"),
    )
}

fn strings<S: AsRef<str>>(values: impl Iterator<Item = S>) -> ArrayRef {
    Arc::new(values.map(Some).collect::<StringArray>())
}

fn floats(values: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(values.map(Some).collect::<Float64Array>())
}

pub fn anomalies_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("anomaly_id", DataType::Utf8, false),
        Field::new("service_name", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("start_time", timestamp_type(), false),
        Field::new("end_time", timestamp_type(), true),
        Field::new("minutes", DataType::Int64, false),
        Field::new("peak_time", timestamp_type(), false),
        Field::new("observed", DataType::Float64, false),
        Field::new("expected", DataType::Float64, false),
        Field::new("lower", DataType::Float64, false),
        Field::new("upper", DataType::Float64, false),
        Field::new("deviation", DataType::Float64, false),
        Field::new("score", DataType::Float64, false),
        Field::new("severity", DataType::Utf8, false),
    ]))
}

pub fn scores_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("time", timestamp_type(), false),
        Field::new("service_name", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("observed", DataType::Float64, false),
        Field::new("expected", DataType::Float64, false),
        Field::new("lower", DataType::Float64, false),
        Field::new("upper", DataType::Float64, false),
        Field::new("score", DataType::Float64, false),
    ]))
}

/// Every series' minutes in `[from_ns, to_ns)`.
async fn read_minutes(
    engine: &QueryEngine,
    from_ns: i64,
    to_ns: i64,
) -> Result<BTreeMap<(String, Metric), Vec<Point>>, QueryError> {
    let bin = |col: &str| {
        format!(
            "CAST(date_bin(INTERVAL '1 minute', {col}, TIMESTAMP '1970-01-01T00:00:00Z') AS BIGINT)"
        )
    };
    let range = |col: &str| {
        format!("{col} >= to_timestamp_nanos({from_ns}) AND {col} < to_timestamp_nanos({to_ns})")
    };
    let requests = format!(
        "SELECT service_name, {t} AS t, \
           CAST(count(*) AS DOUBLE) / 60.0, \
           CAST(sum(CASE WHEN is_bad THEN 1 ELSE 0 END) AS DOUBLE) / count(*), \
           percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ns) / 1e6, \
           CAST(count(*) AS DOUBLE) \
         FROM server_requests WHERE {r} GROUP BY 1, 2",
        t = bin("start_time"),
        r = range("start_time"),
    );
    let cpu = format!(
        "SELECT service_name, CAST(\"time\" AS BIGINT) AS t, avg(cpu_utilization) \
         FROM service_saturation_1m WHERE {r} AND cpu_utilization IS NOT NULL GROUP BY 1, 2",
        r = range("\"time\""),
    );
    let mut out: BTreeMap<(String, Metric), Vec<Point>> = BTreeMap::new();
    // The query, the metric of each value column, and the column holding the request count.
    let metrics: [(&str, &[Metric], Option<usize>); 2] = [
        (
            &requests,
            &[Metric::RequestRate, Metric::ErrorRatio, Metric::P95Latency],
            Some(5),
        ),
        (&cpu, &[Metric::CpuUtilization], None),
    ];
    for (sql, metrics, count_column) in metrics {
        for batch in engine.sql(sql).await? {
            let names = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
            let names = names.as_string::<i32>();
            let times = batch.column(1).as_primitive::<Int64Type>();
            let counts = count_column
                .map(|c| arrow::compute::cast(batch.column(c), &DataType::Float64))
                .transpose()?;
            let counts = counts.as_ref().map(|c| c.as_primitive::<Float64Type>());
            for (k, metric) in metrics.iter().enumerate() {
                let values = arrow::compute::cast(batch.column(2 + k), &DataType::Float64)?;
                let values = values.as_primitive::<Float64Type>();
                for row in 0..batch.num_rows() {
                    if names.is_valid(row) && times.is_valid(row) && values.is_valid(row) {
                        let v = values.value(row);
                        if v.is_finite() {
                            out.entry((names.value(row).to_owned(), *metric))
                                .or_default()
                                .push(Point {
                                    time_ns: times.value(row),
                                    value: v,
                                    requests: counts.map(|c| c.value(row)),
                                });
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minutes(values: impl IntoIterator<Item = (i64, f64)>) -> Vec<Point> {
        values
            .into_iter()
            .map(|(m, v)| Point {
                time_ns: m * MINUTE_NS,
                value: v,
                requests: Some(v * 60.0),
            })
            .collect()
    }

    /// 50 plus pseudo-random noise in [0, 5): splitmix64 of the minute.
    fn steady(m: i64) -> f64 {
        let mut z = (m as u64).wrapping_add(0x9e3779b97f4a7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^= z >> 31;
        50.0 + (z >> 11) as f64 / (1u64 << 53) as f64 * 5.0
    }

    #[test]
    fn poisson_tails_match_hand_computed_values() {
        // P(X >= 3 | λ = 0.5) = 1 − e^−0.5 (1 + 0.5 + 0.125) = 0.0143877
        assert!((poisson_tail(3.0, 0.5) - 0.014_387_7).abs() < 1e-6);
        // P(X <= 0 | λ = 10) = e^−10
        assert!((poisson_tail(0.0, 10.0) - (-10.0f64).exp()).abs() < 1e-12);
        // P(X >= 1 | λ = 0.01) = 1 − e^−0.01
        assert!((poisson_tail(1.0, 0.01) - (1.0 - (-0.01f64).exp())).abs() < 1e-12);
        // Normal approximation from λ = 100: 130 is 3 deviations above.
        assert!((poisson_tail(130.0, 100.0) - 0.001_349_9).abs() < 1e-6);
    }

    #[test]
    fn a_drop_to_zero_opens_one_anomaly_that_ends_when_traffic_returns() {
        let mut monitor = Monitor::new(0);
        let key = ("checkout".to_string(), Metric::RequestRate);
        // 600 minutes of steady traffic, then 30 silent minutes (no rows), then traffic.
        let mut points = BTreeMap::new();
        points.insert(key.clone(), minutes((0..600).map(|m| (m, steady(m)))));
        monitor.feed(points, 630 * MINUTE_NS);
        let mut points = BTreeMap::new();
        points.insert(key.clone(), minutes((630..700).map(|m| (m, steady(m)))));
        monitor.feed(points, 700 * MINUTE_NS);

        let events: Vec<&Anomaly> = monitor.anomalies().collect();
        assert_eq!(events.len(), 1, "{events:?}");
        let a = events[0];
        assert_eq!(a.start_ns, 600 * MINUTE_NS);
        assert_eq!(a.end_ns, Some(630 * MINUTE_NS));
        assert_eq!(a.minutes, 30);
        assert_eq!(a.observed, 0.0);
        assert!(a.expected > 45.0 && a.lower > 0.0, "{a:?}");
        assert_eq!(a.severity(), "critical");
        // Every minute was scored once, zeros included.
        assert_eq!(monitor.scores().count(), 700);
    }

    #[test]
    fn minutes_scored_in_chunks_score_as_in_one_pass() {
        let series = |from: i64, to: i64| {
            let mut points = BTreeMap::new();
            let rate = (from..to).filter(|m| !(400..420).contains(m));
            points.insert(
                ("a".to_string(), Metric::RequestRate),
                minutes(rate.map(|m| (m, steady(m)))),
            );
            points.insert(
                ("a".to_string(), Metric::P95Latency),
                minutes((from..to).map(|m| (m, if m == 500 { 400.0 } else { steady(m) }))),
            );
            points
        };
        let mut whole = Monitor::new(0);
        whole.feed(series(0, 700), 700 * MINUTE_NS);
        let mut chunked = Monitor::new(0);
        for c in 0..7 {
            chunked.feed(series(c * 100, c * 100 + 100), (c * 100 + 100) * MINUTE_NS);
        }
        let sorted = |m: &Monitor| {
            let mut s: Vec<ScoredMinute> = m.scores().cloned().collect();
            s.sort_by_key(|p| (p.metric, p.time_ns));
            s
        };
        let (a, b) = (sorted(&whole), sorted(&chunked));
        assert_eq!(a.len(), 1400);
        assert!(a == b, "scores differ");
        assert!(whole.events == chunked.events, "{:?}", chunked.events);
        let found: Vec<(Metric, i64)> = whole
            .anomalies()
            .map(|a| (a.metric, a.start_ns / MINUTE_NS))
            .collect();
        assert_eq!(
            found,
            [(Metric::RequestRate, 400), (Metric::P95Latency, 500)]
        );
    }

    #[test]
    fn gauges_skip_missing_minutes_and_old_minutes_are_not_fed_twice() {
        let mut monitor = Monitor::new(0);
        let key = ("api".to_string(), Metric::P95Latency);
        let mut points = BTreeMap::new();
        points.insert(
            key.clone(),
            minutes((0..300).step_by(2).map(|m| (m, steady(m)))),
        );
        assert_eq!(monitor.feed(points, 300 * MINUTE_NS), 150);
        let mut points = BTreeMap::new();
        points.insert(key.clone(), minutes((290..310).map(|m| (m, steady(m)))));
        assert_eq!(monitor.feed(points, 310 * MINUTE_NS), 11);
        assert_eq!(monitor.anomalies().count(), 0);
        let batch = monitor.scores_batch().unwrap();
        assert_eq!(batch.num_rows(), 161);
        assert_eq!(
            monitor.anomalies_batch().unwrap().schema(),
            anomalies_schema()
        );
    }
}
