//! Compaction and retention of Parquet files.
//!
//! Every flush writes one file per hour partition, so a busy hour collects dozens of small
//! files. Compaction merges the small files of a partition into one, keeping the table's sort
//! order: each input is already sorted, so a streaming k-way merge over the sort key (in
//! Arrow's row format, which compares as bytes) needs only one batch per input in memory.
//! DataFusion's `SortPreservingMergeExec` does the same inside a query plan; the collector does
//! not run query plans, and the merge is short.
//!
//! The merged file records the files it replaces (see `parquet`). It enters the manifest and
//! its inputs leave it in one step, so a query sees either the inputs or the merged file; the
//! inputs are deleted only after a grace period, so queries that planned them can still read
//! them. Retention drops whole hour partitions the same way.

use std::fs::{self, File};
use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::interleave_record_batch;
use arrow::datatypes::Int64Type;
use arrow::row::{RowConverter, Rows, SortField};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReader;
use parquet::file::metadata::KeyValue;

use crate::error::StoreError;
use crate::parquet::{
    DataFile, META_HOUR, META_REPLACES, META_WAL_LSN, partition_dir, sync_dir, writer_properties,
};
use crate::schema::TableDef;

/// Rows per batch read from each input and written to the output.
const BATCH_ROWS: usize = 2048;
/// Inputs merged at once, at most (one batch of each is in memory).
const MAX_INPUTS: usize = 32;

/// Which files of one partition to merge: runs of files smaller than half the target, each
/// run at most `target_bytes` in total and at least two files. `files` must be of one
/// partition.
pub fn plan(files: &[DataFile], target_bytes: u64) -> Vec<Vec<DataFile>> {
    let mut small: Vec<&DataFile> = files
        .iter()
        .filter(|f| f.size_bytes < target_bytes / 2)
        .collect();
    // File names are ULIDs: oldest first.
    small.sort_by(|a, b| a.path.cmp(&b.path));
    let mut groups = Vec::new();
    let mut group: Vec<DataFile> = Vec::new();
    let mut bytes = 0;
    for f in small {
        if !group.is_empty() && (bytes + f.size_bytes > target_bytes || group.len() >= MAX_INPUTS) {
            groups.push(std::mem::take(&mut group));
            bytes = 0;
        }
        bytes += f.size_bytes;
        group.push(f.clone());
    }
    groups.push(group);
    groups.retain(|g| g.len() >= 2);
    groups
}

/// One input of the merge: its reader, current batch and that batch's sort keys.
struct Input {
    reader: ParquetRecordBatchReader,
    /// Index of the current batch in the merge's batch list.
    slot: usize,
    keys: Rows,
    row: usize,
}

