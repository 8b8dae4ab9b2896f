//! `--query-engine ballista`: a Ballista scheduler and two executors on loopback, over an S3
//! bucket two writers publish to; the KPI views answer on the cluster as they do in-process.

use std::net::SocketAddr;
use std::time::Duration;

use headroom::config::{QueryEngineKind, ServeConfig};
use headroom_analytics::cluster::{ExecutorSettings, run_executor, run_scheduler};
use serde_json::Value;

use crate::TestServer;
use crate::object_store::{BUCKET, s3_options, s3_server, writer};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scheduler and two executors reading the bucket at `s3`; returns the scheduler's address
/// and its task, which stops the scheduler when aborted.
async fn cluster(
    s3: SocketAddr,
    work: &std::path::Path,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let store = || {
        let (store, base, _) =
            headroom_storage::remote::connect(&format!("s3://{BUCKET}/cluster"), &s3_options(s3))
                .unwrap();
        Some((base, store))
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheduler = listener.local_addr().unwrap();
    let read = store();
    let task = tokio::spawn(async move {
        run_scheduler(listener, read).await.unwrap();
    });
    for i in 0..2 {
        let read = store();
        let settings = ExecutorSettings {
            bind_host: "127.0.0.1".into(),
            external_host: "127.0.0.1".into(),
            port: free_port(),
            grpc_port: free_port(),
            scheduler_host: "127.0.0.1".into(),
            scheduler_port: scheduler.port(),
            vcores: 2,
            work_dir: work.join(format!("executor-{i}")),
            memory_bytes: 1 << 30,
        };
        std::fs::create_dir_all(&settings.work_dir).unwrap();
        tokio::spawn(async move {
            if let Err(e) = run_executor(settings, read).await {
                eprintln!("executor stopped: {e}");
            }
        });
    }
    (scheduler, task)
}

/// Numbers equal to 1e-9 relative (sums over other partitions add in another order), the
/// rest exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn with_demo_slos(cfg: &mut ServeConfig) {
    let path = cfg.data_dir.with_file_name("demo-slos.toml");
    std::fs::write(&path, headroom::demo::DEMO_SLOS).unwrap();
    cfg.slo_config_path = Some(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kpi_views_on_a_ballista_cluster_match_the_local_engine() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = s3_server(&dir.path().join("bucket")).await;
    let (scheduler, scheduler_task) = cluster(s3, dir.path()).await;

    // Two writers, forty minutes of the demo's shop between them.
    const MIN: i64 = 60_000_000_000;
    let end = crate::last_weekday_at(12);
    let a = TestServer::start_with(|c| {
        writer(c, s3, "cluster", "a");
        with_demo_slos(c);
    })
    .await;
    let b = TestServer::start_with(|c| writer(c, s3, "cluster", "b")).await;
    let scenario = headroom_loadgen::Scenario::new(5.0, end - 40 * MIN, end);
    crate::backfill(&a, scenario.clone(), end - 40 * MIN, end - 20 * MIN).await;
    crate::backfill(&b, scenario, end - 20 * MIN, end).await;
    a.flush().await;
    b.flush().await;
    // Each server's own rows, all in its files now.
    let own = |s: &TestServer| s.running.store.stats("spans").unwrap().file_rows as i64;
    let total = own(&a) + own(&b);

    // A third server runs its queries on the cluster.
    let c = TestServer::start_with(|c| {
        writer(c, s3, "cluster", "c");
        with_demo_slos(c);
        c.query_engine = QueryEngineKind::Ballista;
        c.ballista_scheduler = format!("df://{scheduler}");
    })
    .await;
    // a reads b's final manifest (a refresh during b's flush may have caught only some tables).
    let store = a.running.store.clone();
    tokio::task::spawn_blocking(move || store.refresh_remote())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.count("SELECT count(*) FROM spans").await, total);
    // Executors register with the scheduler shortly after it starts.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = c.sql_raw("SELECT count(*) FROM spans").await;
        if status == 200 && body["rows"][0][0].as_i64() == Some(total) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let range = format!(
        "\"time\" >= TIMESTAMP '{}' AND \"time\" < TIMESTAMP '{}'",
        crate::rfc3339(end - 40 * MIN),
        crate::rfc3339(end)
    );
    let hours = format!(
        "\"time\" >= TIMESTAMP '{}' AND \"time\" < TIMESTAMP '{}'",
        crate::rfc3339(end - 60 * MIN),
        crate::rfc3339(end)
    );
    for sql in [
        format!("SELECT * FROM service_kpi_1m WHERE {range} ORDER BY service_name, \"time\""),
        format!("SELECT * FROM service_kpi_1h WHERE {hours} ORDER BY service_name, \"time\""),
        format!("SELECT * FROM endpoint_kpi_1m WHERE {range} ORDER BY 1, 2, 3, 4"),
        format!("SELECT * FROM service_graph_1m WHERE {range} ORDER BY 1, 2, 3, 4"),
        format!("SELECT * FROM service_resilience_1m WHERE {range} ORDER BY 1, 2"),
        "SELECT service_name, approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) \
         AS p99, count(DISTINCT trace_id) AS traces FROM spans GROUP BY 1 ORDER BY 1"
            .to_owned(),
    ] {
        let local = a.sql(&sql).await;
        let on_cluster = c.sql(&sql).await;
        let rows = local["rows"].as_array().unwrap().len();
        assert!(rows > 0, "{sql}: no rows");
        assert!(
            same(&local["rows"], &on_cluster["rows"]),
            "{sql}\nlocal:   {}\ncluster: {}",
            local["rows"],
            on_cluster["rows"]
        );
        assert_eq!(local["columns"], on_cluster["columns"], "{sql}");
    }

    // The queries ran on the cluster: without its scheduler, they fail.
    scheduler_task.abort();
    let _ = scheduler_task.await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = c.sql_raw("SELECT count(*) FROM spans").await;
    assert_ne!(status, 200, "{body}");
    assert!(
        body.to_string().contains("scheduler") || body.to_string().contains("connect"),
        "{body}"
    );
    c.stop().await;
    b.stop().await;
    a.stop().await;
}

