//! The KPI views and endpoints over simulated shop traffic, checked against the raw spans:
//! request and error counts and availability exactly, percentiles within 1 % of the exact
//! value, with the bad-request rule re-implemented here from the semantic conventions.

use std::collections::{HashMap, HashSet};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
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

/// A string attribute of an OTLP key-value list.
fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// Whether a server-duration series is bad, by the rule the metric views document.
fn bad_series(attrs: &[KeyValue]) -> bool {
    let int = |key| match attr(attrs, key) {
        Some(any_value::Value::IntValue(i)) => Some(*i),
        _ => None,
    };
    int("http.response.status_code").is_some_and(|c| c >= 500)
        || int("rpc.grpc.status_code").is_some_and(|c| [2, 4, 12, 13, 14, 15].contains(&c))
        || attr(attrs, "error.type").is_some()
}

/// Three cumulative metrics requests of the simulated shop, a minute apart, sent over OTLP/gRPC:
/// the requests and errors of the metric views must be exactly the increases of the series
/// (the first point of each series is its baseline), for the explicit-bucket histogram and the
/// exponential one alike, and saturation must be the CPU gauge of each instance and minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_views_match_the_sent_series() {
    let s = crate::TestServer::start().await;
    let mut topology = headroom_loadgen::Topology::new(11);
    let now = crate::now_ns();
    let mut client = MetricsServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap();
    // (service, metric) -> [requests, errors]; (service, instance, series) -> first count.
    let mut expected: HashMap<(String, String), [u64; 2]> = HashMap::new();
    let mut first: HashMap<String, u64> = HashMap::new();
    // (instance, minute start in seconds) -> CPU utilisation.
    let mut cpu: HashMap<(String, u64), f64> = HashMap::new();
    for round in 0..3u64 {
        let time = now - (2 - round) * 60_000_000_000;
        let request = topology.metrics_request(time);
        for rm in &request.resource_metrics {
            let res = &rm.resource.as_ref().unwrap().attributes;
            let text = |key| match attr(res, key) {
                Some(any_value::Value::StringValue(v)) => v.clone(),
                other => panic!("{key}: {other:?}"),
            };
            let (service, instance) = (text("service.name"), text("service.instance.id"));
            for m in rm.scope_metrics.iter().flat_map(|sm| &sm.metrics) {
                let counts: Vec<(&[KeyValue], u64)> = match m.data.as_ref().unwrap() {
                    metric::Data::Histogram(h) => h
                        .data_points
                        .iter()
                        .map(|p| (p.attributes.as_slice(), p.count))
                        .collect(),
                    metric::Data::ExponentialHistogram(h) => h
                        .data_points
                        .iter()
                        .map(|p| (p.attributes.as_slice(), p.count))
                        .collect(),
                    metric::Data::Gauge(g) if m.name == "process.cpu.utilization" => {
                        for p in &g.data_points {
                            let Some(number_data_point::Value::AsDouble(v)) = p.value else {
                                panic!("{p:?}")
                            };
                            let minute = p.time_unix_nano / 1_000_000_000 / 60 * 60;
                            *cpu.entry((instance.clone(), minute)).or_default() += v;
                        }
                        continue;
                    }
                    _ => continue,
                };
                for (attrs, count) in counts {
                    let key = format!("{service}/{instance}/{}/{attrs:?}", m.name);
                    let increase = match first.get(&key) {
                        Some(previous) => count - previous,
                        None => 0,
                    };
                    first.insert(key, count);
                    let e = expected
                        .entry((service.clone(), m.name.clone()))
                        .or_default();
                    e[0] += increase;
                    if bad_series(attrs) {
                        e[1] += increase;
                    }
                }
            }
        }
        let response = client.export(request).await.unwrap().into_inner();
        assert!(response.partial_success.is_none(), "{response:?}");
    }
    s.flush().await;

    let got = s
        .sql(
            "SELECT service_name, metric_name, sum(requests), sum(errors) \
             FROM service_metrics_kpi_1m GROUP BY 1, 2",
        )
        .await;
    let got: HashMap<(String, String), [u64; 2]> = got["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (r[0].as_str().unwrap().into(), r[1].as_str().unwrap().into()),
                [r[2].as_u64().unwrap(), r[3].as_u64().unwrap()],
            )
        })
        .collect();
    let metrics: HashSet<&str> = expected.keys().map(|(_, m)| m.as_str()).collect();
    assert_eq!(
        metrics,
        HashSet::from(["http.server.request.duration", "rpc.server.duration"])
    );
    assert_eq!(got, expected);
    let total: u64 = expected.values().map(|e| e[0]).sum();
    let errors: u64 = expected.values().map(|e| e[1]).sum();
    assert!(
        total > 100 && errors > 0,
        "{total} requests, {errors} errors"
    );

    let saturation = s
        .sql(
            "SELECT instance, CAST(date_part('epoch', \"time\") AS BIGINT), cpu_utilization, \
             cpu_metric FROM service_saturation_1m",
        )
        .await;
    let rows = saturation["rows"].as_array().unwrap();
    assert_eq!(rows.len(), cpu.len(), "{saturation}");
    for r in rows {
        let key = (r[0].as_str().unwrap().to_owned(), r[1].as_u64().unwrap());
        let want = cpu[&key];
        assert!(
            (r[2].as_f64().unwrap() - want).abs() < 1e-12,
            "{r:?} vs {want}"
        );
        assert_eq!(r[3], "process.cpu.utilization");
    }
    s.stop().await;
}

