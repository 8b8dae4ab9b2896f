//! The write-ahead log: every accepted request is appended here, and fsynced, before it is
//! acknowledged; only then are its rows added to the hot buffer.
//!
//! **Group commit.** Request threads encode their rows (Arrow IPC) and hand them to one
//! committer thread. The committer takes everything queued, writes it, calls `fdatasync` once
//! for the whole group, appends the rows to the store in LSN order and wakes the waiters. While
//! one fsync runs the next group queues up, so the cost of durability is shared.
//!
//! **Format.** Segment files `wal/<first LSN, 20 digits>.wal` start with an 8-byte magic; then
//! records `len: u32 | crc32: u32 | lsn: u64 | payload`, little-endian, the CRC covering the
//! LSN and the payload. A payload is `count: u16` followed by `count` times
//! `name_len: u8 | table name | ipc_len: u32 | Arrow IPC stream`. A record that is short, fails
//! its CRC or does not raise the LSN ends the segment: it is truncated away and reported,
//! never replayed.
//!
//! **Recovery and retirement.** On start the segments are replayed into the store before any
//! receiver opens; rows a Parquet file already covers (its WAL watermark, see `parquet`) are
//! skipped. A segment is deleted once every record in it is in durable Parquet files
//! ([`crate::store::Store::retirable_lsn`]).
//!
//! Written here rather than taken from a crate: the format is a few dozen lines, and what
//! matters (applying records to the hot buffer in LSN order after the shared fsync, retiring by
//! per-table flush watermarks) is specific to this store; general-purpose WAL crates bring their
//! own checkpoint model and threading.

use std::fs::{self, File, OpenOptions};
use std::io::{Cursor, IoSlice, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use crate::error::{StoreError, WalError};
use crate::rollup::{RollupConfig, SpanRollups};
use crate::schema::SPANS;
use crate::store::{Prepared, Store};

const MAGIC: &[u8; 8] = b"HRWAL\x00\x00\x01";
const RECORD_HEADER: usize = 16;
/// Larger lengths can only come from a corrupt header.
const MAX_RECORD_BYTES: usize = 1 << 30;
/// A group stops growing at this many payload bytes, to bound the latency of its first request.
const MAX_GROUP_BYTES: usize = 32 << 20;

/// When an appended record counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// `fdatasync` before the acknowledgement: survives a power failure.
    Fsync,
    /// Written to the operating system before the acknowledgement, synced when a segment is
    /// closed: survives a crash of the process, not of the machine.
    Os,
}

#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
    pub sync: SyncMode,
    /// Start a new segment once the current one is this large.
    pub segment_bytes: u64,
    /// How ingest rolls spans up: the rollups are not logged, a replay computes them again
    /// from the spans of each record.
    pub rollups: RollupConfig,
}

/// What [`Wal::open`] found and replayed.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    pub segments: usize,
    pub records: u64,
    pub rows_replayed: u64,
    /// Rows already in Parquet files.
    pub rows_skipped: u64,
    /// Bytes cut off segment tails that were torn or corrupt.
    pub dropped_bytes: u64,
    /// One line per damaged segment: which file, where, why.
    pub damaged: Vec<String>,
    pub elapsed: Duration,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct WalStats {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub syncs: AtomicU64,
    pub segments: AtomicU64,
}

struct Pending {
    payload: Vec<u8>,
    batches: Vec<(&'static str, Prepared)>,
    rollups: Vec<SpanRollups>,
    done: mpsc::SyncSender<Result<u64, WalError>>,
}

/// A closed segment, deleted once the store has flushed everything in it.
struct Closed {
    path: PathBuf,
    last_lsn: Option<u64>,
}

struct Shared {
    dir: PathBuf,
    store: Arc<Store>,
    closed: Mutex<Vec<Closed>>,
    /// LSN of the active segment's last record (0: none).
    active_last_lsn: AtomicU64,
    /// Close the active segment before the next write: everything in it is flushed.
    roll_requested: AtomicBool,
    stats: WalStats,
}

pub struct Wal {
    tx: Mutex<Option<mpsc::Sender<Pending>>>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Critical sections only push to or drain vectors; a poisoned lock holds a valid state.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}.wal"))
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io(dir, e))
}