/// A `headroom ballista …` process, stopped (SIGKILL) when dropped.
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `headroom ballista <args>` and returns it with its ready line.
fn node(args: &[String], log: &std::path::Path) -> (Node, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
        .arg("ballista")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.contains(" ready "),
        "{line:?}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    (Node(child), line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_runs_as_headroom_ballista_processes() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = s3_server(&dir.path().join("bucket")).await;
    let storage = |args: &mut Vec<String>| {
        args.extend(["--storage".into(), format!("s3://{BUCKET}/procs")]);
        for (k, v) in s3_options(s3) {
            args.extend(["--storage-option".into(), format!("{k}={v}")]);
        }
    };
    let mut args = vec!["scheduler".into(), "--addr".into(), "127.0.0.1:0".into()];
    storage(&mut args);
    let (_scheduler, ready) = node(&args, &dir.path().join("scheduler.log"));
    let scheduler = crate::addr(ready.trim(), "scheduler");
    let mut executors = Vec::new();
    for i in 0..2 {
        let mut args: Vec<String> = vec![
            "executor".into(),
            "--scheduler".into(),
            scheduler.clone(),
            "--bind-host".into(),
            "127.0.0.1".into(),
            "--flight-port".into(),
            free_port().to_string(),
            "--grpc-port".into(),
            free_port().to_string(),
            "--task-slots".into(),
            "2".into(),
            "--work-dir".into(),
            dir.path().join(format!("work-{i}")).display().to_string(),
        ];
        storage(&mut args);
        executors.push(node(&args, &dir.path().join(format!("executor-{i}.log"))).0);
    }

    let a = TestServer::start_with(|c| writer(c, s3, "procs", "a")).await;
    let mut client = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(a.grpc_endpoint()).await.unwrap();
    for seq in 0..3 {
        client
            .export(crate::crash::trace_request(1, seq))
            .await
            .unwrap();
    }
    a.flush().await;
    let c = TestServer::start_with(|c| {
        writer(c, s3, "procs", "c");
        c.query_engine = QueryEngineKind::Ballista;
        c.ballista_scheduler = format!("df://{scheduler}");
    })
    .await;
    let want = i64::from(3 * crate::crash::SPANS_PER_REQUEST);
    let sql = "SELECT count(*), count(DISTINCT span_name) FROM spans";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = c.sql_raw(sql).await;
        if status == 200 && body["rows"][0] == serde_json::json!([want, want]) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    c.stop().await;
    a.stop().await;
}
