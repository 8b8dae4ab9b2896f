//! The generator's own tests: topology shape, trace validity, request patching, the runner.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};

use clap::Parser;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use prost::Message;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::{
    error::*, exporter::*, fault::*, model::*, runner::*, template::*, topology::*, util::*,
};

const T0: u64 = 1_700_000_000_000_000_000;

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn attr_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key) {
        Some(any_value::Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

/// (service name, span) for every span of a request.
fn flatten(req: &ExportTraceServiceRequest) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let res = rs.resource.as_ref().unwrap();
        let svc = attr_str(&res.attributes, "service.name")
            .unwrap()
            .to_owned();
        for ss in &rs.scope_spans {
            assert!(ss.scope.is_some());
            for s in &ss.spans {
                out.push((svc.clone(), s.clone()));
            }
        }
    }
    out
}

/// Checks every structural invariant of generated traces; returns
/// (spans, error spans).
fn check_traces(req: &ExportTraceServiceRequest) -> (usize, usize) {
    let spans = flatten(req);
    let mut traces: HashMap<Vec<u8>, Vec<&(String, Span)>> = HashMap::new();
    for entry in &spans {
        let s = &entry.1;
        assert_eq!(s.trace_id.len(), 16);
        assert!(s.trace_id.iter().any(|&b| b != 0));
        assert_eq!(s.span_id.len(), 8);
        assert!(s.span_id.iter().any(|&b| b != 0));
        assert!(s.parent_span_id.is_empty() || s.parent_span_id.len() == 8);
        assert!(s.start_time_unix_nano < s.end_time_unix_nano, "{}", s.name);
        assert!(!s.name.is_empty());
        traces.entry(s.trace_id.clone()).or_default().push(entry);
    }
    let mut errors = 0;
    for members in traces.values() {
        let by_id: HashMap<&[u8], &(String, Span)> = members
            .iter()
            .map(|e| (e.1.span_id.as_slice(), *e))
            .collect();
        assert_eq!(by_id.len(), members.len(), "span ids unique within a trace");
        let mut children: HashMap<&[u8], usize> = HashMap::new();
        let mut roots = 0;
        for (svc, s) in members.iter().map(|e| (&e.0, &e.1)) {
            if s.status
                .as_ref()
                .is_some_and(|st| st.code == status::StatusCode::Error as i32)
            {
                errors += 1;
            }
            if s.parent_span_id.is_empty() {
                roots += 1;
                assert_eq!(svc, "frontend");
                assert_eq!(s.kind, span::SpanKind::Server as i32);
                assert!(attr_str(&s.attributes, "http.route").is_some());
                assert!(attr_str(&s.attributes, "http.request.method").is_some());
                assert!(attr_str(&s.attributes, "url.path").is_some());
                assert!(attr_int(&s.attributes, "http.response.status_code").is_some());
                continue;
            }
            let (psvc, parent) = by_id
                .get(s.parent_span_id.as_slice())
                .map(|e| (&e.0, &e.1))
                .expect("parent in the same trace");
            *children.entry(parent.span_id.as_slice()).or_default() += 1;
            assert!(
                s.start_time_unix_nano >= parent.start_time_unix_nano,
                "{}",
                s.name
            );
            assert!(
                s.end_time_unix_nano <= parent.end_time_unix_nano,
                "{}",
                s.name
            );
            for ev in &s.events {
                assert!(ev.time_unix_nano >= s.start_time_unix_nano);
                assert!(ev.time_unix_nano <= s.end_time_unix_nano);
            }
            if s.kind == span::SpanKind::Server as i32 {
                // A callee's SERVER span hangs off the caller's CLIENT span.
                assert_eq!(parent.kind, span::SpanKind::Client as i32);
                assert_ne!(psvc, svc);
                assert_eq!(parent.name, s.name);
                assert_eq!(
                    attr_str(&parent.attributes, "peer.service"),
                    Some(svc.as_str())
                );
                assert_eq!(
                    attr_str(&parent.attributes, "server.address"),
                    Some(svc.as_str())
                );
                assert_eq!(
                    attr_str(&parent.attributes, "rpc.method"),
                    attr_str(&s.attributes, "rpc.method")
                );
                assert_eq!(attr_str(&s.attributes, "rpc.system"), Some("grpc"));
                assert_eq!(
                    attr_int(&parent.attributes, "rpc.grpc.status_code"),
                    attr_int(&s.attributes, "rpc.grpc.status_code")
                );
            } else {
                assert_eq!(s.kind, span::SpanKind::Client as i32);
                assert_eq!(psvc, svc, "CLIENT spans belong to the caller");
                assert_eq!(parent.kind, span::SpanKind::Server as i32);
                assert!(attr_str(&s.attributes, "server.address").is_some());
                assert!(attr_str(&s.attributes, "peer.service").is_some());
                if let Some(system) = attr_str(&s.attributes, "db.system") {
                    assert!(system == "postgresql" || system == "redis");
                    assert!(attr_str(&s.attributes, "db.operation.name").is_some());
                    assert!(attr_str(&s.attributes, "db.query.text").is_some());
                    if system == "postgresql" {
                        assert!(attr_str(&s.attributes, "db.collection.name").is_some());
                    }
                } else {
                    assert_eq!(attr_str(&s.attributes, "rpc.system"), Some("grpc"));
                    assert!(attr_str(&s.attributes, "rpc.service").is_some());
                    assert!(attr_int(&s.attributes, "rpc.grpc.status_code").is_some());
                }
            }
        }
        assert_eq!(roots, 1, "exactly one root per trace");
        // Every RPC CLIENT span has exactly one SERVER child.
        for (_, s) in members.iter().map(|e| (&e.0, &e.1)) {
            if s.kind == span::SpanKind::Client as i32
                && attr_str(&s.attributes, "rpc.system").is_some()
            {
                assert_eq!(children.get(s.span_id.as_slice()), Some(&1), "{}", s.name);
            }
        }
    }
    (spans.len(), errors)
}

