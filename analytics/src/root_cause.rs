//! Root causes: which values of which dimensions explain a change in what a service served.
//!
//! Contribution analysis in the manner of Adtributor (Bhagwan et al., NSDI 2014) and
//! ThirdEye: a service's bad requests (failed, slow, or simply requests) in the window of an
//! incident are compared with the hour before it. For each value v of each dimension
//! (endpoint, `service.version`, instance, error type, HTTP and gRPC status, and the
//! downstream dependency), with F the bad requests the baseline rate predicts for the window
//! and A those observed:
//! - **explanatory power** `EP = (A_v − F_v) / (A − F)`: the share of the change it accounts
//!   for;
//! - **surprise**: the Jensen–Shannon term of v's share of bad requests before (`p`) and
//!   during (`q`) the window, `½ (p log 2p/(p+q) + q log 2q/(p+q))` (half a request added to
//!   every count, so a value never seen before is surprising rather than undefined).
//!
//! Causes are ranked by `EP × surprise`: a value that accounts for the change and whose share
//! moved. A version that did not exist before and carries all the new errors scores high; an
//! endpoint that always carried half the errors and now carries all of them, less.
//!
//! The downstream dimension ties a failed request to the dependencies whose calls failed within
//! it, and a slow one to those whose calls were slower than their baseline p95. It follows the
//! origin: if most of the new bad requests of a service come with a bad call to X, and most of
//! X's with a bad call to Y, the cause is the path service → X → Y, named by its last hop.
//! Bad requests without such a call are `(none)`: they start in the service itself.

use datafusion::common::ScalarValue;
use serde_json::Value;

use crate::QueryEngine;
use crate::error::QueryError;

/// What counts as a bad request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// Failed requests (`is_bad`).
    Errors,
    /// Requests slower than a threshold (nanoseconds), or failed; without a threshold, slower
    /// than the baseline's p95.
    Slow { threshold_ns: Option<i64> },
    /// Every request: a change in load.
    Requests,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Errors => "errors",
            Signal::Slow { .. } => "slow requests",
            Signal::Requests => "requests",
        }
    }
}

/// The question: why did `service`'s bad requests change in `[from_ns, to_ns)` against
/// `[baseline_from_ns, from_ns)`?
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub service: String,
    pub signal: Signal,
    pub baseline_from_ns: i64,
    pub from_ns: i64,
    pub to_ns: i64,
}

/// One value of one dimension, with the numbers behind its rank.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cause {
    pub dimension: &'static str,
    pub value: String,
    /// For `downstream`: the services the failure came through, from the service asked about.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
    pub explanatory_power: f64,
    pub surprise: f64,
    pub score: f64,
    /// Bad requests with this value before (the whole baseline) and in the window, and what
    /// the baseline rate predicted for the window.
    pub bad_before: f64,
    pub bad_during: f64,
    pub bad_expected: f64,
    /// This value's share of the bad requests before and during.
    pub share_before: f64,
    pub share_during: f64,
}

/// The answer: the totals and the causes, best first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Explanation {
    pub service: String,
    pub signal: &'static str,
    /// The threshold slow requests were judged by, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_threshold_ms: Option<f64>,
    pub bad_before: f64,
    pub bad_during: f64,
    pub bad_expected: f64,
    pub requests_before: f64,
    pub requests_during: f64,
    /// Where the change came from: endpoint, version, instance, downstream dependency.
    pub causes: Vec<Cause>,
    /// How the bad requests looked: error type, HTTP and gRPC status.
    pub symptoms: Vec<Cause>,
}

/// Values carrying less of the change than this are not causes.
const MIN_EXPLANATORY_POWER: f64 = 0.1;
/// A downstream hop is followed when it carries at least this much of the change.
const FOLLOW_EXPLANATORY_POWER: f64 = 0.5;
/// Pseudo-count added to each value's bad requests for the shares.
const SMOOTHING: f64 = 0.5;
/// The longest downstream path followed.
const MAX_DEPTH: usize = 6;

