//! Parquet writer: one flush of a table's hot rows becomes one file per hour partition,
//! sorted by the table's sort key, written to a temporary name, fsynced and renamed into place.
//!
//! Each file records, in its key-value metadata, its partition hour and the WAL watermark of
//! the flush that wrote it: every row of that table and hour from a WAL record at or below the
//! watermark is in a durable file. Replaying the WAL after a crash uses this to skip rows that
//! already reached Parquet, even when a flush died between the files of two hours.
//!
//! A file written by compaction also lists the files it replaces; when the store is opened,
//! replaced files that are still there (a crash before they were deleted) are removed, so no
//! row is ever read twice.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, TimestampNanosecondArray};
use arrow::compute::{SortColumn, interleave_record_batch, lexsort_to_indices};
use chrono::{DateTime, Datelike, Timelike};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::StoreError;
use crate::schema::TableDef;

/// A Parquet file that is part of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub rows: u64,
    /// Start of the file's hour partition, in ns since the epoch (`None`: not recorded).
    pub hour_ns: Option<i64>,
    /// The WAL watermark of the flush that wrote the file (0: written without a WAL).
    pub wal_lsn: u64,
    /// For a file derived from another table (`edge_rollup_1m`): how many rows of that table
    /// the partitions it was computed from held, so that a reader can tell when it is stale.
    pub source_rows: Option<u64>,
}

pub(crate) const META_HOUR: &str = "headroom.partition_hour_ns";
pub(crate) const META_WAL_LSN: &str = "headroom.wal_lsn";
/// Space-separated names of the files (same directory) a compacted file replaces.
pub(crate) const META_REPLACES: &str = "headroom.replaces";
pub(crate) const META_SOURCE_ROWS: &str = "headroom.source_rows";

/// Rows per data page of a rollup table.
const ROLLUP_PAGE_ROWS: usize = 2048;

pub(crate) fn writer_properties(def: &TableDef) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(1 << 20));
    if def.rollup.is_some() {
        // Rollup rows are sorted by time and a day's file holds tens of thousands: pages of
        // about an hour let the page index skip the hours a range query does not ask for.
        b = b.set_data_page_row_count_limit(ROLLUP_PAGE_ROWS);
    }
    for c in &def.columns {
        let path = ColumnPath::from(c.name);
        match &c.data_type {
            // Random ids do not repeat within a file; a dictionary only costs.
            arrow::datatypes::DataType::FixedSizeBinary(_) => {
                b = b.set_column_dictionary_enabled(path, false);
            }
            // Times and durations are close together after sorting: delta encoding shrinks them.
            arrow::datatypes::DataType::Timestamp(_, _) | arrow::datatypes::DataType::Int64
                if c.name.ends_with("time") || c.name == "duration_ns" =>
            {
                b = b
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
            }
            _ => {}
        }
    }
    for name in def.bloom_filter_columns {
        b = b
            .set_column_bloom_filter_enabled(ColumnPath::from(*name), true)
            .set_column_bloom_filter_fpp(ColumnPath::from(*name), 0.01);
    }
    b.build()
}

/// Rows handed to the Parquet writer at a time: the sorted copy of a flush is materialised
/// chunk by chunk, never whole.
const WRITE_CHUNK_ROWS: usize = 64 * 1024;

/// Where a row of a flush comes from: (batch index, row index).
type RowRef = (usize, usize);

/// The order in which to write the rows of `batches`: grouped by the hour of the time column,
/// then sorted by the table's sort key; one (hour start in ns, rows) entry per hour.
///
/// Only the key columns are concatenated; the rows are gathered from the original batches while
/// writing, so a flush never holds a second full copy of its data.
fn sorted_order(
    def: &TableDef,
    batches: &[RecordBatch],
) -> Result<Vec<(i64, Vec<RowRef>)>, StoreError> {
    let key_column = |name: &str| -> Result<arrow::array::ArrayRef, StoreError> {
        let parts: Vec<&dyn Array> = batches
            .iter()
            .map(|b| {
                b.column_by_name(name)
                    .map(|c| c.as_ref())
                    .ok_or_else(|| StoreError::internal(format!("column {name} missing")))
            })
            .collect::<Result<_, _>>()?;
        Ok(arrow::compute::concat(&parts)?)
    };
    let times = key_column(def.time_column)?;
    let times = times
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .ok_or_else(|| StoreError::internal(format!("{} is not a timestamp", def.time_column)))?;
    let hours: arrow::array::Int64Array = times
        .values()
        .iter()
        .map(|t| def.partition_of(*t))
        .collect();
    let mut columns = vec![SortColumn {
        values: Arc::new(hours.clone()),
        options: None,
    }];
    for name in def.sort_columns {
        columns.push(SortColumn {
            values: key_column(name)?,
            options: None,
        });
    }
    let indices = lexsort_to_indices(&columns, None)?;
    let mut starts = Vec::with_capacity(batches.len());
    let mut total = 0;
    for b in batches {
        starts.push(total);
        total += b.num_rows();
    }
    let locate = |i: usize| {
        let batch = starts.partition_point(|&s| s <= i) - 1;
        (batch, i - starts[batch])
    };
    let mut out: Vec<(i64, Vec<RowRef>)> = Vec::new();
    for i in indices.values().iter().map(|&i| i as usize) {
        let hour = hours.value(i);
        match out.last_mut() {
            Some((h, rows)) if *h == hour => rows.push(locate(i)),
            _ => out.push((hour, vec![locate(i)])),
        }
    }
    Ok(out)
}

