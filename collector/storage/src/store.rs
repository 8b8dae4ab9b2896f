//! The hot buffer and the table manifest.
//!
//! Each table keeps the rows not yet in Parquet (`hot`; a rollup table merges them by key as
//! they arrive), the rows being written right now (`flushing`) and the list of its Parquet files,
//! all under one mutex. A query takes a
//! [`Snapshot`] of all three at once, so a row is always seen exactly once: in memory before its
//! file is in the manifest, in the file after. The file list is the store's own, not a directory
//! listing, so a half-written file is never read.
//!
//! Rows carry the log sequence number (LSN) of the WAL record they came from. Records are applied
//! in LSN order, so each table knows the first LSN it still holds only in memory; the WAL may
//! retire every record below the smallest of those (see [`Store::retirable_lsn`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{BooleanArray, RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::SchemaRef;

use crate::error::StoreError;
use crate::parquet::{DataFile, list_table, write_table};
use crate::remote::Remote;
use crate::rollup::{Merged, SpanRollups};
use crate::schema::{self, TableDef};

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub root: PathBuf,
    /// Flush a table once this many rows are buffered.
    pub flush_rows: usize,
    /// … or once its buffered rows take this many bytes of memory.
    pub flush_bytes: usize,
    /// Flush a table once its oldest buffered row is this old.
    pub flush_age: Duration,
    /// Refuse new data (retryable) while this many bytes are buffered.
    pub max_buffer_bytes: usize,
    /// The object store that files are published to, and other writers' files read from.
    pub remote: Option<Arc<Remote>>,
}

impl StoreConfig {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            flush_rows: 1_000_000,
            flush_bytes: 64 << 20,
            flush_age: Duration::from_secs(60),
            max_buffer_bytes: 512 << 20,
            remote: None,
        }
    }
}

#[derive(Default)]
struct TableState {
    hot: Vec<RecordBatch>,
    hot_rows: usize,
    hot_bytes: usize,
    oldest: Option<Instant>,
    /// LSN of the first row in `hot` and `merged` (rows are appended in LSN order).
    hot_first_lsn: Option<u64>,
    /// A rollup table's buffered rows, merged by key as they arrive; counted in `hot_rows` and
    /// `hot_bytes`, and moved to `hot` as one batch when a flush starts.
    merged: Merged,
    /// `merged` as Arrow, built by the first snapshot after it changed.
    merged_batch: Option<RecordBatch>,
    flushing: Vec<RecordBatch>,
    flushing_bytes: usize,
    flushing_first_lsn: Option<u64>,
    /// The highest LSN appended so far: the watermark of the next flush.
    last_lsn: u64,
    files: Vec<DataFile>,
    /// Per hour partition, the highest watermark of its files: rows of a WAL record at or below
    /// it are already in Parquet.
    watermarks: HashMap<i64, u64>,
}

impl TableState {
    fn first_unflushed_lsn(&self) -> Option<u64> {
        self.flushing_first_lsn.or(self.hot_first_lsn)
    }

    /// Counts rows of WAL record `lsn` just added to the hot buffer.
    fn note_appended(&mut self, rows: usize, bytes: usize, lsn: u64) {
        self.hot_rows += rows;
        self.hot_bytes += bytes;
        self.oldest.get_or_insert_with(Instant::now);
        self.hot_first_lsn.get_or_insert(lsn);
        self.last_lsn = self.last_lsn.max(lsn);
    }

    /// Moves the merged rollup rows into `hot` as one batch.
    fn seal_merged(&mut self, def: &TableDef) -> Result<(), StoreError> {
        if self.merged.is_empty() {
            return Ok(());
        }
        let batch = self.merged_batch(def)?;
        debug_assert!(self.hot_rows >= self.merged.len() && self.hot_bytes >= self.merged.bytes());
        self.hot_rows = self.hot_rows.saturating_sub(self.merged.len()) + batch.num_rows();
        self.hot_bytes =
            self.hot_bytes.saturating_sub(self.merged.bytes()) + batch.get_array_memory_size();
        self.merged = Merged::default();
        self.merged_batch = None;
        self.hot.push(batch);
        Ok(())
    }

    /// The merged rollup rows as one batch: a dashboard refreshing every few seconds takes
    /// many snapshots between two changes.
    fn merged_batch(&mut self, def: &TableDef) -> Result<RecordBatch, StoreError> {
        if let Some(batch) = &self.merged_batch {
            return Ok(batch.clone());
        }
        let batch = self.merged.to_batch(def)?;
        self.merged_batch = Some(batch.clone());
        Ok(batch)
    }

