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

use crate::Signal;

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

// ---------------------------------------------------------------------------------------
// JSON paths (built on the stack, rendered only on error)
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Seg {
    Root,
    Key(&'static str),
    Index(usize),
}

#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg,
}

const ROOT: Path<'static> = Path {
    parent: None,
    seg: Seg::Root,
};

impl Path<'_> {
    fn key(&self, key: &'static str) -> Path<'_> {
        Path {
            parent: Some(self),
            seg: Seg::Key(key),
        }
    }

    fn index(&self, index: usize) -> Path<'_> {
        Path {
            parent: Some(self),
            seg: Seg::Index(index),
        }
    }

    fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut cur = Some(self);
        while let Some(p) = cur {
            segs.push(p.seg);
            cur = p.parent;
        }
        let mut out = String::new();
        for seg in segs.into_iter().rev() {
            match seg {
                Seg::Root => {}
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
            }
        }
        if out.is_empty() { "$".to_owned() } else { out }
    }

    fn err(&self, reason: impl Into<String>) -> JsonError {
        JsonError {
            path: self.render(),
            reason: reason.into(),
        }
    }

    fn expected(&self, what: &str, got: &Value) -> JsonError {
        self.err(format!("expected {what}, got {}", kind(got)))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A string quoted for an error message, shortened so hostile input can't blow up logs.
fn quoted(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}…", &s[..end])
}

fn parse(body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body).map_err(|e| ROOT.err(format!("invalid JSON: {e}")))
}

// ---------------------------------------------------------------------------------------
// Object field access
// ---------------------------------------------------------------------------------------

/// A JSON object being decoded, with its path.
struct Obj<'v, 'p> {
    map: &'v Map<String, Value>,
    path: &'p Path<'p>,
}

impl<'v, 'p> Obj<'v, 'p> {
    fn new(v: &'v Value, path: &'p Path<'p>) -> Result<Self> {
        match v {
            Value::Object(map) => Ok(Self { map, path }),
            other => Err(path.expected("an object", other)),
        }
    }

    /// The field's value under its camelCase or snake_case name; `null` counts as absent.
    fn raw(&self, camel: &str, snake: &str) -> Option<&'v Value> {
        let get = |k: &str| self.map.get(k).filter(|v| !v.is_null());
        get(camel).or_else(|| if snake == camel { None } else { get(snake) })
    }

    fn opt<T>(
        &self,
        camel: &'static str,
        snake: &'static str,
        f: impl FnOnce(&Value, &Path<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        match self.raw(camel, snake) {
            Some(v) => f(v, &self.path.key(camel)).map(Some),
            None => Ok(None),
        }
    }

    fn get<T: Default>(
        &self,
        camel: &'static str,
        snake: &'static str,
        f: impl FnOnce(&Value, &Path<'_>) -> Result<T>,
    ) -> Result<T> {
        Ok(self.opt(camel, snake, f)?.unwrap_or_default())
    }

    fn list<T>(
        &self,
        camel: &'static str,
        snake: &'static str,
        f: impl Fn(&Value, &Path<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.get(camel, snake, |v, p| list(v, p, f))
    }

    fn string(&self, camel: &'static str, snake: &'static str) -> Result<String> {
        self.get(camel, snake, string)
    }

    fn int<T: TryFrom<i128> + Default>(
        &self,
        camel: &'static str,
        snake: &'static str,
    ) -> Result<T> {
        self.get(camel, snake, int::<T>)
    }

    fn double(&self, camel: &'static str, snake: &'static str) -> Result<f64> {
        self.get(camel, snake, double)
    }

    fn opt_double(&self, camel: &'static str, snake: &'static str) -> Result<Option<f64>> {
        self.opt(camel, snake, double)
    }

    fn hex(&self, camel: &'static str, snake: &'static str) -> Result<Vec<u8>> {
        self.get(camel, snake, hex_bytes)
    }

    fn boolean(&self, camel: &'static str, snake: &'static str) -> Result<bool> {
        self.get(camel, snake, boolean)
    }

    /// An int/enum field that also accepts the enum value names `from_name` knows.
    fn named<T: TryFrom<i128> + Default>(
        &self,
        camel: &'static str,
        snake: &'static str,
        type_name: &'static str,
        from_name: fn(&str) -> Option<i128>,
    ) -> Result<T> {
        self.get(camel, snake, |v, p| named_int(v, p, type_name, from_name))
    }

    fn attributes(&self, camel: &'static str, snake: &'static str) -> Result<Vec<KeyValue>> {
        self.list(camel, snake, |v, p| key_value(v, p, 1))
    }
}

// ---------------------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------------------

fn list<T>(
    v: &Value,
    path: &Path<'_>,
    f: impl Fn(&Value, &Path<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let Value::Array(items) = v else {
        return Err(path.expected("an array", v));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| f(item, &path.index(i)))
        .collect()
}

fn string(v: &Value, path: &Path<'_>) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(path.expected("a string", other)),
    }
}

fn boolean(v: &Value, path: &Path<'_>) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => Err(path.expected("a boolean", other)),
    }
}

/// An integral f64 as i128, if it is one (and fits comfortably).
fn integral(f: f64) -> Option<i128> {
    // 2^126: well inside i128 and far outside every proto integer type.
    const LIMIT: f64 = 85_070_591_730_234_615_865_843_651_857_942_052_864.0;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < LIMIT).then_some(f as i128)
}

/// Any JSON integer: a number or a decimal string (exponent forms like `1e3` accepted
/// when they denote an integer).
fn integer(v: &Value, path: &Path<'_>) -> Result<i128> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i.into())
            } else if let Some(u) = n.as_u64() {
                Ok(u.into())
            } else {
                n.as_f64()
                    .and_then(integral)
                    .ok_or_else(|| path.err(format!("{n} is not an integer")))
            }
        }
        Value::String(s) => s
            .parse::<i128>()
            .ok()
            .or_else(|| s.parse::<f64>().ok().and_then(integral))
            .ok_or_else(|| path.err(format!("{} is not an integer", quoted(s)))),
        other => Err(path.expected("a string or number", other)),
    }
}

fn int<T: TryFrom<i128>>(v: &Value, path: &Path<'_>) -> Result<T> {
    let i = integer(v, path)?;
    T::try_from(i).map_err(|_| {
        path.err(format!(
            "{i} is out of range for {}",
            std::any::type_name::<T>()
        ))
    })
}

/// An enum (or flags) value: the integer, or a value name known to `from_name`.
fn named_int<T: TryFrom<i128>>(
    v: &Value,
    path: &Path<'_>,
    type_name: &str,
    from_name: fn(&str) -> Option<i128>,
) -> Result<T> {
    let Value::String(s) = v else {
        return int(v, path);
    };
    let i = match from_name(s) {
        Some(i) => i,
        None => integer(v, path)
            .map_err(|_| path.err(format!("unknown {type_name} value {}", quoted(s))))?,
    };
    T::try_from(i).map_err(|_| path.err(format!("{i} is out of range for {type_name}")))
}

fn double(v: &Value, path: &Path<'_>) -> Result<f64> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| path.err(format!("{n} is not a valid double"))),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => s
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| path.err(format!("{} is not a valid double", quoted(s)))),
        },
        other => Err(path.expected("a string or number", other)),
    }
}

/// Trace / span ids: case-insensitive hex. The length is checked by the converter.
fn hex_bytes(v: &Value, path: &Path<'_>) -> Result<Vec<u8>> {
    let Value::String(s) = v else {
        return Err(path.expected("a hex string", v));
    };
    hex::decode(s).map_err(|e| path.err(format!("invalid hex: {e}")))
}

const LENIENT_B64: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const B64_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT_B64);
const B64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT_B64);

/// `bytes` fields: standard or URL-safe base64, padding optional.
fn base64_bytes(v: &Value, path: &Path<'_>) -> Result<Vec<u8>> {
    let Value::String(s) = v else {
        return Err(path.expected("a base64 string", v));
    };
    let engine = if s.contains(['-', '_']) {
        &B64_URL_SAFE
    } else {
        &B64_STANDARD
    };
    engine
        .decode(s)
        .map_err(|e| path.err(format!("invalid base64: {e}")))
}

fn span_kind_name(s: &str) -> Option<i128> {
    span::SpanKind::from_str_name(s).map(|k| i128::from(k as i32))
}

fn status_code_name(s: &str) -> Option<i128> {
    status::StatusCode::from_str_name(s).map(|c| i128::from(c as i32))
}

