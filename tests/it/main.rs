//! Integration tests of the `headroom` binary's pieces, with servers started in-process on
//! `127.0.0.1:0` and driven by real clients (the OpenTelemetry Rust SDK and its OTLP exporters,
//! an HTTP client, the tonic OTLP client).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod anomalies;
mod backpressure;
mod ballista;
mod compaction;
mod console;
mod crash;
mod crates;
mod errors;
mod file_cache;
mod forecast;
mod grafana;
mod json_fixtures;
mod kpis;
mod ladder;
mod lifecycle;
mod loadgen;
mod object_store;
mod pg;
mod process;
mod recommendations;
mod rollups;
mod root_cause;
mod scaling;
mod sdk_exporters;
mod service_graph;
mod slt;
mod tenants;
mod tls;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use headroom::config::ServeConfig;
use headroom::serve::{self, Running};
use serde_json::{Value, json};
use tempfile::TempDir;

pub struct TestServer {
    pub running: Running,
    pub dir: TempDir,
    pub client: reqwest::Client,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServeConfig)) -> Self {
        Self::start_in(tempfile::tempdir().expect("temp dir"), tweak).await
    }

    /// Starts a server on `dir/data`: a new one, or one a stopped server left.
    pub async fn start_in(dir: TempDir, tweak: impl FnOnce(&mut ServeConfig)) -> Self {
        let mut cfg = ServeConfig::ephemeral(dir.path().join("data"));
        tweak(&mut cfg);
        let running = serve::start(&cfg).await.expect("server starts");
        Self {
            running,
            dir,
            client: reqwest::Client::new(),
        }
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.running.otlp_grpc_addr)
    }

    pub fn otlp_http(&self, path: &str) -> String {
        format!("http://{}{}", self.running.otlp_http_addr, path)
    }

    /// POSTs to the SQL API and returns the JSON answer; panics on a non-200 answer.
    pub async fn sql(&self, sql: &str) -> Value {
        let (status, body) = self.sql_raw(sql).await;
        assert_eq!(status, 200, "query {sql:?} failed: {body}");
        body
    }

    pub async fn sql_raw(&self, sql: &str) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("http://{}/api/v1/sql", self.running.http_addr))
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .expect("SQL API reachable");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON answer"))
    }

    /// The single value of a one-row, one-column query.
    pub async fn scalar(&self, sql: &str) -> Value {
        let v = self.sql(sql).await;
        let rows = v["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 1, "{sql}: {v}");
        rows[0][0].clone()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("http://{}/metrics", self.running.http_addr))
            .send()
            .await
            .expect("metrics endpoint reachable")
            .text()
            .await
            .expect("metrics text")
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.scalar(sql).await.as_i64().expect("integer")
    }

    /// Writes every buffered row to Parquet.
    pub async fn flush(&self) {
        let store = self.running.store.clone();
        tokio::task::spawn_blocking(move || store.flush_all(true))
            .await
            .unwrap()
            .unwrap();
    }

    pub async fn stop(self) -> TempDir {
        tokio::time::timeout(Duration::from_secs(30), self.running.shutdown())
            .await
            .expect("shutdown in time")
            .expect("clean shutdown");
        self.dir
    }
}

/// A server with a second of simulated shop traffic, flushed to Parquet.
pub async fn server_with_traffic(
    tweak: impl FnOnce(&mut headroom::config::ServeConfig),
) -> TestServer {
    let s = TestServer::start_with(tweak).await;
    let report = headroom_loadgen::run(&headroom_loadgen::LoadgenArgs {
        endpoint: s.grpc_endpoint(),
        rate: 2_000,
        duration_seconds: 1,
        batch_spans: 100,
        concurrency: 1,
        ..headroom_loadgen::LoadgenArgs::default()
    })
    .await
    .unwrap();
    assert_eq!(report.errors, 0, "{report}");
    s.flush().await;
    s
}

/// The error that stops a server from starting with `cfg`; panics if it starts.
pub async fn start_error(cfg: &ServeConfig) -> String {
    match serve::start(cfg).await {
        Ok(_) => panic!("started with a configuration that must be refused"),
        Err(e) => e.to_string(),
    }
}

/// An OTLP/JSON traces request holding one SERVER span of `service`.
pub fn one_span_trace_json(service: &str) -> Value {
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "name": "GET /one",
            "kind": 2,
            "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": "1700000000250000000"
        }]}]
    }]})
}

/// The wall clock in ns since the Unix epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A query engine over the server's stored tables without what reads its rollups in place of
/// what a query names (the service graph's rollup, the coarser rollup levels): the answers
/// those must equal.
pub async fn engine_without_rollup_reads(s: &TestServer) -> headroom_analytics::QueryEngine {
    use headroom_analytics::catalog::StoredTable;
    let tables = headroom_storage::schema::tables()
        .iter()
        .map(|def| {
            let t: std::sync::Arc<dyn datafusion::datasource::TableProvider> =
                std::sync::Arc::new(StoredTable::new(def, s.running.store.clone()));
            (def.name, t)
        })
        .collect();
    headroom_analytics::QueryEngine::with_tables(
        tables,
        headroom_analytics::QueryLimits::default(),
        &headroom_analytics::KpiSettings::default(),
    )
    .await
    .expect("query engine")
}

/// The rows `sql` returns from `engine`, as JSON values.
pub async fn engine_rows(
    engine: &headroom_analytics::QueryEngine,
    sql: &str,
) -> Vec<Vec<serde_json::Value>> {
    headroom_analytics::engine::to_json_rows(&engine.sql(sql).await.unwrap()).unwrap()
}

