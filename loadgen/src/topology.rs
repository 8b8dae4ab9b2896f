//! [`Topology`], the simulated shop as a source of ready-to-send OTLP requests: traces,
//! metrics (RED histograms, CPU gauges) and logs.

use std::collections::VecDeque;
use std::fmt;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram as OtlpHistogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, exponential_histogram_data_point, metric, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::{fault::*, model::*, traces::*, util::*};

/// Cumulative state of one (instance, endpoint, outcome) series.
#[derive(Clone, Debug, Default)]
pub(crate) struct HistState {
    pub(crate) count: u64,
    pub(crate) sum_s: f64,
    pub(crate) min_s: f64,
    pub(crate) max_s: f64,
    pub(crate) buckets: [u64; HTTP_DURATION_BOUNDS.len() + 1],
    pub(crate) exp_zero: u64,
    pub(crate) exp_offset: i32,
    pub(crate) exp_counts: Vec<u64>,
}

impl HistState {
    pub(crate) fn record(&mut self, seconds: f64) {
        if self.count == 0 {
            self.min_s = seconds;
            self.max_s = seconds;
        } else {
            self.min_s = self.min_s.min(seconds);
            self.max_s = self.max_s.max(seconds);
        }
        self.count += 1;
        self.sum_s += seconds;
        // Bucket i holds (bounds[i-1], bounds[i]].
        let b = HTTP_DURATION_BOUNDS.partition_point(|&x| x < seconds);
        self.buckets[b] += 1;

        let ms = seconds * 1000.0;
        if ms <= 0.0 {
            self.exp_zero += 1;
            return;
        }
        // Bucket index i holds (base^i, base^(i+1)], base = 2^(2^-scale).
        let idx = (ms.log2() * f64::from(1 << EXP_SCALE)).ceil() as i32 - 1;
        if self.exp_counts.is_empty() {
            self.exp_offset = idx;
            self.exp_counts.push(0);
        } else if idx < self.exp_offset {
            let grow = usize::try_from(self.exp_offset - idx).unwrap_or(0);
            let mut counts = vec![0; grow];
            counts.extend_from_slice(&self.exp_counts);
            self.exp_counts = counts;
            self.exp_offset = idx;
        }
        let pos = usize::try_from(idx - self.exp_offset).unwrap_or(0);
        if pos >= self.exp_counts.len() {
            self.exp_counts.resize(pos + 1, 0);
        }
        self.exp_counts[pos] += 1;
    }
}

#[derive(Clone, Debug)]
pub(crate) struct MetricsState {
    pub(crate) start: u64,
    /// Per instance, per endpoint of its service: [ok, error].
    pub(crate) series: Vec<Vec<[HistState; 2]>>,
    pub(crate) cpu: Vec<f64>,
}

/// Simulated topology: frontend → checkout → payment, cart,
/// product-catalog, recommendation, ad, with a postgresql database
/// (`db.system`) and a redis cache as leaf CLIENT calls; optionally grown
/// with extra services/endpoints for big benchmarks ([`Topology::with_size`]).
///
/// Everything is derived from the seed, so two topologies built with the same
/// seed (and size) have the same services, instance ids and pods.
#[derive(Clone)]
pub struct Topology {
    pub(crate) model: Model,
    pub(crate) faults: ActiveFaults,
    /// Each service's version as built, restored when a release ends.
    pub(crate) versions: Vec<String>,
    pub(crate) rng: SmallRng,
    pub(crate) logs: VecDeque<LogCandidate>,
    pub(crate) metrics: Option<MetricsState>,
    /// Server spans per instance since the last [`Topology::cpu_request`].
    pub(crate) served: Vec<u64>,
    pub(crate) cpu: Option<CpuState>,
}

