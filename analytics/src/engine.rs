//! The one query engine behind every SQL surface (HTTP API, PostgreSQL wire, `headroom query`):
//! a DataFusion session with the stored tables, JSON attribute functions, the PostgreSQL
//! catalogs, and per-query limits. Query users are read-only: every plan is checked before it
//! runs.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement;
use futures::StreamExt;
use headroom_storage::schema;
use serde_json::Value;

use crate::catalog::{SnapshotSource, StoredTable};
use crate::error::QueryError;
use crate::file_cache::{CacheStats, DecodedFiles};
use crate::kpi::KpiSettings;
use crate::query_limits::{GuardRule, QueryLimits};

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
    file_cache: Option<Arc<DecodedFiles>>,
    /// Where queries run when not here.
    cluster: Option<crate::cluster::Cluster>,
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
    /// views; each query runs within `limits`. Up to `file_cache_bytes` of decoded rollup files
    /// are kept in memory for every query to share (0: none).
    pub async fn new(
        source: Arc<dyn SnapshotSource>,
        limits: QueryLimits,
        kpi: &KpiSettings,
        file_cache_bytes: u64,
    ) -> Result<Self, QueryError> {
        let cache = DecodedFiles::new(file_cache_bytes);
        let tables = schema::tables()
            .iter()
            .map(|def| {
                let table: Arc<dyn TableProvider> =
                    Arc::new(StoredTable::new(def, source.clone()).with_cache(cache.clone()));
                (def.name, table)
            })
            .collect();
        Self::build(tables, Some(source), cache, limits, kpi).await
    }

    /// [`QueryEngine::new`] over what `store` has published to its object store, with every
    /// query run on `cluster` (see [`crate::cluster`]).
    pub async fn on_cluster(
        store: Arc<headroom_storage::store::Store>,
        cluster: crate::cluster::Cluster,
        limits: QueryLimits,
        kpi: &KpiSettings,
    ) -> Result<Self, QueryError> {
        let mut engine =
            Self::new(Arc::new(crate::cluster::Published(store)), limits, kpi, 0).await?;
        engine.cluster = Some(cluster);
        Ok(engine)
    }

    /// A session over the given tables (named as in the storage contract), with everything
    /// else [`QueryEngine::new`] sets up. Golden SQL tests use it with in-memory tables.
    pub async fn with_tables(
        tables: Vec<(&str, Arc<dyn TableProvider>)>,
        limits: QueryLimits,
        kpi: &KpiSettings,
    ) -> Result<Self, QueryError> {
        Self::build(tables, None, None, limits, kpi).await
    }

    async fn build(
        tables: Vec<(&str, Arc<dyn TableProvider>)>,
        source: Option<Arc<dyn SnapshotSource>>,
        file_cache: Option<Arc<DecodedFiles>>,
        limits: QueryLimits,
        kpi: &KpiSettings,
    ) -> Result<Self, QueryError> {
        // `information_schema` comes from `pg_compat`, in PostgreSQL's terms. DataFusion's own
        // settings can be tuned with `DATAFUSION_*` variables, as in `datafusion-cli`.
        let config = SessionConfig::from_env()?
            .with_information_schema(false)
            .with_default_catalog_and_schema(CATALOG, SCHEMA);
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(GuardRule::new(limits)));
        if let Some(source) = &source {
            // Aggregates over rollups read the coarsest levels that fit their range.
            state = state.with_optimizer_rule(Arc::new(crate::ladder::RollupLadder::new(
                source.clone(),
                file_cache.clone(),
            )));
        }
        let state = state.build();
        if let Some((url, store)) = source.as_ref().and_then(|s| s.object_store()) {
            let url = url::Url::parse(&url)
                .map_err(|e| QueryError::Internal(format!("object store URL {url}: {e}")))?;
            state.runtime_env().register_object_store(&url, store);
        }
        let mut ctx = SessionContext::new_with_state(state);
        crate::functions::register(&mut ctx)?;
        for (name, table) in tables {
            ctx.register_table(name, table)?;
        }
        crate::pg_compat::register(&ctx, CATALOG)?;
        crate::kpi::register(&ctx, kpi, source).await?;
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
            file_cache,
            cluster: None,
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
    /// What the cache of decoded rollup files holds and served; `None` without one.
    pub fn file_cache_stats(&self) -> Option<CacheStats> {
        self.file_cache.as_ref().map(|c| c.stats())
    }

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
    /// binary and nested columns come as text ([`crate::client_columns`]), for formats without such
    /// types (CSV).
    pub async fn sql_with_schema(
        &self,
        sql: &str,
        readable: bool,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        let mut df = self.plan(sql).await?;
        if readable {
            let plan = crate::client_columns::readable(df.into_unoptimized_plan())?;
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
        let mut stream = self.execute(df).await?;
        let (mut batches, mut bytes) = (Vec::new(), 0usize);
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            bytes += batch.get_array_memory_size();
            if bytes > self.limits.memory_bytes {
                return Err(QueryError::DataFusion(
                    datafusion::error::DataFusionError::ResourcesExhausted(format!(
                        "the result is larger than the {} a query may use; add a LIMIT, or \
                         read it over the PostgreSQL protocol, which streams it",
                        crate::query_limits::bytes(self.limits.memory_bytes)
                    )),
                ));
            }
            batches.push(batch);
        }
        Ok(batches)
    }

    /// Starts running a planned query: here, or on the cluster (see [`crate::cluster`]).
    pub async fn execute(&self, df: DataFrame) -> Result<SendableRecordBatchStream, QueryError> {
        let Some(cluster) = &self.cluster else {
            return Ok(df.execute_stream().await?);
        };
        let task = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await?;
        let plan = cluster.distribute(plan)?;
        Ok(datafusion::physical_plan::execute_stream(plan, task)?)
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
    let mut out = Vec::new();
    write_json_rows(batches, &mut out)?;
    serde_json::from_slice(&out)
        .map_err(|e| QueryError::Internal(format!("re-reading JSON rows: {e}")))
}