/// The same error again, for every waiter of a failed group.
fn duplicate(e: &WalError) -> WalError {
    match e {
        WalError::Io { path, source } => WalError::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        WalError::Closed => WalError::Closed,
        other => WalError::Apply(StoreError::internal(other.to_string())),
    }
}

/// Encodes the rows of one request as a record payload.
fn encode_payload(batches: &[(&'static str, Prepared)]) -> Result<Vec<u8>, WalError> {
    // Sized up front: growing a buffer of hundreds of KiB by doubling copies it several times.
    let estimate: usize = batches
        .iter()
        .map(|(_, b)| b.batch().get_array_memory_size() + (8 << 10))
        .sum();
    let mut out = Vec::with_capacity(estimate + 2);
    out.extend_from_slice(&(batches.len() as u16).to_le_bytes());
    for (table, batch) in batches {
        let batch = batch.batch();
        out.push(table.len() as u8);
        out.extend_from_slice(table.as_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let mut w = StreamWriter::try_new(&mut out, &batch.schema())?;
        w.write(batch)?;
        w.finish()?;
        drop(w);
        let ipc_len = (out.len() - len_at - 4) as u32;
        out[len_at..len_at + 4].copy_from_slice(&ipc_len.to_le_bytes());
    }
    Ok(out)
}

fn decode_payload(mut p: &[u8]) -> Result<Vec<(String, RecordBatch)>, String> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if p.len() < n {
            return Err("payload ends early".into());
        }
        let (head, rest) = p.split_at(n);
        *p = rest;
        Ok(head)
    }
    let count = u16::from_le_bytes(take(&mut p, 2)?.try_into().map_err(|_| "count")?);
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let name_len = take(&mut p, 1)?[0] as usize;
        let name = String::from_utf8(take(&mut p, name_len)?.to_vec())
            .map_err(|_| "table name is not UTF-8")?;
        let ipc_len = u32::from_le_bytes(take(&mut p, 4)?.try_into().map_err(|_| "length")?);
        let ipc = take(&mut p, ipc_len as usize)?;
        let reader = StreamReader::try_new(Cursor::new(ipc), None).map_err(|e| e.to_string())?;
        for batch in reader {
            out.push((name.clone(), batch.map_err(|e| e.to_string())?));
        }
    }
    Ok(out)
}

fn record_header(lsn: u64, payload: &[u8]) -> [u8; RECORD_HEADER] {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&lsn.to_le_bytes());
    crc.update(payload);
    let mut h = [0; RECORD_HEADER];
    h[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    h[8..16].copy_from_slice(&lsn.to_le_bytes());
    h
}

/// A valid record found in a segment.
struct Record<'a> {
    lsn: u64,
    payload: &'a [u8],
}

/// Splits a segment into its valid records; returns them, the length of the valid prefix and,
/// if the segment does not end cleanly, why.
fn scan(data: &[u8], mut prev_lsn: u64) -> (Vec<Record<'_>>, usize, Option<String>) {
    let mut records = Vec::new();
    let mut at = MAGIC.len();
    while at < data.len() {
        let rest = &data[at..];
        if rest.len() < RECORD_HEADER {
            return (
                records,
                at,
                Some(format!("torn record header at byte {at}")),
            );
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let lsn = u64::from_le_bytes(rest[8..16].try_into().unwrap_or([0; 8]));
        if len > MAX_RECORD_BYTES || rest.len() < RECORD_HEADER + len {
            return (records, at, Some(format!("torn record at byte {at}")));
        }
        let payload = &rest[RECORD_HEADER..RECORD_HEADER + len];
        let mut h = crc32fast::Hasher::new();
        h.update(&lsn.to_le_bytes());
        h.update(payload);
        if h.finalize() != crc {
            return (records, at, Some(format!("checksum mismatch at byte {at}")));
        }
        if lsn <= prev_lsn {
            return (
                records,
                at,
                Some(format!("LSN {lsn} after {prev_lsn} at byte {at}")),
            );
        }
        prev_lsn = lsn;
        records.push(Record { lsn, payload });
        at += RECORD_HEADER + len;
    }
    (records, at, None)
}

fn list_segments(dir: &Path) -> Result<Vec<PathBuf>, WalError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| WalError::io(dir, e))? {
        let path = entry.map_err(|e| WalError::io(dir, e))?.path();
        let is_segment = path.extension().is_some_and(|e| e == "wal")
            && path
                .file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|s| s.parse::<u64>().is_ok());
        if is_segment {
            out.push(path);
        }
    }
    // Zero-padded names sort by first LSN.
    out.sort();
    Ok(out)
}

