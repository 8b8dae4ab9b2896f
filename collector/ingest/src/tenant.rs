//! What the receivers need of the server's tenants: who may act for which one, and the
//! ingester of each. The server implements [`Tenants`]; the receivers only see the trait.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::Signal;
use crate::auth::Access;
use crate::error::IngestError;
use crate::ingest::Ingester;

/// A future the receivers await, boxed so that [`Tenants`] can be a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the receivers need of the server's tenants.
pub trait Tenants: Send + Sync + 'static {
    /// Who may act for which tenant.
    fn access(&self) -> &Access;
    /// The ingester of `tenant` (a valid id), opening the tenant on its first request.
    fn ingester<'a>(&'a self, tenant: &'a str)
    -> BoxFuture<'a, Result<Arc<Ingester>, IngestError>>;
    /// Counts a request refused before it reached a tenant.
    fn refused(&self, signal: Signal);
}

/// The ingester a request's headers lead to, or why there is none.
pub async fn ingester_for(
    tenants: &dyn Tenants,
    headers: &http::HeaderMap,
    signal: Signal,
) -> Result<Arc<Ingester>, IngestError> {
    let tenant = tenants
        .access()
        .tenant(headers)
        .inspect_err(|_| tenants.refused(signal))?;
    tenants
        .ingester(&tenant)
        .await
        .inspect_err(|_| tenants.refused(signal))
}
