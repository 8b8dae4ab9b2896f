//! Whole requests of each signal, and empty and null ones.

use super::*;

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
                            trace_id: hex::decode("5b8efff798038103d269b633813fc60d").expect("hex"),
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
