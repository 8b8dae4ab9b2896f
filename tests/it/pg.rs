//! The PostgreSQL wire protocol and the HTTP SQL API with real clients: psql, Python psycopg
//! (extended protocol, parameters, binary results), the refusals of the read-only SQL surface,
//! and queries that exceed their memory or time budget.

use std::io::Cursor;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{TestServer, server_with_traffic};

pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// psql against the server: unaligned, tuples only, stop at the first error.
async fn psql(s: &TestServer, sql: &str) -> Output {
    psql_with(s, sql, &[]).await
}

/// psql with libpq environment variables (`PGPASSWORD`, `PGSSLMODE`…).
pub(crate) async fn psql_with(s: &TestServer, sql: &str, env: &[(&str, &str)]) -> Output {
    let addr = s.running.pg_addr;
    let sql = sql.to_owned();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        run(Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
            .args(["-d", "headroom", "-c", &sql])
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGSSLMODE", "disable")
            .env("PGUSER", "grafana")
            .envs(env))
    })
    .await
    .unwrap()
}

pub(crate) fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "client failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rows of unaligned psql output as `|`-separated fields.
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

const KPI_QUERY: &str = "SELECT service_name, count(*) AS requests, \
     sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS errors \
     FROM spans WHERE span_kind = 'SERVER' GROUP BY service_name ORDER BY service_name";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_describes_and_queries() {
    let s = server_with_traffic(|_| {}).await;

    let tables = stdout(&psql(&s, r"\dt").await);
    for t in ["spans", "metric_points", "logs"] {
        assert!(tables.contains(&format!("|{t}|")), "{t} missing: {tables}");
    }
    let spans = stdout(&psql(&s, r"\d spans").await);
    for line in ["start_time|timestamp", "trace_id|", "duration_ns|bigint"] {
        assert!(spans.contains(line), "{line:?} missing: {spans}");
    }

    // The same KPI query over the wire and over HTTP gives the same numbers.
    let wire = rows(&stdout(&psql(&s, KPI_QUERY).await));
    let http = s.sql(KPI_QUERY).await;
    let http: Vec<Vec<String>> = http["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect()
        })
        .collect();
    assert!(wire.len() >= 5, "{wire:?}");
    assert_eq!(wire, http);

    // What Grafana's macros expand to: `$__timeGroupAlias(start_time, '1m')` and
    // `$__timeFilter(start_time)` over the whole day.
    let total = s.count("SELECT count(*) FROM spans").await;
    let day = s
        .scalar("SELECT to_char(min(start_time), '%Y-%m-%d') FROM spans")
        .await;
    let day = day.as_str().unwrap();
    let grafana = format!(
        "SELECT floor(extract(epoch from start_time)/60)*60 AS \"time\", count(*) AS spans \
         FROM spans WHERE start_time BETWEEN '{day}T00:00:00Z' AND '{day}T23:59:59.999Z' \
         GROUP BY 1 ORDER BY 1"
    );
    let series = rows(&stdout(&psql(&s, &grafana).await));
    assert!(!series.is_empty());
    let sum: i64 = series.iter().map(|r| r[1].parse::<i64>().unwrap()).sum();
    assert_eq!(sum, total, "{series:?}");

    // Settings clients ask for, multiple statements in one query.
    let settings = stdout(
        &psql(
            &s,
            "SELECT current_setting('server_version_num')::int/100 AS version; SELECT version(); SHOW search_path",
        )
        .await,
    );
    let lines: Vec<&str> = settings.lines().collect();
    assert_eq!(lines[0], "1600", "{settings}");
    assert!(lines[1].starts_with("PostgreSQL 16"), "{settings}");
    assert_eq!(lines[2], "public", "{settings}");
    // Session settings clients send on connect are taken and shown back.
    let set = stdout(
        &psql(
            &s,
            "SET application_name = 'grafana'; SET extra_float_digits = 3; SET statement_timeout = '5s'; \
             SET TIME ZONE 'UTC'; SHOW application_name; SHOW statement_timeout; SHOW TimeZone",
        )
        .await,
    );
    let shown: Vec<&str> = set.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(shown, ["grafana", "5000ms", "UTC"], "{set}");

    // Binary ids are hex text, nested values JSON text, timestamps timestamptz.
    let span = rows(&stdout(
        &psql(
            &s,
            "SELECT trace_id, events, start_time FROM spans WHERE cardinality(events) > 0 LIMIT 1",
        )
        .await,
    ));
    assert_eq!(span[0][0].len(), 32, "{span:?}");
    assert!(
        span[0][0].chars().all(|c| c.is_ascii_hexdigit()),
        "{span:?}"
    );
    assert!(span[0][1].starts_with("[{"), "{span:?}");
    assert!(span[0][2].ends_with("+00"), "{span:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_settings_and_files_are_refused_on_both_surfaces() {
    let s = TestServer::start().await;
    let refused = [
        "CREATE EXTERNAL TABLE leak STORED AS PARQUET LOCATION '/etc/'",
        "COPY (SELECT 1) TO '/tmp/headroom-leak.csv'",
        "INSERT INTO logs (body) VALUES ('x')",
        "DROP TABLE spans",
        "CREATE VIEW v AS SELECT 1",
        "SET datafusion.execution.batch_size = 1",
    ];
    for sql in refused {
        let (status, body) = s.sql_raw(sql).await;
        assert_eq!(status, 400, "{sql}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("read-only"),
            "{sql}: {body}"
        );
        let out = psql(&s, sql).await;
        assert!(!out.status.success(), "{sql} was run over the wire");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("read-only"), "{sql}: {err}");
    }
    assert!(!std::path::Path::new("/tmp/headroom-leak.csv").exists());

    // Over the wire, cursors and SET are gates too.
    let before = s.scalar("SELECT arrow_typeof(now())").await;
    for sql in [
        "BEGIN; DECLARE c CURSOR FOR INSERT INTO kpi_apdex_thresholds VALUES ('x', 1); FETCH ALL FROM c",
        "SET \"datafusion\".runtime.temp_directory = '/tmp/headroom-leak'",
    ] {
        let out = psql(&s, sql).await;
        assert!(!out.status.success(), "{sql} was run over the wire");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("read-only"), "{sql}: {err}");
    }
    // Settings PostgreSQL has and Headroom does not are answered and ignored, not applied to
    // everyone's session.
    stdout(
        &psql(
            &s,
            "SET timezone = 'Asia/Tokyo'; SET client_encoding = 'UTF8'",
        )
        .await,
    );
    assert_eq!(s.scalar("SELECT arrow_typeof(now())").await, before);
    assert_eq!(
        s.count("SELECT count(*) FROM kpi_apdex_thresholds").await,
        0
    );
    // A cursor over a query works.
    let fetched = stdout(
        &psql(
            &s,
            "BEGIN; DECLARE c CURSOR FOR SELECT 41 + 1 AS n; FETCH ALL FROM c; COMMIT",
        )
        .await,
    );
    assert_eq!(fetched.trim(), "42", "{fetched}");
    // The session still answers, and its tables are intact.
    assert_eq!(s.count("SELECT count(*) FROM spans").await, 0);
    assert_eq!(stdout(&psql(&s, "SELECT 1").await).trim(), "1");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_budget_are_cancelled_and_others_still_run() {
    // The deadline is short for the endless query; the memory budget's queries, a result of
    // 2 M rows streamed to psql among them, run on a server whose deadline a loaded test
    // machine cannot reach.
    let timed = TestServer::start_with(|c| c.query_timeout_seconds = 1.0).await;
    let s = TestServer::start_with(|c| {
        c.query_memory_limit_bytes = 4 << 20;
        c.query_timeout_seconds = 60.0;
    })
    .await;
    // One array of 5 M values cannot spill.
    let memory_hog = "SELECT cardinality(array_agg(value)) FROM generate_series(1, 5000000)";
    let (status, body) = s.sql_raw(memory_hog).await;
    assert_eq!(status, 400, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains("4 MiB of memory"), "{msg}");
    let err = String::from_utf8_lossy(&psql(&s, memory_hog).await.stderr).into_owned();
    assert!(err.contains("4 MiB of memory"), "{err}");

    let endless = "SELECT sum(value % 7) FROM generate_series(1, 1000000000000)";
    let (status, body) = timed.sql_raw(endless).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("ran longer than the 1s"),
        "{body}"
    );
    let out = psql_with(&timed, endless, &[("PGOPTIONS", "")]).await;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("ran longer than the 1s"), "{err}");
    timed.stop().await;

    // A result held in memory for an HTTP answer counts too; the wire protocol streams it.
    let big = "SELECT value FROM generate_series(1, 2000000)";
    let (status, body) = s.sql_raw(big).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("result is larger than the 4 MiB"),
        "{body}"
    );
    let streamed = stdout(&psql(&s, big).await);
    assert_eq!(streamed.lines().count(), 2_000_000);

    // Within budget, the same kind of query runs.
    assert_eq!(
        s.count("SELECT cardinality(array_agg(value)) FROM generate_series(1, 1000)")
            .await,
        1000
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sql_answers_json_csv_and_arrow() {
    let s = server_with_traffic(|_| {}).await;
    let url = format!("http://{}/api/v1/sql", s.running.http_addr);
    let sql =
        "SELECT trace_id, span_name, start_time FROM spans ORDER BY start_time, span_id LIMIT 3";
    let json_rows = s.sql(sql).await;

    let csv = s
        .client
        .post(&url)
        .query(&[("format", "csv")])
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "trace_id,span_name,start_time");
    assert_eq!(lines.len(), 4, "{text}");
    let first = &json_rows["rows"][0];
    assert!(
        lines[1].starts_with(&format!(
            "{},{},",
            first[0].as_str().unwrap(),
            first[1].as_str().unwrap()
        )),
        "{text} vs {first}"
    );

    let arrow = s
        .client
        .post(&url)
        .header("accept", "application/vnd.apache.arrow.stream")
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    assert_eq!(arrow.status(), 200);
    let bytes = arrow.bytes().await.unwrap();
    let reader = arrow::ipc::reader::StreamReader::try_new(Cursor::new(bytes), None).unwrap();
    let schema = reader.schema();
    assert_eq!(
        schema.field(0).data_type(),
        &arrow::datatypes::DataType::FixedSizeBinary(16)
    );
    let n: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(n, 3);

    // An empty result still has its CSV header.
    let empty = s
        .client
        .post(&url)
        .json(&json!({ "sql": "SELECT span_name FROM spans WHERE false", "format": "csv" }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(empty.trim(), "span_name");

    // User errors are 400 with a message, an unknown format too.
    let (status, body) = s.sql_raw("SELECT nope FROM spans").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
    let bad = s
        .client
        .post(&url)
        .json(&json!({ "sql": "SELECT 1", "format": "xml" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("xml"), "{body}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_extended_protocol_with_parameters() {
    let s = server_with_traffic(|_| {}).await;
    let expected = s
        .count("SELECT count(*) FROM spans WHERE service_name = 'checkout'")
        .await;
    assert!(expected > 0);
    let addr = s.running.pg_addr;
    let script = format!(
        "{}/tests/clients/psycopg_client.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            run(Command::new("python3").arg(script).arg(format!(
                "host={} port={} user=grafana dbname=headroom",
                addr.ip(),
                addr.port()
            )))
        }),
    )
    .await
    .unwrap()
    .unwrap();
    let report: Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(report["ping"], "EMPTY_QUERY", "{report}");
    assert_eq!(report["count_text"], expected, "{report}");
    assert_eq!(report["count_binary"], expected, "{report}");
    assert_eq!(report["start_time_tz"], "UTC", "{report}");
    assert_eq!(report["trace_id_len"], 32, "{report}");
    assert!(
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "spans"),
        "{report}"
    );
    assert_eq!(report["start_time_udt"], "timestamptz", "{report}");
    assert_eq!(report["refused_sqlstate"], "25006", "{report}");
    s.stop().await;
}