/// Replays one segment into the store; returns its last LSN. A damaged tail is cut off.
fn replay_segment(
    path: &Path,
    store: &Store,
    rollups: &RollupConfig,
    prev_lsn: u64,
    report: &mut ReplayReport,
) -> Result<Option<u64>, WalError> {
    let data = fs::read(path).map_err(|e| WalError::io(path, e))?;
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        // Not a segment we wrote completely (or not ours): keep it aside, never replay it.
        let aside = path.with_extension("wal.damaged");
        fs::rename(path, &aside).map_err(|e| WalError::io(path, e))?;
        report.dropped_bytes += data.len() as u64;
        report.damaged.push(format!(
            "{}: no segment header; moved to {}",
            path.display(),
            aside.display()
        ));
        return Ok(None);
    }
    let (records, valid, damage) = scan(&data, prev_lsn);
    let mut last = None;
    for r in &records {
        let batches = match decode_payload(r.payload) {
            Ok(b) => b,
            // The checksum matched, so this is a bug, not a torn write: keep the segment aside.
            Err(e) => {
                let aside = path.with_extension("wal.damaged");
                fs::rename(path, &aside).map_err(|e| WalError::io(path, e))?;
                report.damaged.push(format!(
                    "{}: record {} cannot be decoded ({e}); the rest of the segment is not replayed and it was moved to {}",
                    path.display(),
                    r.lsn,
                    aside.display()
                ));
                return Ok(last);
            }
        };
        // The rollups of the record's spans, as ingest computed them (a record that logged its
        // rollups, as earlier versions did, brings them along).
        let logged_rollups = batches.iter().any(|(t, _)| {
            crate::schema::tables()
                .iter()
                .any(|d| d.name == t && d.rollup.is_some())
        });
        let mut derived = Vec::new();
        if rollups.enabled && !logged_rollups {
            for (_, spans) in batches.iter().filter(|(t, _)| t == SPANS) {
                derived.push(SpanRollups::of(spans, rollups)?);
            }
        }
        for (table, batch) in batches {
            let rows = batch.num_rows() as u64;
            let kept = store.replay(&table, batch, r.lsn)? as u64;
            report.rows_replayed += kept;
            report.rows_skipped += rows - kept;
        }
        // The report counts logged rows only.
        for rollups in &derived {
            store.add_rollups(rollups, r.lsn, true)?;
        }
        report.records += 1;
        last = Some(r.lsn);
    }
    if let Some(why) = damage {
        let dropped = (data.len() - valid) as u64;
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| WalError::io(path, e))?;
        f.set_len(valid as u64)
            .and_then(|()| f.sync_all())
            .map_err(|e| WalError::io(path, e))?;
        report.dropped_bytes += dropped;
        report.damaged.push(format!(
            "{}: {why}; truncated {dropped} bytes",
            path.display()
        ));
    }
    Ok(last)
}

