//! One tenant: its store and write-ahead log under its own directory, its query engine and
//! HTTP API, and its background jobs; opened with the server's settings, stopped with it.

use std::sync::Arc;
use std::time::Duration;

use headroom_analytics::QueryEngine;
use headroom_ingest::auth::DEFAULT_TENANT;
use headroom_ingest::ingest::Ingester;
use headroom_storage::remote::Remote;
use headroom_storage::rollup::RollupConfig;
use headroom_storage::store::{Store, StoreConfig};
use headroom_storage::wal::{SyncMode, Wal, WalConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::config::{QueryEngineKind, ServeConfig, WalSync};
use headroom_analytics::scaling::config::ScalingConfig;

use crate::error::ServeError;
use crate::jobs::{anomaly::*, flush::*, maintain::*, plan::*, refresh::*};

/// What every tenant is opened with: the configuration, read and checked once.
pub(crate) struct Settings {
    pub(crate) cfg: ServeConfig,
    pub(crate) kpi: headroom_analytics::KpiSettings,
    pub(crate) scaling: ScalingConfig,
    /// `--storage`, as this writer sees it; tenants other than the default one keep their
    /// files under `tenants/<id>/` in it.
    pub(crate) remote: Option<Arc<Remote>>,
}

/// One tenant: its store and write-ahead log under its own directory, its query engine and
/// HTTP API, and its background work (flushes, maintenance, forecasts, recommendations,
/// anomalies). Tenants share the listeners and nothing else.
pub struct Tenant {
    pub id: String,
    pub store: Arc<Store>,
    pub engine: QueryEngine,
    pub ingester: Arc<Ingester>,
    /// The HTTP API over this tenant's tables.
    pub(crate) api: axum::Router,
    pub(crate) planner_wake: Arc<tokio::sync::Notify>,
    pub(crate) anomaly_wake: Arc<tokio::sync::Notify>,
    /// Taken once, by the shutdown.
    pub(crate) background: std::sync::Mutex<Option<Background>>,
}

pub(crate) struct Background {
    pub(crate) flusher_stop: CancellationToken,
    pub(crate) flusher: JoinHandle<()>,
    /// Reads other writers' manifests (with `--storage`); stopped with the flusher.
    pub(crate) refresher: Option<JoinHandle<()>>,
    pub(crate) maintenance_stop: CancellationToken,
    pub(crate) maintenance: JoinHandle<()>,
    pub(crate) planner_stop: CancellationToken,
    pub(crate) planner: JoinHandle<()>,
    pub(crate) anomalies: JoinHandle<()>,
}

/// Opens a tenant's store under `root`, replays its write-ahead log, and starts its
/// background work.
pub(crate) async fn open_tenant(
    settings: &Settings,
    id: &str,
    root: std::path::PathBuf,
) -> Result<Tenant, ServeError> {
    let cfg = &settings.cfg;
    let remote = settings.remote.as_ref().map(|r| {
        if id == DEFAULT_TENANT {
            r.clone()
        } else {
            Arc::new(r.child(&["tenants", id]))
        }
    });
    let store_config = StoreConfig {
        root,
        flush_rows: cfg.flush_max_rows as usize,
        flush_bytes: cfg.flush_max_bytes as usize,
        flush_age: Duration::from_secs_f64(cfg.flush_max_age_seconds),
        max_buffer_bytes: cfg.max_buffer_bytes as usize,
        remote: remote.clone(),
    };
    // With an object store, opening reads and writes the manifest: off the async workers.
    let store = Arc::new(
        tokio::task::spawn_blocking(move || Store::open(store_config))
            .await
            .map_err(|e| ServeError::Server {
                what: "store",
                reason: e.to_string(),
            })??,
    );
    if let Some(r) = &remote {
        tracing::info!(
            tenant = id,
            store = r.url(),
            writer = r.writer(),
            "publishing Parquet files to the object store"
        );
    }
    let rollups = RollupConfig {
        enabled: cfg.rollups,
        health_check_routes: settings.kpi.health_check_routes.clone(),
    };
    let wal = match cfg.wal_sync {
        WalSync::Off => {
            tracing::warn!(
                tenant = id,
                "--wal-sync off: acknowledged data not yet in Parquet is lost in a crash"
            );
            None
        }
        WalSync::Fsync | WalSync::Os => {
            let sync = if cfg.wal_sync == WalSync::Fsync {
                SyncMode::Fsync
            } else {
                SyncMode::Os
            };
            // Replayed before any receiver opens.
            let (wal, report) = Wal::open(
                WalConfig {
                    dir: store.root().join("wal"),
                    sync,
                    segment_bytes: cfg.wal_segment_bytes,
                    rollups: rollups.clone(),
                },
                store.clone(),
            )?;
            for damage in &report.damaged {
                tracing::warn!(tenant = id, damage, "WAL damage found and cut off");
            }
            tracing::info!(
                tenant = id,
                segments = report.segments,
                records = report.records,
                rows_replayed = report.rows_replayed,
                rows_already_in_parquet = report.rows_skipped,
                dropped_bytes = report.dropped_bytes,
                elapsed_ms = report.elapsed.as_millis() as u64,
                "WAL replayed"
            );
            Some(Arc::new(wal))
        }
    };
    let ingester = Arc::new(Ingester::new(store.clone(), wal.clone(), rollups));
    let engine = match cfg.query_engine {
        QueryEngineKind::Local => {
            QueryEngine::new(
                store.clone(),
                cfg.query_limits(),
                &settings.kpi,
                cfg.file_cache_bytes,
            )
            .await?
        }
        QueryEngineKind::Ballista => {
            let cluster = headroom_analytics::cluster::Cluster::new(&cfg.ballista_scheduler)
                .map_err(|e| ServeError::Config(e.to_string()))?;
            QueryEngine::on_cluster(store.clone(), cluster, cfg.query_limits(), &settings.kpi)
                .await?
        }
    };
    let api = api::http::router(api::answer::ApiState {
        engine: engine.clone(),
        ingester: ingester.clone(),
        forecast_history_days: cfg.forecast_history_days,
        recommendation_max_age_ns: cfg.recommendation_max_age_ns(),
    });

    let flusher_stop = CancellationToken::new();
    let flusher = tokio::spawn(run_flusher(store.clone(), wal, flusher_stop.clone()));
    let refresher = remote.is_some().then(|| {
        tokio::spawn(run_refresher(
            store.clone(),
            Duration::from_secs_f64(cfg.storage_refresh_seconds),
            flusher_stop.clone(),
        ))
    });
    let maintenance_stop = CancellationToken::new();
    let maintenance = tokio::spawn(run_maintenance(
        store.clone(),
        engine.clone(),
        Maintenance {
            edges: cfg.rollups,
            compaction_target_bytes: cfg.compaction_target_bytes,
            interval: Duration::from_secs_f64(cfg.maintenance_interval_seconds),
            grace: Duration::from_secs_f64(cfg.deleted_file_grace_seconds),
            retention: headroom_storage::schema::tables()
                .iter()
                .filter_map(|t| cfg.retention_of(t.name).map(|d| (t.name, d)))
                .collect(),
        },
        maintenance_stop.clone(),
    ));
    let planner_stop = CancellationToken::new();
    let planner_wake = Arc::new(tokio::sync::Notify::new());
    let every = |seconds: u64| (seconds > 0).then(|| Duration::from_secs(seconds));
    let planner = tokio::spawn(run_planner(
        Planner {
            engine: engine.clone(),
            span: cfg.forecast_span(),
            forecast_every: every(cfg.forecast_interval_seconds),
            scaling_every: every(cfg.scaling_interval_seconds),
            learn_every_seconds: cfg.scaling_learn_interval_seconds,
            scaling: settings.scaling.clone(),
            kpi: settings.kpi.clone(),
            wake: planner_wake.clone(),
        },
        planner_stop.clone(),
    ));
    let anomaly_wake = Arc::new(tokio::sync::Notify::new());
    let anomalies = tokio::spawn(run_anomalies(
        engine.clone(),
        every(cfg.anomaly_interval_seconds),
        i64::try_from(cfg.anomaly_history_hours.saturating_mul(3_600_000_000_000))
            .unwrap_or(i64::MAX),
        anomaly_wake.clone(),
        planner_stop.clone(),
    ));
    tracing::info!(tenant = id, data_dir = %store.root().display(), "tenant open");
    Ok(Tenant {
        id: id.to_owned(),
        store,
        engine,
        ingester,
        api,
        planner_wake,
        anomaly_wake,
        background: std::sync::Mutex::new(Some(Background {
            flusher_stop,
            refresher,
            flusher,
            maintenance_stop,
            maintenance,
            planner_stop,
            planner,
            anomalies,
        })),
    })
}

impl Settings {
    pub(crate) fn data_dir(&self) -> &std::path::Path {
        &self.cfg.data_dir
    }
}

impl Tenant {
    /// Refreshes the forecasts and recommendations now instead of at their next interval, and
    /// scores the anomalies again from the start of their history.
    pub fn refresh_plans(&self) {
        self.planner_wake.notify_one();
        self.anomaly_wake.notify_one();
    }
}
