//! Tenants and bearer tokens: each token writes and reads its own tenant's tables only, over
//! OTLP/gRPC, OTLP/HTTP, the HTTP API and PostgreSQL; missing or wrong credentials are refused
//! and store nothing; a tenant's files live under its own directory and survive a restart.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde_json::{Value, json};

use crate::pg::{psql_with, stdout};
use crate::{TestServer, one_span_trace_json};

const TOKEN_A: &str = "token-of-team-a-0123456789";
const TOKEN_B: &str = "token-of-team-b-0123456789";
const TOKEN_DEFAULT: &str = "token-of-default-0123456789";

fn grpc_request(service: &str) -> ExportTraceServiceRequest {
    let body = serde_json::to_vec(&one_span_trace_json(service)).unwrap();
    headroom_ingest::otlp_json::decode_traces(&body).unwrap()
}

/// An OTLP/gRPC export with `metadata`; the status code on failure.
async fn grpc_export(
    s: &TestServer,
    service: &str,
    metadata: &[(&'static str, &str)],
) -> Result<(), tonic::Code> {
    let mut client = TraceServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap();
    let mut req = tonic::Request::new(grpc_request(service));
    for (k, v) in metadata {
        req.metadata_mut().insert(*k, v.parse().unwrap());
    }
    client.export(req).await.map(|_| ()).map_err(|e| e.code())
}

async fn http_export(s: &TestServer, service: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = s
        .client
        .post(s.otlp_http("/v1/traces"))
        .json(&one_span_trace_json(service));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

/// `sql` over the HTTP API with `headers`: the status and the JSON answer.
async fn api_sql(s: &TestServer, sql: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = s
        .client
        .post(format!("http://{}/api/v1/sql", s.running.http_addr))
        .json(&json!({ "sql": sql }));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// psql logged in as `user` with `password`.
async fn psql_as(s: &TestServer, user: &str, password: &str, sql: &str) -> std::process::Output {
    psql_with(s, sql, &[("PGUSER", user), ("PGPASSWORD", password)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_every_tenant_to_its_own_tables() {
    let tokens = tempfile::tempdir().unwrap();
    let tokens_path = tokens.path().join("tokens");
    std::fs::write(
        &tokens_path,
        format!("# token tenant\n{TOKEN_A} team-a\n{TOKEN_B} team-b\n{TOKEN_DEFAULT} default\n"),
    )
    .unwrap();
    let path = tokens_path.clone();
    let s = TestServer::start_with(move |c| {
        c.auth_tokens_path = Some(path);
        c.max_request_bytes = 4096;
    })
    .await;
    let (a, b) = (bearer(TOKEN_A), bearer(TOKEN_B));

    // Refused, and nothing stored: no token, an unknown token, a token for another tenant.
    assert_eq!(http_export(&s, "nobody", &[]).await, 401);
    assert_eq!(
        http_export(&s, "nobody", &[("authorization", "Bearer not-a-token")]).await,
        401
    );
    assert_eq!(
        http_export(
            &s,
            "nobody",
            &[("authorization", &a), ("x-scope-orgid", "team-b")]
        )
        .await,
        403
    );
    let unauthenticated = s
        .client
        .post(s.otlp_http("/v1/traces"))
        .json(&one_span_trace_json("nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        unauthenticated.headers()["www-authenticate"],
        "Bearer",
        "{unauthenticated:?}"
    );
    let body: Value = unauthenticated.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{body}"
    );
    assert_eq!(
        grpc_export(&s, "nobody", &[]).await,
        Err(tonic::Code::Unauthenticated)
    );
    assert_eq!(
        grpc_export(&s, "nobody", &[("authorization", "Bearer wrong")]).await,
        Err(tonic::Code::Unauthenticated)
    );
    assert_eq!(
        grpc_export(
            &s,
            "nobody",
            &[("authorization", &b), ("x-scope-orgid", "team-a")]
        )
        .await,
        Err(tonic::Code::PermissionDenied)
    );

    // Credentials are checked before the message is decoded: a message over the size limit
    // is refused as unauthenticated without a token, and as too large with one.
    let mut big = grpc_request("nobody");
    let spans = &mut big.resource_spans[0].scope_spans[0].spans;
    *spans = vec![spans[0].clone(); 100];
    let mut client = TraceServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap();
    let code = client
        .export(big.clone())
        .await
        .map_err(|e| e.code())
        .unwrap_err();
    assert_eq!(code, tonic::Code::Unauthenticated);
    let mut req = tonic::Request::new(big);
    req.metadata_mut()
        .insert("authorization", b.parse().unwrap());
    let code = client.export(req).await.map_err(|e| e.code()).unwrap_err();
    assert_eq!(code, tonic::Code::ResourceExhausted);

    // Accepted: team-a over HTTP, team-b over gRPC (twice, once naming its own tenant).
    assert_eq!(
        http_export(&s, "svc-a", &[("authorization", &a)]).await,
        200
    );
    grpc_export(&s, "svc-b", &[("authorization", &b)])
        .await
        .unwrap();
    grpc_export(
        &s,
        "svc-b",
        &[("authorization", &b), ("x-scope-orgid", "team-b")],
    )
    .await
    .unwrap();

    // Each token reads its own tenant only; the default tenant holds nothing.
    let services = "SELECT service_name, count(*) AS spans FROM spans GROUP BY 1 ORDER BY 1";
    let (status, body) = api_sql(&s, services, &[("authorization", &a)]).await;
    assert_eq!(
        (status, &body["rows"]),
        (200, &json!([["svc-a", 1]])),
        "{body}"
    );
    let (status, body) = api_sql(&s, services, &[("authorization", &b)]).await;
    assert_eq!(
        (status, &body["rows"]),
        (200, &json!([["svc-b", 2]])),
        "{body}"
    );
    let (status, body) = api_sql(&s, services, &[("authorization", &bearer(TOKEN_DEFAULT))]).await;
    assert_eq!((status, &body["rows"]), (200, &json!([])), "{body}");
    let (status, _) = api_sql(&s, services, &[]).await;
    assert_eq!(status, 401);
    let (status, body) = api_sql(
        &s,
        services,
        &[("authorization", &a), ("x-scope-orgid", "team-b")],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // Other API routes go through the tenant too; health checks need no token.
    let kpis = s
        .client
        .get(format!("http://{}/api/v1/services", s.running.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(kpis.status(), 401);
    let health = reqwest::get(format!("http://{}/healthz", s.running.http_addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // PostgreSQL: the tenant as the user, one of its tokens as the password.
    let spans = "SELECT string_agg(DISTINCT service_name, ',') FROM spans";
    assert_eq!(
        stdout(&psql_as(&s, "team-a", TOKEN_A, spans).await).trim(),
        "svc-a"
    );
    assert_eq!(
        stdout(&psql_as(&s, "team-b", TOKEN_B, spans).await).trim(),
        "svc-b"
    );
    assert_eq!(
        stdout(
            &psql_as(
                &s,
                "team-b",
                TOKEN_B,
                r"SELECT count(*) FROM information_schema.tables WHERE table_name = 'spans'"
            )
            .await
        )
        .trim(),
        "1"
    );
    let wrong = psql_as(&s, "team-b", TOKEN_A, spans).await;
    assert!(!wrong.status.success(), "team-a's token opened team-b");
    assert!(
        String::from_utf8_lossy(&wrong.stderr)
            .to_ascii_lowercase()
            .contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    assert!(
        !psql_as(&s, "team-a", "not-a-token", spans)
            .await
            .status
            .success()
    );
    let cursor = psql_as(
        &s,
        "team-a",
        TOKEN_A,
        "BEGIN; DECLARE c CURSOR FOR SELECT * FROM spans; COMMIT",
    )
    .await;
    assert!(
        !cursor.status.success(),
        "a cursor ran on the shared session"
    );

    // Each tenant's files are under its own directory.
    let team_a = s.running.tenants.get("team-a").await.unwrap();
    let store = team_a.store.clone();
    tokio::task::spawn_blocking(move || store.flush_all(true))
        .await
        .unwrap()
        .unwrap();
    let data = s.dir.path().join("data");
    assert_eq!(team_a.store.root(), data.join("tenants/team-a"));
    assert!(parquet_files(&data.join("tenants/team-a/spans")) > 0);
    assert_eq!(parquet_files(&data.join("spans")), 0);
    // The store holds its directory's lock until the last handle goes.
    drop(team_a);

    // After a restart (team-b's rows only in its write-ahead log), every tenant is back.
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, move |c| c.auth_tokens_path = Some(tokens_path)).await;
    let (_, body) = api_sql(&s, services, &[("authorization", &a)]).await;
    assert_eq!(body["rows"], json!([["svc-a", 1]]), "{body}");
    let (_, body) = api_sql(&s, services, &[("authorization", &b)]).await;
    assert_eq!(body["rows"], json!([["svc-b", 2]]), "{body}");
    s.stop().await;
}

fn parquet_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                parquet_files(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_the_scope_header_names_the_tenant() {
    let s = TestServer::start().await;
    assert_eq!(
        http_export(&s, "svc-x", &[("x-scope-orgid", "team-x")]).await,
        200
    );
    assert_eq!(http_export(&s, "svc-default", &[]).await, 200);
    assert_eq!(
        http_export(&s, "svc-bad", &[("x-scope-orgid", "../escape")]).await,
        400
    );
    let services = "SELECT string_agg(DISTINCT service_name, ',') FROM spans";
    let (_, body) = api_sql(&s, services, &[("x-scope-orgid", "team-x")]).await;
    assert_eq!(body["rows"], json!([["svc-x"]]), "{body}");
    let (_, body) = api_sql(&s, services, &[]).await;
    assert_eq!(body["rows"], json!([["svc-default"]]), "{body}");
    assert!(!s.dir.path().join("data/tenants/escape").exists());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tokens_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "short team-a\n").unwrap();
    let mut cfg = headroom::config::ServeConfig::ephemeral(dir.path().join("data"));
    cfg.auth_tokens_path = Some(tokens);
    let err = crate::start_error(&cfg).await;
    assert!(
        err.contains("tokens:1") && err.contains("too short"),
        "{err}"
    );
}
