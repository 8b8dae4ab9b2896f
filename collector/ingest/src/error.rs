//! The collector's errors, each classified once as invalid input, retryable or internal; the
//! receivers map the class to an OTLP gRPC code and HTTP status with exhaustive matches.

use std::path::Path;

use crate::convert::ConvertError;
use crate::otlp_json::JsonError;
use crate::tenant::AuthError;

/// What a client should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is wrong; retrying it unchanged will fail again.
    InvalidInput,
    /// The request was too large for the configured limit.
    TooLarge,
    /// The request's content type or encoding is not one we speak.
    UnsupportedMediaType,
    /// The server is busy: try again after a delay (gRPC RESOURCE_EXHAUSTED with RetryInfo,
    /// HTTP 429 with Retry-After).
    Throttled,
    /// Try again later (shutting down, storage unavailable).
    Retryable,
    /// A bug or an I/O failure on our side.
    Internal,
    /// No valid credentials (gRPC UNAUTHENTICATED, HTTP 401).
    Unauthenticated,
    /// Valid credentials that may not do this (gRPC PERMISSION_DENIED, HTTP 403).
    Forbidden,
}

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

/// Why an export request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("malformed protobuf payload: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("malformed OTLP/JSON payload at {0}")]
    Json(#[from] JsonError),
    #[error("request body larger than the limit of {limit_bytes} bytes")]
    TooLarge { limit_bytes: usize },
    #[error("cannot decompress request body ({encoding}): {reason}")]
    Decompress {
        encoding: &'static str,
        reason: String,
    },
    #[error("unsupported content type {0:?}; use application/x-protobuf or application/json")]
    UnsupportedContentType(String),
    #[error("unsupported content encoding {0:?}; use gzip, zstd or identity")]
    UnsupportedEncoding(String),
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("ingest buffer is full ({buffered_bytes} bytes buffered); retry later")]
    Overloaded { buffered_bytes: usize },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("too many tenants: at most {0} are served")]
    TooManyTenants(usize),
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Wal(#[from] WalError),
}

impl IngestError {
    pub fn class(&self) -> ErrorClass {
        match self {
            IngestError::Protobuf(_) | IngestError::Json(_) | IngestError::Decompress { .. } => {
                ErrorClass::InvalidInput
            }
            IngestError::TooLarge { .. } => ErrorClass::TooLarge,
            IngestError::UnsupportedContentType(_) | IngestError::UnsupportedEncoding(_) => {
                ErrorClass::UnsupportedMediaType
            }
            IngestError::Overloaded { .. } => ErrorClass::Throttled,
            IngestError::ShuttingDown => ErrorClass::Retryable,
            IngestError::Auth(AuthError::MissingToken | AuthError::InvalidToken) => {
                ErrorClass::Unauthenticated
            }
            IngestError::Auth(AuthError::WrongTenant(_)) | IngestError::TooManyTenants(_) => {
                ErrorClass::Forbidden
            }
            IngestError::Auth(AuthError::InvalidTenant(_)) => ErrorClass::InvalidInput,
            // Disk full or a failing disk: nothing was acknowledged, the client may retry.
            IngestError::Wal(WalError::Io { .. } | WalError::Closed) => ErrorClass::Retryable,
            IngestError::Wal(WalError::Encode(_) | WalError::Apply(_))
            | IngestError::Convert(_)
            | IngestError::Store(_) => ErrorClass::Internal,
        }
    }
}
