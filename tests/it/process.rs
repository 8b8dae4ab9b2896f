//! The real `headroom serve` process: the ready line on stdout, and SIGTERM → flush → exit 0.

use std::process::Command;
use std::time::Duration;

use headroom::loadgen::{self, LoadgenArgs};

use crate::ServerProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_ports_and_flushes_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(
        &data,
        dir.path().join("log"),
        &["--flush-max-age-seconds", "3600"],
    );
    let grpc = server.grpc.clone();
    assert!(!grpc.ends_with(":0") && !server.http.ends_with(":0"));
    let mut child = server.child;

    let report = loadgen::run(&LoadgenArgs {
        endpoint: grpc,
        rate: 2_000,
        duration_seconds: 1,
        metrics: false,
        ..LoadgenArgs::default()
    })
    .await
    .unwrap();
    assert!(report.spans_acked > 0);

    // Nothing is flushed yet (one-hour age, large size threshold): SIGTERM must flush it.
    // The shell's builtin `kill`: no procps needed on the test machine.
    let status = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "no exit within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert!(exit.success(), "{exit:?}");

    let out = headroom::query::run(&data, "SELECT count(*) AS n FROM spans")
        .await
        .unwrap();
    assert!(
        out.contains(&format!("| {} ", report.spans_acked)),
        "{out} vs {report}"
    );
}

#[test]
fn bad_configuration_fails_fast_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args([
            "serve",
            "--flush-max-age-seconds",
            "0",
            "--otlp-grpc-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--flush-max-age-seconds"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["serve", "--otlp-grpc-addr", "not-an-address"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--otlp-grpc-addr"));
}
