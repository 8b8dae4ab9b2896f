//! `GET /api/v1/forecast/{service}?metric=requests&horizon=24h&step=5m&quantiles=0.95,0.99`:
//! one service's load forecast, computed on demand from its recent history: the points with
//! their p10/p50/p90 (and the quantiles asked for, as `p95`, `p99`…), the model the
//! validation chose and every candidate's score.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use headroom_analytics::forecast::live::{self, Metric, Span};
use serde::Deserialize;
use serde_json::json;

use super::answer::{ApiState, error, query_error, rfc3339};

#[derive(Deserialize)]
pub struct Params {
    metric: Option<String>,
    horizon: Option<String>,
    step: Option<String>,
    /// Extra quantile levels, comma-separated, e.g. `0.95,0.99`.
    quantiles: Option<String>,
}

/// `0.95,0.99`: at most ten levels strictly between 0 and 1, rounded to four decimals (a
/// hundredth of a percent, the precision of the `p99.99` keys) and without repeats.
fn quantile_levels(text: &str) -> Result<Vec<f64>, String> {
    let mut levels: Vec<f64> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let level = part
            .parse::<f64>()
            .ok()
            .map(|q| (q * 1e4).round() / 1e4)
            .filter(|q| *q > 0.0 && *q < 1.0)
            .ok_or_else(|| {
                format!("quantiles: {part:?} is not a level between 0.0001 and 0.9999 (e.g. 0.95)")
            })?;
        if !levels.contains(&level) {
            levels.push(level);
        }
    }
    if levels.len() > 10 {
        return Err(format!(
            "quantiles: at most 10 levels, got {}",
            levels.len()
        ));
    }
    Ok(levels)
}

/// `p95` for 0.95, `p99.9` for 0.999.
fn level_key(q: f64) -> String {
    let percent = (q * 1e6).round() / 1e4;
    format!("p{percent}")
}

/// `30s`, `5m`, `24h`, `7d`: a positive duration in whole seconds.
fn seconds(what: &str, text: &str) -> Result<u64, String> {
    match crate::config::parse_retention(text) {
        Ok(r) => {
            r.0.map(|d| d.as_secs())
                .ok_or_else(|| format!("{what} must be positive, got {text:?}"))
        }
        Err(e) => Err(format!("{what}: {e}")),
    }
}

pub async fn service_forecast(
    State(state): State<ApiState>,
    Path(service): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    let metric_name = params.metric.as_deref().unwrap_or("requests");
    let Some(metric) = Metric::parse(metric_name) else {
        let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown metric {metric_name:?}; metrics are {}",
                known.join(", ")
            ),
        );
    };
    let (step, horizon) = match (
        seconds("step", params.step.as_deref().unwrap_or("5m")),
        seconds("horizon", params.horizon.as_deref().unwrap_or("24h")),
    ) {
        (Ok(s), Ok(h)) => (s, h),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let extra = match params.quantiles.as_deref().map(quantile_levels).transpose() {
        Ok(levels) => levels.unwrap_or_default(),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let horizon_steps = horizon.div_ceil(step);
    let history_steps = state.forecast_history_days * 86_400 / step;
    if step > 86_400 || horizon_steps > 10_000 || history_steps > 200_000 {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "a step of {step} s over a horizon of {horizon} s and {} days of history is \
                 out of range (step at most 1 day, at most 10,000 steps ahead and 200,000 \
                 behind)",
                state.forecast_history_days
            ),
        );
    }
    let span = Span {
        step_ns: step as i64 * 1_000_000_000,
        horizon_steps: horizon_steps as usize,
        history_steps: history_steps as usize,
    };
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let histories = match live::histories(&state.engine, metric, span, now, Some(&service)).await {
        Ok(h) => h,
        Err(e) => return query_error(e),
    };
    let Some((_, grid)) = histories.into_iter().next() else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no {} data for service {service:?} in the last {} days",
                metric.name(),
                state.forecast_history_days
            ),
        );
    };
    let name = service.clone();
    let result = tokio::task::spawn_blocking(move || {
        live::forecast_grid(&name, metric, &grid, span.horizon_steps, now, &extra)
    })
    .await;
    let f = match result {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let points: Vec<_> = (0..f.forecast.yhat.len())
        .map(|h| {
            let mut point = serde_json::Map::new();
            point.insert("time".into(), json!(rfc3339(f.time_ns(h))));
            point.insert("yhat".into(), json!(f.forecast.yhat[h]));
            for (q, values) in &f.forecast.quantiles {
                point.insert(level_key(*q), json!(values[h]));
            }
            serde_json::Value::Object(point)
        })
        .collect();
    let scores: Vec<_> = f
        .forecast
        .scores
        .iter()
        .map(|s| json!({ "model": s.model, "validation_mae": s.mae }))
        .collect();
    Json(json!({
        "service_name": f.service,
        "metric": metric.name(),
        "unit": metric.unit(),
        "step_seconds": step,
        "horizon_seconds": horizon_steps * step,
        "generated_at": rfc3339(f.generated_at_ns),
        "history_points": f.history_points,
        "model": f.forecast.model,
        "short_history": f.forecast.short_history,
        "validation_mase": f.forecast.validation_mase,
        "scores": scores,
        "points": points,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_levels_are_rounded_deduplicated_and_named() {
        assert_eq!(
            quantile_levels("0.95, 0.99,0.95").unwrap(),
            vec![0.95, 0.99]
        );
        // Within a hundredth of a percent of p10: p10 itself, not a second `p10` key.
        assert_eq!(quantile_levels("0.1000001").unwrap(), vec![0.1]);
        assert_eq!(quantile_levels("").unwrap(), Vec::<f64>::new());
        assert!(quantile_levels("1e-7").is_err());
        assert!(quantile_levels("0.99999").is_err());
        assert!(quantile_levels("0.5,x").unwrap_err().contains("\"x\""));
        let eleven: Vec<String> = (1..=11).map(|i| format!("0.{i:02}")).collect();
        assert!(quantile_levels(&eleven.join(",")).is_err());
        assert_eq!(level_key(0.95), "p95");
        assert_eq!(level_key(0.1), "p10");
        assert_eq!(level_key(0.999), "p99.9");
    }
}
