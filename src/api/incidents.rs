//! `GET /api/v1/incidents/{id}/explain`: the ranked causes of an incident (an `incident_id` of
//! `incidents`) or an anomaly (an `anomaly_id` of `anomalies`), with the numbers behind each.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use headroom_analytics::root_cause::{explain, question_for};
use serde_json::json;

use super::answer::{ApiState, error, query_error};

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub async fn explain_incident(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let question = match question_for(&state.engine, &id, now).await {
        Ok(Some(q)) => q,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "no incident or anomaly {id:?}: ids are the incident_id column of incidents \
                     and the anomaly_id column of anomalies"
                ),
            );
        }
        Err(e) => return query_error(e),
    };
    match explain(&state.engine, &question).await {
        Ok(explanation) => Json(json!({
            "id": id,
            "baseline": { "from": rfc3339(question.baseline_from_ns), "to": rfc3339(question.from_ns) },
            "window": { "from": rfc3339(question.from_ns), "to": rfc3339(question.to_ns) },
            "explanation": explanation,
        }))
        .into_response(),
        Err(e) => query_error(e),
    }
}
