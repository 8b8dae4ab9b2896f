//! The HTTP API: `POST /api/v1/sql`, `/healthz`, `/metrics` (Prometheus text).

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use headroom_analytics::{QueryEngine, QueryError};
use headroom_collector::Signal;
use headroom_collector::ingest::Ingester;
use headroom_collector::schema;
use serde::Deserialize;
use serde_json::json;

#[derive(Clone)]
pub struct ApiState {
    pub engine: QueryEngine,
    pub ingester: Arc<Ingester>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/sql", post(sql))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

#[derive(Deserialize)]
struct SqlRequest {
    sql: String,
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn sql(
    State(state): State<ApiState>,
    body: Result<Json<SqlRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected a JSON body {{\"sql\": \"...\"}}: {}",
                    e.body_text()
                ),
            );
        }
    };
    match state.engine.sql_json(&req.sql).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e @ QueryError::DataFusion(_)) if e.is_invalid_input() => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Err(e) => {
            tracing::warn!(error = %e, "query failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// Prometheus text exposition of ingest and storage counters. Written by hand: a dozen series
/// with static labels do not need a metrics registry.
async fn metrics(State(state): State<ApiState>) -> Response {
    let mut out = String::new();
    let signals = [
        (Signal::Traces, "traces"),
        (Signal::Metrics, "metrics"),
        (Signal::Logs, "logs"),
    ];
    // Order matches `SignalCounters::values`.
    let counters: [(&str, &str); 4] = [
        (
            "headroom_otlp_requests_total",
            "OTLP export requests received",
        ),
        (
            "headroom_otlp_failed_requests_total",
            "OTLP export requests refused with an error",
        ),
        (
            "headroom_otlp_items_accepted_total",
            "spans, data points or log records stored",
        ),
        (
            "headroom_otlp_items_rejected_total",
            "items refused in partial_success answers",
        ),
    ];
    for (i, (name, help)) in counters.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (signal, label) in signals {
            let v = state.ingester.counters(signal).values()[i];
            let _ = writeln!(out, "{name}{{signal=\"{label}\"}} {v}");
        }
    }
    let store = state.ingester.store();
    let gauges: [(&str, &str); 4] = [
        (
            "headroom_table_buffered_rows",
            "rows held in memory, not yet in Parquet",
        ),
        (
            "headroom_table_buffered_bytes",
            "bytes held in memory, not yet in Parquet",
        ),
        ("headroom_table_files", "Parquet files"),
        ("headroom_table_file_bytes", "bytes of Parquet files"),
    ];
    for (i, (name, help)) in gauges.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for def in schema::tables() {
            let Ok(s) = store.stats(def.name) else {
                continue;
            };
            let v = [
                s.buffered_rows as u64,
                s.buffered_bytes as u64,
                s.files as u64,
                s.file_bytes,
            ][i];
            let _ = writeln!(out, "{name}{{table=\"{}\"}} {v}", def.name);
        }
    }
    if let Some(wal) = state.ingester.wal() {
        let w = wal.stats();
        let series = [
            (
                "headroom_wal_records_total",
                "counter",
                "requests logged in the WAL",
                &w.records,
            ),
            (
                "headroom_wal_bytes_total",
                "counter",
                "bytes written to the WAL",
                &w.bytes,
            ),
            (
                "headroom_wal_syncs_total",
                "counter",
                "WAL fsyncs (one per commit group)",
                &w.syncs,
            ),
            (
                "headroom_wal_segments",
                "gauge",
                "WAL segment files",
                &w.segments,
            ),
        ];
        for (name, kind, help, v) in series {
            let v = v.load(std::sync::atomic::Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
