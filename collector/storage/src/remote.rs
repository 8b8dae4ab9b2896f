//! Parquet files in an object store (S3, GCS, Azure Blob, or a shared directory), written by
//! several servers at once and read by all of them.
//!
//! Each `headroom serve` is a *writer* with an id of its own (`--writer-id`, or one chosen
//! once and kept in the data directory). Its files go under
//! `<prefix>/writers/<id>/<table>/date=…/hour=…/<ulid>.parquet`, and the list of its live
//! files, its *manifest*, is `<prefix>/manifests/<id>.json`. Only that writer ever writes
//! under either name, so writers never clobber each other, whatever the store does with
//! concurrent writes to one key. A file is uploaded before the manifest names it and deleted
//! (after the grace period) only once the manifest no longer names it; a reader that follows
//! the manifests therefore reads each row once and never plans a file that is not there yet.
//! Delta Lake and Iceberg keep a log or a catalog to order many writers' changes to *shared*
//! files; here no file is ever shared, so one manifest per writer, replaced whole, is enough.
//!
//! The data directory keeps the write-ahead log and a copy of this writer's own files:
//! flushes, compaction and queries of its own files work on local disk, as without a store.
//! A flush counts as durable, and its WAL records may be retired, only once the manifest
//! naming its files is in the store. Other writers' files are read from the store, from the
//! manifests as last listed (every `--storage-refresh-seconds`).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use futures::TryStreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::parquet::DataFile;

const MANIFEST_FORMAT: u32 = 1;

/// How old a manifest must be before its modification time and size are trusted to tell a
/// new version from the one already read (the margin covers clock differences too).
const SETTLED: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// A writer's list of live files.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    writer: String,
    /// When it was written (RFC 3339), for people looking at the bucket.
    written_at: String,
    tables: BTreeMap<String, Vec<ManifestFile>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestFile {
    key: String,
    size_bytes: u64,
    rows: u64,
    hour_ns: Option<i64>,
    wal_lsn: u64,
    source_rows: Option<u64>,
}

/// Another writer's files, as its manifest listed them when last read.
struct Other {
    /// The manifest's modification time and size when it was read: it is read again only when
    /// either changes.
    version: (chrono::DateTime<chrono::Utc>, u64),
    tables: HashMap<String, Vec<DataFile>>,
}

/// Writer ids name a directory in the store: letters, digits, `-`, `_` and `.`, at most 64.
pub fn is_valid_writer_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// What a writer did with the store, for `/metrics`.
#[derive(Debug, Default)]
pub struct RemoteStats {
    pub files_uploaded: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    pub manifests_published: AtomicU64,
    /// Uploads, manifest writes and manifest reads that failed.
    pub failures: AtomicU64,
    /// Other writers whose manifests were last read.
    pub other_writers: AtomicU64,
}

/// One writer's view of an object store: its own files' keys and manifest, and the others'.
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    /// The store without its prefix (`s3://bucket`): how query engines find it.
    url: String,
    prefix: Key,
    writer: String,
    rt: &'static tokio::runtime::Runtime,
    others: RwLock<HashMap<String, Other>>,
    stats: RemoteStats,
}

/// The runtime the store's requests run on when called from blocking code. Its own, so that a
/// request never waits for a runtime whose threads are all blocked on it (a single-threaded
/// runtime whose thread called a flush, say); it lives as long as the process.
fn io_runtime() -> Result<&'static tokio::runtime::Runtime, StoreError> {
    static IO: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if let Some(rt) = IO.get() {
        return Ok(rt);
    }
    // Built once: a second runtime, dropped on an async thread, would panic.
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = IO.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("headroom-object-store")
        .enable_all()
        .build()
        .map_err(|e| StoreError::internal(format!("object store runtime: {e}")))?;
    Ok(IO.get_or_init(|| rt))
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("prefix", &self.prefix.as_ref())
            .field("writer", &self.writer)
            .finish()
    }
}

fn remote_error(what: impl std::fmt::Display, e: impl std::fmt::Display) -> StoreError {
    StoreError::Remote(format!("{what}: {e}"))
}