    fn add_files(&mut self, files: Vec<DataFile>) {
        for f in &files {
            if let Some(hour) = f.hour_ns {
                let w = self.watermarks.entry(hour).or_default();
                *w = (*w).max(f.wal_lsn);
            }
        }
        self.files.extend(files);
    }
}

struct Table {
    def: &'static TableDef,
    state: Mutex<TableState>,
    /// Serialises flushes of one table.
    flush: Mutex<()>,
}

/// A batch [`Store::prepare`] checked against its table's schema and trimmed.
#[derive(Debug, Clone)]
pub struct Prepared(RecordBatch);

impl Prepared {
    pub fn batch(&self) -> &RecordBatch {
        &self.0
    }
}

/// What a query sees of one table at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub schema: SchemaRef,
    /// This server's files, on local disk.
    pub files: Vec<DataFile>,
    pub batches: Vec<RecordBatch>,
    /// Other writers' files in the object store at `remote_url`; their paths are keys.
    pub remote_files: Vec<DataFile>,
    pub remote_url: Option<String>,
}

/// A file that left the manifest, waiting for its grace period to end before it is deleted:
/// its local copy, its object, or both.
#[derive(Debug, Clone)]
struct Gone {
    local: Option<PathBuf>,
    key: Option<object_store::path::Path>,
}

pub struct Store {
    config: StoreConfig,
    tables: Vec<Table>,
    /// Signalled when a table crosses its size threshold, so the flusher starts at once.
    flush_wanted: tokio::sync::Notify,
    /// Every WAL record up to this LSN has been appended to all its tables.
    applied_lsn: AtomicU64,
    /// Files no longer in the manifest (compacted or expired), deleted after a grace period
    /// so that queries which planned them can finish.
    graveyard: Mutex<Vec<(Gone, Instant)>>,
    /// Serialises changes to the file lists while they are published to the object store, so
    /// each manifest written lists every table as it is after the change.
    publishing: Mutex<()>,
    /// Serialises compactions.
    compacting: Mutex<()>,
    /// Held (flock) while the store is open for writing: two writers would corrupt the WAL.
    _lock: Option<std::fs::File>,
}

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub files_merged: usize,
    pub files_written: usize,
}

/// A partition that still receives data is compacted once it holds this many small files.
pub(crate) const HOT_PARTITION_FILES: usize = 8;

/// Per-table counters, for `/metrics` and tests.
#[derive(Debug, Clone, Default)]
pub struct TableStats {
    pub buffered_rows: usize,
    pub buffered_bytes: usize,
    pub files: usize,
    pub file_rows: u64,
    pub file_bytes: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the state half-updated: every critical
    // section only pushes, takes or swaps whole vectors, or merges rows into a rollup table's
    // buffer, which allocates but cannot fail.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    /// Opens the store at `config.root` for writing, creating it if needed, and loads the file
    /// lists.
    pub fn open(mut config: StoreConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&config.root).map_err(|e| StoreError::io(&config.root, e))?;
        config.root = config
            .root
            .canonicalize()
            .map_err(|e| StoreError::io(&config.root, e))?;
        let path = config.root.join(".lock");
        let lock = std::fs::File::create(&path).map_err(|e| StoreError::io(&path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::InUse(config.root.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io(&path, e)),
        }
        let mut store = Self::load(config, true)?;
        store._lock = Some(lock);
        if let Some(remote) = store.config.remote.clone() {
            store.reconcile(&remote)?;
            store.refresh_remote()?;
        }
        Ok(store)
    }

    /// Opens an existing store to read its files only (`headroom query`); changes nothing on
    /// disk, so it is safe beside a running server.
    pub fn open_read_only(root: &Path) -> Result<Self, StoreError> {
        let root = root.canonicalize().map_err(|e| StoreError::io(root, e))?;
        Self::load(StoreConfig::new(root), false)
    }

    fn load(config: StoreConfig, writable: bool) -> Result<Self, StoreError> {
        let mut tables = Vec::new();
        let mut max_lsn = 0;
        for def in schema::tables() {
            let files = list_table(&config.root, def.name, writable)?;
            max_lsn = files.iter().map(|f| f.wal_lsn).fold(max_lsn, u64::max);
            let mut state = TableState::default();
            state.add_files(files);
            tables.push(Table {
                def,
                state: Mutex::new(state),
                flush: Mutex::new(()),
            });
        }
        Ok(Self {
            config,
            tables,
            flush_wanted: tokio::sync::Notify::new(),
            applied_lsn: AtomicU64::new(max_lsn),
            graveyard: Mutex::new(Vec::new()),
            publishing: Mutex::new(()),
            compacting: Mutex::new(()),
            _lock: None,
        })
    }