#[test]
fn traces_are_well_formed() {
    let mut topo = Topology::new(7);
    for requested in [1, 50, 512, 2000] {
        let req = topo.traces_request(requested, T0);
        let (n, _) = check_traces(&req);
        assert_eq!(n as u64, span_count(&req));
        assert!(n >= requested, "{n} < {requested}");
        assert!(n < requested + 100, "{n} overshoots {requested}");
        for s in flatten(&req) {
            assert!(s.1.start_time_unix_nano >= T0);
        }
    }
    assert_eq!(span_count(&topo.traces_request(0, T0)), 0);
}

#[test]
fn resources_and_instances() {
    let mut a = Topology::new(3);
    let b = Topology::new(3);
    assert_eq!(a.service_names().len(), 7);
    for name in ["frontend", "checkout", "payment", "cart", "product-catalog"] {
        assert!(a.service_names().contains(&name), "{name}");
    }
    assert!(a.instance_count() >= 14 && a.instance_count() <= 21);
    let req = a.traces_request(5000, T0);
    let mut instances: HashMap<String, HashSet<String>> = HashMap::new();
    for rs in &req.resource_spans {
        let attrs = &rs.resource.as_ref().unwrap().attributes;
        for key in [
            "service.name",
            "service.version",
            "service.instance.id",
            "k8s.namespace.name",
            "k8s.pod.name",
            "telemetry.sdk.language",
        ] {
            assert!(attr_str(attrs, key).is_some(), "{key}");
        }
        assert_eq!(
            attr_str(attrs, "deployment.environment.name"),
            Some("production")
        );
        instances
            .entry(attr_str(attrs, "service.name").unwrap().to_owned())
            .or_default()
            .insert(attr_str(attrs, "service.instance.id").unwrap().to_owned());
    }
    assert_eq!(instances.len(), 7, "every service shows up");
    for (svc, ids) in &instances {
        assert!((2..=3).contains(&ids.len()), "{svc}: {ids:?}");
    }
    // Same seed, same instance ids.
    for (x, y) in a.model.instances.iter().zip(&b.model.instances) {
        assert_eq!(x.resource, y.resource);
    }
    // DB spans exist for both stores.
    let systems: HashSet<String> = flatten(&req)
        .iter()
        .filter_map(|(_, s)| attr_str(&s.attributes, "db.system").map(str::to_owned))
        .collect();
    assert!(systems.contains("postgresql") && systems.contains("redis"));
}