fn span_flags_name(s: &str) -> Option<i128> {
    SpanFlags::from_str_name(s).map(|f| i128::from(f as i32))
}

fn temporality_name(s: &str) -> Option<i128> {
    AggregationTemporality::from_str_name(s).map(|t| i128::from(t as i32))
}

fn data_point_flags_name(s: &str) -> Option<i128> {
    DataPointFlags::from_str_name(s).map(|f| i128::from(f as i32))
}

fn severity_name(s: &str) -> Option<i128> {
    SeverityNumber::from_str_name(s).map(|n| i128::from(n as i32))
}

fn log_flags_name(s: &str) -> Option<i128> {
    LogRecordFlags::from_str_name(s).map(|f| i128::from(f as i32))
}

// ---------------------------------------------------------------------------------------
// common.v1 / resource.v1
// ---------------------------------------------------------------------------------------

fn any_value(v: &Value, path: &Path<'_>, depth: usize) -> Result<AnyValue> {
    if depth > MAX_ANY_VALUE_DEPTH {
        return Err(path.err(format!(
            "AnyValue nested deeper than {MAX_ANY_VALUE_DEPTH} levels"
        )));
    }
    let o = Obj::new(v, path)?;
    let mut value: Option<any_value::Value> = None;
    let mut first: Option<&'static str> = None;
    let mut set = |name: &'static str, v: any_value::Value| -> Result<()> {
        if let Some(prev) = first {
            return Err(path.err(format!(
                "AnyValue has more than one value set ({prev} and {name})"
            )));
        }
        first = Some(name);
        value = Some(v);
        Ok(())
    };
    use any_value::Value as V;
    if let Some(s) = o.opt("stringValue", "string_value", string)? {
        set("stringValue", V::StringValue(s))?;
    }
    if let Some(b) = o.opt("boolValue", "bool_value", boolean)? {
        set("boolValue", V::BoolValue(b))?;
    }
    if let Some(i) = o.opt("intValue", "int_value", int::<i64>)? {
        set("intValue", V::IntValue(i))?;
    }
    if let Some(d) = o.opt("doubleValue", "double_value", double)? {
        set("doubleValue", V::DoubleValue(d))?;
    }
    if let Some(a) = o.opt("arrayValue", "array_value", |v, p| {
        let a = Obj::new(v, p)?;
        Ok(ArrayValue {
            values: a.list("values", "values", |v, p| any_value(v, p, depth + 1))?,
        })
    })? {
        set("arrayValue", V::ArrayValue(a))?;
    }
    if let Some(kv) = o.opt("kvlistValue", "kvlist_value", |v, p| {
        let l = Obj::new(v, p)?;
        Ok(KeyValueList {
            values: l.list("values", "values", |v, p| key_value(v, p, depth + 1))?,
        })
    })? {
        set("kvlistValue", V::KvlistValue(kv))?;
    }
    if let Some(b) = o.opt("bytesValue", "bytes_value", base64_bytes)? {
        set("bytesValue", V::BytesValue(b))?;
    }
    if let Some(i) = o.opt("stringValueStrindex", "string_value_strindex", int::<i32>)? {
        set("stringValueStrindex", V::StringValueStrindex(i))?;
    }
    Ok(AnyValue { value })
}

/// A KeyValue whose value is an AnyValue at nesting level `depth`.
fn key_value(v: &Value, path: &Path<'_>, depth: usize) -> Result<KeyValue> {
    let o = Obj::new(v, path)?;
    Ok(KeyValue {
        key: o.string("key", "key")?,
        value: o.opt("value", "value", |v, p| any_value(v, p, depth))?,
        key_strindex: o.int("keyStrindex", "key_strindex")?,
    })
}

fn scope(v: &Value, path: &Path<'_>) -> Result<InstrumentationScope> {
    let o = Obj::new(v, path)?;
    Ok(InstrumentationScope {
        name: o.string("name", "name")?,
        version: o.string("version", "version")?,
        attributes: o.attributes("attributes", "attributes")?,
        dropped_attributes_count: o.int("droppedAttributesCount", "dropped_attributes_count")?,
    })
}

fn entity_ref(v: &Value, path: &Path<'_>) -> Result<EntityRef> {
    let o = Obj::new(v, path)?;
    Ok(EntityRef {
        schema_url: o.string("schemaUrl", "schema_url")?,
        r#type: o.string("type", "type")?,
        id_keys: o.list("idKeys", "id_keys", string)?,
        description_keys: o.list("descriptionKeys", "description_keys", string)?,
    })
}

fn resource(v: &Value, path: &Path<'_>) -> Result<Resource> {
    let o = Obj::new(v, path)?;
    Ok(Resource {
        attributes: o.attributes("attributes", "attributes")?,
        dropped_attributes_count: o.int("droppedAttributesCount", "dropped_attributes_count")?,
        entity_refs: o.list("entityRefs", "entity_refs", entity_ref)?,
    })
}

// ---------------------------------------------------------------------------------------
// trace.v1
// ---------------------------------------------------------------------------------------

fn resource_spans(v: &Value, path: &Path<'_>) -> Result<ResourceSpans> {
    let o = Obj::new(v, path)?;
    Ok(ResourceSpans {
        resource: o.opt("resource", "resource", resource)?,
        scope_spans: o.list("scopeSpans", "scope_spans", scope_spans)?,
        schema_url: o.string("schemaUrl", "schema_url")?,
    })
}

fn scope_spans(v: &Value, path: &Path<'_>) -> Result<ScopeSpans> {
    let o = Obj::new(v, path)?;
    Ok(ScopeSpans {
        scope: o.opt("scope", "scope", scope)?,
        spans: o.list("spans", "spans", span)?,
        schema_url: o.string("schemaUrl", "schema_url")?,
    })
}

fn span(v: &Value, path: &Path<'_>) -> Result<Span> {
    let o = Obj::new(v, path)?;
    Ok(Span {
        trace_id: o.hex("traceId", "trace_id")?,
        span_id: o.hex("spanId", "span_id")?,
        trace_state: o.string("traceState", "trace_state")?,
        parent_span_id: o.hex("parentSpanId", "parent_span_id")?,
        flags: o.named("flags", "flags", "SpanFlags", span_flags_name)?,
        name: o.string("name", "name")?,
        kind: o.named("kind", "kind", "SpanKind", span_kind_name)?,
        start_time_unix_nano: o.int("startTimeUnixNano", "start_time_unix_nano")?,
        end_time_unix_nano: o.int("endTimeUnixNano", "end_time_unix_nano")?,
        attributes: o.attributes("attributes", "attributes")?,
        dropped_attributes_count: o.int("droppedAttributesCount", "dropped_attributes_count")?,
        events: o.list("events", "events", event)?,
        dropped_events_count: o.int("droppedEventsCount", "dropped_events_count")?,
        links: o.list("links", "links", link)?,
        dropped_links_count: o.int("droppedLinksCount", "dropped_links_count")?,
        status: o.opt("status", "status", span_status)?,
    })
}

fn event(v: &Value, path: &Path<'_>) -> Result<span::Event> {
    let o = Obj::new(v, path)?;
    Ok(span::Event {
        time_unix_nano: o.int("timeUnixNano", "time_unix_nano")?,
        name: o.string("name", "name")?,
        attributes: o.attributes("attributes", "attributes")?,
        dropped_attributes_count: o.int("droppedAttributesCount", "dropped_attributes_count")?,
    })
}

fn link(v: &Value, path: &Path<'_>) -> Result<span::Link> {
    let o = Obj::new(v, path)?;
    Ok(span::Link {
        trace_id: o.hex("traceId", "trace_id")?,
        span_id: o.hex("spanId", "span_id")?,
        trace_state: o.string("traceState", "trace_state")?,
        attributes: o.attributes("attributes", "attributes")?,
        dropped_attributes_count: o.int("droppedAttributesCount", "dropped_attributes_count")?,
        flags: o.named("flags", "flags", "SpanFlags", span_flags_name)?,
    })
}

fn span_status(v: &Value, path: &Path<'_>) -> Result<Status> {
    let o = Obj::new(v, path)?;
    Ok(Status {
        message: o.string("message", "message")?,
        code: o.named("code", "code", "StatusCode", status_code_name)?,
    })
}

// ---------------------------------------------------------------------------------------
// metrics.v1
// ---------------------------------------------------------------------------------------