/// `<table>/date=YYYY-MM-DD/hour=HH` for the hour starting at `hour_ns`.
pub(crate) fn partition_dir(table: &str, hour_ns: i64) -> PathBuf {
    let t = DateTime::from_timestamp_nanos(hour_ns);
    PathBuf::from(table)
        .join(format!(
            "date={:04}-{:02}-{:02}",
            t.year(),
            t.month(),
            t.day()
        ))
        .join(format!("hour={:02}", t.hour()))
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `batches` of table `def` under `root`, one sorted file per hour, each atomically,
/// each stamped with `wal_lsn` (see the module docs). Returns the files written.
pub fn write_table(
    root: &Path,
    def: &TableDef,
    batches: &[RecordBatch],
    wal_lsn: u64,
) -> Result<Vec<DataFile>, StoreError> {
    let batches: Vec<RecordBatch> = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .cloned()
        .collect();
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    // Rollup rows of one key from many requests become one row.
    let batches = match def.rollup {
        Some(_) => vec![crate::rollup::combine(def, &batches)?],
        None => batches,
    };
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let props = writer_properties(def);
    // Every hour's file is written to its temporary name first and only then are all renamed,
    // so a failure leaves no file behind whose rows are also still buffered.
    let mut pending: Vec<(PathBuf, PathBuf, u64, u64, i64)> = Vec::new();
    let result = (|| {
        for (hour, order) in sorted_order(def, &batches)? {
            let dir = root.join(partition_dir(def.name, hour));
            fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
            let name = format!("{}.parquet", ulid::Ulid::new());
            let tmp = dir.join(format!(".{name}.tmp"));
            let file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
            pending.push((tmp.clone(), dir.join(&name), 0, order.len() as u64, hour));
            let mut writer = ArrowWriter::try_new(file, def.schema(), Some(props.clone()))?;
            writer.append_key_value_metadata(KeyValue::new(META_HOUR.into(), hour.to_string()));
            writer
                .append_key_value_metadata(KeyValue::new(META_WAL_LSN.into(), wal_lsn.to_string()));
            for chunk in order.chunks(WRITE_CHUNK_ROWS) {
                writer.write(&interleave_record_batch(&refs, chunk)?)?;
            }
            let file = writer.into_inner()?;
            file.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
            let size = file.metadata().map_err(|e| StoreError::io(&tmp, e))?.len();
            if let Some(last) = pending.last_mut() {
                last.2 = size;
            }
        }
        Ok::<_, StoreError>(())
    })();
    if let Err(e) = result {
        for (tmp, ..) in &pending {
            let _ = fs::remove_file(tmp);
        }
        return Err(e);
    }
    let mut written = Vec::with_capacity(pending.len());
    for (i, (tmp, path, size_bytes, rows, hour)) in pending.iter().enumerate() {
        let renamed = fs::rename(tmp, path)
            .and_then(|()| sync_dir(path.parent().unwrap_or(root)))
            .map_err(|e| StoreError::io(path, e));
        if let Err(e) = renamed {
            // Undo: the caller keeps every row buffered, so no file of this flush may stay.
            for (tmp, path, ..) in &pending[i..] {
                let _ = fs::remove_file(tmp);
                let _ = fs::remove_file(path);
            }
            for f in &written {
                let DataFile { path, .. } = f;
                if let Err(undo) = fs::remove_file(path) {
                    tracing::error!(path = %path.display(), error = %undo, "cannot remove a file of a failed flush; its rows may appear twice after a restart");
                }
            }
            return Err(e);
        }
        written.push(DataFile {
            path: path.clone(),
            size_bytes: *size_bytes,
            rows: *rows,
            hour_ns: Some(*hour),
            wal_lsn,
            source_rows: None,
        });
    }
    Ok(written)
}

/// Writes `batch` (rows of the partition starting at `hour_ns`, in the table's sort order) as
/// one file that replaces `replaces` (files of the same partition), atomically: a crash leaves
/// either the old files or the new one listed. For tables whose partitions are computed whole
/// from other tables; `source_rows` is recorded for the reader (see [`DataFile`]).
pub fn write_partition(
    root: &Path,
    def: &TableDef,
    hour_ns: i64,
    batch: &RecordBatch,
    source_rows: u64,
    replaces: &[DataFile],
) -> Result<DataFile, StoreError> {
    let dir = root.join(partition_dir(def.name, hour_ns));
    fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
    let name = format!("{}.parquet", ulid::Ulid::new());
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(&name);
    let written = (|| {
        let file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        let mut writer = ArrowWriter::try_new(file, def.schema(), Some(writer_properties(def)))?;
        writer.append_key_value_metadata(KeyValue::new(META_HOUR.into(), hour_ns.to_string()));
        writer.append_key_value_metadata(KeyValue::new(
            META_SOURCE_ROWS.into(),
            source_rows.to_string(),
        ));
        let names: Vec<String> = replaces
            .iter()
            .filter_map(|f| f.path.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        if !names.is_empty() {
            writer.append_key_value_metadata(KeyValue::new(META_REPLACES.into(), names.join(" ")));
        }
        writer.write(batch)?;
        let file = writer.into_inner()?;
        file.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
        let size = file.metadata().map_err(|e| StoreError::io(&tmp, e))?.len();
        fs::rename(&tmp, &path)
            .and_then(|()| sync_dir(&dir))
            .map_err(|e| StoreError::io(&path, e))?;
        Ok::<_, StoreError>(size)
    })();
    match written {
        Ok(size_bytes) => Ok(DataFile {
            path,
            size_bytes,
            rows: batch.num_rows() as u64,
            hour_ns: Some(hour_ns),
            wal_lsn: 0,
            source_rows: Some(source_rows),
        }),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Lists the Parquet files of `table` under `root`, leaving out files a compacted file replaced.
/// With `repair`, leftover temporary files of an interrupted flush or compaction and replaced
/// files are deleted (a file only counts once it is renamed into place).
pub fn list_table(root: &Path, table: &str, repair: bool) -> Result<Vec<DataFile>, StoreError> {
    let mut out = Vec::new();
    let mut replaced = std::collections::HashSet::new();
    let dir = root.join(table);
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| StoreError::io(&dir, e))? {
            let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(|e| StoreError::io(&path, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if meta.is_dir() {
                stack.push(path);
            } else if name.ends_with(".tmp") && repair {
                tracing::warn!(path = %path.display(), "removing temporary file of an interrupted flush");
                fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
            } else if name.ends_with(".parquet") {
                let (file, replaces) = describe(path, meta.len())?;
                let dir = file.path.parent().unwrap_or(root).to_owned();
                replaced.extend(replaces.into_iter().map(|n| dir.join(n)));
                out.push(file);
            }
        }
    }
    if !replaced.is_empty() {
        out.retain(|f| !replaced.contains(&f.path));
        for path in replaced.iter().filter(|p| p.exists()) {
            if repair {
                tracing::warn!(path = %path.display(), "removing a file replaced by compaction");
                fs::remove_file(path).map_err(|e| StoreError::io(path, e))?;
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Reads what the store needs to know of a file from its footer, and which files it replaces.
fn describe(path: PathBuf, size_bytes: u64) -> Result<(DataFile, Vec<String>), StoreError> {
    use parquet::file::reader::FileReader;
    let file = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
    let reader = parquet::file::reader::SerializedFileReader::new(file)?;
    let meta = reader.metadata().file_metadata();
    let text = |key: &str| {
        meta.key_value_metadata()
            .and_then(|kvs| kvs.iter().find(|kv| kv.key == key))
            .and_then(|kv| kv.value.as_deref())
    };
    let int = |key: &str| text(key).and_then(|v| v.parse::<i64>().ok());
    let replaces = text(META_REPLACES)
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let file = DataFile {
        rows: meta.num_rows().max(0) as u64,
        hour_ns: int(META_HOUR),
        wal_lsn: int(META_WAL_LSN).unwrap_or(0).max(0) as u64,
        source_rows: int(META_SOURCE_ROWS).and_then(|n| u64::try_from(n).ok()),
        path,
        size_bytes,
    };
    Ok((file, replaces))
}

/// Reads a whole Parquet file, for tests and tools.
pub fn read_file(path: &Path) -> Result<Vec<RecordBatch>, StoreError> {
    let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 8192)?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}
