//! The storage layer's errors. Each carries its source; the layers above classify them (a
//! failing disk is retryable for a client, a damaged record is internal).

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("data directory {0} is in use by another headroom process")]
    InUse(String),
    /// The object store refused or failed a request, or is misconfigured.
    #[error("object store: {0}")]
    Remote(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Self::Internal(msg.into())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("write-ahead log: cannot encode record: {0}")]
    Encode(#[from] arrow::error::ArrowError),
    #[error("write-ahead log is closed")]
    Closed,
    /// A logged record could not be added to the store (on replay, or after its fsync).
    #[error("write-ahead log: cannot apply a record: {0}")]
    Apply(#[from] StoreError),
}

impl WalError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
