//! Anomaly scoring of every service's KPI series, published as the `anomalies` and
//! `anomaly_scores` tables.

use std::sync::Arc;
use std::time::Duration;

use headroom_analytics::QueryEngine;
use tokio_util::sync::CancellationToken;

/// Scores every service's KPI series each `every`, the first time right away over the last
/// `history_ns`; a wake starts over (history written after the start, as the demo's backfill,
/// is older than what was scored).
pub(crate) async fn run_anomalies(
    engine: QueryEngine,
    every: Option<Duration>,
    history_ns: i64,
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    use headroom_analytics::anomaly::live::Monitor;
    let Some(every) = every else { return };
    let mut monitor = Monitor::new(history_ns);
    loop {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let started = std::time::Instant::now();
        tokio::select! {
            () = stop.cancelled() => return,
            result = monitor.refresh(&engine, now) => match result.and_then(|minutes| {
                engine.publish_anomalies(&monitor).map(|()| minutes)
            }) {
                Ok(minutes) => tracing::debug!(minutes, anomalies = monitor.anomalies().count(), seconds = started.elapsed().as_secs_f64(), "anomalies refreshed"),
                Err(e) => tracing::error!(error = %e, "anomaly refresh failed; retrying next round"),
            },
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
            () = wake.notified() => monitor = Monitor::new(history_ns),
        }
    }
}