/// The HTTP API's answer, `{"columns": [...], "rows": [[...], ...]}`, written straight from
/// the Arrow arrays: no JSON value per cell is built.
pub fn json_body(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, QueryError> {
    let columns: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
    let mut out = Vec::with_capacity(64 + batches.iter().map(|b| b.num_rows() * 64).sum::<usize>());
    out.extend_from_slice(b"{\"columns\":");
    serde_json::to_writer(&mut out, &columns)
        .map_err(|e| QueryError::Internal(format!("writing column names: {e}")))?;
    out.extend_from_slice(b",\"rows\":");
    write_json_rows(batches, &mut out)?;
    out.push(b'}');
    Ok(out)
}

/// `[[...], ...]`: each row a JSON array, each value encoded by arrow-json.
fn write_json_rows(batches: &[RecordBatch], out: &mut Vec<u8>) -> Result<(), QueryError> {
    let options = arrow::json::writer::EncoderOptions::default().with_explicit_nulls(true);
    out.push(b'[');
    let mut first = true;
    for batch in batches {
        let schema = batch.schema();
        let mut encoders = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, array)| arrow::json::writer::make_encoder(field, array, &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'[');
            for (i, encoder) in encoders.iter_mut().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if encoder.is_null(row) {
                    out.extend_from_slice(b"null");
                } else {
                    encoder.encode(row, out);
                }
            }
            out.push(b']');
        }
    }
    out.push(b']');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        ArrayRef, FixedSizeBinaryArray, Float64Array, Int64Array, ListArray, StringArray,
        TimestampNanosecondArray,
    };
    use arrow::datatypes::Int32Type;

    #[test]
    fn json_body_writes_every_type_as_the_api_promises() {
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("n", Arc::new(Int64Array::from(vec![Some(1), None]))),
            (
                "x",
                Arc::new(Float64Array::from(vec![f64::NAN, 0.25])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![Some("a \"quoted\"\n"), None])),
            ),
            (
                "id",
                Arc::new(
                    FixedSizeBinaryArray::try_from_iter([[0xabu8, 0x01], [0, 0xff]].into_iter())
                        .unwrap(),
                ),
            ),
            (
                "t",
                Arc::new(
                    TimestampNanosecondArray::from(vec![1_500_000_000, 0]).with_timezone("UTC"),
                ),
            ),
            (
                "l",
                Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
                    Some(vec![Some(1), None]),
                    None,
                ])),
            ),
            // The same name twice: both stay, in order.
            ("n", Arc::new(Int64Array::from(vec![7, 8]))),
        ];
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let body = json_body(&batch.schema(), &[batch.slice(0, 1), batch.slice(1, 1)]).unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        let want = serde_json::json!({
            "columns": ["n", "x", "s", "id", "t", "l", "n"],
            "rows": [
                [1, null, "a \"quoted\"\n", "ab01", "1970-01-01T00:00:01.500Z", [1, null], 7],
                [null, 0.25, null, "00ff", "1970-01-01T00:00:00Z", null, 8],
            ],
        });
        assert_eq!(got, want);
        assert_eq!(
            to_json_rows(&[batch]).unwrap(),
            want["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_array().unwrap().clone())
                .collect::<Vec<_>>()
        );
        // No rows: an empty list, not a missing one.
        let empty = RecordBatch::new_empty(batch_schema());
        let body = json_body(&empty.schema(), &[empty]).unwrap();
        assert_eq!(body, br#"{"columns":["n"],"rows":[]}"#);
    }

    fn batch_schema() -> SchemaRef {
        Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("n", arrow::datatypes::DataType::Int64, true),
        ]))
    }
}