/// Merges `inputs` (sorted files of one partition of `def`) into one sorted file next to them,
/// written atomically and marked as replacing them. Blocking.
pub fn merge(
    root: &Path,
    def: &TableDef,
    hour_ns: i64,
    inputs: &[DataFile],
) -> Result<DataFile, StoreError> {
    if def.rollup.is_some() {
        return merge_rollup(root, def, hour_ns, inputs);
    }
    let schema = def.schema();
    let fields = def
        .sort_columns
        .iter()
        .map(|c| {
            Ok(SortField::new(
                schema.field_with_name(c)?.data_type().clone(),
            ))
        })
        .collect::<Result<Vec<_>, arrow::error::ArrowError>>()?;
    let key_indices = def
        .sort_columns
        .iter()
        .map(|c| schema.index_of(c))
        .collect::<Result<Vec<_>, _>>()?;
    let converter = RowConverter::new(fields)?;
    let keys_of = |batch: &RecordBatch| -> Result<Rows, StoreError> {
        let cols: Vec<_> = key_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        Ok(converter.convert_columns(&cols)?)
    };

    // Batches referenced by rows not yet written; inputs point into it.
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut open: Vec<Input> = Vec::new();
    for f in inputs {
        let file = File::open(&f.path).map_err(|e| StoreError::io(&f.path, e))?;
        let mut reader = ParquetRecordBatchReader::try_new(file, BATCH_ROWS)?;
        if let Some(batch) = reader.next().transpose()? {
            open.push(Input {
                reader,
                slot: batches.len(),
                keys: keys_of(&batch)?,
                row: 0,
            });
            batches.push(batch);
        }
    }

    let merged = write_merged(root, def, hour_ns, inputs, |writer| {
        let mut pending: Vec<(usize, usize)> = Vec::with_capacity(BATCH_ROWS);
        let mut rows = 0u64;
        // Each step takes the input whose current row sorts first.
        while let Some(next) = open
            .iter()
            .enumerate()
            .min_by(|(_, a), (_, b)| a.keys.row(a.row).cmp(&b.keys.row(b.row)))
            .map(|(i, _)| i)
        {
            let input = &mut open[next];
            pending.push((input.slot, input.row));
            input.row += 1;
            let exhausted = input.row == input.keys.num_rows();
            if pending.len() == BATCH_ROWS || exhausted {
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                writer.write(&interleave_record_batch(&refs, &pending)?)?;
                rows += pending.len() as u64;
                pending.clear();
            }
            if exhausted {
                let input = &mut open[next];
                match input.reader.next().transpose()? {
                    Some(batch) => {
                        input.keys = keys_of(&batch)?;
                        input.row = 0;
                        // Nothing pending refers to the old batch any more: reuse its slot.
                        batches[input.slot] = batch;
                    }
                    None => {
                        open.swap_remove(next);
                    }
                }
            }
        }
        Ok(rows)
    })?;
    let expected: u64 = inputs.iter().map(|f| f.rows).sum();
    if merged.rows != expected {
        // Never let a short merge replace its inputs.
        let _ = fs::remove_file(&merged.path);
        return Err(StoreError::internal(format!(
            "compaction of {} files wrote {} rows, expected {expected}",
            inputs.len(),
            merged.rows
        )));
    }
    Ok(merged)
}

/// A rollup partition is small (one row per key and bucket): its files are read whole and
/// their rows that share a key merged into one (see [`crate::rollup`]).
fn merge_rollup(
    root: &Path,
    def: &TableDef,
    hour_ns: i64,
    inputs: &[DataFile],
) -> Result<DataFile, StoreError> {
    let mut batches = Vec::new();
    for f in inputs {
        let file = File::open(&f.path).map_err(|e| StoreError::io(&f.path, e))?;
        for batch in ParquetRecordBatchReader::try_new(file, BATCH_ROWS)? {
            batches.push(batch?);
        }
    }
    let combined = crate::rollup::combine(def, &batches)?;
    let spans = |b: &RecordBatch| -> i64 {
        b.column_by_name("spans")
            .map(|c| c.as_primitive::<Int64Type>().iter().flatten().sum())
            .unwrap_or(0)
    };
    let (before, after) = (batches.iter().map(spans).sum::<i64>(), spans(&combined));
    if before != after {
        return Err(StoreError::internal(format!(
            "compaction of {} rollup files kept {after} of {before} spans",
            inputs.len()
        )));
    }
    write_merged(root, def, hour_ns, inputs, |writer| {
        writer.write(&combined)?;
        Ok(combined.num_rows() as u64)
    })
}

