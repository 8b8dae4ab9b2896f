//! Live recommendations over OTLP traffic: eight days of a service's requests (two instances,
//! a daily cycle) and ten minutes of a new service's (three instances) must give the
//! `recommendations` table, the HTTP API, KEDA's metrics-api endpoint and the KEDA external
//! scaler one consistent count per service: predictive with a capacity learned from latency
//! for the first, reactive and flagged for the second.

use std::collections::HashMap;
use std::f64::consts::PI;

use headroom::api::keda::externalscaler::external_scaler_client::ExternalScalerClient;
use headroom::api::keda::externalscaler::{GetMetricsRequest, ScaledObjectRef};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use serde_json::Value;

use crate::TestServer;

const S: i64 = 1_000_000_000;
const STEP_NS: i64 = 300 * S;
const DAY_STEPS: i64 = 288;

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// Requests of `service` from `instance`, each 20 ms long, starting at `starts`.
fn requests(service: &str, instance: &str, starts: &[i64], id: &mut u64) -> ResourceSpans {
    let spans = starts
        .iter()
        .map(|start| {
            *id += 1;
            Span {
                trace_id: [&[2u8; 8][..], &id.to_be_bytes()].concat(),
                span_id: id.to_be_bytes().to_vec(),
                name: "GET /items".into(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: *start as u64,
                end_time_unix_nano: (*start + 20_000_000) as u64,
                ..Default::default()
            }
        })
        .collect();
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                text("service.name", service),
                text("service.instance.id", instance),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// One `process.cpu.utilization` point of an instance.
fn cpu_point(service: &str, instance: &str, time_ns: i64, value: f64) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![
                text("service.name", service),
                text("service.instance.id", instance),
            ],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: "process.cpu.utilization".into(),
                unit: "1".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        time_unix_nano: time_ns as u64,
                        value: Some(number_data_point::Value::AsDouble(value)),
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Requests in step `k` (from the epoch): a daily cycle between 6 and 30.
fn in_step(k: i64) -> i64 {
    (18.0 + 12.0 * (2.0 * PI * (k % DAY_STEPS) as f64 / DAY_STEPS as f64).sin()).round() as i64
        + (k.wrapping_mul(2_654_435_761) >> 7).rem_euclid(3)
        - 1
}

fn scaled_object(service: &str) -> ScaledObjectRef {
    ScaledObjectRef {
        name: "shop-scaler".into(),
        namespace: "default".into(),
        scaler_metadata: HashMap::from([("service".to_owned(), service.to_owned())]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommendations_agree_across_table_api_and_keda() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[defaults]\nlead_time_seconds = 600\n\n[[service]]\nname = \"shop\"\nquantile = 0.9\n",
    )
    .unwrap();
    let path = config.path().to_owned();
    let s = TestServer::start_with(move |c| {
        c.forecast_interval_seconds = 2;
        c.scaling_interval_seconds = 1;
        c.scaling_learn_interval_seconds = 1;
        c.scaling_config_path = Some(path);
    })
    .await;
    // Keep the test within one forecast step: the forecasts start at the current step.
    let mut now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let left = STEP_NS - now.rem_euclid(STEP_NS);
    if left < 150 * S {
        tokio::time::sleep(std::time::Duration::from_nanos((left + S) as u64)).await;
        now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    }
    // And within one minute: the last complete minute is the load and replicas now.
    if now.rem_euclid(60 * S) > 15 * S {
        let left = 60 * S - now.rem_euclid(60 * S);
        tokio::time::sleep(std::time::Duration::from_nanos((left + S) as u64)).await;
        now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    }
    let end = now.div_euclid(STEP_NS) * STEP_NS;
    let steps = 8 * DAY_STEPS;
    let mut client = TraceServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap();
    let mut id = 0;
    let mut batch: Vec<ResourceSpans> = Vec::new();
    for k in 0..steps {
        let step_start = end - (steps - k) * STEP_NS;
        // Spread over the step, alternating between the two instances.
        let starts: Vec<i64> = (0..in_step(step_start.div_euclid(STEP_NS)))
            .map(|i| step_start + i * 9 * S)
            .collect();
        let (even, odd): (Vec<_>, Vec<_>) =
            starts.iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let pick = |v: Vec<(usize, &i64)>| v.into_iter().map(|(_, t)| *t).collect::<Vec<_>>();
        batch.push(requests("shop", "shop-1", &pick(even), &mut id));
        batch.push(requests("shop", "shop-2", &pick(odd), &mut id));
        if batch.len() >= 400 || k == steps - 1 {
            let resource_spans = std::mem::take(&mut batch);
            client
                .export(ExportTraceServiceRequest { resource_spans })
                .await
                .unwrap();
        }
    }
    // A new service: one request every 2 s over the last ten minutes, from three instances.
    let fresh: Vec<ResourceSpans> = (0..3)
        .map(|i| {
            let starts: Vec<i64> = (0..100)
                .map(|j| now - 600 * S + (6 * j + 2 * i) * S)
                .collect();
            requests("fresh", &format!("fresh-{i}"), &starts, &mut id)
        })
        .collect();
    client
        .export(ExportTraceServiceRequest {
            resource_spans: fresh,
        })
        .await
        .unwrap();

    // A service with CPU metrics: over the last hour, each of two instances serves c requests a
    // minute at CPU 0.1 + 0.45 × requests/s, so that CPU would reach 100 % at 2 requests/s.
    let minute_ns = 60 * S;
    let last_minute = now.div_euclid(minute_ns) * minute_ns - minute_ns;
    let mut spans = Vec::new();
    let mut points = Vec::new();
    for m in 0..60 {
        let start = last_minute - (59 - m) * minute_ns;
        let c = 30 + (m * 7) % 61;
        for instance in ["api-1", "api-2"] {
            let starts: Vec<i64> = (0..c).map(|j| start + j * minute_ns / c).collect();
            spans.push(requests("api", instance, &starts, &mut id));
            points.push(cpu_point(
                "api",
                instance,
                start + 30 * S,
                0.1 + 0.45 * c as f64 / 60.0,
            ));
        }
    }
    client
        .export(ExportTraceServiceRequest {
            resource_spans: spans,
        })
        .await
        .unwrap();
    MetricsServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap()
        .export(ExportMetricsServiceRequest {
            resource_metrics: points,
        })
        .await
        .unwrap();

    // Until a recommendation is made from a forecast that started after everything was sent
    // (one over a partly sent history sees zeros where the rest was to come).
    let sent = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let ready = s
            .count(&format!(
                "SELECT count(*) FROM recommendations WHERE (service_name = 'shop' AND mode = \
                 'predictive' AND generated_at > (SELECT max(generated_at) FROM forecasts \
                 WHERE service_name = 'shop' AND generated_at > to_timestamp_nanos({sent}))) \
                 OR (service_name = 'fresh' AND current_replicas = 3) \
                 OR (service_name = 'api' AND capacity_source = 'cpu')"
            ))
            .await;
        if ready == 3 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let table = s
                .sql("SELECT service_name, mode, current_replicas, reasons FROM recommendations")
                .await;
            panic!("{ready} of 3 ready: {table}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    // The table: the forecast's p90 over the next 600 s, at the learned capacity.
    let table = s
        .sql(
            "SELECT recommended_replicas, forecast_replicas, floor_replicas, load_forecast, \
             capacity_per_replica, capacity_source, quantile, lead_time_seconds, \
             CAST(generated_at AS BIGINT), confidence, reasons, mode \
             FROM recommendations WHERE service_name = 'shop'",
        )
        .await;
    let row = table["rows"][0].as_array().unwrap().clone();
    let int = |i: usize| row[i].as_i64().unwrap_or_else(|| panic!("{i}: {table}"));
    let float = |i: usize| row[i].as_f64().unwrap_or_else(|| panic!("{i}: {table}"));
    let (recommended, forecast, floor) = (int(0), int(1), int(2));
    let (load_forecast, capacity) = (float(3), float(4));
    assert_eq!(row[5], "latency", "{table}");
    assert_eq!((float(6), int(7)), (0.9, 600), "{table}");
    assert!(
        row[10]
            .as_str()
            .unwrap()
            .contains("p90 over the next 601 s"),
        "{table}"
    );
    assert_eq!(
        forecast,
        (load_forecast / (capacity * 0.8) - 1e-9).ceil() as i64,
        "{table}"
    );
    assert!(recommended >= forecast.max(floor), "{table}");

    // The forecast peak is the highest p90 of the steps overlapping [now, now + 601 s): the
    // lead time and the 1 s to the next recommendation.
    let generated = int(8);
    let peak = s
        .scalar(&format!(
            "SELECT max(p90) FROM forecasts WHERE service_name = 'shop' AND metric = 'requests' \
             AND CAST(\"time\" AS BIGINT) < {} AND CAST(\"time\" AS BIGINT) + {STEP_NS} > {generated}",
            generated + 601 * S
        ))
        .await
        .as_f64()
        .unwrap();
    assert!(
        (peak - load_forecast).abs() <= 1e-9 * peak,
        "{peak} vs {load_forecast}"
    );

    // Both tables are in the catalog SQL clients list, the schedule with 24 hours.
    let listed = s
        .count(
            "SELECT count(*) FROM information_schema.tables WHERE table_name IN \
             ('recommendations', 'recommendation_schedule')",
        )
        .await;
    assert_eq!(listed, 2);
    let hours = s
        .count("SELECT count(*) FROM recommendation_schedule WHERE service_name = 'shop'")
        .await;
    assert_eq!(hours, 24);

    // The learned capacity: the 99th percentile (by rank) of the load per instance over the
    // minutes of the last 7 days (every minute met the 500 ms Apdex objective).
    let minutes = s
        .sql(&format!(
            "SELECT CAST(count(*) AS DOUBLE) / 60 / count(DISTINCT service_instance_id) AS x \
             FROM server_requests WHERE service_name = 'shop' \
             AND start_time >= to_timestamp_nanos({}) \
             GROUP BY date_bin(INTERVAL '1 minute', start_time, TIMESTAMP '1970-01-01T00:00:00Z') \
             ORDER BY x",
            generated.div_euclid(60 * S) * 60 * S - 7 * 86_400 * S
        ))
        .await;
    let xs: Vec<f64> = minutes["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_f64().unwrap())
        .collect();
    let expected = xs[(xs.len() as f64 * 0.99).ceil() as usize - 1];
    assert!(
        (capacity - expected).abs() <= 1e-9,
        "{capacity} vs {expected} over {} minutes",
        xs.len()
    );

    // The API says the same, with a schedule and the reasons.
    let get = |path: String| {
        let client = s.client.clone();
        let url = format!("http://{}{path}", s.running.http_addr);
        async move {
            let resp = client.get(url).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, shop) = get("/api/v1/recommendations/shop".into()).await;
    assert_eq!(status, 200, "{shop}");
    let api_recommended = shop["recommended_replicas"].as_i64().unwrap();
    // Refreshes in between see the same data and, within the step, the same forecast.
    assert_eq!(api_recommended, recommended, "{shop}");
    assert_eq!(shop["mode"], "predictive");
    assert_eq!(shop["capacity"]["source"], "latency", "{shop}");
    assert_eq!(shop["schedule"].as_array().unwrap().len(), 24, "{shop}");
    assert!(
        shop["schedule"][0]["replicas"].as_i64().unwrap() >= 1,
        "{shop}"
    );
    assert!(shop["reasons"].as_array().unwrap().len() >= 4, "{shop}");
    let (_, all) = get("/api/v1/recommendations".into()).await;
    let names: Vec<&str> = all["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["service_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api", "fresh", "shop"], "{all}");
    let (status, missing) = get("/api/v1/recommendations/nobody".into()).await;
    assert_eq!(status, 404);
    assert!(
        missing["error"]
            .as_str()
            .unwrap()
            .contains("api, fresh, shop"),
        "{missing}"
    );

    // The new service: reactive, flagged, sized by its three replicas at the target.
    let (_, fresh) = get("/api/v1/recommendations/fresh".into()).await;
    assert_eq!(fresh["mode"], "reactive", "{fresh}");
    assert_eq!(fresh["current_replicas"], 3, "{fresh}");
    assert_eq!(fresh["recommended_replicas"], 3, "{fresh}");
    assert_eq!(fresh["capacity"]["source"], "current_load", "{fresh}");
    assert_eq!(fresh["confidence"], "low", "{fresh}");
    assert!(fresh["reasons"].to_string().contains("reactive"), "{fresh}");

    // Self-observability: how many services are recommended for, by mode.
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("headroom_recommendations{mode=\"predictive\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("headroom_recommendations{mode=\"reactive\"} 2\n"),
        "{metrics}"
    );

    // The CPU line, found from the metrics: 2 requests/s per replica at 100 % CPU; the last
    // minute's load (2 × 77 requests) at 80 % of that needs ceil(2.567 / 1.6) = 2 replicas.
    let (_, api) = get("/api/v1/recommendations/api".into()).await;
    let capacity = &api["capacity"];
    assert_eq!(capacity["source"], "cpu", "{api}");
    assert!(
        (capacity["per_replica"].as_f64().unwrap() - 2.0).abs() < 1e-9,
        "{api}"
    );
    assert!(capacity["r_squared"].as_f64().unwrap() > 0.999_999, "{api}");
    assert_eq!(capacity["minutes"], 60, "{api}");
    assert_eq!(api["current_replicas"], 2, "{api}");
    assert!(
        (api["load_now"].as_f64().unwrap() - 154.0 / 60.0).abs() < 1e-9,
        "{api}"
    );
    assert_eq!(api["recommended_replicas"], 2, "{api}");

    // KEDA's metrics-api scaler reads the count.
    let (status, keda) = get("/api/v1/keda/replicas/shop".into()).await;
    assert_eq!(status, 200, "{keda}");
    assert_eq!(keda["replicas"].as_i64(), Some(recommended), "{keda}");
    assert_eq!(get("/api/v1/keda/replicas/nobody".into()).await.0, 404);

    // KEDA's external scaler: a metric with target 1 whose value is the count.
    let mut keda = ExternalScalerClient::connect(format!("http://{}", s.running.keda_grpc_addr))
        .await
        .unwrap();
    let spec = keda
        .get_metric_spec(scaled_object("shop"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    assert_eq!(spec.metric_specs[0].metric_name, "headroom-replicas-shop");
    assert_eq!(spec.metric_specs[0].target_size_float, 1.0);
    let metrics = keda
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(scaled_object("shop")),
            metric_name: "s0-headroom-replicas-shop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        metrics.metric_values[0].metric_name,
        "s0-headroom-replicas-shop"
    );
    assert_eq!(
        metrics.metric_values[0].metric_value_float,
        recommended as f64
    );
    assert_eq!(metrics.metric_values[0].metric_value, recommended);
    assert!(
        keda.is_active(scaled_object("shop"))
            .await
            .unwrap()
            .into_inner()
            .result
    );
    let mut stream = keda
        .stream_is_active(scaled_object("fresh"))
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().unwrap().result);
    let unknown = keda.is_active(scaled_object("nobody")).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    let nameless = keda
        .get_metric_spec(ScaledObjectRef::default())
        .await
        .unwrap_err();
    assert_eq!(
        nameless.code(),
        tonic::Code::InvalidArgument,
        "{nameless:?}"
    );

    // The shipped Capacity dashboard draws from these tables: every panel gets rows in its
    // shape over the dashboard's default range (two days back, one ahead).
    let rfc3339 = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let (from, to) = (rfc3339(now - 2 * 86_400 * S), rfc3339(now + 86_400 * S));
    let server = &s;
    tokio::task::block_in_place(|| {
        crate::grafana::check_dashboard(server, "capacity.json", &[("service", "shop")], &from, &to)
    });
    s.stop().await;
}