/// `EXPLAIN sql` on `engine`, as text: the plans name the files a query reads.
pub async fn explain(engine: &headroom_analytics::QueryEngine, sql: &str) -> String {
    let plan = engine.sql(&format!("EXPLAIN {sql}")).await.unwrap();
    arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string()
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// Parses `key=ADDR` out of the ready line of `headroom serve`.
pub fn addr(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing in {line:?}"))
        .to_owned()
}

/// The real `headroom serve` binary, started on `127.0.0.1:0`.
pub struct ServerProcess {
    pub child: Child,
    pub grpc: String,
    pub http: String,
    log: PathBuf,
}

/// A server running the demo's SLOs and holding the demo scenario's history of
/// `[from_ns, to_ns)` at `spans_per_second`, written through OTLP/gRPC by `headroom demo`'s
/// backfill, every span accepted.
pub async fn server_with_demo_history(
    from_ns: i64,
    to_ns: i64,
    spans_per_second: f64,
    tweak: impl FnOnce(&mut ServeConfig),
) -> (
    TestServer,
    headroom_loadgen::Scenario,
    headroom_loadgen::BackfillReport,
) {
    let s = TestServer::start_with(|cfg| {
        let path = cfg.data_dir.with_file_name("demo-slos.toml");
        std::fs::write(&path, headroom::demo::DEMO_SLOS).unwrap();
        cfg.slo_config_path = Some(path);
        tweak(cfg);
    })
    .await;
    let scenario = headroom_loadgen::Scenario::new(spans_per_second, from_ns, to_ns);
    let report = backfill(&s, scenario.clone(), from_ns, to_ns).await;
    (s, scenario, report)
}

/// Writes `scenario`'s traffic of `[from_ns, to_ns)` into `s` through OTLP/gRPC with
/// `headroom demo`'s backfill; every span must be accepted.
pub async fn backfill(
    s: &TestServer,
    scenario: headroom_loadgen::Scenario,
    from_ns: i64,
    to_ns: i64,
) -> headroom_loadgen::BackfillReport {
    let (_, report) = headroom_loadgen::backfill(
        headroom_loadgen::Topology::new(1),
        scenario,
        &s.grpc_endpoint(),
        from_ns,
        to_ns,
        4,
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .unwrap();
    assert_eq!(report.spans_rejected, 0, "{report:?}");
    report
}

/// The end of `hour`:00 UTC on the last weekday on which that time has passed: a history
/// ending there has the same load (which follows the time of day) whenever a test runs.
pub fn last_weekday_at(hour: i64) -> i64 {
    const HOUR: i64 = 3_600_000_000_000;
    const DAY: i64 = 24 * HOUR;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let mut t = now.div_euclid(DAY) * DAY + hour * HOUR;
    while t > now || (t.div_euclid(DAY) + 3).rem_euclid(7) >= 5 {
        t -= DAY;
    }
    t
}

/// Scores `[from_ns, to_ns)` with the live anomaly detectors, as the server would at its end,
/// and publishes what they found; returns the series-minutes scored.
pub async fn score_anomalies(s: &TestServer, from_ns: i64, to_ns: i64) -> usize {
    use headroom_analytics::anomaly::live::{Monitor, SETTLE_NS};
    let mut monitor = Monitor::new(to_ns - from_ns);
    let minutes = monitor
        .refresh(&s.running.engine, to_ns + SETTLE_NS)
        .await
        .unwrap();
    s.running.engine.publish_anomalies(&monitor).unwrap();
    minutes
}

/// The first integer of `sql`'s first row over the HTTP SQL API, polled every half second
/// until it reaches `at_least`; fails with `what` after `seconds`.
pub async fn wait_for_count(http: &str, sql: &str, at_least: i64, seconds: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let rows = http_sql(http, sql).await;
        if rows[0][0].as_i64().is_some_and(|n| n >= at_least) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {rows:?}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// The JSON body of `GET http://{http}{path}` and its status.
pub async fn http_get(http: &str, path: &str) -> (reqwest::StatusCode, Value) {
    let resp = reqwest::get(format!("http://{http}{path}")).await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

/// Nanoseconds since the epoch as RFC 3339, to the second.
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The rows of `sql` run through the HTTP SQL API at `http` (host:port).
pub async fn http_sql(http: &str, sql: &str) -> Vec<Vec<Value>> {
    let resp = reqwest::Client::new()
        .post(format!("http://{http}/api/v1/sql"))
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    serde_json::from_value(body["rows"].clone()).unwrap()
}

impl ServerProcess {
    /// Starts the binary on `data` and waits for its ready line.
    pub fn start(data: &Path, log: PathBuf, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_headroom"))
            .args(["serve", "--otlp-grpc-addr", "127.0.0.1:0"])
            .args([
                "--otlp-http-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
                // Not the default ports (5433, 6000): tests run at once and would race for them.
                "--pg-addr",
                "127.0.0.1:0",
                "--keda-grpc-addr",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("headroom ready "),
            "no ready line: {line:?}; log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Self {
            child,
            grpc: format!("http://{}", addr(&line, "otlp_grpc")),
            http: addr(&line, "http"),
            log,
        }
    }

    pub fn kill9(mut self) {
        // std's kill is SIGKILL on Unix: no flush, no WAL close.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub async fn sql(&self, sql: &str) -> Vec<Vec<Value>> {
        http_sql(&self.http, sql).await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
