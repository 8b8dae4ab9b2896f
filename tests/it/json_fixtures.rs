//! Hand-written OTLP/JSON requests covering every metric type and the encoding edge cases of
//! the OTLP specification, checked value by value through SQL.

use serde_json::{Value, json};

use crate::{TestServer, fixture};

async fn post_json(s: &TestServer, path: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = s
        .client
        .post(s.otlp_http(path))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .expect("OTLP/HTTP reachable");
    let status = resp.status().as_u16();
    assert_eq!(
        resp.headers()["content-type"],
        "application/json",
        "answer in the request's encoding"
    );
    (status, resp.json().await.expect("JSON answer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_json_fixture_is_stored_exactly() {
    let s = TestServer::start().await;
    let (status, body) = post_json(&s, "/v1/traces", fixture("traces.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["partialSuccess"]["rejectedSpans"], json!("1"));
    let msg = body["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap_or_default();
    assert!(msg.contains("trace_id must be 16 bytes, got 2"), "{msg}");

    assert_eq!(s.count("SELECT count(*) FROM spans").await, 3);
    let row = s
        .sql(
            "SELECT trace_id, span_id, parent_span_id, service_name, service_version, \
             service_instance_id, deployment_environment, span_kind, status_code, is_root, is_error, \
             http_request_method, http_route, http_response_status_code, duration_ns, \
             json_get_int(attributes, 'retry.count'), json_get_float(attributes, 'ratio'), \
             json_get_bool(attributes, 'cached'), json_get_str(attributes, 'http.route'), \
             json_get_int(resource_attributes, 'host.cpu.count'), scope_name, scope_version, \
             array_length(events), events[1]['name'], json_get_str(events[1]['attributes'], 'exception.type'), \
             array_length(links), links[1]['span_id'], start_time \
             FROM spans WHERE span_name = 'POST /api/checkout'",
        )
        .await;
    let r = &row["rows"][0];
    let expected = json!([
        "5b8efff798038103d269b633813fc60c",
        "eee19b7ec3c1b174",
        null,
        "checkout",
        "1.4.2",
        "checkout-7f9c",
        "production",
        "SERVER",
        "UNSET",
        true,
        true,
        "POST",
        "/api/checkout",
        503,
        250000000,
        9007199254740993i64,
        0.25,
        false,
        null,
        8,
        "io.opentelemetry.http",
        "2.1.0",
        1,
        "exception",
        "Timeout",
        1,
        "0102030405060708"
    ]);
    for (i, want) in expected.as_array().unwrap().iter().enumerate() {
        assert_eq!(&r[i], want, "column {i} ({}) of {row}", row["columns"][i]);
    }
    assert!(
        r[27].as_str().unwrap().starts_with("2026-01-01T00:00:00"),
        "{}",
        r[27]
    );

    // Attributes of every type survive as typed JSON.
    let attrs = s
        .scalar("SELECT attributes FROM spans WHERE span_name = 'POST /api/checkout'")
        .await;
    let attrs: Value = serde_json::from_str(attrs.as_str().unwrap()).unwrap();
    assert_eq!(attrs["tags"], json!(["a", 2]));
    assert_eq!(attrs["payload"], json!({"bytes": "AQID"}));
    assert_eq!(attrs["empty"], Value::Null);
    assert!(
        attrs.get("http.request.method").is_none(),
        "promoted keys leave the JSON"
    );

    let client = s
        .sql(
            "SELECT span_kind, status_code, status_message, is_error, is_root, parent_span_id, \
             rpc_system, rpc_service, rpc_method, rpc_grpc_status_code, peer_service \
             FROM spans WHERE span_name = 'payment.Charge'",
        )
        .await;
    assert_eq!(
        client["rows"][0],
        json!([
            "CLIENT",
            "ERROR",
            "upstream unavailable",
            true,
            false,
            "eee19b7ec3c1b174",
            "grpc",
            "payment.Payment",
            "Charge",
            14,
            "payment"
        ])
    );
    let health = s
        .sql("SELECT service_name, status_code, is_error, resource_attributes FROM spans WHERE span_name = 'GET /healthz'")
        .await;
    assert_eq!(
        health["rows"][0],
        json!(["unknown_service", "OK", false, null])
    );

    // After a flush the same rows are read from Parquet, one file per hour.
    s.flush().await;
    assert_eq!(s.count("SELECT count(*) FROM spans").await, 3);
    assert_eq!(
        s.count("SELECT count(*) FROM spans WHERE is_error").await,
        2
    );
    let root = s.running.store.root().join("spans");
    assert!(root.join("date=2026-01-01/hour=00").is_dir());
    assert!(root.join("date=2026-01-01/hour=01").is_dir());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_json_fixture_covers_every_point_type() {
    let s = TestServer::start().await;
    let (status, body) = post_json(&s, "/v1/metrics", fixture("metrics.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["partialSuccess"]["rejectedDataPoints"], json!("1"));
    assert!(
        body["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("metric.without.data")
    );

    let points = s
        .sql(
            "SELECT metric_name, metric_type, value, value_int, temporality, is_monotonic, \
             json_get_int(attributes, 'cpu'), array_length(exemplars), service_instance_id \
             FROM metric_points ORDER BY metric_name, time",
        )
        .await;
    assert_eq!(
        points["rows"],
        json!([
            [
                "http.server.request.count",
                "sum",
                1200.0,
                1200,
                "cumulative",
                true,
                null,
                1,
                "frontend-1"
            ],
            [
                "process.cpu.utilization",
                "gauge",
                0.42,
                null,
                null,
                null,
                null,
                0,
                "frontend-1"
            ],
            [
                "process.cpu.utilization",
                "gauge",
                9007199254740992.0,
                9007199254740993i64,
                null,
                null,
                1,
                0,
                "frontend-1"
            ]
        ])
    );
    let ex = s
        .sql("SELECT exemplars[1]['value'], exemplars[1]['trace_id'], exemplars[1]['span_id'] FROM metric_points WHERE metric_type = 'sum'")
        .await;
    assert_eq!(
        ex["rows"][0],
        json!([0.5, "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"])
    );

    let hist = s
        .sql(
            "SELECT metric_unit, temporality, count, sum, min, max, bucket_counts, explicit_bounds, \
             json_get_str(attributes, 'http.route'), start_time FROM histogram_points",
        )
        .await;
    let h = &hist["rows"][0];
    assert_eq!(
        h.as_array().unwrap()[0..9],
        json!([
            "s",
            "delta",
            10,
            1.5,
            0.01,
            0.9,
            [2, 5, 3],
            [0.05, 0.25],
            "/api/cart"
        ])
        .as_array()
        .unwrap()[..]
    );
    assert!(h[9].as_str().unwrap().starts_with("2025-12-31T23:59:00"));

    let exp = s
        .sql(
            "SELECT temporality, count, sum, scale, zero_count, zero_threshold, positive_offset, \
             positive_bucket_counts, negative_offset, negative_bucket_counts, min FROM exp_histogram_points",
        )
        .await;
    assert_eq!(
        exp["rows"][0],
        json!(["cumulative", 7, 70.5, 3, 1, 0.0, -2, [1, 2, 3], 0, [], null])
    );

    let summary = s
        .sql("SELECT count, sum, quantiles[1]['quantile'], quantiles[1]['value'], quantiles[2]['quantile'] FROM summary_points")
        .await;
    assert_eq!(summary["rows"][0], json!([4, 40.0, 0.0, 1.5, 0.99]));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_json_fixture_keeps_bodies_and_links() {
    let s = TestServer::start().await;
    let (status, body) = post_json(&s, "/v1/logs", fixture("logs.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({}), "nothing rejected, so no partialSuccess");
    let rows = s
        .sql(
            "SELECT service_name, severity_number, severity_text, body, trace_id, span_id, \
             event_name, json_get_str(attributes, 'customer.tier'), time = observed_time \
             FROM logs ORDER BY time",
        )
        .await;
    assert_eq!(
        rows["rows"],
        json!([
            [
                "payment",
                17,
                "ERROR",
                "charge failed: card declined",
                "5b8efff798038103d269b633813fc60c",
                "00f067aa0ba902b7",
                null,
                "gold",
                false
            ],
            [
                "payment",
                9,
                null,
                "{\"amount\":12.5}",
                null,
                null,
                "payment.settled",
                null,
                true
            ],
            ["payment", 0, null, null, null, null, null, null, null]
        ])
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_json_request_succeeds() {
    let s = TestServer::start().await;
    for path in ["/v1/traces", "/v1/metrics", "/v1/logs"] {
        let (status, body) = post_json(&s, path, b"{}".to_vec()).await;
        assert_eq!((status, body), (200, json!({})), "{path}");
    }
    s.stop().await;
}
