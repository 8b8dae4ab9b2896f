//! `headroom loadgen` against the real server: what it reports as acknowledged is exactly what
//! SQL finds.

use headroom_loadgen::{self as loadgen, LoadgenArgs, Protocol};

use crate::TestServer;

async fn metric_rows(s: &TestServer) -> i64 {
    let mut n = 0;
    for t in [
        "metric_points",
        "histogram_points",
        "exp_histogram_points",
        "summary_points",
    ] {
        n += s.count(&format!("SELECT count(*) FROM {t}")).await;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_over_grpc_reports_what_was_stored() {
    let s = TestServer::start().await;
    let args = LoadgenArgs {
        endpoint: s.grpc_endpoint(),
        rate: 0,
        duration_seconds: 1,
        batch_spans: 256,
        concurrency: 2,
        ..LoadgenArgs::default()
    };
    let report = loadgen::run(&args).await.unwrap();
    assert_eq!(report.errors, 0, "{report}");
    assert_eq!(report.requests_sent, report.requests_acked);
    assert_eq!(report.spans_rejected, 0);
    assert!(report.spans_acked > 0);
    assert_eq!(
        s.count("SELECT count(*) FROM spans").await,
        report.spans_acked as i64
    );
    assert_eq!(
        s.count("SELECT count(DISTINCT span_id) FROM spans").await,
        report.spans_acked as i64,
        "re-sent templates get fresh ids"
    );
    assert!(report.metric_points_acked > 0);
    assert_eq!(metric_rows(&s).await, report.metric_points_acked as i64);
    assert!(report.ack_latency_p50_ms <= report.ack_latency_p99_ms);
    assert!(report.ack_latency_p99_ms <= report.ack_latency_max_ms);
    // The simulated shop has errors, client and server spans, and several services.
    assert!(s.count("SELECT count(*) FROM spans WHERE is_error").await > 0);
    assert!(
        s.count("SELECT count(DISTINCT service_name) FROM spans")
            .await
            >= 5
    );
    assert!(
        s.count("SELECT count(*) FROM spans WHERE db_system = 'postgresql'")
            .await
            > 0
    );

    // Self-observability agrees with the client.
    let api = format!("http://{}", s.running.http_addr);
    let metrics = s.metrics().await;
    let want = format!(
        "headroom_otlp_items_accepted_total{{signal=\"traces\"}} {}",
        report.spans_acked
    );
    assert!(metrics.contains(&want), "{metrics}");
    assert!(
        metrics.contains("headroom_table_buffered_rows{table=\"spans\"}"),
        "{metrics}"
    );
    let health = s.client.get(format!("{api}/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_over_http_is_paced() {
    let s = TestServer::start().await;
    let args = LoadgenArgs {
        endpoint: format!("http://{}", s.running.otlp_http_addr),
        protocol: Protocol::Http,
        rate: 2_000,
        duration_seconds: 2,
        concurrency: 2,
        metrics: false,
        ..LoadgenArgs::default()
    };
    let report = loadgen::run(&args).await.unwrap();
    assert_eq!(report.errors, 0, "{report}");
    assert!((3_000..=5_500).contains(&report.spans_sent), "{report}");
    assert_eq!(
        s.count("SELECT count(*) FROM spans").await,
        report.spans_acked as i64
    );
    assert_eq!(metric_rows(&s).await, 0);
    s.stop().await;
}
