//! Live recommendations: every service's observed load, replicas and capacity read with SQL,
//! combined with its published forecast by the [`Recommender`], and published as the
//! `recommendations` and `recommendation_schedule` tables and on the [`Board`] the HTTP API
//! and the KEDA scaler read.
//!
//! What is observed, per service, over the last [`LEARNING_DAYS`] days of minutes:
//! - requests per second and distinct `service.instance.id`s serving (from `server_requests`);
//! - whether the minute met the latency objective: the service's latency SLO if it has one,
//!   else 95 % of requests good and within its Apdex threshold;
//! - mean CPU utilisation and instances, where CPU metrics exist (`service_saturation_1m`).
//!
//! The last complete minute gives the load and the replicas now; capacities are learned again
//! every `--scaling-learn-interval-seconds`, and when a new service shows up.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit};
use tokio::sync::watch;

use super::config::ScalingConfig;
use super::recommend::{
    Capacity, Input, Minute, Observed, Recommendation, Recommender, learn_capacity,
};
use crate::error::QueryError;
use crate::forecast::live::{Metric, ServiceForecast};
use crate::{KpiSettings, QueryEngine};

pub const TABLE: &str = "recommendations";
pub const SCHEDULE_TABLE: &str = "recommendation_schedule";

/// Days of minutes a capacity is learned from.
pub const LEARNING_DAYS: i64 = 7;

const MINUTE_NS: i64 = 60_000_000_000;

/// The latest recommendations, for readers that want them whole (the API) or want to be told
/// when they change (the KEDA scaler's streams).
#[derive(Debug, Clone)]
pub struct Board {
    tx: Arc<watch::Sender<Arc<Vec<Recommendation>>>>,
}

impl Default for Board {
    fn default() -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(Arc::new(Vec::new()))),
        }
    }
}

impl Board {
    pub fn publish(&self, recommendations: Vec<Recommendation>) {
        self.tx.send_replace(Arc::new(recommendations));
    }

    pub fn all(&self) -> Arc<Vec<Recommendation>> {
        self.tx.borrow().clone()
    }

    pub fn get(&self, service: &str) -> Option<Recommendation> {
        self.tx
            .borrow()
            .iter()
            .find(|r| r.service_name == service)
            .cloned()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Vec<Recommendation>>> {
        self.tx.subscribe()
    }

    /// The count to act on for `service` at `now_ns`: none for an unknown service, a service
    /// without a count, or a recommendation older than `max_age_ns` (refreshes have stopped
    /// working; an autoscaler should fall back rather than hold a stale count).
    /// The recommendation comes with the count, read together.
    pub fn replicas(
        &self,
        service: &str,
        now_ns: i64,
        max_age_ns: i64,
    ) -> Result<(u32, Recommendation), NoCount> {
        let rec = self.get(service).ok_or_else(|| NoCount::Unknown {
            service: service.to_owned(),
        })?;
        let age_ns = now_ns.saturating_sub(rec.generated_at_ns);
        if age_ns > max_age_ns {
            return Err(NoCount::Stale {
                service: service.to_owned(),
                age_seconds: age_ns / 1_000_000_000,
            });
        }
        match rec.recommended_replicas {
            Some(n) => Ok((n, rec)),
            None => Err(NoCount::Unavailable {
                service: service.to_owned(),
                reasons: rec.reasons.join("; "),
            }),
        }
    }
}

/// Why there is no count to act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoCount {
    #[error("no recommendation for service {service:?}: Headroom has seen no requests of it")]
    Unknown { service: String },
    #[error("no replica count for service {service:?}: {reasons}")]
    Unavailable { service: String, reasons: String },
    #[error(
        "the recommendation for service {service:?} is {age_seconds} s old: refreshes are \
         failing, see the server log"
    )]
    Stale { service: String, age_seconds: i64 },
}

