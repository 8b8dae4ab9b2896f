//! DataFusion tables over the store: the Parquet files of a table and its hot buffer, read
//! together from one [`Snapshot`] so every acknowledged row is seen exactly once.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use headroom_collector::store::{Snapshot, Store};

/// Where a table's rows come from.
pub trait SnapshotSource: Send + Sync {
    fn snapshot(&self, table: &str) -> std::result::Result<Snapshot, String>;
}

impl SnapshotSource for Store {
    fn snapshot(&self, table: &str) -> std::result::Result<Snapshot, String> {
        Store::snapshot(self, table).map_err(|e| e.to_string())
    }
}

/// One stored table as a DataFusion [`TableProvider`].
pub struct StoredTable {
    name: &'static str,
    schema: SchemaRef,
    source: Arc<dyn SnapshotSource>,
}

impl fmt::Debug for StoredTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredTable")
            .field("name", &self.name)
            .finish()
    }
}

impl StoredTable {
    pub fn new(name: &'static str, schema: SchemaRef, source: Arc<dyn SnapshotSource>) -> Self {
        Self {
            name,
            schema,
            source,
        }
    }
}

/// Local paths as object-store locations (the store root is absolute).
fn location(path: &std::path::Path) -> String {
    path.to_string_lossy().trim_start_matches('/').to_owned()
}

#[async_trait]
impl TableProvider for StoredTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // DataFusion pushes the filters into the Parquet scan as physical predicates (row-group
        // statistics, bloom filters); rows are re-checked above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snap = self
            .source
            .snapshot(self.name)
            .map_err(DataFusionError::Execution)?;
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !snap.files.is_empty() {
            let target = state.config_options().execution.target_partitions.max(1);
            let mut groups: Vec<Vec<PartitionedFile>> =
                vec![Vec::new(); target.min(snap.files.len())];
            let n = groups.len();
            for (i, f) in snap.files.iter().enumerate() {
                groups[i % n].push(PartitionedFile::new(location(&f.path), f.size_bytes));
            }
            let source = Arc::new(ParquetSource::new(self.schema.clone()));
            let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), source)
                .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
            inputs.push(
                ParquetFormat::default()
                    .create_physical_plan(state, config)
                    .await?,
            );
        }
        if !snap.batches.is_empty() {
            inputs.push(MemorySourceConfig::try_new_exec(
                &[snap.batches],
                self.schema.clone(),
                projection.cloned(),
            )?);
        }
        if inputs.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(inputs)
    }
}

/// A fixed table of settings (Apdex thresholds, SLO definitions) that queries read and nothing
/// can write: unlike `MemTable`, it does not take `INSERT`.
#[derive(Debug)]
pub struct SettingsTable(datafusion::catalog::MemTable);

impl SettingsTable {
    pub fn new(batch: arrow::array::RecordBatch) -> Result<Self> {
        Ok(Self(datafusion::catalog::MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?))
    }
}

#[async_trait]
impl TableProvider for SettingsTable {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }
}

/// A read-only table whose whole contents are replaced at once (the published forecasts):
/// a query reads the contents it planned with, and the table never leaves the catalog.
#[derive(Debug)]
pub struct PublishedTable {
    schema: SchemaRef,
    current: std::sync::RwLock<Arc<SettingsTable>>,
}

impl PublishedTable {
    pub fn new(batch: arrow::array::RecordBatch) -> Result<Self> {
        Ok(Self {
            schema: batch.schema(),
            current: std::sync::RwLock::new(Arc::new(SettingsTable::new(batch)?)),
        })
    }

    /// Replaces the contents; the batch must have the table's schema.
    pub fn replace(&self, batch: arrow::array::RecordBatch) -> Result<()> {
        if batch.schema() != self.schema {
            return Err(DataFusionError::Internal(format!(
                "published rows have schema {:?}, the table {:?}",
                batch.schema(),
                self.schema
            )));
        }
        let table = Arc::new(SettingsTable::new(batch)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = table;
        Ok(())
    }
}

#[async_trait]
impl TableProvider for PublishedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let current = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        current.scan(state, projection, filters, limit).await
    }
}
