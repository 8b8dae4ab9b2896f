//! `headroom query`: SQL over a data directory's Parquet files, printed as a table. Reads only,
//! so it is safe beside a running server (it sees what has been flushed).

use std::path::Path;
use std::sync::Arc;

use headroom_analytics::{QueryEngine, QueryError};
use headroom_storage::error::StoreError;
use headroom_storage::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum QueryCommandError {
    #[error("cannot open data directory: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("formatting result: {0}")]
    Format(#[from] arrow::error::ArrowError),
}

/// Runs `sql` over the files under `data_dir` and returns the printed table.
pub async fn run(data_dir: &Path, sql: &str) -> Result<String, QueryCommandError> {
    let store = Arc::new(Store::open_read_only(data_dir)?);
    let engine = QueryEngine::new(
        store,
        headroom_analytics::QueryLimits::default(),
        &headroom_analytics::KpiSettings::default(),
        // One query: nothing to share.
        0,
    )
    .await?;
    let batches = engine.sql(sql).await?;
    Ok(arrow::util::pretty::pretty_format_batches(&batches)?.to_string())
}