/// The latency objective a minute is judged healthy by: (threshold ms, share of requests).
fn latency_objective(kpi: &KpiSettings, service: &str) -> (f64, f64) {
    let slo = kpi
        .slos
        .slos
        .iter()
        .find(|s| s.service == service && s.indicator == crate::slo::Indicator::Latency);
    if let Some(s) = slo
        && let Some(ns) = s.latency_threshold_ns
    {
        return (ns as f64 / 1e6, s.objective);
    }
    let apdex = kpi
        .service_apdex_threshold_ms
        .iter()
        .find(|(s, _)| s == service)
        .map_or(kpi.apdex_threshold_ms, |(_, ms)| *ms);
    (apdex, 0.95)
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Per service and minute: requests, instances, requests good within the latency threshold.
fn requests_query(kpi: &KpiSettings, from_ns: i64, to_ns: i64) -> String {
    let mut services: Vec<&str> = kpi.slos.slos.iter().map(|s| s.service.as_str()).collect();
    services.extend(
        kpi.service_apdex_threshold_ms
            .iter()
            .map(|(s, _)| s.as_str()),
    );
    services.sort_unstable();
    services.dedup();
    let default_ns = kpi.apdex_threshold_ms * 1e6;
    let threshold = if services.is_empty() {
        default_ns.to_string()
    } else {
        let cases: String = services
            .into_iter()
            .map(|s| {
                format!(
                    " WHEN {} THEN {}",
                    quoted(s),
                    latency_objective(kpi, s).0 * 1e6
                )
            })
            .collect();
        format!("CASE service_name{cases} ELSE {default_ns} END")
    };
    format!(
        "SELECT service_name, \
         CAST(date_bin(INTERVAL '1 minute', start_time, TIMESTAMP '1970-01-01T00:00:00Z') AS BIGINT) AS t, \
         count(*) AS requests, \
         count(DISTINCT service_instance_id) AS instances, \
         sum(CASE WHEN NOT is_bad AND duration_ns <= {threshold} THEN 1 ELSE 0 END) AS good \
         FROM server_requests \
         WHERE start_time >= to_timestamp_nanos({from_ns}) AND start_time < to_timestamp_nanos({to_ns}) \
         GROUP BY 1, 2"
    )
}

fn cpu_query(from_ns: i64, to_ns: i64) -> String {
    format!(
        "SELECT service_name, CAST(\"time\" AS BIGINT) AS t, \
         avg(cpu_utilization) AS cpu, count(DISTINCT instance) AS instances \
         FROM service_saturation_1m \
         WHERE \"time\" >= to_timestamp_nanos({from_ns}) AND \"time\" < to_timestamp_nanos({to_ns}) \
         AND cpu_utilization IS NOT NULL \
         GROUP BY 1, 2"
    )
}

/// One service's minutes, by start time.
#[derive(Debug, Default)]
struct Minutes {
    requests: BTreeMap<i64, (f64, u32, f64)>,
    cpu: BTreeMap<i64, (f64, u32)>,
}

/// One row of the queries above: service, minute, value, instances and (requests only) the
/// good requests.
type Row = (String, i64, f64, u32, f64);

/// The rows of `batches`, leaving out those without a service, minute or value.
fn rows(batches: &[RecordBatch]) -> Result<Vec<Row>, QueryError> {
    let mut out = Vec::new();
    for batch in batches {
        let cast = |i: usize, to: &DataType| arrow::compute::cast(batch.column(i), to);
        let names = cast(0, &DataType::Utf8)?;
        let (t, value, instances) = (
            cast(1, &DataType::Int64)?,
            cast(2, &DataType::Float64)?,
            cast(3, &DataType::Int64)?,
        );
        let good = match batch.num_columns() {
            5 => Some(cast(4, &DataType::Float64)?),
            _ => None,
        };
        let names = names.as_string::<i32>();
        let (t, value, instances) = (
            t.as_primitive::<Int64Type>(),
            value.as_primitive::<Float64Type>(),
            instances.as_primitive::<Int64Type>(),
        );
        let good = good.as_ref().map(|g| g.as_primitive::<Float64Type>());
        for row in 0..batch.num_rows() {
            if names.is_null(row) || t.is_null(row) || value.is_null(row) {
                continue;
            }
            out.push((
                names.value(row).to_owned(),
                t.value(row),
                value.value(row),
                u32::try_from(instances.value(row)).unwrap_or(u32::MAX),
                good.map_or(0.0, |g| g.value(row)),
            ));
        }
    }
    Ok(out)
}

/// Reads every service's minutes over `[from, to)`.
async fn minutes(
    engine: &QueryEngine,
    kpi: &KpiSettings,
    from_ns: i64,
    to_ns: i64,
) -> Result<BTreeMap<String, Minutes>, QueryError> {
    let mut out: BTreeMap<String, Minutes> = BTreeMap::new();
    let requests = engine.sql(&requests_query(kpi, from_ns, to_ns)).await?;
    for (service, t, count, instances, good) in rows(&requests)? {
        out.entry(service)
            .or_default()
            .requests
            .insert(t, (count, instances, good));
    }
    // CPU is optional: without the metrics (or with a failing view) capacity comes from
    // latency.
    match engine.sql(&cpu_query(from_ns, to_ns)).await {
        Ok(cpu) => {
            for (service, t, utilization, instances, _) in rows(&cpu)? {
                out.entry(service)
                    .or_default()
                    .cpu
                    .insert(t, (utilization, instances));
            }
        }
        Err(e) => tracing::warn!(error = %e, "no CPU utilisation for capacity learning"),
    }
    Ok(out)
}

impl Minutes {
    /// The minutes as capacity learning sees them.
    fn learning(&self, objective: f64) -> Vec<Minute> {
        self.requests
            .iter()
            .map(|(t, (requests, instances, good))| {
                let cpu = self.cpu.get(t);
                Minute {
                    requests_per_second: requests / 60.0,
                    instances: if *instances > 0 {
                        *instances
                    } else {
                        cpu.map_or(0, |c| c.1)
                    },
                    healthy: *requests > 0.0 && good / requests >= objective,
                    cpu_utilization: cpu.map(|c| c.0),
                }
            })
            .collect()
    }

    /// The load and replicas of the last complete minute (`last`), and the busiest minute
    /// since `window_from`.
    fn observed(&self, last: i64, window_from: i64) -> Observed {
        let rate = |t: &i64| self.requests.get(t).map_or(0.0, |r| r.0 / 60.0);
        let from_spans = self.requests.get(&last).map_or(0, |r| r.1);
        let from_metrics = self.cpu.get(&last).map_or(0, |c| c.1);
        let replicas = [from_spans, from_metrics].into_iter().find(|n| *n > 0);
        Observed {
            replicas,
            load: rate(&last),
            window_peak_load: self
                .requests
                .range(window_from..=last)
                .map(|(_, r)| r.0 / 60.0)
                .fold(rate(&last), f64::max),
        }
    }
}

/// What refreshes keep between rounds: the recommender's windows, the learned capacities and
/// the services seen over the learning window.
#[derive(Debug, Default)]
pub struct Live {
    /// How often capacities are learned again: a scan of [`LEARNING_DAYS`] of requests, too
    /// much for every refresh.
    learn_every_ns: i64,
    recommender: Recommender,
    learned: BTreeMap<String, Capacity>,
    seen: std::collections::BTreeSet<String>,
    learned_at_ns: Option<i64>,
}

impl Live {
    pub fn new(learn_every_seconds: u64) -> Self {
        Self {
            learn_every_ns: learn_every_seconds as i64 * 1_000_000_000,
            ..Self::default()
        }
    }
}

/// Recommends for every service seen in the last [`LEARNING_DAYS`] or with a requests
/// forecast, publishes the tables and the board; returns the recommendations made.
pub async fn refresh(
    engine: &QueryEngine,
    forecasts: &[ServiceForecast],
    config: &ScalingConfig,
    kpi: &KpiSettings,
    live: &mut Live,
    interval_seconds: u64,
    now_ns: i64,
) -> Result<usize, QueryError> {
    let end = now_ns.div_euclid(MINUTE_NS) * MINUTE_NS;
    // The last minute and the longest scale-down window before it.
    let window_ns = std::iter::once(&config.defaults)
        .chain(config.services.iter().map(|(_, p)| p))
        .map(|p| p.scale_down_stabilization_seconds as i64 * 1_000_000_000)
        .max()
        .unwrap_or(0);
    let recent = minutes(engine, kpi, end - MINUTE_NS - window_ns, end).await?;
    // Learned again when due, or when a service shows up that was not there.
    if live
        .learned_at_ns
        .is_none_or(|t| now_ns - t >= live.learn_every_ns)
        || recent.keys().any(|s| !live.seen.contains(s))
    {
        let history = minutes(engine, kpi, end - LEARNING_DAYS * 1440 * MINUTE_NS, end).await?;
        live.learned = history
            .iter()
            .filter_map(|(service, minutes)| {
                let (threshold_ms, objective) = latency_objective(kpi, service);
                learn_capacity(&minutes.learning(objective), threshold_ms, objective)
                    .map(|c| (service.clone(), c))
            })
            .collect();
        live.seen = history.into_keys().collect();
        live.learned_at_ns = Some(now_ns);
    }
    let mut services: Vec<&str> = live.seen.iter().map(String::as_str).collect();
    services.extend(recent.keys().map(String::as_str));
    services.extend(
        forecasts
            .iter()
            .filter(|f| f.metric == Metric::Requests)
            .map(|f| f.service.as_str()),
    );
    services.sort_unstable();
    services.dedup();
    let empty = Minutes::default();
    let recommendations: Vec<Recommendation> = services
        .into_iter()
        .map(|service| {
            let policy = config.policy(service);
            let window_ns = policy.scale_down_stabilization_seconds as i64 * 1_000_000_000;
            let input = Input {
                service,
                policy,
                forecast: forecasts
                    .iter()
                    .find(|f| f.service == service && f.metric == Metric::Requests),
                observed: recent
                    .get(service)
                    .unwrap_or(&empty)
                    .observed(end - MINUTE_NS, end - MINUTE_NS - window_ns),
                learned: live.learned.get(service),
                interval_seconds,
            };
            live.recommender.recommend(&input, now_ns)
        })
        .collect();
    engine.publish_recommendations(batch(&recommendations)?, schedule_batch(&recommendations)?)?;
    let made = recommendations.len();
    engine.recommendations().publish(recommendations);
    Ok(made)
}

fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn schema() -> SchemaRef {
    let int = |name: &str| Field::new(name, DataType::Int64, true);
    let float = |name: &str, nullable: bool| Field::new(name, DataType::Float64, nullable);
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("service_name", false),
        Field::new("generated_at", time_type(), false),
        text("mode", false),
        int("current_replicas"),
        int("recommended_replicas"),
        int("forecast_replicas"),
        int("floor_replicas"),
        float("load_now", false),
        float("load_forecast", true),
        float("quantile", false),
        Field::new("lead_time_seconds", DataType::Int64, false),
        float("target_utilization", false),
        Field::new("min_replicas", DataType::Int64, false),
        Field::new("max_replicas", DataType::Int64, false),
        float("capacity_per_replica", true),
        text("capacity_source", true),
        text("confidence", false),
        text("model", true),
        float("validation_mase", true),
        text("reasons", false),
    ]))
}