    pub fn root(&self) -> &Path {
        &self.config.root
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn table(&self, name: &str) -> Result<&Table, StoreError> {
        self.tables
            .iter()
            .find(|t| t.def.name == name)
            .ok_or_else(|| StoreError::internal(format!("unknown table {name}")))
    }

    /// Bytes held in memory over all tables (buffered and being flushed).
    pub fn buffered_bytes(&self) -> usize {
        self.tables
            .iter()
            .map(|t| {
                let s = lock(&t.state);
                s.hot_bytes + s.flushing_bytes
            })
            .sum()
    }

    /// Checks that `batch` belongs in `table` and trims it for keeping: done before a batch is
    /// logged, so that applying a logged record cannot fail, and off the WAL's single thread.
    pub fn prepare(&self, table: &str, batch: RecordBatch) -> Result<Prepared, StoreError> {
        let t = self.table(table)?;
        if batch.schema() != t.def.schema() {
            return Err(StoreError::internal(format!(
                "batch schema does not match table {table}"
            )));
        }
        // Builders over-allocate; the buffer keeps batches for a while, so give the slack back.
        let (schema, mut columns, _) = batch.into_parts();
        columns
            .iter_mut()
            .for_each(arrow::array::Array::shrink_to_fit);
        Ok(Prepared(RecordBatch::try_new(schema, columns)?))
    }

    /// Adds rows from WAL record `lsn` (0 without a WAL) to a table's hot buffer; they are
    /// visible to the next snapshot. Records must be appended in LSN order.
    pub fn append(&self, table: &str, batch: RecordBatch, lsn: u64) -> Result<(), StoreError> {
        let batch = self.prepare(table, batch)?;
        self.append_prepared(table, batch, lsn)
    }

    /// [`Store::append`] of a batch [`Store::prepare`] has already checked.
    pub fn append_prepared(
        &self,
        table: &str,
        batch: Prepared,
        lsn: u64,
    ) -> Result<(), StoreError> {
        let batch = batch.0;
        let t = self.table(table)?;
        let bytes = batch.get_array_memory_size();
        let mut s = lock(&t.state);
        s.note_appended(batch.num_rows(), bytes, lsn);
        s.hot.push(batch);
        self.want_flush_if_full(&s);
        Ok(())
    }

    fn want_flush_if_full(&self, s: &TableState) {
        if s.hot_rows >= self.config.flush_rows || s.hot_bytes >= self.config.flush_bytes {
            self.flush_wanted.notify_one();
        }
    }

    /// Merges a request's span rollups from WAL record `lsn` (0 without a WAL) into the
    /// buffered rows of each rollup table. With `replay`, rows of a partition whose files
    /// already hold the record are left out.
    pub fn add_rollups(
        &self,
        rollups: &SpanRollups,
        lsn: u64,
        replay: bool,
    ) -> Result<(), StoreError> {
        for (table, rows) in rollups.tables() {
            let t = self.table(table)?;
            let mut guard = lock(&t.state);
            let s = &mut *guard;
            let (len, bytes) = (s.merged.len(), s.merged.bytes());
            let watermarks = &s.watermarks;
            s.merged_batch = None;
            let kept = s.merged.add(t.def, rows, |time| {
                !replay
                    || watermarks
                        .get(&t.def.partition_of(time))
                        .is_none_or(|&w| w < lsn)
            })?;
            if kept > 0 {
                let (added_rows, added_bytes) = (s.merged.len() - len, s.merged.bytes() - bytes);
                s.note_appended(added_rows, added_bytes, lsn);
                self.want_flush_if_full(s);
            }
        }
        Ok(())
    }

    /// Appends the rows of WAL record `lsn` that are not in Parquet yet; returns how many.
    pub fn replay(&self, table: &str, batch: RecordBatch, lsn: u64) -> Result<usize, StoreError> {
        let t = self.table(table)?;
        let keep = {
            let s = lock(&t.state);
            if s.watermarks.values().all(|&w| w < lsn) {
                None
            } else {
                let times = batch
                    .column_by_name(t.def.time_column)
                    .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
                    .ok_or_else(|| StoreError::internal(format!("{table}: no time column")))?;
                let keep: BooleanArray = times
                    .values()
                    .iter()
                    .map(|&ts| {
                        let partition = t.def.partition_of(ts);
                        Some(s.watermarks.get(&partition).is_none_or(|&w| w < lsn))
                    })
                    .collect();
                Some(keep)
            }
        };
        let batch = match keep {
            None => batch,
            Some(keep) => arrow::compute::filter_record_batch(&batch, &keep)?,
        };
        let rows = batch.num_rows();
        if rows > 0 {
            self.append(table, batch, lsn)?;
        }
        Ok(rows)
    }

    /// Records that every WAL record up to `lsn` has been appended to all its tables.
    pub fn set_applied_lsn(&self, lsn: u64) {
        self.applied_lsn.fetch_max(lsn, Ordering::SeqCst);
    }

    /// The highest LSN applied or found in a Parquet file's watermark: a WAL must number new
    /// records above it.
    pub fn applied_lsn(&self) -> u64 {
        self.applied_lsn.load(Ordering::SeqCst)
    }

    /// Every WAL record at or below this LSN is durable in Parquet, in every table it touched.
    pub fn retirable_lsn(&self) -> u64 {
        // Read first: each record up to here was appended to its tables before this was set, so
        // it is now either still buffered (counted below) or flushed.
        let applied = self.applied_lsn();
        self.tables
            .iter()
            .filter_map(|t| lock(&t.state).first_unflushed_lsn())
            .map(|first| first.saturating_sub(1))
            .fold(applied, u64::min)
    }

    /// Resolves when a table has reached its size threshold since the last call.
    pub async fn flush_wanted(&self) {
        self.flush_wanted.notified().await
    }

    /// Everything a query of `table` should see, taken atomically.
    pub fn snapshot(&self, table: &str) -> Result<Snapshot, StoreError> {
        let t = self.table(table)?;
        let mut s = lock(&t.state);
        let mut batches = s.flushing.clone();
        batches.extend(s.hot.iter().cloned());
        if !s.merged.is_empty() {
            batches.push(s.merged_batch(t.def)?);
        }
        let files = s.files.clone();
        drop(s);
        let remote = self.config.remote.as_deref();
        Ok(Snapshot {
            schema: t.def.schema(),
            files,
            batches,
            remote_files: remote.map(|r| r.others_files(table)).unwrap_or_default(),
            remote_url: remote.map(|r| r.url().to_owned()),
        })
    }

    pub fn stats(&self, table: &str) -> Result<TableStats, StoreError> {
        let t = self.table(table)?;
        let s = lock(&t.state);
        Ok(TableStats {
            buffered_rows: s.hot_rows + s.flushing.iter().map(|b| b.num_rows()).sum::<usize>(),
            buffered_bytes: s.hot_bytes + s.flushing_bytes,
            files: s.files.len(),
            file_rows: s.files.iter().map(|f| f.rows).sum(),
            file_bytes: s.files.iter().map(|f| f.size_bytes).sum(),
        })
    }

    fn due(&self, s: &TableState) -> bool {
        s.hot_rows >= self.config.flush_rows
            || s.hot_bytes >= self.config.flush_bytes
            || s.oldest
                .is_some_and(|t| t.elapsed() >= self.config.flush_age)
    }

    /// Writes a table's buffered rows to Parquet if the size or age threshold is reached (or
    /// always, with `force`). Blocking: call from a blocking thread. Returns rows written.
    pub fn flush_table(&self, table: &str, force: bool) -> Result<usize, StoreError> {
        let t = self.table(table)?;
        let _one_at_a_time = lock(&t.flush);
        let (batches, watermark) = {
            let mut s = lock(&t.state);
            if (s.hot.is_empty() && s.merged.is_empty() && s.flushing.is_empty())
                || !(force || self.due(&s))
            {
                return Ok(0);
            }
            s.seal_merged(t.def)?;
            // Rows of an earlier flush that died part-way are still in `flushing`: take them too.
            let mut batches = std::mem::take(&mut s.flushing);
            batches.append(&mut s.hot);
            s.flushing = batches.clone();
            s.flushing_bytes += s.hot_bytes;
            s.flushing_first_lsn = s.first_unflushed_lsn();
            s.hot_first_lsn = None;
            s.hot_rows = 0;
            s.hot_bytes = 0;
            s.oldest = None;
            (batches, s.last_lsn)
        };
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let started = Instant::now();
        let written =
            write_table(&self.config.root, t.def, &batches, watermark).and_then(|files| {
                let (n, bytes) = (files.len(), files.iter().map(|f| f.size_bytes).sum::<u64>());
                // The rows leave the buffer as their files enter the list: in one step, so that a
                // snapshot sees each row once.
                self.commit_or_remove(t, files, &[], |s| {
                    s.flushing.clear();
                    s.flushing_bytes = 0;
                    s.flushing_first_lsn = None;
                })?;
                Ok((n, bytes))
            });
        match written {
            Ok((files, bytes)) => {
                tracing::debug!(
                    table,
                    rows,
                    files,
                    bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "flushed"
                );
                Ok(rows)
            }
            Err(e) => {
                // Put the rows back in front so nothing is lost; the next flush retries.
                let mut s = lock(&t.state);
                let mut back = std::mem::take(&mut s.flushing);
                s.hot_rows += rows;
                s.hot_bytes += s.flushing_bytes;
                s.flushing_bytes = 0;
                back.append(&mut s.hot);
                s.hot = back;
                s.hot_first_lsn = s.flushing_first_lsn.take().or(s.hot_first_lsn);
                s.oldest.get_or_insert_with(Instant::now);
                Err(e)
            }
        }
    }

    /// Merges the small files of each hour partition (see [`crate::compact`]): partitions that
    /// ended before `now_ns`, and busy current ones. Blocking.
    pub fn compact(&self, target_bytes: u64, now_ns: i64) -> Result<CompactionStats, StoreError> {
        let _one_at_a_time = lock(&self.compacting);
        let mut stats = CompactionStats::default();
        for t in &self.tables {
            let groups: Vec<(i64, Vec<DataFile>)> = {
                let s = lock(&t.state);
                let mut by_hour: HashMap<i64, Vec<DataFile>> = HashMap::new();
                for f in &s.files {
                    if let Some(hour) = f.hour_ns {
                        by_hour.entry(hour).or_default().push(f.clone());
                    }
                }
                let mut hours: Vec<_> = by_hour.into_iter().collect();
                hours.sort_by_key(|(h, _)| *h);
                hours
                    .into_iter()
                    .flat_map(|(hour, files)| {
                        let ended = hour + t.def.partition_ns <= now_ns;
                        crate::compact::plan(&files, target_bytes)
                            .into_iter()
                            .filter(move |g| ended || g.len() >= HOT_PARTITION_FILES)
                            .map(move |g| (hour, g))
                    })
                    .collect()
            };
            for (hour, group) in groups {
                let started = Instant::now();
                let merged = crate::compact::merge(&self.config.root, t.def, hour, &group)?;
                tracing::debug!(
                    table = t.def.name,
                    files = group.len(),
                    rows = merged.rows,
                    bytes = merged.size_bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "compacted"
                );
                self.commit_or_remove(t, vec![merged], &group, |_| {})?;
                stats.files_merged += group.len();
                stats.files_written += 1;
                self.bury(group.into_iter().map(|f| f.path));
            }
        }
        Ok(stats)
    }

    /// Replaces the partition of `table` that starts at `hour_ns` with one file of `batch`
    /// (see [`crate::parquet::write_partition`]): for tables computed a partition at a time
    /// from others, never appended to. Blocking.
    pub fn replace_partition(
        &self,
        table: &str,
        hour_ns: i64,
        batch: &RecordBatch,
        source_rows: u64,
    ) -> Result<DataFile, StoreError> {
        let t = self.table(table)?;
        // Compaction swaps files of a partition too: one at a time.
        let _one_at_a_time = lock(&self.compacting);
        let old: Vec<DataFile> = lock(&t.state)
            .files
            .iter()
            .filter(|f| f.hour_ns == Some(hour_ns))
            .cloned()
            .collect();
        let file = crate::parquet::write_partition(
            &self.config.root,
            t.def,
            hour_ns,
            batch,
            source_rows,
            &old,
        )?;
        self.commit_or_remove(t, vec![file.clone()], &old, |_| {})?;
        self.bury(old.into_iter().map(|f| f.path));
        Ok(file)
    }

    /// Drops from `table` every hour partition that ended at or before `cutoff_ns`; returns
    /// the number of files dropped. Their deletion waits for the grace period.
    pub fn expire(&self, table: &str, cutoff_ns: i64) -> Result<usize, StoreError> {
        let t = self.table(table)?;
        let expired: Vec<DataFile> = lock(&t.state)
            .files
            .iter()
            .filter(|f| {
                f.hour_ns
                    .is_some_and(|h| h + t.def.partition_ns <= cutoff_ns)
            })
            .cloned()
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        self.commit(t, Vec::new(), &expired, |_| {})?;
        let n = expired.len();
        self.bury(expired.into_iter().map(|f| f.path));
        Ok(n)
    }

    /// Deletes files that left the manifest, with their objects, once the grace period is
    /// over.
    fn bury(&self, paths: impl IntoIterator<Item = PathBuf>) {
        let remote = self.config.remote.as_deref();
        self.bury_gone(paths.into_iter().map(|p| Gone {
            key: remote.and_then(|r| r.key_of(&self.config.root, &p).ok()),
            local: Some(p),
        }));
    }

    fn bury_gone(&self, gone: impl IntoIterator<Item = Gone>) {
        let now = Instant::now();
        lock(&self.graveyard).extend(gone.into_iter().map(|g| (g, now)));
    }

    /// Deletes files that left the manifest at least `grace` ago, and partition directories
    /// left empty. Returns the number of files deleted. Blocking.
    pub fn collect_garbage(&self, grace: Duration) -> usize {
        let due: Vec<Gone> = {
            let mut g = lock(&self.graveyard);
            let (due, wait): (Vec<_>, Vec<_>) =
                g.drain(..).partition(|(_, at)| at.elapsed() >= grace);
            *g = wait;
            due.into_iter().map(|(p, _)| p).collect()
        };
        let mut deleted = 0;
        if let Some(remote) = self.config.remote.as_deref() {
            let keys = due.iter().filter_map(|g| g.key.clone()).collect();
            for (key, e) in remote.delete(keys) {
                tracing::warn!(%key, error = %e, "cannot delete an object; retrying later");
                self.bury_gone([Gone {
                    local: None,
                    key: Some(key),
                }]);
            }
        }
        for path in due.iter().filter_map(|g| g.local.as_ref()) {
            match std::fs::remove_file(path) {
                Ok(()) => deleted += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot delete a file; retrying later");
                    self.bury_gone([Gone {
                        local: Some(path.clone()),
                        key: None,
                    }]);
                    continue;
                }
            }
            // hour=HH, then date=YYYY-MM-DD: removed only when empty.
            let hour_dir = path.parent();
            for dir in [hour_dir, hour_dir.and_then(Path::parent)]
                .into_iter()
                .flatten()
            {
                if std::fs::remove_dir(dir).is_err() {
                    break;
                }
            }
        }
        deleted
    }

