//! Batches for the storage tests, built against the schema: the columns a test names, and every
//! other column as the converter writes an absent OTLP field (NULL where the schema allows it,
//! else the type's zero). Storage sees only Arrow, so its tests need no OTLP to make rows.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, FixedSizeBinaryArray, Float64Array, Int32Array, Int64Array, ListArray,
    RecordBatch, StringArray, TimestampNanosecondArray, new_empty_array, new_null_array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, TimeUnit};

use crate::schema::{self, SPANS};

/// One span of a test batch.
#[derive(Debug, Clone)]
pub(crate) struct TestSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub service: String,
    pub name: String,
    pub start_ns: i64,
    pub end_ns: i64,
}

impl TestSpan {
    /// A span of `unknown_service` with no name, as a bare OTLP span converts.
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8], start_ns: i64, end_ns: i64) -> Self {
        Self {
            trace_id,
            span_id,
            service: "unknown_service".into(),
            name: String::new(),
            start_ns,
            end_ns,
        }
    }
}

/// A batch of `rows` rows of `table`: the `given` columns, the rest absent.
pub(crate) fn batch(table: &str, rows: usize, given: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let def = schema::table(table);
    let columns = def
        .columns
        .iter()
        .map(|c| match given.iter().find(|(name, _)| *name == c.name) {
            Some((_, array)) => array.clone(),
            None if c.nullable => new_null_array(&c.data_type, rows),
            None => zeros(&c.data_type, rows),
        })
        .collect();
    RecordBatch::try_new(def.schema(), columns).expect("test columns match the schema")
}

/// `spans` as the converter writes them: roots, kind UNSPECIFIED, status UNSET.
pub(crate) fn spans(spans: &[TestSpan]) -> RecordBatch {
    let n = spans.len();
    let time = |f: fn(&TestSpan) -> i64| -> ArrayRef {
        Arc::new(
            TimestampNanosecondArray::from_iter_values(spans.iter().map(f)).with_timezone("UTC"),
        )
    };
    let text = |f: fn(&TestSpan) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(spans.iter().map(f)))
    };
    let ids = |v: Vec<&[u8]>| -> ArrayRef {
        Arc::new(FixedSizeBinaryArray::try_from_iter(v.into_iter()).expect("ids of one width"))
    };
    batch(
        SPANS,
        n,
        vec![
            (
                "trace_id",
                ids(spans.iter().map(|s| &s.trace_id[..]).collect()),
            ),
            (
                "span_id",
                ids(spans.iter().map(|s| &s.span_id[..]).collect()),
            ),
            ("start_time", time(|s| s.start_ns)),
            ("end_time", time(|s| s.end_ns)),
            (
                "duration_ns",
                Arc::new(Int64Array::from_iter_values(
                    spans.iter().map(|s| s.end_ns - s.start_ns),
                )),
            ),
            ("service_name", text(|s| &s.service)),
            ("span_name", text(|s| &s.name)),
            ("span_kind", text(|_| "UNSPECIFIED")),
            ("status_code", text(|_| "UNSET")),
            ("is_root", Arc::new(BooleanArray::from(vec![true; n]))),
        ],
    )
}

/// `rows` values of `data_type` that are its zero: 0, false, "", no list items.
fn zeros(data_type: &DataType, rows: usize) -> ArrayRef {
    match data_type {
        DataType::Utf8 => Arc::new(StringArray::from_iter_values(std::iter::repeat_n("", rows))),
        DataType::Int64 => Arc::new(Int64Array::from(vec![0; rows])),
        DataType::Int32 => Arc::new(Int32Array::from(vec![0; rows])),
        DataType::Float64 => Arc::new(Float64Array::from(vec![0.0; rows])),
        DataType::Boolean => Arc::new(BooleanArray::from(vec![false; rows])),
        DataType::Timestamp(TimeUnit::Nanosecond, tz) => {
            Arc::new(TimestampNanosecondArray::from(vec![0; rows]).with_timezone_opt(tz.clone()))
        }
        DataType::FixedSizeBinary(width) => Arc::new(FixedSizeBinaryArray::new(
            *width,
            vec![0u8; *width as usize * rows].into(),
            None,
        )),
        DataType::List(item) => Arc::new(ListArray::new(
            item.clone(),
            OffsetBuffer::new_zeroed(rows),
            new_empty_array(item.data_type()),
            None,
        )),
        other => unreachable!("no zero for {other} in the storage tests"),
    }
}
