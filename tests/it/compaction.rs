//! Compaction and retention in a running server: queries running while files are merged always
//! see every row exactly once; expired hour partitions disappear, recent ones stay.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

use crate::TestServer;
use crate::crash::{SPANS_PER_REQUEST, trace_request};

async fn send_and_flush(s: &TestServer, client: u32, requests: u32) {
    let mut c = TraceServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap();
    for seq in 0..requests {
        c.export(trace_request(client, seq)).await.unwrap();
        // One flush per request: three small files (one per hour) each time.
        s.flush().await;
    }
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_compaction_see_every_row_exactly_once() {
    let s = TestServer::start_with(|c| c.maintenance_interval_seconds = 0.2).await;
    const REQUESTS: u32 = 20;
    send_and_flush(&s, 1, REQUESTS).await;
    let expected = i64::from(REQUESTS * SPANS_PER_REQUEST);

    // Query continuously while the maintenance task merges the 60 files into 3.
    let started = Instant::now();
    let mut queries = 0;
    loop {
        let v = s
            .sql("SELECT count(*) AS n, count(DISTINCT span_name) AS d FROM spans")
            .await;
        assert_eq!(
            v["rows"][0],
            serde_json::json!([expected, expected]),
            "after {queries} queries"
        );
        queries += 1;
        let files = s.running.store.stats("spans").unwrap().files;
        if files == 3 && queries > 20 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still {files} files"
        );
    }
    // Files are sorted by the table's sort key, the merged ones too.
    let v = s
        .sql(
            "SELECT count(*) FROM (SELECT start_time, lag(start_time) OVER (ORDER BY start_time) AS prev FROM spans) WHERE prev > start_time",
        )
        .await;
    assert_eq!(v["rows"][0][0], 0);
    let dir = s.stop().await;
    // A restart sees the compacted table: replaced files were never left for it to read twice.
    let s = TestServer::start_with(|c| c.data_dir = dir.path().join("data")).await;
    assert_eq!(s.count("SELECT count(*) FROM spans").await, expected);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_expired_partitions_and_keeps_recent_ones() {
    let s = TestServer::start_with(|c| {
        c.maintenance_interval_seconds = 0.2;
        // Long enough for any query of this test to finish before the files it listed go.
        c.deleted_file_grace_seconds = 2.0;
        c.retention = headroom::config::parse_retention("30d").unwrap();
    })
    .await;
    // trace_request's spans are from September 2026, more than 30 days before now.
    send_and_flush(&s, 1, 2).await;
    // A span from now is kept.
    let mut recent = trace_request(2, 0);
    let now = crate::now_ns();
    for span in &mut recent.resource_spans[0].scope_spans[0].spans {
        span.start_time_unix_nano = now;
        span.end_time_unix_nano = now + 1;
    }
    let mut c = TraceServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap();
    c.export(recent).await.unwrap();
    s.flush().await;

    wait_for("expiry", async || {
        s.count("SELECT count(*) FROM spans").await == i64::from(SPANS_PER_REQUEST)
    })
    .await;
    assert_eq!(
        s.count("SELECT count(*) FROM spans WHERE span_name LIKE 'c2-%'")
            .await,
        i64::from(SPANS_PER_REQUEST)
    );
    let old_partitions = s.dir.path().join("data/spans/date=2026-09-21");
    wait_for("deleted files", async || !old_partitions.exists()).await;
    s.stop().await;
}
