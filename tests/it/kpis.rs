//! The KPI views and endpoints over simulated shop traffic, checked against the raw spans:
//! request and error counts and availability exactly, percentiles within 1 % of the exact
//! value, with the bad-request rule re-implemented here from the semantic conventions.

use serde_json::Value;

use crate::{TestServer, server_with_traffic};

/// A server span's fields that decide whether it is a request and whether it went bad.
struct Raw {
    kind: String,
    status: String,
    http: Option<i64>,
    grpc: Option<i64>,
    route: Option<String>,
    duration_ns: f64,
}

impl Raw {
    fn is_request(&self) -> bool {
        let health = [
            "/healthz", "/readyz", "/livez", "/health", "/ready", "/live",
        ];
        (self.kind == "SERVER" || self.kind == "CONSUMER")
            && !self.route.as_deref().is_some_and(|r| health.contains(&r))
    }

    fn is_bad(&self) -> bool {
        match self.status.as_str() {
            "OK" => false,
            "ERROR" => true,
            _ => {
                self.http.is_some_and(|c| c >= 500)
                    || self
                        .grpc
                        .is_some_and(|c| [2, 4, 12, 13, 14, 15].contains(&c))
            }
        }
    }
}

/// Linear interpolation between closest ranks, as PostgreSQL's percentile_cont.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

async fn get(s: &TestServer, path: &str) -> (u16, Value) {
    let resp = s
        .client
        .get(format!("http://{}{path}", s.running.http_addr))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_kpis_match_the_raw_spans() {
    let s = server_with_traffic(|_| {}).await;
    let range = s
        .sql("SELECT to_char(min(start_time) - INTERVAL '1 minute', '%Y-%m-%dT%H:%M:%SZ'), to_char(max(start_time) + INTERVAL '1 minute', '%Y-%m-%dT%H:%M:%SZ') FROM spans")
        .await;
    let (from, to) = (
        range["rows"][0][0].as_str().unwrap(),
        range["rows"][0][1].as_str().unwrap(),
    );
    let (status, list) = get(&s, "/api/v1/services").await;
    assert_eq!(status, 200, "{list}");
    let services = list["services"].as_array().unwrap();
    let distinct = s
        .count("SELECT count(DISTINCT service_name) FROM spans")
        .await;
    assert_eq!(services.len() as i64, distinct, "{list}");

    let (status, slos) = get(&s, "/api/v1/slos").await;
    assert_eq!(status, 200, "{slos}");
    let slos = slos["slos"].as_array().unwrap().clone();

    let (mut all_requests, mut all_bad) = (0, 0);
    for listed in services {
        let service = listed["service_name"].as_str().unwrap();
        let raw = s
            .sql(&format!(
                "SELECT span_kind, status_code, http_response_status_code, rpc_grpc_status_code, \
                 COALESCE(http_route, url_path), duration_ns FROM spans WHERE service_name = '{service}'"
            ))
            .await;
        let requests: Vec<Raw> = raw["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| Raw {
                kind: r[0].as_str().unwrap().into(),
                status: r[1].as_str().unwrap().into(),
                http: r[2].as_i64(),
                grpc: r[3].as_i64(),
                route: r[4].as_str().map(String::from),
                duration_ns: r[5].as_f64().unwrap(),
            })
            .filter(Raw::is_request)
            .collect();
        let n = requests.len();
        let bad = requests.iter().filter(|r| r.is_bad()).count();
        all_requests += n;
        all_bad += bad;

        let (status, kpis) = get(
            &s,
            &format!("/api/v1/services/{service}/kpis?from={from}&to={to}"),
        )
        .await;
        assert_eq!(status, 200, "{kpis}");
        let summary = &kpis["summary"];
        assert_eq!(summary["requests"], n, "{service}: {kpis}");
        let series = kpis["series"].as_array().unwrap();
        // Without an SLO file, every service that served requests gets the default SLO.
        let slo = slos
            .iter()
            .find(|o| o["slo_name"] == format!("{service}-availability"));
        if n == 0 {
            // A service that only calls others serves no requests.
            assert!(listed["latest"].is_null(), "{listed}");
            assert!(series.is_empty(), "{kpis}");
            assert!(slo.is_none(), "{slo:?}");
            continue;
        }
        let slo = slo.unwrap_or_else(|| panic!("no SLO for {service}"));
        assert_eq!(slo["objective"], 0.999, "{slo}");
        assert_eq!(slo["requests"], n, "{slo}");
        assert_eq!(slo["bad_requests"], bad, "{slo}");
        let sli = slo["sli"].as_f64().unwrap();
        assert!((sli - (1.0 - bad as f64 / n as f64)).abs() < 1e-12, "{slo}");
        // Everything happened in the last minutes: the 5-minute burn rate sees all of it.
        let burn = slo["burn_rate_5m"].as_f64().unwrap();
        assert!((burn - bad as f64 / n as f64 / 0.001).abs() < 1e-6, "{slo}");
        assert_eq!(summary["errors"], bad, "{service}: {kpis}");
        let availability = summary["availability"].as_f64().unwrap();
        assert!(
            (availability - (1.0 - bad as f64 / n as f64)).abs() < 1e-12,
            "{service}: {kpis}"
        );
        let mut durations: Vec<f64> = requests.iter().map(|r| r.duration_ns / 1e6).collect();
        durations.sort_by(f64::total_cmp);
        for (key, p) in [("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)] {
            let exact = percentile(&durations, p);
            let got = summary[key].as_f64().unwrap();
            assert!(
                (got - exact).abs() <= exact * 0.01,
                "{service} {key}: {got} vs exact {exact}"
            );
        }
        let apdex = summary["apdex"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&apdex), "{kpis}");
        // The minutes add up to the range.
        let total: i64 = series.iter().map(|m| m["requests"].as_i64().unwrap()).sum();
        assert_eq!(total, n as i64, "{service}: {kpis}");
        let errors: i64 = series.iter().map(|m| m["errors"].as_i64().unwrap()).sum();
        assert_eq!(errors, bad as i64, "{service}: {kpis}");
        // The list shows the latest minute.
        let last_minute = series.last().unwrap();
        assert!(listed["last_seen"].is_string(), "{listed}");
        assert_eq!(listed["latest"]["time"], last_minute["time"], "{listed}");
        assert_eq!(listed["latest"]["requests"], last_minute["requests"]);
    }
    assert!(
        all_requests > 500 && all_bad > 0,
        "{all_requests} requests, {all_bad} bad: the shop should fail sometimes"
    );

    // The incident views run over the same data (what they find is checked in incidents.slt).
    for view in ["slo_minutes", "incidents", "incident_stats"] {
        let (status, body) = s.sql_raw(&format!("SELECT * FROM {view}")).await;
        assert_eq!(status, 200, "{view}: {body}");
    }

    // Bad ranges and unknown services are the caller's fault.
    let service = "checkout";
    for (path, want) in [
        (format!("/api/v1/services/{service}/kpis?to={to}"), 400),
        (
            format!("/api/v1/services/{service}/kpis?from=yesterday&to={to}"),
            400,
        ),
        (
            format!("/api/v1/services/{service}/kpis?from={to}&to={from}"),
            400,
        ),
        (
            format!("/api/v1/services/nope/kpis?from={from}&to={to}"),
            404,
        ),
    ] {
        let (status, body) = get(&s, &path).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    s.stop().await;
}
