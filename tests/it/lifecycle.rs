//! Rows are visible as soon as they are acknowledged, exactly once across flushes, and
//! shutdown writes everything buffered to Parquet.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

use crate::TestServer;

const T0: u64 = 1_767_225_600_000_000_000;

fn span_count(
    req: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
) -> i64 {
    headroom_loadgen::span_count(req) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_rows_are_queryable_exactly_once_across_flushes() {
    let s = TestServer::start().await;
    let mut client = TraceServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap();
    let mut topo = headroom_loadgen::Topology::new(1);
    let mut sent = 0;
    for i in 0..6u64 {
        let req = topo.traces_request(500, T0 + i * 1_000_000_000);
        sent += span_count(&req);
        let resp = client.export(req).await.unwrap().into_inner();
        assert_eq!(resp.partial_success, None);
        // Queryable immediately after the acknowledgement, from the hot buffer.
        assert_eq!(s.count("SELECT count(*) FROM spans").await, sent);
        if i % 2 == 1 {
            s.flush().await;
            assert_eq!(s.count("SELECT count(*) FROM spans").await, sent);
        }
    }
    let stats = s.running.store.stats("spans").unwrap();
    assert_eq!(stats.file_rows as i64, sent);
    assert_eq!(stats.buffered_rows, 0);
    assert_eq!(
        s.count("SELECT count(DISTINCT span_id) FROM spans").await,
        sent,
        "no span twice"
    );
    // Files are sorted by (service_name, span_name, start_time).
    let files = s.running.store.snapshot("spans").unwrap().files;
    let first = headroom_storage::parquet::read_file(&files[0].path).unwrap();
    let batch = arrow::compute::concat_batches(&first[0].schema(), &first).unwrap();
    let svc = batch.column_by_name("service_name").unwrap();
    let svc = svc
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap();
    let names: Vec<&str> = svc.iter().map(|v| v.unwrap()).collect();
    assert!(
        names.windows(2).all(|w| w[0] <= w[1]),
        "sorted by service_name"
    );
    // The trace-id bloom filter is written.
    let meta = parquet::file::reader::SerializedFileReader::new(
        std::fs::File::open(&files[0].path).unwrap(),
    )
    .unwrap();
    use parquet::file::reader::FileReader;
    let rg = meta.metadata().row_group(0);
    let trace_col = rg
        .columns()
        .iter()
        .position(|c| c.column_path().string() == "trace_id")
        .unwrap();
    assert!(
        rg.column(trace_col).bloom_filter_offset().is_some(),
        "bloom filter on trace_id"
    );

    // Trace lookup by id works through the filter.
    let tid = s.scalar("SELECT trace_id FROM spans LIMIT 1").await;
    let n = s
        .count(&format!(
            "SELECT count(*) FROM spans WHERE trace_id = decode('{}', 'hex')",
            tid.as_str().unwrap()
        ))
        .await;
    assert!(n >= 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_flush_and_shutdown_write_parquet() {
    let s = TestServer::start_with(|c| c.flush_max_age_seconds = 0.3).await;
    let mut client = TraceServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap();
    let mut topo = headroom_loadgen::Topology::new(2);
    let req = topo.traces_request(200, T0);
    let first = span_count(&req);
    client.export(req).await.unwrap();
    let mut flushed = false;
    for _ in 0..50 {
        if s.running.store.stats("spans").unwrap().file_rows as i64 == first {
            flushed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(flushed, "the age threshold flushes without a size trigger");

    // Rows acknowledged just before shutdown end up in Parquet too.
    let req = topo.traces_request(300, T0 + 3_600_000_000_000);
    let second = span_count(&req);
    client.export(req).await.unwrap();
    let dir = s.stop().await;
    let out = headroom::query::run(&dir.path().join("data"), "SELECT count(*) AS n FROM spans")
        .await
        .unwrap();
    assert!(out.contains(&format!("| {} ", first + second)), "{out}");
}
