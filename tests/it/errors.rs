//! Bad input gets the OTLP-specified status and a message naming the problem; the server keeps
//! serving and keeps what it had.

use std::io::Write;

use headroom_ingest::receiver::http::RpcStatus;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde_json::json;

use crate::TestServer;

async fn post(
    s: &TestServer,
    ct: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, bytes::Bytes) {
    let mut req = s
        .client
        .post(s.otlp_http("/v1/traces"))
        .header("content-type", ct);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let resp = req.body(body).send().await.expect("reachable");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, resp.bytes().await.unwrap())
}

fn sample_request(spans: usize) -> ExportTraceServiceRequest {
    headroom_loadgen::Topology::new(7).traces_request(spans, 1_767_225_600_000_000_000)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_follow_the_otlp_spec() {
    let s = TestServer::start_with(|c| c.max_request_bytes = 1 << 20).await;

    // Malformed protobuf: 400 with a google.rpc.Status body, code INVALID_ARGUMENT.
    let (status, ct, body) = post(&s, "application/x-protobuf", None, vec![0xff, 0xff, 0xff]).await;
    assert_eq!((status, ct.as_str()), (400, "application/x-protobuf"));
    let st = RpcStatus::decode(body).expect("google.rpc.Status");
    assert_eq!(st.code, 3);
    assert!(st.message.contains("malformed protobuf"), "{}", st.message);

    // Malformed JSON names the field.
    let bad = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#.to_vec();
    let (status, ct, body) = post(&s, "application/json", None, bad).await;
    assert_eq!((status, ct.as_str()), (400, "application/json"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], 3);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("resourceSpans[0].scopeSpans[0].spans[0].traceId"),
        "{v}"
    );

    // Unknown content type and encoding: 415.
    let (status, _, _) = post(&s, "text/plain", None, b"hi".to_vec()).await;
    assert_eq!(status, 415);
    let (status, _, body) = post(&s, "application/x-protobuf", Some("br"), b"hi".to_vec()).await;
    assert_eq!(status, 415);
    assert!(RpcStatus::decode(body).unwrap().message.contains("\"br\""));

    // Oversized body: 413.
    let big = vec![0u8; (1 << 20) + 1];
    let (status, _, _) = post(&s, "application/x-protobuf", None, big).await;
    assert_eq!(status, 413);

    // A decompression bomb (64 MiB of zeros in ~64 KiB of gzip) stops at the limit: 413.
    let bomb = gzip(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    let (status, _, body) = post(&s, "application/x-protobuf", Some("gzip"), bomb).await;
    assert_eq!(status, 413, "{:?}", RpcStatus::decode(body));

    // Corrupt gzip: 400.
    let (status, _, _) = post(
        &s,
        "application/x-protobuf",
        Some("gzip"),
        b"not gzip".to_vec(),
    )
    .await;
    assert_eq!(status, 400);

    // Nothing of the above was stored; a good gzip and a good zstd request still are.
    assert_eq!(s.count("SELECT count(*) FROM spans").await, 0);
    let req = sample_request(50);
    let n = headroom_loadgen::span_count(&req) as i64;
    let (status, ct, body) = post(
        &s,
        "application/x-protobuf",
        Some("gzip"),
        gzip(&req.encode_to_vec()),
    )
    .await;
    assert_eq!((status, ct.as_str()), (200, "application/x-protobuf"));
    assert_eq!(
        ExportTraceServiceResponse::decode(body)
            .unwrap()
            .partial_success,
        None
    );
    let zstd = zstd::encode_all(&req.encode_to_vec()[..], 3).unwrap();
    let (status, _, _) = post(&s, "application/x-protobuf", Some("zstd"), zstd).await;
    assert_eq!(status, 200);
    assert_eq!(s.count("SELECT count(*) FROM spans").await, 2 * n);

    // A wrong method or path is not a success either.
    let resp = s
        .client
        .get(s.otlp_http("/v1/traces"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    // Every refused request above is counted once, wherever it was refused.
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("headroom_otlp_failed_requests_total{signal=\"traces\"} 7"),
        "{metrics}"
    );
    // Only the two accepted requests reached the WAL, each fsynced before its answer.
    assert!(
        metrics.contains("\nheadroom_wal_records_total 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nheadroom_wal_syncs_total 2\n"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_partial_success_and_size_limit() {
    let s = TestServer::start_with(|c| c.max_request_bytes = 256 << 10).await;
    let mut client = TraceServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap();

    let mut req = sample_request(20);
    let total = headroom_loadgen::span_count(&req) as i64;
    req.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1, 2, 3, 4];
    req.resource_spans[0].scope_spans[0].spans[1].span_id = vec![];
    let resp = client.export(req).await.expect("accepted").into_inner();
    let ps = resp.partial_success.expect("partial success");
    assert_eq!(ps.rejected_spans, 2);
    assert!(
        ps.error_message
            .contains("trace_id must be 16 bytes, got 4"),
        "{}",
        ps.error_message
    );
    assert_eq!(s.count("SELECT count(*) FROM spans").await, total - 2);

    // Larger than --max-request-bytes: refused, nothing stored, server still fine.
    let big = sample_request(3000);
    assert!(big.encoded_len() > 256 << 10);
    let err = client.export(big.clone()).await.expect_err("too large");
    // RESOURCE_EXHAUSTED without RetryInfo: OTLP clients do not retry it.
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    // Compressed, the same request is small on the wire but still too large once decoded.
    let mut gz = TraceServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let mut zstd = TraceServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Zstd);
    let small = sample_request(10);
    let small_n = headroom_loadgen::span_count(&small) as i64;
    assert_eq!(
        zstd.export(small)
            .await
            .expect("zstd accepted")
            .into_inner()
            .partial_success,
        None
    );
    let err = gz
        .export(big)
        .await
        .expect_err("too large after decompression");
    // RESOURCE_EXHAUSTED without RetryInfo: OTLP clients do not retry it.
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert_eq!(
        s.count("SELECT count(*) FROM spans").await,
        total - 2 + small_n
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_api_refuses_bad_and_writing_statements() {
    let s = TestServer::start().await;
    let (status, body) = s.sql_raw("SELEC nonsense").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("SELEC"), "{body}");
    let (status, _) = s.sql_raw("SELECT no_such_column FROM spans").await;
    assert_eq!(status, 400);
    for ddl in [
        "CREATE TABLE t AS SELECT 1",
        "DROP TABLE spans",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc/'",
        "COPY spans TO '/tmp/x.parquet'",
    ] {
        let (status, body) = s.sql_raw(ddl).await;
        assert_eq!(status, 400, "{ddl}: {body}");
    }
    let (status, _) = s.sql_raw("SELECT count(*) FROM spans").await;
    assert_eq!(status, 200);
    let resp = s
        .client
        .post(format!("http://{}/api/v1/sql", s.running.http_addr))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(
        s.sql("SELECT 1 AS a, 'x' AS b, NULL AS c").await,
        json!({"columns": ["a", "b", "c"], "rows": [[1, "x", null]]})
    );
    s.stop().await;
}

/// A message that is not an ExportTraceServiceRequest on the wire: field 1 (resource_spans,
/// length-delimited) sent as a varint.
#[derive(Clone, PartialEq, prost::Message)]
struct WrongWireType {
    #[prost(uint64, tag = "1")]
    resource_spans: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_malformed_payload_is_invalid_argument() {
    let s = TestServer::start().await;
    let channel = tonic::transport::Endpoint::from_shared(s.grpc_endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    let codec = tonic_prost::ProstCodec::<WrongWireType, ExportTraceServiceResponse>::default();
    let err = grpc
        .unary(
            tonic::Request::new(WrongWireType { resource_spans: 7 }),
            path,
            codec,
        )
        .await
        .expect_err("malformed payload refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    // The server is still fine.
    let mut client = TraceServiceClient::connect(s.grpc_endpoint())
        .await
        .unwrap();
    assert!(client.export(sample_request(5)).await.is_ok());
    s.stop().await;
}
