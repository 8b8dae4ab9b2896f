//! Rollup files decoded once and kept in memory, for the dashboards that ask the same
//! questions of them at every refresh.
//!
//! Over a rollup, most of a dashboard query's time goes to decoding Parquet: the latency
//! sketches are list columns, and a week of hourly service rows is a megabyte on disk but ten
//! in Arrow. ClickHouse keeps an uncompressed-block cache for the same reason. A stored file is
//! immutable and uniquely named, so a decoded copy never goes stale: once compaction or
//! retention removes the file, no snapshot names it any more and its copy ages out.
//!
//! Files are decoded in the background after a query first reads them from Parquet, so no
//! query waits for a whole file it only needed a few columns of. The cache is bounded in bytes
//! (`quick_cache`, whose admission keeps a one-off scan of old data from evicting the files
//! dashboards keep reading).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::array::RecordBatchReader;
use arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

/// Rows per decoded batch: the batch size DataFusion works in.
const BATCH_ROWS: usize = 8192;

/// How long after a miss the file is decoded: the query that missed it runs first, on cores it
/// does not share with the decoding.
const DECODE_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// Files waiting to be decoded at most: a query over months of rollups does not queue
/// thousands; what is left out is queued by a later query.
const MAX_QUEUED: usize = 64;

#[derive(Clone)]
struct Bytes;

impl Weighter<PathBuf, Arc<[RecordBatch]>> for Bytes {
    fn weight(&self, _: &PathBuf, batches: &Arc<[RecordBatch]>) -> u64 {
        batches
            .iter()
            .map(|b| b.get_array_memory_size() as u64)
            .sum::<u64>()
            .max(1)
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Files read from memory.
    pub hits: u64,
    /// Files read from Parquet (and decoded for later).
    pub misses: u64,
    /// Files decoded.
    pub loads: u64,
    pub files: u64,
    pub bytes: u64,
    pub capacity_bytes: u64,
}

#[derive(Default)]
struct Queue {
    /// Files waiting to be decoded or being decoded.
    queued: HashSet<PathBuf>,
    /// Files that are not in their table's schema (written before an upgrade): never decoded.
    refused: HashSet<PathBuf>,
}

pub struct DecodedFiles {
    cache: Cache<PathBuf, Arc<[RecordBatch]>, Bytes>,
    queue: Mutex<Queue>,
    /// Held while a file is decoded: one at a time, beside the queries.
    decoding: Mutex<()>,
    hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
}

impl std::fmt::Debug for DecodedFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedFiles")
            .field("stats", &self.stats())
            .finish()
    }
}

impl DecodedFiles {
    /// A cache of at most `capacity_bytes` of decoded batches; `None` for 0 (no cache).
    pub fn new(capacity_bytes: u64) -> Option<Arc<Self>> {
        if capacity_bytes == 0 {
            return None;
        }
        let options = quick_cache::OptionsBuilder::new()
            // A few lookups per query: one lock is no contention, and one shard lets a file
            // take up to the whole capacity.
            .shards(1)
            .estimated_items_capacity(1024)
            .weight_capacity(capacity_bytes)
            .build()
            .expect("cache options are valid");
        Some(Arc::new(Self {
            cache: Cache::with_options(options, Bytes, Default::default(), Default::default()),
            queue: Mutex::default(),
            decoding: Mutex::default(),
            hits: AtomicU64::default(),
            misses: AtomicU64::default(),
            loads: AtomicU64::default(),
        }))
    }

    /// The decoded batches of `path`, if they are in memory. A miss schedules the file's
    /// decoding in the background (on the blocking pool of the current Tokio runtime, shortly
    /// after) unless it is under way or cannot be done; its batches must have `schema`.
    pub fn get_or_schedule(
        self: &Arc<Self>,
        path: &Path,
        schema: &SchemaRef,
    ) -> Option<Arc<[RecordBatch]>> {
        if let Some(batches) = self.cache.get(path) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Some(batches);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return None;
        };
        {
            let mut queue = self.queue();
            if queue.queued.len() >= MAX_QUEUED
                || queue.refused.contains(path)
                || !queue.queued.insert(path.to_owned())
            {
                return None;
            }
        }
        let (this, path, schema) = (self.clone(), path.to_owned(), schema.clone());
        runtime.spawn(async move {
            tokio::time::sleep(DECODE_DELAY).await;
            let _ = tokio::task::spawn_blocking(move || this.load(path, &schema)).await;
        });
        None
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Sets of paths: a panic elsewhere cannot leave them inconsistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn load(&self, path: PathBuf, schema: &SchemaRef) {
        let decoded = {
            let _one_at_a_time = self.decoding.lock().unwrap_or_else(|e| e.into_inner());
            decode(&path, schema)
        };
        let mut queue = self.queue();
        queue.queued.remove(&path);
        match decoded {
            Ok(Some(batches)) => {
                self.loads.fetch_add(1, Ordering::Relaxed);
                self.cache.insert(path, batches.into());
            }
            // Read from Parquet, which adapts old schemas, from now on.
            Ok(None) => {
                tracing::debug!(path = %path.display(), "file schema differs; not cached");
                queue.refused.insert(path);
            }
            // Removed by compaction meanwhile, most likely; a later query may try again.
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "decoding for the cache failed")
            }
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
            files: self.cache.len() as u64,
            bytes: self.cache.weight(),
            capacity_bytes: self.cache.capacity(),
        }
    }
}