/// Writes the merge of `inputs` with `write` to a new file of their partition, atomically and
/// marked as replacing them; `write` returns the rows it wrote.
fn write_merged(
    root: &Path,
    def: &TableDef,
    hour_ns: i64,
    inputs: &[DataFile],
    write: impl FnOnce(&mut ArrowWriter<File>) -> Result<u64, StoreError>,
) -> Result<DataFile, StoreError> {
    let dir = root.join(partition_dir(def.name, hour_ns));
    let name = format!("{}.parquet", ulid::Ulid::new());
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(&name);
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        let mut writer = ArrowWriter::try_new(file, def.schema(), Some(writer_properties(def)))?;
        let watermark = inputs.iter().map(|f| f.wal_lsn).max().unwrap_or(0);
        let replaces: Vec<String> = inputs
            .iter()
            .filter_map(|f| f.path.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        for (k, v) in [
            (META_HOUR, hour_ns.to_string()),
            (META_WAL_LSN, watermark.to_string()),
            (META_REPLACES, replaces.join(" ")),
        ] {
            writer.append_key_value_metadata(KeyValue::new(k.into(), v));
        }
        let rows = write(&mut writer)?;
        let file = writer.into_inner()?;
        file.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
        let size_bytes = file.metadata().map_err(|e| StoreError::io(&tmp, e))?.len();
        fs::rename(&tmp, &path)
            .and_then(|()| sync_dir(&dir))
            .map_err(|e| StoreError::io(&path, e))?;
        Ok::<_, StoreError>(DataFile {
            path: path.clone(),
            size_bytes,
            rows,
            hour_ns: Some(hour_ns),
            wal_lsn: watermark,
            source_rows: None,
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use arrow::array::{AsArray, RecordBatch};

    use super::*;
    use crate::parquet::{list_table, read_file};
    use crate::schema::SPANS;
    use crate::store::{Snapshot, Store, StoreConfig};
    use crate::testing::{self, TestSpan};
    use crate::time::NANOS_PER_HOUR;

    /// `n` spans of service `svc-<k>` at pseudo-random times within hour `hour`.
    fn spans(seed: u64, n: u64, hour: i64) -> RecordBatch {
        let mut x = seed;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        let spans: Vec<TestSpan> = (0..3)
            .flat_map(|k| {
                (0..n)
                    .map(|i| {
                        let start = hour * NANOS_PER_HOUR + (next() % NANOS_PER_HOUR as u64) as i64;
                        TestSpan {
                            trace_id: [seed as u8, k as u8, (i >> 8) as u8, i as u8]
                                .repeat(4)
                                .try_into()
                                .unwrap(),
                            span_id: [i as u8 + 1; 8],
                            service: format!("svc-{}", (k + seed) % 4),
                            name: format!("op-{}", next() % 5),
                            start_ns: start,
                            end_ns: start + 10,
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        testing::spans(&spans)
    }

    fn rows(snap: &Snapshot) -> u64 {
        snap.files.iter().map(|f| f.rows).sum::<u64>()
            + snap
                .batches
                .iter()
                .map(|b| b.num_rows() as u64)
                .sum::<u64>()
    }

    /// (service, span name, start) of every row, in file order.
    fn keys(path: &Path) -> Vec<(String, String, i64)> {
        let mut out = Vec::new();
        for b in read_file(path).unwrap() {
            let svc = b.column_by_name("service_name").unwrap().as_string::<i32>();
            let name = b.column_by_name("span_name").unwrap().as_string::<i32>();
            let start = b
                .column_by_name("start_time")
                .unwrap()
                .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
            for i in 0..b.num_rows() {
                out.push((
                    svc.value(i).to_owned(),
                    name.value(i).to_owned(),
                    start.value(i),
                ));
            }
        }
        out
    }

    fn store_with_flushes(dir: &Path, flushes: u64, hour: i64) -> Store {
        let store = Store::open(StoreConfig::new(dir)).unwrap();
        for seed in 0..flushes {
            store
                .append(SPANS, spans(seed, 50, hour), seed + 1)
                .unwrap();
            store.flush_all(true).unwrap();
        }
        store
    }

    #[test]
    fn small_files_of_an_ended_hour_merge_into_one_sorted_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_flushes(dir.path(), 6, 10);
        let before = store.snapshot(SPANS).unwrap();
        assert_eq!((before.files.len(), rows(&before)), (6, 900));
        let mut expected: Vec<_> = before.files.iter().flat_map(|f| keys(&f.path)).collect();
        expected.sort();

        let now = 12 * NANOS_PER_HOUR;
        let stats = store.compact(64 << 20, now).unwrap();
        assert_eq!((stats.files_merged, stats.files_written), (6, 1));
        let after = store.snapshot(SPANS).unwrap();
        assert_eq!((after.files.len(), rows(&after)), (1, 900));
        let merged = keys(&after.files[0].path);
        assert!(
            merged.windows(2).all(|w| w[0] <= w[1]),
            "sorted by the sort key"
        );
        assert_eq!(merged, expected, "the same rows");
        assert_eq!(after.files[0].wal_lsn, 6, "highest watermark of the inputs");

        // A query planned before the compaction can still read its files until the grace
        // period is over.
        assert!(before.files.iter().all(|f| f.path.exists()));
        assert_eq!(store.collect_garbage(Duration::from_secs(3600)), 0);
        assert_eq!(store.collect_garbage(Duration::ZERO), 6);
        assert!(before.files.iter().all(|f| !f.path.exists()));
        drop(store);
        assert_eq!(
            rows(
                &Store::open(StoreConfig::new(dir.path()))
                    .unwrap()
                    .snapshot(SPANS)
                    .unwrap()
            ),
            900
        );
    }

    #[test]
    fn the_current_hour_waits_until_it_has_many_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_flushes(dir.path(), 3, 10);
        let now = 10 * NANOS_PER_HOUR + 1;
        assert_eq!(store.compact(64 << 20, now).unwrap().files_written, 0);
        for seed in 3..crate::store::HOT_PARTITION_FILES as u64 {
            store.append(SPANS, spans(seed, 10, 10), seed + 1).unwrap();
            store.flush_all(true).unwrap();
        }
        assert_eq!(
            store.compact(64 << 20, now).unwrap().files_merged,
            crate::store::HOT_PARTITION_FILES
        );
    }

    #[test]
    fn a_crash_before_the_inputs_are_deleted_never_shows_rows_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_flushes(dir.path(), 3, 5);
        let files = store.snapshot(SPANS).unwrap().files;
        // The merged file is in place, the inputs are not deleted yet: then the process dies.
        merge(
            dir.path(),
            crate::schema::table(SPANS),
            5 * NANOS_PER_HOUR,
            &files,
        )
        .unwrap();
        drop(store);
        let on_disk = |d: &Path| {
            walk(d)
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
                .count()
        };
        assert_eq!(on_disk(dir.path()), 4);
        let reopened = Store::open(StoreConfig::new(dir.path())).unwrap();
        let snap = reopened.snapshot(SPANS).unwrap();
        assert_eq!((snap.files.len(), rows(&snap)), (1, 450));
        assert_eq!(
            on_disk(dir.path()),
            1,
            "the replaced files are removed on open"
        );
        assert_eq!(list_table(dir.path(), SPANS, false).unwrap().len(), 1);
    }

    #[test]
    fn retention_drops_whole_expired_hours() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        for (seed, hour) in [(0, 1), (1, 2), (2, 3)] {
            store
                .append(SPANS, spans(seed, 10, hour), seed + 1)
                .unwrap();
            store.flush_all(true).unwrap();
        }
        // Hours 1 and 2 ended by 3:00; hour 3 has not.
        assert_eq!(store.expire(SPANS, 3 * NANOS_PER_HOUR + 5).unwrap(), 2);
        let snap = store.snapshot(SPANS).unwrap();
        assert_eq!((snap.files.len(), rows(&snap)), (1, 30));
        store.collect_garbage(Duration::ZERO);
        let left: Vec<_> = walk(&dir.path().join(SPANS));
        assert_eq!(
            left.len(),
            1,
            "files and their emptied directories are gone: {left:?}"
        );
        assert!(!dir.path().join("spans/date=1970-01-01/hour=01").exists());
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out
    }
}
