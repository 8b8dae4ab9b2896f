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

use arrow::array::RecordBatch;
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
