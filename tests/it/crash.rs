//! Nothing acknowledged is lost: the real `headroom serve` process is killed with SIGKILL at
//! random moments while concurrent clients send traces and metrics, then restarted; every span
//! and data point of an acknowledged request must be queryable exactly once, and nothing else may
//! appear twice. Also: a damaged WAL tail is cut off and reported, and the rest is served.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use serde_json::json;

use crate::ServerProcess as Server;

pub const SPANS_PER_REQUEST: u32 = 40;
const POINTS_PER_REQUEST: u32 = 10;
const HOUR_NS: u64 = 3_600_000_000_000;

/// Request `seq` of client `client`: spans named `c<client>-r<seq>-s<i>` spread over three
/// hours (so a flush writes several files), and gauge points whose integer value is unique.
pub fn trace_request(client: u32, seq: u32) -> ExportTraceServiceRequest {
    let base = 1_790_000_000_000_000_000u64;
    let spans = (0..SPANS_PER_REQUEST)
        .map(|i| {
            let start = base + u64::from(i % 3) * HOUR_NS + u64::from(seq) * 1_000;
            let mut trace_id = [0u8; 16];
            trace_id[..4].copy_from_slice(&client.to_be_bytes());
            trace_id[4..8].copy_from_slice(&seq.to_be_bytes());
            Span {
                trace_id: trace_id.to_vec(),
                span_id: [
                    client as u8,
                    (seq >> 16) as u8,
                    (seq >> 8) as u8,
                    seq as u8,
                    0,
                    0,
                    0,
                    i as u8 + 1,
                ]
                .to_vec(),
                name: format!("c{client}-r{seq}-s{i}"),
                // Server spans: the service rollups count them too.
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 1_000_000,
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn point_id(client: u32, seq: u32, i: u32) -> i64 {
    (i64::from(client) << 40) | (i64::from(seq) << 8) | i64::from(i)
}

fn metrics_request(client: u32, seq: u32) -> ExportMetricsServiceRequest {
    let base = 1_790_000_000_000_000_000u64;
    let data_points = (0..POINTS_PER_REQUEST)
        .map(|i| NumberDataPoint {
            time_unix_nano: base + u64::from(i % 2) * HOUR_NS + u64::from(seq),
            value: Some(number_data_point::Value::AsInt(point_id(client, seq, i))),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "crash_test".into(),
                    data: Some(metric::Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Fails, naming a few, if any key was stored more than once.
fn assert_each_once<K: std::fmt::Debug>(what: &str, counts: &HashMap<K, i64>) {
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "{} {what} stored more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
}

#[derive(Default)]
struct Acked {
    requests: Vec<(u32, u32)>,
}

/// Sends trace and metrics requests one after the other until `stop` or the server dies;
/// returns the requests acknowledged.
async fn client(endpoint: String, client: u32, first_seq: u32, stop: Arc<AtomicBool>) -> Acked {
    let mut acked = Acked::default();
    let Ok(channel) = tonic::transport::Endpoint::new(endpoint)
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect()
        .await
    else {
        return acked;
    };
    let mut traces = TraceServiceClient::new(channel.clone());
    let mut metrics = MetricsServiceClient::new(channel);
    let mut seq = first_seq;
    while !stop.load(Ordering::SeqCst) {
        let t = traces.export(trace_request(client, seq)).await;
        let m = metrics.export(metrics_request(client, seq)).await;
        if t.is_err() || m.is_err() {
            // The server is gone (killed). A half-acknowledged pair is not recorded as
            // acknowledged, but its rows are still checked for duplicates.
            break;
        }
        acked.requests.push((client, seq));
        seq += 1;
    }
    acked
}

fn serve_args() -> Vec<&'static str> {
    vec![
        // Frequent small flushes and segment rolls, so kills land in every phase.
        "--flush-max-rows",
        "1500",
        "--flush-max-age-seconds",
        "0.2",
        "--wal-segment-bytes",
        "200000",
        // … and compactions and deletions of replaced files too.
        "--maintenance-interval-seconds",
        "0.3",
        "--deleted-file-grace-seconds",
        "0",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_and_duplicates_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut acked: Vec<(u32, u32)> = Vec::new();
    let mut compactions = 0;
    const CLIENTS: u32 = 4;
    const CYCLES: u32 = 5;
    for cycle in 0..CYCLES {
        let server = Server::start(&data, dir.path().join(format!("log{cycle}")), &serve_args());
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                // Sequence numbers never repeat across cycles.
                tokio::spawn(client(
                    server.grpc.clone(),
                    c,
                    cycle * 1_000_000,
                    stop.clone(),
                ))
            })
            .collect();
        let delay = 300 + rand::random_range(0..1200);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        compactions += server.log().matches("compacted").count();
        server.kill9();
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            acked.extend(c.await.unwrap().requests);
        }
    }
    assert!(
        acked.len() > 100,
        "too few requests acknowledged to test anything: {}",
        acked.len()
    );

    let server = Server::start(&data, dir.path().join("log-final"), &serve_args());
    let log = server.log();
    assert!(log.contains("WAL replayed"), "{log}");

    // Every span at most once, and every span of an acknowledged request present.
    let rows = server
        .sql("SELECT span_name, count(*) AS n FROM spans GROUP BY span_name")
        .await;
    let mut spans: HashMap<String, i64> = HashMap::new();
    for r in rows {
        spans.insert(r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap());
    }
    assert_each_once("spans", &spans);
    let mut missing = Vec::new();
    for (c, seq) in &acked {
        for i in 0..SPANS_PER_REQUEST {
            let name = format!("c{c}-r{seq}-s{i}");
            if !spans.contains_key(&name) {
                missing.push(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged spans missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // The rollups are computed again from the logged spans: each stored span counted once in
    // each (the span name is the endpoint here).
    let rows = server
        .sql("SELECT endpoint, sum(spans) FROM span_rollup_1m GROUP BY endpoint")
        .await;
    let rolled: HashMap<String, i64> = rows
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap()))
        .collect();
    assert_eq!(rolled, spans, "span_rollup_1m against spans");
    for table in [
        "span_rollup_1h",
        "span_rollup_1d",
        "service_rollup_1m",
        "service_rollup_1h",
        "service_rollup_1d",
    ] {
        let rows = server.sql(&format!("SELECT sum(spans) FROM {table}")).await;
        assert_eq!(rows[0][0].as_i64(), Some(spans.len() as i64), "{table}");
    }

    let rows = server
        .sql(
            "SELECT value_int, count(*) AS n FROM metric_points \
             WHERE metric_name = 'crash_test' GROUP BY value_int",
        )
        .await;
    let mut points: HashMap<i64, i64> = HashMap::new();
    for r in rows {
        points.insert(r[0].as_i64().unwrap(), r[1].as_i64().unwrap());
    }
    assert_each_once("points", &points);
    let acked_points: HashSet<i64> = acked
        .iter()
        .flat_map(|(c, seq)| (0..POINTS_PER_REQUEST).map(move |i| point_id(*c, *seq, i)))
        .collect();
    let missing = acked_points
        .iter()
        .filter(|p| !points.contains_key(p))
        .count();
    assert_eq!(missing, 0, "acknowledged data points missing");
    eprintln!(
        "crash test: {} acknowledged request pairs over {CYCLES} kills ({compactions} compaction passes before them); {} spans and {} points stored",
        acked.len(),
        spans.len(),
        points.len()
    );
    server.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_wal_tail_is_cut_off_reported_and_the_rest_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Nothing is flushed: everything lives in the WAL when the process dies.
    let args = ["--flush-max-age-seconds", "3600"];
    let server = Server::start(&data, dir.path().join("log0"), &args);
    let mut client = TraceServiceClient::connect(server.grpc.clone())
        .await
        .unwrap();
    for seq in 0..3 {
        client.export(trace_request(7, seq)).await.unwrap();
    }
    drop(client);
    server.kill9();

    let segments: Vec<PathBuf> = {
        let mut v: Vec<_> = std::fs::read_dir(data.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        v.sort();
        v
    };
    let last = segments.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    // Tear the last record, as a crash in the middle of a write would.
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 100)
        .unwrap();

    let server = Server::start(&data, dir.path().join("log1"), &args);
    let log = server.log();
    assert!(log.contains("WAL damage found and cut off"), "{log}");
    assert!(log.contains("torn record"), "{log}");
    let rows = server
        .sql("SELECT count(*), count(DISTINCT trace_id) FROM spans")
        .await;
    assert_eq!(
        rows[0],
        vec![json!(2 * SPANS_PER_REQUEST), json!(2)],
        "the two intact requests are served"
    );
    // New data goes on being accepted after the cut.
    let mut client = TraceServiceClient::connect(server.grpc.clone())
        .await
        .unwrap();
    client.export(trace_request(7, 3)).await.unwrap();
    let rows = server.sql("SELECT count(*) FROM spans").await;
    assert_eq!(rows[0][0], json!(3 * SPANS_PER_REQUEST));
    server.kill9();
}
