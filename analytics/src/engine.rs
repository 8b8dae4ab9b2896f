//! The one query engine behind every SQL surface (HTTP API, PostgreSQL wire, `headroom query`):
//! a DataFusion session with the stored tables, JSON attribute functions, the PostgreSQL
//! catalogs, and per-query limits. Query users are read-only: every plan is checked before it
//! runs.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::logical_expr::{LogicalPlan, ScalarUDF};
use datafusion::sql::sqlparser::ast::Statement;
use futures::StreamExt;
use headroom_collector::schema;
use serde_json::Value;

use crate::catalog::{SnapshotSource, StoredTable};
use crate::error::QueryError;
use crate::guard::{GuardRule, QueryLimits};
use crate::kpi::KpiSettings;
use crate::readable::ToJson;

/// The catalog and schema the stored tables live in.
pub const CATALOG: &str = "headroom";
pub const SCHEMA: &str = "public";

/// A query's answer in the shape of the HTTP API: column names and rows of JSON values.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JsonRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl JsonRows {
    /// Each row as a JSON object keyed by column name.
    pub fn into_objects(self) -> Vec<serde_json::Map<String, Value>> {
        let columns = self.columns;
        self.rows
            .into_iter()
            .map(|row| columns.iter().cloned().zip(row).collect())
            .collect()
    }
}

#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
    limits: QueryLimits,
    /// The `forecasts` table, replaced by each forecast refresh.
    forecasts: Arc<crate::catalog::PublishedTable>,
    /// The `recommendations` and `recommendation_schedule` tables, replaced together.
    recommendations: Arc<crate::catalog::PublishedTable>,
    schedule: Arc<crate::catalog::PublishedTable>,
    /// The `anomalies` and `anomaly_scores` tables, replaced together.
    anomalies: Arc<crate::catalog::PublishedTable>,
    anomaly_scores: Arc<crate::catalog::PublishedTable>,
    anomaly_stats: Arc<crate::anomaly::live::Stats>,
    board: crate::scaling::live::Board,
}

/// What query users may run: queries only. No DDL (`CREATE EXTERNAL TABLE` reads arbitrary
/// files), no DML (`COPY … TO` writes them), no session statements (`SET` would change the
/// shared session for everyone).
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

impl QueryEngine {
    /// A session over every table of the storage contract, read from `source`, with the KPI
    /// views; each query runs within `limits`.
    pub async fn new(
        source: Arc<dyn SnapshotSource>,
        limits: QueryLimits,
        kpi: &KpiSettings,
    ) -> Result<Self, QueryError> {
        let tables = schema::tables()
            .iter()
            .map(|def| {
                let table: Arc<dyn TableProvider> = Arc::new(StoredTable::new(def, source.clone()));
                (def.name, table)
            })
            .collect();
        Self::with_tables(tables, limits, kpi).await
    }

