//! The official OpenTelemetry Rust SDK and its OTLP exporters against a real server: gRPC and
//! HTTP/protobuf for traces, gRPC for metrics and logs; SQL must return exactly what was sent.

use opentelemetry::KeyValue;
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanExporter as _};
use serde_json::json;

use crate::TestServer;

/// Records one small trace with `tracer`: a SERVER root with a failing CLIENT child.
pub(crate) fn record_trace(provider: &SdkTracerProvider, route: &str) {
    let tracer = provider.tracer("headroom-it");
    let root = tracer
        .span_builder(format!("GET {route}"))
        .with_kind(SpanKind::Server)
        .with_attributes(vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.route", route.to_owned()),
            KeyValue::new("http.response.status_code", 200i64),
            KeyValue::new("user.id", 42i64),
        ])
        .start(&tracer);
    let cx = opentelemetry::Context::current_with_span(root);
    let mut child = tracer
        .span_builder("SELECT orders")
        .with_kind(SpanKind::Client)
        .with_attributes(vec![
            KeyValue::new("db.system", "postgresql"),
            KeyValue::new("server.address", "db:5432"),
        ])
        .start_with_context(&tracer, &cx);
    child.add_event("retry", vec![KeyValue::new("attempt", 2i64)]);
    child.set_status(Status::error("connection reset"));
    child.end();
    cx.span().end();
}

