//! Reading the other writers' manifests (with `--storage`), so their flushed rows show here.

use std::sync::Arc;
use std::time::Duration;

use headroom_storage::store::Store;
use tokio_util::sync::CancellationToken;

/// Reads the other writers' manifests every `every`, so their flushed rows show here.
pub(crate) async fn run_refresher(store: Arc<Store>, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.refresh_remote()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read other writers' manifests; showing the last ones read")
            }
            Err(e) => tracing::error!(error = %e, "manifest refresh failed"),
        }
    }
}
