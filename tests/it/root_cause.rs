//! Fault injection, end to end: for each fault the load generator injects (a bad version that
//! fails one endpoint, one slow pod, a slow dependency, a failing database under two
//! services), three hours of
//! traffic go through OTLP, the anomaly detector must flag the broken series within two
//! minutes of the onset, and `GET /api/v1/incidents/{id}/explain` must rank the injected cause
//! first.

use headroom_loadgen::{Event, Scenario};
use headroom_loadgen::{Fault, Topology};
use serde_json::Value;

const MINUTE: i64 = 60_000_000_000;

struct Case {
    fault: Fault,
    /// The series that must flag it.
    service: &'static str,
    metric: &'static str,
    /// The cause that must rank first: (dimension, value).
    dimension: &'static str,
    value: String,
}

/// Runs one fault; returns a line for the report.
async fn run(case: Case) -> String {
    // 11:00 to 14:00 UTC of the last weekday that has ended; the fault from 13:00 to 13:30.
    let to = crate::last_weekday_at(14);
    let (from, onset) = (to - 180 * MINUTE, to - 60 * MINUTE);
    let scenario = Scenario {
        spans_per_second: 30.0,
        events: vec![Event {
            name: "injected fault",
            start_ns: onset,
            end_ns: Some(onset + 30 * MINUTE),
            fault: case.fault.clone(),
        }],
    };
    let s = crate::TestServer::start_with(|cfg| {
        cfg.forecast_interval_seconds = 0;
        cfg.scaling_interval_seconds = 0;
        cfg.anomaly_interval_seconds = 0;
    })
    .await;
    crate::backfill(&s, scenario, from, to).await;
    crate::score_anomalies(&s, from, to).await;

    let http = s.running.http_addr.to_string();
    let get = |path: String| {
        let http = http.clone();
        async move { crate::http_get(&http, &path).await }
    };
    let (status, body) = get(format!(
        "/api/v1/anomalies?from={}&to={}&service={}",
        crate::rfc3339(from),
        crate::rfc3339(to),
        case.service
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let anomaly = body["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| {
            let start = chrono::DateTime::parse_from_rfc3339(a["start_time"].as_str().unwrap())
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap();
            a["metric"] == case.metric && (onset..=onset + 2 * MINUTE).contains(&start)
        })
        .unwrap_or_else(|| {
            panic!(
                "{:?}: no {} {} anomaly within 2 minutes of {}: {body:#}",
                case.fault,
                case.service,
                case.metric,
                crate::rfc3339(onset)
            )
        })
        .clone();
    let id = anomaly["anomaly_id"].as_str().unwrap();
    let (status, body) = get(format!("/api/v1/incidents/{id}/explain")).await;
    assert_eq!(status, 200, "{body}");
    let causes = body["explanation"]["causes"].as_array().unwrap();
    let top = &causes[0];
    assert_eq!(
        (
            top["dimension"].as_str().unwrap(),
            top["value"].as_str().unwrap()
        ),
        (case.dimension, case.value.as_str()),
        "{id}: {body:#}"
    );
    format!(
        "{id}: detected {} min after onset; first cause {}={} (EP {:.2}, surprise {:.3}); second {}={} (score {:.3} vs {:.3})",
        (chrono::DateTime::parse_from_rfc3339(anomaly["start_time"].as_str().unwrap())
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
            - onset)
            / MINUTE,
        top["dimension"],
        top["value"],
        top["explanatory_power"].as_f64().unwrap(),
        top["surprise"].as_f64().unwrap(),
        causes
            .get(1)
            .map_or(Value::Null, |c| c["dimension"].clone()),
        causes.get(1).map_or(Value::Null, |c| c["value"].clone()),
        top["score"].as_f64().unwrap(),
        causes
            .get(1)
            .and_then(|c| c["score"].as_f64())
            .unwrap_or(0.0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_version_failing_one_endpoint_is_the_first_cause() {
    let line = run(Case {
        fault: Fault::Service {
            service: "cart".into(),
            version: Some("3.3.0".into()),
            latency_factor: 1.0,
            error_prob: 0.5,
            endpoint: Some("oteldemo.CartService/AddItem".into()),
        },
        service: "cart",
        metric: "error_ratio",
        dimension: "service.version",
        value: "3.3.0".into(),
    })
    .await;
    println!("{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_slow_pod_is_the_first_cause() {
    let instance = Topology::new(1).instance_ids("product-catalog")[0].clone();
    let line = run(Case {
        fault: Fault::SlowInstance {
            service: "product-catalog".into(),
            instance: 0,
            latency_factor: 8.0,
        },
        service: "product-catalog",
        metric: "p95_ms",
        dimension: "instance",
        value: instance,
    })
    .await;
    println!("{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_dependency_is_the_first_cause_of_its_callers_latency() {
    let line = run(Case {
        fault: Fault::Service {
            service: "payment".into(),
            version: None,
            latency_factor: 8.0,
            error_prob: 0.0,
            endpoint: None,
        },
        service: "checkout",
        metric: "p95_ms",
        dimension: "downstream",
        value: "payment".into(),
    })
    .await;
    println!("{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_database_is_found_through_the_service_that_calls_it() {
    let line = run(Case {
        fault: Fault::Database {
            system: "postgresql".into(),
            error_prob: 0.6,
        },
        service: "frontend",
        metric: "error_ratio",
        dimension: "downstream",
        value: "postgresql".into(),
    })
    .await;
    println!("{line}");
}
