//! Sending requests: OTLP/gRPC (already-encoded bytes through a raw codec) and OTLP/HTTP
//! with protobuf bodies, retrying what the server refuses as retryable, as an OTLP exporter
//! would.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::transport::Channel;

use crate::error::LoadgenError;
use crate::util::*;

/// Wire protocol used by the load generator.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (`TraceService/Export`), usually port 4317.
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`/v1/traces`), usually port 4318.
    Http,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        })
    }
}

/// Sends already-encoded protobuf bytes and decodes a prost response, so the
/// pooled requests are not decoded/re-encoded per send.
pub(crate) struct RawCodec<R>(PhantomData<fn() -> R>);

pub(crate) struct RawEncoder;

pub(crate) struct ProstDecoder<R>(PhantomData<fn() -> R>);

impl<R: Message + Default + Send + 'static> tonic::codec::Codec for RawCodec<R> {
    type Encode = Bytes;
    type Decode = R;
    type Encoder = RawEncoder;
    type Decoder = ProstDecoder<R>;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder(PhantomData)
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        dst.reserve(item.len());
        dst.put_slice(&item);
        Ok(())
    }
}

impl<R: Message + Default> tonic::codec::Decoder for ProstDecoder<R> {
    type Item = R;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<R>, Self::Error> {
        R::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait before a retry, whatever the server asks.
pub(crate) const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// A failed export: what went wrong, and when to try again if the failure is retryable.
#[derive(Debug)]
pub(crate) struct SendError {
    pub(crate) message: String,
    pub(crate) retry_after: Option<Duration>,
}

impl From<String> for SendError {
    fn from(message: String) -> Self {
        SendError {
            message,
            retry_after: None,
        }
    }
}

/// The retries of one request, as an OTLP exporter does them.
pub(crate) struct Retry {
    pub(crate) attempt: u32,
    pub(crate) max_retries: u32,
}

impl Retry {
    pub(crate) fn new(max_retries: u32) -> Self {
        Retry {
            attempt: 0,
            max_retries,
        }
    }

    /// After a failed attempt: waits and returns `Ok` if the request should be sent again (the
    /// delay the server asked for, at least an exponential backoff), or returns the error.
    pub(crate) async fn wait(&mut self, e: SendError) -> Result<(), String> {
        let asked = e
            .retry_after
            .filter(|_| self.attempt < self.max_retries)
            .ok_or(e.message)?;
        let backoff = ERROR_BACKOFF.saturating_mul(2u32.saturating_pow(self.attempt));
        self.attempt += 1;
        tokio::time::sleep(asked.max(backoff).min(MAX_RETRY_DELAY)).await;
        Ok(())
    }
}

#[derive(Clone)]
pub(crate) enum Transport {
    Grpc(Channel),
    Http {
        client: reqwest::Client,
        traces_url: Arc<str>,
        metrics_url: Arc<str>,
    },
}

pub(crate) fn normalize_endpoint(endpoint: &str) -> Result<String, LoadgenError> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(LoadgenError::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: "empty".to_owned(),
        });
    }
    if trimmed.starts_with("https://") {
        return Err(LoadgenError::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: "TLS is not supported by the load generator; use http://".to_owned(),
        });
    }
    if trimmed.contains("://") {
        Ok(trimmed.to_owned())
    } else {
        Ok(format!("http://{trimmed}"))
    }
}

impl Transport {
    pub(crate) fn new(protocol: Protocol, endpoint: &str) -> Result<Self, LoadgenError> {
        match protocol {
            Protocol::Grpc => {
                let ep = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
                    .map_err(|e| LoadgenError::InvalidEndpoint {
                        endpoint: endpoint.to_owned(),
                        reason: e.to_string(),
                    })?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(REQUEST_TIMEOUT)
                    .tcp_nodelay(true);
                Ok(Transport::Grpc(ep.connect_lazy()))
            }
            Protocol::Http => {
                let client = reqwest::Client::builder()
                    .timeout(REQUEST_TIMEOUT)
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .build()
                    .map_err(|e| LoadgenError::HttpClient(e.to_string()))?;
                Ok(Transport::Http {
                    client,
                    traces_url: format!("{endpoint}/v1/traces").into(),
                    metrics_url: format!("{endpoint}/v1/metrics").into(),
                })
            }
        }
    }

    pub(crate) fn trace_sender(&self) -> TraceSender {
        match self {
            Transport::Grpc(channel) => {
                TraceSender::Grpc(tonic::client::Grpc::new(channel.clone()))
            }
            Transport::Http {
                client, traces_url, ..
            } => TraceSender::Http {
                client: client.clone(),
                url: traces_url.clone(),
            },
        }
    }

    /// Send a metrics request; Ok(rejected data points).
    pub(crate) async fn send_metrics(
        &self,
        req: ExportMetricsServiceRequest,
    ) -> Result<i64, SendError> {
        match self {
            Transport::Grpc(channel) => {
                let mut client = MetricsServiceClient::new(channel.clone());
                let resp = client.export(req).await.map_err(|s| grpc_error(&s))?;
                Ok(resp
                    .into_inner()
                    .partial_success
                    .map_or(0, |p| p.rejected_data_points))
            }
            Transport::Http {
                client,
                metrics_url,
                ..
            } => {
                let body = Bytes::from(req.encode_to_vec());
                http_post(
                    client,
                    metrics_url,
                    body,
                    |r: &ExportMetricsServiceResponse| {
                        r.partial_success
                            .as_ref()
                            .map_or(0, |p| p.rejected_data_points)
                    },
                    "rejectedDataPoints",
                )
                .await
            }
        }
    }
}