/// The dependency graph of simulated shop traffic, against edges paired here from the raw
/// spans: requests, failures and where they came from exactly, per edge and minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_graph_matches_the_raw_spans() {
    let s = server_with_traffic(|_| {}).await;
    let raw = s
        .sql(
            "SELECT encode(trace_id, 'hex'), encode(span_id, 'hex'), encode(parent_span_id, 'hex'), \
             span_kind, service_name, is_error, COALESCE(peer_service, server_address, db_system, 'unknown'), \
             db_system IS NOT NULL, CAST(start_time AS BIGINT), CAST(end_time AS BIGINT), \
             to_char(date_bin(INTERVAL '1 minute', start_time, TIMESTAMP '1970-01-01T00:00:00Z'), '%Y-%m-%dT%H:%M:%SZ') \
             FROM spans",
        )
        .await;
    struct Span {
        trace: String,
        id: String,
        parent: Option<String>,
        kind: String,
        service: String,
        error: bool,
        peer: String,
        db: bool,
        start: i64,
        end: i64,
        minute: String,
    }
    let spans: Vec<Span> = raw["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Span {
            trace: r[0].as_str().unwrap().into(),
            id: r[1].as_str().unwrap().into(),
            parent: r[2].as_str().map(String::from),
            kind: r[3].as_str().unwrap().into(),
            service: r[4].as_str().unwrap().into(),
            error: r[5].as_bool().unwrap(),
            peer: r[6].as_str().unwrap().into(),
            db: r[7].as_bool().unwrap(),
            start: r[8].as_i64().unwrap(),
            end: r[9].as_i64().unwrap(),
            minute: r[10].as_str().unwrap().into(),
        })
        .collect();
    let outgoing = |s: &Span| s.kind == "CLIENT" || s.kind == "PRODUCER";
    let entry = |s: &Span| s.kind == "SERVER" || s.kind == "CONSUMER";
    // An entry span failed because one of its own outgoing calls failed.
    let from_downstream = |e: &Span| {
        e.error
            && spans.iter().any(|c| {
                outgoing(c)
                    && c.error
                    && c.trace == e.trace
                    && c.service == e.service
                    && (e.start..=e.end).contains(&c.start)
            })
    };
    let by_parent: HashMap<(&str, &str), &Span> = spans
        .iter()
        .filter(|s| entry(s) && s.parent.is_some())
        .map(|s| ((s.trace.as_str(), s.parent.as_deref().unwrap()), s))
        .collect();
    // (minute, client, server, type) -> requests, failed, downstream, server, edge.
    let mut want: HashMap<(String, String, String, String), [i64; 5]> = HashMap::new();
    let mut add =
        |key: (String, String, String, String), client_failed: bool, server: Option<&Span>| {
            let e = want.entry(key).or_default();
            let server_failed = server.is_some_and(|s| s.error);
            e[0] += 1;
            e[1] += i64::from(client_failed || server_failed);
            e[2] += i64::from(server_failed && from_downstream(server.unwrap()));
            e[3] += i64::from(server_failed && !from_downstream(server.unwrap()));
            e[4] += i64::from(client_failed && !server_failed);
        };
    for c in spans.iter().filter(|s| outgoing(s)) {
        let server = by_parent.get(&(c.trace.as_str(), c.id.as_str())).copied();
        let kind = match (c.kind.as_str(), server, c.db) {
            ("PRODUCER", _, _) => "messaging_system",
            (_, Some(_), _) => "",
            (_, None, true) => "database",
            (_, None, false) => "virtual_node",
        };
        let callee = server.map_or(c.peer.clone(), |s| s.service.clone());
        add(
            (c.minute.clone(), c.service.clone(), callee, kind.into()),
            c.error,
            server,
        );
    }
    for e in spans.iter().filter(|s| entry(s) && s.parent.is_none()) {
        add(
            (
                e.minute.clone(),
                "user".into(),
                e.service.clone(),
                String::new(),
            ),
            false,
            Some(e),
        );
    }

    let graph = s
        .sql(
            "SELECT to_char(\"time\", '%Y-%m-%dT%H:%M:%SZ'), client, server, connection_type, requests, \
             failed, failed_origin_downstream, failed_origin_server, failed_origin_edge \
             FROM service_graph_1m",
        )
        .await;
    let got: HashMap<(String, String, String, String), [i64; 5]> = graph["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let text = |i: usize| r[i].as_str().unwrap().to_owned();
            let n = |i: usize| r[i].as_i64().unwrap();
            (
                (text(0), text(1), text(2), text(3)),
                [n(4), n(5), n(6), n(7), n(8)],
            )
        })
        .collect();
    assert_eq!(got, want);
    // The shop has every kind of edge and failures of every origin.
    let kinds: HashSet<&str> = want.keys().map(|k| k.3.as_str()).collect();
    assert!(
        kinds.contains("") && kinds.contains("database"),
        "{kinds:?}"
    );
    let origins = want.values().fold([0; 5], |mut acc, v| {
        for (a, x) in acc.iter_mut().zip(v) {
            *a += x;
        }
        acc
    });
    assert!(origins[2] > 0 && origins[3] > 0, "{origins:?}");
    s.stop().await;
}
