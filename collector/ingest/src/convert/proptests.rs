//! Property tests for the OTLP → Arrow converters and the OTLP/JSON decoder.
//!
//! Random requests (several resources, scopes and items; ids of random lengths; attributes of
//! every `AnyValue` kind nested up to three levels; timestamps and counts past `i64::MAX`) are
//! converted and the batches are checked against independent oracles written from the schema
//! documentation (`schema::markdown`), not from the converters' code.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::ops::Range;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType};
use base64::Engine as _;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
    any_value::Value as V,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets, metric::Data,
    number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use prost::Message as _;
use serde_json::{Map, Value as Json};

use super::{Converted, logs, metrics, traces};
use crate::otlp_json;
use headroom_storage::schema::{
    EXP_HISTOGRAM_POINTS, HISTOGRAM_POINTS, LOGS, METRIC_POINTS, SPANS, SUMMARY_POINTS,
};

const I64_MAX: u64 = i64::MAX as u64;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 96,
        // Failures are printed with the minimal input; nothing is written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// Span keys stored in a column when the value is a string (schema: `spans` table).
const SPAN_STRING_KEYS: &[&str] = &[
    "http.request.method",
    "http.route",
    "url.path",
    "rpc.system",
    "rpc.service",
    "rpc.method",
    "db.system",
    "peer.service",
    "server.address",
    "error.type",
];
/// Span keys stored in an Int32 column.
const SPAN_INT_KEYS: &[&str] = &["http.response.status_code", "rpc.grpc.status_code"];
/// Legacy spellings that feed a column but are never removed from the JSON.
const LEGACY_KEYS: &[&str] = &["http.method", "http.status_code", "db.system.name"];
/// Resource keys stored in a column when the value is a string.
const RESOURCE_KEYS: &[&str] = &[
    "service.name",
    "service.version",
    "service.namespace",
    "service.instance.id",
    "deployment.environment.name",
    "k8s.namespace.name",
    "k8s.pod.name",
];

fn interesting_keys() -> Vec<&'static str> {
    let mut keys = Vec::new();
    keys.extend_from_slice(SPAN_STRING_KEYS);
    keys.extend_from_slice(SPAN_INT_KEYS);
    keys.extend_from_slice(LEGACY_KEYS);
    keys.extend_from_slice(RESOURCE_KEYS);
    keys.push("deployment.environment");
    keys
}

const SPECIAL_CHARS: &[char] = &[
    '"', '\\', '/', '\n', '\r', '\t', '\u{0}', '\u{1f}', '\u{7f}', 'é', 'ß', '€', '😀', '\u{2028}',
    '\u{feff}', '{', '}', ':', ',', 'a', ' ',
];

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-zA-Z0-9 ./_-]{0,12}",
        2 => vec(any::<char>(), 0..10).prop_map(String::from_iter),
        2 => vec(select(SPECIAL_CHARS), 0..8).prop_map(String::from_iter),
        1 => select(&["", "503", " 404 ", "GET", "200", "-1", "99999999999"][..])
            .prop_map(str::to_owned),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        2 => select(interesting_keys()).prop_map(str::to_owned),
        3 => text(),
    ]
    .boxed()
}

fn int() -> BoxedStrategy<i64> {
    prop_oneof![
        3 => any::<i64>(),
        2 => -1000i64..1000,
        2 => select(vec![
            i64::MIN,
            i64::MAX,
            0,
            -1,
            200,
            404,
            500,
            503,
            i64::from(i32::MAX),
            i64::from(i32::MAX) + 1,
            i64::from(i32::MIN),
            i64::from(i32::MIN) - 1,
            1 << 53,
            (1 << 53) + 1,
        ]),
    ]
    .boxed()
}

fn double() -> BoxedStrategy<f64> {
    prop_oneof![
        4 => any::<f64>(),
        2 => -1e6..1e6f64,
        2 => select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            1.0,
            0.1,
            1e16,
            1e300,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            5e-324,
        ]),
    ]
    .boxed()
}

/// An `AnyValue` of any kind (or unset), arrays and kvlists nested up to three levels.
fn any_value() -> BoxedStrategy<AnyValue> {
    let leaf = prop_oneof![
        1 => Just(None),
        4 => text().prop_map(|s| Some(V::StringValue(s))),
        2 => any::<bool>().prop_map(|b| Some(V::BoolValue(b))),
        3 => int().prop_map(|i| Some(V::IntValue(i))),
        3 => double().prop_map(|d| Some(V::DoubleValue(d))),
        2 => vec(any::<u8>(), 0..12).prop_map(|b| Some(V::BytesValue(b))),
    ]
    .prop_map(|value| AnyValue { value });
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(|values| AnyValue {
                value: Some(V::ArrayValue(ArrayValue { values })),
            }),
            kvs(inner, 0..4).prop_map(|values| AnyValue {
                value: Some(V::KvlistValue(KeyValueList { values })),
            }),
        ]
    })
    .boxed()
}

/// Values biased towards the types the promoted columns hold.
fn attr_value() -> BoxedStrategy<AnyValue> {
    prop_oneof![
        3 => any_value(),
        1 => text().prop_map(|s| AnyValue { value: Some(V::StringValue(s)) }),
        1 => int().prop_map(|i| AnyValue { value: Some(V::IntValue(i)) }),
    ]
    .boxed()
}

/// Key-values with unique keys (duplicate keys are invalid OTLP and make JSON ambiguous);
/// sometimes with no value at all.
fn kvs(
    value: impl Strategy<Value = AnyValue> + 'static,
    size: Range<usize>,
) -> BoxedStrategy<Vec<KeyValue>> {
    vec((key(), proptest::option::weighted(0.9, value)), size)
        .prop_map(|pairs| {
            let mut seen = HashSet::new();
            pairs
                .into_iter()
                .filter(|(k, _)| seen.insert(k.clone()))
                .map(|(key, value)| KeyValue {
                    key,
                    value,
                    key_strindex: 0,
                })
                .collect()
        })
        .boxed()
}

/// Mostly `len` bytes, sometimes any other length (including empty).
fn id(len: usize) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        20 => vec(any::<u8>(), len),
        1 => vec(any::<u8>(), 0..=20),
    ]
    .boxed()
}

/// An optional id: empty, `len` bytes, or sometimes a wrong length.
fn optional_id(len: usize) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        4 => Just(Vec::new()),
        8 => vec(any::<u8>(), len),
        1 => vec(any::<u8>(), 0..=20),
    ]
    .boxed()
}

/// Nanosecond timestamps: mostly realistic, sometimes 0 or past `i64::MAX` (year 2262).
fn time() -> BoxedStrategy<u64> {
    prop_oneof![
        16 => 1_600_000_000_000_000_000u64..1_800_000_000_000_000_000,
        1 => Just(0u64),
        1 => 0..=I64_MAX,
        1 => (I64_MAX + 1)..=u64::MAX,
    ]
    .boxed()
}

/// Counts: mostly small, sometimes exactly `i64::MAX` or beyond it.
fn count() -> BoxedStrategy<u64> {
    prop_oneof![
        40 => 0u64..1000,
        1 => Just(I64_MAX),
        1 => (I64_MAX + 1)..=u64::MAX,
    ]
    .boxed()
}

fn enum_i32(max: i32) -> BoxedStrategy<i32> {
    prop_oneof![8 => 0..=max, 1 => any::<i32>()].boxed()
}

fn resource() -> BoxedStrategy<Option<Resource>> {
    let entity = (text(), text(), vec(text(), 0..2), vec(text(), 0..2)).prop_map(
        |(schema_url, r#type, id_keys, description_keys)| EntityRef {
            schema_url,
            r#type,
            id_keys,
            description_keys,
        },
    );
    proptest::option::weighted(
        0.85,
        (kvs(attr_value(), 0..6), any::<u32>(), vec(entity, 0..2)).prop_map(
            |(attributes, dropped_attributes_count, entity_refs)| Resource {
                attributes,
                dropped_attributes_count,
                entity_refs,
            },
        ),
    )
    .boxed()
}

fn scope() -> BoxedStrategy<Option<InstrumentationScope>> {
    proptest::option::weighted(
        0.8,
        (text(), text(), kvs(any_value(), 0..2), any::<u32>()).prop_map(
            |(name, version, attributes, dropped_attributes_count)| InstrumentationScope {
                name,
                version,
                attributes,
                dropped_attributes_count,
            },
        ),
    )
    .boxed()
}