/// Builds the store an URL names, configured from the environment (`AWS_…`, `GOOGLE_…`,
/// `AZURE_…`, as the cloud SDKs read it) and then `options` (`key=value`, the `object_store`
/// configuration keys such as `aws_endpoint` or `aws_allow_http`). Returns the store, its URL
/// without the path, and the path as the prefix.
pub fn connect(
    url: &str,
    options: &[(String, String)],
) -> Result<(Arc<dyn ObjectStore>, String, Key), StoreError> {
    let parsed = url::Url::parse(url).map_err(|e| remote_error(format!("--storage {url}"), e))?;
    let (scheme, prefix) = ObjectStoreScheme::parse(&parsed)
        .map_err(|e| remote_error(format!("--storage {url}"), e))?;
    let base = format!("{}://{}", parsed.scheme(), parsed.host_str().unwrap_or(""));
    let unknown = |key: &str| {
        StoreError::Remote(format!(
            "--storage-option {key}: not a configuration key of {} stores",
            parsed.scheme()
        ))
    };
    macro_rules! build {
        ($builder:ty) => {{
            let mut b = <$builder>::from_env().with_url(url);
            for (key, value) in options {
                let k = key.to_ascii_lowercase().parse().map_err(|_| unknown(key))?;
                b = b.with_config(k, value);
            }
            Arc::new(b.build().map_err(|e| remote_error(url, e))?) as Arc<dyn ObjectStore>
        }};
    }
    let store = match scheme {
        ObjectStoreScheme::AmazonS3 => build!(object_store::aws::AmazonS3Builder),
        ObjectStoreScheme::GoogleCloudStorage => {
            build!(object_store::gcp::GoogleCloudStorageBuilder)
        }
        ObjectStoreScheme::MicrosoftAzure => build!(object_store::azure::MicrosoftAzureBuilder),
        // A directory every server mounts (NFS, a shared volume).
        ObjectStoreScheme::Local => {
            if let Some((key, _)) = options.first() {
                return Err(unknown(key));
            }
            let dir = Path::new(parsed.path());
            std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
            Arc::new(object_store::local::LocalFileSystem::new()) as Arc<dyn ObjectStore>
        }
        _ => {
            return Err(StoreError::Remote(format!(
                "--storage {url}: use s3://, gs://, az:// or file:// (or a local path)"
            )));
        }
    };
    Ok((store, base, prefix))
}

