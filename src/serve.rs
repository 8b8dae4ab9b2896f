//! `headroom serve`: wires the store, the OTLP receivers and the query API together, and shuts
//! them down in order: stop accepting, finish in-flight requests, flush, exit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use headroom_analytics::QueryEngine;
use headroom_ingest::ingest::Ingester;
use headroom_ingest::receiver;
use headroom_storage::remote::Remote;
use headroom_storage::store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::config::ServeConfig;
use crate::error::ServeError;
use crate::jobs::flush::flush;
use crate::tenant::Settings;
use crate::tenants::Registry;
use crate::tls::{self, Tls};
use headroom_ingest::auth::Access;

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
