//! Query errors, classified once ([`QueryError::class`]): the caller's SQL is wrong, or we
//! failed. Every SQL surface answers with the class's HTTP status or SQLSTATE
//! (`headroom-status`).

use datafusion::error::DataFusionError;
use headroom_status::ErrorClass;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// DataFusion's message already names its cause (a parser error, an Arrow error): the
    /// variant shows it and is the end of the chain, so a report says it once.
    #[error("{0}")]
    DataFusion(DataFusionError),
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("Headroom's SQL is read-only; only queries can run here ({0})")]
    ReadOnly(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        QueryError::DataFusion(e)
    }
}

impl QueryError {
    /// What the caller should make of it.
    pub fn class(&self) -> ErrorClass {
        match self {
            _ if self.is_timeout() => ErrorClass::Timeout,
            QueryError::ReadOnly(_) => ErrorClass::ReadOnly,
            QueryError::DataFusion(e) => match e.find_root() {
                DataFusionError::ResourcesExhausted(_) => ErrorClass::ResourcesExhausted,
                DataFusionError::SQL(..)
                | DataFusionError::Plan(_)
                | DataFusionError::SchemaError(..)
                | DataFusionError::NotImplemented(_) => ErrorClass::InvalidInput,
                _ => ErrorClass::Internal,
            },
            QueryError::Arrow(_) | QueryError::Internal(_) => ErrorClass::Internal,
        }
    }

    /// True when the query was stopped at its deadline.
    pub fn is_timeout(&self) -> bool {
        match self {
            QueryError::DataFusion(e) => matches!(
                e.find_root(),
                DataFusionError::External(inner) if inner.is::<crate::query_limits::QueryTimeout>()
            ),
            _ => false,
        }
    }
}