fn event() -> impl Strategy<Value = span::Event> {
    (time(), text(), kvs(any_value(), 0..3), any::<u32>()).prop_map(
        |(time_unix_nano, name, attributes, dropped_attributes_count)| span::Event {
            time_unix_nano,
            name,
            attributes,
            dropped_attributes_count,
        },
    )
}

fn link() -> impl Strategy<Value = span::Link> {
    (
        id(16),
        id(8),
        text(),
        kvs(any_value(), 0..3),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(trace_id, span_id, trace_state, attributes, dropped_attributes_count, flags)| {
                span::Link {
                    trace_id,
                    span_id,
                    trace_state,
                    attributes,
                    dropped_attributes_count,
                    flags,
                }
            },
        )
}

fn span() -> BoxedStrategy<Span> {
    let ids = (id(16), id(8), optional_id(8), text(), text());
    let times = (time(), time(), enum_i32(5), any::<u32>());
    let status = proptest::option::weighted(
        0.7,
        (enum_i32(2), text()).prop_map(|(code, message)| Status { message, code }),
    );
    let body = (
        kvs(attr_value(), 0..7),
        vec(event(), 0..3),
        vec(link(), 0..3),
        status,
        (any::<u32>(), any::<u32>(), any::<u32>()),
    );
    (ids, times, body)
        .prop_map(
            |(
                (trace_id, span_id, parent_span_id, trace_state, name),
                (start_time_unix_nano, end_time_unix_nano, kind, flags),
                (attributes, events, links, status, (dropped_attrs, dropped_events, dropped_links)),
            )| Span {
                trace_id,
                span_id,
                trace_state,
                parent_span_id,
                flags,
                name,
                kind,
                start_time_unix_nano,
                end_time_unix_nano,
                attributes,
                dropped_attributes_count: dropped_attrs,
                events,
                dropped_events_count: dropped_events,
                links,
                dropped_links_count: dropped_links,
                status,
            },
        )
        .boxed()
}

fn trace_request() -> BoxedStrategy<ExportTraceServiceRequest> {
    let scope_spans =
        (scope(), vec(span(), 0..6), text()).prop_map(|(scope, spans, schema_url)| ScopeSpans {
            scope,
            spans,
            schema_url,
        });
    let resource_spans = (resource(), vec(scope_spans, 1..3), text()).prop_map(
        |(resource, scope_spans, schema_url)| ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        },
    );
    vec(resource_spans, 1..4)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
        .boxed()
}

fn exemplars() -> BoxedStrategy<Vec<Exemplar>> {
    let value = proptest::option::weighted(
        0.9,
        prop_oneof![
            double().prop_map(exemplar::Value::AsDouble),
            int().prop_map(exemplar::Value::AsInt),
        ],
    );
    let one = (
        kvs(any_value(), 0..2),
        time(),
        optional_id(8),
        optional_id(16),
        value,
    )
        .prop_map(
            |(filtered_attributes, time_unix_nano, span_id, trace_id, value)| Exemplar {
                filtered_attributes,
                time_unix_nano,
                span_id,
                trace_id,
                value,
            },
        );
    vec(one, 0..3).boxed()
}

fn flags() -> BoxedStrategy<u32> {
    prop_oneof![4 => 0u32..2, 1 => any::<u32>()].boxed()
}

fn number_points() -> BoxedStrategy<Vec<NumberDataPoint>> {
    let value = proptest::option::weighted(
        0.9,
        prop_oneof![
            double().prop_map(number_data_point::Value::AsDouble),
            int().prop_map(number_data_point::Value::AsInt),
        ],
    );
    let point = (
        kvs(any_value(), 0..3),
        time(),
        time(),
        exemplars(),
        flags(),
        value,
    )
        .prop_map(
            |(attributes, start_time_unix_nano, time_unix_nano, exemplars, flags, value)| {
                NumberDataPoint {
                    attributes,
                    start_time_unix_nano,
                    time_unix_nano,
                    exemplars,
                    flags,
                    value,
                }
            },
        );
    vec(point, 0..4).boxed()
}

fn histogram_points() -> BoxedStrategy<Vec<HistogramDataPoint>> {
    // Mostly len(bounds)+1 bucket counts; sometimes none, sometimes a mismatched length.
    let buckets = vec(double(), 0..5).prop_flat_map(|bounds| {
        let n = bounds.len() + 1;
        let counts = prop_oneof![
            8 => vec(count(), n),
            1 => Just(Vec::new()),
            1 => vec(count(), 0..7),
        ];
        (Just(bounds), counts)
    });
    let point = (
        (kvs(any_value(), 0..3), time(), time(), count()),
        (
            proptest::option::of(double()),
            proptest::option::of(double()),
            proptest::option::of(double()),
        ),
        buckets,
        exemplars(),
        flags(),
    )
        .prop_map(
            |(
                (attributes, start_time_unix_nano, time_unix_nano, count),
                (sum, min, max),
                (explicit_bounds, bucket_counts),
                exemplars,
                flags,
            )| HistogramDataPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count,
                sum,
                bucket_counts,
                explicit_bounds,
                exemplars,
                flags,
                min,
                max,
            },
        );
    vec(point, 0..4).boxed()
}

fn exp_buckets() -> BoxedStrategy<Option<Buckets>> {
    proptest::option::weighted(
        0.8,
        (any::<i32>(), vec(count(), 0..6)).prop_map(|(offset, bucket_counts)| Buckets {
            offset,
            bucket_counts,
        }),
    )
    .boxed()
}

fn exp_histogram_points() -> BoxedStrategy<Vec<ExponentialHistogramDataPoint>> {
    let point = (
        (kvs(any_value(), 0..3), time(), time(), count(), count()),
        (
            proptest::option::of(double()),
            proptest::option::of(double()),
            proptest::option::of(double()),
            double(),
        ),
        (
            prop_oneof![-10i32..20, any::<i32>()],
            exp_buckets(),
            exp_buckets(),
        ),
        exemplars(),
        flags(),
    )
        .prop_map(
            |(
                (attributes, start_time_unix_nano, time_unix_nano, count, zero_count),
                (sum, min, max, zero_threshold),
                (scale, positive, negative),
                exemplars,
                flags,
            )| ExponentialHistogramDataPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count,
                sum,
                scale,
                zero_count,
                positive,
                negative,
                flags,
                exemplars,
                min,
                max,
                zero_threshold,
            },
        );
    vec(point, 0..4).boxed()
}

fn summary_points() -> BoxedStrategy<Vec<SummaryDataPoint>> {
    let quantile =
        (double(), double()).prop_map(|(quantile, value)| ValueAtQuantile { quantile, value });
    let point = (
        kvs(any_value(), 0..3),
        time(),
        time(),
        count(),
        double(),
        vec(quantile, 0..4),
        flags(),
    )
        .prop_map(
            |(
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count,
                sum,
                quantile_values,
                flags,
            )| SummaryDataPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count,
                sum,
                quantile_values,
                flags,
            },
        );
    vec(point, 0..4).boxed()
}

fn metric() -> BoxedStrategy<Metric> {
    let data = prop_oneof![
        1 => Just(None),
        3 => number_points().prop_map(|data_points| Some(Data::Gauge(Gauge { data_points }))),
        3 => (number_points(), enum_i32(2), any::<bool>()).prop_map(
            |(data_points, aggregation_temporality, is_monotonic)| Some(Data::Sum(Sum {
                data_points,
                aggregation_temporality,
                is_monotonic,
            }))
        ),
        3 => (histogram_points(), enum_i32(2)).prop_map(
            |(data_points, aggregation_temporality)| Some(Data::Histogram(Histogram {
                data_points,
                aggregation_temporality,
            }))
        ),
        3 => (exp_histogram_points(), enum_i32(2)).prop_map(
            |(data_points, aggregation_temporality)| Some(Data::ExponentialHistogram(
                ExponentialHistogram {
                    data_points,
                    aggregation_temporality,
                }
            ))
        ),
        3 => summary_points().prop_map(|data_points| Some(Data::Summary(Summary { data_points }))),
    ];
    (text(), text(), text(), kvs(any_value(), 0..2), data)
        .prop_map(|(name, description, unit, metadata, data)| Metric {
            name,
            description,
            unit,
            metadata,
            data,
        })
        .boxed()
}

