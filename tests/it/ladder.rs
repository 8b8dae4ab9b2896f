//! Aggregates over the rollups read the coarsest levels that cover their range
//! (`headroom_analytics::ladder`): three days of traffic asked of `span_rollup_1m`,
//! `span_rollup_1h` and `service_rollup_1h` over ranges cut mid-hour and mid-day give exactly
//! what the table asked for gives alone, and read `span_rollup_1d` for the whole days.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

use crate::{TestServer, engine_rows as rows, explain};

const MINUTE: u64 = 60_000_000_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

fn at(ns: u64) -> String {
    format!("arrow_cast({ns}, 'Timestamp(Nanosecond, Some(\"UTC\"))')")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_over_days_read_the_daily_rollup_with_the_same_answers() {
    // EXPLAIN names the files a query reads; files decoded in memory it would not name.
    let s = TestServer::start_with(|c| c.file_cache_bytes = 0).await;
    // The same tables without the rule: each query reads only the table it names.
    let plain = crate::engine_without_rollup_reads(&s).await;

    // Traffic every 50 minutes from 10:00 on day 0 to 20:00 on day 3 (day 0 four days ago).
    let now = crate::now_ns();
    let day0 = now / DAY * DAY - 4 * DAY;
    let mut topology = headroom_loadgen::Topology::new(3);
    let mut client = TraceServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap();
    let mut t = day0 + 10 * HOUR;
    while t < day0 + 3 * DAY + 20 * HOUR {
        client
            .export(topology.traces_request_over(200, t, 10 * MINUTE))
            .await
            .unwrap();
        t += 50 * MINUTE;
    }
    // Some of it in Parquet, some still buffered.
    s.flush().await;
    client
        .export(topology.traces_request_over(200, day0 + DAY + 5 * HOUR, 10 * MINUTE))
        .await
        .unwrap();

    // Day 0 is where the daily table starts: it is trusted from day 1 on.
    let (from, to) = (
        day0 + 13 * HOUR + 7 * MINUTE,
        day0 + 3 * DAY + 15 * HOUR + 30 * MINUTE,
    );
    let range = format!("\"time\" >= {} AND \"time\" < {}", at(from), at(to));
    let sketch = "latency_sketch(latency_bucket_index, latency_bucket_count, latency_zero_count)";
    let reads_days = [
        format!(
            "SELECT service_name, endpoint, sum(spans), min(duration_min_ns), \
             max(duration_max_ns), exp_histogram_percentile(0.99, {sketch}) \
             FROM span_rollup_1h WHERE span_kind IN ('SERVER', 'CONSUMER') AND NOT health_check \
             AND {range} GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        format!(
            "SELECT status_class, sum(spans), sum(duration_sum_ns), {sketch} \
             FROM span_rollup_1m r WHERE {range} GROUP BY 1 ORDER BY 1"
        ),
        format!(
            "SELECT service_name, sum(spans) FILTER (WHERE status_class = 'error'), \
             exp_histogram_percentile(0.5, {sketch}) \
             FROM service_rollup_1h WHERE \"time\" BETWEEN {} AND {} GROUP BY 1 ORDER BY 1",
            at(from),
            at(to)
        ),
    ];
    for sql in &reads_days {
        let want = rows(&plain, sql).await;
        assert!(want.len() >= 2, "{sql}: {want:?}");
        assert_eq!(rows(&s.running.engine, sql).await, want, "{sql}");
        let plan = explain(&s.running.engine, sql).await;
        assert!(plan.contains("_rollup_1d"), "{sql}\n{plan}");
        assert!(!explain(&plain, sql).await.contains("_rollup_1d"));
    }
    // Counting rows, grouping by time or bounding it otherwise reads the table asked for.
    let reads_as_asked = [
        format!(
            "SELECT service_name, count(*) FROM span_rollup_1h WHERE {range} GROUP BY 1 ORDER BY 1"
        ),
        format!(
            "SELECT date_trunc('day', \"time\"), sum(spans) FROM span_rollup_1h WHERE {range} \
             GROUP BY 1 ORDER BY 1"
        ),
        format!(
            "SELECT sum(spans) FROM span_rollup_1h WHERE {range} AND extract(hour FROM \"time\") < 12"
        ),
        format!(
            "SELECT sum(spans) FROM span_rollup_1h WHERE \"time\" >= {}",
            at(from)
        ),
    ];
    for sql in &reads_as_asked {
        let plan = explain(&s.running.engine, sql).await;
        assert!(!plan.contains("_rollup_1d"), "{sql}\n{plan}");
        assert_eq!(
            rows(&s.running.engine, sql).await,
            rows(&plain, sql).await,
            "{sql}"
        );
    }
    s.stop().await;
}
