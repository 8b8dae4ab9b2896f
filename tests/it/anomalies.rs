//! Live anomalies over six hours of the demo's history: each fault is found in the series it
//! breaks (errors within two minutes of the onset), with few false alarms before.

use serde_json::Value;

const MINUTE: i64 = 60_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_faults_are_found_in_the_series_they_break() {
    // 08:00 to 14:00 UTC of the last weekday that has ended (as the SLO dashboard test).
    let to = crate::last_weekday_at(14);
    let from = to - 360 * MINUTE;
    let (s, scenario, _) = crate::server_with_demo_history(from, to, 30.0, |cfg| {
        cfg.forecast_interval_seconds = 0;
        cfg.scaling_interval_seconds = 0;
        cfg.anomaly_interval_seconds = 0;
    })
    .await;
    // Scored as the server would at the end of the history: every minute of it, in order.
    let minutes = crate::score_anomalies(&s, from, to).await;
    let http = s.running.http_addr.to_string();
    let ts = crate::rfc3339;
    let range = format!("from={}&to={}", ts(from), ts(to));
    let (_, body) = crate::http_get(&http, &format!("/api/v1/anomalies?{range}")).await;
    let anomalies = body["anomalies"].as_array().unwrap();
    let start = |a: &Value| {
        chrono::DateTime::parse_from_rfc3339(a["start_time"].as_str().unwrap())
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    };
    let list: Vec<String> = anomalies
        .iter()
        .map(|a| {
            format!(
                "{} {} {} {} min, {} vs {} expected",
                a["start_time"],
                a["service_name"],
                a["metric"],
                a["minutes"],
                a["observed"],
                a["expected"]
            )
        })
        .collect();
    // The first anomaly of `service`'s `metric` starting within `minutes` of `onset`.
    let found = |service: &str, metric: &str, onset: i64, minutes: i64| {
        anomalies.iter().any(|a| {
            a["service_name"] == service
                && a["metric"] == metric
                && (onset..=onset + minutes * MINUTE).contains(&start(a))
        })
    };
    let [deploy, incident, outage] = &scenario.events[..] else {
        panic!("three events")
    };
    // Payment fails a third of its charges: its error ratio, at once.
    assert!(
        found("payment", "error_ratio", incident.start_ns, 2),
        "{list:#?}"
    );
    // PostgreSQL refuses queries: the services that query it, and the frontend above them.
    for service in ["product-catalog", "recommendation", "frontend"] {
        assert!(
            found(service, "error_ratio", outage.start_ns, 2),
            "{service}: {list:#?}"
        );
    }
    // The slower release: checkout's p95, from about 30 requests a minute (measured: 6 min).
    assert!(
        found("checkout", "p95_ms", deploy.start_ns, 10),
        "{list:#?}"
    );
    // Before the first fault, 28 series over three and a half hours: at most two false alarms.
    let before: Vec<&String> = anomalies
        .iter()
        .zip(&list)
        .filter(|(a, _)| start(a) < deploy.start_ns)
        .map(|(_, l)| l)
        .collect();
    assert!(before.len() <= 2, "{before:#?}");
    // Every anomaly carries its band, and a severity.
    for a in anomalies {
        assert!(
            a["lower"].as_f64().unwrap() <= a["expected"].as_f64().unwrap(),
            "{a}"
        );
        assert!(
            a["expected"].as_f64().unwrap() <= a["upper"].as_f64().unwrap(),
            "{a}"
        );
        let observed = a["observed"].as_f64().unwrap();
        assert!(
            observed < a["lower"].as_f64().unwrap() || observed > a["upper"].as_f64().unwrap(),
            "{a}"
        );
        assert!(
            ["warning", "critical"].contains(&a["severity"].as_str().unwrap()),
            "{a}"
        );
    }

    // One service only; and refused parameters.
    let (_, only) =
        crate::http_get(&http, &format!("/api/v1/anomalies?{range}&service=payment")).await;
    let only = only["anomalies"].as_array().unwrap();
    assert!(!only.is_empty() && only.iter().all(|a| a["service_name"] == "payment"));
    for bad in [
        "from=yesterday",
        "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
    ] {
        let (status, body) = crate::http_get(&http, &format!("/api/v1/anomalies?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].as_str().unwrap().contains("from"), "{body}");
    }
    // The same rows over SQL; the per-minute scores too.
    let rows = crate::http_sql(&http, "SELECT count(*) FROM anomalies").await;
    assert_eq!(rows[0][0].as_i64().unwrap() as usize, anomalies.len());
    assert!(minutes >= 28 * 359, "{minutes}");

    // The Anomalies dashboard: every panel gets rows of its shape.
    let (range_from, range_to) = (ts(from), ts(to));
    let server = &s;
    tokio::task::block_in_place(|| {
        crate::grafana::check_dashboard(
            server,
            "anomalies.json",
            &[("service", "frontend")],
            &range_from,
            &range_to,
        )
    });

    // The SLO incident the database failure opened on product-catalog, explained: the
    // failures come from PostgreSQL.
    let ids = crate::http_sql(
        &http,
        &format!(
            "SELECT incident_id FROM incidents WHERE slo_name = 'product-catalog-availability' \
             AND started_at >= '{}' AND started_at < '{}'",
            ts(outage.start_ns),
            ts(outage.start_ns + 5 * MINUTE)
        ),
    )
    .await;
    let id = ids[0][0].as_str().unwrap();
    let (status, body) = crate::http_get(&http, &format!("/api/v1/incidents/{id}/explain")).await;
    assert_eq!(status, 200, "{body}");
    let top = &body["explanation"]["causes"][0];
    assert_eq!(
        (&top["dimension"], &top["value"]),
        (&Value::from("downstream"), &Value::from("postgresql")),
        "{body:#}"
    );
    assert_eq!(body["explanation"]["signal"], "errors");
    let (status, body) = crate::http_get(
        &http,
        "/api/v1/incidents/no-such-slo@20260101T0000Z/explain",
    )
    .await;
    assert_eq!(status, 404, "{body}");
}