#[test]
fn error_rate_is_sane() {
    let mut topo = Topology::new(11);
    let mut total = 0;
    let mut errors = 0;
    let mut roots = 0;
    let mut root_4xx = HashMap::new();
    let mut root_5xx = 0;
    let mut grpc_codes = HashSet::new();
    while total < 20_000 {
        let req = topo.traces_request(1000, T0);
        let (n, e) = check_traces(&req);
        total += n;
        errors += e;
        for (_, s) in flatten(&req) {
            if let Some(code) = attr_int(&s.attributes, "rpc.grpc.status_code") {
                grpc_codes.insert(code);
            }
            if !s.parent_span_id.is_empty() {
                continue;
            }
            roots += 1;
            let code = attr_int(&s.attributes, "http.response.status_code").unwrap();
            let is_error = s.status.is_some();
            match code {
                400..500 => {
                    assert!(!is_error, "4xx is not a server error");
                    assert!(attr_str(&s.attributes, "error.type").is_none());
                    *root_4xx.entry(code).or_insert(0) += 1;
                }
                500.. => {
                    assert!(is_error);
                    assert_eq!(
                        attr_str(&s.attributes, "error.type"),
                        Some(code.to_string().as_str())
                    );
                    root_5xx += 1;
                }
                _ => assert!(!is_error),
            }
        }
    }
    let rate = errors as f64 / total as f64;
    let root_rate = f64::from(root_5xx) / f64::from(roots);
    println!("span error rate {rate:.4}, root 5xx rate {root_rate:.4}, 4xx {root_4xx:?}");
    assert!((0.005..0.04).contains(&rate), "span error rate {rate}");
    assert!(
        (0.005..0.05).contains(&root_rate),
        "root error rate {root_rate}"
    );
    assert!(root_4xx.contains_key(&404) && root_4xx.contains_key(&429));
    assert!(grpc_codes.contains(&0) && grpc_codes.contains(&13) && grpc_codes.contains(&14));
}

/// Per service: (server spans, failed server spans, mean server duration ms).
type ServerStats = HashMap<String, (f64, f64, f64)>;
/// Per service: the versions seen in resources.
type Versions = HashMap<String, HashSet<String>>;

fn server_stats(req: &ExportTraceServiceRequest) -> (ServerStats, Versions) {
    let mut stats: HashMap<String, (f64, f64, f64)> = HashMap::new();
    for (svc, s) in flatten(req) {
        if s.kind == span::SpanKind::Server as i32 {
            let e = stats.entry(svc).or_default();
            e.0 += 1.0;
            e.1 += f64::from(u8::from(s.status.is_some()));
            e.2 += (s.end_time_unix_nano - s.start_time_unix_nano) as f64 / 1e6;
        }
    }
    for e in stats.values_mut() {
        e.2 /= e.0;
    }
    let mut versions: HashMap<String, HashSet<String>> = HashMap::new();
    for rs in &req.resource_spans {
        let res = rs.resource.as_ref().unwrap();
        versions
            .entry(
                attr_str(&res.attributes, "service.name")
                    .unwrap()
                    .to_owned(),
            )
            .or_default()
            .insert(
                attr_str(&res.attributes, "service.version")
                    .unwrap()
                    .to_owned(),
            );
    }
    (stats, versions)
}

