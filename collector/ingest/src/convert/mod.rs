//! OTLP → Arrow conversion, one module per signal.
//!
//! Converters are pure functions of a decoded OTLP request: no I/O, no locks. Items that break
//! the OTLP data model (an id of the wrong length, a timestamp past year 2262) are counted as
//! rejected with a message, and the rest of the request is converted, so the receiver can answer
//! with an honest `partial_success`.

mod attrs;
pub mod logs;
pub mod metrics;
#[cfg(test)]
mod proptests;
pub mod traces;

use std::sync::Arc;

use arrow::array::{ListArray, RecordBatch, StructArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field};
use arrow::error::ArrowError;

pub use attrs::{Hot, ResourceInfo, attrs_json, write_any_value};

/// The Arrow batches built from one request, and what had to be rejected.
#[derive(Debug, Default)]
pub struct Converted {
    /// (table name, rows) for every table that received rows.
    pub batches: Vec<(&'static str, RecordBatch)>,
    /// Items (spans, data points, log records) converted.
    pub accepted: u64,
    /// Items refused, with the first reason.
    pub rejected: u64,
    pub reject_message: Option<String>,
}

impl Converted {
    fn reject(&mut self, reason: impl FnOnce() -> String) {
        self.rejected += 1;
        if self.reject_message.is_none() {
            self.reject_message = Some(reason());
        }
    }

    /// Total rows over all batches.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|(_, b)| b.num_rows()).sum()
    }
}

/// Conversion can only fail on an internal inconsistency between a converter and the schema.
#[derive(Debug, thiserror::Error)]
#[error("building Arrow batch for {table}: {source}")]
pub struct ConvertError {
    pub table: &'static str,
    #[source]
    pub source: ArrowError,
}

/// OTLP timestamps are u64 nanoseconds; Arrow's are i64. Values past 2262-04-11 do not fit.
fn nanos(v: u64) -> Option<i64> {
    i64::try_from(v).ok()
}

fn non_empty(s: &str) -> Option<&str> {
    if s.is_empty() { None } else { Some(s) }
}

/// The `scope_name` and `scope_version` columns of an instrumentation scope.
fn scope_columns(
    scope: Option<&opentelemetry_proto::tonic::common::v1::InstrumentationScope>,
) -> (Option<&str>, Option<&str>) {
    (
        scope.and_then(|s| non_empty(&s.name)),
        scope.and_then(|s| non_empty(&s.version)),
    )
}

/// A `List<Struct>` column from the struct's child arrays and the list offsets.
fn list_of_structs(
    fields: arrow::datatypes::Fields,
    children: Vec<arrow::array::ArrayRef>,
    offsets: Vec<i32>,
) -> Result<arrow::array::ArrayRef, ArrowError> {
    let structs = StructArray::try_new(fields.clone(), children, None)?;
    let field = Arc::new(Field::new("item", DataType::Struct(fields), false));
    let list = ListArray::try_new(
        field,
        OffsetBuffer::new(offsets.into()),
        Arc::new(structs),
        None,
    )?;
    Ok(Arc::new(list))
}

/// A one-span request with `attributes`, for tests.
#[cfg(test)]
pub(crate) fn one_span_request(
    attributes: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    attributes,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
