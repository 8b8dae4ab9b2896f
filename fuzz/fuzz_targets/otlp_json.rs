//! Arbitrary bytes as an OTLP/JSON export request of each signal: the decoder must return a
//! request or an error (never panic), and a decoded request must convert.
#![no_main]

use headroom_ingest::convert::{Converted, logs, metrics, traces};
use headroom_ingest::otlp_json;
use libfuzzer_sys::fuzz_target;

fn check<E: std::fmt::Display>(result: Result<Converted, E>) {
    match result {
        Ok(out) => assert_eq!(out.rows() as u64, out.accepted, "rows != accepted"),
        Err(e) => panic!("convert failed: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = otlp_json::decode_traces(data) {
        check(traces::convert(&req));
    }
    if let Ok(req) = otlp_json::decode_metrics(data) {
        check(metrics::convert(&req));
    }
    if let Ok(req) = otlp_json::decode_logs(data) {
        check(logs::convert(&req));
    }
});
