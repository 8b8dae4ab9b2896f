//! TLS on the listeners, from PEM files.
//!
//! One certificate serves every port; each listener gets its own copy of the rustls
//! configuration only to announce its ALPN protocols (`h2` for gRPC, `h2` and `http/1.1` for
//! HTTP, none for PostgreSQL). Handshakes run concurrently, off the accept loop, with a
//! deadline (`tls-listener`), so a client that connects and stalls holds up nobody. A server
//! configured for TLS never falls back to plain text: an unusable certificate stops the start.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

/// A client gets this long to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A loaded certificate chain and key.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ServerConfig>,
}

/// Accepted TCP connections, each TLS-wrapped once its handshake succeeds.
pub type TlsIncoming = tls_listener::TlsListener<TcpListener, TlsAcceptor>;

impl Tls {
    /// Reads and checks the certificate chain and key; errors name the file.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| format!("cannot read TLS certificate {}: {e}", cert_path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "no certificate in {} (expected PEM \"BEGIN CERTIFICATE\")",
                cert_path.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(key_path)
            .map_err(|e| format!("cannot read TLS private key {}: {e}", key_path.display()))?;
        let config = ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| {
            format!(
                "cannot use TLS certificate {} with key {}: {e}",
                cert_path.display(),
                key_path.display()
            )
        })?;
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The acceptor for a listener that speaks `alpn` (most preferred first).
    pub fn acceptor(&self, alpn: &[&[u8]]) -> TlsAcceptor {
        let mut config = (*self.config).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsAcceptor::from(Arc::new(config))
    }

    /// Wraps `listener`: what it yields has completed a handshake.
    pub fn incoming(&self, listener: TcpListener, alpn: &[&[u8]]) -> TlsIncoming {
        tls_listener::builder(self.acceptor(alpn))
            .handshake_timeout(HANDSHAKE_TIMEOUT)
            .listen(listener)
    }
}

/// ALPN of gRPC listeners.
pub const GRPC_ALPN: &[&[u8]] = &[b"h2"];
/// ALPN of HTTP listeners: HTTP/2 when the client offers it, else HTTP/1.1.
pub const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Serves `router` on `listener`, over TLS when `tls` is set, until `stop`; in-flight requests
/// finish first.
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Tls>,
    stop: CancellationToken,
) -> Result<(), String> {
    match tls {
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
        Some(tls) => {
            axum::serve(tls.incoming(listener, HTTP_ALPN), router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
    }
    .map_err(|e| e.to_string())
}

/// Serves a tonic router on `listener`, over TLS when `tls` is set, until `stop`. A failed
/// handshake drops that connection only (tonic skips errors of its incoming stream).
pub async fn serve_grpc<L, ResBody>(
    router: tonic::transport::server::Router<L>,
    listener: TcpListener,
    tls: Option<Tls>,
    stop: CancellationToken,
) -> Result<(), String>
where
    L: tower::Layer<tonic::service::Routes>,
    L::Service: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    <L::Service as tower::Service<http::Request<tonic::body::Body>>>::Future: Send,
    <L::Service as tower::Service<http::Request<tonic::body::Body>>>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match tls {
        None => {
            router
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop.cancelled_owned(),
                )
                .await
        }
        Some(tls) => {
            router
                .serve_with_incoming_shutdown(
                    tls.incoming(listener, GRPC_ALPN)
                        .map(|accepted| accepted.map(|(stream, _peer)| stream)),
                    stop.cancelled_owned(),
                )
                .await
        }
    }
    .map_err(|e| e.to_string())
}
