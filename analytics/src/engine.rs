//! The one query engine behind every SQL surface (HTTP API, `headroom query`, later the
//! PostgreSQL wire): a DataFusion session with the stored tables and JSON attribute functions.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema};
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use headroom_collector::schema;
use serde_json::Value;

use crate::catalog::{SnapshotSource, StoredTable};
use crate::error::QueryError;

/// A query's answer in the shape of the HTTP API: column names and rows of JSON values.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JsonRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
}

impl QueryEngine {
    /// A session over every table of the storage contract, read from `source`.
    pub fn new(source: Arc<dyn SnapshotSource>) -> Result<Self, QueryError> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("headroom", "public");
        let mut ctx = SessionContext::new_with_config(config);
        datafusion_functions_json::register_all(&mut ctx)?;
        for def in schema::tables() {
            let table = StoredTable::new(def.name, def.schema(), source.clone());
            ctx.register_table(def.name, Arc::new(table))?;
        }
        Ok(Self { ctx })
    }

    /// Plans one read-only statement: DDL, DML and `SET`-style statements are refused.
    async fn plan(&self, sql: &str) -> Result<DataFrame, QueryError> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        Ok(self.ctx.sql_with_options(sql, options).await?)
    }

    /// Runs one read-only statement.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        Ok(self.plan(sql).await?.collect().await?)
    }

    /// Runs `sql` and renders the result as JSON rows.
    pub async fn sql_json(&self, sql: &str) -> Result<JsonRows, QueryError> {
        let df = self.plan(sql).await?;
        let columns: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let batches = df.collect().await?;
        Ok(JsonRows {
            rows: to_json_rows(&batches)?,
            columns,
        })
    }
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
