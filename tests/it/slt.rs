//! Golden SQL tests: every `tests/slt/*.slt` file runs against a query engine set up as the
//! server's (PostgreSQL catalogs, KPI views, functions) whose tables are empty in-memory tables
//! with the storage contract's column types. The files insert their own fixtures and state
//! the expected answers, computed by hand.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, Int32Array, RecordBatch};
use arrow::datatypes::Int32Type;
use arrow::datatypes::{Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use datafusion::catalog::{MemTable, TableProvider};
use headroom_analytics::slo::SloConfig;
use headroom_analytics::{KpiSettings, QueryEngine, QueryError, QueryLimits};
use headroom_ingest::convert::traces;
use headroom_storage::rollup::{self, RollupConfig};
use headroom_storage::schema;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

/// Settings the golden files are written for: the defaults, an Apdex threshold of 100 ms for
/// the service `api`, and the SLOs of `slo.slt`.
fn settings() -> KpiSettings {
    let slos = SloConfig::from_toml(
        r#"
        [defaults]
        objective_percent = 99
        window_days = 28
        min_requests = 2

        [[slo]]
        name = "api-latency"
        service = "api"
        indicator = "latency"
        latency_threshold_ms = 100
        objective_percent = 90
        window_days = 1
        [slo.alerting]
        page_burn_rate_1h = 3
        ticket = false

        [[slo]]
        name = "inc-availability"
        service = "inc"
        indicator = "availability"
        objective_percent = 99
        window_days = 1

        [[slo]]
        name = "ghost-availability"
        service = "ghost"
        indicator = "availability"

        [[slo]]
        name = "web-slices"
        service = "web"
        indicator = "availability"
        objective_percent = 50
        window_days = 1
        budgeting = "timeslices"
        timeslice_minutes = 60
        timeslice_target_percent = 75
        "#,
    )
    .unwrap();
    KpiSettings {
        service_apdex_threshold_ms: vec![("api".into(), 100.0)],
        slos,
        ..KpiSettings::default()
    }
}

/// The query engine, and how many `spans` rows its rollups already hold.
struct Engine(QueryEngine, usize);

impl Engine {
    async fn new() -> Self {
        let tables = schema::tables()
            .iter()
            .map(|def| {
                // Nullable, so fixtures name only the columns they need.
                let fields: Vec<Field> = def
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_nullable(true))
                    .collect();
                let table: Arc<dyn TableProvider> = Arc::new(
                    MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]]).unwrap(),
                );
                (def.name, table)
            })
            .collect();
        Self(
            QueryEngine::with_tables(tables, QueryLimits::default(), &settings())
                .await
                .unwrap(),
            0,
        )
    }

    /// Adds the rollup rows of the spans inserted since the last call, as ingest writes them
    /// (with `is_error` derived as ingest derives it when the fixture leaves it out).
    async fn roll_up(&mut self) -> Result<(), QueryError> {
        let ctx = self.0.session();
        let spans = ctx.sql("SELECT * FROM spans").await?.collect().await?;
        let schema = schema::table(schema::SPANS).schema();
        let all = arrow::compute::concat_batches(&spans[0].schema(), &spans)?;
        let new = all.slice(self.1, all.num_rows() - self.1);
        self.1 = all.num_rows();
        let text = |name: &str| new.column_by_name(name).unwrap().as_string::<i32>().clone();
        let int = |name: &str| {
            new.column_by_name(name)
                .unwrap()
                .as_primitive::<Int32Type>()
                .clone()
        };
        let (status, kind, http, grpc) = (
            text("status_code"),
            text("span_kind"),
            int("http_response_status_code"),
            int("rpc_grpc_status_code"),
        );
        let given = new.column_by_name("is_error").unwrap().as_boolean().clone();
        let is_error: BooleanArray = (0..new.num_rows())
            .map(|i| {
                if given.is_valid(i) {
                    return Some(given.value(i));
                }
                let status = StatusCode::from_str_name(&format!("STATUS_CODE_{}", status.value(i)));
                let kind = SpanKind::from_str_name(&format!("SPAN_KIND_{}", kind.value(i)));
                let code = |a: &Int32Array| a.is_valid(i).then(|| a.value(i));
                Some(traces::is_error(
                    status.map_or(0, |s| s as i32),
                    kind.map_or(0, |k| k as i32),
                    code(&http),
                    code(&grpc),
                ))
            })
            .collect();
        let mut columns = new.columns().to_vec();
        columns[schema.index_of("is_error")?] = Arc::new(is_error);
        let new = RecordBatch::try_new(new.schema(), columns)?;
        let config = RollupConfig {
            health_check_routes: settings().health_check_routes,
            ..RollupConfig::default()
        };
        for (table, batch) in rollup::SpanRollups::of(&new, &config)?.batches()? {
            ctx.read_batch(batch)?
                .write_table(table, Default::default())
                .await?;
        }
        Ok(())
    }
}

fn render(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, QueryError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| {
                        let v = f.value(row).to_string();
                        if v.is_empty() { "(empty)".into() } else { v }
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

#[async_trait]
impl AsyncDB for Engine {
    type Error = QueryError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, QueryError> {
        let first = sql.split_whitespace().next().unwrap_or("");
        if first.eq_ignore_ascii_case("INSERT") {
            // Fixtures go straight to the session: query users cannot write.
            self.0.session().sql(sql).await?.collect().await?;
            if sql.split_whitespace().nth(2) == Some("spans") {
                self.roll_up().await?;
            }
            return Ok(DBOutput::StatementComplete(0));
        }
        let batches = self.0.sql(sql).await?;
        let columns = batches.first().map_or(0, RecordBatch::num_columns);
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; columns],
            rows: render(&batches)?,
        })
    }

    async fn shutdown(&mut self) {}

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_sql_files() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/slt");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {dir}");
    // Every KPI view has golden answers.
    let text: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    for (view, _) in headroom_analytics::kpi::VIEWS {
        assert!(
            text.contains(&format!("FROM {view}\n")) || text.contains(&format!("FROM {view} ")),
            "no golden query reads {view}"
        );
    }
    for file in files {
        let mut runner = sqllogictest::Runner::new(|| async { Ok(Engine::new().await) });
        if let Err(e) = runner.run_file_async(&file).await {
            panic!("{}: {e}", file.display());
        }
    }
}
