//! One trace at a time through the call graph: spans with their parent links, semantic-
//! convention attributes, log-normal latencies with a tail, and failures where faults say.

use std::collections::VecDeque;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{Span, Status, span, status};
use rand::Rng;
use rand::rngs::SmallRng;

use crate::{fault::*, model::*, util::*};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fail {
    None,
    /// gRPC UNAVAILABLE (14) / HTTP 503.
    Unavailable,
    /// gRPC INTERNAL (13) / HTTP 500.
    Internal,
}

impl Fail {
    pub(crate) fn grpc_code(self) -> i64 {
        match self {
            Fail::None => 0,
            Fail::Unavailable => 14,
            Fail::Internal => 13,
        }
    }
    pub(crate) fn grpc_name(self) -> &'static str {
        match self {
            Fail::None => "OK",
            Fail::Unavailable => "UNAVAILABLE",
            Fail::Internal => "INTERNAL",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum LogKind {
    Request { status: i64, duration_ns: u64 },
    Error { fail: Fail },
}

/// A span worth a log line, remembered for [`Topology::logs_request`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogCandidate {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) instance: usize,
    pub(crate) endpoint: usize,
    pub(crate) time: u64,
    pub(crate) kind: LogKind,
}

pub(crate) const LOG_CANDIDATES: usize = 512;

pub(crate) struct TraceBuilder<'a> {
    pub(crate) model: &'a Model,
    pub(crate) faults: &'a ActiveFaults,
    pub(crate) served: &'a mut [u64],
    pub(crate) rng: &'a mut SmallRng,
    pub(crate) out: &'a mut [Vec<Span>],
    pub(crate) logs: &'a mut VecDeque<LogCandidate>,
    pub(crate) trace_id: [u8; 16],
    pub(crate) spans: usize,
}

pub(crate) fn error_status(message: &str) -> Option<Status> {
    Some(Status {
        message: message.to_owned(),
        code: status::StatusCode::Error as i32,
    })
}

