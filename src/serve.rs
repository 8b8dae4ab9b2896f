//! `headroom serve`: wires the store, the OTLP receivers and the query API together, and shuts
//! them down in order: stop accepting, finish in-flight requests, flush, exit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use headroom_analytics::QueryEngine;
use headroom_ingest::auth::DEFAULT_TENANT;
use headroom_ingest::ingest::Ingester;
use headroom_ingest::receiver;
use headroom_storage::remote::Remote;
use headroom_storage::rollup::RollupConfig;
use headroom_storage::store::{Store, StoreConfig};
use headroom_storage::wal::{SyncMode, Wal, WalConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::config::{QueryEngineKind, ServeConfig, WalSync};
use crate::tenants::Registry;
use crate::tls::{self, Tls};
use headroom_analytics::scaling::config::ScalingConfig;
use headroom_ingest::auth::Access;

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

/// A running server; the addresses are the ones actually bound (port 0 resolved).
pub struct Running {
    pub otlp_grpc_addr: SocketAddr,
    pub otlp_http_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub pg_addr: SocketAddr,
    pub keda_grpc_addr: SocketAddr,
    /// The default tenant's store and engine.
    pub store: Arc<Store>,
    pub engine: QueryEngine,
    pub tenants: Arc<Registry>,
    receivers_stop: CancellationToken,
    api_stop: CancellationToken,
    keda_server: JoinHandle<Result<(), String>>,
    receivers: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
    api_server: JoinHandle<Result<(), String>>,
    pg_server: JoinHandle<Result<(), String>>,
    shutdown_timeout: Duration,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { what, addr, source })
}

