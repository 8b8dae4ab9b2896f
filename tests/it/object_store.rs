//! Several servers publishing to one S3 bucket (`--storage s3://…`): a real S3 server
//! (`s3s-fs`) runs on loopback; each server reads the union of every writer's files; a writer
//! killed while uploading loses nothing it acknowledged.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use headroom::config::ServeConfig;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::crash::{SPANS_PER_REQUEST, trace_request};
use crate::{ServerProcess, TestServer};

pub const BUCKET: &str = "headroom";
const ACCESS_KEY: &str = "headroom-test";
const SECRET_KEY: &str = "headroom-test-secret";

/// An S3 server (s3s-fs, files under `root`) on a loopback port, with one bucket.
pub async fn s3_server(root: &Path) -> SocketAddr {
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    let fs = s3s_fs::FileSystem::new(root).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    addr
}

/// The `--storage-option`s that reach the S3 server at `endpoint`.
pub fn s3_options(endpoint: SocketAddr) -> Vec<(String, String)> {
    [
        ("aws_endpoint", format!("http://{endpoint}")),
        ("aws_allow_http", "true".to_owned()),
        ("aws_access_key_id", ACCESS_KEY.to_owned()),
        ("aws_secret_access_key", SECRET_KEY.to_owned()),
        ("aws_region", "us-east-1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub fn writer(cfg: &mut ServeConfig, endpoint: SocketAddr, prefix: &str, id: &str) {
    cfg.storage = format!("s3://{BUCKET}/{prefix}");
    cfg.storage_options = s3_options(endpoint);
    cfg.writer_id = id.to_owned();
    cfg.storage_refresh_seconds = 0.2;
    cfg.deleted_file_grace_seconds = 1.0;
}

/// Files under `dir` (recursively), as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

/// `crash::trace_request(client, seq)` from service `service`.
fn request(
    service: &str,
    client: u32,
    seq: u32,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    let mut req = trace_request(client, seq);
    req.resource_spans[0].resource = Some(Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(service.into())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    });
    req
}

async fn send(grpc: &str, service: &str, client: u32, requests: u32) {
    let mut c = TraceServiceClient::connect(grpc.to_owned()).await.unwrap();
    for seq in 0..requests {
        c.export(request(service, client, seq)).await.unwrap();
    }
}

/// Polls `sql` (one integer) on `s` until it equals `want`; fails after 20 s.
pub async fn wait_for(s: &TestServer, sql: &str, want: i64, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = s.count(sql).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {got} rows, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `sql` on `s` until its rows are `want`; fails after 20 s.
async fn wait_for_rows(s: &TestServer, sql: &str, want: &serde_json::Value, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = s.sql(sql).await["rows"].clone();
        if &got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {got}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_share_a_bucket_and_each_server_reads_the_union() {
    let bucket_dir = tempfile::tempdir().unwrap();
    let s3 = s3_server(bucket_dir.path()).await;
    let a = TestServer::start_with(|c| writer(c, s3, "cluster", "a")).await;
    let b = TestServer::start_with(|c| writer(c, s3, "cluster", "b")).await;

    // alpha only to a, beta only to b, shared to both.
    send(&a.grpc_endpoint(), "alpha", 1, 5).await;
    send(&a.grpc_endpoint(), "shared", 2, 2).await;
    send(&b.grpc_endpoint(), "beta", 3, 3).await;
    send(&b.grpc_endpoint(), "shared", 4, 1).await;
    let total = i64::from(11 * SPANS_PER_REQUEST);
    a.flush().await;
    b.flush().await;

    let per_service = "SELECT service_name, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1";
    let requests =
        "SELECT service_name, sum(requests) AS n FROM service_kpi_1m GROUP BY 1 ORDER BY 1";
    let n = |k: u32| i64::from(k * SPANS_PER_REQUEST);
    let want = serde_json::json!([["alpha", n(5)], ["beta", n(3)], ["shared", n(3)]]);
    for (name, s) in [("a", &a), ("b", &b)] {
        wait_for(s, "SELECT count(*) FROM spans", total, name).await;
        assert_eq!(
            s.sql(per_service).await["rows"],
            want,
            "spans read by {name}"
        );
        // The KPI views merge both writers' rollup rows of `shared`. Each table's files are
        // published by its own flush, so the rollups may show a refresh after the spans.
        wait_for_rows(s, requests, &want, name).await;
    }

    // Each writer wrote under its own name only, and lists its files in its own manifest.
    let root = bucket_dir.path().join(BUCKET).join("cluster");
    let objects = files_under(&root);
    assert!(
        objects.contains(&"manifests/a.json".to_owned()),
        "{objects:?}"
    );
    assert!(
        objects.contains(&"manifests/b.json".to_owned()),
        "{objects:?}"
    );
    let parquet: Vec<&String> = objects.iter().filter(|o| o.ends_with(".parquet")).collect();
    assert!(
        parquet
            .iter()
            .all(|o| o.starts_with("writers/a/") || o.starts_with("writers/b/")),
        "{parquet:?}"
    );
    for w in ["a", "b"] {
        let prefix = format!("writers/{w}/spans/date=");
        assert_eq!(
            parquet.iter().filter(|o| o.starts_with(&prefix)).count(),
            3,
            "one file per hour of spans from {w}: {parquet:?}"
        );
    }

    // Compaction on a replaces its files: b reads every row once while the old files are still
    // in the bucket, and after they are deleted.
    for seq in 5..8 {
        send(&a.grpc_endpoint(), "alpha", 1, seq + 1).await;
        a.flush().await;
    }
    let total = total + i64::from((6 + 7 + 8) * SPANS_PER_REQUEST);
    let spans_files = |objects: &[String]| {
        objects
            .iter()
            .filter(|o| o.starts_with("writers/a/spans/"))
            .count()
    };
    assert_eq!(spans_files(&files_under(&root)), 12);
    let store = a.running.store.clone();
    let stats = tokio::task::spawn_blocking(move || store.compact(u64::MAX, i64::MAX))
        .await
        .unwrap()
        .unwrap();
    assert!(stats.files_merged >= 12, "{stats:?}");
    for (name, s) in [("a", &a), ("b", &b)] {
        wait_for(s, "SELECT count(*) FROM spans", total, name).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let store = a.running.store.clone();
    tokio::task::spawn_blocking(move || store.collect_garbage(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(
        spans_files(&files_under(&root)),
        3,
        "merged files replaced the 12 in the bucket"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.count("SELECT count(*) FROM spans").await, total);

    let metrics = a.metrics().await;
    for series in [
        "headroom_object_store_other_writers 1",
        "headroom_object_store_failures_total 0",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    assert!(
        !metrics.contains("headroom_object_store_files_uploaded_total 0\n"),
        "{metrics}"
    );

    // A restarted writer finds its own files and the other's.
    let dir = a.stop().await;
    let a = TestServer::start_in(dir, |c| writer(c, s3, "cluster", "a")).await;
    assert_eq!(a.count("SELECT count(*) FROM spans").await, total);
    // Its data directory belongs to writer a.
    let dir = a.stop().await;
    let err = crate::start_error(&{
        let mut c = ServeConfig::ephemeral(dir.path().join("data"));
        writer(&mut c, s3, "cluster", "c");
        c
    })
    .await;
    assert!(err.contains("belongs to writer \"a\""), "{err}");
    // And writer b's name, with files in the bucket, cannot be taken by a new data directory.
    let err = crate::start_error(&{
        let mut c = ServeConfig::ephemeral(tempfile::tempdir().unwrap().path().join("data"));
        writer(&mut c, s3, "cluster", "b");
        c
    })
    .await;
    assert!(err.contains("already has files in the store"), "{err}");
    b.stop().await;
}

/// A TCP proxy to the S3 server that, once `hold` is set, stops forwarding any request that
/// uploads a Parquet file: the upload hangs, as over a network that died.
struct Proxy {
    addr: SocketAddr,
    hold: Arc<AtomicBool>,
    held: Arc<tokio::sync::Notify>,
}

async fn proxy(upstream: SocketAddr) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = Proxy {
        addr: listener.local_addr().unwrap(),
        hold: Arc::new(AtomicBool::new(false)),
        held: Arc::new(tokio::sync::Notify::new()),
    };
    let (hold, held) = (p.hold.clone(), p.held.clone());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (hold, held) = (hold.clone(), held.clone());
            tokio::spawn(async move {
                let server = TcpStream::connect(upstream).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if hold.load(Ordering::SeqCst)
                        && text.starts_with("PUT ")
                        && text.lines().next().is_some_and(|l| l.contains(".parquet"))
                    {
                        held.notify_one();
                        // Keep the connection open, forwarding nothing.
                        std::future::pending::<()>().await;
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    p
}

fn process_args(endpoint: SocketAddr, prefix: &str, id: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--storage",
        &format!("s3://{BUCKET}/{prefix}"),
        "--writer-id",
        id,
        "--storage-refresh-seconds",
        "0.2",
        "--flush-max-age-seconds",
        "0.5",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for (k, v) in s3_options(endpoint) {
        args.push("--storage-option".into());
        args.push(format!("{k}={v}"));
    }
    args
}

/// Span names in the spans table, read through `s`.
async fn span_names(s: &TestServer) -> Vec<String> {
    let rows = s.sql("SELECT span_name FROM spans").await["rows"].clone();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_killed_mid_upload_loses_nothing_it_acknowledged() {
    let bucket_dir = tempfile::tempdir().unwrap();
    let s3 = s3_server(bucket_dir.path()).await;
    let proxy = proxy(s3).await;
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    let args = process_args(proxy.addr, "crash", "w1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = ServerProcess::start(&data, dir.path().join("first.log"), &args);

    // Flushed and published while the store is reachable.
    send(&first.grpc, "checkout", 1, 3).await;
    let reader = TestServer::start_with(|c| writer(c, s3, "crash", "reader")).await;
    let published = i64::from(3 * SPANS_PER_REQUEST);
    wait_for(
        &reader,
        "SELECT count(*) FROM spans",
        published,
        "first flush",
    )
    .await;

    // Acknowledged (in the WAL) while uploads hang; killed in the middle of one.
    proxy.hold.store(true, Ordering::SeqCst);
    send(&first.grpc, "checkout", 2, 8).await;
    tokio::time::timeout(Duration::from_secs(20), proxy.held.notified())
        .await
        .expect("a flush starts uploading");
    first.kill9();
    assert_eq!(
        reader.count("SELECT count(*) FROM spans").await,
        published,
        "nothing of the hung flush is listed"
    );

    // Restarted, the writer replays its WAL and publishes what it acknowledged.
    proxy.hold.store(false, Ordering::SeqCst);
    let second = ServerProcess::start(&data, dir.path().join("second.log"), &args);
    let acknowledged = i64::from(11 * SPANS_PER_REQUEST);
    wait_for(
        &reader,
        "SELECT count(*) FROM spans",
        acknowledged,
        "after restart",
    )
    .await;
    let names = span_names(&reader).await;
    let distinct: HashSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), names.len(), "a row read twice");
    let want: HashSet<String> = [(1, 3), (2, 8)]
        .into_iter()
        .flat_map(|(client, requests)| (0..requests).map(move |seq| (client, seq)))
        .flat_map(|(client, seq)| {
            (0..SPANS_PER_REQUEST).map(move |i| format!("c{client}-r{seq}-s{i}"))
        })
        .collect();
    assert_eq!(
        names.into_iter().collect::<HashSet<_>>(),
        want,
        "every acknowledged span, once"
    );
    second.kill9();
    reader.stop().await;
}