impl TraceBuilder<'_> {
    pub(crate) fn push(&mut self, instance: usize, scope: ScopeKind, span: Span) {
        self.spans += 1;
        self.out[instance * SCOPE_COUNT + scope as usize].push(span);
    }

    pub(crate) fn remember(&mut self, candidate: LogCandidate) {
        if self.logs.len() >= LOG_CANDIDATES {
            self.logs.pop_front();
        }
        self.logs.push_back(candidate);
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn span(
        &self,
        span_id: [u8; 8],
        parent: Option<[u8; 8]>,
        flags: u32,
        name: &str,
        kind: span::SpanKind,
        start: u64,
        end: u64,
        attributes: Vec<KeyValue>,
        status: Option<Status>,
    ) -> Span {
        Span {
            trace_id: self.trace_id.to_vec(),
            span_id: span_id.to_vec(),
            trace_state: String::new(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            flags,
            name: name.to_owned(),
            kind: kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            dropped_attributes_count: 0,
            events: Vec::new(),
            dropped_events_count: 0,
            links: Vec::new(),
            dropped_links_count: 0,
            status,
        }
    }

    /// Generate the SERVER span of `ep` (and everything below it) starting at
    /// `start`; returns its end time and outcome.
    pub(crate) fn server(
        &mut self,
        ep_idx: usize,
        parent: Option<[u8; 8]>,
        start: u64,
    ) -> (u64, Fail) {
        let model = self.model;
        let ep = &model.endpoints[ep_idx];
        let svc = &model.services[ep.service];
        let instance = svc.instances[self.rng.random_range(0..svc.instances.len())];
        self.served[instance] += 1;
        let span_id = random_span_id(self.rng);

        let mut self_ms = lognormal(self.rng, ep.self_ms, ep.sigma)
            * self.faults.service_latency[ep.service]
            * self.faults.instance_latency[instance];
        if self.rng.random_bool(0.003) {
            // Occasional slow request (GC pause, lock contention, cold cache).
            self_ms *= self.rng.random_range(5.0..30.0);
        }
        // Frontend-only client errors, answered without downstream calls.
        let mut http_status = 200;
        if let EndpointKind::Http { route, .. } = &ep.kind {
            let r: f64 = self.rng.random();
            if r < 0.004 {
                http_status = 429;
            } else if route.contains("{id}") && r < 0.03 {
                http_status = 404;
            }
            if http_status != 200 {
                self_ms *= 0.3;
            }
        }
        let self_ns = ms_to_ns(self_ms);
        let pre = (self_ns as f64 * self.rng.random_range(0.1..0.4)) as u64;
        let mut cursor = start + pre;
        let mut fail = Fail::None;

        if http_status == 200 {
            if ep.parallel {
                let base = cursor;
                let mut max_end = base;
                for c in &ep.calls {
                    if c.prob < 1.0 && !self.rng.random_bool(c.prob) {
                        continue;
                    }
                    let s = base + self.rng.random_range(5_000..60_000);
                    let (end, f) = self.call(instance, c.target, span_id, s);
                    max_end = max_end.max(end);
                    if f != Fail::None && c.critical && fail == Fail::None {
                        fail = f;
                    }
                }
                cursor = max_end;
            } else {
                'calls: for c in &ep.calls {
                    if c.prob < 1.0 && !self.rng.random_bool(c.prob) {
                        continue;
                    }
                    let reps = if c.max_repeat > c.min_repeat {
                        self.rng.random_range(c.min_repeat..=c.max_repeat)
                    } else {
                        c.min_repeat
                    };
                    for _ in 0..reps {
                        let s = cursor + self.rng.random_range(10_000..120_000);
                        let (end, f) = self.call(instance, c.target, span_id, s);
                        cursor = end;
                        if f != Fail::None && c.critical {
                            fail = f;
                            break 'calls;
                        }
                    }
                }
            }
        }
        let mut origin = false;
        if fail == Fail::None
            && http_status == 200
            && self
                .rng
                .random_bool(self.faults.endpoint_error_prob(ep_idx, ep.error_prob))
        {
            fail = if self.rng.random_bool(0.4) {
                Fail::Unavailable
            } else {
                Fail::Internal
            };
            origin = true;
        }
        let end = cursor + (self_ns - pre).max(1_000);

        let flags = if parent.is_some() {
            FLAGS_REMOTE_PARENT
        } else {
            FLAGS_LOCAL_PARENT
        };
        let mut span = match &ep.kind {
            EndpointKind::Http { method, route } => {
                if fail != Fail::None {
                    http_status = if fail == Fail::Unavailable { 503 } else { 500 };
                }
                let path = if route.contains("{id}") {
                    let id = PRODUCT_IDS[self.rng.random_range(0..PRODUCT_IDS.len())];
                    route.replace("{id}", id)
                } else {
                    route.clone()
                };
                let mut attrs = Vec::with_capacity(10);
                attrs.push(kv_str("http.request.method", *method));
                attrs.push(kv_str("http.route", route.as_str()));
                attrs.push(kv_str("url.path", path));
                attrs.push(kv_str("url.scheme", "https"));
                attrs.push(kv_str("server.address", FRONTEND_HOST));
                attrs.push(kv_int("server.port", 443));
                attrs.push(kv_int("http.response.status_code", http_status));
                attrs.push(kv_str("network.protocol.version", "1.1"));
                if self.rng.random_bool(0.7) {
                    let ua = USER_AGENTS[self.rng.random_range(0..USER_AGENTS.len())];
                    attrs.push(kv_str("user_agent.original", ua));
                }
                let st = if fail != Fail::None {
                    attrs.push(kv_str("error.type", http_status.to_string()));
                    error_status("")
                } else {
                    None
                };
                self.span(
                    span_id,
                    parent,
                    flags,
                    &ep.name,
                    span::SpanKind::Server,
                    start,
                    end,
                    attrs,
                    st,
                )
            }
            EndpointKind::Grpc { method } => {
                let mut attrs = Vec::with_capacity(6);
                attrs.push(kv_str("rpc.system", "grpc"));
                attrs.push(kv_str("rpc.service", svc.rpc_service.as_str()));
                attrs.push(kv_str("rpc.method", method.as_str()));
                attrs.push(kv_int("rpc.grpc.status_code", fail.grpc_code()));
                attrs.push(kv_str("server.address", svc.name.as_str()));
                let st = if fail != Fail::None {
                    attrs.push(kv_str("error.type", fail.grpc_name()));
                    error_status(if fail == Fail::Unavailable {
                        "upstream connect error or disconnect/reset before headers"
                    } else {
                        "internal error"
                    })
                } else {
                    None
                };
                self.span(
                    span_id,
                    parent,
                    flags,
                    &ep.name,
                    span::SpanKind::Server,
                    start,
                    end,
                    attrs,
                    st,
                )
            }
        };
        if origin {
            let (ty, msg) = match fail {
                Fail::Unavailable => ("ConnectionResetError", "connection reset by peer"),
                _ => (
                    "RuntimeError",
                    "unexpected nil pointer while building response",
                ),
            };
            span.events.push(span::Event {
                time_unix_nano: end.saturating_sub(1_000).max(start),
                name: "exception".to_owned(),
                attributes: vec![
                    kv_str("exception.type", ty),
                    kv_str("exception.message", msg),
                ],
                dropped_attributes_count: 0,
            });
            self.remember(LogCandidate {
                trace_id: self.trace_id,
                span_id,
                instance,
                endpoint: ep_idx,
                time: end.saturating_sub(1_000).max(start),
                kind: LogKind::Error { fail },
            });
        }
        let scope = match ep.kind {
            EndpointKind::Http { .. } => ScopeKind::Http,
            EndpointKind::Grpc { .. } => ScopeKind::Grpc,
        };
        self.push(instance, scope, span);
        if parent.is_none() {
            self.remember(LogCandidate {
                trace_id: self.trace_id,
                span_id,
                instance,
                endpoint: ep_idx,
                time: end,
                kind: LogKind::Request {
                    status: http_status,
                    duration_ns: end - start,
                },
            });
        }
        (end, fail)
    }

    /// A CLIENT span from `instance` to `target` starting at `start`.
    pub(crate) fn call(
        &mut self,
        instance: usize,
        target: Target,
        parent: [u8; 8],
        start: u64,
    ) -> (u64, Fail) {
        match target {
            Target::Endpoint(ep) => self.call_rpc(instance, ep, parent, start),
            Target::Db(op) => self.call_db(instance, op, parent, start),
        }
    }

    pub(crate) fn call_rpc(
        &mut self,
        instance: usize,
        ep_idx: usize,
        parent: [u8; 8],
        start: u64,
    ) -> (u64, Fail) {
        let model = self.model;
        let span_id = random_span_id(self.rng);
        let net_out = self.rng.random_range(80_000..400_000);
        let (server_end, fail) = self.server(ep_idx, Some(span_id), start + net_out);
        let end = server_end + self.rng.random_range(60_000..300_000);
        let ep = &model.endpoints[ep_idx];
        let svc = &model.services[ep.service];
        let method = match &ep.kind {
            EndpointKind::Grpc { method } => method.as_str(),
            EndpointKind::Http { route, .. } => route.as_str(),
        };
        let mut attrs = Vec::with_capacity(8);
        attrs.push(kv_str("rpc.system", "grpc"));
        attrs.push(kv_str("rpc.service", svc.rpc_service.as_str()));
        attrs.push(kv_str("rpc.method", method));
        attrs.push(kv_int("rpc.grpc.status_code", fail.grpc_code()));
        attrs.push(kv_str("peer.service", svc.name.as_str()));
        attrs.push(kv_str("server.address", svc.name.as_str()));
        attrs.push(kv_int("server.port", svc.port));
        let st = if fail != Fail::None {
            attrs.push(kv_str("error.type", fail.grpc_name()));
            error_status(fail.grpc_name())
        } else {
            None
        };
        let span = self.span(
            span_id,
            Some(parent),
            FLAGS_LOCAL_PARENT,
            &ep.name,
            span::SpanKind::Client,
            start,
            end,
            attrs,
            st,
        );
        self.push(instance, ScopeKind::Grpc, span);
        (end, fail)
    }

    pub(crate) fn call_db(
        &mut self,
        instance: usize,
        op_idx: usize,
        parent: [u8; 8],
        start: u64,
    ) -> (u64, Fail) {
        let op = &self.model.db_ops[op_idx];
        let span_id = random_span_id(self.rng);
        let mut ms = lognormal(self.rng, op.median_ms, op.sigma);
        if self.rng.random_bool(0.002) {
            ms *= self.rng.random_range(5.0..40.0);
        }
        let end = start + ms_to_ns(ms);
        let failed = self
            .rng
            .random_bool(self.faults.db_error_prob(op_idx, op.error_prob));
        let (address, port, namespace, peer) = op.server();
        let mut attrs = Vec::with_capacity(10);
        attrs.push(kv_str("db.system", op.system.name()));
        attrs.push(kv_str("db.operation.name", op.operation));
        attrs.push(kv_str("db.query.text", op.query.as_str()));
        if let Some(collection) = &op.collection {
            attrs.push(kv_str("db.collection.name", collection.as_str()));
        }
        attrs.push(kv_str("db.namespace", namespace));
        attrs.push(kv_str("server.address", address));
        attrs.push(kv_int("server.port", port));
        attrs.push(kv_str("peer.service", peer));
        let (st, scope) = match op.system {
            DbSystem::Postgres => (
                failed.then(|| {
                    attrs.push(kv_str("error.type", "57014"));
                    attrs.push(kv_str("db.response.status_code", "57014"));
                    error_status("canceling statement due to statement timeout")
                }),
                ScopeKind::Postgres,
            ),
            DbSystem::Redis => (
                failed.then(|| {
                    attrs.push(kv_str("error.type", "LOADING"));
                    error_status("LOADING Redis is loading the dataset in memory")
                }),
                ScopeKind::Redis,
            ),
        };
        let span = self.span(
            span_id,
            Some(parent),
            FLAGS_LOCAL_PARENT,
            &op.name,
            span::SpanKind::Client,
            start,
            end,
            attrs,
            st.flatten(),
        );
        self.push(instance, scope, span);
        (end, if failed { Fail::Internal } else { Fail::None })
    }
}