#[test]
fn faults_change_the_traffic() {
    let mut topo = Topology::new(21);
    let (base, base_versions) = server_stats(&topo.traces_request(40_000, T0));
    assert_eq!(
        base_versions["checkout"],
        HashSet::from(["1.9.3".to_owned()])
    );

    // A release of checkout: slower, and PlaceOrder fails a third of the time.
    topo.set_faults(&[
        Fault::ErrorScale(0.0),
        Fault::Service {
            service: "checkout".into(),
            version: Some("1.10.0".into()),
            latency_factor: 4.0,
            error_prob: 0.3,
            endpoint: Some("oteldemo.CheckoutService/PlaceOrder".into()),
        },
    ])
    .unwrap();
    let req = topo.traces_request(40_000, T0);
    let (stats, versions) = server_stats(&req);
    assert_eq!(versions["checkout"], HashSet::from(["1.10.0".to_owned()]));
    assert_eq!(versions["payment"], base_versions["payment"]);
    let (n, failed, _) = stats["cart"];
    assert_eq!(failed, 0.0, "error scale 0 leaves cart healthy ({n} spans)");
    let mut place = (0.0, 0.0);
    for (_, s) in flatten(&req) {
        if s.name == "oteldemo.CheckoutService/PlaceOrder"
            && s.kind == span::SpanKind::Server as i32
        {
            place.0 += 1.0;
            place.1 += f64::from(u8::from(s.status.is_some()));
        }
        if s.name == "oteldemo.CheckoutService/GetOrder" {
            assert!(s.status.is_none(), "only PlaceOrder fails");
        }
    }
    let rate = place.1 / place.0;
    assert!((0.2..0.4).contains(&rate), "PlaceOrder failure rate {rate}");
    assert!(
        stats["frontend"].1 > 0.0,
        "the failure reaches the frontend"
    );

    // A failing database propagates: product-catalog fails, and the frontend with it.
    topo.set_faults(&[
        Fault::ErrorScale(0.0),
        Fault::Database {
            system: "postgresql".into(),
            error_prob: 1.0,
        },
    ])
    .unwrap();
    let (stats, versions) = server_stats(&topo.traces_request(40_000, T0));
    assert_eq!(
        versions["checkout"], base_versions["checkout"],
        "release over"
    );
    let search = stats["product-catalog"].1 / stats["product-catalog"].0;
    assert!(search > 0.05, "catalog failure rate {search}");
    assert!(stats["frontend"].1 / stats["frontend"].0 > 0.05);
    assert_eq!(stats["cart"].1, 0.0, "cart uses redis only");

    // One slow pod of payment: its spans are slower than its siblings'.
    topo.set_faults(&[Fault::SlowInstance {
        service: "payment".into(),
        instance: 0,
        latency_factor: 10.0,
    }])
    .unwrap();
    let slow_id = topo.instance_ids("payment")[0].clone();
    let req = topo.traces_request(40_000, T0);
    let (mut slow, mut other) = ((0.0, 0.0), (0.0, 0.0));
    for rs in &req.resource_spans {
        let res = rs.resource.as_ref().unwrap();
        if attr_str(&res.attributes, "service.name") != Some("payment") {
            continue;
        }
        let acc = if attr_str(&res.attributes, "service.instance.id") == Some(slow_id.as_str()) {
            &mut slow
        } else {
            &mut other
        };
        for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            if s.kind == span::SpanKind::Server as i32 {
                acc.0 += 1.0;
                acc.1 += (s.end_time_unix_nano - s.start_time_unix_nano) as f64;
            }
        }
    }
    let ratio = (slow.1 / slow.0) / (other.1 / other.0);
    assert!(ratio > 4.0, "slow pod {ratio}x");
    assert!(base["payment"].2 > 0.0);

    // Bad names change nothing.
    for bad in [
        Fault::SlowInstance {
            service: "nope".into(),
            instance: 0,
            latency_factor: 2.0,
        },
        Fault::SlowInstance {
            service: "payment".into(),
            instance: 9,
            latency_factor: 2.0,
        },
        Fault::Database {
            system: "mysql".into(),
            error_prob: 0.5,
        },
        Fault::Database {
            system: "redis".into(),
            error_prob: 1.5,
        },
        Fault::ErrorScale(-1.0),
        Fault::Service {
            service: "cart".into(),
            version: None,
            latency_factor: 1.0,
            error_prob: 0.1,
            endpoint: Some("/nope".into()),
        },
    ] {
        let err = topo.set_faults(std::slice::from_ref(&bad)).unwrap_err();
        assert!(!err.is_empty(), "{bad:?}");
    }
    assert_eq!(
        topo.faults
            .instance_latency
            .iter()
            .filter(|&&f| f != 1.0)
            .count(),
        1
    );
}

