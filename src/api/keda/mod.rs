//! KEDA's external scaler (`externalscaler.ExternalScaler` over gRPC, `--keda-grpc-addr`): a
//! ScaledObject with an `external` trigger gets, for the service named in its metadata (or
//! the ScaledObject's name), the recommended replica count as an `AverageValue` metric with a
//! target of 1, so the HPA KEDA creates asks for exactly that many replicas
//! (`desired = ceil(value / target)`).
//!
//! A service without a count is an error, which makes KEDA apply the ScaledObject's
//! `fallback`: NOT_FOUND for a service never seen, FAILED_PRECONDITION when there is no
//! capacity to size it by, UNAVAILABLE when the recommendation is stale (refreshes failing).

use std::pin::Pin;

use futures::Stream;
use headroom_analytics::scaling::live::{Board, NoCount};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Generated from `proto/externalscaler.proto` by `tools/gen-externalscaler`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod externalscaler;

use externalscaler::external_scaler_server::{ExternalScaler, ExternalScalerServer};
use externalscaler::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};

/// Serves the recommendations on `board` to KEDA.
#[derive(Debug, Clone)]
pub struct Scaler {
    board: Board,
    /// Recommendations older than this are not served.
    max_age_ns: i64,
    /// Ends the open `StreamIsActive` streams, so that shutdown need not wait for KEDA to
    /// hang up.
    stop: CancellationToken,
}

impl Scaler {
    pub fn server(
        board: Board,
        max_age_ns: i64,
        stop: CancellationToken,
    ) -> ExternalScalerServer<Self> {
        ExternalScalerServer::new(Self {
            board,
            max_age_ns,
            stop,
        })
    }
}

/// The service a ScaledObject scales: metadata `service`, else the ScaledObject's name.
fn service_of(r: &ScaledObjectRef) -> Result<String, Status> {
    r.scaler_metadata
        .get("service")
        .filter(|s| !s.is_empty())
        .or(Some(&r.name).filter(|n| !n.is_empty()))
        .cloned()
        .ok_or_else(|| {
            Status::invalid_argument(
                "no service: set metadata.service on the trigger (or name the ScaledObject \
                 after the service)",
            )
        })
}

/// The metric's name: `headroom-replicas-` and the service, in the characters Kubernetes
/// metric names allow.
pub fn metric_name(service: &str) -> String {
    let safe: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("headroom-replicas-{safe}")
}

/// The count to serve, or the status KEDA's fallback acts on.
fn replicas(scaler: &Scaler, service: &str) -> Result<u32, Status> {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    scaler
        .board
        .replicas(service, now, scaler.max_age_ns)
        .map(|(n, _)| n)
        .map_err(|e| match e {
            NoCount::Unknown { .. } => Status::not_found(e.to_string()),
            NoCount::Unavailable { .. } => Status::failed_precondition(e.to_string()),
            NoCount::Stale { .. } => Status::unavailable(e.to_string()),
        })
}

type ActiveStream = Pin<Box<dyn Stream<Item = Result<IsActiveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for Scaler {
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        let service = service_of(request.get_ref())?;
        let n = replicas(self, &service)?;
        Ok(Response::new(IsActiveResponse { result: n > 0 }))
    }

    type StreamIsActiveStream = ActiveStream;

    /// The current answer, then one per refresh that changes it.
    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<ActiveStream>, Status> {
        let service = service_of(request.get_ref())?;
        let stream = futures::stream::unfold(
            (
                self.board.subscribe(),
                service,
                None::<bool>,
                self.stop.clone(),
            ),
            |(mut rx, service, last, stop)| async move {
                loop {
                    let active = rx
                        .borrow_and_update()
                        .iter()
                        .find(|r| r.service_name == service)
                        .and_then(|r| r.recommended_replicas)
                        .map(|n| n > 0);
                    if let Some(a) = active
                        && last != Some(a)
                    {
                        let next = (rx, service, Some(a), stop);
                        return Some((Ok(IsActiveResponse { result: a }), next));
                    }
                    // Nothing new to tell: wait for the next refresh.
                    tokio::select! {
                        changed = rx.changed() => changed.ok()?,
                        () = stop.cancelled() => return None,
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        let service = service_of(request.get_ref())?;
        Ok(Response::new(GetMetricSpecResponse {
            metric_specs: vec![MetricSpec {
                metric_name: metric_name(&service),
                target_size: 1,
                target_size_float: 1.0,
            }],
        }))
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        let request = request.into_inner();
        let object = request
            .scaled_object_ref
            .ok_or_else(|| Status::invalid_argument("scaledObjectRef is missing"))?;
        let service = service_of(&object)?;
        let n = replicas(self, &service)?;
        let name = if request.metric_name.is_empty() {
            metric_name(&service)
        } else {
            request.metric_name
        };
        Ok(Response::new(GetMetricsResponse {
            metric_values: vec![MetricValue {
                metric_name: name,
                metric_value: i64::from(n),
                metric_value_float: f64::from(n),
            }],
        }))
    }
}
