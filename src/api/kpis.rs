//! KPI endpoints over the KPI views: `GET /api/v1/services`,
//! `GET /api/v1/services/{service}/kpis?from=RFC3339&to=RFC3339` and `GET /api/v1/slos`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::common::ScalarValue;
use serde::Deserialize;
use serde_json::{Value, json};

use super::answer::{ApiState, error, parse_time, query_error, timestamp};

/// Every service that sent spans, when it was last seen, and its KPIs in the latest minute it
/// served requests (null for services that only call others).
pub async fn services(State(state): State<ApiState>) -> Response {
    const SQL: &str = "
        WITH seen AS (
            SELECT service_name, max(start_time) AS last_seen FROM spans GROUP BY service_name
        ),
        latest AS (
            SELECT service_name, max(\"time\") AS minute FROM service_kpi_1m GROUP BY service_name
        )
        SELECT s.service_name, s.last_seen, k.\"time\", k.requests, k.errors, k.availability,
               k.p50_ms, k.p95_ms, k.p99_ms, k.apdex, k.rate_per_second
        FROM seen s
        LEFT JOIN latest l ON l.service_name = s.service_name
        LEFT JOIN service_kpi_1m k ON k.service_name = l.service_name AND k.\"time\" = l.minute
        ORDER BY s.service_name";
    let rows = match state.engine.sql_json(SQL).await {
        Ok(rows) => rows.into_objects(),
        Err(e) => return query_error(e),
    };
    let services: Vec<Value> = rows
        .into_iter()
        .map(|mut row| {
            let service = row.remove("service_name").unwrap_or(Value::Null);
            let last_seen = row.remove("last_seen").unwrap_or(Value::Null);
            let latest = if row.get("time").is_some_and(|t| !t.is_null()) {
                Value::Object(row)
            } else {
                Value::Null
            };
            json!({ "service_name": service, "last_seen": last_seen, "latest": latest })
        })
        .collect();
    Json(json!({ "services": services })).into_response()
}

#[derive(Deserialize)]
pub struct Range {
    from: Option<String>,
    to: Option<String>,
}

/// One service's KPIs over `[from, to)`: the summary over the whole range (percentiles over all
/// its requests, not averaged per minute) and the per-minute series.
pub async fn service_kpis(
    State(state): State<ApiState>,
    Path(service): Path<String>,
    Query(range): Query<Range>,
) -> Response {
    let (from, to) = match (
        parse_time("from", range.from.as_deref()),
        parse_time("to", range.to.as_deref()),
    ) {
        (Ok(f), Ok(t)) if f < t => (f, t),
        (Ok(_), Ok(_)) => return error(StatusCode::BAD_REQUEST, "from must be before to".into()),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let known = state
        .engine
        .sql_json_params(
            "SELECT count(*) AS n FROM (SELECT 1 FROM spans WHERE service_name = $1 LIMIT 1)",
            vec![ScalarValue::Utf8(Some(service.clone()))],
        )
        .await;
    match known {
        Ok(rows) if rows.rows.first().and_then(|r| r[0].as_i64()) == Some(0) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no spans from service {service:?}"),
            );
        }
        Ok(_) => {}
        Err(e) => return query_error(e),
    }
    let params = vec![
        ScalarValue::Utf8(Some(service.clone())),
        timestamp(from),
        timestamp(to),
        ScalarValue::Float64(Some((to - from).as_seconds_f64())),
    ];
    const SUMMARY: &str = "
        SELECT count(*) AS requests,
               sum(CASE WHEN is_bad THEN 1 ELSE 0 END) AS errors,
               1.0 - CAST(sum(CASE WHEN is_bad THEN 1 ELSE 0 END) AS DOUBLE) / count(*) AS availability,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ns) / 1e6 AS p50_ms,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ns) / 1e6 AS p95_ms,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) / 1e6 AS p99_ms,
               (sum(CASE WHEN satisfied THEN 1.0 ELSE 0.0 END)
                + 0.5 * sum(CASE WHEN tolerating THEN 1.0 ELSE 0.0 END)) / count(*) AS apdex,
               count(*) / $4 AS rate_per_second
        FROM server_requests_apdex
        WHERE service_name = $1 AND start_time >= $2 AND start_time < $3";
    const SERIES: &str = "
        SELECT \"time\", requests, errors, availability, p50_ms, p95_ms, p99_ms, apdex,
               rate_per_second
        FROM service_kpi_1m
        WHERE service_name = $1 AND \"time\" >= $2 AND \"time\" < $3
        ORDER BY \"time\"";
    let summary = match state.engine.sql_json_params(SUMMARY, params.clone()).await {
        Ok(rows) => rows.into_objects().into_iter().next().unwrap_or_default(),
        Err(e) => return query_error(e),
    };
    let series = match state
        .engine
        .sql_json_params(SERIES, params[..3].to_vec())
        .await
    {
        Ok(rows) => rows.into_objects(),
        Err(e) => return query_error(e),
    };
    Json(json!({
        "service_name": service,
        "from": from.to_rfc3339(),
        "to": to.to_rfc3339(),
        "summary": summary,
        "series": series,
    }))
    .into_response()
}

/// Every SLO's status now: the `slo_status` view as JSON objects.
pub async fn slos(State(state): State<ApiState>) -> Response {
    match state
        .engine
        .sql_json("SELECT * FROM slo_status ORDER BY service_name, slo_name")
        .await
    {
        Ok(rows) => Json(json!({ "slos": rows.into_objects() })).into_response(),
        Err(e) => query_error(e),
    }
}
