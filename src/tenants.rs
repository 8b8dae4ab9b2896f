//! The server's tenants: which are open, how a request reaches its own, and the HTTP API's
//! front door.
//!
//! The `default` tenant lives in the data directory itself (where a single-tenant server keeps
//! its tables), every other one in `<data-dir>/tenants/<id>/`, with its own write-ahead log,
//! Parquet files, query engine and background work: no query plan can reach another tenant's
//! tables, because its engine has none registered. Tenants open on their first request (at most
//! `--max-tenants`); those with a directory open at start, so their logs are replayed before
//! anything is acknowledged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use headroom_ingest::Signal;
use headroom_ingest::auth::{Access, DEFAULT_TENANT, is_valid_tenant};
use headroom_ingest::error::IngestError;
use headroom_ingest::ingest::Ingester;
use headroom_ingest::tenant::{BoxFuture, Tenants};
use headroom_storage::error::StoreError;
use tower::ServiceExt;

use crate::error::ServeError;
use crate::tenant::{Settings, Tenant, open_tenant};

/// Where a tenant's tables live.
pub fn tenant_root(data_dir: &Path, id: &str) -> PathBuf {
    if id == DEFAULT_TENANT {
        data_dir.to_path_buf()
    } else {
        data_dir.join("tenants").join(id)
    }
}

/// The open tenants.
pub struct Registry {
    access: Access,
    settings: Settings,
    max_tenants: usize,
    default: Arc<Tenant>,
    others: RwLock<HashMap<String, Arc<Tenant>>>,
    /// Tenants open one at a time, so two first requests of one tenant open it once.
    opening: tokio::sync::Mutex<()>,
    closed: AtomicBool,
}

impl Registry {
    /// Opens the default tenant and every tenant that has a directory.
    pub(crate) async fn open(
        settings: Settings,
        access: Access,
        max_tenants: usize,
    ) -> Result<Self, ServeError> {
        let data_dir = settings.data_dir().to_path_buf();
        let default = Arc::new(open_tenant(&settings, DEFAULT_TENANT, data_dir.clone()).await?);
        let mut others = HashMap::new();
        let dir = data_dir.join("tenants");
        let mut ids = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if entry.path().is_dir() && is_valid_tenant(&name) && name != DEFAULT_TENANT {
                        ids.push(name);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&dir, e).into()),
        }
        ids.sort();
        if ids.len() + 1 > max_tenants {
            return Err(ServeError::Config(format!(
                "{} holds {} tenants, more than --max-tenants {max_tenants}",
                data_dir.display(),
                ids.len() + 1
            )));
        }
        for id in ids {
            let tenant = open_tenant(&settings, &id, tenant_root(&data_dir, &id)).await?;
            others.insert(id, Arc::new(tenant));
        }
        Ok(Self {
            access,
            settings,
            max_tenants,
            default,
            others: RwLock::new(others),
            opening: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
        })
    }

    pub fn default_tenant(&self) -> &Arc<Tenant> {
        &self.default
    }

    pub fn access(&self) -> &Access {
        &self.access
    }

    fn lookup(&self, id: &str) -> Option<Arc<Tenant>> {
        if id == DEFAULT_TENANT {
            return Some(self.default.clone());
        }
        self.others
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// The tenant `id` (a valid id), opened on its first request.
    pub async fn get(&self, id: &str) -> Result<Arc<Tenant>, IngestError> {
        if let Some(t) = self.lookup(id) {
            return Ok(t);
        }
        let _one_at_a_time = self.opening.lock().await;
        if let Some(t) = self.lookup(id) {
            return Ok(t);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(IngestError::ShuttingDown);
        }
        let open = self.others.read().unwrap_or_else(|e| e.into_inner()).len() + 1;
        if open >= self.max_tenants {
            return Err(IngestError::TooManyTenants(self.max_tenants));
        }
        let root = tenant_root(self.settings.data_dir(), id);
        let tenant = open_tenant(&self.settings, id, root).await.map_err(|e| {
            IngestError::Store(StoreError::internal(format!(
                "cannot open tenant {id:?}: {e}"
            )))
        })?;
        let tenant = Arc::new(tenant);
        self.others
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), tenant.clone());
        Ok(tenant)
    }

    /// Every open tenant, the default first.
    pub fn all(&self) -> Vec<Arc<Tenant>> {
        let others = self.others.read().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<&String> = others.keys().collect();
        ids.sort();
        std::iter::once(self.default.clone())
            .chain(ids.into_iter().map(|id| others[id].clone()))
            .collect()
    }

    /// Opens no tenant any more; returns those open, including one that was opening.
    pub(crate) async fn close(&self) -> Vec<Arc<Tenant>> {
        let _no_tenant_opening = self.opening.lock().await;
        self.closed.store(true, Ordering::Release);
        self.all()
    }
}

impl Tenants for Registry {
    fn access(&self) -> &Access {
        &self.access
    }

    fn ingester<'a>(
        &'a self,
        tenant: &'a str,
    ) -> BoxFuture<'a, Result<Arc<Ingester>, IngestError>> {
        Box::pin(async move { self.get(tenant).await.map(|t| t.ingester.clone()) })
    }

    /// Requests refused before a tenant is known count as the default tenant's failures.
    fn refused(&self, signal: Signal) {
        self.default.ingester.count_failure(signal);
    }
}

/// The HTTP API: health checks and the console for anyone; everything else through the
/// tenant the request's credentials name, over that tenant's tables only.
pub fn api_router(tenants: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(crate::api::console::routes())
        .fallback(dispatch)
        .with_state(tenants)
}

async fn dispatch(State(tenants): State<Arc<Registry>>, req: Request) -> Response {
    let tenant = match tenants.access.tenant(req.headers()) {
        Ok(id) => tenants.get(&id).await,
        Err(e) => Err(IngestError::Auth(e)),
    };
    match tenant {
        Ok(t) => match t.api.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        },
        Err(e) => refusal(&e),
    }
}

/// The API's answer to a request that reaches no tenant.
fn refusal(e: &IngestError) -> Response {
    let status = headroom_ingest::receiver::http::http_status(e);
    let mut resp = crate::api::answer::error(status, headroom_status::report(e)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}