fn local(what: &'static str, l: &TcpListener) -> Result<SocketAddr, ServeError> {
    l.local_addr().map_err(|source| ServeError::Bind {
        what,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

/// Closed WAL segments (`--wal-segment-bytes` each) allowed to wait for a table's own flush;
/// beyond them, the tables holding the oldest are flushed early.
const WAL_UNRETIRED_SEGMENTS: usize = 4;

/// Flushes everything (with `force`) or what is due, then retires the WAL segments that are
/// entirely in Parquet. Blocking.
fn flush(store: &Store, wal: Option<&Wal>, force: bool) -> Result<usize, ServeError> {
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
async fn run_flusher(store: Arc<Store>, wal: Option<Arc<Wal>>, stop: CancellationToken) {
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

/// Reads the other writers' manifests every `every`, so their flushed rows show here.
async fn run_refresher(store: Arc<Store>, every: Duration, stop: CancellationToken) {
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

/// What the maintenance task needs to know.
struct Maintenance {
    /// Whether to compute the service graph's rollup (`--rollups`).
    edges: bool,
    compaction_target_bytes: u64,
    interval: Duration,
    grace: Duration,
    /// (table, retention) for tables with a limited retention.
    retention: Vec<(&'static str, Duration)>,
}

/// One round of compaction, retention and garbage collection. Blocking.
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn maintain(store: &Store, m: &Maintenance) -> Result<(), ServeError> {
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
const EDGE_HOURS_PER_STEP: usize = 4;

async fn run_maintenance(
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
async fn refresh_edges(store: &Arc<Store>, engine: &QueryEngine, stop: &CancellationToken) {
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

/// What the planner refreshes, and how often (None: never).
struct Planner {
    engine: QueryEngine,
    span: headroom_analytics::forecast::live::Span,
    forecast_every: Option<Duration>,
    scaling_every: Option<Duration>,
    learn_every_seconds: u64,
    scaling: ScalingConfig,
    kpi: headroom_analytics::KpiSettings,
    /// Refresh everything now (e.g. after a backfill), whatever the schedule says.
    wake: Arc<tokio::sync::Notify>,
}

/// Refreshes the `forecasts` table every forecast interval and the recommendations (from the
/// latest forecasts and the observed load) every scaling interval, both the first time right
/// away.
async fn run_planner(p: Planner, stop: CancellationToken) {
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

/// Scores every service's KPI series each `every`, the first time right away over the last
/// `history_ns`; a wake starts over (history written after the start, as the demo's backfill,
/// is older than what was scored).
async fn run_anomalies(
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

/// What every tenant is opened with: the configuration, read and checked once.
pub(crate) struct Settings {
    cfg: ServeConfig,
    kpi: headroom_analytics::KpiSettings,
    scaling: ScalingConfig,
    /// `--storage`, as this writer sees it; tenants other than the default one keep their
    /// files under `tenants/<id>/` in it.
    remote: Option<Arc<Remote>>,
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
    planner_wake: Arc<tokio::sync::Notify>,
    anomaly_wake: Arc<tokio::sync::Notify>,
    /// Taken once, by the shutdown.
    background: std::sync::Mutex<Option<Background>>,
}

struct Background {
    flusher_stop: CancellationToken,
    flusher: JoinHandle<()>,
    /// Reads other writers' manifests (with `--storage`); stopped with the flusher.
    refresher: Option<JoinHandle<()>>,
    maintenance_stop: CancellationToken,
    maintenance: JoinHandle<()>,
    planner_stop: CancellationToken,
    planner: JoinHandle<()>,
    anomalies: JoinHandle<()>,
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
    let api = api::http::router(api::http::ApiState {
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

/// `--storage` as a URL: an absolute or relative path becomes a `file://` one.
pub fn storage_url(storage: &str) -> Result<String, ServeError> {
    if storage.contains("://") {
        return Ok(storage.to_owned());
    }
    let dir = std::path::absolute(storage)
        .map_err(|e| ServeError::Config(format!("--storage {storage}: {e}")))?;
    Ok(url::Url::from_directory_path(&dir)
        .map_err(|()| ServeError::Config(format!("--storage {storage}: not a usable path")))?
        .to_string())
}

/// `--storage` as this server's writer sees it: the writer id is `--writer-id`, or the one
/// kept in the data directory, or a new one (the store keeps it there once it opens).
fn remote(cfg: &ServeConfig) -> Result<Option<Arc<Remote>>, ServeError> {
    if cfg.storage.is_empty() {
        return Ok(None);
    }
    let url = storage_url(&cfg.storage)?;
    let (store, base, prefix) = headroom_storage::remote::connect(&url, &cfg.storage_options)
        .map_err(|e| ServeError::Config(e.to_string()))?;
    let writer = if cfg.writer_id.is_empty() {
        match std::fs::read_to_string(cfg.data_dir.join("writer-id")) {
            Ok(id) => id.trim().to_owned(),
            Err(_) => ulid::Ulid::new().to_string().to_lowercase(),
        }
    } else {
        cfg.writer_id.clone()
    };
    Ok(Some(Arc::new(Remote::new(store, base, prefix, &writer)?)))
}

/// Binds every listener and starts serving.
pub async fn start(cfg: &ServeConfig) -> Result<Running, ServeError> {
    cfg.validate().map_err(ServeError::Config)?;
    // Read before anything is opened: a broken SLO or tokens file stops the start.
    let settings = Settings {
        kpi: cfg.kpi_settings().map_err(ServeError::Config)?,
        scaling: cfg.scaling_config().map_err(ServeError::Config)?,
        remote: remote(cfg)?,
        cfg: cfg.clone(),
    };
    let access = match &cfg.auth_tokens_path {
        Some(path) => Access::from_tokens_file(path).map_err(ServeError::Config)?,
        None => Access::open(),
    };
    let tls = match (&cfg.tls_cert_path, &cfg.tls_key_path) {
        (Some(cert), Some(key)) => Some(Tls::load(cert, key).map_err(ServeError::Config)?),
        _ => None,
    };
    let pg_tls = match (&cfg.pg_tls_cert_path, &cfg.pg_tls_key_path) {
        (Some(cert), Some(key)) => Some(Tls::load(cert, key).map_err(ServeError::Config)?),
        _ => tls.clone(),
    }
    .map(|t| t.acceptor(&[]));
    let pg_login =
        (!cfg.pg_password.is_empty()).then(|| (cfg.pg_user.clone(), cfg.pg_password.clone()));
    if pg_login.is_none() && !access.requires_token() && !cfg.pg_addr.ip().is_loopback() {
        tracing::warn!(pg_addr = %cfg.pg_addr, "PostgreSQL clients log in without a password; set --pg-password");
    }
    if access.requires_token() {
        if pg_login.is_some() {
            tracing::warn!(
                "--pg-password is not used: with --auth-tokens-path, PostgreSQL clients log in as their tenant with a token"
            );
        }
        let exposed = [
            cfg.otlp_grpc_addr,
            cfg.otlp_http_addr,
            cfg.http_addr,
            cfg.pg_addr,
        ]
        .iter()
        .any(|a| !a.ip().is_loopback());
        if tls.is_none() && exposed {
            tracing::warn!(
                "bearer tokens cross the network in clear text; set --tls-cert-path and --tls-key-path"
            );
        }
    }
    let tenants = Arc::new(Registry::open(settings, access, cfg.max_tenants).await?);
    let default = tenants.default_tenant().clone();
    let max_request_bytes = cfg.max_request_bytes as usize;

    let grpc_listener = bind("OTLP/gRPC", cfg.otlp_grpc_addr).await?;
    let http_listener = bind("OTLP/HTTP", cfg.otlp_http_addr).await?;
    let api_listener = bind("HTTP API", cfg.http_addr).await?;
    let pg_listener = bind("PostgreSQL", cfg.pg_addr).await?;
    let keda_listener = bind("KEDA external scaler", cfg.keda_grpc_addr).await?;
    let otlp_grpc_addr = local("OTLP/gRPC", &grpc_listener)?;
    let otlp_http_addr = local("OTLP/HTTP", &http_listener)?;
    let http_addr = local("HTTP API", &api_listener)?;
    let pg_addr = local("PostgreSQL", &pg_listener)?;
    let keda_grpc_addr = local("KEDA external scaler", &keda_listener)?;

    let receivers_stop = CancellationToken::new();
    let api_stop = CancellationToken::new();

    let grpc_routes = receiver::grpc::routes(tenants.clone(), max_request_bytes);
    let grpc_router = tonic::transport::Server::builder()
        // OTLP requests are large (hundreds of KiB); HTTP/2's default 64 KiB windows would
        // make every request wait for window updates.
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .layer(tower::util::MapResponseLayer::new(
            receiver::grpc::otlp_status_codes::<tonic::body::Body>,
        ))
        .add_routes(grpc_routes);
    let grpc = tokio::spawn(tls::serve_grpc(
        grpc_router,
        grpc_listener,
        tls.clone(),
        receivers_stop.clone(),
    ));

    let otlp_http = receiver::http::router(tenants.clone(), max_request_bytes);
    let http = tokio::spawn(tls::serve_http(
        http_listener,
        otlp_http,
        tls.clone(),
        receivers_stop.clone(),
    ));

    let api_server = tokio::spawn(tls::serve_http(
        api_listener,
        crate::tenants::api_router(tenants.clone()),
        tls.clone(),
        api_stop.clone(),
    ));

    let pg_server = tokio::spawn(api::pg::serve(
        pg_listener,
        Arc::new(api::pg::PgHandlers::new(tenants.clone(), pg_login)),
        pg_tls,
        api_stop.clone(),
    ));

    let scaler = api::keda::Scaler::server(
        default.engine.recommendations().clone(),
        cfg.recommendation_max_age_ns(),
        api_stop.clone(),
    );
    let keda_server = tokio::spawn(tls::serve_grpc(
        tonic::transport::Server::builder().add_service(scaler),
        keda_listener,
        tls.clone(),
        api_stop.clone(),
    ));

    tracing::info!(%otlp_grpc_addr, %otlp_http_addr, %http_addr, %pg_addr, %keda_grpc_addr, data_dir = %default.store.root().display(), "headroom serving");
    Ok(Running {
        otlp_grpc_addr,
        otlp_http_addr,
        http_addr,
        pg_addr,
        keda_grpc_addr,
        store: default.store.clone(),
        engine: default.engine.clone(),
        tenants,
        receivers_stop,
        api_stop,
        keda_server,
        receivers: vec![("OTLP/gRPC", grpc), ("OTLP/HTTP", http)],
        api_server,
        pg_server,
        shutdown_timeout: Duration::from_secs_f64(cfg.shutdown_timeout_seconds),
    })
}

impl Running {
    /// The default tenant's ingester.
    pub fn ingester(&self) -> &Arc<Ingester> {
        &self.tenants.default_tenant().ingester
    }

    /// Refreshes every tenant's forecasts and recommendations now instead of at their next
    /// interval, and scores their anomalies again from the start of their history.
    pub fn refresh_plans(&self) {
        for t in self.tenants.all() {
            t.refresh_plans();
        }
    }

    /// The line scripts read to find the ports.
    pub fn ready_line(&self) -> String {
        format!(
            "headroom ready otlp_grpc={} otlp_http={} http={} pg={} keda_grpc={}",
            self.otlp_grpc_addr,
            self.otlp_http_addr,
            self.http_addr,
            self.pg_addr,
            self.keda_grpc_addr
        )
    }

    /// Stops receivers, lets in-flight requests finish (within the configured deadline),
    /// flushes everything every tenant buffered to Parquet and stops the query API. The flush
    /// always runs, even when draining the receivers failed or ran out of time.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let deadline = self.shutdown_timeout;
        // No tenant opens from here on; requests that arrive are refused as retryable.
        let tenants = self.tenants.close().await;
        for t in &tenants {
            t.ingester.stop_accepting();
        }
        self.receivers_stop.cancel();
        let drain = async {
            for (what, handle) in self.receivers {
                match handle.await {
                    Ok(Ok(())) => {}
                    Ok(Err(reason)) => {
                        tracing::error!(what, reason, "receiver failed while stopping")
                    }
                    Err(e) => tracing::error!(what, error = %e, "receiver task failed"),
                }
            }
        };
        let drained = tokio::time::timeout(deadline, drain).await.is_ok();
        if !drained {
            tracing::warn!(
                ?deadline,
                "in-flight requests did not finish in time; flushing what was acknowledged"
            );
        }
        let mut planners = Vec::new();
        let mut flush_error = None;
        for t in &tenants {
            let Some(bg) = t.background.lock().ok().and_then(|mut b| b.take()) else {
                continue;
            };
            bg.flusher_stop.cancel();
            let _ = bg.flusher.await;
            if let Some(refresher) = bg.refresher {
                let _ = refresher.await;
            }
            // A compaction in progress finishes (it is bounded); the next round is not started.
            bg.maintenance_stop.cancel();
            let _ = bg.maintenance.await;
            let store = t.store.clone();
            let wal = t.ingester.wal().cloned();
            let flushed = tokio::task::spawn_blocking(move || {
                // No commit can start after this; the flush then covers the whole log.
                if let Some(wal) = &wal {
                    wal.close();
                }
                flush(&store, wal.as_deref(), true)
            })
            .await
            .map_err(|e| ServeError::Server {
                what: "flush",
                reason: e.to_string(),
            });
            match flushed {
                Ok(Ok(rows)) => {
                    tracing::info!(tenant = t.id, rows, "flushed buffered rows on shutdown")
                }
                // Every tenant is flushed even when one fails; the first error is returned.
                Ok(Err(e)) | Err(e) => {
                    tracing::error!(tenant = t.id, error = %e, "flush on shutdown failed");
                    flush_error.get_or_insert(e);
                }
            }
            planners.push((bg.planner_stop, bg.planner, bg.anomalies));
        }
        // A refresh in progress is dropped; the published forecasts and recommendations stay
        // as they were.
        for (stop, planner, anomalies) in planners {
            stop.cancel();
            let _ = planner.await;
            let _ = anomalies.await;
        }
        self.api_stop.cancel();
        // One deadline for both query servers; a server still busy after it is stopped, so
        // that no query is left reading the files deleted below.
        let servers_deadline = tokio::time::Instant::now() + deadline;
        let mut queries_done = true;
        for (what, mut server) in [
            ("HTTP API", self.api_server),
            ("PostgreSQL", self.pg_server),
            ("KEDA external scaler", self.keda_server),
        ] {
            match tokio::time::timeout_at(servers_deadline, &mut server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(reason))) => {
                    tracing::error!(what, reason, "server failed while stopping")
                }
                Ok(Err(e)) => tracing::error!(what, error = %e, "server task failed"),
                Err(_) => {
                    tracing::warn!(
                        what,
                        ?deadline,
                        "queries still running at the deadline; stopping them"
                    );
                    server.abort();
                    let _ = server.await;
                    queries_done = false;
                }
            }
        }
        for t in &tenants {
            t.engine.close();
            // Once no query can be reading them any more. Otherwise the next start removes
            // the files compaction replaced, and retention the expired ones.
            if queries_done {
                let store = t.store.clone();
                let deleted =
                    tokio::task::spawn_blocking(move || store.collect_garbage(Duration::ZERO))
                        .await
                        .unwrap_or(0);
                if deleted > 0 {
                    tracing::info!(
                        tenant = t.id,
                        files = deleted,
                        "deleted files replaced by compaction"
                    );
                }
            }
        }
        if let Some(e) = flush_error {
            return Err(e);
        }
        if drained {
            Ok(())
        } else {
            Err(ServeError::ShutdownTimeout(deadline))
        }
    }
}
