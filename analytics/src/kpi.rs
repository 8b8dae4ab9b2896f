//! The KPI catalogue: SQL views over the stored tables, one file each in `queries/`, compiled
//! into the binary and created in the query session at start-up, after the tables. They are
//! queryable like tables over every SQL surface and listed in `information_schema`.
//!
//! A few definitions depend on settings (health-check routes, whether throttling is bad, Apdex
//! thresholds). Those are written into the view text as SQL literals when the views are
//! created (`{name}` placeholders), or read from the small `kpi_apdex_thresholds` table.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;

use crate::catalog::SnapshotSource;
use crate::slo::SloConfig;

/// The views, in creation order (a view is created after the views it reads).
pub const VIEWS: [(&str, &str); 21] = [
    (
        "server_requests",
        include_str!("../../queries/server_requests.sql"),
    ),
    (
        "server_requests_apdex",
        include_str!("../../queries/server_requests_apdex.sql"),
    ),
    ("deploys", include_str!("../../queries/deploys.sql")),
    (
        "deploy_impact",
        include_str!("../../queries/deploy_impact.sql"),
    ),
    (
        "service_kpi_1m",
        include_str!("../../queries/service_kpi.sql"),
    ),
    (
        "service_kpi_1h",
        include_str!("../../queries/service_kpi.sql"),
    ),
    (
        "endpoint_kpi_1m",
        include_str!("../../queries/endpoint_kpi.sql"),
    ),
    (
        "endpoint_kpi_1h",
        include_str!("../../queries/endpoint_kpi.sql"),
    ),
    (
        "server_duration_increases",
        include_str!("../../queries/server_duration_increases.sql"),
    ),
    (
        "server_exp_duration_increases",
        include_str!("../../queries/server_exp_duration_increases.sql"),
    ),
    (
        "service_metrics_kpi_1m",
        include_str!("../../queries/service_metrics_kpi_1m.sql"),
    ),
    (
        "service_graph_calls",
        include_str!("../../queries/service_graph_calls.sql"),
    ),
    (
        "service_graph_1m",
        include_str!("../../queries/service_graph_1m.sql"),
    ),
    (
        "service_resilience_1m",
        include_str!("../../queries/service_resilience_1m.sql"),
    ),
    (
        "service_saturation_1m",
        include_str!("../../queries/service_saturation_1m.sql"),
    ),
    (
        "slo_objectives",
        include_str!("../../queries/slo_objectives.sql"),
    ),
    ("slo_events", include_str!("../../queries/slo_events.sql")),
    ("slo_status", include_str!("../../queries/slo_status.sql")),
    ("slo_minutes", include_str!("../../queries/slo_minutes.sql")),
    ("incidents", include_str!("../../queries/incidents.sql")),
    (
        "incident_stats",
        include_str!("../../queries/incident_stats.sql"),
    ),
];

/// `error.type` values of timeouts in the common instrumentations: the semantic conventions'
/// `timeout`, Python's, Java's and .NET's exception types, Go's context error, gRPC's status
/// name, and PostgreSQL's statement timeout (SQLSTATE 57014).
pub const DEFAULT_TIMEOUT_ERROR_TYPES: [&str; 7] = [
    "timeout",
    "TimeoutError",
    "java.net.SocketTimeoutException",
    "System.TimeoutException",
    "context.deadlineExceededError",
    "DEADLINE_EXCEEDED",
    "57014",
];

/// What the KPI definitions leave to the operator.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiSettings {
    /// Routes (or URL paths, for spans without a route) that are health checks, not requests.
    pub health_check_routes: Vec<String>,
    /// Whether HTTP 429 and gRPC RESOURCE_EXHAUSTED count as bad for the server.
    pub throttled_is_bad: bool,
    /// `error.type` values that mean a timeout (besides gRPC DEADLINE_EXCEEDED, HTTP 408/504).
    pub timeout_error_types: Vec<String>,
    /// Apdex threshold T for services without their own.
    pub apdex_threshold_ms: f64,
    /// Apdex thresholds of individual services.
    pub service_apdex_threshold_ms: Vec<(String, f64)>,
    /// The SLOs `slo_status` evaluates.
    pub slos: SloConfig,
}