/// Runs a client program and parses the one JSON object it prints.
async fn client_report(mut cmd: Command) -> Value {
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::task::spawn_blocking(move || run(&mut cmd)),
    )
    .await
    .expect("client finished in time")
    .unwrap();
    let text = stdout(&out);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_sequence_with_pgx() {
    let s = server_with_traffic(|_| {}).await;
    let total = s.count("SELECT count(*) FROM spans").await;
    let range = s
        .sql("SELECT to_char(min(start_time) - INTERVAL '1 minute', '%Y-%m-%dT%H:%M:%SZ'), to_char(max(start_time) + INTERVAL '1 minute', '%Y-%m-%dT%H:%M:%S.%3fZ') FROM spans")
        .await;
    let (from, to) = (
        range["rows"][0][0].as_str().unwrap().to_owned(),
        range["rows"][0][1].as_str().unwrap().to_owned(),
    );
    let dir = format!("{}/tests/clients/pgx_grafana", env!("CARGO_MANIFEST_DIR"));
    let addr = s.running.pg_addr;
    let mut cmd = Command::new("go");
    cmd.current_dir(&dir)
        .args(["run", "."])
        .arg(format!(
            "postgres://grafana@{}:{}/headroom?sslmode=disable",
            addr.ip(),
            addr.port()
        ))
        .args([&from, &to])
        // Debian's packaged pgx v4, found in GOPATH mode without a network.
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode");
    let r = client_report(cmd).await;

    assert_eq!(r["ping_results"], 0, "{r}");
    assert_eq!(r["schemas"], json!(["public"]), "{r}");
    assert!(
        r["tables"].as_array().unwrap().contains(&json!("spans")),
        "{r}"
    );
    let columns = &r["columns"];
    assert_eq!(
        columns["start_time"],
        json!(["timestamp with time zone", "timestamptz", false])
    );
    assert_eq!(columns["duration_ns"], json!(["bigint", "int8", true]));
    assert_eq!(columns["service_name"], json!(["text", "text", false]));
    assert_eq!(columns["trace_id"], json!(["text", "text", false]));
    let picked = r["table_picker"].as_array().unwrap();
    assert!(
        picked.iter().any(|t| t == "spans" || t == "public.spans"),
        "{r}"
    );
    assert_eq!(
        r["column_picker"]["start_time"], "timestamp with time zone",
        "{r}"
    );
    assert_eq!(r["version"], "1600", "{r}");

    // Grafana reads the `time` column by OID: float8 (701) epoch seconds, or timestamptz (1184).
    let grouped = &r["grouped"];
    assert_eq!(grouped["total"], total, "{r}");
    assert_eq!(grouped["sorted"], true, "{r}");
    assert_eq!(
        grouped["columns"][0],
        json!({"name": "time", "oid": 701}),
        "{r}"
    );
    assert!(
        grouped["tag"].as_str().unwrap().starts_with("SELECT "),
        "{r}"
    );
    let series = &r["series"];
    assert_eq!(series["parsed"], 20, "{r}");
    assert_eq!(
        series["columns"],
        json!([{"name": "time", "oid": 1184}, {"name": "value", "oid": 701}, {"name": "metric", "oid": 25}]),
        "{r}"
    );
    assert_eq!(r["statements"], 2, "{r}");
    assert_eq!(r["epoch_count"], total.to_string(), "{r}");
    assert_eq!(r["binary_start_year"], 2026, "{r}");
    assert_eq!(r["binary_duration_positive"], true, "{r}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_metadata_and_prepared_query() {
    let s = server_with_traffic(|_| {}).await;
    let expected = s
        .count("SELECT count(*) FROM spans WHERE service_name = 'checkout'")
        .await;
    let addr = s.running.pg_addr;
    let mut cmd = Command::new("java");
    cmd.args(["-cp", "/usr/share/java/postgresql.jar"])
        .arg(format!(
            "{}/tests/clients/JdbcClient.java",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(format!(
            "jdbc:postgresql://{}:{}/headroom",
            addr.ip(),
            addr.port()
        ));
    let r = client_report(cmd).await;
    assert_eq!(r["product"], "PostgreSQL", "{r}");
    assert_eq!(r["major"], 16, "{r}");
    assert!(
        r["tables"].as_array().unwrap().contains(&json!("spans")),
        "{r}"
    );
    let columns = r["columns"].as_array().unwrap();
    assert!(
        columns.contains(&json!(["start_time", "timestamptz"])),
        "{r}"
    );
    assert!(columns.contains(&json!(["duration_ns", "int8"])), "{r}");
    assert_eq!(r["service"], "checkout", "{r}");
    assert_eq!(r["count"], expected, "{r}");
    assert_eq!(r["last_is_timestamp"], true, "{r}");
    assert_eq!(r["last_type"], "timestamptz", "{r}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_password_and_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let out = run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let s = TestServer::start_with(|c| {
        c.pg_user = "grafana".into();
        c.pg_password = "correct horse".into();
        c.pg_tls_cert_path = Some(cert.clone());
        c.pg_tls_key_path = Some(key.clone());
    })
    .await;
    let tls = [("PGSSLMODE", "require"), ("PGPASSWORD", "correct horse")];
    let info = stdout(&psql_with(&s, r"\conninfo", &tls).await);
    assert!(info.contains("SSL connection"), "{info}");
    assert_eq!(stdout(&psql_with(&s, "SELECT 1", &tls).await).trim(), "1");

    let wrong = psql_with(
        &s,
        "SELECT 1",
        &[("PGSSLMODE", "require"), ("PGPASSWORD", "wrong")],
    )
    .await;
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.to_ascii_lowercase()
            .contains("password authentication failed"),
        "{err}"
    );
    let none = psql(&s, "SELECT 1").await;
    assert!(!none.status.success(), "a password is required");
    s.stop().await;

    // A certificate that cannot be used stops the start, naming the file.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = headroom::config::ServeConfig::ephemeral(dir.path().join("data"));
    cfg.pg_tls_cert_path = Some(key.clone());
    cfg.pg_tls_key_path = Some(key.clone());
    let err = crate::start_error(&cfg).await;
    assert!(err.contains("key.pem"), "{err}");
    assert!(err.contains("certificate"), "{err}");
}
