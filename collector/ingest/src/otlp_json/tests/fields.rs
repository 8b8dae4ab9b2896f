//! The field rules: key spellings, ids, integers, enums, doubles, metric data, `AnyValue`,
//! nesting, and the response encoders.

use super::*;

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

    let err = decode_logs(&body(one_log(json!({"severityNumber": "INFO"})))).expect_err("bad enum");
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
    let mut decoded = crate::otlp_json::common::any_value(&ok, &ROOT, 1).expect("64 levels");
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
    let err =
        crate::otlp_json::common::any_value(&deep, &ROOT.key("body"), 1).expect_err("65 levels");
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
    let err =
        crate::otlp_json::common::any_value(&kv_deep, &ROOT, 1).expect_err("kvlist 65 levels");
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
