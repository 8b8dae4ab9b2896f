//! The built-in console in a real browser: Debian's Chromium, headless, driven by
//! playwright-core (`tests/browser/console.mjs`) against a server holding eight days of the
//! demo's history, with its forecasts and recommendations; the Service overview and
//! Capacity dashboards are checked over the same data. `.ci/run` installs Chromium and
//! playwright-core; screenshots land in the test's target directory.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_renders_charts_and_runs_sql_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let browser = root.join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci --prefix tests/browser` (and install Debian's \
         chromium), as .ci/run does"
    );

    const MINUTE: i64 = 60_000_000_000;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap() / MINUTE * MINUTE;
    // Eight days, enough for a seasonal forecast model: at 1.5 spans/s on average, ~1 M spans.
    let from = now - 8 * 1440 * MINUTE;
    let (s, _, _) = crate::server_with_demo_history(from, now, 1.5, |_| {}).await;

    // Forecasts and recommendations for the new history, then the page can show them.
    s.running.refresh_plans();
    let http = s.running.http_addr;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let resp = s
            .client
            .get(format!("http://{http}/api/v1/recommendations/frontend"))
            .send()
            .await
            .unwrap();
        if resp.status().is_success() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no recommendation");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The page and its assets are served from the binary with their types.
    for (path, ty) in [
        ("/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/uPlot.iife.min.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let resp = s
            .client
            .get(format!("http://{http}{path}"))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}");
        let got = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(got.starts_with(ty), "{path}: {got}");
    }

    // The Grafana dashboards not covered by the fixed-window demo test in grafana.rs, over
    // the same history: a service's overview, and capacity with forecasts and replicas.
    let (range_from, range_to) = (
        crate::rfc3339(now - 360 * MINUTE),
        crate::rfc3339(now + 60 * MINUTE),
    );
    let server = &s;
    tokio::task::block_in_place(|| {
        for file in ["service-overview.json", "capacity.json"] {
            crate::grafana::check_dashboard(
                server,
                file,
                &[("service", "frontend")],
                &range_from,
                &range_to,
            );
        }
    });

    // The anomaly detectors start over on the new history too; the page lists what they found.
    crate::wait_for_count(
        &http.to_string(),
        "SELECT count(*) FROM anomalies",
        1,
        120,
        "no anomaly found",
    )
    .await;

    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(browser.join("console.mjs"))
            .arg(format!("http://{http}"))
            .arg("frontend")
            .arg(&out_dir)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("forecast points ahead"), "{stdout}");
    assert!(stdout.contains("explanation: "), "{stdout}");
    s.stop().await;
}
