//! Rollup files kept decoded in memory (`headroom_analytics::file_cache`): once a dashboard's
//! query has read them, the next ones read them from memory, and the answers stay exactly
//! those of an engine that decodes Parquet every time, through late data and compaction.

use std::time::{Duration, Instant};

use headroom_analytics::QueryEngine;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

use crate::{TestServer, engine_rows as rows, explain};

const MINUTE: u64 = 60_000_000_000;
const HOUR: u64 = 60 * MINUTE;

/// Asks `sql` until no `table` file is read from Parquet: every file is decoded in memory.
async fn until_all_in_memory(engine: &QueryEngine, table: &str, sql: &str) {
    let started = Instant::now();
    let misses = || engine.file_cache_stats().expect("a cache").misses;
    loop {
        let before = misses();
        let plan = explain(engine, sql).await;
        if !plan.contains(&format!("/{table}/")) {
            // Not a file left out: each was found in memory.
            assert_eq!(misses(), before, "{plan}");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{table} still read from Parquet:\n{plan}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoded_rollup_files_answer_as_parquet_does_through_late_data_and_compaction() {
    let s = TestServer::start().await;
    let store = s.running.store.clone();
    // The same stored tables, decoded from Parquet at every query.
    let plain = crate::engine_without_rollup_reads(&s).await;

    // Three hours of shop traffic, a request every 5 minutes, ending two hours ago.
    let now = crate::now_ns();
    let start = now / HOUR * HOUR - 5 * HOUR;
    let mut topology = headroom_loadgen::Topology::new(3);
    let mut client = TraceServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap();
    let mut t = start;
    while t < start + 3 * HOUR {
        client
            .export(topology.traces_request_over(50, t, 5 * MINUTE))
            .await
            .unwrap();
        t += 5 * MINUTE;
        if t == start + 90 * MINUTE {
            s.flush().await;
        }
    }
    s.flush().await;
    assert!(store.stats("service_rollup_1h").unwrap().files >= 2);

    let kpis = format!(
        "SELECT \"time\", service_name, requests, errors, p50_ms, p99_ms, apdex \
         FROM service_kpi_1h WHERE \"time\" >= to_timestamp_nanos({start}) ORDER BY 1, 2"
    );
    let top = "SELECT service_name, endpoint, sum(spans), max(duration_max_ns), \
               exp_histogram_percentile(0.99, latency_sketch(latency_bucket_index, \
               latency_bucket_count, latency_zero_count)) AS p99 FROM span_rollup_1m \
               GROUP BY 1, 2 ORDER BY p99 DESC, 1, 2 LIMIT 10";
    let engine = &s.running.engine;
    for sql in [&kpis, top] {
        let want = rows(&plain, sql).await;
        assert!(want.len() >= 3, "{sql}: {want:?}");
        assert_eq!(rows(engine, sql).await, want, "{sql}");
    }
    until_all_in_memory(engine, "service_rollup_1h", &kpis).await;
    until_all_in_memory(engine, "span_rollup_1m", top).await;
    for sql in [&kpis, top] {
        assert_eq!(rows(engine, sql).await, rows(&plain, sql).await, "{sql}");
    }
    let stats = engine.file_cache_stats().expect("a cache");
    assert!(stats.hits >= 4 && stats.loads >= 4, "{stats:?}");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(&format!("headroom_file_cache_loads_total {}", stats.loads)),
        "{metrics}"
    );

    // Late spans for the first hour: a new file beside the decoded ones, read from Parquet.
    client
        .export(topology.traces_request_over(200, start + 10 * MINUTE, 5 * MINUTE))
        .await
        .unwrap();
    s.flush().await;
    assert!(explain(engine, &kpis).await.contains("/service_rollup_1h/"));
    for sql in [&kpis, top] {
        assert_eq!(rows(engine, sql).await, rows(&plain, sql).await, "{sql}");
    }
    // Compaction replaces the decoded files with one: the decoded copies are not read again.
    let compacting = store.clone();
    let now_ns = i64::try_from(now).unwrap();
    let compacted = tokio::task::spawn_blocking(move || compacting.compact(64 << 20, now_ns))
        .await
        .unwrap()
        .unwrap();
    assert!(compacted.files_merged > 0, "{compacted:?}");
    for sql in [&kpis, top] {
        assert_eq!(rows(engine, sql).await, rows(&plain, sql).await, "{sql}");
    }
    until_all_in_memory(engine, "service_rollup_1h", &kpis).await;
    assert_eq!(rows(engine, &kpis).await, rows(&plain, &kpis).await);
    s.stop().await;
}