impl Default for KpiSettings {
    fn default() -> Self {
        Self {
            health_check_routes: [
                "/healthz", "/readyz", "/livez", "/health", "/ready", "/live",
            ]
            .map(String::from)
            .to_vec(),
            throttled_is_bad: false,
            timeout_error_types: DEFAULT_TIMEOUT_ERROR_TYPES.map(String::from).to_vec(),
            apdex_threshold_ms: 500.0,
            service_apdex_threshold_ms: Vec::new(),
            slos: SloConfig::default(),
        }
    }
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A list of SQL string literals for `IN (...)`; `NULL` for none, since `IN ()` is not SQL
/// and `IN (NULL)` is never true.
fn sql_strings(values: &[String]) -> String {
    if values.is_empty() {
        return "NULL".to_owned();
    }
    values
        .iter()
        .map(|v| sql_string(v))
        .collect::<Vec<_>>()
        .join(", ")
}

fn nanos(ms: f64) -> i64 {
    (ms * 1e6).round() as i64
}

/// Whether a rollup row `r` counts as bad requests (`server_requests.is_bad`).
const ROLLUP_IS_BAD: &str =
    "(r.status_class = 'error' OR ({throttled_is_bad} AND r.status_class = 'throttled'))";

/// The text of view `name` with the settings written in. A view over the rollups serves each
/// rollup width: `{width}` is the name's suffix (`1m`, `1h`).
pub fn render(name: &str, template: &str, settings: &KpiSettings) -> String {
    let (width, seconds) = if name.ends_with("_1h") {
        ("1h", 3600)
    } else {
        ("1m", 60)
    };
    template
        .replace("{width_seconds}", &seconds.to_string())
        .replace("{width}", width)
        .replace("{rollup_is_bad}", ROLLUP_IS_BAD)
        .replace(
            "{health_check_routes}",
            &sql_strings(&settings.health_check_routes),
        )
        .replace(
            "{timeout_error_types}",
            &sql_strings(&settings.timeout_error_types),
        )
        .replace("{throttled_is_bad}", &settings.throttled_is_bad.to_string())
        .replace(
            "{default_apdex_threshold_ns}",
            &nanos(settings.apdex_threshold_ms).to_string(),
        )
        .replace(
            "{slo_history_seconds}",
            &settings.slos.history_seconds().to_string(),
        )
        .replace(
            "{sketch_scale}",
            &headroom_sketch::latency::SKETCH_SCALE.to_string(),
        )
        .replace(
            "{incident_merge_gap_minutes}",
            &settings.slos.incident_merge_gap_minutes.to_string(),
        )
}

/// Creates `kpi_apdex_thresholds`, `slo_definitions` and every view of [`VIEWS`] in `ctx`.
/// `source` is what the stored tables are read from, for the views that look at their files
/// (`service_graph_1m`); without it they read as if no rollup were written yet.
pub async fn register(
    ctx: &SessionContext,
    settings: &KpiSettings,
    source: Option<Arc<dyn SnapshotSource>>,
) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("service_name", DataType::Utf8, false),
        Field::new("threshold_ns", DataType::Int64, false),
    ]));
    let (services, thresholds): (Vec<&str>, Vec<i64>) = settings
        .service_apdex_threshold_ms
        .iter()
        .map(|(s, ms)| (s.as_str(), nanos(*ms)))
        .unzip();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(services)),
            Arc::new(Int64Array::from(thresholds)),
        ],
    )?;
    ctx.register_table(
        "kpi_apdex_thresholds",
        Arc::new(crate::catalog::SettingsTable::new(batch)?),
    )?;
    crate::slo::register(ctx, &settings.slos)?;
    for (name, template) in VIEWS {
        let text = render(name, template, settings);
        let created = if text.contains(crate::service_graph::RAW_PLACEHOLDER) {
            register_graph(ctx, name, &text, source.clone()).await
        } else if text.contains(crate::ranged_view::PLACEHOLDER) {
            register_bounded(ctx, name, &text).await
        } else {
            ctx.sql(&text).await.map(drop)
        };
        created.map_err(|e| DataFusionError::Plan(format!("KPI view {name}: {e}")))?;
    }
    Ok(())
}

/// How far outside the asked range a bounded view reads spans.
const BOUNDED_MARGIN_NS: i64 = 15 * 60_000_000_000;

/// The query of a view's text, after its `CREATE VIEW name AS`.
fn view_query<'a>(name: &str, text: &'a str) -> Result<&'a str> {
    let head = format!("CREATE VIEW {name} AS");
    text.split_once(&head)
        .map(|(_, query)| query)
        .ok_or_else(|| DataFusionError::Plan(format!("no `{head}` in the view text")))
}

/// A view whose text marks where the time bounds go is planned per query with the range of
/// the query's filters written in ([`crate::ranged_view`]).
async fn register_bounded(ctx: &SessionContext, name: &str, text: &str) -> Result<()> {
    let query = view_query(name, text)?;
    let view = crate::ranged_view::BoundedView::new(ctx, name, query, BOUNDED_MARGIN_NS).await?;
    ctx.register_table(name, Arc::new(view))?;
    Ok(())
}

/// The service graph reads its rollup or the spans, hour by hour ([`crate::service_graph`]).
async fn register_graph(
    ctx: &SessionContext,
    name: &str,
    text: &str,
    source: Option<Arc<dyn SnapshotSource>>,
) -> Result<()> {
    let view =
        crate::service_graph::ServiceGraphView::new(ctx, view_query(name, text)?, source).await?;
    ctx.register_table(name, Arc::new(view))?;
    Ok(())
}
