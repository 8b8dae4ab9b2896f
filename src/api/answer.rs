//! What every REST handler shares: the API's state, error answers (statuses from
//! `headroom-status`), and times in and out.

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use datafusion::scalar::ScalarValue;
use headroom_analytics::{QueryEngine, QueryError};
use headroom_ingest::ingest::Ingester;
use serde_json::json;

#[derive(Clone)]
pub struct ApiState {
    pub engine: QueryEngine,
    pub ingester: Arc<Ingester>,
    /// How much history on-demand forecasts learn from.
    pub forecast_history_days: u64,
    /// Recommendations older than this are not served to autoscalers.
    pub recommendation_max_age_ns: i64,
}

/// A time in answers: RFC 3339, whole seconds, UTC.
pub(crate) fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The error answer for a failed query: 400 when the query is at fault, 500 when we are.
pub(crate) fn query_error(e: QueryError) -> Response {
    let status = e.class().http_status();
    let message = headroom_status::report(&e);
    if status.is_server_error() {
        tracing::warn!(error = %message, "query failed");
    }
    error(status, message)
}

pub(crate) fn parse_time(name: &str, value: Option<&str>) -> Result<DateTime<Utc>, String> {
    let value = value.ok_or_else(|| format!("missing query parameter {name} (RFC 3339 time)"))?;
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{name}={value:?} is not an RFC 3339 time: {e}"))
}

pub(crate) fn timestamp(t: DateTime<Utc>) -> ScalarValue {
    ScalarValue::TimestampNanosecond(t.timestamp_nanos_opt(), Some("UTC".into()))
}