    /// Makes `added` files of `t` replace `removed` ones, and applies `also` to its state in the
    /// same step. With an object store, the added files are uploaded and a manifest listing the
    /// change is published first: only then do queries see the change, and only then do the
    /// added files count as durable. On failure nothing changes. Blocking.
    fn commit(
        &self,
        t: &Table,
        added: Vec<DataFile>,
        removed: &[DataFile],
        also: impl FnOnce(&mut TableState),
    ) -> Result<(), StoreError> {
        let drop_removed =
            |files: &mut Vec<DataFile>| files.retain(|f| !removed.iter().any(|r| r.path == f.path));
        let apply = |s: &mut TableState, added: Vec<DataFile>| {
            drop_removed(&mut s.files);
            s.add_files(added);
            also(s);
        };
        let Some(remote) = self.config.remote.as_deref() else {
            apply(&mut lock(&t.state), added);
            return Ok(());
        };
        remote.upload(&self.config.root, &added)?;
        let _one_at_a_time = lock(&self.publishing);
        let tables: Vec<(&str, Vec<DataFile>)> = self
            .tables
            .iter()
            .map(|u| {
                let mut files = lock(&u.state).files.clone();
                if std::ptr::eq(u, t) {
                    drop_removed(&mut files);
                    files.extend(added.iter().cloned());
                }
                (u.def.name, files)
            })
            .collect();
        remote.publish(&self.config.root, &tables)?;
        apply(&mut lock(&t.state), added);
        Ok(())
    }

