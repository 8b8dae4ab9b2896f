//! OTLP receivers: thin protocol adapters over [`crate::ingest::Ingester`].

pub mod grpc;
pub mod http;

use opentelemetry_proto::tonic::collector::{
    logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceResponse},
    metrics::v1::{ExportMetricsPartialSuccess, ExportMetricsServiceResponse},
    trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse},
};

use crate::ingest::Outcome;

fn message(o: &Outcome) -> String {
    o.message.clone().unwrap_or_default()
}

/// The OTLP answer to an accepted request: `partial_success` only when items were rejected.
pub fn trace_response(o: &Outcome) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: (o.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: o.rejected as i64,
            error_message: message(o),
        }),
    }
}

pub fn metrics_response(o: &Outcome) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: (o.rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: o.rejected as i64,
            error_message: message(o),
        }),
    }
}

pub fn logs_response(o: &Outcome) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: (o.rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: o.rejected as i64,
            error_message: message(o),
        }),
    }
}