fn metrics_request() -> BoxedStrategy<ExportMetricsServiceRequest> {
    let scope_metrics =
        (scope(), vec(metric(), 0..5), text()).prop_map(|(scope, metrics, schema_url)| {
            ScopeMetrics {
                scope,
                metrics,
                schema_url,
            }
        });
    let resource_metrics = (resource(), vec(scope_metrics, 1..3), text()).prop_map(
        |(resource, scope_metrics, schema_url)| ResourceMetrics {
            resource,
            scope_metrics,
            schema_url,
        },
    );
    vec(resource_metrics, 1..3)
        .prop_map(|resource_metrics| ExportMetricsServiceRequest { resource_metrics })
        .boxed()
}

fn log_record() -> BoxedStrategy<LogRecord> {
    (
        (time(), time(), enum_i32(24), text()),
        (
            proptest::option::weighted(0.85, any_value()),
            kvs(any_value(), 0..4),
        ),
        (any::<u32>(), flags()),
        (optional_id(16), optional_id(8), text()),
    )
        .prop_map(
            |(
                (time_unix_nano, observed_time_unix_nano, severity_number, severity_text),
                (body, attributes),
                (dropped_attributes_count, flags),
                (trace_id, span_id, event_name),
            )| LogRecord {
                time_unix_nano,
                observed_time_unix_nano,
                severity_number,
                severity_text,
                body,
                attributes,
                dropped_attributes_count,
                flags,
                trace_id,
                span_id,
                event_name,
            },
        )
        .boxed()
}

fn logs_request() -> BoxedStrategy<ExportLogsServiceRequest> {
    let scope_logs =
        (scope(), vec(log_record(), 0..5), text()).prop_map(|(scope, log_records, schema_url)| {
            ScopeLogs {
                scope,
                log_records,
                schema_url,
            }
        });
    let resource_logs = (resource(), vec(scope_logs, 1..3), text()).prop_map(
        |(resource, scope_logs, schema_url)| ResourceLogs {
            resource,
            scope_logs,
            schema_url,
        },
    );
    vec(resource_logs, 1..4)
        .prop_map(|resource_logs| ExportLogsServiceRequest { resource_logs })
        .boxed()
}

// ---------------------------------------------------------------------------------------
// Oracles (from the schema documentation)
// ---------------------------------------------------------------------------------------

/// The documented typed-JSON form of an `AnyValue`: strings, booleans and integers as JSON
/// values, finite doubles as numbers, non-finite doubles as "NaN" / "Infinity" / "-Infinity",
/// bytes as `{"bytes": base64}`, arrays and kvlists as arrays and objects, unset as null.
fn oracle(v: Option<&AnyValue>) -> Json {
    match v.and_then(|v| v.value.as_ref()) {
        None => Json::Null,
        Some(V::StringValue(s)) => Json::String(s.clone()),
        Some(V::BoolValue(b)) => Json::Bool(*b),
        Some(V::IntValue(i)) => Json::from(*i),
        Some(V::DoubleValue(d)) => match serde_json::Number::from_f64(*d) {
            Some(n) => Json::Number(n),
            None if d.is_nan() => Json::String("NaN".into()),
            None if *d > 0.0 => Json::String("Infinity".into()),
            None => Json::String("-Infinity".into()),
        },
        Some(V::BytesValue(b)) => {
            let mut m = Map::new();
            m.insert(
                "bytes".into(),
                Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
            );
            Json::Object(m)
        }
        Some(V::ArrayValue(a)) => Json::Array(a.values.iter().map(|v| oracle(Some(v))).collect()),
        Some(V::KvlistValue(kv)) => object(&kv.values),
        Some(V::StringValueStrindex(_)) => unreachable!("not generated"),
    }
}

fn object<'a>(kvs: impl IntoIterator<Item = &'a KeyValue>) -> Json {
    Json::Object(
        kvs.into_iter()
            .map(|kv| (kv.key.clone(), oracle(kv.value.as_ref())))
            .collect(),
    )
}

/// The JSON column for `kvs` minus the ones `in_column` holds; `None` (SQL NULL) when empty.
fn expected_attrs(kvs: &[KeyValue], in_column: impl Fn(&KeyValue) -> bool) -> Option<Json> {
    let kept: Vec<&KeyValue> = kvs.iter().filter(|kv| !in_column(kv)).collect();
    (!kept.is_empty()).then(|| object(kept))
}

fn value_of(kv: &KeyValue) -> Option<&V> {
    kv.value.as_ref().and_then(|v| v.value.as_ref())
}

/// Does a span column hold this attribute? String keys when the value is a string; the two
/// Int32 status-code keys when the value is an integer. (The schema says a promoted attribute
/// leaves the JSON "when its type matches the column".)
fn span_column_holds(kv: &KeyValue) -> bool {
    let key = kv.key.as_str();
    match value_of(kv) {
        Some(V::StringValue(_)) => SPAN_STRING_KEYS.contains(&key),
        Some(V::IntValue(i)) => SPAN_INT_KEYS.contains(&key) && i32::try_from(*i).is_ok(),
        _ => false,
    }
}

fn resource_column_holds(kv: &KeyValue) -> bool {
    matches!(value_of(kv), Some(V::StringValue(_))) && RESOURCE_KEYS.contains(&kv.key.as_str())
}

fn attr<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a V> {
    kvs.iter().find(|kv| kv.key == key).and_then(value_of)
}

fn attr_str<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(kvs, key)? {
        V::StringValue(s) => Some(s),
        _ => None,
    }
}

/// Integer attributes for Int32 columns: an integer in range, or a numeric string.
fn attr_i32(kvs: &[KeyValue], key: &str) -> Option<i32> {
    match attr(kvs, key)? {
        V::IntValue(i) => i32::try_from(*i).ok(),
        V::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn service_name(res: Option<&Resource>) -> String {
    res.and_then(|r| attr_str(&r.attributes, "service.name"))
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown_service")
        .to_owned()
}

fn resource_json(res: Option<&Resource>) -> Option<Json> {
    expected_attrs(
        res.map_or(&[][..], |r| &r.attributes),
        resource_column_holds,
    )
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn fits(t: u64) -> bool {
    t <= I64_MAX
}

// ---------------------------------------------------------------------------------------
// Comparing batches with the oracles
// ---------------------------------------------------------------------------------------

/// JSON equality with exact types (an integer never equals a double) and bit-exact doubles.
fn json_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_f64(), y.as_f64()) {
            _ if x.is_f64() != y.is_f64() => false,
            (Some(p), Some(q)) if x.is_f64() => p.to_bits() == q.to_bits(),
            _ => x == y,
        },
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// A small JSON reader whose doubles are correctly rounded (`str::parse`). serde_json's default
/// float parser is not (its `float_roundtrip` feature is off: it can be a few ULPs off), so it
/// cannot tell whether the stored text is exact.
struct Reader<'a> {
    s: &'a str,
    i: usize,
}

impl Reader<'_> {
    fn read(text: &str) -> Option<Json> {
        let mut r = Reader { s: text, i: 0 };
        let v = r.value()?;
        r.ws();
        (r.i == text.len()).then_some(v)
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.ws();
        (self.peek()? == b).then(|| self.i += 1)
    }

    fn next_char(&mut self) -> Option<char> {
        let c = self.s[self.i..].chars().next()?;
        self.i += c.len_utf8();
        Some(c)
    }

    fn value(&mut self) -> Option<Json> {
        self.ws();
        match self.peek()? {
            b'{' => {
                self.i += 1;
                let mut m = Map::new();
                if self.eat(b'}').is_some() {
                    return Some(Json::Object(m));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    m.insert(k, self.value()?);
                    if self.eat(b'}').is_some() {
                        return Some(Json::Object(m));
                    }
                    self.eat(b',')?;
                }
            }
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                if self.eat(b']').is_some() {
                    return Some(Json::Array(a));
                }
                loop {
                    a.push(self.value()?);
                    if self.eat(b']').is_some() {
                        return Some(Json::Array(a));
                    }
                    self.eat(b',')?;
                }
            }
            b'"' => self.string().map(Json::String),
            _ => {
                for (word, v) in [
                    ("true", Json::Bool(true)),
                    ("false", Json::Bool(false)),
                    ("null", Json::Null),
                ] {
                    if self.s[self.i..].starts_with(word) {
                        self.i += word.len();
                        return Some(v);
                    }
                }
                self.number()
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.i..self.i + 4)?;
        self.i += 4;
        u32::from_str_radix(h, 16).ok()
    }

    fn string(&mut self) -> Option<String> {
        (self.peek()? == b'"').then_some(())?;
        self.i += 1;
        let mut out = String::new();
        loop {
            match self.next_char()? {
                '"' => return Some(out),
                '\\' => out.push(match self.next_char()? {
                    '"' => '"',
                    '\\' => '\\',
                    '/' => '/',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'u' => {
                        let hi = self.hex4()?;
                        if (0xd800..0xdc00).contains(&hi) {
                            (self.next_char()? == '\\').then_some(())?;
                            (self.next_char()? == 'u').then_some(())?;
                            let lo = self.hex4()?;
                            char::from_u32(
                                0x10000 + ((hi - 0xd800) << 10) + (lo.checked_sub(0xdc00)?),
                            )?
                        } else {
                            char::from_u32(hi)?
                        }
                    }
                    _ => return None,
                }),
                c if u32::from(c) < 0x20 => return None,
                c => out.push(c),
            }
        }
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.i;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.i += 1;
        }
        let t = &self.s[start..self.i];
        if t.contains(['.', 'e', 'E']) {
            serde_json::Number::from_f64(t.parse().ok()?).map(Json::Number)
        } else if let Ok(i) = t.parse::<i64>() {
            Some(Json::from(i))
        } else {
            t.parse::<u64>().ok().map(Json::from)
        }
    }
}