impl Remote {
    /// `writer`'s view of `store` under `prefix`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        url: String,
        prefix: Key,
        writer: &str,
    ) -> Result<Self, StoreError> {
        if !is_valid_writer_id(writer) {
            return Err(StoreError::Remote(format!(
                "writer id {writer:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
            )));
        }
        let rt = io_runtime()?;
        Ok(Self {
            rt,
            store,
            url,
            prefix,
            writer: writer.to_owned(),
            others: RwLock::new(HashMap::new()),
            stats: RemoteStats::default(),
        })
    }

    /// The same store and writer, under `<prefix>/<part>/…` (a tenant's tables).
    pub fn child(&self, parts: &[&str]) -> Self {
        let mut prefix = self.prefix.clone();
        for p in parts {
            prefix = prefix.clone().join(*p);
        }
        Self {
            store: self.store.clone(),
            url: self.url.clone(),
            prefix,
            writer: self.writer.clone(),
            rt: self.rt,
            others: RwLock::new(HashMap::new()),
            stats: RemoteStats::default(),
        }
    }

    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The store's URL without the prefix (`s3://bucket`), as DataFusion registers stores.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn writer(&self) -> &str {
        &self.writer
    }

    pub fn stats(&self) -> &RemoteStats {
        &self.stats
    }

    /// Counts a failed request.
    fn counted<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if r.is_err() {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Runs requests to the store from blocking code (flushes, compaction), which may itself
    /// run on a runtime's thread: on a thread of its own, which no runtime has entered.
    fn block<F>(&self, f: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        std::thread::scope(|s| {
            s.spawn(|| self.rt.block_on(f))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    fn manifest_key(&self, writer: &str) -> Key {
        self.prefix
            .clone()
            .join("manifests")
            .join(format!("{writer}.json"))
    }

    /// Where this writer's file at `local` (under the data directory `root`) is in the store.
    pub fn key_of(&self, root: &Path, local: &Path) -> Result<Key, StoreError> {
        let relative = local.strip_prefix(root).map_err(|_| {
            StoreError::internal(format!(
                "{} is not under {}",
                local.display(),
                root.display()
            ))
        })?;
        let mut key = self
            .prefix
            .clone()
            .join("writers")
            .join(self.writer.as_str());
        for c in relative.components() {
            match c {
                Component::Normal(part) => key = key.join(part.to_string_lossy().as_ref()),
                _ => {
                    return Err(StoreError::internal(format!(
                        "odd path {}",
                        local.display()
                    )));
                }
            }
        }
        Ok(key)
    }

    /// Uploads this writer's files (multipart when large). Blocking.
    pub fn upload(&self, root: &Path, files: &[DataFile]) -> Result<(), StoreError> {
        let uploads: Vec<(Key, &Path)> = files
            .iter()
            .map(|f| Ok((self.key_of(root, &f.path)?, f.path.as_path())))
            .collect::<Result<_, StoreError>>()?;
        let uploaded = self.block(async {
            for (key, path) in uploads {
                let mut file = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| StoreError::io(path, e))?;
                let mut w = object_store::buffered::BufWriter::new(self.store.clone(), key.clone());
                let copied = async {
                    tokio::io::copy(&mut file, &mut w).await?;
                    tokio::io::AsyncWriteExt::shutdown(&mut w).await
                }
                .await;
                if let Err(e) = copied {
                    let _ = w.abort().await;
                    return Err(remote_error(format!("uploading {key}"), e));
                }
            }
            Ok(())
        });
        if uploaded.is_ok() {
            let bytes: u64 = files.iter().map(|f| f.size_bytes).sum();
            self.stats
                .files_uploaded
                .fetch_add(files.len() as u64, Ordering::Relaxed);
            self.stats
                .bytes_uploaded
                .fetch_add(bytes, Ordering::Relaxed);
        }
        self.counted(uploaded)
    }

    /// Replaces this writer's manifest with `tables` (each table's files, all of them).
    /// Blocking.
    pub fn publish(&self, root: &Path, tables: &[(&str, Vec<DataFile>)]) -> Result<(), StoreError> {
        let mut listed = BTreeMap::new();
        for (name, files) in tables {
            let files = files
                .iter()
                .map(|f| {
                    Ok(ManifestFile {
                        key: self.key_of(root, &f.path)?.to_string(),
                        size_bytes: f.size_bytes,
                        rows: f.rows,
                        hour_ns: f.hour_ns,
                        wal_lsn: f.wal_lsn,
                        source_rows: f.source_rows,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            listed.insert((*name).to_owned(), files);
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            writer: self.writer.clone(),
            written_at: chrono::Utc::now().to_rfc3339(),
            tables: listed,
        };
        let body = serde_json::to_vec(&manifest)
            .map_err(|e| StoreError::internal(format!("manifest: {e}")))?;
        let key = self.manifest_key(&self.writer);
        self.counted(
            self.block(self.store.put(&key, PutPayload::from(body)))
                .map_err(|e| remote_error(format!("writing {key}"), e)),
        )?;
        self.stats
            .manifests_published
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The keys this writer's manifest lists, or `None` if it has none. Blocking.
    pub fn own_keys(&self) -> Result<Option<Vec<String>>, StoreError> {
        let key = self.manifest_key(&self.writer);
        let Some(manifest) = self.block(self.read_manifest(&key))? else {
            return Ok(None);
        };
        Ok(Some(
            manifest
                .tables
                .into_values()
                .flatten()
                .map(|f| f.key)
                .collect(),
        ))
    }

    async fn read_manifest(&self, key: &Key) -> Result<Option<Manifest>, StoreError> {
        let body = match self.store.get(key).await {
            Ok(got) => got.bytes().await,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => Err(e),
        }
        .map_err(|e| remote_error(format!("reading {key}"), e))?;
        let manifest: Manifest = serde_json::from_slice(&body)
            .map_err(|e| remote_error(format!("manifest {key} is damaged"), e))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(StoreError::Remote(format!(
                "manifest {key} has format {}, this server reads {MANIFEST_FORMAT}",
                manifest.format
            )));
        }
        Ok(Some(manifest))
    }

    /// Deletes objects of this writer; one that is already gone counts as deleted. Returns the
    /// keys that could not be deleted. Blocking.
    pub fn delete(&self, keys: Vec<Key>) -> Vec<(Key, StoreError)> {
        self.block(async {
            let mut failed = Vec::new();
            for key in keys {
                match self.store.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        failed.push((key.clone(), remote_error(format!("deleting {key}"), e)))
                    }
                }
            }
            failed
        })
    }

    /// This writer's objects that its manifest does not list: uploads of a flush or compaction
    /// that died before its manifest was written. Blocking.
    pub fn unlisted(&self, listed: &[String]) -> Result<Vec<Key>, StoreError> {
        let dir = self
            .prefix
            .clone()
            .join("writers")
            .join(self.writer.as_str());
        let all: Vec<object_store::ObjectMeta> = self
            .block(self.store.list(Some(&dir)).try_collect())
            .map_err(|e| remote_error(format!("listing {dir}"), e))?;
        let listed: std::collections::HashSet<&str> = listed.iter().map(String::as_str).collect();
        Ok(all
            .into_iter()
            .map(|m| m.location)
            .filter(|k| !listed.contains(k.as_ref()))
            .collect())
    }

    /// Reads the other writers' manifests that changed since the last call, and forgets
    /// writers whose manifest is gone. Returns how many writers' files are known. Blocking.
    pub fn refresh(&self) -> Result<usize, StoreError> {
        let known = self.counted(self.read_others())?;
        self.stats
            .other_writers
            .store(known as u64, Ordering::Relaxed);
        Ok(known)
    }

    fn read_others(&self) -> Result<usize, StoreError> {
        let dir = self.prefix.clone().join("manifests");
        let listed: Vec<object_store::ObjectMeta> = self
            .block(self.store.list(Some(&dir)).try_collect())
            .map_err(|e| remote_error(format!("listing {dir}"), e))?;
        let mut seen = Vec::new();
        for meta in listed {
            let Some(writer) = meta
                .location
                .filename()
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_owned)
            else {
                continue;
            };
            if writer == self.writer {
                continue;
            }
            seen.push(writer.clone());
            let version = (meta.last_modified, meta.size);
            // Two versions written close together may share a time stamp and a size: a
            // manifest is trusted unchanged only once it is a while old.
            let settled = chrono::Utc::now() - meta.last_modified > SETTLED;
            let unchanged = settled
                && self
                    .others
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&writer)
                    .is_some_and(|o| o.version == version);
            if unchanged {
                continue;
            }
            // A manifest deleted between the listing and the read: the writer is gone.
            let Some(manifest) = self.block(self.read_manifest(&meta.location))? else {
                continue;
            };
            let tables = manifest
                .tables
                .into_iter()
                .map(|(table, files)| {
                    let files = files
                        .into_iter()
                        .map(|f| DataFile {
                            path: f.key.into(),
                            size_bytes: f.size_bytes,
                            rows: f.rows,
                            hour_ns: f.hour_ns,
                            wal_lsn: f.wal_lsn,
                            source_rows: f.source_rows,
                        })
                        .collect();
                    (table, files)
                })
                .collect();
            self.others
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(writer, Other { version, tables });
        }
        let mut others = self.others.write().unwrap_or_else(|e| e.into_inner());
        others.retain(|w, _| seen.contains(w));
        Ok(others.len())
    }

    /// The other writers' files of `table` (their paths are keys in the store).
    pub fn others_files(&self, table: &str) -> Vec<DataFile> {
        self.others
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(|o| o.tables.get(table))
            .flatten()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_ids_are_safe_names() {
        for ok in ["a", "collector-0", "eu_west.1", &"x".repeat(64)] {
            assert!(is_valid_writer_id(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(65)] {
            assert!(!is_valid_writer_id(bad), "{bad}");
        }
    }
}
