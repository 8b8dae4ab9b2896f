//! Query errors, classified once: the caller's SQL is wrong, or we failed.

use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("Headroom's SQL is read-only; only queries can run here ({0})")]
    ReadOnly(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl QueryError {
    /// True when the query was stopped at its deadline.
    pub fn is_timeout(&self) -> bool {
        match self {
            QueryError::DataFusion(e) => matches!(
                e.find_root(),
                DataFusionError::External(inner) if inner.is::<crate::guard::QueryTimeout>()
            ),
            _ => false,
        }
    }

    /// True when the query itself is at fault (syntax, unknown table or column, refused
    /// statement, type error): an HTTP 400, not a 500.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            QueryError::DataFusion(e) => {
                matches!(
                    e.find_root(),
                    DataFusionError::SQL(..)
                        | DataFusionError::Plan(_)
                        | DataFusionError::SchemaError(..)
                        | DataFusionError::NotImplemented(_)
                        | DataFusionError::ResourcesExhausted(_)
                ) || self.is_timeout()
            }
            QueryError::ReadOnly(_) => true,
            QueryError::Arrow(_) | QueryError::Internal(_) => false,
        }
    }
}
