//! Live forecasts over OTLP traffic: nine days of requests with a daily cycle, sent with
//! their past timestamps, must give the `forecasts` table and `GET /api/v1/forecast/{service}`
//! a model-based forecast that follows the cycle.

use std::f64::consts::PI;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use serde_json::Value;

use crate::TestServer;

const STEP_NS: i64 = 300_000_000_000;
const DAY_STEPS: i64 = 288;

/// Requests expected in the 5-minute step `k` (counted from the epoch): a daily cycle between
/// 2 and 18.
fn requests_in_step(k: i64) -> i64 {
    (10.0 + 8.0 * (2.0 * PI * (k % DAY_STEPS) as f64 / DAY_STEPS as f64).sin()).round() as i64
}

/// What was sent: the cycle give or take one request, varying from step to step.
fn sent_in_step(k: i64) -> i64 {
    requests_in_step(k) + (k.wrapping_mul(2_654_435_761) >> 7).rem_euclid(3) - 1
}

fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(service.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecasts_follow_a_daily_cycle() {
    let s = TestServer::start_with(|c| c.forecast_interval_seconds = 1).await;
    // The server forecasts from the last complete step: keep the test within one step.
    let mut now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let left = STEP_NS - now.rem_euclid(STEP_NS);
    if left < 120_000_000_000 {
        tokio::time::sleep(std::time::Duration::from_nanos(left as u64 + 1_000_000_000)).await;
        now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    }
    let end = now.div_euclid(STEP_NS) * STEP_NS;
    let steps = 9 * DAY_STEPS;
    let first = end - steps * STEP_NS;
    let mut client = TraceServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap();
    let mut spans = Vec::new();
    let mut id = 0u64;
    for k in 0..steps {
        // Steps are counted from midnight UTC so the cycle lines up with the step grid.
        let step_start = first + k * STEP_NS;
        for i in 0..sent_in_step(step_start.div_euclid(STEP_NS)) {
            id += 1;
            let start = (step_start + i * 1_000_000_000) as u64;
            spans.push(Span {
                trace_id: [&[1u8; 8][..], &id.to_be_bytes()].concat(),
                span_id: id.to_be_bytes().to_vec(),
                name: "GET /items".into(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 20_000_000,
                ..Default::default()
            });
        }
        if spans.len() >= 4000 || k == steps - 1 {
            let batch = std::mem::take(&mut spans);
            client.export(request("shop", batch)).await.unwrap();
        }
    }

    // The refresh publishes 24 h of 5-minute steps for the service.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let rows = s
            .count("SELECT count(*) FROM forecasts WHERE service_name = 'shop' AND metric = 'requests'")
            .await;
        if rows == DAY_STEPS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{rows} forecast rows"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let table = s
        .sql("SELECT model, short_history, sum(CASE WHEN p10 <= p50 AND p50 <= p90 THEN 0 ELSE 1 END) FROM forecasts WHERE service_name = 'shop' GROUP BY 1, 2")
        .await;
    let row = &table["rows"][0];
    assert_eq!(row[1], false, "{table}");
    assert_eq!(row[2], 0, "{table}");

    let url = |q: &str| format!("http://{}/api/v1/forecast/shop{q}", s.running.http_addr);
    let body: Value = s
        .client
        .get(url(
            "?metric=requests&horizon=2h&step=5m&quantiles=0.95,0.99",
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["metric"], "requests", "{body}");
    assert_eq!(body["unit"], "requests/s");
    assert_eq!(body["short_history"], false, "{body}");
    assert_eq!(body["history_points"], steps, "{body}");
    assert!(body["validation_mase"].as_f64().unwrap() > 0.0, "{body}");
    assert!(body["scores"].as_array().unwrap().len() >= 3, "{body}");
    let points = body["points"].as_array().unwrap();
    assert_eq!(points.len(), 24);
    for (h, p) in points.iter().enumerate() {
        let truth = requests_in_step((end + h as i64 * STEP_NS).div_euclid(STEP_NS)) as f64 / 300.0;
        let yhat = p["yhat"].as_f64().unwrap();
        assert!(
            (yhat - truth).abs() <= 0.15 * truth + 0.005,
            "step {h}: {yhat} vs {truth}: {body}"
        );
        let level = |key: &str| p[key].as_f64().unwrap_or_else(|| panic!("{key}: {p}"));
        assert!(level("p10") <= yhat && yhat <= level("p90"), "{p}");
        assert!(
            level("p90") <= level("p95") && level("p95") <= level("p99"),
            "{p}"
        );
        assert_eq!(level("p50"), yhat);
    }

    // Mistakes are the caller's.
    for (q, status) in [
        ("?metric=bytes", 400),
        ("?step=0m", 400),
        ("?step=5x", 400),
        ("?horizon=1000d&step=1s", 400),
        ("?quantiles=0.95,1.5", 400),
        ("?quantiles=high", 400),
    ] {
        let resp = s.client.get(url(q)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{q}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].is_string(), "{q}: {body}");
    }
    let resp = s
        .client
        .get(format!(
            "http://{}/api/v1/forecast/nobody",
            s.running.http_addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    s.stop().await;
}

/// The fleet benchmark forecasts every service it cuts from the real series, and says which
/// setting is wrong when the series is too short for the history asked for.
#[test]
fn fleet_benchmark_forecasts_every_service() {
    use headroom::forecast::{FleetArgs, ForecastCommand, run};
    let input = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/forecast/nyc_taxi.csv");
    let args = FleetArgs {
        input,
        services: 3,
        history_days: 14,
        step_seconds: 1800,
        horizon_seconds: 86_400,
    };
    let report = run(&ForecastCommand::Fleet(args.clone())).unwrap();
    assert!(
        report.contains("3 services × 672 steps of 1800 s, horizon 48 steps"),
        "{report}"
    );
    assert!(report.contains("forecast 3 of 3 in"), "{report}");
    assert!(report.contains("(144 rows published)"), "{report}");
    let error = run(&ForecastCommand::Fleet(FleetArgs {
        history_days: 400,
        ..args
    }))
    .unwrap_err();
    assert!(error.to_string().contains("--history-days 400"), "{error}");
}
