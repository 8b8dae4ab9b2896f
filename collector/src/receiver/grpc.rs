//! OTLP/gRPC: the three collector services from `opentelemetry-proto`, each a thin call into
//! [`Ingester`].

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

use crate::error::{ErrorClass, IngestError};
use crate::ingest::Ingester;

/// The gRPC status for an ingest error (OTLP: only UNAVAILABLE-class codes are retried).
pub fn status(e: &IngestError) -> Status {
    let msg = e.to_string();
    match e.class() {
        ErrorClass::InvalidInput | ErrorClass::UnsupportedMediaType => {
            Status::invalid_argument(msg)
        }
        ErrorClass::TooLarge => Status::resource_exhausted(msg),
        ErrorClass::Retryable => Status::unavailable(msg),
        ErrorClass::Internal => Status::internal(msg),
    }
}

#[derive(Clone)]
pub struct OtlpGrpc {
    ingester: Arc<Ingester>,
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
        let ingester = self.ingester.clone();
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
        let ingester = self.ingester.clone();
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
        let ingester = self.ingester.clone();
        let req = request.into_inner();
        let o = blocking(move || ingester.logs(&req)).await?;
        Ok(Response::new(super::logs_response(&o)))
    }
}

/// The three OTLP services, accepting gzip and zstd and messages up to `max_request_bytes`
/// (after decompression).
pub fn routes(ingester: Arc<Ingester>, max_request_bytes: usize) -> tonic::service::Routes {
    let svc = OtlpGrpc { ingester };
    let traces = TraceServiceServer::new(svc.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_request_bytes);
    let metrics = MetricsServiceServer::new(svc.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_request_bytes);
    let logs = LogsServiceServer::new(svc)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_request_bytes);
    tonic::service::Routes::new(traces)
        .add_service(metrics)
        .add_service(logs)
}
