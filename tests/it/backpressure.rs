//! Bounded memory and full disks: an overloaded server throttles (RESOURCE_EXHAUSTED with
//! RetryInfo) instead of growing, clients retry, and every acknowledged span is stored; a full
//! disk refuses requests as retryable, loses nothing acknowledged, and ingestion resumes once
//! there is space again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use headroom_ingest::Signal;
use headroom_loadgen::{self as loadgen, LoadgenArgs};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

use crate::ServerProcess as Server;
use crate::TestServer;
use crate::crash::{SPANS_PER_REQUEST, trace_request};

const MAX_BUFFER_BYTES: u64 = 4 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_throttled_retried_and_nothing_acknowledged_is_lost() {
    let s = TestServer::start_with(|c| {
        c.max_buffer_bytes = MAX_BUFFER_BYTES;
        c.flush_max_bytes = 3 << 20;
    })
    .await;
    // Watch the buffer while the load runs.
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (store, peak, done) = (s.running.store.clone(), peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(store.buffered_bytes(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let report = loadgen::run(&LoadgenArgs {
        endpoint: s.grpc_endpoint(),
        rate: 0,
        duration_seconds: 4,
        concurrency: 16,
        metrics: false,
        max_retries: 50,
        ..LoadgenArgs::default()
    })
    .await
    .unwrap();
    done.store(true, Ordering::SeqCst);
    watcher.await.unwrap();

    let refused = s.running.ingester().counters(Signal::Traces).values()[1];
    assert!(
        refused > 0 && report.retries > 0,
        "the load never overran the buffer: {report}"
    );
    assert_eq!(
        report.errors, 0,
        "every throttled request got through on a retry: {report}"
    );
    // One request may land in an empty buffer whatever its size; otherwise the bound holds.
    let peak = peak.load(Ordering::SeqCst) as u64;
    assert!(
        peak <= MAX_BUFFER_BYTES + (1 << 20),
        "buffer peaked at {peak} bytes, bound {MAX_BUFFER_BYTES}"
    );
    let stored = s.count("SELECT count(*) FROM spans").await;
    assert_eq!(stored as u64, report.spans_acked, "{report}");
    eprintln!(
        "overload: {refused} requests throttled, {} retries, buffer peak {} KiB of {} KiB, {} spans acknowledged and stored",
        report.retries,
        peak >> 10,
        MAX_BUFFER_BYTES >> 10,
        report.spans_acked
    );
    s.stop().await;
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_owned()))
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_retryably_loses_nothing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), "1m") else {
        // Mounting needs root (CAP_SYS_ADMIN), which the CI machine has.
        eprintln!("SKIPPED: cannot mount a tmpfs here; run the tests as root to check full disks");
        return;
    };
    let data = disk.0.join("data");
    // Flushes are attempted every half second, so they too meet the full disk.
    let args = ["--flush-max-age-seconds", "0.5"];
    let server = Server::start(&data, dir.path().join("log0"), &args);
    let mut client = TraceServiceClient::connect(server.grpc.clone())
        .await
        .unwrap();
    let mut acked = 0u32;
    let refusal = loop {
        match client.export(trace_request(1, acked)).await {
            Ok(_) => acked += 1,
            Err(status) => break status,
        }
        assert!(acked < 100_000, "the disk never filled up");
    };
    assert_eq!(refusal.code(), tonic::Code::Unavailable, "{refusal:?}");
    assert!(
        refusal.message().contains("No space left"),
        "{}",
        refusal.message()
    );
    assert!(acked > 5, "only {acked} requests fitted");
    // Refused again while the disk stays full, and the flushes keep failing meanwhile.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(client.export(trace_request(1, acked)).await.is_err());
    let spans = |n: u32| serde_json::json!(i64::from(n * SPANS_PER_REQUEST));
    let count = "SELECT count(*), count(DISTINCT span_name) FROM spans";
    assert_eq!(server.sql(count).await[0], vec![spans(acked), spans(acked)]);
    assert!(server.log().contains("flush failed"), "{}", server.log());

    // Space returns: the refused request goes through on retry, another one too, and the
    // process dies before anything else happens.
    disk.resize("64m");
    client.export(trace_request(1, acked)).await.unwrap();
    client.export(trace_request(1, acked + 1)).await.unwrap();
    drop(client);
    server.kill9();

    let server = Server::start(&data, dir.path().join("log1"), &args);
    let log = server.log();
    assert!(!log.contains("WAL damage"), "{log}");
    assert_eq!(
        server.sql(count).await[0],
        vec![spans(acked + 2), spans(acked + 2)]
    );
    server.kill9();
    drop(disk);
}