#[test]
fn cpu_follows_load() {
    let minute = 60_000_000_000;
    let mut topo = Topology::new(4);
    let cpu = |req: &ExportMetricsServiceRequest| -> Vec<f64> {
        req.resource_metrics
            .iter()
            .map(|rm| {
                let m = &rm.scope_metrics[0].metrics[0];
                assert_eq!(m.name, "process.cpu.utilization");
                let Some(metric::Data::Gauge(g)) = &m.data else {
                    panic!("gauge")
                };
                match g.data_points[0].value {
                    Some(number_data_point::Value::AsDouble(v)) => v,
                    _ => panic!("double"),
                }
            })
            .collect()
    };
    let idle = cpu(&topo.cpu_request(T0, 2.0));
    assert!(idle.iter().all(|&u| u < 0.05), "{idle:?}");
    let mut steady = Vec::new();
    let mut doubled = Vec::new();
    for m in 1..=10u64 {
        let spans = if m <= 8 { 20_000 } else { 40_000 };
        topo.traces_request_over(spans, T0 + (m - 1) * minute, minute);
        let u = cpu(&topo.cpu_request(T0 + m * minute, 2.0));
        if m == 8 {
            steady = u;
        } else if m == 10 {
            doubled = u;
        }
    }
    // At the mean rate an instance is at 3 % + 1/2; at twice the rate (mean now 1.2x) at
    // 3 % + 2/2.4.
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!((0.45..0.61).contains(&mean(&steady)), "{steady:?}");
    assert!((0.78..0.95).contains(&mean(&doubled)), "{doubled:?}");
}

#[test]
fn spread_requests_cover_the_window() {
    let mut topo = Topology::new(2);
    let minute = 60_000_000_000;
    let req = topo.traces_request_over(3000, T0, minute);
    let roots: Vec<u64> = flatten(&req)
        .iter()
        .filter(|(_, s)| s.parent_span_id.is_empty())
        .map(|(_, s)| s.start_time_unix_nano - T0)
        .collect();
    assert!(roots.iter().all(|&t| t < minute));
    assert!(roots.iter().any(|&t| t < minute / 10) && roots.iter().any(|&t| t > minute * 9 / 10));
}

#[test]
fn endpoint_latencies_differ() {
    let mut topo = Topology::new(5);
    let req = topo.traces_request(20_000, T0);
    let mut by_name: HashMap<String, Vec<u64>> = HashMap::new();
    for (_, s) in flatten(&req) {
        if s.kind == span::SpanKind::Server as i32 {
            by_name
                .entry(s.name.clone())
                .or_default()
                .push(s.end_time_unix_nano - s.start_time_unix_nano);
        }
    }
    let median = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let charge = median(by_name.get_mut("oteldemo.PaymentService/Charge").unwrap());
    let get_cart = median(by_name.get_mut("oteldemo.CartService/GetCart").unwrap());
    assert!(charge > 5 * get_cart, "{charge} vs {get_cart}");
    // A tail exists: max well above the median for a busy endpoint.
    let v = by_name
        .get_mut("oteldemo.ProductCatalogService/GetProduct")
        .unwrap();
    let m = median(v);
    assert!(*v.last().unwrap() > 4 * m);
}