fn column<'a>(b: &'a RecordBatch, name: &str) -> &'a ArrayRef {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

fn strs(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    column(b, name)
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_owned))
        .collect()
}

fn i64s(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    column(b, name).as_primitive::<Int64Type>().iter().collect()
}

fn i32s(b: &RecordBatch, name: &str) -> Vec<Option<i32>> {
    column(b, name).as_primitive::<Int32Type>().iter().collect()
}

fn f64_bits(b: &RecordBatch, name: &str) -> Vec<Option<u64>> {
    column(b, name)
        .as_primitive::<Float64Type>()
        .iter()
        .map(|v| v.map(f64::to_bits))
        .collect()
}

fn times(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    column(b, name)
        .as_primitive::<TimestampNanosecondType>()
        .iter()
        .collect()
}

fn ids(b: &RecordBatch, name: &str) -> Vec<Option<Vec<u8>>> {
    column(b, name)
        .as_fixed_size_binary()
        .iter()
        .map(|v| v.map(<[u8]>::to_vec))
        .collect()
}

fn bools(b: &RecordBatch, name: &str) -> Vec<Option<bool>> {
    column(b, name).as_boolean().iter().collect()
}

/// The rows of a `List<Int64>` / `List<Float64>` / `List<Struct>` column.
fn lists(b: &RecordBatch, name: &str) -> Vec<ArrayRef> {
    let list = column(b, name).as_list::<i32>();
    (0..list.len()).map(|i| list.value(i)).collect()
}

fn list_i64(a: &ArrayRef) -> Vec<i64> {
    a.as_primitive::<Int64Type>().values().to_vec()
}

fn list_f64_bits(a: &ArrayRef) -> Vec<u64> {
    a.as_primitive::<Float64Type>()
        .values()
        .iter()
        .map(|f| f.to_bits())
        .collect()
}

/// Checks a typed-JSON column cell against the oracle.
fn check_json(
    cell: &Option<String>,
    expected: Option<Json>,
    what: &str,
) -> Result<(), TestCaseError> {
    match (cell, expected) {
        (None, None) => Ok(()),
        (Some(text), Some(expected)) => {
            // Valid JSON for serde_json, and exactly the oracle's value (read exactly).
            serde_json::from_str::<Json>(text)
                .map_err(|e| TestCaseError::fail(format!("{what}: invalid JSON {text:?}: {e}")))?;
            let parsed = Reader::read(text)
                .ok_or_else(|| TestCaseError::fail(format!("{what}: unreadable {text:?}")))?;
            prop_assert!(
                json_eq(&parsed, &expected),
                "{}: stored {} but expected {}",
                what,
                text,
                expected
            );
            Ok(())
        }
        (cell, expected) => Err(TestCaseError::fail(format!(
            "{what}: stored {cell:?} but expected {expected:?}"
        ))),
    }
}

/// (a) and (b): no error, and every item is counted exactly once and lands in one row.
fn check_counts(out: &Converted, items: usize, valid: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(out.accepted + out.rejected, items as u64);
    prop_assert_eq!(out.rows() as u64, out.accepted);
    prop_assert_eq!(out.accepted, valid as u64);
    prop_assert_eq!(out.reject_message.is_some(), out.rejected > 0);
    for (name, batch) in &out.batches {
        prop_assert!(batch.num_rows() > 0, "empty batch for {}", name);
    }
    Ok(())
}

fn batch<'a>(out: &'a Converted, table: &str) -> Option<&'a RecordBatch> {
    out.batches
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, b)| b)
}

// ---------------------------------------------------------------------------------------
// Traces
// ---------------------------------------------------------------------------------------

fn span_valid(s: &Span) -> bool {
    s.trace_id.len() == 16
        && s.span_id.len() == 8
        && (s.parent_span_id.is_empty() || s.parent_span_id.len() == 8)
        && fits(s.start_time_unix_nano)
        && fits(s.end_time_unix_nano)
        && s.links
            .iter()
            .all(|l| l.trace_id.len() == 16 && l.span_id.len() == 8)
}

fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "INTERNAL",
        2 => "SERVER",
        3 => "CLIENT",
        4 => "PRODUCER",
        5 => "CONSUMER",
        _ => "UNSPECIFIED",
    }
}

fn status_name(status: Option<&Status>) -> &'static str {
    match status.map(|s| s.code) {
        Some(1) => "OK",
        Some(2) => "ERROR",
        _ => "UNSET",
    }
}

