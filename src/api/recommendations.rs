//! Scaling recommendations over HTTP:
//! - `GET /api/v1/recommendations`: every service's latest recommendation;
//! - `GET /api/v1/recommendations/{service}`: one service's, with its schedule and reasons;
//! - `GET /api/v1/keda/replicas/{service}`: `{"replicas": N, …}` for KEDA's `metrics-api`
//!   scaler (`valueLocation: replicas`, `targetValue: "1"`); 503 while there is no count or
//!   the recommendation is stale, so that KEDA's `fallback` applies.
//!
//! Nothing acts on a recommendation unless the operator wires KEDA to one of these (or to
//! the external scaler): forecast-only is the default.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use headroom_analytics::scaling::live::NoCount;
use headroom_analytics::scaling::recommend::Recommendation;
use serde_json::{Value, json};

use super::answer::{ApiState, error, rfc3339};

/// A recommendation as JSON, times in RFC 3339.
fn to_json(rec: &Recommendation) -> Value {
    let mut value = serde_json::to_value(rec).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.remove("generated_at_ns");
        map.insert("generated_at".into(), json!(rfc3339(rec.generated_at_ns)));
        map.insert("load_unit".into(), json!("requests/s"));
        map.insert(
            "schedule".into(),
            rec.schedule
                .iter()
                .map(|s| {
                    json!({
                        "from": rfc3339(s.from_ns),
                        "to": rfc3339(s.to_ns),
                        "load": s.load,
                        "replicas": s.replicas,
                    })
                })
                .collect(),
        );
    }
    value
}

fn unknown(state: &ApiState, service: &str) -> Response {
    let known: Vec<String> = state
        .engine
        .recommendations()
        .all()
        .iter()
        .map(|r| r.service_name.clone())
        .collect();
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no recommendation for service {service:?}; services with one: {}",
            if known.is_empty() {
                "none yet".to_owned()
            } else {
                known.join(", ")
            }
        ),
    )
}

pub async fn all(State(state): State<ApiState>) -> Response {
    let recs = state.engine.recommendations().all();
    Json(json!({
        "recommendations": recs.iter().map(to_json).collect::<Vec<_>>(),
    }))
    .into_response()
}

pub async fn one(State(state): State<ApiState>, Path(service): Path<String>) -> Response {
    match state.engine.recommendations().get(&service) {
        Some(rec) => Json(to_json(&rec)).into_response(),
        None => unknown(&state, &service),
    }
}

pub async fn keda_replicas(State(state): State<ApiState>, Path(service): Path<String>) -> Response {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    match state
        .engine
        .recommendations()
        .replicas(&service, now, state.recommendation_max_age_ns)
    {
        Ok((n, rec)) => Json(json!({
            "service_name": rec.service_name,
            "replicas": n,
            "mode": rec.mode,
            "confidence": rec.confidence,
            "generated_at": rfc3339(rec.generated_at_ns),
        }))
        .into_response(),
        Err(NoCount::Unknown { .. }) => unknown(&state, &service),
        Err(e @ (NoCount::Unavailable { .. } | NoCount::Stale { .. })) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}