/// Sends ready-made requests over OTLP with the load generator's retry rules: the demo's
/// history and live traffic, whose requests are built one by one rather than pooled.
#[derive(Clone)]
pub struct Exporter {
    pub(crate) transport: Transport,
    pub(crate) max_retries: u32,
}

impl Exporter {
    pub fn new(protocol: Protocol, endpoint: &str, max_retries: u32) -> Result<Self, LoadgenError> {
        let endpoint = normalize_endpoint(endpoint)?;
        Ok(Exporter {
            transport: Transport::new(protocol, &endpoint)?,
            max_retries,
        })
    }

    /// Exports a traces request; the spans the server rejected, or why it failed for good.
    pub async fn traces(&self, req: &ExportTraceServiceRequest) -> Result<u64, String> {
        let body = Bytes::from(req.encode_to_vec());
        let mut sender = self.transport.trace_sender();
        let mut retry = Retry::new(self.max_retries);
        loop {
            match sender.send(body.clone()).await {
                Ok(rejected) => return Ok(u64::try_from(rejected).unwrap_or(0)),
                Err(e) => retry.wait(e).await?,
            }
        }
    }

    /// Exports a metrics request; the data points the server rejected.
    pub async fn metrics(&self, req: &ExportMetricsServiceRequest) -> Result<u64, String> {
        let mut retry = Retry::new(self.max_retries);
        loop {
            match self.transport.send_metrics(req.clone()).await {
                Ok(rejected) => return Ok(u64::try_from(rejected).unwrap_or(0)),
                Err(e) => retry.wait(e).await?,
            }
        }
    }
}

pub(crate) enum TraceSender {
    Grpc(tonic::client::Grpc<Channel>),
    Http {
        client: reqwest::Client,
        url: Arc<str>,
    },
}

impl TraceSender {
    /// Send an encoded traces request; Ok(rejected spans).
    pub(crate) async fn send(&mut self, body: Bytes) -> Result<i64, SendError> {
        match self {
            TraceSender::Grpc(grpc) => {
                grpc.ready().await.map_err(|e| SendError {
                    message: format!("gRPC transport error: {e}"),
                    retry_after: Some(ERROR_BACKOFF),
                })?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(TRACE_EXPORT_PATH);
                let codec = RawCodec::<ExportTraceServiceResponse>(PhantomData);
                let resp = grpc
                    .unary(tonic::Request::new(body), path, codec)
                    .await
                    .map_err(|s| grpc_error(&s))?;
                Ok(resp
                    .into_inner()
                    .partial_success
                    .map_or(0, |p| p.rejected_spans))
            }
            TraceSender::Http { client, url } => {
                http_post(
                    client,
                    url,
                    body,
                    |r: &ExportTraceServiceResponse| {
                        r.partial_success.as_ref().map_or(0, |p| p.rejected_spans)
                    },
                    "rejectedSpans",
                )
                .await
            }
        }
    }
}

/// `e: cause: cause…` — reqwest and hyper hide the useful part in sources.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

/// The error for a gRPC status, retryable as the OTLP specification says: UNAVAILABLE and
/// friends always, RESOURCE_EXHAUSTED only when the server sent RetryInfo.
pub(crate) fn grpc_error(status: &tonic::Status) -> SendError {
    use tonic::Code;
    use tonic_types::StatusExt;
    let mut message = format!("gRPC {:?}: {}", status.code(), status.message());
    if let Some(source) = std::error::Error::source(status) {
        message.push_str(" (");
        message.push_str(&error_chain(source));
        message.push(')');
    }
    let hint = status.get_details_retry_info().and_then(|r| r.retry_delay);
    let retry_after = match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Some(hint.unwrap_or(ERROR_BACKOFF)),
        Code::ResourceExhausted => hint,
        _ => None,
    };
    SendError {
        message,
        retry_after,
    }
}

/// POST an OTLP/HTTP protobuf body and return the rejected item count from
/// the (protobuf or JSON) response's `partial_success`.
pub(crate) async fn http_post<R: Message + Default>(
    client: &reqwest::Client,
    url: &str,
    body: Bytes,
    rejected: impl Fn(&R) -> i64,
    json_field: &str,
) -> Result<i64, SendError> {
    let resp = client
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {}", error_chain(&e)))?;
    let status = resp.status();
    let retry_header = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| format!("POST {url}: reading response: {e}"))?;
    if !status.is_success() {
        let snippet = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        let retryable = matches!(status.as_u16(), 429 | 502 | 503 | 504);
        return Err(SendError {
            message: format!("POST {url}: HTTP {status}: {snippet}"),
            retry_after: retryable.then(|| retry_header.unwrap_or(ERROR_BACKOFF)),
        });
    }
    if bytes.is_empty() {
        return Ok(0);
    }
    if content_type.contains("json") {
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("POST {url}: bad JSON response: {e}"))?;
        let field = &v["partialSuccess"][json_field];
        return Ok(field
            .as_i64()
            .or_else(|| field.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0));
    }
    let r = R::decode(bytes).map_err(|e| format!("POST {url}: bad protobuf response: {e}"))?;
    Ok(rejected(&r))
}
