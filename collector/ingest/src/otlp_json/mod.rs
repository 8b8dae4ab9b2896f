//! Hand-written OTLP/JSON decoding (and the two tiny response encoders) for the
//! OTLP/HTTP receiver's `application/json` path.
//!
//! Why not `opentelemetry-proto`'s `with-serde` feature? Its serde mapping silently
//! drops data on several inputs the OTLP spec calls valid (snake_case keys, 64-bit
//! integers sent as JSON numbers, enum names, `"NaN"`/`"Infinity"` doubles, URL-safe
//! base64, …). A receiver must never lose data without saying so, so this module walks a
//! [`serde_json::Value`] by hand and builds the prost types from
//! `opentelemetry_proto::tonic`, following
//! <https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding>:
//!
//! - keys are lowerCamelCase, the original snake_case proto names are accepted too, and
//!   unknown keys are ignored; an omitted field or `null` means the default value;
//! - trace/span ids are case-insensitive hex (not base64); their length is *not* checked
//!   here (the converter rejects bad ids with a partial success);
//! - integers accept a JSON number or a decimal string, doubles accept numbers, numeric
//!   strings and `"NaN"`, `"Infinity"`, `"-Infinity"`; enums accept the number or the
//!   enum value name;
//! - anything malformed is a [`JsonError`] naming the JSON path of the problem — never a
//!   silently defaulted field. A metric without any data field is kept with
//!   `data: None` so the converter can count it as rejected.
//!
//! Recursion is bounded: `serde_json` refuses documents nested deeper than 128 levels,
//! and [`AnyValue`] nesting deeper than [`MAX_ANY_VALUE_DEPTH`] is rejected.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde_json::{Map, Value};

use crate::Signal;

mod common;
mod fields;
mod logs;
mod metrics;
mod path;
mod traces;

use fields::*;
use logs::*;
use metrics::*;
use path::*;
use traces::*;

/// Deepest accepted nesting of [`AnyValue`]s (array / kvlist values inside each other).
/// A top-level attribute value or log body is level 1.
pub const MAX_ANY_VALUE_DEPTH: usize = 64;

/// A malformed OTLP/JSON request: where (`resourceSpans[0].scopeSpans[1].spans[3].traceId`,
/// or `$` for the document itself) and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct JsonError {
    pub path: String,
    pub reason: String,
}

type Result<T> = std::result::Result<T, JsonError>;

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`.
pub fn decode_traces(body: &[u8]) -> Result<ExportTraceServiceRequest> {
    let root = parse(body)?;
    let o = Obj::new(&root, &ROOT)?;
    Ok(ExportTraceServiceRequest {
        resource_spans: o.list("resourceSpans", "resource_spans", resource_spans)?,
    })
}

/// Decodes an OTLP/JSON `ExportMetricsServiceRequest`.
pub fn decode_metrics(body: &[u8]) -> Result<ExportMetricsServiceRequest> {
    let root = parse(body)?;
    let o = Obj::new(&root, &ROOT)?;
    Ok(ExportMetricsServiceRequest {
        resource_metrics: o.list("resourceMetrics", "resource_metrics", resource_metrics)?,
    })
}

/// Decodes an OTLP/JSON `ExportLogsServiceRequest`.
pub fn decode_logs(body: &[u8]) -> Result<ExportLogsServiceRequest> {
    let root = parse(body)?;
    let o = Obj::new(&root, &ROOT)?;
    Ok(ExportLogsServiceRequest {
        resource_logs: o.list("resourceLogs", "resource_logs", resource_logs)?,
    })
}

/// OTLP/JSON body for a success response: `{}` when nothing was rejected, else
/// `{"partialSuccess":{"rejectedSpans":"3","errorMessage":"..."}}` (rejectedDataPoints /
/// rejectedLogRecords for the other signals; the count as a JSON string as the spec prints
/// int64).
///
/// As in the proto3 JSON mapping, default-valued fields are omitted, so `rejected == 0`
/// with a non-empty `message` (a warning, which the spec allows) yields
/// `{"partialSuccess":{"errorMessage":"..."}}`.
pub fn encode_partial_success(signal: Signal, rejected: i64, message: &str) -> Vec<u8> {
    let mut root = Map::new();
    if rejected != 0 || !message.is_empty() {
        let key = match signal {
            Signal::Traces => "rejectedSpans",
            Signal::Metrics => "rejectedDataPoints",
            Signal::Logs => "rejectedLogRecords",
        };
        let mut partial = Map::new();
        if rejected != 0 {
            partial.insert(key.to_owned(), Value::String(rejected.to_string()));
        }
        if !message.is_empty() {
            partial.insert("errorMessage".to_owned(), Value::String(message.to_owned()));
        }
        root.insert("partialSuccess".to_owned(), Value::Object(partial));
    }
    Value::Object(root).to_string().into_bytes()
}

/// OTLP/JSON form of a google.rpc.Status: `{"code":3,"message":"..."}`.
pub fn encode_status(code: i32, message: &str) -> Vec<u8> {
    let mut root = Map::new();
    root.insert("code".to_owned(), Value::from(code));
    root.insert("message".to_owned(), Value::String(message.to_owned()));
    Value::Object(root).to_string().into_bytes()
}

#[cfg(test)]
mod tests;
