//! KEDA's external scaler (`externalscaler.ExternalScaler` over gRPC, `--keda-grpc-addr`): a
//! ScaledObject with an `external` trigger gets, for the service named in its metadata (or
//! the ScaledObject's name), the recommended replica count as an `AverageValue` metric with a
//! target of 1, so the HPA KEDA creates asks for exactly that many replicas
//! (`desired = ceil(value / target)`).
//!
//! A service without a recommendation is an error (NOT_FOUND, or FAILED_PRECONDITION when
//! there is no capacity to size it by), which makes KEDA apply the ScaledObject's `fallback`.

use std::pin::Pin;

use futures::Stream;
use headroom_analytics::scaling::live::Board;
use headroom_analytics::scaling::recommend::Recommendation;
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
    /// Ends the open `StreamIsActive` streams, so that shutdown need not wait for KEDA to
    /// hang up.
    stop: CancellationToken,
}

impl Scaler {
    pub fn server(board: Board, stop: CancellationToken) -> ExternalScalerServer<Self> {
        ExternalScalerServer::new(Self { board, stop })
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

/// The recommended count for `service`, or the status KEDA's fallback acts on.
fn replicas(rec: Option<&Recommendation>, service: &str) -> Result<u32, Status> {
    let rec = rec.ok_or_else(|| {
        Status::not_found(format!(
            "no recommendation for service {service:?}: Headroom has seen no requests of it"
        ))
    })?;
    rec.recommended_replicas.ok_or_else(|| {
        Status::failed_precondition(format!(
            "no recommendation for service {service:?}: {}",
            rec.reasons.join("; ")
        ))
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
        let n = replicas(self.board.get(&service).as_ref(), &service)?;
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
        let n = replicas(self.board.get(&service).as_ref(), &service)?;
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