fn resource_metrics(v: &Value, path: &Path<'_>) -> Result<ResourceMetrics> {
    let o = Obj::new(v, path)?;
    Ok(ResourceMetrics {
        resource: o.opt("resource", "resource", resource)?,
        scope_metrics: o.list("scopeMetrics", "scope_metrics", scope_metrics)?,
        schema_url: o.string("schemaUrl", "schema_url")?,
    })
}

fn scope_metrics(v: &Value, path: &Path<'_>) -> Result<ScopeMetrics> {
    let o = Obj::new(v, path)?;
    Ok(ScopeMetrics {
        scope: o.opt("scope", "scope", scope)?,
        metrics: o.list("metrics", "metrics", metric)?,
        schema_url: o.string("schemaUrl", "schema_url")?,
    })
}

type DataDecoder = fn(&Value, &Path<'_>) -> Result<metric::Data>;

const METRIC_DATA: [(&str, &str, DataDecoder); 5] = [
    ("gauge", "gauge", gauge),
    ("sum", "sum", sum),
    ("histogram", "histogram", histogram),
    (
        "exponentialHistogram",
        "exponential_histogram",
        exponential_histogram,
    ),
    ("summary", "summary", summary),
];

fn metric(v: &Value, path: &Path<'_>) -> Result<Metric> {
    let o = Obj::new(v, path)?;
    let mut data = None;
    let mut first: Option<&str> = None;
    for (camel, snake, decode) in METRIC_DATA {
        if let Some(d) = o.opt(camel, snake, decode)? {
            if let Some(prev) = first {
                return Err(path.err(format!(
                    "metric has more than one data field ({prev} and {camel})"
                )));
            }
            first = Some(camel);
            data = Some(d);
        }
    }
    // No data field at all: kept with `data: None`; the converter counts it as rejected.
    Ok(Metric {
        name: o.string("name", "name")?,
        description: o.string("description", "description")?,
        unit: o.string("unit", "unit")?,
        metadata: o.attributes("metadata", "metadata")?,
        data,
    })
}

fn temporality(o: &Obj<'_, '_>) -> Result<i32> {
    o.named(
        "aggregationTemporality",
        "aggregation_temporality",
        "AggregationTemporality",
        temporality_name,
    )
}

fn gauge(v: &Value, path: &Path<'_>) -> Result<metric::Data> {
    let o = Obj::new(v, path)?;
    Ok(metric::Data::Gauge(Gauge {
        data_points: o.list("dataPoints", "data_points", number_data_point)?,
    }))
}

fn sum(v: &Value, path: &Path<'_>) -> Result<metric::Data> {
    let o = Obj::new(v, path)?;
    Ok(metric::Data::Sum(Sum {
        data_points: o.list("dataPoints", "data_points", number_data_point)?,
        aggregation_temporality: temporality(&o)?,
        is_monotonic: o.boolean("isMonotonic", "is_monotonic")?,
    }))
}

fn histogram(v: &Value, path: &Path<'_>) -> Result<metric::Data> {
    let o = Obj::new(v, path)?;
    Ok(metric::Data::Histogram(Histogram {
        data_points: o.list("dataPoints", "data_points", histogram_data_point)?,
        aggregation_temporality: temporality(&o)?,
    }))
}

fn exponential_histogram(v: &Value, path: &Path<'_>) -> Result<metric::Data> {
    let o = Obj::new(v, path)?;
    Ok(metric::Data::ExponentialHistogram(ExponentialHistogram {
        data_points: o.list("dataPoints", "data_points", exp_histogram_data_point)?,
        aggregation_temporality: temporality(&o)?,
    }))
}

fn summary(v: &Value, path: &Path<'_>) -> Result<metric::Data> {
    let o = Obj::new(v, path)?;
    Ok(metric::Data::Summary(Summary {
        data_points: o.list("dataPoints", "data_points", summary_data_point)?,
    }))
}

fn data_point_flags(o: &Obj<'_, '_>) -> Result<u32> {
    o.named("flags", "flags", "DataPointFlags", data_point_flags_name)
}

/// The `asDouble` / `asInt` oneof shared by NumberDataPoint and Exemplar.
enum NumberValue {
    Double(f64),
    Int(i64),
}

fn number_value(o: &Obj<'_, '_>) -> Result<Option<NumberValue>> {
    let d = o.opt_double("asDouble", "as_double")?;
    let i = o.opt("asInt", "as_int", int::<i64>)?;
    match (d, i) {
        (Some(_), Some(_)) => Err(o.path.err("both asDouble and asInt are set")),
        (Some(d), None) => Ok(Some(NumberValue::Double(d))),
        (None, Some(i)) => Ok(Some(NumberValue::Int(i))),
        (None, None) => Ok(None),
    }
}

fn number_data_point(v: &Value, path: &Path<'_>) -> Result<NumberDataPoint> {
    let o = Obj::new(v, path)?;
    Ok(NumberDataPoint {
        attributes: o.attributes("attributes", "attributes")?,
        start_time_unix_nano: o.int("startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: o.int("timeUnixNano", "time_unix_nano")?,
        exemplars: o.list("exemplars", "exemplars", exemplar)?,
        flags: data_point_flags(&o)?,
        value: number_value(&o)?.map(|n| match n {
            NumberValue::Double(d) => number_data_point::Value::AsDouble(d),
            NumberValue::Int(i) => number_data_point::Value::AsInt(i),
        }),
    })
}

fn exemplar(v: &Value, path: &Path<'_>) -> Result<Exemplar> {
    let o = Obj::new(v, path)?;
    Ok(Exemplar {
        filtered_attributes: o.attributes("filteredAttributes", "filtered_attributes")?,
        time_unix_nano: o.int("timeUnixNano", "time_unix_nano")?,
        span_id: o.hex("spanId", "span_id")?,
        trace_id: o.hex("traceId", "trace_id")?,
        value: number_value(&o)?.map(|n| match n {
            NumberValue::Double(d) => exemplar::Value::AsDouble(d),
            NumberValue::Int(i) => exemplar::Value::AsInt(i),
        }),
    })
}

fn histogram_data_point(v: &Value, path: &Path<'_>) -> Result<HistogramDataPoint> {
    let o = Obj::new(v, path)?;
    Ok(HistogramDataPoint {
        attributes: o.attributes("attributes", "attributes")?,
        start_time_unix_nano: o.int("startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: o.int("timeUnixNano", "time_unix_nano")?,
        count: o.int("count", "count")?,
        sum: o.opt_double("sum", "sum")?,
        bucket_counts: o.list("bucketCounts", "bucket_counts", int::<u64>)?,
        explicit_bounds: o.list("explicitBounds", "explicit_bounds", double)?,
        exemplars: o.list("exemplars", "exemplars", exemplar)?,
        flags: data_point_flags(&o)?,
        min: o.opt_double("min", "min")?,
        max: o.opt_double("max", "max")?,
    })
}

fn buckets(v: &Value, path: &Path<'_>) -> Result<exponential_histogram_data_point::Buckets> {
    let o = Obj::new(v, path)?;
    Ok(exponential_histogram_data_point::Buckets {
        offset: o.int("offset", "offset")?,
        bucket_counts: o.list("bucketCounts", "bucket_counts", int::<u64>)?,
    })
}

fn exp_histogram_data_point(v: &Value, path: &Path<'_>) -> Result<ExponentialHistogramDataPoint> {
    let o = Obj::new(v, path)?;
    Ok(ExponentialHistogramDataPoint {
        attributes: o.attributes("attributes", "attributes")?,
        start_time_unix_nano: o.int("startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: o.int("timeUnixNano", "time_unix_nano")?,
        count: o.int("count", "count")?,
        sum: o.opt_double("sum", "sum")?,
        scale: o.int("scale", "scale")?,
        zero_count: o.int("zeroCount", "zero_count")?,
        positive: o.opt("positive", "positive", buckets)?,
        negative: o.opt("negative", "negative", buckets)?,
        flags: data_point_flags(&o)?,
        exemplars: o.list("exemplars", "exemplars", exemplar)?,
        min: o.opt_double("min", "min")?,
        max: o.opt_double("max", "max")?,
        zero_threshold: o.double("zeroThreshold", "zero_threshold")?,
    })
}

fn value_at_quantile(v: &Value, path: &Path<'_>) -> Result<summary_data_point::ValueAtQuantile> {
    let o = Obj::new(v, path)?;
    Ok(summary_data_point::ValueAtQuantile {
        quantile: o.double("quantile", "quantile")?,
        value: o.double("value", "value")?,
    })
}

fn summary_data_point(v: &Value, path: &Path<'_>) -> Result<SummaryDataPoint> {
    let o = Obj::new(v, path)?;
    Ok(SummaryDataPoint {
        attributes: o.attributes("attributes", "attributes")?,
        start_time_unix_nano: o.int("startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: o.int("timeUnixNano", "time_unix_nano")?,
        count: o.int("count", "count")?,
        sum: o.double("sum", "sum")?,
        quantile_values: o.list("quantileValues", "quantile_values", value_at_quantile)?,
        flags: data_point_flags(&o)?,
    })
}

// ---------------------------------------------------------------------------------------
// logs.v1
// ---------------------------------------------------------------------------------------

fn resource_logs(v: &Value, path: &Path<'_>) -> Result<ResourceLogs> {
    let o = Obj::new(v, path)?;
    Ok(ResourceLogs {
        resource: o.opt("resource", "resource", resource)?,
        scope_logs: o.list("scopeLogs", "scope_logs", scope_logs)?,
        schema_url: o.string("schemaUrl", "schema_url")?,
    })
}

fn scope_logs(v: &Value, path: &Path<'_>) -> Result<ScopeLogs> {
    let o = Obj::new(v, path)?;
    Ok(ScopeLogs {
        scope: o.opt("scope", "scope", scope)?,
        log_records: o.list("logRecords", "log_records", log_record)?,
        schema_url: o.string("schemaUrl", "schema_url")?,
    })
}

fn log_record(v: &Value, path: &Path<'_>) -> Result<LogRecord> {
    let o = Obj::new(v, path)?;
    Ok(LogRecord {
        time_unix_nano: o.int("timeUnixNano", "time_unix_nano")?,
        observed_time_unix_nano: o.int("observedTimeUnixNano", "observed_time_unix_nano")?,
        severity_number: o.named(
            "severityNumber",
            "severity_number",
            "SeverityNumber",
            severity_name,
        )?,
        severity_text: o.string("severityText", "severity_text")?,
        body: o.opt("body", "body", |v, p| any_value(v, p, 1))?,
        attributes: o.attributes("attributes", "attributes")?,
        dropped_attributes_count: o.int("droppedAttributesCount", "dropped_attributes_count")?,
        flags: o.named("flags", "flags", "LogRecordFlags", log_flags_name)?,
        trace_id: o.hex("traceId", "trace_id")?,
        span_id: o.hex("spanId", "span_id")?,
        event_name: o.string("eventName", "event_name")?,
    })
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn full_trace_request() {
        let input = json!({
            "resourceSpans": [{
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "checkout"}},
                        {"key": "bool", "value": {"boolValue": true}},
                        {"key": "int_str", "value": {"intValue": "-42"}},
                        {"key": "int_num", "value": {"intValue": 9_007_199_254_740_993_i64}},
                        {"key": "double", "value": {"doubleValue": 1.5}},
                        {"key": "double_str", "value": {"doubleValue": "2.25"}},
                        {"key": "array", "value": {"arrayValue": {"values": [
                            {"stringValue": "a"}, {"intValue": 1}, {}
                        ]}}},
                        {"key": "kvlist", "value": {"kvlistValue": {"values": [
                            {"key": "inner", "value": {"boolValue": false}},
                            {"key": "nested", "value": {"arrayValue": {}}}
                        ]}}},
                        {"key": "bytes", "value": {"bytesValue": "aGVsbG8="}},
                        {"key": "empty", "value": {}},
                        {"key": "novalue"},
                        {"key": "nullvalue", "value": null}
                    ],
                    "droppedAttributesCount": 1
                },
                "scopeSpans": [{
                    "scope": {
                        "name": "lib",
                        "version": "1.0",
                        "attributes": [{"key": "scope.attr", "value": {"stringValue": "x"}}],
                        "droppedAttributesCount": "2"
                    },
                    "spans": [
                        {
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b174",
                            "parentSpanId": "eee19b7ec3c1b173",
                            "traceState": "k=v",
                            "flags": 257,
                            "name": "GET /cart",
                            "kind": 2,
                            "startTimeUnixNano": "1544712660000000000",
                            "endTimeUnixNano": 1_544_712_661_000_000_000_u64,
                            "attributes": [{"key": "http.status", "value": {"intValue": "200"}}],
                            "droppedAttributesCount": 3,
                            "events": [{
                                "timeUnixNano": "1544712660500000000",
                                "name": "exception",
                                "attributes": [{"key": "exception.message", "value": {"stringValue": "boom"}}],
                                "droppedAttributesCount": "4"
                            }],
                            "droppedEventsCount": 5,
                            "links": [{
                                "traceId": "5b8efff798038103d269b633813fc60d",
                                "spanId": "eee19b7ec3c1b175",
                                "traceState": "a=b",
                                "attributes": [{"key": "link.attr", "value": {"doubleValue": 0.5}}],
                                "droppedAttributesCount": 6,
                                "flags": "SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK"
                            }],
                            "droppedLinksCount": "7",
                            "status": {"code": "STATUS_CODE_ERROR", "message": "failed"}
                        },
                        {
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b176",
                            "name": "db",
                            "kind": "SPAN_KIND_CLIENT",
                            "status": {"code": 1}
                        }
                    ],
                    "schemaUrl": "https://opentelemetry.io/schemas/1.30.0"
                }],
                "schemaUrl": "https://example.com/resource",
                "someUnknownField": {"ignored": [1, 2, 3]}
            }]
        });
        let got = decode_traces(&body(input)).expect("decode");

        let expected = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", Some(s("checkout"))),
                        kv(
                            "bool",
                            Some(AnyValue {
                                value: Some(V::BoolValue(true)),
                            }),
                        ),
                        kv(
                            "int_str",
                            Some(AnyValue {
                                value: Some(V::IntValue(-42)),
                            }),
                        ),
                        kv(
                            "int_num",
                            Some(AnyValue {
                                value: Some(V::IntValue(9_007_199_254_740_993)),
                            }),
                        ),
                        kv(
                            "double",
                            Some(AnyValue {
                                value: Some(V::DoubleValue(1.5)),
                            }),
                        ),
                        kv(
                            "double_str",
                            Some(AnyValue {
                                value: Some(V::DoubleValue(2.25)),
                            }),
                        ),
                        kv(
                            "array",
                            Some(AnyValue {
                                value: Some(V::ArrayValue(ArrayValue {
                                    values: vec![
                                        s("a"),
                                        AnyValue {
                                            value: Some(V::IntValue(1)),
                                        },
                                        AnyValue { value: None },
                                    ],
                                })),
                            }),
                        ),
                        kv(
                            "kvlist",
                            Some(AnyValue {
                                value: Some(V::KvlistValue(KeyValueList {
                                    values: vec![
                                        kv(
                                            "inner",
                                            Some(AnyValue {
                                                value: Some(V::BoolValue(false)),
                                            }),
                                        ),
                                        kv(
                                            "nested",
                                            Some(AnyValue {
                                                value: Some(V::ArrayValue(ArrayValue {
                                                    values: vec![],
                                                })),
                                            }),
                                        ),
                                    ],
                                })),
                            }),
                        ),
                        kv(
                            "bytes",
                            Some(AnyValue {
                                value: Some(V::BytesValue(b"hello".to_vec())),
                            }),
                        ),
                        kv("empty", Some(AnyValue { value: None })),
                        kv("novalue", None),
                        kv("nullvalue", None),
                    ],
                    dropped_attributes_count: 1,
                    entity_refs: vec![],
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lib".to_owned(),
                        version: "1.0".to_owned(),
                        attributes: vec![kv("scope.attr", Some(s("x")))],
                        dropped_attributes_count: 2,
                    }),
                    spans: vec![
                        Span {
                            trace_id: hex::decode("5b8efff798038103d269b633813fc60c").expect("hex"),
                            span_id: hex::decode("eee19b7ec3c1b174").expect("hex"),
                            trace_state: "k=v".to_owned(),
                            parent_span_id: hex::decode("eee19b7ec3c1b173").expect("hex"),
                            flags: 257,
                            name: "GET /cart".to_owned(),
                            kind: span::SpanKind::Server as i32,
                            start_time_unix_nano: 1_544_712_660_000_000_000,
                            end_time_unix_nano: 1_544_712_661_000_000_000,
                            attributes: vec![kv(
                                "http.status",
                                Some(AnyValue {
                                    value: Some(V::IntValue(200)),
                                }),
                            )],
                            dropped_attributes_count: 3,
                            events: vec![span::Event {
                                time_unix_nano: 1_544_712_660_500_000_000,
                                name: "exception".to_owned(),
                                attributes: vec![kv("exception.message", Some(s("boom")))],
                                dropped_attributes_count: 4,
                            }],
                            dropped_events_count: 5,
                            links: vec![span::Link {
                                trace_id: hex::decode("5b8efff798038103d269b633813fc60d")
                                    .expect("hex"),
                                span_id: hex::decode("eee19b7ec3c1b175").expect("hex"),
                                trace_state: "a=b".to_owned(),
                                attributes: vec![kv(
                                    "link.attr",
                                    Some(AnyValue {
                                        value: Some(V::DoubleValue(0.5)),
                                    }),
                                )],
                                dropped_attributes_count: 6,
                                flags: SpanFlags::ContextHasIsRemoteMask as u32,
                            }],
                            dropped_links_count: 7,
                            status: Some(Status {
                                message: "failed".to_owned(),
                                code: status::StatusCode::Error as i32,
                            }),
                        },
                        Span {
                            trace_id: hex::decode("5b8efff798038103d269b633813fc60c").expect("hex"),
                            span_id: hex::decode("eee19b7ec3c1b176").expect("hex"),
                            name: "db".to_owned(),
                            kind: span::SpanKind::Client as i32,
                            status: Some(Status {
                                message: String::new(),
                                code: status::StatusCode::Ok as i32,
                            }),
                            ..Default::default()
                        },
                    ],
                    schema_url: "https://opentelemetry.io/schemas/1.30.0".to_owned(),
                }],
                schema_url: "https://example.com/resource".to_owned(),
            }],
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn metrics_of_all_five_types() {
        let input = json!({
            "resourceMetrics": [{
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                "scopeMetrics": [{
                    "scope": {"name": "meter"},
                    "metrics": [
                        {
                            "name": "queue.depth",
                            "description": "items",
                            "unit": "{item}",
                            "gauge": {"dataPoints": [{
                                "timeUnixNano": "1000",
                                "asInt": "12345678901234",
                                "attributes": [{"key": "q", "value": {"stringValue": "a"}}],
                                "flags": "DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK"
                            }, {
                                "timeUnixNano": 1001,
                                "asInt": -3
                            }]}
                        },
                        {
                            "name": "requests",
                            "sum": {
                                "aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE",
                                "isMonotonic": true,
                                "dataPoints": [{
                                    "startTimeUnixNano": "500",
                                    "timeUnixNano": "1000",
                                    "asDouble": 10.5,
                                    "exemplars": [{
                                        "timeUnixNano": "999",
                                        "asInt": "7",
                                        "traceId": "5b8efff798038103d269b633813fc60c",
                                        "spanId": "eee19b7ec3c1b174",
                                        "filteredAttributes": [{"key": "user", "value": {"stringValue": "u1"}}]
                                    }]
                                }]
                            }
                        },
                        {
                            "name": "latency",
                            "unit": "ms",
                            "histogram": {
                                "aggregationTemporality": 1,
                                "dataPoints": [{
                                    "startTimeUnixNano": "1",
                                    "timeUnixNano": "2",
                                    "count": "6",
                                    "sum": 21.5,
                                    "bucketCounts": ["1", 2, "3"],
                                    "explicitBounds": [1.0, "5"],
                                    "min": 0.5,
                                    "max": "12.25",
                                    "exemplars": [{"asDouble": 3.5}]
                                }]
                            }
                        },
                        {
                            "name": "latency.exp",
                            "exponentialHistogram": {
                                "aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA",
                                "dataPoints": [
                                    {},
                                    {
                                        "count": "5",
                                        "scale": -2,
                                        "zeroCount": "1",
                                        "zeroThreshold": "0.001",
                                        "positive": {"offset": "-3", "bucketCounts": ["1", 3]},
                                        "negative": {},
                                        "sum": 4.0
                                    }
                                ]
                            }
                        },
                        {
                            "name": "rpc.duration",
                            "summary": {"dataPoints": [{
                                "timeUnixNano": "10",
                                "count": 3,
                                "sum": "6.5",
                                "quantileValues": [{}, {"quantile": 0.99, "value": "4"}]
                            }]}
                        }
                    ]
                }]
            }]
        });
        let got = decode_metrics(&body(input)).expect("decode");

        let expected = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", Some(s("svc")))],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "meter".to_owned(),
                        ..Default::default()
                    }),
                    metrics: vec![
                        Metric {
                            name: "queue.depth".to_owned(),
                            description: "items".to_owned(),
                            unit: "{item}".to_owned(),
                            metadata: vec![],
                            data: Some(metric::Data::Gauge(Gauge {
                                data_points: vec![
                                    NumberDataPoint {
                                        attributes: vec![kv("q", Some(s("a")))],
                                        time_unix_nano: 1000,
                                        flags: DataPointFlags::NoRecordedValueMask as u32,
                                        value: Some(number_data_point::Value::AsInt(
                                            12_345_678_901_234,
                                        )),
                                        ..Default::default()
                                    },
                                    NumberDataPoint {
                                        time_unix_nano: 1001,
                                        value: Some(number_data_point::Value::AsInt(-3)),
                                        ..Default::default()
                                    },
                                ],
                            })),
                        },
                        Metric {
                            name: "requests".to_owned(),
                            data: Some(metric::Data::Sum(Sum {
                                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                                is_monotonic: true,
                                data_points: vec![NumberDataPoint {
                                    start_time_unix_nano: 500,
                                    time_unix_nano: 1000,
                                    value: Some(number_data_point::Value::AsDouble(10.5)),
                                    exemplars: vec![Exemplar {
                                        filtered_attributes: vec![kv("user", Some(s("u1")))],
                                        time_unix_nano: 999,
                                        span_id: hex::decode("eee19b7ec3c1b174").expect("hex"),
                                        trace_id: hex::decode("5b8efff798038103d269b633813fc60c")
                                            .expect("hex"),
                                        value: Some(exemplar::Value::AsInt(7)),
                                    }],
                                    ..Default::default()
                                }],
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "latency".to_owned(),
                            unit: "ms".to_owned(),
                            data: Some(metric::Data::Histogram(Histogram {
                                aggregation_temporality: AggregationTemporality::Delta as i32,
                                data_points: vec![HistogramDataPoint {
                                    start_time_unix_nano: 1,
                                    time_unix_nano: 2,
                                    count: 6,
                                    sum: Some(21.5),
                                    bucket_counts: vec![1, 2, 3],
                                    explicit_bounds: vec![1.0, 5.0],
                                    min: Some(0.5),
                                    max: Some(12.25),
                                    exemplars: vec![Exemplar {
                                        value: Some(exemplar::Value::AsDouble(3.5)),
                                        ..Default::default()
                                    }],
                                    ..Default::default()
                                }],
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "latency.exp".to_owned(),
                            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                                aggregation_temporality: AggregationTemporality::Delta as i32,
                                data_points: vec![
                                    ExponentialHistogramDataPoint::default(),
                                    ExponentialHistogramDataPoint {
                                        count: 5,
                                        scale: -2,
                                        zero_count: 1,
                                        zero_threshold: 0.001,
                                        positive: Some(exponential_histogram_data_point::Buckets {
                                            offset: -3,
                                            bucket_counts: vec![1, 3],
                                        }),
                                        negative: Some(
                                            exponential_histogram_data_point::Buckets::default(),
                                        ),
                                        sum: Some(4.0),
                                        ..Default::default()
                                    },
                                ],
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "rpc.duration".to_owned(),
                            data: Some(metric::Data::Summary(Summary {
                                data_points: vec![SummaryDataPoint {
                                    time_unix_nano: 10,
                                    count: 3,
                                    sum: 6.5,
                                    quantile_values: vec![
                                        summary_data_point::ValueAtQuantile {
                                            quantile: 0.0,
                                            value: 0.0,
                                        },
                                        summary_data_point::ValueAtQuantile {
                                            quantile: 0.99,
                                            value: 4.0,
                                        },
                                    ],
                                    ..Default::default()
                                }],
                            })),
                            ..Default::default()
                        },
                    ],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn logs_with_empty_body_and_enum_names() {
        let input = json!({
            "resourceLogs": [{
                "scopeLogs": [{
                    "logRecords": [
                        {
                            "timeUnixNano": "1700000000000000000",
                            "observedTimeUnixNano": 1_700_000_000_000_000_001_u64,
                            "severityNumber": "SEVERITY_NUMBER_INFO",
                            "severityText": "INFO",
                            "body": {},
                            "attributes": [{"key": "k", "value": {"stringValue": "v"}}],
                            "droppedAttributesCount": 1,
                            "flags": 1,
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "EEE19B7EC3C1B174",
                            "eventName": "app.started"
                        },
                        {"severityNumber": 17, "body": {"stringValue": "oops"}},
                        {"severityNumber": "21"}
                    ]
                }]
            }]
        });
        let got = decode_logs(&body(input)).expect("decode");
        let expected = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: None,
                scope_logs: vec![ScopeLogs {
                    scope: None,
                    log_records: vec![
                        LogRecord {
                            time_unix_nano: 1_700_000_000_000_000_000,
                            observed_time_unix_nano: 1_700_000_000_000_000_001,
                            severity_number: SeverityNumber::Info as i32,
                            severity_text: "INFO".to_owned(),
                            body: Some(AnyValue { value: None }),
                            attributes: vec![kv("k", Some(s("v")))],
                            dropped_attributes_count: 1,
                            flags: 1,
                            trace_id: hex::decode("5b8efff798038103d269b633813fc60c").expect("hex"),
                            span_id: hex::decode("eee19b7ec3c1b174").expect("hex"),
                            event_name: "app.started".to_owned(),
                        },
                        LogRecord {
                            severity_number: SeverityNumber::Error as i32,
                            body: Some(s("oops")),
                            ..Default::default()
                        },
                        LogRecord {
                            severity_number: SeverityNumber::Fatal as i32,
                            ..Default::default()
                        },
                    ],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn empty_requests() {
        assert_eq!(
            decode_traces(b"{}").expect("traces"),
            ExportTraceServiceRequest::default()
        );
        assert_eq!(
            decode_metrics(b"{}").expect("metrics"),
            ExportMetricsServiceRequest::default()
        );
        assert_eq!(
            decode_logs(b" { } ").expect("logs"),
            ExportLogsServiceRequest::default()
        );
        // null means default too.
        assert_eq!(
            decode_traces(br#"{"resourceSpans": null}"#).expect("traces"),
            ExportTraceServiceRequest::default()
        );
        let got = decode_traces(&body(json!({"resourceSpans": [{}]}))).expect("traces");
        assert_eq!(
            got,
            ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans::default()]
            }
        );
    }

    #[test]
    fn null_fields_are_defaults() {
        let got = decoded_span(json!({
            "traceId": null, "name": null, "kind": null, "startTimeUnixNano": null,
            "attributes": null, "status": null
        }));
        assert_eq!(got, Span::default());
    }

    #[test]
    fn snake_case_keys() {
        let input = json!({
            "resource_spans": [{
                "resource": {"attributes": [{"key": "a", "value": {"string_value": "b"}}],
                             "dropped_attributes_count": 2},
                "scope_spans": [{
                    "spans": [{
                        "trace_id": "5b8efff798038103d269b633813fc60c",
                        "span_id": "eee19b7ec3c1b174",
                        "parent_span_id": "eee19b7ec3c1b173",
                        "start_time_unix_nano": "10",
                        "end_time_unix_nano": "20",
                        "trace_state": "x=y",
                        "dropped_links_count": 1,
                        "attributes": [
                            {"key": "n", "value": {"int_value": "5"}},
                            {"key": "l", "value": {"kvlist_value": {"values": [
                                {"key": "d", "value": {"double_value": 1.0}}
                            ]}}},
                            {"key": "a", "value": {"array_value": {"values": [{"bool_value": true}]}}},
                            {"key": "by", "value": {"bytes_value": "AAE="}}
                        ]
                    }],
                    "schema_url": "s"
                }],
                "schema_url": "r"
            }]
        });
        let got = decode_traces(&body(input)).expect("decode");
        let rs = &got.resource_spans[0];
        assert_eq!(rs.schema_url, "r");
        assert_eq!(rs.scope_spans[0].schema_url, "s");
        let resource = rs.resource.as_ref().expect("resource");
        assert_eq!(resource.attributes, vec![kv("a", Some(s("b")))]);
        assert_eq!(resource.dropped_attributes_count, 2);
        let span = &rs.scope_spans[0].spans[0];
        assert_eq!(
            span,
            &Span {
                trace_id: hex::decode("5b8efff798038103d269b633813fc60c").expect("hex"),
                span_id: hex::decode("eee19b7ec3c1b174").expect("hex"),
                parent_span_id: hex::decode("eee19b7ec3c1b173").expect("hex"),
                start_time_unix_nano: 10,
                end_time_unix_nano: 20,
                trace_state: "x=y".to_owned(),
                dropped_links_count: 1,
                attributes: vec![
                    kv(
                        "n",
                        Some(AnyValue {
                            value: Some(V::IntValue(5))
                        })
                    ),
                    kv(
                        "l",
                        Some(AnyValue {
                            value: Some(V::KvlistValue(KeyValueList {
                                values: vec![kv(
                                    "d",
                                    Some(AnyValue {
                                        value: Some(V::DoubleValue(1.0))
                                    })
                                )]
                            }))
                        })
                    ),
                    kv(
                        "a",
                        Some(AnyValue {
                            value: Some(V::ArrayValue(ArrayValue {
                                values: vec![AnyValue {
                                    value: Some(V::BoolValue(true))
                                }]
                            }))
                        })
                    ),
                    kv(
                        "by",
                        Some(AnyValue {
                            value: Some(V::BytesValue(vec![0, 1]))
                        })
                    ),
                ],
                ..Default::default()
            }
        );

        let metrics = decode_metrics(&body(json!({
            "resource_metrics": [{"scope_metrics": [{"metrics": [{
                "name": "m",
                "exponential_histogram": {
                    "aggregation_temporality": 2,
                    "data_points": [{"zero_count": 4, "time_unix_nano": "9",
                                     "positive": {"bucket_counts": [1]}}]
                }
            }]}]}]
        })))
        .expect("metrics");
        assert_eq!(
            metrics.resource_metrics[0].scope_metrics[0].metrics[0],
            Metric {
                name: "m".to_owned(),
                data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                    aggregation_temporality: 2,
                    data_points: vec![ExponentialHistogramDataPoint {
                        zero_count: 4,
                        time_unix_nano: 9,
                        positive: Some(exponential_histogram_data_point::Buckets {
                            offset: 0,
                            bucket_counts: vec![1],
                        }),
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            }
        );

        let logs = decode_logs(&body(json!({
            "resource_logs": [{"scope_logs": [{"log_records": [{
                "observed_time_unix_nano": "3", "severity_number": 9, "event_name": "e",
                "trace_id": "01", "severity_text": "I"
            }]}]}]
        })))
        .expect("logs");
        assert_eq!(
            logs.resource_logs[0].scope_logs[0].log_records[0],
            LogRecord {
                observed_time_unix_nano: 3,
                severity_number: 9,
                event_name: "e".to_owned(),
                trace_id: vec![1],
                severity_text: "I".to_owned(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn hex_ids() {
        let span = decoded_span(json!({
            "traceId": "5B8EFFF798038103d269b633813FC60C",
            "spanId": "",
            "parentSpanId": "DEADBEEF"
        }));
        assert_eq!(
            span.trace_id,
            hex::decode("5b8efff798038103d269b633813fc60c").expect("hex")
        );
        assert!(span.span_id.is_empty());
        // Length is not checked here: the converter rejects it later.
        assert_eq!(span.parent_span_id, vec![0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn invalid_hex_names_the_path() {
        let spans: Vec<Value> = (0..4)
            .map(|i| {
                if i == 3 {
                    json!({"traceId": "5b8efff798038103d269b633813fc6zz"})
                } else {
                    json!({})
                }
            })
            .collect();
        let input = json!({"resourceSpans": [{"scopeSpans": [{}, {"spans": spans}]}]});
        let err = trace_err(input);
        assert_eq!(err.path, "resourceSpans[0].scopeSpans[1].spans[3].traceId");
        assert!(err.reason.starts_with("invalid hex"), "{}", err.reason);
        assert!(
            err.to_string()
                .starts_with("resourceSpans[0].scopeSpans[1].spans[3].traceId: invalid hex")
        );

        let err = trace_err(one_span(json!({"spanId": "abc"})));
        assert_eq!(err.path, "resourceSpans[0].scopeSpans[0].spans[0].spanId");
        assert!(err.reason.starts_with("invalid hex"), "{}", err.reason);

        let err = trace_err(one_span(json!({"links": [{"traceId": 12}]})));
        assert_eq!(
            err.path,
            "resourceSpans[0].scopeSpans[0].spans[0].links[0].traceId"
        );
        assert_eq!(err.reason, "expected a hex string, got number");

        let err = decode_logs(&body(one_log(json!({"spanId": "0g"})))).expect_err("bad hex");
        assert_eq!(
            err.path,
            "resourceLogs[0].scopeLogs[0].logRecords[0].spanId"
        );
        let err = decode_metrics(&body(one_metric(
            json!({"gauge": {"dataPoints": [{"exemplars": [{"traceId": "x"}]}]}}),
        )))
        .expect_err("bad hex");
        assert_eq!(
            err.path,
            "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0].exemplars[0].traceId"
        );
    }

    #[test]
    fn wrong_types_name_the_path() {
        let err = trace_err(one_span(json!({
            "attributes": [{"key": "k", "value": {"intValue": [1]}}]
        })));
        assert_eq!(
            err.path,
            "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.intValue"
        );
        assert_eq!(err.reason, "expected a string or number, got array");
        assert_eq!(
            err.to_string(),
            "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.intValue: \
             expected a string or number, got array"
        );

        let err = trace_err(json!({"resourceSpans": [{"scopeSpans": {}}]}));
        assert_eq!(err.path, "resourceSpans[0].scopeSpans");
        assert_eq!(err.reason, "expected an array, got object");

        let err = trace_err(json!({"resourceSpans": [[]]}));
        assert_eq!(err.path, "resourceSpans[0]");
        assert_eq!(err.reason, "expected an object, got array");

        let err = trace_err(one_span(json!({"name": 5})));
        assert_eq!(err.path, "resourceSpans[0].scopeSpans[0].spans[0].name");
        assert_eq!(err.reason, "expected a string, got number");

        // snake_case input is reported under the canonical camelCase name.
        let err = trace_err(one_span(json!({"start_time_unix_nano": true})));
        assert_eq!(
            err.path,
            "resourceSpans[0].scopeSpans[0].spans[0].startTimeUnixNano"
        );
        assert_eq!(err.reason, "expected a string or number, got boolean");

        let err = trace_err(one_span(
            json!({"attributes": [{"key": "k", "value": "str"}]}),
        ));
        assert_eq!(
            err.path,
            "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value"
        );
        assert_eq!(err.reason, "expected an object, got string");

        let err = decode_metrics(&body(one_metric(json!({"sum": {"isMonotonic": "true"}}))))
            .expect_err("bad bool");
        assert_eq!(
            err.path,
            "resourceMetrics[0].scopeMetrics[0].metrics[0].sum.isMonotonic"
        );
    }

    #[test]
    fn not_json_or_not_an_object() {
        for input in [
            &b"not json"[..],
            b"",
            b"{\"resourceSpans\": [",
            b"{} trailing",
        ] {
            let err = decode_traces(input).expect_err("not json");
            assert_eq!(err.path, "$");
            assert!(err.reason.starts_with("invalid JSON"), "{}", err.reason);
        }
        let err = decode_logs(b"[]").expect_err("array");
        assert_eq!(err.path, "$");
        assert_eq!(err.reason, "expected an object, got array");
    }

    #[test]
    fn integers() {
        let span = decoded_span(json!({
            "startTimeUnixNano": "18446744073709551615",
            "endTimeUnixNano": 18_446_744_073_709_551_615_u64,
            "droppedAttributesCount": "4294967295",
            "droppedEventsCount": 1e3,
            "droppedLinksCount": "2e1",
            "flags": "+7"
        }));
        assert_eq!(span.start_time_unix_nano, u64::MAX);
        assert_eq!(span.end_time_unix_nano, u64::MAX);
        assert_eq!(span.dropped_attributes_count, u32::MAX);
        assert_eq!(span.dropped_events_count, 1000);
        assert_eq!(span.dropped_links_count, 20);
        assert_eq!(span.flags, 7);

        let cases = [
            (
                json!({"startTimeUnixNano": "-1"}),
                "startTimeUnixNano",
                "out of range",
            ),
            (
                json!({"startTimeUnixNano": -1}),
                "startTimeUnixNano",
                "out of range",
            ),
            (
                json!({"startTimeUnixNano": "18446744073709551616"}),
                "startTimeUnixNano",
                "out of range",
            ),
            (
                json!({"droppedAttributesCount": 4_294_967_296_u64}),
                "droppedAttributesCount",
                "out of range",
            ),
            (
                json!({"endTimeUnixNano": 1.5}),
                "endTimeUnixNano",
                "not an integer",
            ),
            (
                json!({"endTimeUnixNano": "1.5"}),
                "endTimeUnixNano",
                "not an integer",
            ),
            (
                json!({"endTimeUnixNano": "12abc"}),
                "endTimeUnixNano",
                "not an integer",
            ),
            (
                json!({"endTimeUnixNano": "NaN"}),
                "endTimeUnixNano",
                "not an integer",
            ),
            (
                json!({"endTimeUnixNano": ""}),
                "endTimeUnixNano",
                "not an integer",
            ),
            (json!({"kind": 2_147_483_648_u64}), "kind", "out of range"),
        ];
        for (span, field, reason) in cases {
            let err = trace_err(one_span(span.clone()));
            assert_eq!(
                err.path,
                format!("resourceSpans[0].scopeSpans[0].spans[0].{field}"),
                "{span}"
            );
            assert!(err.reason.contains(reason), "{span}: {}", err.reason);
        }

        let err = trace_err(one_span(json!({
            "attributes": [{"key": "k", "value": {"intValue": "9223372036854775808"}}]
        })));
        assert!(err.reason.contains("out of range"), "{}", err.reason);
        let span = decoded_span(json!({
            "attributes": [{"key": "k", "value": {"intValue": "-9223372036854775808"}}]
        }));
        assert_eq!(
            span.attributes[0].value,
            Some(AnyValue {
                value: Some(V::IntValue(i64::MIN))
            })
        );
    }

    #[test]
    fn enums_by_number_and_name() {
        assert_eq!(decoded_span(json!({"kind": 5})).kind, 5);
        assert_eq!(decoded_span(json!({"kind": "3"})).kind, 3);
        assert_eq!(
            decoded_span(json!({"kind": "SPAN_KIND_PRODUCER"})).kind,
            span::SpanKind::Producer as i32
        );
        // Open enums: unknown numbers are kept.
        assert_eq!(decoded_span(json!({"kind": 42})).kind, 42);

        let err = trace_err(one_span(json!({"kind": "SERVER"})));
        assert_eq!(err.path, "resourceSpans[0].scopeSpans[0].spans[0].kind");
        assert_eq!(err.reason, "unknown SpanKind value \"SERVER\"");

        let err = trace_err(one_span(json!({"status": {"code": "STATUS_CODE_BROKEN"}})));
        assert_eq!(
            err.path,
            "resourceSpans[0].scopeSpans[0].spans[0].status.code"
        );
        assert!(
            err.reason.starts_with("unknown StatusCode"),
            "{}",
            err.reason
        );

        let err = decode_metrics(&body(one_metric(
            json!({"sum": {"aggregationTemporality": "CUMULATIVE"}}),
        )))
        .expect_err("bad enum");
        assert_eq!(
            err.path,
            "resourceMetrics[0].scopeMetrics[0].metrics[0].sum.aggregationTemporality"
        );

        let err =
            decode_logs(&body(one_log(json!({"severityNumber": "INFO"})))).expect_err("bad enum");
        assert_eq!(
            err.path,
            "resourceLogs[0].scopeLogs[0].logRecords[0].severityNumber"
        );
    }

    #[test]
    fn special_doubles() {
        let m = decoded_metric(json!({"gauge": {"dataPoints": [
            {"asDouble": "NaN"}, {"asDouble": "Infinity"}, {"asDouble": "-Infinity"},
            {"asDouble": "-0.25"}, {"asDouble": 1e300}
        ]}}));
        let Some(metric::Data::Gauge(g)) = m.data else {
            panic!("expected a gauge, got {:?}", m.data);
        };
        let values: Vec<f64> = g
            .data_points
            .iter()
            .map(|dp| match dp.value {
                Some(number_data_point::Value::AsDouble(d)) => d,
                ref other => panic!("expected asDouble, got {other:?}"),
            })
            .collect();
        assert!(values[0].is_nan());
        assert_eq!(values[1], f64::INFINITY);
        assert_eq!(values[2], f64::NEG_INFINITY);
        assert_eq!(values[3], -0.25);
        assert_eq!(values[4], 1e300);

        let m = decoded_metric(json!({"histogram": {"dataPoints": [{
            "sum": "NaN", "min": "-Infinity", "max": "Infinity",
            "explicitBounds": ["-Infinity", 0, "Infinity"]
        }]}}));
        let Some(metric::Data::Histogram(h)) = m.data else {
            panic!("expected a histogram");
        };
        let dp = &h.data_points[0];
        assert!(dp.sum.is_some_and(f64::is_nan));
        assert_eq!(dp.min, Some(f64::NEG_INFINITY));
        assert_eq!(dp.max, Some(f64::INFINITY));
        assert_eq!(
            dp.explicit_bounds,
            vec![f64::NEG_INFINITY, 0.0, f64::INFINITY]
        );

        let span = decoded_span(json!({
            "attributes": [{"key": "d", "value": {"doubleValue": "Infinity"}}]
        }));
        assert_eq!(
            span.attributes[0].value,
            Some(AnyValue {
                value: Some(V::DoubleValue(f64::INFINITY))
            })
        );

        for bad in ["nan", "inf", "infinity", "1e400", "abc", ""] {
            let err = decode_metrics(&body(one_metric(
                json!({"gauge": {"dataPoints": [{"asDouble": bad}]}}),
            )))
            .expect_err("bad double");
            assert_eq!(
                err.path,
                "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0].asDouble"
            );
            assert!(err.reason.contains("not a valid double"), "{}", err.reason);
        }
    }

    #[test]
    fn metric_without_data_is_kept() {
        let m = decoded_metric(json!({"name": "orphan", "unit": "1", "gauge": null}));
        assert_eq!(
            m,
            Metric {
                name: "orphan".to_owned(),
                unit: "1".to_owned(),
                data: None,
                ..Default::default()
            }
        );
    }

    #[test]
    fn malformed_metric_data_is_an_error() {
        let err = decode_metrics(&body(one_metric(json!({"name": "m", "gauge": []}))))
            .expect_err("gauge array");
        assert_eq!(
            err.path,
            "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge"
        );
        assert_eq!(err.reason, "expected an object, got array");

        let err = decode_metrics(&body(one_metric(
            json!({"exponentialHistogram": {"dataPoints": [{"positive": {"bucketCounts": "1"}}]}}),
        )))
        .expect_err("bucketCounts string");
        assert_eq!(
            err.path,
            "resourceMetrics[0].scopeMetrics[0].metrics[0].exponentialHistogram.dataPoints[0].positive.bucketCounts"
        );

        let err = decode_metrics(&body(one_metric(json!({"gauge": {}, "sum": {}}))))
            .expect_err("two data fields");
        assert_eq!(err.path, "resourceMetrics[0].scopeMetrics[0].metrics[0]");
        assert!(
            err.reason.contains("more than one data field"),
            "{}",
            err.reason
        );

        let err = decode_metrics(&body(one_metric(
            json!({"sum": {"dataPoints": [{"asInt": 1, "asDouble": 1.0}]}}),
        )))
        .expect_err("two values");
        assert_eq!(
            err.path,
            "resourceMetrics[0].scopeMetrics[0].metrics[0].sum.dataPoints[0]"
        );
    }

    #[test]
    fn any_value_oneof_conflict_and_bytes() {
        let err = trace_err(one_span(json!({
            "attributes": [{"key": "k", "value": {"stringValue": "a", "intValue": 1}}]
        })));
        assert_eq!(
            err.path,
            "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value"
        );
        assert!(err.reason.contains("more than one value"), "{}", err.reason);

        // Standard, unpadded, and URL-safe base64 all decode.
        let cases: [(&str, &[u8]); 5] = [
            ("+/+/", &[0xfb, 0xff, 0xbf]),
            ("-_-_", &[0xfb, 0xff, 0xbf]),
            ("+w==", &[0xfb]),
            ("+w", &[0xfb]),
            ("", &[]),
        ];
        for (encoded, want) in cases {
            let span = decoded_span(json!({
                "attributes": [{"key": "b", "value": {"bytesValue": encoded}}]
            }));
            assert_eq!(
                span.attributes[0].value,
                Some(AnyValue {
                    value: Some(V::BytesValue(want.to_vec()))
                }),
                "{encoded}"
            );
        }

        let err = trace_err(one_span(json!({
            "attributes": [{"key": "b", "value": {"bytesValue": "!!!"}}]
        })));
        assert_eq!(
            err.path,
            "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.bytesValue"
        );
        assert!(err.reason.starts_with("invalid base64"), "{}", err.reason);
    }

    fn nested_any_value(levels: usize) -> Value {
        let mut v = json!({"stringValue": "leaf"});
        for _ in 1..levels {
            v = json!({"arrayValue": {"values": [v]}});
        }
        v
    }

    #[test]
    fn deep_nesting_is_rejected() {
        // Exactly MAX_ANY_VALUE_DEPTH levels is fine…
        let ok = nested_any_value(MAX_ANY_VALUE_DEPTH);
        let mut decoded = any_value(&ok, &ROOT, 1).expect("64 levels");
        let mut levels = 1;
        while let Some(V::ArrayValue(mut a)) = decoded.value {
            levels += 1;
            decoded = a.values.remove(0);
        }
        assert_eq!(levels, MAX_ANY_VALUE_DEPTH);
        assert_eq!(decoded, s("leaf"));

        // …one more is not (built as a Value directly: serde_json's own 128-level parse
        // limit would otherwise fire first).
        let deep = nested_any_value(MAX_ANY_VALUE_DEPTH + 1);
        let err = any_value(&deep, &ROOT.key("body"), 1).expect_err("65 levels");
        assert!(err.reason.contains("deeper than 64"), "{}", err.reason);
        assert!(
            err.path.starts_with("body.arrayValue.values[0]"),
            "{}",
            err.path
        );

        let kv_deep = {
            let mut v = json!({"stringValue": "leaf"});
            for _ in 0..MAX_ANY_VALUE_DEPTH {
                v = json!({"kvlistValue": {"values": [{"key": "k", "value": v}]}});
            }
            v
        };
        let err = any_value(&kv_deep, &ROOT, 1).expect_err("kvlist 65 levels");
        assert!(err.reason.contains("deeper than 64"), "{}", err.reason);

        // Hostile bodies through the public API: an error, not a stack overflow.
        let mut hostile = String::from(r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":"#);
        for _ in 0..100_000 {
            hostile.push_str(r#"{"arrayValue":{"values":["#);
        }
        let err = decode_logs(hostile.as_bytes()).expect_err("hostile");
        assert_eq!(err.path, "$");
        let err = decode_traces("[".repeat(1_000_000).as_bytes()).expect_err("hostile");
        assert_eq!(err.path, "$");
    }

    #[test]
    fn encode_partial_success_output() {
        assert_eq!(encode_partial_success(Signal::Traces, 0, ""), b"{}");
        assert_eq!(encode_partial_success(Signal::Logs, 0, ""), b"{}");

        let parse = |b: Vec<u8>| serde_json::from_slice::<Value>(&b).expect("valid JSON");
        assert_eq!(
            parse(encode_partial_success(Signal::Traces, 3, "bad trace id")),
            json!({"partialSuccess": {"rejectedSpans": "3", "errorMessage": "bad trace id"}})
        );
        assert_eq!(
            parse(encode_partial_success(Signal::Metrics, 2, "no data")),
            json!({"partialSuccess": {"rejectedDataPoints": "2", "errorMessage": "no data"}})
        );
        assert_eq!(
            parse(encode_partial_success(
                Signal::Logs,
                1,
                "a \"quoted\"\nmessage"
            )),
            json!({"partialSuccess": {"rejectedLogRecords": "1", "errorMessage": "a \"quoted\"\nmessage"}})
        );
        assert_eq!(
            parse(encode_partial_success(Signal::Traces, 0, "warning only")),
            json!({"partialSuccess": {"errorMessage": "warning only"}})
        );
    }

    #[test]
    fn encode_status_output() {
        assert_eq!(
            encode_status(3, "bad request"),
            br#"{"code":3,"message":"bad request"}"#
        );
        let parsed: Value =
            serde_json::from_slice(&encode_status(8, "busy \"now\"")).expect("valid JSON");
        assert_eq!(parsed, json!({"code": 8, "message": "busy \"now\""}));
    }
}