/// Every row of the file at `path`, or `None` when its columns are not exactly `schema`'s.
fn decode(
    path: &Path,
    schema: &SchemaRef,
) -> Result<Option<Vec<RecordBatch>>, Box<dyn std::error::Error + Send + Sync>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?
        .with_batch_size(BATCH_ROWS)
        .build()?;
    if reader.schema().fields() != schema.fields() {
        return Ok(None);
    }
    let batches = reader
        .map(|b| Ok(b?.with_schema(schema.clone())?))
        .collect::<Result<Vec<_>, Box<dyn std::error::Error + Send + Sync>>>()?;
    Ok(Some(batches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, ListArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::parquet::arrow::ArrowWriter;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new(
                "l",
                DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))),
                false,
            ),
        ]))
    }

    fn write(path: &Path, schema: &SchemaRef, rows: i64) {
        let lists = ListArray::from_iter_primitive::<Int64Type, _, _>(
            (0..rows).map(|i| Some(vec![Some(i); 3])),
        );
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows)),
                Arc::new(lists),
            ],
        )
        .unwrap();
        let mut w =
            ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema.clone(), None)
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    async fn settle(cache: &Arc<DecodedFiles>) {
        for _ in 0..200 {
            if cache.queue().queued.is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_file_is_decoded_after_its_first_miss_and_then_served_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.parquet");
        let schema = schema();
        write(&path, &schema, 20_000);
        let cache = DecodedFiles::new(64 << 20).unwrap();
        assert!(cache.get_or_schedule(&path, &schema).is_none());
        settle(&cache).await;
        let batches = cache.get_or_schedule(&path, &schema).expect("decoded");
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 20_000);
        assert!(batches.iter().all(|b| b.schema() == schema));
        let stats = cache.stats();
        assert_eq!(
            (stats.hits, stats.misses, stats.loads, stats.files),
            (1, 1, 1, 1)
        );
        assert!(stats.bytes > 20_000 * 8 * 4);
    }

    #[tokio::test]
    async fn files_of_another_schema_and_missing_files_are_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.parquet");
        let old: SchemaRef = Arc::new(Schema::new(vec![schema().field(0).clone()]));
        let batch =
            RecordBatch::try_new(old.clone(), vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
        let mut w = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), old, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let cache = DecodedFiles::new(64 << 20).unwrap();
        let schema = schema();
        assert!(cache.get_or_schedule(&path, &schema).is_none());
        let gone = dir.path().join("gone.parquet");
        assert!(cache.get_or_schedule(&gone, &schema).is_none());
        settle(&cache).await;
        // The old file is never decoded again; the missing one may be tried later.
        assert!(cache.queue().refused.contains(&path));
        assert!(!cache.queue().refused.contains(&gone));
        assert!(cache.get_or_schedule(&path, &schema).is_none());
        assert!(cache.queue().queued.is_empty());
        assert_eq!(cache.stats().loads, 0);
    }

    #[tokio::test]
    async fn the_cache_holds_no_more_than_its_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let schema = schema();
        let cache = DecodedFiles::new(2 << 20).unwrap();
        for i in 0..8 {
            let path = dir.path().join(format!("{i}.parquet"));
            write(&path, &schema, 20_000);
            assert!(cache.get_or_schedule(&path, &schema).is_none());
            settle(&cache).await;
        }
        let stats = cache.stats();
        assert_eq!(stats.loads, 8);
        assert!(stats.files < 8, "{stats:?}");
        assert!(stats.bytes <= 2 << 20, "{stats:?}");
        assert!(DecodedFiles::new(0).is_none());
    }

    #[tokio::test]
    async fn a_query_over_many_files_queues_a_bounded_number() {
        let cache = DecodedFiles::new(64 << 20).unwrap();
        let schema = schema();
        {
            let _busy = cache.decoding.lock().unwrap();
            for i in 0..MAX_QUEUED * 2 {
                let path = PathBuf::from(format!("/nonexistent/{i}.parquet"));
                assert!(cache.get_or_schedule(&path, &schema).is_none());
            }
            assert_eq!(cache.queue().queued.len(), MAX_QUEUED);
        }
        settle(&cache).await;
        assert!(cache.queue().queued.is_empty());
        assert_eq!(cache.stats().misses, MAX_QUEUED as u64 * 2);
    }
}
