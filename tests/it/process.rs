//! The real `headroom serve` process: the ready line on stdout, and SIGTERM → flush → exit 0.

use std::process::Command;
use std::time::Duration;

use headroom_loadgen::{self as loadgen, LoadgenArgs};

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
    let child = server.child;

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
    tokio::task::block_in_place(|| stop(child));

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

/// Every listener on a port the system picks.
const ANY_PORTS: [&str; 10] = [
    "--otlp-grpc-addr",
    "127.0.0.1:0",
    "--otlp-http-addr",
    "127.0.0.1:0",
    "--http-addr",
    "127.0.0.1:0",
    "--pg-addr",
    "127.0.0.1:0",
    "--keda-grpc-addr",
    "127.0.0.1:0",
];

/// The error line a failed command ends its stderr with.
fn error_line(out: &std::process::Output) -> String {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{err}");
    last.to_owned()
}

/// A failed command names each cause once: the SQL parser's message, the I/O error.
#[test]
fn errors_say_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["query", "--data-dir"])
        .arg(dir.path())
        .arg("SELEC 1")
        .output()
        .unwrap();
    let last = error_line(&out);
    assert!(last.contains("SELEC"), "{last}");
    assert_eq!(last.matches("Expected").count(), 1, "{last}");

    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["serve", "--data-dir", "/proc/headroom-nope"])
        .args(ANY_PORTS)
        .output()
        .unwrap();
    let last = error_line(&out);
    assert!(last.contains("/proc/headroom-nope"), "{last}");
    assert_eq!(last.matches("(os error").count(), 1, "{last}");
}

/// Runs `headroom demo` on `data` until it has printed its URLs; its stdout lines so far and
/// the process.
fn start_demo(data: &std::path::Path, log: &std::path::Path) -> (Vec<String>, std::process::Child) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["demo", "--backfill-days", "0.05", "--spans-per-second", "5"])
        .args(ANY_PORTS)
        .arg("--data-dir")
        .arg(data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        let n = out.read_line(&mut line).unwrap();
        assert!(
            n > 0,
            "demo ended early: {lines:?}; log: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        let done = line.trim_start().starts_with("Grafana");
        lines.push(line.trim_end().to_owned());
        if done {
            break;
        }
    }
    // Keep reading so the demo never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (lines, child)
}

/// SIGTERM (the shell's builtin `kill`: no procps needed on the test machine), then a clean
/// exit within 30 s.
fn stop(child: std::process::Child) {
    let mut child = child;
    let status = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no exit within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}

/// `headroom demo`: history written through OTLP, the URLs printed, live traffic after it,
/// the demo's SLOs in force, its history scored for anomalies, a clean stop, and a restart
/// that only fills the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_backfills_goes_live_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let (lines, child) = tokio::task::block_in_place(|| start_demo(&data, &log));
    let text = lines.join("\n");
    assert!(lines[0].starts_with("headroom ready "), "{text}");
    for wanted in [
        "scenario: deploy: checkout 1.10.0 is slower at ",
        "scenario: incident: payment fails",
        "scenario: downstream failure: PostgreSQL",
        " (0 rejected)",
        "  Console         http://127.0.0.1:",
        "  PostgreSQL      psql postgresql://headroom@127.0.0.1:",
        "  OTLP            gRPC 127.0.0.1:",
    ] {
        assert!(text.contains(wanted), "{wanted:?} not in\n{text}");
    }
    // 0.05 days is 72 minutes; one more when a minute turns while the history is written (the
    // backfill runs until the current minute).
    assert!(
        text.contains("history: 72 minutes, ") || text.contains("history: 73 minutes, "),
        "{text}"
    );
    let http = lines[0]
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("http="))
        .unwrap()
        .to_owned();
    // 72 minutes of history up to about now, then live traffic within seconds.
    let sql = |q: &'static str| {
        let http = http.clone();
        async move { crate::http_sql(&http, q).await }
    };
    let span = sql(
        "SELECT (CAST(max(start_time) AS BIGINT) - CAST(min(start_time) AS BIGINT)) / 60e9, count(*) FROM spans",
    )
    .await;
    let minutes = span[0][0].as_f64().unwrap();
    assert!((70.0..74.0).contains(&minutes), "{span:?}");
    tokio::time::sleep(Duration::from_secs(7)).await;
    let fresh =
        sql("SELECT count(*) FROM spans WHERE start_time > now() - INTERVAL '15 seconds'").await;
    assert!(
        fresh[0][0].as_i64().unwrap() > 0,
        "no live traffic: {fresh:?}"
    );
    let slos = sql("SELECT slo_name FROM slo_status WHERE slo_name = 'checkout-latency'").await;
    assert_eq!(slos.len(), 1, "the demo's SLOs: {slos:?}");
    // The anomaly detectors start over once the history is in: its minutes are scored.
    crate::wait_for_count(
        &http,
        "SELECT count(*) FROM anomaly_scores WHERE service_name = 'frontend' \
         AND metric = 'request_rate'",
        65,
        60,
        "history not scored",
    )
    .await;
    tokio::task::block_in_place(|| stop(child));

    // A restart on the same data fills the minutes since the newest span, not the whole
    // history again.
    let (lines, child) = tokio::task::block_in_place(|| start_demo(&data, &log));
    let text = lines.join("\n");
    let gap: u64 = text
        .split("history: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .map_or(0, |n| n.parse().unwrap());
    assert!(gap <= 2, "refilled {gap} minutes:\n{text}");
    tokio::task::block_in_place(|| stop(child));
}