    /// A session over the given tables (named as in the storage contract), with everything
    /// else [`QueryEngine::new`] sets up. Golden SQL tests use it with in-memory tables.
    pub async fn with_tables(
        tables: Vec<(&str, Arc<dyn TableProvider>)>,
        limits: QueryLimits,
        kpi: &KpiSettings,
    ) -> Result<Self, QueryError> {
        // `information_schema` comes from `pg_compat`, in PostgreSQL's terms. DataFusion's own
        // settings can be tuned with `DATAFUSION_*` variables, as in `datafusion-cli`.
        let config = SessionConfig::from_env()?
            .with_information_schema(false)
            .with_default_catalog_and_schema(CATALOG, SCHEMA);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(GuardRule::new(limits)))
            .build();
        let mut ctx = SessionContext::new_with_state(state);
        datafusion_functions_json::register_all(&mut ctx)?;
        ctx.register_udf(ScalarUDF::from(ToJson::new()));
        crate::histogram::register(&ctx);
        crate::exp_histogram::register(&ctx);
        crate::sketch::register(&ctx);
        crate::stats::register(&ctx);
        for (name, table) in tables {
            ctx.register_table(name, table)?;
        }
        crate::pg_compat::register(&ctx, CATALOG)?;
        crate::kpi::register(&ctx, kpi).await?;
        // Empty until the first forecasts are published, but always there.
        let forecasts = Arc::new(crate::catalog::PublishedTable::new(
            crate::forecast::live::batch(&[])?,
        )?);
        ctx.register_table(crate::forecast::live::TABLE, forecasts.clone())?;
        let recommendations = Arc::new(crate::catalog::PublishedTable::new(
            crate::scaling::live::batch(&[])?,
        )?);
        ctx.register_table(crate::scaling::live::TABLE, recommendations.clone())?;
        let schedule = Arc::new(crate::catalog::PublishedTable::new(
            crate::scaling::live::schedule_batch(&[])?,
        )?);
        ctx.register_table(crate::scaling::live::SCHEDULE_TABLE, schedule.clone())?;
        let empty = crate::anomaly::live::Monitor::new(0);
        let anomalies = Arc::new(crate::catalog::PublishedTable::new(
            empty.anomalies_batch()?,
        )?);
        ctx.register_table(crate::anomaly::live::TABLE, anomalies.clone())?;
        let anomaly_scores = Arc::new(crate::catalog::PublishedTable::new(empty.scores_batch()?)?);
        ctx.register_table(crate::anomaly::live::SCORES_TABLE, anomaly_scores.clone())?;
        Ok(Self {
            ctx,
            limits,
            forecasts,
            recommendations,
            schedule,
            anomalies,
            anomaly_scores,
            anomaly_stats: Default::default(),
            board: Default::default(),
        })
    }

    /// Releases what the session holds once no query will run any more (the store among
    /// them); later queries fail.
    pub fn close(&self) {
        crate::pg_compat::unregister(&self.ctx, CATALOG);
        for (view, _) in crate::kpi::VIEWS {
            let _ = self.ctx.deregister_table(view);
        }
        for table in [
            crate::forecast::live::TABLE,
            crate::scaling::live::TABLE,
            crate::scaling::live::SCHEDULE_TABLE,
            crate::anomaly::live::TABLE,
            crate::anomaly::live::SCORES_TABLE,
        ] {
            let _ = self.ctx.deregister_table(table);
        }
        for def in schema::tables() {
            let _ = self.ctx.deregister_table(def.name);
        }
    }

    /// Replaces the rows of the `forecasts` table.
    pub fn publish_forecasts(&self, batch: arrow::array::RecordBatch) -> Result<(), QueryError> {
        Ok(self.forecasts.replace(batch)?)
    }

    /// Replaces the rows of the `recommendations` and `recommendation_schedule` tables.
    pub fn publish_recommendations(
        &self,
        recommendations: arrow::array::RecordBatch,
        schedule: arrow::array::RecordBatch,
    ) -> Result<(), QueryError> {
        self.recommendations.replace(recommendations)?;
        Ok(self.schedule.replace(schedule)?)
    }

    /// Replaces the rows of the `anomalies` and `anomaly_scores` tables.
    pub fn publish_anomalies(
        &self,
        monitor: &crate::anomaly::live::Monitor,
    ) -> Result<(), QueryError> {
        self.anomalies.replace(monitor.anomalies_batch()?)?;
        self.anomaly_scores.replace(monitor.scores_batch()?)?;
        self.anomaly_stats.record(monitor);
        Ok(())
    }

    /// What the live anomaly detectors have done, as of their last publish.
    pub fn anomaly_stats(&self) -> &crate::anomaly::live::Stats {
        &self.anomaly_stats
    }

    /// The latest recommendations.
    pub fn recommendations(&self) -> &crate::scaling::live::Board {
        &self.board
    }

    /// The session, for servers that drive it themselves (the PostgreSQL wire protocol).
    /// Queries must be planned with [`QueryEngine::plan_statement`]; whatever else runs on
    /// the session directly must not change it (the PostgreSQL gate in `src/api/pg.rs`).
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// Plans one parsed statement if query users may run it.
    pub async fn plan_statement(&self, statement: Statement) -> Result<LogicalPlan, QueryError> {
        let state = self.ctx.state();
        let plan = state
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                statement,
            )))
            .await?;
        check_read_only(&plan)?;
        Ok(plan)
    }

    /// Plans one read-only statement.
    async fn plan(&self, sql: &str) -> Result<DataFrame, QueryError> {
        // Checked before `execute_logical_plan`, which runs DDL on the spot.
        let plan = self.ctx.state().create_logical_plan(sql).await?;
        check_read_only(&plan)?;
        Ok(self.ctx.execute_logical_plan(plan).await?)
    }

    /// Runs one read-only statement and returns its schema and batches; with `readable`,
    /// binary and nested columns come as text ([`crate::readable`]), for formats without such
    /// types (CSV).
    pub async fn sql_with_schema(
        &self,
        sql: &str,
        readable: bool,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        let mut df = self.plan(sql).await?;
        if readable {
            let plan = crate::readable::readable(df.into_unoptimized_plan())?;
            df = self.ctx.execute_logical_plan(plan).await?;
        }
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        Ok((schema, self.collect(df).await?))
    }

    /// Runs one read-only statement.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        self.collect(self.plan(sql).await?).await
    }

    /// A result held in memory counts against the query's memory limit too.
    async fn collect(&self, df: DataFrame) -> Result<Vec<RecordBatch>, QueryError> {
        let mut stream = df.execute_stream().await?;
        let (mut batches, mut bytes) = (Vec::new(), 0usize);
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            bytes += batch.get_array_memory_size();
            if bytes > self.limits.memory_bytes {
                return Err(QueryError::DataFusion(
                    datafusion::error::DataFusionError::ResourcesExhausted(format!(
                        "the result is larger than the {} a query may use; add a LIMIT, or \
                         read it over the PostgreSQL protocol, which streams it",
                        crate::guard::bytes(self.limits.memory_bytes)
                    )),
                ));
            }
            batches.push(batch);
        }
        Ok(batches)
    }

    /// Runs `sql` and renders the result as JSON rows.
    pub async fn sql_json(&self, sql: &str) -> Result<JsonRows, QueryError> {
        self.sql_json_params(sql, Vec::new()).await
    }

    /// [`QueryEngine::sql_json`] with values for the placeholders `$1`, `$2`, … of `sql`.
    pub async fn sql_json_params(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<JsonRows, QueryError> {
        let mut df = self.plan(sql).await?;
        if !params.is_empty() {
            df = df.with_param_values(params)?;
        }
        let columns: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let batches = self.collect(df).await?;
        Ok(JsonRows {
            rows: to_json_rows(&batches)?,
            columns,
        })
    }
}