/// What [`Topology::cpu_request`] keeps between calls.
#[derive(Clone, Debug)]
pub(crate) struct CpuState {
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) total: Vec<u64>,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology")
            .field("services", &self.model.services.len())
            .field("instances", &self.model.instances.len())
            .field("endpoints", &self.model.endpoints.len())
            .finish()
    }
}

impl Topology {
    /// The default ~7-service shop.
    pub fn new(seed: u64) -> Self {
        let mut b = Builder::new(seed);
        b.shop();
        Self::from_model(b.finish(), seed)
    }

    /// The shop grown to `services` services and about `endpoints` server
    /// endpoints in total (e.g. 20 services, 200 endpoints). Values smaller
    /// than the shop itself (7 services, 19 endpoints) leave it unchanged;
    /// every extra service gets at least one endpoint.
    pub fn with_size(seed: u64, services: usize, endpoints: usize) -> Self {
        let mut b = Builder::new(seed);
        b.shop();
        b.extend(services, endpoints);
        Self::from_model(b.finish(), seed)
    }

    pub(crate) fn from_model(model: Model, seed: u64) -> Self {
        let versions = model
            .services
            .iter()
            .map(|svc| {
                svc.instances
                    .first()
                    .and_then(|&i| {
                        attr_str(&model.instances[i].resource.attributes, "service.version")
                            .map(str::to_owned)
                    })
                    .unwrap_or_default()
            })
            .collect();
        Topology {
            served: vec![0; model.instances.len()],
            faults: ActiveFaults::none(&model),
            versions,
            model,
            rng: SmallRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            logs: VecDeque::with_capacity(LOG_CANDIDATES),
            metrics: None,
            cpu: None,
        }
    }

    /// Names of the simulated services (the first one is the frontend).
    pub fn service_names(&self) -> Vec<&str> {
        self.model
            .services
            .iter()
            .map(|s| s.name.as_str())
            .collect()
    }

    /// Number of service instances (distinct `service.instance.id`s).
    pub fn instance_count(&self) -> usize {
        self.model.instances.len()
    }

    /// Number of server endpoints (HTTP routes + gRPC methods).
    pub fn endpoint_count(&self) -> usize {
        self.model.endpoints.len()
    }

    /// Replaces the injected faults (none: the baseline shop). A fault naming a service,
    /// endpoint, instance or database the topology does not have is an error, and then
    /// nothing changes.
    pub fn set_faults(&mut self, faults: &[Fault]) -> Result<(), String> {
        let model = &self.model;
        let mut active = ActiveFaults::none(model);
        let mut versions = self.versions.clone();
        let service = |name: &str| {
            model
                .services
                .iter()
                .position(|s| s.name == name)
                .ok_or_else(|| format!("no service named {name:?}"))
        };
        for fault in faults {
            match fault {
                Fault::ErrorScale(factor) => {
                    if !(factor.is_finite() && *factor >= 0.0) {
                        return Err(format!("error scale must be >= 0, got {factor}"));
                    }
                    active.error_scale = *factor;
                }
                Fault::Service {
                    service: name,
                    version,
                    latency_factor,
                    error_prob,
                    endpoint,
                } => {
                    let svc = service(name)?;
                    check_factor("latency factor", *latency_factor)?;
                    check_probability("error probability", *error_prob)?;
                    active.service_latency[svc] = *latency_factor;
                    if let Some(version) = version {
                        versions[svc].clone_from(version);
                    }
                    let eps: Vec<usize> = model.services[svc]
                        .endpoints
                        .iter()
                        .copied()
                        .filter(|&e| {
                            endpoint.as_deref().is_none_or(|n| {
                                endpoint_is(&model.endpoints[e], &model.services[svc], n)
                            })
                        })
                        .collect();
                    if eps.is_empty() {
                        return Err(format!(
                            "service {name:?} has no endpoint {:?}",
                            endpoint.as_deref().unwrap_or_default()
                        ));
                    }
                    for e in eps {
                        active.endpoint_error[e] = *error_prob;
                    }
                }
                Fault::SlowInstance {
                    service: name,
                    instance,
                    latency_factor,
                } => {
                    let svc = service(name)?;
                    check_factor("latency factor", *latency_factor)?;
                    let &i = model.services[svc]
                        .instances
                        .get(*instance)
                        .ok_or_else(|| {
                            format!(
                                "service {name:?} has {} instances, no instance {instance}",
                                model.services[svc].instances.len()
                            )
                        })?;
                    active.instance_latency[i] = *latency_factor;
                }
                Fault::Database { system, error_prob } => {
                    check_probability("error probability", *error_prob)?;
                    let mut found = false;
                    for (op, slot) in model.db_ops.iter().zip(&mut active.db_error) {
                        if op.system.name() == system {
                            *slot = Some(*error_prob);
                            found = true;
                        }
                    }
                    if !found {
                        return Err(format!("no database with db.system {system:?}"));
                    }
                }
            }
        }
        for (svc, version) in self.model.services.iter().zip(&versions) {
            for &i in &svc.instances {
                set_resource_attr(
                    &mut self.model.instances[i].resource,
                    "service.version",
                    version,
                );
            }
        }
        self.faults = active;
        Ok(())
    }