/// (name, SQL expression over `server_requests`, whether it is a symptom). Symptoms say how
/// requests failed rather than where: they apply to errors only and are ranked apart from
/// the causes.
const DIMENSIONS: [(&str, &str, bool); 6] = [
    ("endpoint", "endpoint", false),
    (
        "service.version",
        "COALESCE(service_version, '(none)')",
        false,
    ),
    ("instance", "COALESCE(service_instance_id, '(none)')", false),
    (
        "error.type",
        "COALESCE(error_type, CASE WHEN status_code = 'ERROR' THEN 'span status ERROR' ELSE '(none)' END)",
        true,
    ),
    (
        "http.response.status_code",
        "COALESCE(CAST(http_response_status_code AS VARCHAR), '(none)')",
        true,
    ),
    (
        "rpc.grpc.status_code",
        "COALESCE(CAST(rpc_grpc_status_code AS VARCHAR), '(none)')",
        true,
    ),
];

fn ts(ns: i64) -> String {
    format!("to_timestamp_nanos({ns})")
}

/// Bad requests (and requests) with one value of a dimension, before and during.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueCounts {
    pub value: String,
    pub bad_before: f64,
    pub bad_during: f64,
    pub requests_before: f64,
    pub requests_during: f64,
}

/// The rows of `sql`, with `$1` bound to `name` (a service or an id).
async fn query(engine: &QueryEngine, sql: &str, name: &str) -> Result<Vec<Vec<Value>>, QueryError> {
    let params = vec![ScalarValue::Utf8(Some(name.to_owned()))];
    Ok(engine.sql_json_params(sql, params).await?.rows)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The SQL condition of a bad request.
fn bad_condition(signal: Signal, threshold_ns: Option<i64>) -> String {
    match (signal, threshold_ns) {
        (Signal::Errors, _) => "is_bad".into(),
        (Signal::Slow { .. }, Some(t)) => format!("(is_bad OR duration_ns > {t})"),
        (Signal::Slow { .. }, None) | (Signal::Requests, _) => "true".into(),
    }
}

/// The baseline's p95 duration of the service, for slow requests without a threshold.
async fn baseline_p95_ns(
    engine: &QueryEngine,
    service: &str,
    q: &Question,
) -> Result<Option<i64>, QueryError> {
    let sql = format!(
        "SELECT CAST(percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ns) AS DOUBLE) \
         FROM server_requests WHERE service_name = $1 AND start_time >= {b0} AND start_time < {a0}",
        b0 = ts(q.baseline_from_ns),
        a0 = ts(q.from_ns),
    );
    let r = query(engine, &sql, service).await?;
    Ok(r.first().and_then(|row| row[0].as_f64()).map(|t| t as i64))
}

/// Counts per value of every request dimension, in one query.
async fn dimension_counts(
    engine: &QueryEngine,
    q: &Question,
    bad: &str,
) -> Result<Vec<(&'static str, Vec<ValueCounts>)>, QueryError> {
    let selects: Vec<String> = DIMENSIONS
        .iter()
        .filter(|(_, _, symptom)| !symptom || q.signal == Signal::Errors)
        .map(|(name, expr, _)| {
            format!(
                "SELECT '{name}' AS dimension, CAST({expr} AS VARCHAR) AS value, \
                 sum(CASE WHEN start_time < {a0} AND {bad} THEN 1 ELSE 0 END) AS bad_before, \
                 sum(CASE WHEN start_time >= {a0} AND {bad} THEN 1 ELSE 0 END) AS bad_during, \
                 sum(CASE WHEN start_time < {a0} THEN 1 ELSE 0 END) AS requests_before, \
                 sum(CASE WHEN start_time >= {a0} THEN 1 ELSE 0 END) AS requests_during \
                 FROM server_requests \
                 WHERE service_name = $1 AND start_time >= {b0} AND start_time < {a1} \
                 GROUP BY 1, 2",
                b0 = ts(q.baseline_from_ns),
                a0 = ts(q.from_ns),
                a1 = ts(q.to_ns),
            )
        })
        .collect();
    let all = query(engine, &selects.join(" UNION ALL "), &q.service).await?;
    let mut out: Vec<(&'static str, Vec<ValueCounts>)> = DIMENSIONS
        .iter()
        .map(|(name, _, _)| (*name, Vec::new()))
        .collect();
    for row in all {
        if let Some((_, counts)) = out.iter_mut().find(|(name, _)| *name == row[0]) {
            counts.push(ValueCounts {
                value: text(&row[1]),
                bad_before: num(&row[2]),
                bad_during: num(&row[3]),
                requests_before: num(&row[4]),
                requests_during: num(&row[5]),
            });
        }
    }
    Ok(out)
}

/// How a bad request is tied to a downstream dependency.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Attribution {
    /// A failed request, to every dependency whose call failed within it.
    Failed,
    /// A request slower than the threshold (ns), to every dependency whose call within it was
    /// slower than that dependency's calls' baseline p95.
    Slower(i64),
}

/// Bad requests of `service` per downstream dependency (the callee's service, or the virtual
/// node the call went to; `(none)` for bad requests without such a call).
async fn downstream_counts(
    engine: &QueryEngine,
    service: &str,
    q: &Question,
    how: Attribution,
) -> Result<Vec<ValueCounts>, QueryError> {
    // Spans of one request start within 15 minutes of it (as service_graph_1m pairs them).
    let margin = 15 * 60_000_000_000;
    let a0 = ts(q.from_ns);
    let (bad, call_filter, attributed) = match how {
        Attribution::Failed => (
            "is_bad".to_owned(),
            "AND c.is_error",
            "SELECT DISTINCT b.span_id, b.start_time, COALESCE(x.callee, '(none)') AS callee \
             FROM bad b LEFT JOIN calls x \
               ON x.trace_id = b.trace_id AND x.start_time >= b.start_time AND x.start_time <= b.end_time"
                .to_owned(),
        ),
        Attribution::Slower(threshold) => (
            format!("duration_ns > {threshold}"),
            "",
            format!(
                "SELECT DISTINCT b.span_id, b.start_time, COALESCE(x.callee, '(none)') AS callee \
                 FROM bad b LEFT JOIN ( \
                   SELECT c.trace_id, c.start_time, c.callee FROM calls c \
                   JOIN (SELECT callee, percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ns) AS p95 \
                         FROM calls WHERE start_time < {a0} GROUP BY callee) n \
                     ON n.callee = c.callee \
                   WHERE c.duration_ns > n.p95) x \
                   ON x.trace_id = b.trace_id AND x.start_time >= b.start_time AND x.start_time <= b.end_time"
            ),
        ),
    };
    let sql = format!(
        "WITH bad AS ( \
           SELECT trace_id, span_id, start_time, end_time FROM server_requests \
           WHERE service_name = $1 AND {bad} AND start_time >= {b0} AND start_time < {a1}), \
         calls AS ( \
           SELECT c.trace_id, c.start_time, c.duration_ns, \
                  COALESCE(e.service_name, c.peer_service, c.server_address, c.db_system, 'unknown') AS callee \
           FROM spans c LEFT JOIN spans e \
             ON e.trace_id = c.trace_id AND e.parent_span_id = c.span_id \
            AND e.span_kind IN ('SERVER', 'CONSUMER') AND e.start_time >= {b0} AND e.start_time < {a1m} \
           WHERE c.service_name = $1 AND c.span_kind IN ('CLIENT', 'PRODUCER') {call_filter} \
             AND c.start_time >= {b0} AND c.start_time < {a1m}), \
         attributed AS ({attributed}) \
         SELECT callee, \
           sum(CASE WHEN start_time < {a0} THEN 1 ELSE 0 END), \
           sum(CASE WHEN start_time >= {a0} THEN 1 ELSE 0 END) \
         FROM attributed GROUP BY 1",
        b0 = ts(q.baseline_from_ns),
        a1 = ts(q.to_ns),
        a1m = ts(q.to_ns + margin),
    );
    Ok(query(engine, &sql, service)
        .await?
        .iter()
        .map(|r| ValueCounts {
            value: text(&r[0]),
            bad_before: num(&r[1]),
            bad_during: num(&r[2]),
            requests_before: 0.0,
            requests_during: 0.0,
        })
        .collect())
}

fn js_term(p: f64, q: f64) -> f64 {
    let m = (p + q) / 2.0;
    let part = |x: f64| if x > 0.0 { x * (x / m).ln() } else { 0.0 };
    0.5 * (part(p) + part(q))
}

/// Adtributor's measures for every value of one dimension; `scale` turns baseline counts into
/// the window's expected counts. Values with too little explanatory power are left out.
pub fn contributions(dimension: &'static str, counts: &[ValueCounts], scale: f64) -> Vec<Cause> {
    let before: f64 = counts.iter().map(|c| c.bad_before).sum();
    let during: f64 = counts.iter().map(|c| c.bad_during).sum();
    let expected = before * scale;
    let change = during - expected;
    // A fall is explained as a rise is (a drop in requests by the endpoint that lost them);
    // no change, or one value all along, tells nothing.
    if change.abs() < 0.5 || counts.len() < 2 && counts.iter().all(|c| c.bad_before > 0.0) {
        return Vec::new();
    }
    let k = counts.len() as f64;
    let mut out: Vec<Cause> = counts
        .iter()
        .map(|c| {
            let (b, d) = (c.bad_before, c.bad_during);
            let expected_v = b * scale;
            let p = (expected_v + SMOOTHING * scale) / (expected + k * SMOOTHING * scale);
            let q = (d + SMOOTHING) / (during + k * SMOOTHING);
            let ep = (d - expected_v) / change;
            let surprise = js_term(p, q);
            Cause {
                dimension,
                value: c.value.clone(),
                path: Vec::new(),
                explanatory_power: ep,
                surprise,
                score: ep.max(0.0) * surprise,
                bad_before: b,
                bad_during: d,
                bad_expected: expected_v,
                share_before: if before > 0.0 { b / before } else { 0.0 },
                share_during: if during > 0.0 { d / during } else { 0.0 },
            }
        })
        .filter(|c| c.explanatory_power >= MIN_EXPLANATORY_POWER)
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// How long after its start an incident is looked at, and how long a baseline before it.
pub const WINDOW_NS: i64 = 60 * 60_000_000_000;

/// The question an incident (`<slo>@<YYYYMMDDTHHMM>Z`, from `incidents`) or an anomaly
/// (`<service>:<metric>@<YYYYMMDDTHHMM>Z`, from `anomalies`) asks; None for an unknown id.
/// The window is the first hour of it (up to `now_ns`), the baseline the hour before.
pub async fn question_for(
    engine: &QueryEngine,
    id: &str,
    now_ns: i64,
) -> Result<Option<Question>, QueryError> {
    let is_anomaly = id.split('@').next().is_some_and(|head| head.contains(':'));
    let sql = if is_anomaly {
        format!(
            "SELECT service_name, metric, NULL, CAST(start_time AS BIGINT), CAST(end_time AS BIGINT) \
             FROM {table} WHERE anomaly_id = $1",
            table = crate::anomaly::live::TABLE,
        )
    } else {
        "SELECT i.service_name, o.indicator, CAST(o.latency_threshold_ns AS BIGINT), \
                CAST(i.started_at AS BIGINT), CAST(i.resolved_at AS BIGINT) \
         FROM incidents i JOIN slo_objectives o ON o.slo_name = i.slo_name \
         WHERE i.incident_id = $1"
            .to_owned()
    };
    let found = query(engine, &sql, id).await?;
    let Some(row) = found.first() else {
        return Ok(None);
    };
    let from_ns = num(&row[3]) as i64;
    let end_ns = row[4].as_i64().unwrap_or(now_ns);
    let to_ns = end_ns
        .min(from_ns + WINDOW_NS)
        .min(now_ns)
        .max(from_ns + 60_000_000_000);
    let signal = match row[1].as_str() {
        Some("error_ratio" | "availability") => Signal::Errors,
        Some("p95_ms") => Signal::Slow { threshold_ns: None },
        Some("latency") => Signal::Slow {
            threshold_ns: row[2].as_i64(),
        },
        _ => Signal::Requests,
    };
    Ok(Some(Question {
        service: text(&row[0]),
        signal,
        baseline_from_ns: from_ns - WINDOW_NS,
        from_ns,
        to_ns,
    }))
}

/// Ranks the causes of the change in `q.service`'s bad requests.
pub async fn explain(engine: &QueryEngine, q: &Question) -> Result<Explanation, QueryError> {
    let threshold_ns = match q.signal {
        Signal::Slow {
            threshold_ns: Some(t),
        } => Some(t),
        Signal::Slow { threshold_ns: None } => baseline_p95_ns(engine, &q.service, q).await?,
        _ => None,
    };
    let bad = bad_condition(q.signal, threshold_ns);
    let scale = (q.to_ns - q.from_ns) as f64 / (q.from_ns - q.baseline_from_ns).max(1) as f64;
    let dimensions = dimension_counts(engine, q, &bad).await?;
    // Every request has one endpoint: that dimension's counts add up to the totals.
    let totals = |f: fn(&ValueCounts) -> f64| -> f64 {
        dimensions
            .iter()
            .find(|(name, _)| *name == "endpoint")
            .map_or(0.0, |(_, counts)| counts.iter().map(f).sum())
    };
    let (mut causes, mut symptoms) = (Vec::new(), Vec::new());
    for (name, counts) in &dimensions {
        let symptom = DIMENSIONS
            .iter()
            .any(|(n, _, symptom)| n == name && *symptom);
        if symptom {
            symptoms.extend(contributions(name, counts, scale));
        } else {
            causes.extend(contributions(name, counts, scale));
        }
    }
    let attribution = match (q.signal, threshold_ns) {
        (Signal::Errors, _) => Some(Attribution::Failed),
        (Signal::Slow { .. }, Some(t)) => Some(Attribution::Slower(t)),
        _ => None,
    };
    if let Some(how) = attribution {
        causes.extend(downstream(engine, q, scale, how).await?);
    }
    causes.sort_by(|a, b| b.score.total_cmp(&a.score));
    symptoms.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(Explanation {
        service: q.service.clone(),
        signal: q.signal.name(),
        slow_threshold_ms: threshold_ns
            .filter(|_| matches!(q.signal, Signal::Slow { .. }))
            .map(|t| t as f64 / 1e6),
        bad_before: totals(|c| c.bad_before),
        bad_during: totals(|c| c.bad_during),
        bad_expected: totals(|c| c.bad_before) * scale,
        requests_before: totals(|c| c.requests_before),
        requests_during: totals(|c| c.requests_during),
        causes,
        symptoms,
    })
}

/// The downstream dimension: for failed requests the dependencies whose calls failed, for
/// slow ones those whose calls were slower than they used to be. Each is followed while one
/// hop carries most of the change, and dependencies whose failures lead to the same place
/// count together under its name (checkout → payment → postgresql and product-catalog →
/// postgresql are both "postgresql").
async fn downstream(
    engine: &QueryEngine,
    q: &Question,
    scale: f64,
    how: Attribution,
) -> Result<Vec<Cause>, QueryError> {
    let counts = downstream_counts(engine, &q.service, q, how).await?;
    let mut paths: Vec<(String, Vec<String>, f64)> = Vec::new(); // (first hop, path, its EP)
    for cause in contributions("downstream", &counts, scale) {
        if cause.value == "(none)" {
            continue;
        }
        let mut path = vec![q.service.clone(), cause.value.clone()];
        while path.len() <= MAX_DEPTH {
            let hop = path.last().expect("never empty").clone();
            // Slow at the next hop means slower than that service's own baseline p95.
            let hop_how = match how {
                Attribution::Failed => Attribution::Failed,
                Attribution::Slower(_) => match baseline_p95_ns(engine, &hop, q).await? {
                    Some(t) => Attribution::Slower(t),
                    None => break,
                },
            };
            let next = downstream_counts(engine, &hop, q, hop_how).await?;
            let Some(top) = contributions("downstream", &next, scale)
                .into_iter()
                .find(|c| c.explanatory_power >= FOLLOW_EXPLANATORY_POWER)
            else {
                break;
            };
            if top.value == "(none)" || path.contains(&top.value) {
                break;
            }
            path.push(top.value);
        }
        paths.push((cause.value, path, cause.explanatory_power));
    }
    let end = |first: &str| {
        paths.iter().find(|(f, _, _)| f == first).map_or_else(
            || first.to_owned(),
            |(_, p, _)| p.last().expect("never empty").clone(),
        )
    };
    let mut merged: Vec<ValueCounts> = Vec::new();
    for c in &counts {
        let key = end(&c.value);
        match merged.iter_mut().find(|m| m.value == key) {
            Some(m) => {
                m.bad_before += c.bad_before;
                m.bad_during += c.bad_during;
            }
            None => merged.push(ValueCounts {
                value: key,
                ..c.clone()
            }),
        }
    }
    let mut causes = contributions("downstream", &merged, scale);
    for cause in &mut causes {
        if cause.value == "(none)" {
            // Bad requests without a bad call: they start in the service itself.
            cause.path = vec![q.service.clone()];
            continue;
        }
        // The path of the first hop that carries most of it.
        cause.path = paths
            .iter()
            .filter(|(_, p, _)| p.last() == Some(&cause.value))
            .max_by(|a, b| a.2.total_cmp(&b.2))
            .map(|(_, p, _)| p.clone())
            .unwrap_or_default();
    }
    Ok(causes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(rows: &[(&str, f64, f64)]) -> Vec<ValueCounts> {
        rows.iter()
            .map(|(v, b, d)| ValueCounts {
                value: v.to_string(),
                bad_before: *b,
                bad_during: *d,
                requests_before: 0.0,
                requests_during: 0.0,
            })
            .collect()
    }

    #[test]
    fn a_new_value_carrying_the_new_errors_ranks_above_a_value_whose_share_grew() {
        // An hour before, 10 errors split between two versions' worth of endpoints; in the
        // window (an hour too) 100, all on version 2.0.0, which did not exist before.
        let versions = counts(&[("1.0.0", 10.0, 0.0), ("2.0.0", 0.0, 100.0)]);
        let endpoints = counts(&[("/charge", 5.0, 100.0), ("/refund", 5.0, 0.0)]);
        let v = contributions("service.version", &versions, 1.0);
        let e = contributions("endpoint", &endpoints, 1.0);
        assert_eq!(v[0].value, "2.0.0");
        // EP = (100 − 0) / (100 − 10) = 1.111
        assert!((v[0].explanatory_power - 100.0 / 90.0).abs() < 1e-12);
        // p = (0 + 0.5) / (10 + 1) = 0.04545, q = (100 + 0.5) / (100 + 1) = 0.99505
        let (p, q): (f64, f64) = (0.5 / 11.0, 100.5 / 101.0);
        let m = (p + q) / 2.0;
        let js = 0.5 * (p * (p / m).ln() + q * (q / m).ln());
        assert!((v[0].surprise - js).abs() < 1e-12);
        assert_eq!(e[0].value, "/charge");
        assert!(v[0].score > e[0].score, "{v:?} {e:?}");
        // A value whose errors fell explains nothing.
        assert!(v.iter().all(|c| c.value != "1.0.0"));
    }

    #[test]
    fn a_drop_is_explained_by_the_value_that_lost_it() {
        // 600 requests an hour on two endpoints; in the window /b got none.
        let c = contributions(
            "endpoint",
            &counts(&[("/a", 300.0, 300.0), ("/b", 300.0, 0.0)]),
            1.0,
        );
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].value, "/b");
        assert!((c[0].explanatory_power - 1.0).abs() < 1e-12);
    }

    #[test]
    fn nothing_to_explain_without_a_change_or_with_one_value() {
        assert!(
            contributions(
                "endpoint",
                &counts(&[("/a", 10.0, 10.0), ("/b", 1.0, 1.0)]),
                1.0
            )
            .is_empty()
        );
        assert!(
            contributions("service.version", &counts(&[("1.0.0", 10.0, 50.0)]), 1.0).is_empty()
        );
        // The baseline rate is scaled to the window: 60 errors in an hour predict 10 in ten
        // minutes, so 10 in ten minutes is no change.
        assert!(
            contributions(
                "endpoint",
                &counts(&[("/a", 30.0, 5.0), ("/b", 30.0, 5.0)]),
                1.0 / 6.0
            )
            .is_empty()
        );
    }
}