fn schedule_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("service_name", DataType::Utf8, false),
        Field::new("time", time_type(), false),
        Field::new("until", time_type(), false),
        Field::new("load", DataType::Float64, false),
        Field::new("replicas", DataType::Int64, false),
        Field::new("generated_at", time_type(), false),
    ]))
}

fn times(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(values).with_timezone("UTC"))
}

/// The recommendations as rows of the `recommendations` table.
pub fn batch(recs: &[Recommendation]) -> Result<RecordBatch, QueryError> {
    let ints = |get: &dyn Fn(&Recommendation) -> Option<i64>| -> ArrayRef {
        Arc::new(recs.iter().map(get).collect::<Int64Array>())
    };
    let floats = |get: &dyn Fn(&Recommendation) -> Option<f64>| -> ArrayRef {
        Arc::new(recs.iter().map(get).collect::<Float64Array>())
    };
    let texts = |get: &dyn Fn(&Recommendation) -> Option<String>| -> ArrayRef {
        Arc::new(recs.iter().map(get).collect::<StringArray>())
    };
    let columns = vec![
        texts(&|r| Some(r.service_name.clone())),
        times(recs.iter().map(|r| r.generated_at_ns).collect()),
        texts(&|r| Some(r.mode.name().to_owned())),
        ints(&|r| r.current_replicas.map(i64::from)),
        ints(&|r| r.recommended_replicas.map(i64::from)),
        ints(&|r| r.forecast_replicas.map(i64::from)),
        ints(&|r| r.floor_replicas.map(i64::from)),
        floats(&|r| Some(r.load_now)),
        floats(&|r| r.load_forecast),
        floats(&|r| Some(r.quantile)),
        ints(&|r| Some(r.lead_time_seconds as i64)),
        floats(&|r| Some(r.target_utilization)),
        ints(&|r| Some(i64::from(r.min_replicas))),
        ints(&|r| Some(i64::from(r.max_replicas))),
        floats(&|r| r.capacity.as_ref().map(|c| c.per_replica)),
        texts(&|r| r.capacity.as_ref().map(|c| c.source.name().to_owned())),
        texts(&|r| Some(r.confidence.name().to_owned())),
        texts(&|r| r.model.clone()),
        floats(&|r| r.validation_mase),
        texts(&|r| Some(r.reasons.join("; "))),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// The schedules as rows of the `recommendation_schedule` table.
pub fn schedule_batch(recs: &[Recommendation]) -> Result<RecordBatch, QueryError> {
    let slots: Vec<_> = recs
        .iter()
        .flat_map(|r| r.schedule.iter().map(move |s| (r, s)))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            slots
                .iter()
                .map(|(r, _)| Some(r.service_name.as_str()))
                .collect::<StringArray>(),
        ),
        times(slots.iter().map(|(_, s)| s.from_ns).collect()),
        times(slots.iter().map(|(_, s)| s.to_ns).collect()),
        Arc::new(slots.iter().map(|(_, s)| s.load).collect::<Float64Array>()),
        Arc::new(
            slots
                .iter()
                .map(|(_, s)| i64::from(s.replicas))
                .collect::<Int64Array>(),
        ),
        times(slots.iter().map(|(r, _)| r.generated_at_ns).collect()),
    ];
    Ok(RecordBatch::try_new(schedule_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaling::config::ServicePolicy;

    const S: i64 = 1_000_000_000;

    fn recommend(service: &str, policy: &ServicePolicy, now_ns: i64) -> Recommendation {
        Recommender::default().recommend(
            &Input {
                service,
                policy,
                forecast: None,
                observed: Observed {
                    replicas: None,
                    load: 90.0,
                    window_peak_load: 90.0,
                },
                learned: None,
                interval_seconds: 60,
            },
            now_ns,
        )
    }

    #[test]
    fn the_board_serves_fresh_counts_only() {
        let board = Board::default();
        let sized = ServicePolicy {
            capacity_per_replica: Some(50.0),
            ..ServicePolicy::default()
        };
        board.publish(vec![
            recommend("shop", &sized, 1000 * S),
            recommend("cart", &ServicePolicy::default(), 1000 * S),
        ]);
        // 90 requests/s at 80 % of 50: 3 replicas.
        assert_eq!(
            board.replicas("shop", 1100 * S, 300 * S).map(|(n, _)| n),
            Ok(3)
        );
        assert!(matches!(
            board.replicas("shop", 1301 * S, 300 * S),
            Err(NoCount::Stale {
                age_seconds: 301,
                ..
            })
        ));
        // No capacity and no replicas observed: no count, with the reason.
        let e = board.replicas("cart", 1100 * S, 300 * S).unwrap_err();
        assert!(matches!(e, NoCount::Unavailable { .. }));
        assert!(e.to_string().contains("capacity_per_replica"), "{e}");
        assert!(matches!(
            board.replicas("nobody", 1100 * S, 300 * S),
            Err(NoCount::Unknown { .. })
        ));
    }
}