#[test]
fn sized_topology() {
    let mut topo = Topology::with_size(9, 20, 200);
    assert_eq!(topo.service_names().len(), 20);
    let eps = topo.endpoint_count();
    assert!((190..=215).contains(&eps), "{eps} endpoints");
    // Every non-frontend endpoint has a caller, so all are reachable.
    let mut called = HashSet::new();
    for ep in &topo.model.endpoints {
        for c in &ep.calls {
            if let Target::Endpoint(t) = c.target {
                called.insert(t);
            }
        }
    }
    for (i, ep) in topo.model.endpoints.iter().enumerate() {
        if ep.service != 0 {
            assert!(called.contains(&i), "{} unreachable", ep.name);
        }
    }
    let req = topo.traces_request(5000, T0);
    let (n, _) = check_traces(&req);
    assert!(n >= 5000);
    // Smaller sizes leave the shop unchanged.
    let small = Topology::with_size(9, 3, 5);
    assert_eq!(small.service_names().len(), 7);
    assert_eq!(small.endpoint_count(), Topology::new(9).endpoint_count());
}

#[test]
fn metrics_request_is_consistent() {
    let mut topo = Topology::new(4);
    let first = topo.metrics_request(T0);
    let second = topo.metrics_request(T0 + 1_000_000_000);
    assert!(metric_point_count(&second) > 0);
    let mut prev_counts: HashMap<String, u64> = HashMap::new();
    for (round, req) in [first, second].iter().enumerate() {
        let mut kinds = HashSet::new();
        let mut services = HashSet::new();
        for rm in &req.resource_metrics {
            let res = &rm.resource.as_ref().unwrap().attributes;
            for key in [
                "service.name",
                "service.instance.id",
                "service.version",
                "deployment.environment.name",
            ] {
                assert!(attr_str(res, key).is_some(), "{key}");
            }
            let instance = attr_str(res, "service.instance.id").unwrap();
            services.insert(attr_str(res, "service.name").unwrap().to_owned());
            let mut hist_counts: HashMap<String, u64> = HashMap::new();
            let mut sum_counts: HashMap<String, u64> = HashMap::new();
            for m in rm.scope_metrics.iter().flat_map(|sm| &sm.metrics) {
                match m.data.as_ref().unwrap() {
                    metric::Data::Histogram(h) => {
                        assert_eq!(m.name, "http.server.request.duration");
                        assert_eq!(m.unit, "s");
                        assert_eq!(
                            h.aggregation_temporality,
                            AggregationTemporality::Cumulative as i32
                        );
                        kinds.insert("histogram");
                        for p in &h.data_points {
                            assert_eq!(p.explicit_bounds, HTTP_DURATION_BOUNDS.to_vec());
                            assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
                            assert_eq!(p.count, p.bucket_counts.iter().sum::<u64>());
                            assert!(p.count > 0);
                            assert!(p.min.unwrap() <= p.max.unwrap());
                            assert!(p.start_time_unix_nano < p.time_unix_nano);
                            let key = format!("{instance}{:?}", p.attributes);
                            if round == 1 {
                                assert!(p.count >= prev_counts.get(&key).copied().unwrap_or(0));
                            }
                            prev_counts.insert(key.clone(), p.count);
                            hist_counts.insert(key, p.count);
                        }
                    }
                    metric::Data::ExponentialHistogram(h) => {
                        assert_eq!(m.name, "rpc.server.duration");
                        assert_eq!(m.unit, "ms");
                        kinds.insert("exponential_histogram");
                        for p in &h.data_points {
                            let pos = p.positive.as_ref().unwrap();
                            assert_eq!(
                                p.count,
                                p.zero_count + pos.bucket_counts.iter().sum::<u64>()
                            );
                            // min/max fall in the first/last populated bucket range.
                            let base = 2f64.powf(2f64.powi(-p.scale));
                            let lo = base.powi(pos.offset);
                            let hi = base.powi(pos.offset + pos.bucket_counts.len() as i32);
                            assert!(p.min.unwrap() >= lo * 0.999, "{} < {lo}", p.min.unwrap());
                            assert!(p.max.unwrap() <= hi * 1.001);
                        }
                    }
                    metric::Data::Gauge(g) => {
                        kinds.insert("gauge");
                        for p in &g.data_points {
                            match p.value {
                                Some(number_data_point::Value::AsDouble(v)) => {
                                    assert!((0.0..=1.0).contains(&v));
                                }
                                _ => panic!("gauge must be a double"),
                            }
                        }
                    }
                    metric::Data::Sum(s) => {
                        assert!(s.is_monotonic);
                        assert_eq!(
                            s.aggregation_temporality,
                            AggregationTemporality::Cumulative as i32
                        );
                        kinds.insert("sum");
                        for p in &s.data_points {
                            let Some(number_data_point::Value::AsInt(v)) = p.value else {
                                panic!("sum must be an int");
                            };
                            sum_counts.insert(
                                format!("{instance}{:?}", p.attributes),
                                u64::try_from(v).unwrap(),
                            );
                        }
                    }
                    metric::Data::Summary(_) => panic!("no summaries"),
                }
            }
            assert_eq!(hist_counts, sum_counts, "sum agrees with histogram counts");
        }
        assert_eq!(
            kinds,
            HashSet::from(["histogram", "exponential_histogram", "gauge", "sum"])
        );
        assert_eq!(services.len(), 7);
    }
}