impl Wal {
    /// Opens the log in `config.dir`, replays it into `store` and starts the committer.
    pub fn open(config: WalConfig, store: Arc<Store>) -> Result<(Self, ReplayReport), WalError> {
        let started = Instant::now();
        fs::create_dir_all(&config.dir).map_err(|e| WalError::io(&config.dir, e))?;
        let mut report = ReplayReport::default();
        // LSNs rise through the log; they are checked against the log itself only, since
        // Parquet watermarks may be above records not yet retired.
        let mut last_logged = 0;
        let mut closed = Vec::new();
        for path in list_segments(&config.dir)? {
            report.segments += 1;
            let seg_last =
                replay_segment(&path, &store, &config.rollups, last_logged, &mut report)?;
            if !path.exists() {
                continue; // moved aside as damaged
            }
            match seg_last {
                Some(last) => {
                    closed.push(Closed {
                        path,
                        last_lsn: seg_last,
                    });
                    last_logged = last_logged.max(last);
                }
                // No record: delete it now, or the new segment could take its name.
                None => fs::remove_file(&path).map_err(|e| WalError::io(&path, e))?,
            }
        }
        let last = last_logged.max(store.applied_lsn());
        store.set_applied_lsn(last);
        report.elapsed = started.elapsed();

        let next_lsn = last + 1;
        let path = segment_path(&config.dir, next_lsn);
        let file = new_segment(&path, &config.dir)?;
        let segments = closed.len() as u64 + 1;
        let shared = Arc::new(Shared {
            dir: config.dir.clone(),
            store,
            closed: Mutex::new(closed),
            active_last_lsn: AtomicU64::new(0),
            roll_requested: AtomicBool::new(false),
            stats: WalStats::default(),
        });
        shared.stats.segments.store(segments, Ordering::Relaxed);
        let committer = Committer {
            shared: shared.clone(),
            sync: config.sync,
            segment_bytes: config.segment_bytes,
            file,
            path,
            len: MAGIC.len() as u64,
            last_lsn: None,
            next_lsn,
            broken: false,
        };
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("headroom-wal".into())
            .spawn(move || committer.run(rx))
            .map_err(|e| WalError::io(&config.dir, e))?;
        Ok((
            Self {
                tx: Mutex::new(Some(tx)),
                committer: Mutex::new(Some(handle)),
                shared,
            },
            report,
        ))
    }

