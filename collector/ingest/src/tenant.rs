//! Tenants, and who may act for them.
//!
//! A request names its tenant as Tempo, Loki and Mimir requests do, with an `X-Scope-OrgID`
//! header; without one it belongs to the `default` tenant. With bearer tokens configured
//! (`--auth-tokens-path`), every request needs `Authorization: Bearer <token>`, the token names
//! the tenant, and a header naming another tenant is refused: a token can neither be used
//! without being known nor reach past its own tenant. Tenant ids become directory names, so
//! they are limited to 1–64 ASCII letters, digits, `-` and `_`.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use crate::Signal;
use crate::error::IngestError;
use crate::ingest::Ingester;

/// The tenant of requests that name none.
pub const DEFAULT_TENANT: &str = "default";
/// The header that names a request's tenant.
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// Why a request's credentials were not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send `Authorization: Bearer <token>`")]
    MissingToken,
    #[error("invalid bearer token")]
    InvalidToken,
    #[error("this token may not act for tenant {0:?}")]
    WrongTenant(String),
    #[error("invalid tenant id {0:?} in X-Scope-OrgID: use 1 to 64 letters, digits, '-' or '_'")]
    InvalidTenant(String),
}

/// Whether `id` can name a tenant.
pub fn is_valid_tenant(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Who may act for which tenant.
#[derive(Clone, Default)]
pub struct Access {
    /// Token → tenant; `None`: no token needed, the header names the tenant.
    tokens: Option<HashMap<String, String>>,
}

/// Never prints a token.
impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("tokens", &self.tokens.as_ref().map(HashMap::len))
            .finish()
    }
}

impl Access {
    /// No tokens: the header, or the default tenant.
    pub fn open() -> Self {
        Self::default()
    }

    /// Tokens from `(token, tenant)` pairs.
    pub fn with_tokens<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            tokens: Some(
                pairs
                    .into_iter()
                    .map(|(t, id)| (t.to_owned(), id.to_owned()))
                    .collect(),
            ),
        }
    }

    /// Reads a tokens file: one `<token> <tenant>` per line; blank lines and lines starting
    /// with `#` are skipped. Errors name the file and line; tokens are never echoed.
    pub fn from_tokens_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read tokens file {}: {e}", path.display()))?;
        let mut tokens = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = || format!("{}:{}", path.display(), i + 1);
            let mut words = line.split_whitespace();
            let (Some(token), Some(tenant), None) = (words.next(), words.next(), words.next())
            else {
                return Err(format!("{}: expected `<token> <tenant>`", at()));
            };
            if token.len() < 16 {
                return Err(format!(
                    "{}: token too short ({} characters; at least 16)",
                    at(),
                    token.len()
                ));
            }
            if !is_valid_tenant(tenant) {
                return Err(format!(
                    "{}: invalid tenant id {tenant:?}: use 1 to 64 letters, digits, '-' or '_'",
                    at()
                ));
            }
            if tokens.insert(token.to_owned(), tenant.to_owned()).is_some() {
                return Err(format!("{}: the same token is listed twice", at()));
            }
        }
        if tokens.is_empty() {
            return Err(format!("tokens file {} lists no token", path.display()));
        }
        Ok(Self {
            tokens: Some(tokens),
        })
    }

    /// Whether requests need a token.
    pub fn requires_token(&self) -> bool {
        self.tokens.is_some()
    }

    /// The tenant a token acts for.
    pub fn tenant_of_token(&self, token: &str) -> Option<&str> {
        self.tokens.as_ref()?.get(token).map(String::as_str)
    }

    /// The tenant a request acts for, from its `Authorization` and `X-Scope-OrgID` headers.
    pub fn tenant(&self, headers: &http::HeaderMap) -> Result<String, AuthError> {
        let named = match headers.get(TENANT_HEADER) {
            None => None,
            Some(v) => match v.to_str() {
                Ok(id) if is_valid_tenant(id.trim()) => Some(id.trim()),
                _ => {
                    return Err(AuthError::InvalidTenant(
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    ));
                }
            },
        };
        let Some(tokens) = &self.tokens else {
            return Ok(named.unwrap_or(DEFAULT_TENANT).to_owned());
        };
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or(AuthError::MissingToken)?;
        let tenant = tokens.get(token).ok_or(AuthError::InvalidToken)?;
        match named {
            Some(id) if id != tenant => Err(AuthError::WrongTenant(id.to_owned())),
            _ => Ok(tenant.clone()),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn without_tokens_the_header_names_the_tenant() {
        let a = Access::open();
        assert_eq!(a.tenant(&headers(&[])).unwrap(), DEFAULT_TENANT);
        assert_eq!(
            a.tenant(&headers(&[("x-scope-orgid", "team-a")])).unwrap(),
            "team-a"
        );
        assert_eq!(
            a.tenant(&headers(&[("x-scope-orgid", "../etc")])),
            Err(AuthError::InvalidTenant("../etc".into()))
        );
    }

    #[test]
    fn with_tokens_the_token_names_the_tenant() {
        let a = Access::with_tokens([("a-secret-token-0001", "team-a")]);
        assert_eq!(a.tenant(&headers(&[])), Err(AuthError::MissingToken));
        assert_eq!(
            a.tenant(&headers(&[("authorization", "Basic dXNlcjpwdw==")])),
            Err(AuthError::MissingToken)
        );
        assert_eq!(
            a.tenant(&headers(&[("authorization", "Bearer nope")])),
            Err(AuthError::InvalidToken)
        );
        let ok = [("authorization", "bearer a-secret-token-0001")];
        assert_eq!(a.tenant(&headers(&ok)).unwrap(), "team-a");
        let mut h = headers(&ok);
        h.insert(TENANT_HEADER, "team-a".parse().unwrap());
        assert_eq!(a.tenant(&h).unwrap(), "team-a");
        h.insert(TENANT_HEADER, "team-b".parse().unwrap());
        assert_eq!(a.tenant(&h), Err(AuthError::WrongTenant("team-b".into())));
    }

    #[test]
    fn tokens_files_are_checked_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Access::from_tokens_file(&path)
        };
        let a = load("# ops\n\na-secret-token-0001 team-a\nb-secret-token-0002  team_b\n").unwrap();
        assert_eq!(a.tenant_of_token("b-secret-token-0002"), Some("team_b"));
        let err = load("a-secret-token-0001\n").unwrap_err();
        assert!(err.ends_with(":1: expected `<token> <tenant>`"), "{err}");
        let err = load("short team-a\n").unwrap_err();
        assert!(
            err.contains("too short") && !err.contains("short team"),
            "{err}"
        );
        let err = load("a-secret-token-0001 team/a\n").unwrap_err();
        assert!(err.contains("invalid tenant id"), "{err}");
        let err = load("a-secret-token-0001 a\na-secret-token-0001 b\n").unwrap_err();
        assert!(err.contains(":2: the same token"), "{err}");
        assert!(load("# nothing\n").unwrap_err().contains("no token"));
    }
}