fn check_read_only(plan: &LogicalPlan) -> Result<(), QueryError> {
    read_only()
        .verify_plan(plan)
        .map_err(|e| QueryError::ReadOnly(e.strip_backtrace()))
}

/// Rows as JSON arrays in column order. Binary ids become hex, timestamps RFC 3339 text,
/// lists and structs JSON arrays and objects (arrow-json's encoders).
pub fn to_json_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<Value>>, QueryError> {
    let mut rows = Vec::new();
    for batch in batches {
        if batch.num_rows() == 0 {
            continue;
        }
        let n = batch.num_columns();
        // Column names may repeat (`SELECT 1, 1`); rename so the objects keep every column.
        let fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| Field::new(format!("c{i}"), f.data_type().clone(), true))
            .collect();
        let renamed =
            RecordBatch::try_new(Arc::new(Schema::new(fields)), batch.columns().to_vec())?;
        let mut buf = Vec::new();
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(&mut buf);
        writer.write(&renamed)?;
        writer.finish()?;
        drop(writer);
        let objects: Vec<serde_json::Map<String, Value>> = serde_json::from_slice(&buf)
            .map_err(|e| QueryError::Internal(format!("re-reading JSON rows: {e}")))?;
        for mut obj in objects {
            rows.push(
                (0..n)
                    .map(|i| obj.remove(&format!("c{i}")).unwrap_or(Value::Null))
                    .collect(),
            );
        }
    }
    Ok(rows)
}
