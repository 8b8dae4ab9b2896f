//! The planner: the `forecasts` table every forecast interval, the recommendations every
//! scaling interval.

use std::sync::Arc;
use std::time::Duration;

use headroom_analytics::QueryEngine;
use tokio_util::sync::CancellationToken;

use headroom_analytics::scaling::config::ScalingConfig;

/// What the planner refreshes, and how often (None: never).
pub(crate) struct Planner {
    pub(crate) engine: QueryEngine,
    pub(crate) span: headroom_analytics::forecast::live::Span,
    pub(crate) forecast_every: Option<Duration>,
    pub(crate) scaling_every: Option<Duration>,
    pub(crate) learn_every_seconds: u64,
    pub(crate) scaling: ScalingConfig,
    pub(crate) kpi: headroom_analytics::KpiSettings,
    /// Refresh everything now (e.g. after a backfill), whatever the schedule says.
    pub(crate) wake: Arc<tokio::sync::Notify>,
}

/// Refreshes the `forecasts` table every forecast interval and the recommendations (from the
/// latest forecasts and the observed load) every scaling interval, both the first time right
/// away.
pub(crate) async fn run_planner(p: Planner, stop: CancellationToken) {
    let extra = p.scaling.quantiles();
    let mut forecasts = Vec::new();
    let mut live = headroom_analytics::scaling::live::Live::new(p.learn_every_seconds);
    let mut next_forecast = tokio::time::Instant::now();
    loop {
        if let Some(every) = p.forecast_every
            && tokio::time::Instant::now() >= next_forecast
        {
            next_forecast = tokio::time::Instant::now() + every;
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
            let started = std::time::Instant::now();
            tokio::select! {
                () = stop.cancelled() => return,
                result = headroom_analytics::forecast::live::refresh(&p.engine, p.span, now, &extra) => match result {
                    Ok(f) => {
                        tracing::info!(series = f.len(), seconds = started.elapsed().as_secs_f64(), "forecasts refreshed");
                        forecasts = f;
                    }
                    Err(e) => tracing::error!(error = %e, "forecast refresh failed; retrying next round"),
                },
            }
        }
        if let Some(every) = p.scaling_every {
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
            tokio::select! {
                () = stop.cancelled() => return,
                result = headroom_analytics::scaling::live::refresh(&p.engine, &forecasts, &p.scaling, &p.kpi, &mut live, every.as_secs(), now) => match result {
                    Ok(services) => tracing::debug!(services, "recommendations refreshed"),
                    Err(e) => tracing::error!(error = %e, "recommendation refresh failed; retrying next round"),
                },
            }
        }
        let next_scaling = p
            .scaling_every
            .map(|every| tokio::time::Instant::now() + every);
        let forecast_due = p.forecast_every.map(|_| next_forecast);
        let Some(wake) = next_scaling.into_iter().chain(forecast_due).min() else {
            return;
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(wake) => {}
            () = p.wake.notified() => next_forecast = tokio::time::Instant::now(),
        }
    }
}
