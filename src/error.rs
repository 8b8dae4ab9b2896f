//! Why the server could not start, or stopped badly.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Store(#[from] headroom_storage::error::StoreError),
    #[error("{0}")]
    Wal(#[from] headroom_storage::error::WalError),
    #[error("query engine: {0}")]
    Query(#[from] headroom_analytics::QueryError),
    #[error("{what} server failed: {reason}")]
    Server { what: &'static str, reason: String },
    #[error("shutdown did not finish within {0:?}")]
    ShutdownTimeout(Duration),
}