    /// The instance ids (`service.instance.id`) of a service, in the order
    /// [`Fault::SlowInstance`] counts them.
    pub fn instance_ids(&self, service: &str) -> Vec<String> {
        self.model
            .services
            .iter()
            .filter(|s| s.name == service)
            .flat_map(|s| &s.instances)
            .filter_map(|&i| {
                attr_str(
                    &self.model.instances[i].resource.attributes,
                    "service.instance.id",
                )
                .map(str::to_owned)
            })
            .collect()
    }

    /// One OTLP request holding about `spans` spans (whole traces, so it may
    /// overshoot slightly), all starting around `start_unix_nano` (root spans
    /// start within 100 ms after it), grouped by ResourceSpans per service
    /// instance and ScopeSpans per instrumentation library.
    pub fn traces_request(
        &mut self,
        spans: usize,
        start_unix_nano: u64,
    ) -> ExportTraceServiceRequest {
        self.traces_request_over(spans, start_unix_nano, ROOT_SPREAD_NS)
    }

    /// Like [`Topology::traces_request`], with root spans starting uniformly within
    /// `spread_ns` after `start_unix_nano` (e.g. a minute's traffic in one request).
    pub fn traces_request_over(
        &mut self,
        spans: usize,
        start_unix_nano: u64,
        spread_ns: u64,
    ) -> ExportTraceServiceRequest {
        let mut out: Vec<Vec<Span>> = vec![Vec::new(); self.model.instances.len() * SCOPE_COUNT];
        self.generate(spans, start_unix_nano, spread_ns.max(1), &mut out);
        let mut resource_spans = Vec::new();
        for (i, instance) in self.model.instances.iter().enumerate() {
            let mut scope_spans = Vec::new();
            for kind in ScopeKind::ALL {
                let spans = std::mem::take(&mut out[i * SCOPE_COUNT + kind as usize]);
                if !spans.is_empty() {
                    scope_spans.push(ScopeSpans {
                        scope: Some(kind.scope()),
                        spans,
                        schema_url: SCHEMA_URL.to_owned(),
                    });
                }
            }
            if !scope_spans.is_empty() {
                resource_spans.push(ResourceSpans {
                    resource: Some(instance.resource.clone()),
                    scope_spans,
                    schema_url: SCHEMA_URL.to_owned(),
                });
            }
        }
        ExportTraceServiceRequest { resource_spans }
    }

