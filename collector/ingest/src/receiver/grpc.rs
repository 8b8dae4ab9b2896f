//! OTLP/gRPC: the three collector services from `opentelemetry-proto`, each a thin call into
//! the [`Ingester`] of the tenant the request's metadata names, checked before the message is
//! decoded.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::{
    logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
        logs_service_server::{LogsService, LogsServiceServer},
    },
    metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_server::{MetricsService, MetricsServiceServer},
    },
    trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::Signal;
use headroom_status::ErrorClass;

use crate::error::IngestError;
use crate::ingest::Ingester;
use crate::tenant::Tenants;

/// How long a throttled client should wait before retrying.
pub const RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// The gRPC status for an ingest error: its class's code, with RetryInfo when the client
/// should send the request again after [`RETRY_DELAY`].
pub fn status(e: &IngestError) -> Status {
    let msg = headroom_status::report(e);
    match e.class() {
        ErrorClass::Throttled => {
            use tonic_types::{ErrorDetails, StatusExt};
            Status::with_error_details(
                ErrorClass::Throttled.grpc_code(),
                msg,
                ErrorDetails::with_retry_info(Some(RETRY_DELAY)),
            )
        }
        class => Status::new(class.grpc_code(), msg),
    }
}

#[derive(Clone)]
pub struct OtlpGrpc {
    tenants: Arc<dyn Tenants>,
}

/// The tenant [`CheckCredentials`] found for a request.
#[derive(Clone)]
struct TenantId(String);

/// Checks a request's credentials before its message is decoded, so a refused client costs no
/// decoding, and notes its tenant for the service method.
#[derive(Clone)]
struct CheckCredentials {
    tenants: Arc<dyn Tenants>,
    signal: Signal,
}

impl tonic::service::Interceptor for CheckCredentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let tenant = self
            .tenants
            .access()
            .tenant(request.metadata().as_ref())
            .map_err(|e| {
                self.tenants.refused(self.signal);
                status(&IngestError::Auth(e))
            })?;
        request.extensions_mut().insert(TenantId(tenant));
        Ok(request)
    }
}

impl OtlpGrpc {
    /// The ingester of the tenant [`CheckCredentials`] found.
    async fn ingester<T>(
        &self,
        request: &Request<T>,
        signal: Signal,
    ) -> Result<Arc<Ingester>, Status> {
        let Some(TenantId(tenant)) = request.extensions().get::<TenantId>() else {
            return Err(Status::internal("request reached a service unchecked"));
        };
        self.tenants.ingester(tenant).await.map_err(|e| {
            self.tenants.refused(signal);
            status(&e)
        })
    }
}

/// Runs the CPU-heavy conversion off the async worker so slow requests don't stall others.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IngestError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| status(&e)),
        Err(e) => Err(Status::internal(format!("ingest task failed: {e}"))),
    }
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let ingester = self.ingester(&request, Signal::Traces).await?;
        let req = request.into_inner();
        let o = blocking(move || ingester.traces(&req)).await?;
        Ok(Response::new(super::trace_response(&o)))
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let ingester = self.ingester(&request, Signal::Metrics).await?;
        let req = request.into_inner();
        let o = blocking(move || ingester.metrics(&req)).await?;
        Ok(Response::new(super::metrics_response(&o)))
    }
}

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let ingester = self.ingester(&request, Signal::Logs).await?;
        let req = request.into_inner();
        let o = blocking(move || ingester.logs(&req)).await?;
        Ok(Response::new(super::logs_response(&o)))
    }
}

/// The three OTLP services, accepting gzip and zstd and messages up to `max_request_bytes`
/// (after decompression).
pub fn routes(tenants: Arc<dyn Tenants>, max_request_bytes: usize) -> tonic::service::Routes {
    let svc = OtlpGrpc {
        tenants: tenants.clone(),
    };
    macro_rules! otlp_server {
        ($server:ident, $signal:expr) => {
            tonic::service::interceptor::InterceptedService::new(
                $server::new(svc.clone())
                    .accept_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Zstd)
                    .send_compressed(CompressionEncoding::Gzip)
                    .max_decoding_message_size(max_request_bytes),
                CheckCredentials {
                    tenants: tenants.clone(),
                    signal: $signal,
                },
            )
        };
    }
    let traces = otlp_server!(TraceServiceServer, Signal::Traces);
    let metrics = otlp_server!(MetricsServiceServer, Signal::Metrics);
    let logs = otlp_server!(LogsServiceServer, Signal::Logs);
    tonic::service::Routes::new(traces)
        .add_service(metrics)
        .add_service(logs)
}

/// Maps the statuses tonic answers by itself, before a request reaches [`OtlpGrpc`], to the
/// codes OTLP prescribes: a message over the size limit is `OUT_OF_RANGE` in tonic, which OTLP
/// clients retry forever, so it becomes `RESOURCE_EXHAUSTED` (not retried without RetryInfo);
/// a payload that fails to decode is `INTERNAL` in tonic and becomes `INVALID_ARGUMENT`.
///
/// Those errors are sent as trailers-only responses, so the status is in the headers.
pub fn otlp_status_codes<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    // grpc-message is percent-encoded; spaces are all these checks need decoded.
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .replace("%20", " ");
    let mapped = match code {
        Some(c)
            if c == tonic::Code::OutOfRange as i32
                && message.contains("message length too large") =>
        {
            Some(tonic::Code::ResourceExhausted)
        }
        Some(c) if c == tonic::Code::Internal as i32 && message.contains("failed to decode") => {
            Some(tonic::Code::InvalidArgument)
        }
        _ => None,
    };
    if let Some(code) = mapped {
        headers.insert("grpc-status", http::HeaderValue::from(code as i32));
    }
    response
}