    /// Logs the rows of one request (`logged`) and, once they are durable, appends them and
    /// `rollups` (which a replay computes again from `logged`'s spans) to the store under the
    /// record's LSN. Blocks until then; returns the LSN.
    pub fn commit(
        &self,
        logged: Vec<(&'static str, Prepared)>,
        rollups: Vec<SpanRollups>,
    ) -> Result<u64, WalError> {
        let payload = encode_payload(&logged)?;
        let (done, wait) = mpsc::sync_channel(1);
        {
            let tx = lock(&self.tx);
            let tx = tx.as_ref().ok_or(WalError::Closed)?;
            tx.send(Pending {
                payload,
                batches: logged,
                rollups,
                done,
            })
            .map_err(|_| WalError::Closed)?;
        }
        wait.recv().unwrap_or(Err(WalError::Closed))
    }

    /// Deletes the segments whose records are all in durable Parquet files. Call after a flush.
    pub fn retire(&self) -> Result<usize, WalError> {
        let boundary = self.shared.store.retirable_lsn();
        let active_last = self.shared.active_last_lsn.load(Ordering::SeqCst);
        if active_last != 0 && active_last <= boundary {
            self.shared.roll_requested.store(true, Ordering::SeqCst);
        }
        let mut closed = lock(&self.shared.closed);
        let mut deleted = 0;
        while let Some(first) = closed.first() {
            if first.last_lsn.is_some_and(|l| l > boundary) {
                break;
            }
            fs::remove_file(&first.path).map_err(|e| WalError::io(&first.path, e))?;
            closed.remove(0);
            deleted += 1;
        }
        if deleted > 0 {
            sync_dir(&self.shared.dir)?;
            self.shared
                .stats
                .segments
                .fetch_sub(deleted as u64, Ordering::Relaxed);
        }
        Ok(deleted)
    }

    /// When more than `keep` closed segments wait to be retired: the LSN up to which the store
    /// must flush for the oldest of them to go. Tables flush on their own size and age
    /// thresholds, so one quiet table (a few metric points a second, flushed once a minute)
    /// would otherwise hold every busy table's records on disk for as long.
    pub fn pinned_lsn(&self, keep: usize) -> Option<u64> {
        let closed = lock(&self.shared.closed);
        if closed.len() <= keep {
            return None;
        }
        closed.first().and_then(|c| c.last_lsn)
    }

    /// Refuses further commits, lets the committer finish what is queued and syncs the last
    /// segment. The segments stay until [`Wal::retire`] finds them flushed.
    pub fn close(&self) {
        lock(&self.tx).take();
        if let Some(handle) = lock(&self.committer).take()
            && handle.join().is_err()
        {
            tracing::error!("WAL committer panicked");
        }
    }

    pub fn stats(&self) -> &WalStats {
        &self.shared.stats
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

/// One `writev` per call for a whole group (at most `IOV_MAX` slices at a time).
fn write_all_vectored(w: &mut impl Write, mut bufs: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    const IOV_MAX: usize = 1024;
    while !bufs.is_empty() {
        match w.write_vectored(&bufs[..bufs.len().min(IOV_MAX)]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn new_segment(path: &Path, dir: &Path) -> Result<File, WalError> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .map_err(|e| WalError::io(path, e))?;
    file.write_all(MAGIC)
        .and_then(|()| file.sync_all())
        .map_err(|e| WalError::io(path, e))?;
    // The segment's name must be durable before a record in it is acknowledged.
    sync_dir(dir)?;
    Ok(file)
}

struct Committer {
    shared: Arc<Shared>,
    sync: SyncMode,
    segment_bytes: u64,
    file: File,
    path: PathBuf,
    len: u64,
    last_lsn: Option<u64>,
    next_lsn: u64,
    /// A failed write could not be undone: continue in a new segment.
    broken: bool,
}

impl Committer {
    fn run(mut self, rx: mpsc::Receiver<Pending>) {
        while let Ok(first) = rx.recv() {
            let mut bytes = first.payload.len();
            let mut group = vec![first];
            while bytes < MAX_GROUP_BYTES {
                match rx.try_recv() {
                    Ok(p) => {
                        bytes += p.payload.len();
                        group.push(p);
                    }
                    Err(_) => break,
                }
            }
            match self.write_group(&group) {
                Ok(first_lsn) => {
                    for (lsn, p) in (first_lsn..).zip(group) {
                        let mut result = Ok(lsn);
                        let store = &self.shared.store;
                        for (table, batch) in p.batches {
                            if let Err(e) = store.append_prepared(table, batch, lsn) {
                                // Cannot happen for prepared batches; never acknowledge it.
                                result = Err(WalError::Apply(e));
                            }
                        }
                        for rollups in &p.rollups {
                            if let Err(e) = store.add_rollups(rollups, lsn, false) {
                                result = Err(WalError::Apply(e));
                            }
                        }
                        self.shared.store.set_applied_lsn(lsn);
                        let _ = p.done.send(result);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, requests = group.len(), "WAL write failed; requests refused as retryable");
                    for p in group {
                        let _ = p.done.send(Err(duplicate(&e)));
                    }
                }
            }
        }
        if self.sync == SyncMode::Os
            && let Err(e) = self.file.sync_data()
        {
            tracing::error!(path = %self.path.display(), error = %e, "cannot sync the WAL on close");
        }
        lock(&self.shared.closed).push(Closed {
            path: self.path.clone(),
            last_lsn: self.last_lsn,
        });
    }

    fn roll(&mut self) -> Result<(), WalError> {
        if self.sync == SyncMode::Os {
            self.file
                .sync_data()
                .map_err(|e| WalError::io(&self.path, e))?;
        }
        let path = segment_path(&self.shared.dir, self.next_lsn);
        let file = new_segment(&path, &self.shared.dir)?;
        let old_path = std::mem::replace(&mut self.path, path);
        self.file = file;
        lock(&self.shared.closed).push(Closed {
            path: old_path,
            last_lsn: self.last_lsn.take(),
        });
        self.len = MAGIC.len() as u64;
        self.broken = false;
        self.shared.active_last_lsn.store(0, Ordering::SeqCst);
        self.shared.roll_requested.store(false, Ordering::SeqCst);
        self.shared.stats.segments.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Writes and syncs a group of records; returns the LSN of the first.
    fn write_group(&mut self, group: &[Pending]) -> Result<u64, WalError> {
        // An empty segment is never closed, whatever asks for it.
        let roll = self.broken
            || (self.last_lsn.is_some()
                && (self.len >= self.segment_bytes
                    || self.shared.roll_requested.load(Ordering::SeqCst)));
        if roll {
            self.roll()?;
        }
        let first = self.next_lsn;
        let start_len = self.len;
        let written: u64 = group
            .iter()
            .map(|p| (RECORD_HEADER + p.payload.len()) as u64)
            .sum();
        let headers: Vec<[u8; RECORD_HEADER]> = (first..)
            .zip(group)
            .map(|(lsn, p)| record_header(lsn, &p.payload))
            .collect();
        let mut slices: Vec<IoSlice<'_>> = headers
            .iter()
            .zip(group)
            .flat_map(|(h, p)| [IoSlice::new(h), IoSlice::new(&p.payload)])
            .collect();
        let result = (|| {
            write_all_vectored(&mut self.file, &mut slices)?;
            if self.sync == SyncMode::Fsync {
                self.file.sync_data()?;
            }
            Ok::<_, std::io::Error>(())
        })();
        let n = group.len() as u64;
        match result {
            Ok(()) => {
                self.len += written;
                self.next_lsn += n;
                let last = first + n - 1;
                self.last_lsn = Some(last);
                self.shared.active_last_lsn.store(last, Ordering::SeqCst);
                let stats = &self.shared.stats;
                stats.records.fetch_add(n, Ordering::Relaxed);
                stats.bytes.fetch_add(written, Ordering::Relaxed);
                if self.sync == SyncMode::Fsync {
                    stats.syncs.fetch_add(1, Ordering::Relaxed);
                }
                Ok(first)
            }
            Err(e) => {
                // None of these requests is acknowledged, so none may be replayed: cut them off,
                // and write on from there (not from where the failed write stopped, which
                // would leave a hole that ends the log at the next replay).
                let undone = self
                    .file
                    .set_len(start_len)
                    .and_then(|()| self.file.seek(SeekFrom::Start(start_len)))
                    .and_then(|_| self.file.sync_data());
                if let Err(undo) = undone {
                    tracing::error!(path = %self.path.display(), error = %undo, "cannot cut a failed write off the WAL; continuing in a new segment");
                    self.broken = true;
                    self.next_lsn += n;
                }
                Err(WalError::io(&self.path, e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::LOGS;
    use crate::store::StoreConfig;
    use crate::testing::{self, TestSpan};

    fn span_batch(ids: std::ops::Range<u8>) -> RecordBatch {
        let spans: Vec<TestSpan> = ids.map(|i| TestSpan::new([1; 16], [i; 8], 0, 0)).collect();
        testing::spans(&spans)
    }

    fn open(dir: &Path) -> (Arc<Store>, Wal, ReplayReport) {
        open_with(dir, SyncMode::Fsync, 64 << 20)
    }

    fn open_with(
        dir: &Path,
        sync: SyncMode,
        segment_bytes: u64,
    ) -> (Arc<Store>, Wal, ReplayReport) {
        let store = Arc::new(Store::open(StoreConfig::new(dir.join("data"))).unwrap());
        let (wal, report) = Wal::open(
            WalConfig {
                dir: dir.join("data/wal"),
                sync,
                segment_bytes,
                rollups: RollupConfig::default(),
            },
            store.clone(),
        )
        .unwrap();
        (store, wal, report)
    }

    #[test]
    fn os_mode_rolls_segments_and_replays_them_all() {
        let dir = tempfile::tempdir().unwrap();
        // Tiny segments: every record starts a new one.
        let (store, wal, _) = open_with(dir.path(), SyncMode::Os, 1);
        for i in 0..4 {
            wal.commit(
                vec![(
                    SPANS,
                    store.prepare(SPANS, span_batch(i * 3..i * 3 + 3)).unwrap(),
                )],
                Vec::new(),
            )
            .unwrap();
        }
        assert_eq!(wal.stats().syncs.load(Ordering::Relaxed), 0);
        assert_eq!(wal.stats().segments.load(Ordering::Relaxed), 4);
        wal.close();
        drop((store, wal));
        let (store, _wal, report) = open_with(dir.path(), SyncMode::Os, 1);
        assert_eq!((report.segments, report.records), (4, 4));
        assert_eq!(buffered(&store), 12);
    }

    #[test]
    fn a_quiet_table_does_not_pin_the_log() {
        let dir = tempfile::tempdir().unwrap();
        // Tiny segments: every record starts a new one.
        let (store, wal, _) = open_with(dir.path(), SyncMode::Os, 1);
        let time = arrow::array::TimestampNanosecondArray::from(vec![1]).with_timezone("UTC");
        let batch = testing::batch(LOGS, 1, vec![("time", Arc::new(time))]);
        wal.commit(
            vec![(LOGS, store.prepare(LOGS, batch).unwrap())],
            Vec::new(),
        )
        .unwrap();
        for i in 0..6 {
            wal.commit(
                vec![(
                    SPANS,
                    store.prepare(SPANS, span_batch(i * 2..i * 2 + 2)).unwrap(),
                )],
                Vec::new(),
            )
            .unwrap();
            // The busy table flushes on its own; the log record keeps every segment.
            store.flush_table(SPANS, true).unwrap();
            wal.retire().unwrap();
        }
        assert_eq!(wal.stats().segments.load(Ordering::Relaxed), 7);
        assert_eq!(wal.pinned_lsn(7), None);
        let lsn = wal.pinned_lsn(4).expect("more than 4 segments wait");
        assert_eq!(lsn, 1, "the oldest segment holds the log record");
        assert_eq!(
            store.flush_up_to(lsn).unwrap(),
            1,
            "only the logs table flushes"
        );
        assert_eq!(store.stats(LOGS).unwrap().file_rows, 1);
        wal.retire().unwrap();
        assert!(wal.stats().segments.load(Ordering::Relaxed) <= 1);
        assert_eq!(wal.pinned_lsn(0), None);
    }

    fn buffered(store: &Store) -> usize {
        store.stats(SPANS).unwrap().buffered_rows
    }

    #[test]
    fn committed_rows_survive_a_crash_and_flushed_ones_are_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, wal, _) = open(dir.path());
        assert_eq!(
            wal.commit(
                vec![(SPANS, store.prepare(SPANS, span_batch(0..3)).unwrap())],
                Vec::new()
            )
            .unwrap(),
            1
        );
        assert_eq!(
            wal.commit(
                vec![(SPANS, store.prepare(SPANS, span_batch(3..5)).unwrap())],
                Vec::new()
            )
            .unwrap(),
            2
        );
        assert_eq!(buffered(&store), 5);
        // A crash: the process dies without flushing.
        wal.close();
        drop((store, wal));

        let (store, wal, report) = open(dir.path());
        assert_eq!((report.records, report.rows_replayed), (2, 5));
        assert!(report.damaged.is_empty());
        assert_eq!(buffered(&store), 5);
        store.flush_all(true).unwrap();
        assert_eq!(
            wal.commit(
                vec![(SPANS, store.prepare(SPANS, span_batch(5..6)).unwrap())],
                Vec::new()
            )
            .unwrap(),
            3
        );
        wal.close();
        drop((store, wal));

        // The flushed rows are skipped; only the last record is replayed.
        let (store, wal, report) = open(dir.path());
        assert_eq!(
            (report.records, report.rows_replayed, report.rows_skipped),
            (3, 1, 5)
        );
        assert_eq!(store.stats(SPANS).unwrap().file_rows, 5);
        assert_eq!(buffered(&store), 1);
        // After a flush everything is retired: no segment is left.
        store.flush_all(true).unwrap();
        wal.close();
        wal.retire().unwrap();
        assert!(
            list_segments(&dir.path().join("data/wal"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn an_empty_segment_left_by_a_crash_does_not_take_the_new_ones_place() {
        let dir = tempfile::tempdir().unwrap();
        // A run that logged nothing leaves an empty segment named after the next LSN.
        let (store, wal, _) = open(dir.path());
        wal.close();
        drop((store, wal));
        let (store, wal, _) = open(dir.path());
        wal.commit(
            vec![(SPANS, store.prepare(SPANS, span_batch(0..2)).unwrap())],
            Vec::new(),
        )
        .unwrap();
        wal.retire().unwrap();
        wal.close();
        drop((store, wal));
        let (store, _wal, report) = open(dir.path());
        assert_eq!((report.records, buffered(&store)), (1, 2));
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_truncated_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (store, wal, _) = open(dir.path());
        for i in 0..3 {
            wal.commit(
                vec![(
                    SPANS,
                    store.prepare(SPANS, span_batch(i * 2..i * 2 + 2)).unwrap(),
                )],
                Vec::new(),
            )
            .unwrap();
        }
        wal.close();
        drop((store, wal));
        let segment = list_segments(&dir.path().join("data/wal"))
            .unwrap()
            .pop()
            .unwrap();
        let len = fs::metadata(&segment).unwrap().len();
        // Tear the last record: only the first two are replayed.
        OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        let (store, wal, report) = open(dir.path());
        assert_eq!((report.records, report.rows_replayed), (2, 4));
        assert_eq!(report.damaged.len(), 1, "{report:?}");
        assert!(report.damaged[0].contains("torn record"), "{report:?}");
        assert_eq!(buffered(&store), 4);
        wal.close();
        drop((store, wal));

        // Flip a byte inside the second record's payload: only the first is replayed, and the
        // truncation is durable (the next start finds a clean log).
        let mut data = fs::read(&segment).unwrap();
        let (records, _, _) = scan(&data, 0);
        let second = records[1].payload.as_ptr() as usize - data.as_ptr() as usize;
        data[second + 40] ^= 0xff;
        fs::write(&segment, &data).unwrap();
        let (store, wal, report) = open(dir.path());
        assert_eq!((report.records, report.rows_replayed), (1, 2));
        assert!(report.damaged[0].contains("checksum"), "{report:?}");
        wal.close();
        drop((store, wal));
        let (_store, _wal, report) = open(dir.path());
        assert_eq!(report.records, 1);
        assert!(report.damaged.is_empty(), "{report:?}");
    }

    #[test]
    fn a_flush_that_died_between_two_hours_replays_only_the_missing_hour() {
        let dir = tempfile::tempdir().unwrap();
        let (store, wal, _) = open(dir.path());
        // Rows in hour 0 and hour 1 of one record.
        let mut b = span_batch(0..2);
        let times =
            arrow::array::TimestampNanosecondArray::from(vec![0, crate::time::NANOS_PER_HOUR])
                .with_timezone("UTC");
        let idx = b.schema().index_of("start_time").unwrap();
        let mut cols = b.columns().to_vec();
        cols[idx] = Arc::new(times);
        b = RecordBatch::try_new(b.schema(), cols).unwrap();
        wal.commit(
            vec![(SPANS, store.prepare(SPANS, b.clone()).unwrap())],
            Vec::new(),
        )
        .unwrap();
        wal.close();
        drop((store, wal));
        // What a flush that crashed after the first hour's file leaves behind.
        let hour0 = arrow::compute::filter_record_batch(
            &b,
            &arrow::array::BooleanArray::from(vec![true, false]),
        )
        .unwrap();
        crate::parquet::write_table(
            &dir.path().join("data"),
            crate::schema::table(SPANS),
            &[hour0],
            1,
        )
        .unwrap();

        let (store, _wal, report) = open(dir.path());
        assert_eq!((report.rows_replayed, report.rows_skipped), (1, 1));
        let snap = store.snapshot(SPANS).unwrap();
        assert_eq!(snap.files.len(), 1);
        let start = snap.batches[0]
            .column(idx)
            .as_any()
            .downcast_ref::<arrow::array::TimestampNanosecondArray>()
            .unwrap()
            .value(0);
        assert_eq!(start, crate::time::NANOS_PER_HOUR);
    }
}
