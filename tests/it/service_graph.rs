//! The service graph's rollup in a running server: settled hours are read from `edge_rollup_1m`
//! (computed by the maintenance round) with the same counts as pairing the spans, late spans
//! are counted from the spans until their hour is computed again, and no call counts twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use headroom_analytics::QueryEngine;
use headroom_storage::schema::EDGE_ROLLUP_1M;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

use crate::TestServer;

const HOUR_NS: u64 = 3_600_000_000_000;
const MINUTE_NS: u64 = 60_000_000_000;

/// (minute, client, server, connection type) -> (requests, failed, downstream, server, edge,
/// p50, p95, server p95).
type Graph = HashMap<(String, String, String, String), ([i64; 5], [Option<f64>; 3])>;

const GRAPH: &str = "SELECT CAST(\"time\" AS BIGINT), client, server, connection_type, requests, \
    failed, failed_origin_downstream, failed_origin_server, failed_origin_edge, p50_ms, p95_ms, \
    server_p95_ms FROM service_graph_1m";

fn graph(batches: &[arrow::array::RecordBatch]) -> Graph {
    let rows = headroom_analytics::engine::to_json_rows(batches).unwrap();
    rows.iter()
        .map(|r| {
            let text = |i: usize| r[i].to_string();
            let n = |i: usize| r[i].as_i64().unwrap();
            let f = |i: usize| r[i].as_f64();
            (
                (text(0), text(1), text(2), text(3)),
                ([n(4), n(5), n(6), n(7), n(8)], [f(9), f(10), f(11)]),
            )
        })
        .collect()
}

/// The same counts, and percentiles within the sketches' error.
fn assert_same(got: &Graph, want: &Graph) {
    assert_eq!(got.len(), want.len());
    for (key, (counts, percentiles)) in want {
        let (got_counts, got_percentiles) = &got[key];
        assert_eq!(got_counts, counts, "{key:?}");
        for (g, w) in got_percentiles.iter().zip(percentiles) {
            match (g, w) {
                (Some(g), Some(w)) => assert!(
                    (g - w).abs() <= 0.01 * w.abs() + 1e-9,
                    "{key:?}: {g} against {w}"
                ),
                (g, w) => assert_eq!(g.is_some(), w.is_some(), "{key:?}"),
            }
        }
    }
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the graph over every hour reads no span file and no buffered spans (a memory
/// source shows its `partition_sizes`): every hour with spans is rolled up.
async fn reads_only_the_rollup(engine: &QueryEngine) -> bool {
    let text = crate::explain(engine, GRAPH).await;
    text.contains("edge_rollup_1m")
        && !text.contains("/spans/")
        && !text.contains("partition_sizes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_graph_reads_settled_hours_from_the_edge_rollup() {
    // EXPLAIN names the files a query reads; files decoded in memory it would not name.
    let s = TestServer::start_with(|c| {
        c.maintenance_interval_seconds = 0.2;
        c.file_cache_bytes = 0;
    })
    .await;
    let store = s.running.store.clone();
    // The same stored tables without the rollup: every hour paired from the spans.
    let raw = crate::engine_without_rollup_reads(&s).await;

    // Four hours of shop traffic, a request every 5 minutes, ending five hours ago.
    let now = crate::now_ns();
    let first_hour = now / HOUR_NS * HOUR_NS - 8 * HOUR_NS;
    let mut topology = headroom_loadgen::Topology::new(5);
    let mut client = TraceServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap();
    for step in 0..48 {
        let at = first_hour + step * 5 * MINUTE_NS;
        client
            .export(topology.traces_request_over(300, at, MINUTE_NS))
            .await
            .unwrap();
    }
    s.flush().await;

    // The maintenance round computes the four hours (and the one after, whose spans from the
    // last request reach into it).
    let engine = &s.running.engine;
    wait_for("the edges of every hour", async || {
        reads_only_the_rollup(engine).await
    })
    .await;
    let files = store.stats(EDGE_ROLLUP_1M).unwrap().files;
    assert!((4..=5).contains(&files), "{files} edge files");
    let want = graph(&raw.sql(GRAPH).await.unwrap());
    assert!(want.len() > 100, "{} edges", want.len());
    let got = graph(&engine.sql(GRAPH).await.unwrap());
    assert_same(&got, &want);
    // A range inside the rolled-up hours, cut mid-hour, gives the raw answer's rows.
    let from = first_hour + HOUR_NS + 30 * MINUTE_NS;
    let to = first_hour + 3 * HOUR_NS + 7 * MINUTE_NS;
    let ranged = format!(
        "{GRAPH} WHERE \"time\" >= arrow_cast({from}, 'Timestamp(Nanosecond, Some(\"UTC\"))') \
         AND \"time\" < arrow_cast({to}, 'Timestamp(Nanosecond, Some(\"UTC\"))')"
    );
    let want_ranged = graph(&raw.sql(&ranged).await.unwrap());
    assert!(!want_ranged.is_empty() && want_ranged.len() < want.len());
    assert_same(&graph(&engine.sql(&ranged).await.unwrap()), &want_ranged);

    // Late spans for the second hour: buffered, then flushed, they are counted from the spans
    // at once, and the hour is computed again.
    client
        .export(topology.traces_request_over(300, first_hour + HOUR_NS + 20 * MINUTE_NS, MINUTE_NS))
        .await
        .unwrap();
    let want = graph(&raw.sql(GRAPH).await.unwrap());
    assert!(!reads_only_the_rollup(engine).await);
    assert_same(&graph(&engine.sql(GRAPH).await.unwrap()), &want);
    s.flush().await;
    wait_for("the edges of the late hour", async || {
        reads_only_the_rollup(engine).await
    })
    .await;
    assert_same(&graph(&engine.sql(GRAPH).await.unwrap()), &want);
    s.stop().await;
}
