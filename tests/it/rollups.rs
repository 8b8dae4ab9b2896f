//! The KPI views read the span rollups; the same questions asked of the raw spans must get the
//! same answers: request and error counts exactly, percentiles within the sketch's 0.54 %,
//! Apdex within the requests whose duration lies in the bucket of a threshold. Checked over two
//! hours of the demo's traffic written through OTLP, with late spans for minutes already in
//! Parquet, before and after compaction.

use serde_json::Value;

const MINUTE: i64 = 60_000_000_000;

/// Per bucket and service, from the raw spans: requests, errors, exact percentiles (ms) and
/// Apdex, as the KPI views defined them before the rollups.
fn exact(width: &str) -> String {
    format!(
        "SELECT date_bin(INTERVAL '{width}', r.start_time, TIMESTAMP '1970-01-01T00:00:00Z') AS t,
           r.service_name, count(*) AS requests,
           sum(CASE WHEN r.is_bad THEN 1 ELSE 0 END) AS errors,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY r.duration_ns) / 1e6 AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY r.duration_ns) / 1e6 AS p95,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY r.duration_ns) / 1e6 AS p99,
           (sum(CASE WHEN r.satisfied THEN 1.0 ELSE 0.0 END)
             + 0.5 * sum(CASE WHEN r.tolerating THEN 1.0 ELSE 0.0 END)) / count(*) AS apdex
         FROM server_requests_apdex r GROUP BY 1, 2"
    )
}

fn rollup(view: &str) -> String {
    format!(
        "SELECT \"time\" AS t, service_name, requests, errors, p50_ms, p95_ms, p99_ms, apdex
         FROM {view}"
    )
}

/// Rows of a query keyed by (time, service).
async fn keyed(s: &crate::TestServer, sql: &str) -> std::collections::BTreeMap<String, Vec<Value>> {
    let v = s.sql(&format!("{sql} ORDER BY 1, 2")).await;
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let r = r.as_array().unwrap().clone();
            (format!("{} {}", r[0], r[1]), r)
        })
        .collect()
}

/// Compares a rollup view with the exact answer; returns (buckets, worst percentile error).
async fn compare(s: &crate::TestServer, view: &str, width: &str) -> (usize, f64) {
    let ours = keyed(s, &rollup(view)).await;
    let exact = keyed(s, &exact(width)).await;
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        exact.keys().collect::<Vec<_>>(),
        "{view}: the same buckets"
    );
    let f = |v: &Value| v.as_f64().unwrap();
    let mut worst: f64 = 0.0;
    for (k, want) in &exact {
        let got = &ours[k];
        assert_eq!(got[2], want[2], "{view} {k}: requests");
        assert_eq!(got[3], want[3], "{view} {k}: errors");
        for c in 4..7 {
            let error = (f(&got[c]) - f(&want[c])).abs() / f(&want[c]);
            assert!(
                error <= 0.0055,
                "{view} {k} column {c}: {got:?} vs {want:?}"
            );
            worst = worst.max(error);
        }
        // A request within half a bucket of T or 4T may change class: 1/2 per request.
        let requests = f(&want[2]);
        let apdex_error = (f(&got[7]) - f(&want[7])).abs() * requests;
        assert!(apdex_error <= 2.0, "{view} {k}: apdex {got:?} vs {want:?}");
    }
    (exact.len(), worst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kpi_views_over_rollups_answer_as_the_raw_spans_do() {
    let to = crate::last_weekday_at(14);
    let from = to - 120 * MINUTE;
    let (s, scenario, _) = crate::server_with_demo_history(from, to, 30.0, |cfg| {
        cfg.forecast_interval_seconds = 0;
        cfg.scaling_interval_seconds = 0;
        cfg.anomaly_interval_seconds = 0;
    })
    .await;
    s.flush().await;
    // Late: more traffic for the first ten minutes, which are already in Parquet.
    crate::backfill(&s, scenario, from, from + 10 * MINUTE).await;
    let first = crate::rfc3339(from);
    let late = s
        .count(&format!(
            "SELECT requests FROM service_kpi_1m WHERE service_name = 'frontend' AND \"time\" = TIMESTAMP '{first}'"
        ))
        .await;
    s.flush().await;

    let (minutes, worst_1m) = compare(&s, "service_kpi_1m", "1 minute").await;
    assert!(minutes >= 7 * 120, "{minutes} service-minutes");
    let (hours, worst_1h) = compare(&s, "service_kpi_1h", "1 hour").await;
    assert!(hours >= 7 * 2, "{hours} service-hours");
    eprintln!("worst percentile error: {worst_1m:.5} per minute, {worst_1h:.5} per hour");

    // The late minute holds both writes: about twice the traffic of its neighbour.
    let second = crate::rfc3339(from + MINUTE * 11);
    let neighbour = s
        .count(&format!(
            "SELECT requests FROM service_kpi_1m WHERE service_name = 'frontend' AND \"time\" = TIMESTAMP '{second}'"
        ))
        .await;
    assert!(
        late as f64 > 1.5 * neighbour as f64,
        "{late} vs {neighbour}"
    );

    // Compaction merges partial rows and changes no answer.
    let files = |table: &str| s.running.store.stats(table).unwrap().files;
    let before = files("span_rollup_1m");
    let store = s.running.store.clone();
    tokio::task::spawn_blocking(move || store.compact(64 << 20, i64::MAX))
        .await
        .unwrap()
        .unwrap();
    assert!(
        files("span_rollup_1m") < before,
        "compaction merged rollup files"
    );
    assert_eq!(compare(&s, "service_kpi_1m", "1 minute").await.0, minutes);
    assert_eq!(compare(&s, "service_kpi_1h", "1 hour").await.0, hours);
    s.stop().await;
}
