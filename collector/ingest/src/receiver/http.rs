//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with protobuf or JSON bodies,
//! optionally gzip- or zstd-compressed; answers in the request's encoding (OTLP spec §OTLP/HTTP).

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use prost::Message;

use crate::Signal;
use crate::error::IngestError;
use crate::ingest::{Ingester, Outcome};
use crate::otlp_json;
use crate::tenant::{Tenants, ingester_for};

/// `google.rpc.Status`, the body of every OTLP/HTTP error response. Declared here because
/// opentelemetry-proto does not ship the googleapis types; details are never sent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

#[derive(Clone)]
struct HttpState {
    tenants: Arc<dyn Tenants>,
    max_request_bytes: usize,
}

/// The OTLP/HTTP routes.
pub fn router(tenants: Arc<dyn Tenants>, max_request_bytes: usize) -> Router {
    let state = HttpState {
        tenants,
        max_request_bytes,
    };
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .route("/v1/logs", post(logs))
        .with_state(state)
}

fn content_encoding(headers: &HeaderMap) -> Result<Encoding, IngestError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(IngestError::UnsupportedContentType(raw.to_owned())),
    }
}

/// Reads at most `limit` bytes of decompressed data; more is an error, so a small compressed
/// body cannot expand into unbounded memory.
fn read_limited(
    mut r: impl Read,
    limit: usize,
    encoding: &'static str,
) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::new();
    (&mut r)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::Decompress {
            encoding,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(IngestError::TooLarge { limit_bytes: limit });
    }
    Ok(out)
}

fn decompress(
    headers: &HeaderMap,
    body: bytes::Bytes,
    limit: usize,
) -> Result<bytes::Bytes, IngestError> {
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match enc.as_str() {
        "" | "identity" => Ok(body),
        "gzip" | "x-gzip" => {
            read_limited(flate2::read::MultiGzDecoder::new(&body[..]), limit, "gzip")
                .map(Into::into)
        }
        "zstd" => {
            let d = zstd::stream::read::Decoder::new(&body[..]).map_err(|e| {
                IngestError::Decompress {
                    encoding: "zstd",
                    reason: e.to_string(),
                }
            })?;
            read_limited(d, limit, "zstd").map(Into::into)
        }
        _ => Err(IngestError::UnsupportedEncoding(enc)),
    }
}

/// The HTTP status for an ingest error; the OTLP/HTTP receiver's, and the query API's when a
/// request reaches no tenant.
pub fn http_status(e: &IngestError) -> StatusCode {
    e.class().http_status()
}

fn grpc_code(e: &IngestError) -> i32 {
    e.class().grpc_code() as i32
}

fn error_response(e: &IngestError, enc: Encoding) -> Response {
    let status = http_status(e);
    let message = headroom_status::report(e);
    if status.is_server_error() {
        tracing::warn!(error = %message, "OTLP/HTTP request failed");
    } else {
        tracing::debug!(error = %message, "OTLP/HTTP request refused");
    }
    let body = match enc {
        Encoding::Protobuf => RpcStatus {
            code: grpc_code(e),
            message,
        }
        .encode_to_vec(),
        Encoding::Json => otlp_json::encode_status(grpc_code(e), &message),
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(enc.content_type()),
    );
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    ) {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(crate::receiver::grpc::RETRY_DELAY.as_secs()),
        );
    }
    resp
}

/// Reads at most `limit` bytes of request body.
async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, IngestError> {
    match Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(IngestError::TooLarge { limit_bytes: limit })
        }
        Err(e) => Err(IngestError::Decompress {
            encoding: "identity",
            reason: format!("reading body: {e}"),
        }),
    }
}

