//! The HTTP API's router, `POST /api/v1/sql` and `/metrics` (Prometheus text); the KPI,
//! forecast, anomaly and recommendation endpoints are the sibling modules.

use std::fmt::Write;

use arrow::error::ArrowError;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use headroom_analytics::QueryError;
use headroom_ingest::Signal;
use headroom_storage::schema;
use serde::Deserialize;

use super::answer::{ApiState, error, query_error};

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/sql", post(sql))
        .route("/api/v1/services", get(super::kpis::services))
        .route("/api/v1/slos", get(super::kpis::slos))
        .route(
            "/api/v1/services/{service}/kpis",
            get(super::kpis::service_kpis),
        )
        .route(
            "/api/v1/forecast/{service}",
            get(super::forecast::service_forecast),
        )
        .route("/api/v1/anomalies", get(super::anomalies::list))
        .route(
            "/api/v1/incidents/{id}/explain",
            get(super::incidents::explain_incident),
        )
        .route("/api/v1/recommendations", get(super::recommendations::all))
        .route(
            "/api/v1/recommendations/{service}",
            get(super::recommendations::one),
        )
        .route(
            "/api/v1/keda/replicas/{service}",
            get(super::recommendations::keda_replicas),
        )
        .route("/metrics", get(metrics))
        .with_state(state)
}

#[derive(Deserialize)]
struct SqlRequest {
    sql: String,
    #[serde(default)]
    format: Option<String>,
}

#[derive(Deserialize)]
struct SqlParams {
    format: Option<String>,
}

/// Result formats of `POST /api/v1/sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Arrow,
}

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

impl Format {
    fn from_name(name: &str) -> Result<Self, String> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "arrow" => Ok(Format::Arrow),
            other => Err(format!("unknown format {other:?}: use json, csv or arrow")),
        }
    }

    /// The first media type of `Accept` that names a format; JSON when none does.
    fn from_accept(accept: &str) -> Self {
        accept
            .split(',')
            .map(|t| {
                t.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .find_map(|t| match t.as_str() {
                "text/csv" => Some(Format::Csv),
                ARROW_STREAM => Some(Format::Arrow),
                "application/json" => Some(Format::Json),
                _ => None,
            })
            .unwrap_or(Format::Json)
    }
}

/// `POST /api/v1/sql` with `{"sql": "...", "format": "json|csv|arrow"}`; the format may also
/// come as `?format=` or from the `Accept` header (`text/csv`,
/// `application/vnd.apache.arrow.stream`).
async fn sql(
    State(state): State<ApiState>,
    Query(params): Query<SqlParams>,
    headers: HeaderMap,
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
    let format = match req.format.as_deref().or(params.format.as_deref()) {
        Some(name) => match Format::from_name(name) {
            Ok(f) => f,
            Err(message) => return error(StatusCode::BAD_REQUEST, message),
        },
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .map_or(Format::Json, Format::from_accept),
    };
    match format {
        Format::Json => {
            let body = match state.engine.sql_with_schema(&req.sql, false).await {
                Ok((schema, batches)) => headroom_analytics::engine::json_body(&schema, &batches),
                Err(e) => Err(e),
            };
            match body {
                Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
                Err(e) => query_error(e),
            }
        }
        Format::Csv | Format::Arrow => {
            let (schema, batches) = match state
                .engine
                .sql_with_schema(&req.sql, format == Format::Csv)
                .await
            {
                Ok(r) => r,
                Err(e) => return query_error(e),
            };
            let encoded = if format == Format::Csv {
                encode_csv(&schema, &batches).map(|b| (b, "text/csv; charset=utf-8"))
            } else {
                encode_arrow(&schema, &batches).map(|b| (b, ARROW_STREAM))
            };
            match encoded {
                Ok((bytes, content_type)) => {
                    ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
                }
                Err(e) => query_error(QueryError::Arrow(e)),
            }
        }
    }
}

fn encode_csv(
    schema: &arrow::datatypes::SchemaRef,
    batches: &[arrow::array::RecordBatch],
) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::new();
    let mut writer = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(&mut out);
    // The header line is written with the first batch, so an empty result still gets one.
    let empty = [arrow::array::RecordBatch::new_empty(schema.clone())];
    for batch in if batches.is_empty() {
        &empty[..]
    } else {
        batches
    } {
        writer.write(batch)?;
    }
    drop(writer);
    Ok(out)
}

fn encode_arrow(
    schema: &arrow::datatypes::SchemaRef,
    batches: &[arrow::array::RecordBatch],
) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::new();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(out)
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
    // Per mode, not per service: labels stay bounded.
    let recs = state.engine.recommendations().all();
    let name = "headroom_recommendations";
    let _ = writeln!(
        out,
        "# HELP {name} services with a replica recommendation, by how it was made\n# TYPE {name} gauge"
    );
    for mode in ["predictive", "reactive", "unavailable"] {
        let n = recs.iter().filter(|r| r.mode.name() == mode).count();
        let _ = writeln!(out, "{name}{{mode=\"{mode}\"}} {n}");
    }
    let a = state.engine.anomaly_stats();
    let load = |v: &std::sync::atomic::AtomicU64| v.load(std::sync::atomic::Ordering::Relaxed);
    for (name, kind, help, value) in [
        (
            "headroom_anomaly_series",
            "gauge",
            "KPI series the anomaly detectors score",
            load(&a.series),
        ),
        (
            "headroom_anomaly_minutes_scored_total",
            "counter",
            "series-minutes scored since the detectors last started",
            load(&a.minutes_scored_total),
        ),
        (
            "headroom_anomalies_total",
            "counter",
            "anomalies found since the detectors last started",
            load(&a.anomalies_total),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    if let Some(c) = state.engine.file_cache_stats() {
        for (name, kind, help, value) in [
            (
                "headroom_file_cache_hits_total",
                "counter",
                "rollup files a query read from the decoded-file cache",
                c.hits,
            ),
            (
                "headroom_file_cache_misses_total",
                "counter",
                "rollup files a query read from Parquet",
                c.misses,
            ),
            (
                "headroom_file_cache_loads_total",
                "counter",
                "rollup files decoded into the cache",
                c.loads,
            ),
            (
                "headroom_file_cache_files",
                "gauge",
                "decoded files in the cache",
                c.files,
            ),
            (
                "headroom_file_cache_bytes",
                "gauge",
                "memory the decoded files take",
                c.bytes,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
    if let Some(remote) = store.config().remote.as_deref() {
        let r = remote.stats();
        for (name, kind, help, v) in [
            (
                "headroom_object_store_files_uploaded_total",
                "counter",
                "Parquet files uploaded to --storage",
                &r.files_uploaded,
            ),
            (
                "headroom_object_store_bytes_uploaded_total",
                "counter",
                "bytes of Parquet files uploaded to --storage",
                &r.bytes_uploaded,
            ),
            (
                "headroom_object_store_manifests_published_total",
                "counter",
                "manifests this writer published",
                &r.manifests_published,
            ),
            (
                "headroom_object_store_failures_total",
                "counter",
                "uploads and manifest writes or reads that failed",
                &r.failures,
            ),
            (
                "headroom_object_store_other_writers",
                "gauge",
                "other writers whose files this server reads",
                &r.other_writers,
            ),
        ] {
            let v = load(v);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    }
    let name = "headroom_anomalies_ongoing";
    let _ = writeln!(
        out,
        "# HELP {name} anomalies still going on, by severity\n# TYPE {name} gauge\n\
         {name}{{severity=\"warning\"}} {}\n{name}{{severity=\"critical\"}} {}",
        load(&a.ongoing_warning),
        load(&a.ongoing_critical)
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
