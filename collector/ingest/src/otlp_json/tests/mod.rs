//! The decoder against hand-written documents: whole requests of each signal, and every
//! field rule of the JSON mapping.

#![allow(unused_imports)]

use std::fmt::Write as _;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{
    LogRecord, LogRecordFlags, ResourceLogs, ScopeLogs, SeverityNumber,
};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, DataPointFlags, Exemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, exemplar,
    exponential_histogram_data_point, metric, number_data_point, summary_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, SpanFlags, Status, span, status,
};
use serde_json::{Map, Value};

use super::*;
use any_value::Value as V;
use serde_json::json;

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(V::StringValue(v.to_owned())),
    }
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value,
        key_strindex: 0,
    }
}

fn body(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn trace_err(v: Value) -> JsonError {
    decode_traces(&body(v)).expect_err("expected a decode error")
}

/// One span wrapped in the resourceSpans/scopeSpans envelope.
fn one_span(span: Value) -> Value {
    json!({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
}

fn decoded_span(span: Value) -> Span {
    let req = decode_traces(&body(one_span(span))).expect("decode");
    req.resource_spans[0].scope_spans[0].spans[0].clone()
}

/// One metric wrapped in the resourceMetrics/scopeMetrics envelope.
fn one_metric(metric: Value) -> Value {
    json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [metric]}]}]})
}

fn decoded_metric(metric: Value) -> Metric {
    let req = decode_metrics(&body(one_metric(metric))).expect("decode");
    req.resource_metrics[0].scope_metrics[0].metrics[0].clone()
}

fn one_log(record: Value) -> Value {
    json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]})
}

mod fields;
mod requests;
