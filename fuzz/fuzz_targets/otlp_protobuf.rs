//! Arbitrary bytes as an OTLP/protobuf export request of each signal: whatever prost accepts
//! must convert without panicking, and conversion only fails on a converter/schema mismatch.
#![no_main]

use headroom_ingest::convert::{Converted, logs, metrics, traces};
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

fn check<E: std::fmt::Display>(result: Result<Converted, E>) {
    match result {
        Ok(out) => assert_eq!(out.rows() as u64, out.accepted, "rows != accepted"),
        Err(e) => panic!("convert failed: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = ExportTraceServiceRequest::decode(data) {
        check(traces::convert(&req));
    }
    if let Ok(req) = ExportMetricsServiceRequest::decode(data) {
        check(metrics::convert(&req));
    }
    if let Ok(req) = ExportLogsServiceRequest::decode(data) {
        check(logs::convert(&req));
    }
});
