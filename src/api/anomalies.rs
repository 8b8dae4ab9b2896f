//! `GET /api/v1/anomalies?from=RFC3339&to=RFC3339&service=NAME`: the anomalies found in every
//! service's KPI series (the `anomalies` table) that overlap `[from, to)`; by default the last
//! 24 hours, every service.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use datafusion::common::ScalarValue;
use serde::Deserialize;
use serde_json::json;

use super::answer::{ApiState, error, query_error};
use super::answer::{parse_time, timestamp};

#[derive(Deserialize)]
pub struct Params {
    from: Option<String>,
    to: Option<String>,
    service: Option<String>,
}

pub async fn list(State(state): State<ApiState>, Query(p): Query<Params>) -> Response {
    let to = match p.to.as_deref() {
        None => Utc::now(),
        Some(t) => match parse_time("to", Some(t)) {
            Ok(t) => t,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        },
    };
    let from: DateTime<Utc> = match p.from.as_deref() {
        None => to - Duration::hours(24),
        Some(f) => match parse_time("from", Some(f)) {
            Ok(f) => f,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        },
    };
    if from >= to {
        return error(StatusCode::BAD_REQUEST, "from must be before to".into());
    }
    let mut params = vec![timestamp(from), timestamp(to)];
    let mut sql = String::from(
        "SELECT anomaly_id, service_name, metric, start_time, end_time, minutes, peak_time, observed, \
                expected, lower, upper, deviation, score, severity \
         FROM anomalies \
         WHERE start_time < $2 AND (end_time IS NULL OR end_time > $1)",
    );
    if let Some(service) = p.service {
        params.push(ScalarValue::Utf8(Some(service)));
        sql.push_str(" AND service_name = $3");
    }
    sql.push_str(" ORDER BY start_time, service_name, metric");
    match state.engine.sql_json_params(&sql, params).await {
        Ok(rows) => Json(json!({
            "from": from.to_rfc3339(),
            "to": to.to_rfc3339(),
            "anomalies": rows.into_objects(),
        }))
        .into_response(),
        Err(e) => query_error(e),
    }
}