/// Reads, decompresses and decodes a request, runs `ingest`, and encodes the answer.
async fn handle<Req, Resp>(
    state: HttpState,
    signal: Signal,
    headers: HeaderMap,
    body: Body,
    decode_json: fn(&[u8]) -> Result<Req, otlp_json::JsonError>,
    ingest: fn(&Ingester, &Req) -> Result<Outcome, IngestError>,
    response: fn(&Outcome) -> Resp,
) -> Response
where
    Req: Message + Default + Send + 'static,
    Resp: Message,
{
    // Errors about the content type itself are answered in protobuf, the OTLP default.
    let enc = match content_encoding(&headers) {
        Ok(enc) => enc,
        Err(e) => {
            state.tenants.refused(signal);
            return error_response(&e, Encoding::Protobuf);
        }
    };
    // Credentials are checked before the body is read.
    let ingester = match ingester_for(&*state.tenants, &headers, signal).await {
        Ok(ingester) => ingester,
        Err(e) => return error_response(&e, enc),
    };
    let limit = state.max_request_bytes;
    // Failures before `ingest` are counted here; `Ingester` counts its own.
    let result = async {
        let body = read_body(body, limit)
            .await
            .inspect_err(|_| ingester.count_failure(signal))?;
        let worker = ingester.clone();
        let work = move || {
            let req = decompress(&headers, body, limit)
                .and_then(|body| match enc {
                    Encoding::Protobuf => Ok(Req::decode(body)?),
                    Encoding::Json => Ok(decode_json(&body)?),
                })
                .inspect_err(|_| worker.count_failure(signal))?;
            ingest(&worker, &req)
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(r) => r,
            Err(e) => {
                ingester.count_failure(signal);
                Err(IngestError::Store(
                    headroom_storage::error::StoreError::internal(format!(
                        "ingest task failed: {e}"
                    )),
                ))
            }
        }
    }
    .await;
    match result {
        Ok(outcome) => {
            let body = match enc {
                Encoding::Protobuf => response(&outcome).encode_to_vec(),
                Encoding::Json => otlp_json::encode_partial_success(
                    signal,
                    outcome.rejected as i64,
                    outcome.message.as_deref().unwrap_or(""),
                ),
            };
            let mut resp = (StatusCode::OK, body).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(enc.content_type()),
            );
            resp
        }
        Err(e) => error_response(&e, enc),
    }
}

async fn traces(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    handle::<ExportTraceServiceRequest, _>(
        state,
        Signal::Traces,
        headers,
        body,
        otlp_json::decode_traces,
        Ingester::traces,
        super::trace_response,
    )
    .await
}

async fn metrics(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    handle::<ExportMetricsServiceRequest, _>(
        state,
        Signal::Metrics,
        headers,
        body,
        otlp_json::decode_metrics,
        Ingester::metrics,
        super::metrics_response,
    )
    .await
}

async fn logs(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    handle::<ExportLogsServiceRequest, _>(
        state,
        Signal::Logs,
        headers,
        body,
        otlp_json::decode_logs,
        Ingester::logs,
        super::logs_response,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(e: IngestError) -> (StatusCode, Option<String>, RpcStatus) {
        let resp = error_response(&e, Encoding::Protobuf);
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap_or("").to_owned());
        let status = resp.status();
        let body = body_bytes(resp);
        (
            status,
            retry_after,
            RpcStatus::decode(&body[..]).unwrap_or_default(),
        )
    }

    fn body_bytes(resp: Response) -> bytes::Bytes {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { resp.into_body().collect().await.unwrap().to_bytes() })
    }

    #[test]
    fn refusals_say_whether_and_when_to_retry() {
        let (status, retry, body) = answer(IngestError::Overloaded { buffered_bytes: 10 });
        assert_eq!(
            (status, retry.as_deref()),
            (StatusCode::TOO_MANY_REQUESTS, Some("1"))
        );
        assert_eq!(body.code, tonic::Code::ResourceExhausted as i32);
        let (status, retry, _) = answer(IngestError::ShuttingDown);
        assert_eq!(
            (status, retry.as_deref()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("1"))
        );
        let full = std::io::Error::from_raw_os_error(28);
        let (status, retry, body) = answer(IngestError::Wal(
            headroom_storage::error::WalError::io(std::path::Path::new("wal/1.wal"), full),
        ));
        assert_eq!(
            (status, retry.as_deref()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("1"))
        );
        assert!(body.message.contains("No space left"), "{}", body.message);
        let (status, retry, _) = answer(IngestError::TooLarge { limit_bytes: 1 });
        assert_eq!((status, retry), (StatusCode::PAYLOAD_TOO_LARGE, None));
    }
}