    /// Generate whole traces into `out` until at least `spans` spans exist.
    pub(crate) fn generate(
        &mut self,
        spans: usize,
        start_unix_nano: u64,
        spread_ns: u64,
        out: &mut [Vec<Span>],
    ) -> usize {
        let mut count = 0;
        while count < spans {
            let Some(root) = self.model.pick_root(&mut self.rng) else {
                break;
            };
            let offset = self.rng.random_range(0..spread_ns);
            let trace_id = random_trace_id(&mut self.rng);
            let mut b = TraceBuilder {
                model: &self.model,
                faults: &self.faults,
                served: &mut self.served,
                rng: &mut self.rng,
                out,
                logs: &mut self.logs,
                trace_id,
                spans: 0,
            };
            b.server(root, None, start_unix_nano + offset);
            count += b.spans;
        }
        count
    }

    /// One OTLP metrics request at `time_unix_nano`. Per service instance:
    /// `http.server.request.duration` (explicit-bucket histogram, unit `s`,
    /// semconv default bounds), `rpc.server.duration` (exponential histogram
    /// of the same observations, unit `ms`), `http.server.request.count`
    /// (monotonic sum, `{request}`) — all cumulative since the first call and
    /// split by endpoint and ok/error — plus a `process.cpu.utilization`
    /// gauge. Histogram and sum series with the same attributes agree.
    pub fn metrics_request(&mut self, time_unix_nano: u64) -> ExportMetricsServiceRequest {
        let model = &self.model;
        let rng = &mut self.rng;
        let state = self.metrics.get_or_insert_with(|| MetricsState {
            start: time_unix_nano.saturating_sub(1_000_000_000),
            series: model
                .instances
                .iter()
                .map(|inst| {
                    vec![<[HistState; 2]>::default(); model.services[inst.service].endpoints.len()]
                })
                .collect(),
            cpu: model.instances.iter().map(|_| 0.2).collect(),
        });

        // Simulate the observations since the previous call.
        for (i, inst) in model.instances.iter().enumerate() {
            let svc = &model.services[inst.service];
            for (local, &ep_idx) in svc.endpoints.iter().enumerate() {
                let ep = &model.endpoints[ep_idx];
                let n = if ep.weight > 0 {
                    ep.weight + rng.random_range(0..ep.weight.max(2))
                } else {
                    rng.random_range(2..20)
                };
                let err_p = (ep.error_prob * 3.0).min(0.2);
                for _ in 0..n {
                    let err = rng.random_bool(err_p);
                    let ms = lognormal(rng, ep.total_ms, 0.55).clamp(0.01, 60_000.0);
                    state.series[i][local][usize::from(err)].record(ms / 1000.0);
                }
            }
            let cpu = &mut state.cpu[i];
            *cpu = (*cpu + rng.random_range(-0.05..0.05)).clamp(0.02, 0.95);
        }

        let start = state.start;
        let cumulative = AggregationTemporality::Cumulative as i32;
        let mut resource_metrics = Vec::with_capacity(model.instances.len());
        for (i, inst) in model.instances.iter().enumerate() {
            let svc = &model.services[inst.service];
            let mut hist_points = Vec::new();
            let mut exp_points = Vec::new();
            let mut sum_points = Vec::new();
            for (local, &ep_idx) in svc.endpoints.iter().enumerate() {
                let ep = &model.endpoints[ep_idx];
                for (outcome, h) in state.series[i][local].iter().enumerate() {
                    if h.count == 0 {
                        continue;
                    }
                    let err = outcome == 1;
                    let http_attrs = http_metric_attrs(svc, ep, err);
                    let rpc_attrs = match &ep.kind {
                        EndpointKind::Grpc { method } => vec![
                            kv_str("rpc.system", "grpc"),
                            kv_str("rpc.service", svc.rpc_service.as_str()),
                            kv_str("rpc.method", method.as_str()),
                            kv_int("rpc.grpc.status_code", if err { 13 } else { 0 }),
                        ],
                        EndpointKind::Http { .. } => http_attrs.clone(),
                    };
                    hist_points.push(HistogramDataPoint {
                        attributes: http_attrs.clone(),
                        start_time_unix_nano: start,
                        time_unix_nano,
                        count: h.count,
                        sum: Some(h.sum_s),
                        bucket_counts: h.buckets.to_vec(),
                        explicit_bounds: HTTP_DURATION_BOUNDS.to_vec(),
                        exemplars: Vec::new(),
                        flags: 0,
                        min: Some(h.min_s),
                        max: Some(h.max_s),
                    });
                    exp_points.push(ExponentialHistogramDataPoint {
                        attributes: rpc_attrs,
                        start_time_unix_nano: start,
                        time_unix_nano,
                        count: h.count,
                        sum: Some(h.sum_s * 1000.0),
                        scale: EXP_SCALE,
                        zero_count: h.exp_zero,
                        positive: Some(exponential_histogram_data_point::Buckets {
                            offset: h.exp_offset,
                            bucket_counts: h.exp_counts.clone(),
                        }),
                        negative: None,
                        flags: 0,
                        exemplars: Vec::new(),
                        min: Some(h.min_s * 1000.0),
                        max: Some(h.max_s * 1000.0),
                        zero_threshold: 0.0,
                    });
                    sum_points.push(NumberDataPoint {
                        attributes: http_attrs,
                        start_time_unix_nano: start,
                        time_unix_nano,
                        exemplars: Vec::new(),
                        flags: 0,
                        value: Some(number_data_point::Value::AsInt(
                            i64::try_from(h.count).unwrap_or(i64::MAX),
                        )),
                    });
                }
            }
            let request_metrics = vec![
                Metric {
                    name: "http.server.request.duration".to_owned(),
                    description: "Duration of HTTP server requests.".to_owned(),
                    unit: "s".to_owned(),
                    metadata: Vec::new(),
                    data: Some(metric::Data::Histogram(OtlpHistogram {
                        data_points: hist_points,
                        aggregation_temporality: cumulative,
                    })),
                },
                Metric {
                    name: "rpc.server.duration".to_owned(),
                    description: "Measures the duration of inbound RPC.".to_owned(),
                    unit: "ms".to_owned(),
                    metadata: Vec::new(),
                    data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: exp_points,
                        aggregation_temporality: cumulative,
                    })),
                },
                Metric {
                    name: "http.server.request.count".to_owned(),
                    description: "Number of HTTP server requests.".to_owned(),
                    unit: "{request}".to_owned(),
                    metadata: Vec::new(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: sum_points,
                        aggregation_temporality: cumulative,
                        is_monotonic: true,
                    })),
                },
            ];
            let process_metrics = vec![cpu_metric(time_unix_nano, state.cpu[i])];
            resource_metrics.push(ResourceMetrics {
                resource: Some(inst.resource.clone()),
                scope_metrics: vec![
                    ScopeMetrics {
                        scope: Some(ScopeKind::Http.scope()),
                        metrics: request_metrics,
                        schema_url: SCHEMA_URL.to_owned(),
                    },
                    process_scope(process_metrics),
                ],
                schema_url: SCHEMA_URL.to_owned(),
            });
        }
        ExportMetricsServiceRequest { resource_metrics }
    }

    /// One OTLP metrics request at `time_unix_nano` with a `process.cpu.utilization` gauge per
    /// instance that follows the load the generated traces put on it: 3 % idle, plus its
    /// request rate since the previous call over its full-CPU rate, which is `full_cpu_factor`
    /// times its mean rate since the first call, ±1 % noise. The first call only starts the
    /// clock (every instance idle).
    pub fn cpu_request(
        &mut self,
        time_unix_nano: u64,
        full_cpu_factor: f64,
    ) -> ExportMetricsServiceRequest {
        const IDLE: f64 = 0.03;
        let n = self.model.instances.len();
        let state = self.cpu.get_or_insert_with(|| {
            self.served.iter_mut().for_each(|c| *c = 0);
            CpuState {
                first: time_unix_nano,
                last: time_unix_nano,
                total: vec![0; n],
            }
        });
        let since_last = time_unix_nano.saturating_sub(state.last) as f64;
        let since_first = time_unix_nano.saturating_sub(state.first) as f64;
        state.last = time_unix_nano;
        let mut resource_metrics = Vec::with_capacity(n);
        for (i, inst) in self.model.instances.iter().enumerate() {
            let served = std::mem::take(&mut self.served[i]);
            state.total[i] += served;
            let busy = if since_last > 0.0 && state.total[i] > 0 {
                let rate = served as f64 / since_last;
                let mean = state.total[i] as f64 / since_first;
                rate / (mean * full_cpu_factor)
            } else {
                0.0
            };
            let noise = self.rng.random_range(-0.01..0.01);
            resource_metrics.push(ResourceMetrics {
                resource: Some(inst.resource.clone()),
                scope_metrics: vec![process_scope(vec![cpu_metric(
                    time_unix_nano,
                    (IDLE + busy + noise).clamp(0.0, 1.0),
                )])],
                schema_url: SCHEMA_URL.to_owned(),
            });
        }
        ExportMetricsServiceRequest { resource_metrics }
    }

    /// About `records` log records, linked (trace_id/span_id) to spans of
    /// traces generated by this topology: ERROR records for spans where a
    /// failure originated, INFO/WARN access-log lines for root requests.
    /// Call it after [`Topology::traces_request`] so the linked spans have
    /// been exported; if too few recent spans are remembered, extra traces
    /// are generated (and not exported) just to link to.
    pub fn logs_request(
        &mut self,
        records: usize,
        time_unix_nano: u64,
    ) -> ExportLogsServiceRequest {
        let mut picked: Vec<LogCandidate> = Vec::with_capacity(records);
        let mut scratch: Vec<Vec<Span>> = Vec::new();
        while picked.len() < records {
            if self.logs.is_empty() {
                if scratch.is_empty() {
                    scratch = vec![Vec::new(); self.model.instances.len() * SCOPE_COUNT];
                }
                let start = time_unix_nano.saturating_sub(1_000_000_000);
                if self.generate(1, start, ROOT_SPREAD_NS, &mut scratch) == 0 {
                    break;
                }
                scratch.iter_mut().for_each(Vec::clear);
                continue;
            }
            // Errors first, then the newest access-log lines.
            let mut rest = VecDeque::with_capacity(self.logs.len());
            for c in self.logs.drain(..) {
                if matches!(c.kind, LogKind::Error { .. }) && picked.len() < records {
                    picked.push(c);
                } else {
                    rest.push_back(c);
                }
            }
            while picked.len() < records {
                match rest.pop_back() {
                    Some(c) => picked.push(c),
                    None => break,
                }
            }
            self.logs = rest;
        }

        let mut per_instance: Vec<Vec<LogRecord>> = vec![Vec::new(); self.model.instances.len()];
        for c in picked {
            let ep = &self.model.endpoints[c.endpoint];
            let svc = &self.model.services[ep.service];
            let mut attributes = Vec::with_capacity(4);
            match &ep.kind {
                EndpointKind::Http { method, route } => {
                    attributes.push(kv_str("http.request.method", *method));
                    attributes.push(kv_str("http.route", route.as_str()));
                }
                EndpointKind::Grpc { method } => {
                    attributes.push(kv_str("rpc.service", svc.rpc_service.as_str()));
                    attributes.push(kv_str("rpc.method", method.as_str()));
                }
            }
            let (severity, text, body) = match c.kind {
                LogKind::Error { fail } => {
                    attributes.push(kv_str("error.type", fail.grpc_name()));
                    let msg = match fail {
                        Fail::Unavailable => format!(
                            "{} failed: {}: connection reset by peer",
                            ep.name,
                            fail.grpc_name()
                        ),
                        _ => format!(
                            "{} failed: {}: unexpected nil pointer while building response",
                            ep.name,
                            fail.grpc_name()
                        ),
                    };
                    (SeverityNumber::Error, "ERROR", msg)
                }
                LogKind::Request {
                    status,
                    duration_ns,
                } => {
                    attributes.push(kv_int("http.response.status_code", status));
                    let sev = match status {
                        500.. => SeverityNumber::Error,
                        400.. => SeverityNumber::Warn,
                        _ => SeverityNumber::Info,
                    };
                    let text = match sev {
                        SeverityNumber::Error => "ERROR",
                        SeverityNumber::Warn => "WARN",
                        _ => "INFO",
                    };
                    let msg = format!(
                        "{} {} {:.1}ms",
                        ep.name,
                        status,
                        duration_ns as f64 / 1_000_000.0
                    );
                    (sev, text, msg)
                }
            };
            per_instance[c.instance].push(LogRecord {
                time_unix_nano: c.time,
                observed_time_unix_nano: time_unix_nano.max(c.time),
                severity_number: severity as i32,
                severity_text: text.to_owned(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(body)),
                }),
                attributes,
                dropped_attributes_count: 0,
                flags: 1,
                trace_id: c.trace_id.to_vec(),
                span_id: c.span_id.to_vec(),
                event_name: String::new(),
            });
        }
        let mut resource_logs = Vec::new();
        for (i, records) in per_instance.into_iter().enumerate() {
            if records.is_empty() {
                continue;
            }
            let inst = &self.model.instances[i];
            let svc = &self.model.services[inst.service];
            resource_logs.push(ResourceLogs {
                resource: Some(inst.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope(&format!("{}.logger", svc.language), "")),
                    log_records: records,
                    schema_url: SCHEMA_URL.to_owned(),
                }],
                schema_url: SCHEMA_URL.to_owned(),
            });
        }
        ExportLogsServiceRequest { resource_logs }
    }
}