#[test]
fn logs_link_to_traces() {
    let mut topo = Topology::new(8);
    let req = topo.traces_request(5000, T0);
    let spans: HashSet<(Vec<u8>, Vec<u8>)> = flatten(&req)
        .into_iter()
        .map(|(_, s)| (s.trace_id, s.span_id))
        .collect();
    let logs = topo.logs_request(30, T0 + 2_000_000_000);
    let records: Vec<&LogRecord> = logs
        .resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .collect();
    assert_eq!(records.len(), 30);
    let mut errors = 0;
    for r in &records {
        assert!(spans.contains(&(r.trace_id.clone(), r.span_id.clone())));
        assert!(r.body.is_some());
        if r.severity_number == SeverityNumber::Error as i32 {
            errors += 1;
        }
    }
    assert!(errors > 0, "error logs come first");
    // Without prior traces it still produces linked-looking records.
    let mut fresh = Topology::new(8);
    let logs = fresh.logs_request(5, T0);
    let n: usize = logs
        .resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .map(|sl| sl.log_records.len())
        .sum();
    assert_eq!(n, 5);
}

#[test]
fn template_patching_keeps_traces_valid() {
    let mut topo = Topology::new(2);
    let req = topo.traces_request(300, T0);
    let t = Template::new(&req).unwrap();
    assert_eq!(t.spans, span_count(&req));
    assert_eq!(t.trace_ids.len() as u64, t.spans);
    let mut rng = SmallRng::seed_from_u64(1);
    let now = T0 + 3_600_000_000_000;
    let a = ExportTraceServiceRequest::decode(t.instantiate(now, &mut rng)).unwrap();
    let b = ExportTraceServiceRequest::decode(t.instantiate(now + 5, &mut rng)).unwrap();
    check_traces(&a);
    check_traces(&b);
    let orig = flatten(&req);
    let pa = flatten(&a);
    let pb = flatten(&b);
    assert_eq!(orig.len(), pa.len());
    let delta = now - t.max_time;
    let mut max_end = 0;
    for ((o, x), y) in orig.iter().zip(&pa).zip(&pb) {
        let (o, x, y) = (&o.1, &x.1, &y.1);
        assert_ne!(o.trace_id, x.trace_id);
        assert_ne!(x.span_id, y.span_id);
        assert_eq!(x.start_time_unix_nano, o.start_time_unix_nano + delta);
        assert_eq!(x.end_time_unix_nano, o.end_time_unix_nano + delta);
        assert_eq!(x.name, o.name);
        assert_eq!(x.attributes, o.attributes);
        max_end = max_end.max(x.end_time_unix_nano);
    }
    assert!(max_end <= now);
    let ids_a: HashSet<_> = pa.iter().map(|(_, s)| s.trace_id.clone()).collect();
    let ids_o: HashSet<_> = orig.iter().map(|(_, s)| s.trace_id.clone()).collect();
    assert_eq!(ids_a.len(), ids_o.len());
}

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    args: LoadgenArgs,
}

