//! Maintenance: compaction, retention, garbage collection of the object store, and the
//! service graph's edge rollups.

use std::sync::Arc;
use std::time::Duration;

use headroom_analytics::QueryEngine;
use headroom_storage::store::Store;
use tokio_util::sync::CancellationToken;

use crate::error::ServeError;

/// What the maintenance task needs to know.
pub(crate) struct Maintenance {
    /// Whether to compute the service graph's rollup (`--rollups`).
    pub(crate) edges: bool,
    pub(crate) compaction_target_bytes: u64,
    pub(crate) interval: Duration,
    pub(crate) grace: Duration,
    /// (table, retention) for tables with a limited retention.
    pub(crate) retention: Vec<(&'static str, Duration)>,
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// One round of compaction, retention and garbage collection. Blocking.
pub(crate) fn maintain(store: &Store, m: &Maintenance) -> Result<(), ServeError> {
    let now = now_ns();
    let stats = store.compact(m.compaction_target_bytes, now)?;
    if stats.files_written > 0 {
        tracing::info!(
            files_merged = stats.files_merged,
            files_written = stats.files_written,
            "compacted"
        );
    }
    for (table, keep) in &m.retention {
        let cutoff = now.saturating_sub(keep.as_nanos() as i64);
        let files = store.expire(table, cutoff)?;
        if files > 0 {
            tracing::info!(table, files, "dropped partitions past retention");
        }
    }
    store.collect_garbage(m.grace);
    Ok(())
}

/// Hours of service-graph edges computed between two looks at the stop signal.
pub(crate) const EDGE_HOURS_PER_STEP: usize = 4;

pub(crate) async fn run_maintenance(
    store: Arc<Store>,
    engine: QueryEngine,
    m: Maintenance,
    stop: CancellationToken,
) {
    let m = Arc::new(m);
    // Hours that settled while the server was down are computed at once.
    if m.edges {
        refresh_edges(&store, &engine, &stop).await;
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(m.interval) => {}
        }
        let (s, mm) = (store.clone(), m.clone());
        match tokio::task::spawn_blocking(move || maintain(&s, &mm)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "maintenance failed; retrying next round"),
            Err(e) => tracing::error!(error = %e, "maintenance task failed"),
        }
        if m.edges {
            refresh_edges(&store, &engine, &stop).await;
        }
    }
}

/// Computes the service-graph edges of every settled hour whose file is missing or stale
/// (see `headroom_analytics::service_graph`), a few hours at a time until none is left or the server
/// stops.
pub(crate) async fn refresh_edges(
    store: &Arc<Store>,
    engine: &QueryEngine,
    stop: &CancellationToken,
) {
    let mut hours = 0;
    while !stop.is_cancelled() {
        match headroom_analytics::service_graph::refresh(
            engine,
            store,
            now_ns(),
            EDGE_HOURS_PER_STEP,
        )
        .await
        {
            Ok(r) => {
                hours += r.hours;
                if r.remaining == 0 || r.hours == 0 {
                    break;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "computing service-graph edges failed; retrying next round");
                break;
            }
        }
    }
    if hours > 0 {
        tracing::info!(hours, "computed service-graph edges");
    }
}