fn check_traces(req: &ExportTraceServiceRequest) -> Result<(), TestCaseError> {
    let out = traces::convert(req)
        .map_err(|e| TestCaseError::fail(format!("convert returned Err: {e}")))?;
    let mut items = 0;
    let mut valid = Vec::new();
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                items += 1;
                if span_valid(s) {
                    valid.push((rs.resource.as_ref(), ss.scope.as_ref(), s));
                }
            }
        }
    }
    check_counts(&out, items, valid.len())?;
    let Some(b) = batch(&out, SPANS) else {
        prop_assert!(valid.is_empty());
        return Ok(());
    };
    prop_assert_eq!(out.batches.len(), 1);

    let (trace_id, span_id, parent) = (
        ids(b, "trace_id"),
        ids(b, "span_id"),
        ids(b, "parent_span_id"),
    );
    let (start, end, duration) = (
        times(b, "start_time"),
        times(b, "end_time"),
        i64s(b, "duration_ns"),
    );
    let is_root = bools(b, "is_root");
    let attributes = strs(b, "attributes");
    let resource_attributes = strs(b, "resource_attributes");
    let (service, name, kind, status, status_message) = (
        strs(b, "service_name"),
        strs(b, "span_name"),
        strs(b, "span_kind"),
        strs(b, "status_code"),
        strs(b, "status_message"),
    );
    let (scope_name, trace_state, flags) = (
        strs(b, "scope_name"),
        strs(b, "trace_state"),
        i64s(b, "flags"),
    );
    let string_cols: Vec<(&str, Vec<Option<String>>)> = SPAN_STRING_KEYS
        .iter()
        .map(|k| (*k, strs(b, &k.replace('.', "_"))))
        .collect();
    let (http_status, grpc_status) = (
        i32s(b, "http_response_status_code"),
        i32s(b, "rpc_grpc_status_code"),
    );
    let (events, links) = (lists(b, "events"), lists(b, "links"));

    for (row, (res, scope, s)) in valid.iter().enumerate() {
        // (c) ids in input order, derived columns.
        prop_assert_eq!(
            trace_id[row].as_deref(),
            Some(&s.trace_id[..]),
            "row {}",
            row
        );
        prop_assert_eq!(span_id[row].as_deref(), Some(&s.span_id[..]), "row {}", row);
        prop_assert_eq!(
            parent[row].as_deref(),
            non_empty_bytes(&s.parent_span_id),
            "row {}",
            row
        );
        prop_assert_eq!(is_root[row], Some(s.parent_span_id.is_empty()));
        let (st, et) = (s.start_time_unix_nano as i64, s.end_time_unix_nano as i64);
        prop_assert_eq!(start[row], Some(st));
        prop_assert_eq!(end[row], Some(et));
        prop_assert_eq!(duration[row], Some(et - st));
        prop_assert_eq!(name[row].as_deref(), Some(s.name.as_str()));
        prop_assert_eq!(kind[row].as_deref(), Some(kind_name(s.kind)));
        prop_assert_eq!(status[row].as_deref(), Some(status_name(s.status.as_ref())));
        prop_assert_eq!(
            status_message[row].as_deref(),
            s.status.as_ref().and_then(|st| non_empty(&st.message))
        );
        prop_assert_eq!(trace_state[row].as_deref(), non_empty(&s.trace_state));
        prop_assert_eq!(flags[row], Some(i64::from(s.flags)));
        prop_assert_eq!(
            scope_name[row].as_deref(),
            scope.and_then(|sc| non_empty(&sc.name))
        );
        prop_assert_eq!(&service[row], &Some(service_name(*res)));
        check_json(
            &resource_attributes[row],
            resource_json(*res),
            "resource_attributes",
        )?;

        // (d) attributes JSON = everything no column holds.
        check_json(
            &attributes[row],
            expected_attrs(&s.attributes, span_column_holds),
            &format!("span row {row} attributes"),
        )?;
        // ... and what left the JSON is in its column (legacy keys only fill a gap).
        for (key, col) in &string_cols {
            let legacy = match *key {
                "http.request.method" => attr_str(&s.attributes, "http.method"),
                "db.system" => attr_str(&s.attributes, "db.system.name"),
                _ => None,
            };
            let want = attr_str(&s.attributes, key).or(legacy);
            prop_assert_eq!(col[row].as_deref(), want, "column for {}", key);
        }
        let want_http = attr_i32(&s.attributes, "http.response.status_code")
            .or_else(|| attr_i32(&s.attributes, "http.status_code"));
        prop_assert_eq!(http_status[row], want_http);
        prop_assert_eq!(
            grpc_status[row],
            attr_i32(&s.attributes, "rpc.grpc.status_code")
        );

        // Events and links: one struct per input item, attributes kept whole.
        let ev = events[row].as_struct();
        prop_assert_eq!(ev.len(), s.events.len());
        let ev_attrs = ev.column_by_name("attributes").unwrap().as_string::<i32>();
        let ev_time = ev
            .column_by_name("time")
            .unwrap()
            .as_primitive::<TimestampNanosecondType>();
        for (i, e) in s.events.iter().enumerate() {
            check_json(
                &ev_attrs.is_valid(i).then(|| ev_attrs.value(i).to_owned()),
                expected_attrs(&e.attributes, |_| false),
                "event attributes",
            )?;
            let want = i64::try_from(e.time_unix_nano).unwrap_or(i64::MAX);
            prop_assert_eq!(ev_time.value(i), want);
        }
        let lk = links[row].as_struct();
        prop_assert_eq!(lk.len(), s.links.len());
        let lk_trace = lk
            .column_by_name("trace_id")
            .unwrap()
            .as_fixed_size_binary();
        let lk_attrs = lk.column_by_name("attributes").unwrap().as_string::<i32>();
        for (i, l) in s.links.iter().enumerate() {
            prop_assert_eq!(lk_trace.value(i), &l.trace_id[..]);
            check_json(
                &lk_attrs.is_valid(i).then(|| lk_attrs.value(i).to_owned()),
                expected_attrs(&l.attributes, |_| false),
                "link attributes",
            )?;
        }
    }
    Ok(())
}

fn non_empty_bytes(b: &[u8]) -> Option<&[u8]> {
    (!b.is_empty()).then_some(b)
}

// ---------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------

fn histogram_valid(p: &HistogramDataPoint) -> bool {
    fits(p.count)
        && p.bucket_counts.iter().all(|c| fits(*c))
        && (p.bucket_counts.is_empty() || p.bucket_counts.len() == p.explicit_bounds.len() + 1)
        && fits(p.time_unix_nano)
        && fits(p.start_time_unix_nano)
}

fn exp_valid(p: &ExponentialHistogramDataPoint) -> bool {
    let buckets_fit = |b: &Option<Buckets>| {
        b.as_ref()
            .is_none_or(|b| b.bucket_counts.iter().all(|c| fits(*c)))
    };
    fits(p.count)
        && fits(p.zero_count)
        && buckets_fit(&p.positive)
        && buckets_fit(&p.negative)
        && fits(p.time_unix_nano)
        && fits(p.start_time_unix_nano)
}

fn u64s_as_i64(v: &[u64]) -> Vec<i64> {
    v.iter().map(|c| *c as i64).collect()
}

fn temporality_name(t: i32) -> Option<&'static str> {
    match t {
        1 => Some("delta"),
        2 => Some("cumulative"),
        _ => None,
    }
}

/// The common columns every metric table shares.
struct Common {
    name: Vec<Option<String>>,
    time: Vec<Option<i64>>,
    start: Vec<Option<i64>>,
    attributes: Vec<Option<String>>,
    flags: Vec<Option<i64>>,
    service: Vec<Option<String>>,
}

