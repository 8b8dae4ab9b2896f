//! Why an export request was not accepted, classified once ([`IngestError::class`]); the
//! receivers answer with the class's gRPC code or HTTP status (`headroom-status`).

use headroom_status::ErrorClass;
use headroom_storage::error::{StoreError, WalError};

use crate::auth::AuthError;
use crate::convert::ConvertError;
use crate::otlp_json::JsonError;

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