pub(crate) fn resource(service: &str) -> Resource {
    Resource::builder()
        .with_service_name(service.to_owned())
        .with_attribute(KeyValue::new("service.version", "9.9.9"))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_traces_over_grpc_with_batch_processor() {
    let s = TestServer::start().await;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(s.grpc_endpoint())
        .with_compression(opentelemetry_otlp::Compression::Gzip)
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource("sdk-grpc"))
        .build();
    for i in 0..25 {
        record_trace(&provider, &format!("/orders/{}", i % 5));
    }
    let p = provider.clone();
    tokio::task::spawn_blocking(move || p.force_flush())
        .await
        .unwrap()
        .unwrap();

    assert_eq!(
        s.count("SELECT count(*) FROM spans WHERE service_name = 'sdk-grpc'")
            .await,
        50
    );
    assert_eq!(
        s.count("SELECT count(DISTINCT trace_id) FROM spans").await,
        25
    );
    let v = s
        .sql(
            "SELECT span_kind, is_root, is_error, count(*), min(service_version), \
             count(http_route), count(db_system), sum(array_length(events)) \
             FROM spans GROUP BY span_kind, is_root, is_error ORDER BY span_kind",
        )
        .await;
    assert_eq!(
        v["rows"],
        json!([
            ["CLIENT", false, true, 25, "9.9.9", 0, 25, 25],
            ["SERVER", true, false, 25, "9.9.9", 25, 0, 0]
        ])
    );
    // Every child points at a root of the same trace.
    assert_eq!(
        s.count(
            "SELECT count(*) FROM spans c JOIN spans p \
             ON c.parent_span_id = p.span_id AND c.trace_id = p.trace_id \
             WHERE c.span_kind = 'CLIENT' AND p.span_kind = 'SERVER'"
        )
        .await,
        25
    );
    assert_eq!(
        s.count("SELECT count(*) FROM spans WHERE json_get_int(attributes, 'user.id') = 42")
            .await,
        25
    );
    let p = provider.clone();
    tokio::task::spawn_blocking(move || p.shutdown())
        .await
        .unwrap()
        .unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_traces_over_http_protobuf() {
    let s = TestServer::start().await;
    // The SDK records into memory; the official HTTP exporter then sends the finished spans.
    let memory = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(memory.clone())
        .with_resource(resource("sdk-http"))
        .build();
    for i in 0..10 {
        record_trace(&provider, &format!("/cart/{i}"));
    }
    let spans = memory.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 20);
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(s.otlp_http("/v1/traces"))
        .build()
        .unwrap();
    exporter.set_resource(&resource("sdk-http"));
    exporter.export(spans).await.expect("HTTP export accepted");

    assert_eq!(
        s.count("SELECT count(*) FROM spans WHERE service_name = 'sdk-http'")
            .await,
        20
    );
    assert_eq!(
        s.sql("SELECT http_route FROM spans WHERE is_root ORDER BY http_route LIMIT 2")
            .await["rows"],
        json!([["/cart/0"], ["/cart/1"]])
    );
    assert_eq!(
        s.count(
            "SELECT count(*) FROM spans WHERE status_message = 'connection reset' AND is_error"
        )
        .await,
        10
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_metrics_and_logs_over_grpc() {
    let s = TestServer::start().await;
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(s.grpc_endpoint())
        .build()
        .unwrap();
    let meters = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_periodic_exporter(exporter)
        .with_resource(resource("sdk-metrics"))
        .build();
    let meter = meters.meter("headroom-it");
    let hist = meter
        .f64_histogram("http.server.request.duration")
        .with_unit("s")
        .build();
    for v in [0.003, 0.02, 0.02, 0.4, 1.2] {
        hist.record(v, &[KeyValue::new("http.route", "/a")]);
    }
    let counter = meter.u64_counter("jobs.processed").build();
    counter.add(7, &[KeyValue::new("queue", "q1")]);
    counter.add(5, &[KeyValue::new("queue", "q1")]);
    let gauge = meter.f64_gauge("queue.depth").build();
    gauge.record(3.5, &[]);
    let m = meters.clone();
    tokio::task::spawn_blocking(move || m.force_flush())
        .await
        .unwrap()
        .unwrap();

    let h = s
        .sql(
            "SELECT metric_unit, temporality, count, sum, min, max, \
             json_get_str(attributes, 'http.route'), array_length(bucket_counts) - array_length(explicit_bounds) \
             FROM histogram_points WHERE service_name = 'sdk-metrics'",
        )
        .await;
    let r = &h["rows"][0];
    assert_eq!(
        r.as_array().unwrap()[0..3],
        json!(["s", "cumulative", 5]).as_array().unwrap()[..]
    );
    assert!((r[3].as_f64().unwrap() - 1.643).abs() < 1e-9);
    assert_eq!(
        r.as_array().unwrap()[4..8],
        json!([0.003, 1.2, "/a", 1]).as_array().unwrap()[..]
    );
    assert_eq!(
        s.sql("SELECT metric_type, temporality, is_monotonic, value_int, json_get_str(attributes, 'queue') FROM metric_points WHERE metric_name = 'jobs.processed'").await["rows"],
        json!([["sum", "cumulative", true, 12, "q1"]])
    );
    assert_eq!(
        s.sql("SELECT metric_type, value FROM metric_points WHERE metric_name = 'queue.depth'")
            .await["rows"],
        json!([["gauge", 3.5]])
    );

    let log_exporter = opentelemetry_otlp::LogExporter::builder()
        .with_tonic()
        .with_endpoint(s.grpc_endpoint())
        .build()
        .unwrap();
    let loggers = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_batch_exporter(log_exporter)
        .with_resource(resource("sdk-logs"))
        .build();
    let logger = loggers.logger("headroom-it");
    for i in 0..3 {
        let mut rec = logger.create_log_record();
        rec.set_body(format!("order {i} failed").into());
        rec.set_severity_number(Severity::Error);
        rec.set_severity_text("ERROR");
        rec.add_attribute("order.id", i as i64);
        logger.emit(rec);
    }
    let l = loggers.clone();
    tokio::task::spawn_blocking(move || l.force_flush())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.sql("SELECT body, severity_number, json_get_int(attributes, 'order.id') FROM logs WHERE service_name = 'sdk-logs' ORDER BY body").await["rows"],
        json!([["order 0 failed", 17, 0], ["order 1 failed", 17, 1], ["order 2 failed", 17, 2]])
    );
    let (m, l) = (meters.clone(), loggers.clone());
    tokio::task::spawn_blocking(move || {
        let _ = m.shutdown();
        let _ = l.shutdown();
    })
    .await
    .unwrap();
    s.stop().await;
}