#[test]
fn args_parse() {
    let cli = Cli::try_parse_from(["loadgen"]).unwrap();
    let d = LoadgenArgs::default();
    assert_eq!(cli.args.endpoint, d.endpoint);
    assert_eq!(cli.args.protocol, Protocol::Grpc);
    assert_eq!(cli.args.rate, 10_000);
    assert_eq!(cli.args.duration_seconds, 10);
    assert_eq!(cli.args.batch_spans, 512);
    assert_eq!(cli.args.concurrency, 4);
    assert!(cli.args.metrics);
    let cli = Cli::try_parse_from([
        "loadgen",
        "--protocol",
        "http",
        "--endpoint",
        "http://x:4318",
        "--rate",
        "0",
        "--metrics=false",
        "--seed",
        "9",
    ])
    .unwrap();
    assert_eq!(cli.args.protocol, Protocol::Http);
    assert_eq!(cli.args.rate, 0);
    assert!(!cli.args.metrics);
    assert_eq!(cli.args.seed, 9);
    assert!(
        Cli::try_parse_from(["loadgen", "--metrics"])
            .unwrap()
            .args
            .metrics
    );
}

#[test]
fn batch_shrinks_at_low_rates() {
    assert_eq!(effective_batch(512, 0), 512);
    assert_eq!(effective_batch(512, 10_000), 512);
    assert_eq!(effective_batch(512, 1000), 100);
    assert_eq!(effective_batch(512, 3), 1);
    assert_eq!(
        normalize_endpoint("127.0.0.1:4317/").unwrap(),
        "http://127.0.0.1:4317"
    );
    assert!(normalize_endpoint("https://x").is_err());
}

#[tokio::test]
async fn run_fails_when_nothing_is_acked() {
    // Grab a free port and close it again so nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for protocol in [Protocol::Grpc, Protocol::Http] {
        let args = LoadgenArgs {
            endpoint: format!("127.0.0.1:{port}"),
            protocol,
            duration_seconds: 1,
            ..LoadgenArgs::default()
        };
        let err = run(&args).await.unwrap_err();
        let msg = err.to_string();
        println!("{msg}");
        assert!(matches!(err, LoadgenError::AllFailed { .. }));
        assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    }
}

/// `cargo test --release --lib loadgen::tests::generation_speed -- --ignored --nocapture`
#[test]
#[ignore]
fn generation_speed() {
    let mut topo = Topology::with_size(1, 20, 200);
    let start = std::time::Instant::now();
    let mut n = 0;
    while n < 1_000_000 {
        n += span_count(&topo.traces_request(512, T0));
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{:.0} spans/s generated", n as f64 / secs);
    let req = topo.traces_request(512, T0);
    let t = Template::new(&req).unwrap();
    let mut rng = SmallRng::seed_from_u64(1);
    let start = std::time::Instant::now();
    for i in 0..10_000 {
        std::hint::black_box(t.instantiate(T0 + i, &mut rng));
    }
    let per = start.elapsed().as_secs_f64() / 10_000.0;
    println!(
        "{:.1} µs per instantiated request ({} spans)",
        per * 1e6,
        t.spans
    );
}