    /// [`Store::commit`] of files just written, which are deleted if it fails: their rows are
    /// still in the buffer or in the files they were to replace.
    fn commit_or_remove(
        &self,
        t: &Table,
        added: Vec<DataFile>,
        removed: &[DataFile],
        also: impl FnOnce(&mut TableState),
    ) -> Result<(), StoreError> {
        let paths: Vec<PathBuf> = added.iter().map(|f| f.path.clone()).collect();
        self.commit(t, added, removed, also).inspect_err(|_| {
            for path in &paths {
                if let Err(e) = std::fs::remove_file(path) {
                    tracing::error!(path = %path.display(), error = %e, "cannot remove a file that was not published; its rows may appear twice after a restart");
                }
            }
        })
    }

    /// Brings this writer's manifest in line with the data directory on opening: files a
    /// flush wrote before it could publish them (or written before the server used a store) are
    /// uploaded, and objects no manifest lists any more are deleted after the grace period.
    /// Refuses a data directory of another writer, and a writer id that already has files in
    /// the store but not this directory. Blocking.
    fn reconcile(&self, remote: &Remote) -> Result<(), StoreError> {
        let marker = self.config.root.join("writer-id");
        let listed = remote.own_keys()?;
        match std::fs::read_to_string(&marker) {
            Ok(id) if id.trim() == remote.writer() => {}
            Ok(id) => {
                return Err(StoreError::Remote(format!(
                    "data directory {} belongs to writer {:?}, not {:?}",
                    self.config.root.display(),
                    id.trim(),
                    remote.writer()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if listed.is_some() {
                    return Err(StoreError::Remote(format!(
                        "writer {:?} already has files in the store, written from another data \
                         directory: give this server another --writer-id",
                        remote.writer()
                    )));
                }
                std::fs::write(&marker, format!("{}\n", remote.writer()))
                    .and_then(|()| crate::parquet::sync_dir(&self.config.root))
                    .map_err(|e| StoreError::io(&marker, e))?;
            }
            Err(e) => return Err(StoreError::io(&marker, e)),
        }
        let listed: std::collections::HashSet<String> =
            listed.unwrap_or_default().into_iter().collect();
        let root = &self.config.root;
        let mut tables = Vec::new();
        let mut keys = Vec::new();
        for t in &self.tables {
            let files = lock(&t.state).files.clone();
            let mut unpublished = Vec::new();
            for f in &files {
                let key = remote.key_of(root, &f.path)?.to_string();
                if !listed.contains(&key) {
                    unpublished.push(f.clone());
                }
                keys.push(key);
            }
            if !unpublished.is_empty() {
                tracing::info!(
                    table = t.def.name,
                    files = unpublished.len(),
                    "uploading files not yet in the object store"
                );
                remote.upload(root, &unpublished)?;
            }
            tables.push((t.def.name, files));
        }
        remote.publish(root, &tables)?;
        let unlisted = remote.unlisted(&keys)?;
        if !unlisted.is_empty() {
            tracing::info!(
                objects = unlisted.len(),
                "deleting objects no manifest lists, after the grace period"
            );
        }
        self.bury_gone(unlisted.into_iter().map(|key| Gone {
            local: None,
            key: Some(key),
        }));
        Ok(())
    }

    /// Reads the other writers' manifests that changed; returns how many writers' files are
    /// seen. Without an object store, 0. Blocking.
    pub fn refresh_remote(&self) -> Result<usize, StoreError> {
        match self.config.remote.as_deref() {
            Some(remote) => remote.refresh(),
            None => Ok(0),
        }
    }

    /// Flushes every table holding a buffered record at or below `lsn`, whatever its
    /// thresholds, so that the WAL up to `lsn` can be retired. Blocking.
    pub fn flush_up_to(&self, lsn: u64) -> Result<usize, StoreError> {
        let mut rows = 0;
        for t in &self.tables {
            let pinned = lock(&t.state)
                .first_unflushed_lsn()
                .is_some_and(|first| first <= lsn);
            if pinned {
                rows += self.flush_table(t.def.name, true)?;
            }
        }
        Ok(rows)
    }

    /// Flushes every table that is due (or all, with `force`, or when the buffer is half full
    /// over all tables). Blocking. Every table is tried; the first error is returned.
    pub fn flush_all(&self, force: bool) -> Result<usize, StoreError> {
        let force = force || self.buffered_bytes() >= self.config.max_buffer_bytes / 2;
        let mut rows = 0;
        let mut first_error = None;
        for t in &self.tables {
            match self.flush_table(t.def.name, force) {
                Ok(n) => rows += n,
                Err(e) => {
                    tracing::error!(table = t.def.name, error = %e, "flush failed; rows stay buffered");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SPANS;
    use crate::testing::{self, TestSpan};

    /// Spans in two different hours, so a flush writes two files.
    fn spans_in_two_hours() -> RecordBatch {
        let span = |i: u8, start: i64| TestSpan::new([i; 16], [i; 8], start, start + 1);
        testing::spans(&[span(1, 0), span(2, 3_600_000_000_000), span(3, 1)])
    }

    fn rows(s: &Snapshot) -> usize {
        s.batches.iter().map(|b| b.num_rows()).sum::<usize>()
            + s.files.iter().map(|f| f.rows as usize).sum::<usize>()
    }

    /// A store publishing to a shared directory (`file://`), as writer `id`.
    fn publishing(data: &Path, bucket: &Path, id: &str) -> Result<Store, StoreError> {
        let url = format!("file://{}", bucket.display());
        let (store, base, prefix) = crate::remote::connect(&url, &[])?;
        let remote = Remote::new(store, base, prefix, id)?;
        Store::open(StoreConfig {
            remote: Some(Arc::new(remote)),
            ..StoreConfig::new(data)
        })
    }

    #[test]
    fn files_are_published_for_other_writers_and_a_failed_publish_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
        let bucket = dir.path().join("bucket");
        // Flushed before the store was configured (or before a crash let it publish them).
        let local = Store::open(StoreConfig::new(&data_a)).unwrap();
        local.append(SPANS, spans_in_two_hours(), 0).unwrap();
        local.flush_all(true).unwrap();
        drop(local);

        let a = publishing(&data_a, &bucket, "a").unwrap();
        let b = publishing(&data_b, &bucket, "b").unwrap();
        let seen = b.snapshot(SPANS).unwrap();
        assert_eq!(
            (seen.files.len(), seen.remote_files.len()),
            (0, 2),
            "b reads a's files from the store"
        );
        assert_eq!(seen.remote_files.iter().map(|f| f.rows).sum::<u64>(), 3);
        for f in &seen.remote_files {
            let key = f.path.to_string_lossy();
            assert!(key.contains("/writers/a/spans/date=1970-01-01/"), "{key}");
            assert!(Path::new("/").join(&*key).exists(), "{key} uploaded");
        }

        // The manifest cannot be written: the flush fails, its rows stay buffered, and its
        // files are neither listed nor left on disk.
        let manifest = bucket.join("manifests/a.json");
        std::fs::remove_file(&manifest).unwrap();
        std::fs::create_dir_all(manifest.join("blocked")).unwrap();
        a.append(SPANS, spans_in_two_hours(), 0).unwrap();
        assert!(a.flush_all(true).is_err());
        let snap = a.snapshot(SPANS).unwrap();
        assert_eq!((rows(&snap), snap.files.len()), (6, 2));
        assert_eq!(list_table(&data_a, SPANS, false).unwrap().len(), 2);

        std::fs::remove_dir_all(&manifest).unwrap();
        assert_eq!(a.flush_all(true).unwrap(), 3);
        assert_eq!(b.refresh_remote().unwrap(), 1);
        let seen = b.snapshot(SPANS).unwrap();
        assert_eq!(seen.remote_files.iter().map(|f| f.rows).sum::<u64>(), 6);

        // A data directory belongs to one writer.
        drop(a);
        let Err(e) = publishing(&data_a, &bucket, "c") else {
            panic!("writer c opened a's data directory");
        };
        assert!(e.to_string().contains("belongs to writer \"a\""), "{e}");
    }

    #[test]
    fn one_writer_per_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(StoreConfig::new(dir.path())).unwrap();
        let Err(e) = Store::open(StoreConfig::new(dir.path())) else {
            panic!("a second writer opened the same directory");
        };
        assert!(
            e.to_string().contains("in use by another headroom process"),
            "{e}"
        );
        // Readers (`headroom query`) are welcome.
        Store::open_read_only(dir.path()).unwrap();
        drop(first);
        Store::open(StoreConfig::new(dir.path())).unwrap();
    }

    #[test]
    fn a_failed_flush_keeps_rows_buffered_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        store.append(SPANS, spans_in_two_hours(), 0).unwrap();
        // A file where the second hour's directory must go makes that hour's write fail.
        let blocker = dir.path().join("spans/date=1970-01-01/hour=01");
        std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
        std::fs::write(&blocker, b"not a directory").unwrap();

        assert!(store.flush_all(true).is_err());
        let snap = store.snapshot(SPANS).unwrap();
        assert_eq!(
            (rows(&snap), snap.files.len()),
            (3, 0),
            "all rows still buffered"
        );
        let on_disk = list_table(store.root(), SPANS, false).unwrap();
        assert!(
            on_disk.is_empty(),
            "no file of the failed flush stays: {on_disk:?}"
        );

        std::fs::remove_file(&blocker).unwrap();
        assert_eq!(store.flush_all(false).unwrap(), 0, "not due yet");
        assert_eq!(store.flush_all(true).unwrap(), 3);
        let snap = store.snapshot(SPANS).unwrap();
        assert_eq!(
            (rows(&snap), snap.files.len(), snap.batches.len()),
            (3, 2, 0)
        );
        // A restart sees the same files, each row once.
        drop(store);
        let reopened = Store::open(StoreConfig::new(dir.path())).unwrap();
        assert_eq!(rows(&reopened.snapshot(SPANS).unwrap()), 3);
    }
}