impl Common {
    fn new(b: &RecordBatch) -> Self {
        Self {
            name: strs(b, "metric_name"),
            time: times(b, "time"),
            start: times(b, "start_time"),
            attributes: strs(b, "attributes"),
            flags: i64s(b, "flags"),
            service: strs(b, "service_name"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        row: usize,
        res: Option<&Resource>,
        m: &Metric,
        time: u64,
        start: u64,
        attributes: &[KeyValue],
        flags: u32,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.name[row].as_deref(), Some(m.name.as_str()));
        prop_assert_eq!(self.time[row], Some(time as i64));
        prop_assert_eq!(self.start[row], (start != 0).then_some(start as i64));
        prop_assert_eq!(self.flags[row], Some(i64::from(flags)));
        prop_assert_eq!(&self.service[row], &Some(service_name(res)));
        check_json(
            &self.attributes[row],
            expected_attrs(attributes, |_| false),
            "point attributes",
        )
    }
}

/// The `exemplars` cell of one row against the input exemplars.
fn check_exemplars(cell: &ArrayRef, want: &[Exemplar]) -> Result<(), TestCaseError> {
    let ex = cell.as_struct();
    prop_assert_eq!(ex.len(), want.len());
    let value = ex
        .column_by_name("value")
        .unwrap()
        .as_primitive::<Float64Type>();
    let value_int = ex
        .column_by_name("value_int")
        .unwrap()
        .as_primitive::<Int64Type>();
    let trace_id = ex
        .column_by_name("trace_id")
        .unwrap()
        .as_fixed_size_binary();
    let span_id = ex.column_by_name("span_id").unwrap().as_fixed_size_binary();
    for (i, e) in want.iter().enumerate() {
        let (v, vi) = match e.value {
            Some(exemplar::Value::AsDouble(d)) => (Some(d), None),
            Some(exemplar::Value::AsInt(n)) => (Some(n as f64), Some(n)),
            None => (None, None),
        };
        match v {
            Some(v) => prop_assert_eq!(value.value(i).to_bits(), v.to_bits()),
            None => prop_assert!(value.value(i).is_nan()),
        }
        prop_assert_eq!(value_int.is_valid(i).then(|| value_int.value(i)), vi);
        let tid = trace_id.is_valid(i).then(|| trace_id.value(i));
        prop_assert_eq!(tid, (e.trace_id.len() == 16).then_some(&e.trace_id[..]));
        let sid = span_id.is_valid(i).then(|| span_id.value(i));
        prop_assert_eq!(sid, (e.span_id.len() == 8).then_some(&e.span_id[..]));
    }
    Ok(())
}

fn check_metrics(req: &ExportMetricsServiceRequest) -> Result<(), TestCaseError> {
    let out = metrics::convert(req)
        .map_err(|e| TestCaseError::fail(format!("convert returned Err: {e}")))?;
    let mut items = 0;
    let mut number = Vec::new();
    let mut hist = Vec::new();
    let mut exp = Vec::new();
    let mut summary = Vec::new();
    for rm in &req.resource_metrics {
        let res = rm.resource.as_ref();
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                match &m.data {
                    // A metric without data is one rejected item.
                    None => items += 1,
                    Some(Data::Gauge(g)) => {
                        items += g.data_points.len();
                        number.extend(
                            g.data_points
                                .iter()
                                .filter(|p| fits(p.time_unix_nano) && fits(p.start_time_unix_nano))
                                .map(|p| (res, m, p, "gauge", None, None)),
                        );
                    }
                    Some(Data::Sum(s)) => {
                        items += s.data_points.len();
                        number.extend(
                            s.data_points
                                .iter()
                                .filter(|p| fits(p.time_unix_nano) && fits(p.start_time_unix_nano))
                                .map(|p| {
                                    let t = temporality_name(s.aggregation_temporality);
                                    (res, m, p, "sum", t, Some(s.is_monotonic))
                                }),
                        );
                    }
                    Some(Data::Histogram(h)) => {
                        items += h.data_points.len();
                        let t = temporality_name(h.aggregation_temporality);
                        hist.extend(
                            h.data_points
                                .iter()
                                .filter(|p| histogram_valid(p))
                                .map(|p| (res, m, p, t)),
                        );
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        items += h.data_points.len();
                        let t = temporality_name(h.aggregation_temporality);
                        exp.extend(
                            h.data_points
                                .iter()
                                .filter(|p| exp_valid(p))
                                .map(|p| (res, m, p, t)),
                        );
                    }
                    Some(Data::Summary(s)) => {
                        items += s.data_points.len();
                        summary.extend(
                            s.data_points
                                .iter()
                                .filter(|p| {
                                    fits(p.count)
                                        && fits(p.time_unix_nano)
                                        && fits(p.start_time_unix_nano)
                                })
                                .map(|p| (res, m, p)),
                        );
                    }
                }
            }
        }
    }
    let valid = number.len() + hist.len() + exp.len() + summary.len();
    check_counts(&out, items, valid)?;
    let tables = [
        (METRIC_POINTS, number.len()),
        (HISTOGRAM_POINTS, hist.len()),
        (EXP_HISTOGRAM_POINTS, exp.len()),
        (SUMMARY_POINTS, summary.len()),
    ];
    for (table, rows) in tables {
        prop_assert_eq!(
            batch(&out, table).map_or(0, |b| b.num_rows()),
            rows,
            "{}",
            table
        );
    }

    if let Some(b) = batch(&out, METRIC_POINTS) {
        let common = Common::new(b);
        let (ty, temporality) = (strs(b, "metric_type"), strs(b, "temporality"));
        let (value, value_int) = (f64_bits(b, "value"), i64s(b, "value_int"));
        let monotonic = bools(b, "is_monotonic");
        let exemplars = lists(b, "exemplars");
        for (row, (res, m, p, kind, t, mono)) in number.iter().enumerate() {
            common.check(
                row,
                *res,
                m,
                p.time_unix_nano,
                p.start_time_unix_nano,
                &p.attributes,
                p.flags,
            )?;
            prop_assert_eq!(ty[row].as_deref(), Some(*kind));
            prop_assert_eq!(temporality[row].as_deref(), *t);
            prop_assert_eq!(monotonic[row], *mono);
            // (e) value_int is `as_int` exactly; value is the double (or the int as a double).
            match p.value {
                Some(number_data_point::Value::AsInt(i)) => {
                    prop_assert_eq!(value_int[row], Some(i));
                    prop_assert_eq!(value[row], Some((i as f64).to_bits()));
                }
                Some(number_data_point::Value::AsDouble(d)) => {
                    prop_assert_eq!(value_int[row], None);
                    prop_assert_eq!(value[row], Some(d.to_bits()));
                }
                None => {
                    prop_assert_eq!(value_int[row], None);
                    prop_assert!(value[row].is_some_and(|v| f64::from_bits(v).is_nan()));
                }
            }
            check_exemplars(&exemplars[row], &p.exemplars)?;
        }
    }

    if let Some(b) = batch(&out, HISTOGRAM_POINTS) {
        let common = Common::new(b);
        let temporality = strs(b, "temporality");
        let count = i64s(b, "count");
        let (sum, min, max) = (f64_bits(b, "sum"), f64_bits(b, "min"), f64_bits(b, "max"));
        let (buckets, bounds) = (lists(b, "bucket_counts"), lists(b, "explicit_bounds"));
        let exemplars = lists(b, "exemplars");
        for (row, (res, m, p, t)) in hist.iter().enumerate() {
            common.check(
                row,
                *res,
                m,
                p.time_unix_nano,
                p.start_time_unix_nano,
                &p.attributes,
                p.flags,
            )?;
            prop_assert_eq!(temporality[row].as_deref(), *t);
            prop_assert_eq!(count[row], Some(p.count as i64));
            prop_assert_eq!(sum[row], p.sum.map(f64::to_bits));
            prop_assert_eq!(min[row], p.min.map(f64::to_bits));
            prop_assert_eq!(max[row], p.max.map(f64::to_bits));
            // (e) bucket counts and bounds round-trip.
            prop_assert_eq!(list_i64(&buckets[row]), u64s_as_i64(&p.bucket_counts));
            let want: Vec<u64> = p.explicit_bounds.iter().map(|f| f.to_bits()).collect();
            prop_assert_eq!(list_f64_bits(&bounds[row]), want);
            check_exemplars(&exemplars[row], &p.exemplars)?;
        }
    }

    if let Some(b) = batch(&out, EXP_HISTOGRAM_POINTS) {
        let common = Common::new(b);
        let temporality = strs(b, "temporality");
        let (count, zero_count) = (i64s(b, "count"), i64s(b, "zero_count"));
        let (scale, pos_off, neg_off) = (
            i32s(b, "scale"),
            i32s(b, "positive_offset"),
            i32s(b, "negative_offset"),
        );
        let zero_threshold = f64_bits(b, "zero_threshold");
        let (pos, neg) = (
            lists(b, "positive_bucket_counts"),
            lists(b, "negative_bucket_counts"),
        );
        let exemplars = lists(b, "exemplars");
        for (row, (res, m, p, t)) in exp.iter().enumerate() {
            common.check(
                row,
                *res,
                m,
                p.time_unix_nano,
                p.start_time_unix_nano,
                &p.attributes,
                p.flags,
            )?;
            prop_assert_eq!(temporality[row].as_deref(), *t);
            prop_assert_eq!(count[row], Some(p.count as i64));
            prop_assert_eq!(zero_count[row], Some(p.zero_count as i64));
            prop_assert_eq!(scale[row], Some(p.scale));
            prop_assert_eq!(zero_threshold[row], Some(p.zero_threshold.to_bits()));
            let empty = Vec::new();
            let counts =
                |b: &Option<Buckets>| u64s_as_i64(b.as_ref().map_or(&empty, |b| &b.bucket_counts));
            prop_assert_eq!(
                pos_off[row],
                Some(p.positive.as_ref().map_or(0, |b| b.offset))
            );
            prop_assert_eq!(
                neg_off[row],
                Some(p.negative.as_ref().map_or(0, |b| b.offset))
            );
            prop_assert_eq!(list_i64(&pos[row]), counts(&p.positive));
            prop_assert_eq!(list_i64(&neg[row]), counts(&p.negative));
            check_exemplars(&exemplars[row], &p.exemplars)?;
        }
    }

    if let Some(b) = batch(&out, SUMMARY_POINTS) {
        let common = Common::new(b);
        let (count, sum) = (i64s(b, "count"), f64_bits(b, "sum"));
        let quantiles = lists(b, "quantiles");
        for (row, (res, m, p)) in summary.iter().enumerate() {
            common.check(
                row,
                *res,
                m,
                p.time_unix_nano,
                p.start_time_unix_nano,
                &p.attributes,
                p.flags,
            )?;
            prop_assert_eq!(count[row], Some(p.count as i64));
            prop_assert_eq!(sum[row], Some(p.sum.to_bits()));
            let q = quantiles[row].as_struct();
            let got: Vec<(u64, u64)> = (0..q.len())
                .map(|i| {
                    let col = |n| q.column_by_name(n).unwrap().as_primitive::<Float64Type>();
                    (
                        col("quantile").value(i).to_bits(),
                        col("value").value(i).to_bits(),
                    )
                })
                .collect();
            let want: Vec<(u64, u64)> = p
                .quantile_values
                .iter()
                .map(|q| (q.quantile.to_bits(), q.value.to_bits()))
                .collect();
            prop_assert_eq!(got, want);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------

fn log_valid(r: &LogRecord) -> bool {
    (r.trace_id.is_empty() || r.trace_id.len() == 16)
        && (r.span_id.is_empty() || r.span_id.len() == 8)
        && fits(r.time_unix_nano)
        && fits(r.observed_time_unix_nano)
}

fn check_logs(req: &ExportLogsServiceRequest) -> Result<(), TestCaseError> {
    let out = logs::convert(req)
        .map_err(|e| TestCaseError::fail(format!("convert returned Err: {e}")))?;
    let mut items = 0;
    let mut valid = Vec::new();
    for rl in &req.resource_logs {
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                items += 1;
                if log_valid(r) {
                    valid.push((rl.resource.as_ref(), r));
                }
            }
        }
    }
    check_counts(&out, items, valid.len())?;
    let Some(b) = batch(&out, LOGS) else {
        prop_assert!(valid.is_empty());
        return Ok(());
    };
    let (time, observed) = (times(b, "time"), times(b, "observed_time"));
    let (trace_id, span_id) = (ids(b, "trace_id"), ids(b, "span_id"));
    let (body, attributes, severity) = (
        strs(b, "body"),
        strs(b, "attributes"),
        i32s(b, "severity_number"),
    );
    let (service, resource_attributes) = (strs(b, "service_name"), strs(b, "resource_attributes"));
    for (row, (res, r)) in valid.iter().enumerate() {
        let t = r.time_unix_nano as i64;
        let o = r.observed_time_unix_nano as i64;
        prop_assert_eq!(time[row], Some(if t != 0 { t } else { o }));
        prop_assert_eq!(observed[row], (o != 0).then_some(o));
        prop_assert_eq!(trace_id[row].as_deref(), non_empty_bytes(&r.trace_id));
        prop_assert_eq!(span_id[row].as_deref(), non_empty_bytes(&r.span_id));
        prop_assert_eq!(severity[row], Some(r.severity_number));
        prop_assert_eq!(&service[row], &Some(service_name(*res)));
        check_json(
            &resource_attributes[row],
            resource_json(*res),
            "resource_attributes",
        )?;
        check_json(
            &attributes[row],
            expected_attrs(&r.attributes, |_| false),
            "log attributes",
        )?;
        // A string body as is; any other value as typed JSON; no value as NULL.
        match r.body.as_ref().and_then(|b| b.value.as_ref()) {
            None => prop_assert_eq!(&body[row], &None),
            Some(V::StringValue(s)) => prop_assert_eq!(body[row].as_deref(), Some(s.as_str())),
            Some(_) => check_json(&body[row], Some(oracle(r.body.as_ref())), "log body")?,
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// OTLP/JSON encoder (test side), following the spec's JSON mapping
// ---------------------------------------------------------------------------------------

/// Spellings the encoder varies: the spec's form is camelCase keys, lowercase hex and 64-bit
/// integers as decimal strings; receivers must also accept the alternatives.
#[derive(Debug, Clone, Copy)]
struct Style {
    snake_case: bool,
    ints_as_numbers: bool,
    upper_hex: bool,
    doubles_as_strings: bool,
}

impl Style {
    fn key(&self, camel: &'static str, snake: &'static str) -> String {
        if self.snake_case { snake } else { camel }.to_owned()
    }

    fn u64(&self, v: u64) -> Json {
        if self.ints_as_numbers {
            Json::from(v)
        } else {
            Json::String(v.to_string())
        }
    }

    fn i64(&self, v: i64) -> Json {
        if self.ints_as_numbers {
            Json::from(v)
        } else {
            Json::String(v.to_string())
        }
    }

    fn double(&self, d: f64) -> Json {
        if d.is_nan() {
            Json::String("NaN".into())
        } else if d.is_infinite() {
            Json::String(if d > 0.0 { "Infinity" } else { "-Infinity" }.into())
        } else if self.doubles_as_strings {
            Json::String(format!("{d:?}"))
        } else {
            Json::from(d)
        }
    }

    fn hex(&self, b: &[u8]) -> Json {
        let s = hex::encode(b);
        Json::String(if self.upper_hex { s.to_uppercase() } else { s })
    }
}

struct Obj(Map<String, Json>);

impl Obj {
    fn new() -> Self {
        Self(Map::new())
    }

    fn set(mut self, key: String, v: Json) -> Self {
        self.0.insert(key, v);
        self
    }

    fn done(self) -> Json {
        Json::Object(self.0)
    }
}

fn enc_any_value(st: Style, v: &AnyValue) -> Json {
    let o = Obj::new();
    match &v.value {
        None => o,
        Some(V::StringValue(s)) => o.set(st.key("stringValue", "string_value"), s.clone().into()),
        Some(V::BoolValue(b)) => o.set(st.key("boolValue", "bool_value"), (*b).into()),
        Some(V::IntValue(i)) => o.set(st.key("intValue", "int_value"), st.i64(*i)),
        Some(V::DoubleValue(d)) => o.set(st.key("doubleValue", "double_value"), st.double(*d)),
        Some(V::BytesValue(b)) => o.set(
            st.key("bytesValue", "bytes_value"),
            base64::engine::general_purpose::STANDARD.encode(b).into(),
        ),
        Some(V::ArrayValue(a)) => o.set(
            st.key("arrayValue", "array_value"),
            Obj::new()
                .set(
                    "values".into(),
                    a.values.iter().map(|v| enc_any_value(st, v)).collect(),
                )
                .done(),
        ),
        Some(V::KvlistValue(kv)) => o.set(
            st.key("kvlistValue", "kvlist_value"),
            Obj::new()
                .set("values".into(), enc_attrs(st, &kv.values))
                .done(),
        ),
        Some(V::StringValueStrindex(i)) => o.set(
            st.key("stringValueStrindex", "string_value_strindex"),
            (*i).into(),
        ),
    }
    .done()
}

fn enc_attrs(st: Style, kvs: &[KeyValue]) -> Json {
    kvs.iter()
        .map(|kv| {
            let mut o = Obj::new().set("key".into(), kv.key.clone().into());
            if let Some(v) = &kv.value {
                o = o.set("value".into(), enc_any_value(st, v));
            }
            if kv.key_strindex != 0 {
                o = o.set(
                    st.key("keyStrindex", "key_strindex"),
                    kv.key_strindex.into(),
                );
            }
            o.done()
        })
        .collect()
}

fn enc_resource(st: Style, r: &Resource) -> Json {
    let refs: Json = r
        .entity_refs
        .iter()
        .map(|e| {
            Obj::new()
                .set(
                    st.key("schemaUrl", "schema_url"),
                    e.schema_url.clone().into(),
                )
                .set("type".into(), e.r#type.clone().into())
                .set(st.key("idKeys", "id_keys"), e.id_keys.clone().into())
                .set(
                    st.key("descriptionKeys", "description_keys"),
                    e.description_keys.clone().into(),
                )
                .done()
        })
        .collect();
    Obj::new()
        .set("attributes".into(), enc_attrs(st, &r.attributes))
        .set(
            st.key("droppedAttributesCount", "dropped_attributes_count"),
            r.dropped_attributes_count.into(),
        )
        .set(st.key("entityRefs", "entity_refs"), refs)
        .done()
}

fn enc_scope(st: Style, s: &InstrumentationScope) -> Json {
    Obj::new()
        .set("name".into(), s.name.clone().into())
        .set("version".into(), s.version.clone().into())
        .set("attributes".into(), enc_attrs(st, &s.attributes))
        .set(
            st.key("droppedAttributesCount", "dropped_attributes_count"),
            s.dropped_attributes_count.into(),
        )
        .done()
}

fn enc_span(st: Style, s: &Span) -> Json {
    let events: Json = s
        .events
        .iter()
        .map(|e| {
            Obj::new()
                .set(
                    st.key("timeUnixNano", "time_unix_nano"),
                    st.u64(e.time_unix_nano),
                )
                .set("name".into(), e.name.clone().into())
                .set("attributes".into(), enc_attrs(st, &e.attributes))
                .set(
                    st.key("droppedAttributesCount", "dropped_attributes_count"),
                    e.dropped_attributes_count.into(),
                )
                .done()
        })
        .collect();
    let links: Json = s
        .links
        .iter()
        .map(|l| {
            Obj::new()
                .set(st.key("traceId", "trace_id"), st.hex(&l.trace_id))
                .set(st.key("spanId", "span_id"), st.hex(&l.span_id))
                .set(
                    st.key("traceState", "trace_state"),
                    l.trace_state.clone().into(),
                )
                .set("attributes".into(), enc_attrs(st, &l.attributes))
                .set(
                    st.key("droppedAttributesCount", "dropped_attributes_count"),
                    l.dropped_attributes_count.into(),
                )
                .set("flags".into(), l.flags.into())
                .done()
        })
        .collect();
    let mut o = Obj::new()
        .set(st.key("traceId", "trace_id"), st.hex(&s.trace_id))
        .set(st.key("spanId", "span_id"), st.hex(&s.span_id))
        .set(
            st.key("traceState", "trace_state"),
            s.trace_state.clone().into(),
        )
        .set(
            st.key("parentSpanId", "parent_span_id"),
            st.hex(&s.parent_span_id),
        )
        .set("flags".into(), s.flags.into())
        .set("name".into(), s.name.clone().into())
        .set("kind".into(), s.kind.into())
        .set(
            st.key("startTimeUnixNano", "start_time_unix_nano"),
            st.u64(s.start_time_unix_nano),
        )
        .set(
            st.key("endTimeUnixNano", "end_time_unix_nano"),
            st.u64(s.end_time_unix_nano),
        )
        .set("attributes".into(), enc_attrs(st, &s.attributes))
        .set(
            st.key("droppedAttributesCount", "dropped_attributes_count"),
            s.dropped_attributes_count.into(),
        )
        .set("events".into(), events)
        .set(
            st.key("droppedEventsCount", "dropped_events_count"),
            s.dropped_events_count.into(),
        )
        .set("links".into(), links)
        .set(
            st.key("droppedLinksCount", "dropped_links_count"),
            s.dropped_links_count.into(),
        );
    if let Some(status) = &s.status {
        o = o.set(
            "status".into(),
            Obj::new()
                .set("message".into(), status.message.clone().into())
                .set("code".into(), status.code.into())
                .done(),
        );
    }
    o.done()
}

fn enc_trace_request(st: Style, req: &ExportTraceServiceRequest) -> String {
    let resource_spans: Json = req
        .resource_spans
        .iter()
        .map(|rs| {
            let scope_spans: Json = rs
                .scope_spans
                .iter()
                .map(|ss| {
                    let mut o = Obj::new()
                        .set(
                            "spans".into(),
                            ss.spans.iter().map(|s| enc_span(st, s)).collect(),
                        )
                        .set(
                            st.key("schemaUrl", "schema_url"),
                            ss.schema_url.clone().into(),
                        );
                    if let Some(scope) = &ss.scope {
                        o = o.set("scope".into(), enc_scope(st, scope));
                    }
                    o.done()
                })
                .collect();
            let mut o = Obj::new()
                .set(st.key("scopeSpans", "scope_spans"), scope_spans)
                .set(
                    st.key("schemaUrl", "schema_url"),
                    rs.schema_url.clone().into(),
                );
            if let Some(r) = &rs.resource {
                o = o.set("resource".into(), enc_resource(st, r));
            }
            o.done()
        })
        .collect();
    Obj::new()
        .set(st.key("resourceSpans", "resource_spans"), resource_spans)
        .done()
        .to_string()
}

/// Replaces every double attribute value of `req` by `f(value)`.
fn map_doubles(req: &mut ExportTraceServiceRequest, f: &dyn Fn(f64) -> f64) {
    fn kvs(kvs: &mut [KeyValue], f: &dyn Fn(f64) -> f64) {
        for kv in kvs {
            if let Some(v) = &mut kv.value {
                any(v, f);
            }
        }
    }
    fn any(v: &mut AnyValue, f: &dyn Fn(f64) -> f64) {
        match &mut v.value {
            Some(V::DoubleValue(d)) => *d = f(*d),
            Some(V::ArrayValue(a)) => a.values.iter_mut().for_each(|v| any(v, f)),
            Some(V::KvlistValue(l)) => kvs(&mut l.values, f),
            _ => {}
        }
    }
    for rs in &mut req.resource_spans {
        if let Some(r) = &mut rs.resource {
            kvs(&mut r.attributes, f);
        }
        for ss in &mut rs.scope_spans {
            if let Some(s) = &mut ss.scope {
                kvs(&mut s.attributes, f);
            }
            for s in &mut ss.spans {
                kvs(&mut s.attributes, f);
                s.events.iter_mut().for_each(|e| kvs(&mut e.attributes, f));
                s.links.iter_mut().for_each(|l| kvs(&mut l.attributes, f));
            }
        }
    }
}

/// What the decoder can be expected to return for a double `d`: NaN payloads are not part of
/// the JSON mapping ("NaN" decodes to `f64::NAN`); every other double comes back bit-exact,
/// whether written as a JSON number or a string.
fn decodable(d: f64) -> f64 {
    if d.is_nan() { f64::NAN } else { d }
}

fn style() -> impl Strategy<Value = Style> {
    (
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.3),
    )
        .prop_map(
            |(snake_case, ints_as_numbers, upper_hex, doubles_as_strings)| Style {
                snake_case,
                ints_as_numbers,
                upper_hex,
                doubles_as_strings,
            },
        )
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// (a)–(d): traces convert without error; counts add up; ids, derived columns and the
    /// attribute JSON match the oracles.
    #[test]
    fn traces_convert_faithfully(req in trace_request()) {
        check_traces(&req)?;
    }

    /// (a), (b), (e): all five metric types, including counts past `i64::MAX` and bucket
    /// counts that do not match the bounds.
    #[test]
    fn metrics_convert_faithfully(req in metrics_request()) {
        check_metrics(&req)?;
    }

    /// (a), (b): logs, with bodies of every kind and ids of random lengths.
    #[test]
    fn logs_convert_faithfully(req in logs_request()) {
        check_logs(&req)?;
    }

    /// The OTLP/JSON decoder reads back exactly the request a spec-following encoder wrote.
    #[test]
    fn otlp_json_decodes_what_was_encoded(req in trace_request(), st in style()) {
        let json = enc_trace_request(st, &req);
        let mut req = req;
        map_doubles(&mut req, &|d| decodable(d));
        let decoded = otlp_json::decode_traces(json.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("decode failed: {e}\n{json}")))?;
        prop_assert!(
            decoded.encode_to_vec() == req.encode_to_vec(),
            "decoded request differs\nJSON: {}\nwant: {:?}\n got: {:?}",
            json,
            req,
            decoded
        );
        // And what it decodes still converts.
        check_traces(&decoded)?;
    }
}

// ---------------------------------------------------------------------------------------
// Regressions the properties above found.
// ---------------------------------------------------------------------------------------

fn one_span(attributes: Vec<KeyValue>) -> ExportTraceServiceRequest {
    super::one_span_request(attributes)
}

#[test]
fn out_of_range_status_code_is_kept() {
    let big = KeyValue {
        key: "http.response.status_code".into(),
        value: Some(AnyValue {
            value: Some(V::IntValue(1 << 40)),
        }),
        key_strindex: 0,
    };
    let out = traces::convert(&one_span(vec![big])).unwrap();
    let b = batch(&out, SPANS).unwrap();
    assert_eq!(i32s(b, "http_response_status_code"), vec![None]);
    assert_eq!(
        strs(b, "attributes"),
        vec![Some(
            r#"{"http.response.status_code":1099511627776}"#.to_owned()
        )],
        "the attribute is neither in its column nor in the JSON"
    );
}

#[test]
fn json_number_doubles_decode_exactly() {
    // 5.5695513567627515e-264, found by `otlp_json_decodes_what_was_encoded`.
    let d = f64::from_bits(0x0946_72cd_c2e6_6c93);
    let json = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"attributes":[{{"key":"d","value":{{"doubleValue":{d:?}}}}}]}}]}}]}}]}}"#
    );
    let req = otlp_json::decode_traces(json.as_bytes()).unwrap();
    let attrs = &req.resource_spans[0].scope_spans[0].spans[0].attributes;
    let Some(V::DoubleValue(got)) = value_of(&attrs[0]) else {
        panic!("not a double: {attrs:?}")
    };
    assert_eq!(
        got.to_bits(),
        d.to_bits(),
        "{json}: decoded {got:?}, want {d:?}"
    );
}