pub(crate) fn cpu_metric(time_unix_nano: u64, utilization: f64) -> Metric {
    Metric {
        name: "process.cpu.utilization".to_owned(),
        description: "Difference in process.cpu.time since the last measurement, divided by the elapsed time and number of CPUs available to the process.".to_owned(),
        unit: "1".to_owned(),
        metadata: Vec::new(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                attributes: Vec::new(),
                start_time_unix_nano: 0,
                time_unix_nano,
                exemplars: Vec::new(),
                flags: 0,
                value: Some(number_data_point::Value::AsDouble(utilization)),
            }],
        })),
    }
}

pub(crate) fn process_scope(metrics: Vec<Metric>) -> ScopeMetrics {
    ScopeMetrics {
        scope: Some(scope("opentelemetry.instrumentation.process", "0.1.0")),
        metrics,
        schema_url: SCHEMA_URL.to_owned(),
    }
}

pub(crate) fn http_metric_attrs(svc: &ServiceDef, ep: &EndpointDef, err: bool) -> Vec<KeyValue> {
    let (method, route) = match &ep.kind {
        EndpointKind::Http { method, route } => (*method, route.clone()),
        EndpointKind::Grpc { method } => ("POST", format!("/{}/{}", svc.rpc_service, method)),
    };
    vec![
        kv_str("http.request.method", method),
        kv_str("http.route", route),
        kv_int("http.response.status_code", if err { 500 } else { 200 }),
    ]
}

/// Number of spans in a traces request.
pub fn span_count(req: &ExportTraceServiceRequest) -> u64 {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len() as u64)
        .sum()
}

/// Number of data points in a metrics request.
pub fn metric_point_count(req: &ExportMetricsServiceRequest) -> u64 {
    req.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.len(),
            Some(metric::Data::Sum(s)) => s.data_points.len(),
            Some(metric::Data::Histogram(h)) => h.data_points.len(),
            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(metric::Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}
