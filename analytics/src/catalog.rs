//! DataFusion tables over the store: the Parquet files of a table and its hot buffer, read
//! together from one [`Snapshot`] so every acknowledged row is seen exactly once.

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::{DataSourceExec, MemorySourceConfig};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use headroom_storage::parquet::DataFile;
use headroom_storage::schema::TableDef;
use headroom_storage::store::{Snapshot, Store};

use crate::file_cache::DecodedFiles;

/// Where a table's rows come from.
pub trait SnapshotSource: Send + Sync {
    fn snapshot(&self, table: &str) -> std::result::Result<Snapshot, String>;

    /// The object store other writers' files are read from, and its URL (`s3://bucket`), as
    /// snapshots name it.
    fn object_store(&self) -> Option<(String, Arc<dyn object_store::ObjectStore>)> {
        None
    }
}

impl SnapshotSource for Store {
    fn snapshot(&self, table: &str) -> std::result::Result<Snapshot, String> {
        Store::snapshot(self, table).map_err(|e| e.to_string())
    }

    fn object_store(&self) -> Option<(String, Arc<dyn object_store::ObjectStore>)> {
        let remote = self.config().remote.as_deref()?;
        Some((remote.url().to_owned(), remote.object_store()))
    }
}

/// One stored table as a DataFusion [`TableProvider`].
pub struct StoredTable {
    def: &'static TableDef,
    schema: SchemaRef,
    source: Arc<dyn SnapshotSource>,
    /// Decoded files of a rollup table; `None` reads every file from Parquet.
    cache: Option<Arc<DecodedFiles>>,
}

impl fmt::Debug for StoredTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredTable")
            .field("name", &self.def.name)
            .finish()
    }
}

impl StoredTable {
    pub fn new(def: &'static TableDef, source: Arc<dyn SnapshotSource>) -> Self {
        Self {
            def,
            schema: def.schema(),
            source,
            cache: None,
        }
    }

    /// Reads the files `cache` holds from memory, if this is a table dashboards read over and
    /// over: a rollup, or the service graph's. Raw signals are too large to keep.
    pub fn with_cache(mut self, cache: Option<Arc<DecodedFiles>>) -> Self {
        if self.def.rollup.is_some() || self.def.name == headroom_storage::schema::EDGE_ROLLUP_1M {
            self.cache = cache;
        }
        self
    }

    pub fn def(&self) -> &'static TableDef {
        self.def
    }
}

/// Local paths as object-store locations (the store root is absolute); keys in an object
/// store as they are.
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
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut snap = self
            .source
            .snapshot(self.def.name)
            .map_err(DataFusionError::Execution)?;
        // A file lies in one partition, `[start, start + partition_ns)`: one outside the range
        // the filters allow is not opened, so a day's query over a week of per-minute rollups
        // reads a day of files, not a week's footers.
        let range = crate::ranged_view::range_of(self.def.time_column, filters);
        let (lo, hi) = (range.from.unwrap_or(i64::MIN), range.to.unwrap_or(i64::MAX));
        let width = self.def.partition_ns;
        let in_range = |f: &DataFile| {
            f.hour_ns
                .is_none_or(|start| start < hi && start.saturating_add(width) > lo)
        };
        snap.files.retain(in_range);
        snap.remote_files.retain(in_range);
        let target = state.config_options().execution.target_partitions.max(1);
        // Files in memory are dealt round-robin to the partitions, as files are.
        let mut decoded: Vec<Vec<RecordBatch>> = Vec::new();
        if let Some(cache) = &self.cache {
            let mut next = 0;
            snap.files.retain(|f| {
                let Some(batches) = cache.get_or_schedule(&f.path, &self.schema) else {
                    return true;
                };
                if decoded.len() < target {
                    decoded.push(Vec::new());
                }
                decoded[next % target].extend(batches.iter().cloned());
                next += 1;
                false
            });
        }
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        let mut stored = vec![(ObjectStoreUrl::local_filesystem(), snap.files)];
        if let Some(url) = &snap.remote_url {
            stored.push((ObjectStoreUrl::parse(url)?, snap.remote_files));
        }
        for (url, files) in stored {
            if files.is_empty() {
                continue;
            }
            let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); target.min(files.len())];
            let n = groups.len();
            for (i, f) in files.iter().enumerate() {
                groups[i % n].push(PartitionedFile::new(location(&f.path), f.size_bytes));
            }
            let source = Arc::new(ParquetSource::new(self.schema.clone()));
            let config = FileScanConfigBuilder::new(url, source)
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
            decoded.push(snap.batches);
        }
        if !decoded.is_empty() {
            let memory =
                MemorySourceConfig::try_new(&decoded, self.schema.clone(), projection.cloned())?
                    .with_limit(limit);
            inputs.push(DataSourceExec::from_data_source(memory));
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

#[cfg(test)]
mod tests {
    use super::*;
    use headroom_storage::schema;

    const MIN: i64 = 60_000_000_000;

    /// A table whose files do not exist: a query that opens one fails.
    struct MissingFiles(Vec<headroom_storage::parquet::DataFile>);

    impl SnapshotSource for MissingFiles {
        fn snapshot(&self, table: &str) -> std::result::Result<Snapshot, String> {
            Ok(Snapshot {
                schema: schema::table(table).schema(),
                files: self.0.clone(),
                batches: Vec::new(),
                remote_files: Vec::new(),
                remote_url: None,
            })
        }
    }

    #[tokio::test]
    async fn files_outside_the_queried_time_are_not_opened() {
        const DAY: i64 = 24 * 60 * MIN;
        // Day partitions 1970-01-01, -02 and -03.
        let files = (0..3)
            .map(|d| headroom_storage::parquet::DataFile {
                path: format!("/nonexistent/day-{d}.parquet").into(),
                size_bytes: 1000,
                rows: 1,
                hour_ns: Some(d * DAY),
                wal_lsn: 0,
                source_rows: None,
            })
            .collect();
        let def = schema::table(schema::SERVICE_ROLLUP_1H);
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_table(
            "t",
            Arc::new(StoredTable::new(def, Arc::new(MissingFiles(files)))),
        )
        .unwrap();
        let count = |filter: &'static str| {
            let ctx = ctx.clone();
            async move {
                let sql = format!("SELECT count(*) FROM t WHERE {filter}");
                ctx.sql(&sql).await?.collect().await
            }
        };
        for after in [
            "\"time\" >= TIMESTAMP '1970-01-04T00:00:00Z'",
            "\"time\" < TIMESTAMP '1970-01-01T00:00:00Z'",
            "\"time\" BETWEEN TIMESTAMP '1970-01-05T00:00:00Z' AND TIMESTAMP '1970-01-06T00:00:00Z'",
        ] {
            let batches = count(after).await.unwrap();
            let n = batches[0]
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>();
            assert_eq!(n.map(|n| n.value(0)), Some(0), "{after}");
        }
        // Overlapping the third day only, or not bounded: the files are read.
        for (overlapping, file) in [
            ("\"time\" > TIMESTAMP '1970-01-03T23:59:00Z'", "day-2"),
            (
                "\"time\" <> TIMESTAMP '1970-01-05T00:00:00Z'",
                "nonexistent",
            ),
        ] {
            let error = count(overlapping).await.unwrap_err().to_string();
            assert!(error.contains(file), "{overlapping}: {error}");
        }
    }
}
