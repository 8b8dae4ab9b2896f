//! Flushing: tables whose size or age threshold is reached go to Parquet, and the WAL
//! segments wholly in Parquet are retired.

use std::sync::Arc;
use std::time::Duration;

use headroom_storage::store::Store;
use headroom_storage::wal::Wal;
use tokio_util::sync::CancellationToken;

use crate::error::ServeError;

/// Closed WAL segments (`--wal-segment-bytes` each) allowed to wait for a table's own flush;
/// beyond them, the tables holding the oldest are flushed early.
pub(crate) const WAL_UNRETIRED_SEGMENTS: usize = 4;

/// Flushes everything (with `force`) or what is due, then retires the WAL segments that are
/// entirely in Parquet. Blocking.
pub(crate) fn flush(store: &Store, wal: Option<&Wal>, force: bool) -> Result<usize, ServeError> {
    let mut rows = store.flush_all(force)?;
    if let Some(wal) = wal {
        if let Some(lsn) = wal.pinned_lsn(WAL_UNRETIRED_SEGMENTS) {
            rows += store.flush_up_to(lsn)?;
        }
        let segments = wal.retire()?;
        if segments > 0 {
            tracing::debug!(segments, "retired WAL segments");
        }
    }
    Ok(rows)
}

/// Flushes tables whose size or age threshold is reached, off the async workers.
pub(crate) async fn run_flusher(store: Arc<Store>, wal: Option<Arc<Wal>>, stop: CancellationToken) {
    let tick =
        (store.config().flush_age / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
            () = store.flush_wanted() => {}
        }
        let (s, w) = (store.clone(), wal.clone());
        match tokio::task::spawn_blocking(move || flush(&s, w.as_deref(), false)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(rows)) => tracing::debug!(rows, "flushed to Parquet"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "flush failed; rows stay buffered and will be retried")
            }
            Err(e) => tracing::error!(error = %e, "flush task failed"),
        }
    }
}
