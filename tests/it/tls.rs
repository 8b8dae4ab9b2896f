//! TLS on every listener from `--tls-cert-path` / `--tls-key-path`: real clients that trust
//! only the test's CA (the OpenTelemetry SDK's gRPC exporter, an HTTP client, psql with
//! `sslmode=verify-full`) get through; plain-text clients and clients that do not trust the CA
//! do not.

use std::path::{Path, PathBuf};
use std::process::Command;

use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Value, json};

use crate::TestServer;
use crate::pg::{run, stdout};

/// A CA, and a server certificate it signed for `localhost` and 127.0.0.1.
struct Certs {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = run(Command::new("openssl").args(args).current_dir(dir));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        "/CN=headroom test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(&ca, d);
    let mut csr = vec!["req", "-subj", "/CN=localhost"];
    csr.extend(ec);
    csr.extend(["-keyout", "key.pem", "-out", "server.csr"]);
    openssl(&csr, d);
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "cert.pem",
        ],
        d,
    );
    Certs {
        ca: d.join("ca.pem"),
        cert: d.join("cert.pem"),
        key: d.join("key.pem"),
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_speaks_tls_with_the_configured_certificate() {
    let certs = make_certs();
    let s = TestServer::start_with(|c| {
        c.tls_cert_path = Some(certs.cert.clone());
        c.tls_key_path = Some(certs.key.clone());
    })
    .await;
    let ca_pem = std::fs::read(&certs.ca).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
        .build()
        .unwrap();
    let port = |a: std::net::SocketAddr| a.port();

    // OTLP/gRPC: the SDK's tonic exporter, trusting the CA.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!(
            "https://localhost:{}",
            port(s.running.otlp_grpc_addr)
        ))
        .with_tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&ca_pem))
                .domain_name("localhost"),
        )
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(crate::sdk_exporters::resource("tls-grpc"))
        .build();
    for i in 0..5 {
        crate::sdk_exporters::record_trace(&provider, &format!("/secure/{i}"));
    }
    let p = provider.clone();
    tokio::task::spawn_blocking(move || p.force_flush())
        .await
        .unwrap()
        .expect("gRPC export over TLS accepted");

    // OTLP/HTTP.
    let otlp_http = format!(
        "https://localhost:{}/v1/traces",
        port(s.running.otlp_http_addr)
    );
    let resp = https
        .post(&otlp_http)
        .json(&crate::one_span_trace_json("tls-http"))
        .send()
        .await
        .expect("OTLP/HTTP over TLS");
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);

    // The HTTP API.
    let sql = format!("https://localhost:{}/api/v1/sql", port(s.running.http_addr));
    let counts: Value = https
        .post(&sql)
        .json(&json!({"sql": "SELECT service_name, count(*) FROM spans GROUP BY 1 ORDER BY 1"}))
        .send()
        .await
        .expect("SQL API over TLS")
        .json()
        .await
        .unwrap();
    assert_eq!(
        counts["rows"],
        json!([["tls-grpc", 10], ["tls-http", 1]]),
        "{counts}"
    );

    // PostgreSQL, verifying the certificate and the host name.
    let pg = s.running.pg_addr;
    let conninfo = format!(
        "host=localhost port={} user=grafana dbname=headroom sslmode=verify-full sslrootcert={}",
        pg.port(),
        certs.ca.display()
    );
    let psql = |sql: &'static str, conninfo: String| {
        tokio::task::spawn_blocking(move || {
            run(Command::new("psql")
                .args(["-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1"])
                .args(["-d", &conninfo, "-c", sql])
                .env("PGCONNECT_TIMEOUT", "10"))
        })
    };
    let info = stdout(&psql(r"\conninfo", conninfo.clone()).await.unwrap());
    assert!(info.contains("SSL connection"), "{info}");
    let n = stdout(
        &psql("SELECT count(*) FROM spans", conninfo.clone())
            .await
            .unwrap(),
    );
    assert_eq!(n.trim(), "11");

    // Refused: plain text on a TLS port, and clients that do not trust the CA.
    let plain = reqwest::Client::new()
        .post(format!(
            "http://localhost:{}/api/v1/sql",
            port(s.running.http_addr)
        ))
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    let untrusting = reqwest::Client::builder().build().unwrap();
    let err = untrusting
        .post(&otlp_http)
        .json(&crate::one_span_trace_json("untrusted"))
        .send()
        .await
        .expect_err("a client that does not trust the CA must not connect");
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
    let plain_pg = psql(
        "SELECT 1",
        format!(
            "host=localhost port={} user=grafana dbname=headroom sslmode=disable",
            pg.port()
        ),
    )
    .await
    .unwrap();
    assert!(!plain_pg.status.success(), "plain-text PostgreSQL accepted");
    assert!(
        String::from_utf8_lossy(&plain_pg.stderr).contains("requires TLS"),
        "{}",
        String::from_utf8_lossy(&plain_pg.stderr)
    );
    let other_ca = make_certs();
    let wrong_ca = psql(
        "SELECT 1",
        format!(
            "host=localhost port={} user=grafana dbname=headroom sslmode=verify-full sslrootcert={}",
            pg.port(),
            other_ca.ca.display()
        ),
    )
    .await
    .unwrap();
    assert!(!wrong_ca.status.success(), "psql trusted the wrong CA");
    assert!(
        String::from_utf8_lossy(&wrong_ca.stderr).contains("certificate"),
        "{}",
        String::from_utf8_lossy(&wrong_ca.stderr)
    );
    s.stop().await;

    // A key given as the certificate stops the start, naming the file.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = headroom::config::ServeConfig::ephemeral(dir.path().join("data"));
    cfg.tls_cert_path = Some(certs.key.clone());
    cfg.tls_key_path = Some(certs.key.clone());
    let err = crate::start_error(&cfg).await;
    assert!(
        err.contains("key.pem") && err.contains("certificate"),
        "{err}"
    );
    // Half a pair is refused before anything opens.
    cfg.tls_cert_path = None;
    let err = crate::start_error(&cfg).await;
    assert!(err.contains("--tls-cert-path"), "{err}");
}
