//! Synthetic OTLP load generator.
//!
//! Headroom needs traffic that looks like a real microservice system to be
//! useful to demo, benchmark or test end to end: RED metrics, service maps,
//! critical paths and error breakdowns are only meaningful if the spans carry
//! correct parent/child links, semantic-convention attributes, plausible
//! latencies with a tail, and a realistic sprinkle of failures. This module
//! provides two things:
//!
//! * [`Topology`], a deterministic (seeded) simulated shop — `frontend` →
//!   `checkout` → `payment`, `cart` (redis), `product-catalog` (postgresql +
//!   redis), `recommendation`, `ad` — optionally grown with extra services and
//!   endpoints for big benchmarks. It produces ready-to-send
//!   [`ExportTraceServiceRequest`]s, [`ExportMetricsServiceRequest`]s and
//!   [`ExportLogsServiceRequest`]s. It is a library piece reused by the
//!   benchmarks and the demo.
//! * [`run`], the `headroom loadgen` command: it sends that traffic to an OTLP
//!   endpoint over gRPC or HTTP/protobuf at a target rate, reads
//!   `partial_success` from every response and reports what was sent and what
//!   the server acknowledged ([`LoadgenReport`]).
//!
//! To measure the *server* and not the generator, [`run`] builds a pool of
//! requests and prost-encodes them once before the clock starts. Re-sending
//! the same bytes would produce duplicate ids and stale timestamps, so each
//! send copies a pooled request and patches it in place: trace and span ids
//! are XOR-ed with a fresh random salt (a bijection, so parent links stay
//! consistent and ids stay unique) and all timestamps are shifted so that the
//! request's newest span ends "now". The patch offsets are found once by a
//! small protobuf wire-format walk. This costs one memcpy plus a few thousand
//! byte writes per request — far cheaper than generating or encoding.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes};
use hdrhistogram::Histogram;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram as OtlpHistogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, exponential_histogram_data_point, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.26.0";
const SDK_VERSION: &str = "1.38.0";
const ENVIRONMENT: &str = "production";
const K8S_NAMESPACE: &str = "shop";
const FRONTEND_HOST: &str = "shop.example.com";

/// Root spans of one traces request start within this window after
/// `start_unix_nano`.
const ROOT_SPREAD_NS: u64 = 100_000_000;

/// Semantic-conventions default bucket boundaries for
/// `http.server.request.duration` (seconds).
const HTTP_DURATION_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Scale of the `rpc.server.duration` exponential histogram (base 2^(1/8)).
const EXP_SCALE: i32 = 3;

/// Span flags: sampled, with the "is remote" bits for server spans whose
/// parent lives in another process.
const FLAGS_LOCAL_PARENT: u32 = 0x101;
const FLAGS_REMOTE_PARENT: u32 = 0x301;

const TRACE_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "python-requests/2.31.0",
];
const PRODUCT_IDS: [&str; 8] = [
    "OLJCESPC7Z",
    "66VCHSJNUP",
    "1YMWWN1N4O",
    "L9ECAV7KIM",
    "2ZYFJ3GM2N",
    "0PUK6V6EV0",
    "LS4PSXUNUM",
    "9SIQT8TOJO",
];

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        key_strindex: 0,
    }
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        key_strindex: 0,
    }
}

/// The string value of attribute `key`.
fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    {
        Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
        _ => None,
    }
}

fn set_resource_attr(resource: &mut Resource, key: &str, value: &str) {
    match resource.attributes.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => *kv = kv_str(key, value),
        None => resource.attributes.push(kv_str(key, value)),
    }
}

fn scope(name: &str, version: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: name.to_owned(),
        version: version.to_owned(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    }
}

/// Standard normal sample (Box–Muller), clamped to ±5σ.
fn std_normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    z.clamp(-5.0, 5.0)
}

/// Log-normal sample with the given median (same unit as the median).
fn lognormal(rng: &mut SmallRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * std_normal(rng)).exp()
}

fn ms_to_ns(ms: f64) -> u64 {
    // Truncating float → int conversion is intended; at least 1 µs.
    (ms * 1_000_000.0).max(1_000.0) as u64
}

fn random_span_id(rng: &mut SmallRng) -> [u8; 8] {
    let v: u64 = rng.random();
    (if v == 0 { 1 } else { v }).to_be_bytes()
}

fn random_trace_id(rng: &mut SmallRng) -> [u8; 16] {
    let hi: u64 = rng.random();
    let lo: u64 = rng.random();
    let lo = if lo == 0 { 1 } else { lo };
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&hi.to_be_bytes());
    id[8..].copy_from_slice(&lo.to_be_bytes());
    id
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn pascal(name: &str) -> String {
    name.split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Topology model
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScopeKind {
    Http = 0,
    Grpc = 1,
    Postgres = 2,
    Redis = 3,
}
const SCOPE_COUNT: usize = 4;

impl ScopeKind {
    const ALL: [ScopeKind; SCOPE_COUNT] = [
        ScopeKind::Http,
        ScopeKind::Grpc,
        ScopeKind::Postgres,
        ScopeKind::Redis,
    ];
    fn scope(self) -> InstrumentationScope {
        match self {
            ScopeKind::Http => scope("opentelemetry.instrumentation.http", "0.57.0"),
            ScopeKind::Grpc => scope("opentelemetry.instrumentation.grpc", "0.57.0"),
            ScopeKind::Postgres => scope("opentelemetry.instrumentation.pg", "0.51.0"),
            ScopeKind::Redis => scope("opentelemetry.instrumentation.redis", "0.49.0"),
        }
    }
}

#[derive(Clone, Debug)]
struct ServiceDef {
    name: String,
    language: &'static str,
    /// Fully qualified gRPC service name (unused for the HTTP frontend).
    rpc_service: String,
    port: i64,
    instances: Vec<usize>,
    endpoints: Vec<usize>,
}

#[derive(Clone, Debug)]
struct InstanceDef {
    service: usize,
    resource: Resource,
}

#[derive(Clone, Debug)]
enum EndpointKind {
    Http { method: &'static str, route: String },
    Grpc { method: String },
}

#[derive(Clone, Debug)]
struct EndpointDef {
    service: usize,
    kind: EndpointKind,
    /// Span name: `GET /api/cart` or `oteldemo.CartService/GetCart`.
    name: String,
    /// Median of the endpoint's own work (ms), excluding downstream calls.
    self_ms: f64,
    sigma: f64,
    /// Probability that the endpoint fails on its own.
    error_prob: f64,
    /// Downstream calls are issued concurrently instead of one after another.
    parallel: bool,
    calls: Vec<CallDef>,
    /// Typical end-to-end latency (ms), used by the metrics simulation.
    total_ms: f64,
    /// Share of root traffic (frontend routes only).
    weight: u32,
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Endpoint(usize),
    Db(usize),
}

#[derive(Clone, Copy, Debug)]
struct CallDef {
    target: Target,
    prob: f64,
    min_repeat: u8,
    max_repeat: u8,
    /// A failure of this call fails the caller.
    critical: bool,
}

fn call(target: Target) -> CallDef {
    CallDef {
        target,
        prob: 1.0,
        min_repeat: 1,
        max_repeat: 1,
        critical: true,
    }
}

impl CallDef {
    fn prob(mut self, p: f64) -> Self {
        self.prob = p;
        self
    }
    fn optional(mut self) -> Self {
        self.critical = false;
        self
    }
    fn repeat(mut self, min: u8, max: u8) -> Self {
        self.min_repeat = min;
        self.max_repeat = max;
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DbSystem {
    Postgres,
    Redis,
}

impl DbSystem {
    /// `db.system`.
    fn name(self) -> &'static str {
        match self {
            DbSystem::Postgres => "postgresql",
            DbSystem::Redis => "redis",
        }
    }
}

#[derive(Clone, Debug)]
struct DbOp {
    system: DbSystem,
    operation: &'static str,
    collection: Option<String>,
    query: String,
    /// Span name (`SELECT products`, `HGETALL`).
    name: String,
    median_ms: f64,
    sigma: f64,
    error_prob: f64,
}

impl DbOp {
    fn server(&self) -> (&'static str, i64, &'static str, &'static str) {
        // (server.address, server.port, db.namespace, peer.service)
        match self.system {
            DbSystem::Postgres => ("postgres", 5432, "shop", "postgresql"),
            DbSystem::Redis => ("redis-cart", 6379, "0", "redis"),
        }
    }
}

/// The static part of a topology: services, instances, endpoints, call graph.
#[derive(Clone, Debug)]
struct Model {
    services: Vec<ServiceDef>,
    instances: Vec<InstanceDef>,
    endpoints: Vec<EndpointDef>,
    db_ops: Vec<DbOp>,
    /// Cumulative root weights over frontend routes: (cumulative, endpoint).
    roots: Vec<(u32, usize)>,
}

struct Builder {
    rng: SmallRng,
    services: Vec<ServiceDef>,
    instances: Vec<InstanceDef>,
    endpoints: Vec<EndpointDef>,
    db_ops: Vec<DbOp>,
}

impl Builder {
    fn new(seed: u64) -> Self {
        Builder {
            rng: SmallRng::seed_from_u64(seed),
            services: Vec::new(),
            instances: Vec::new(),
            endpoints: Vec::new(),
            db_ops: Vec::new(),
        }
    }

    fn service(&mut self, name: &str, language: &'static str, version: &str, port: i64) -> usize {
        let idx = self.services.len();
        let count = self.rng.random_range(2..=3);
        let deployment_hash: u64 = self.rng.random_range(0x10_0000_0000..0xff_ffff_ffff);
        let mut instances = Vec::with_capacity(count);
        for _ in 0..count {
            let uuid: u128 = self.rng.random();
            let instance_id = format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                (uuid >> 96) as u32,
                (uuid >> 80) as u16,
                ((uuid >> 64) as u16) & 0x0fff,
                (((uuid >> 48) as u16) & 0x3fff) | 0x8000,
                (uuid as u64) & 0xffff_ffff_ffff
            );
            let suffix: String = (0..5)
                .map(|_| {
                    let c = self.rng.random_range(0..36u8);
                    if c < 10 {
                        char::from(b'0' + c)
                    } else {
                        char::from(b'a' + c - 10)
                    }
                })
                .collect();
            let pod = format!("{name}-{deployment_hash:x}-{suffix}");
            let resource = Resource {
                attributes: vec![
                    kv_str("service.name", name),
                    kv_str("service.version", version),
                    kv_str("service.instance.id", instance_id),
                    kv_str("deployment.environment.name", ENVIRONMENT),
                    kv_str("k8s.namespace.name", K8S_NAMESPACE),
                    kv_str("k8s.deployment.name", name),
                    kv_str("k8s.pod.name", pod),
                    kv_str("telemetry.sdk.name", "opentelemetry"),
                    kv_str("telemetry.sdk.language", language),
                    kv_str("telemetry.sdk.version", SDK_VERSION),
                ],
                dropped_attributes_count: 0,
                entity_refs: Vec::new(),
            };
            instances.push(self.instances.len());
            self.instances.push(InstanceDef {
                service: idx,
                resource,
            });
        }
        self.services.push(ServiceDef {
            name: name.to_owned(),
            language,
            rpc_service: format!("oteldemo.{}Service", pascal(name)),
            port,
            instances,
            endpoints: Vec::new(),
        });
        idx
    }

    #[allow(clippy::too_many_arguments)]
    fn endpoint(
        &mut self,
        service: usize,
        kind: EndpointKind,
        self_ms: f64,
        sigma: f64,
        error_prob: f64,
        weight: u32,
        parallel: bool,
        calls: Vec<CallDef>,
    ) -> usize {
        let name = match &kind {
            EndpointKind::Http { method, route } => format!("{method} {route}"),
            EndpointKind::Grpc { method } => {
                format!("{}/{}", self.services[service].rpc_service, method)
            }
        };
        let idx = self.endpoints.len();
        self.endpoints.push(EndpointDef {
            service,
            kind,
            name,
            self_ms,
            sigma,
            error_prob,
            parallel,
            calls,
            total_ms: self_ms,
            weight,
        });
        self.services[service].endpoints.push(idx);
        idx
    }

    fn grpc(
        &mut self,
        service: usize,
        method: &str,
        self_ms: f64,
        error_prob: f64,
        calls: Vec<CallDef>,
    ) -> usize {
        let kind = EndpointKind::Grpc {
            method: method.to_owned(),
        };
        self.endpoint(service, kind, self_ms, 0.5, error_prob, 0, false, calls)
    }

    #[allow(clippy::too_many_arguments)]
    fn http(
        &mut self,
        service: usize,
        method: &'static str,
        route: &str,
        self_ms: f64,
        weight: u32,
        parallel: bool,
        calls: Vec<CallDef>,
    ) -> usize {
        let kind = EndpointKind::Http {
            method,
            route: route.to_owned(),
        };
        self.endpoint(service, kind, self_ms, 0.45, 0.005, weight, parallel, calls)
    }

    fn pg(
        &mut self,
        operation: &'static str,
        collection: &str,
        query: &str,
        median_ms: f64,
    ) -> Target {
        self.db_ops.push(DbOp {
            system: DbSystem::Postgres,
            operation,
            collection: Some(collection.to_owned()),
            query: query.to_owned(),
            name: format!("{operation} {collection}"),
            median_ms,
            sigma: 0.6,
            error_prob: 0.001,
        });
        Target::Db(self.db_ops.len() - 1)
    }

    fn redis(&mut self, operation: &'static str, query: &str, median_ms: f64) -> Target {
        self.db_ops.push(DbOp {
            system: DbSystem::Redis,
            operation,
            collection: None,
            query: query.to_owned(),
            name: operation.to_owned(),
            median_ms,
            sigma: 0.4,
            error_prob: 0.0005,
        });
        Target::Db(self.db_ops.len() - 1)
    }

    /// The default ~7-service shop.
    fn shop(&mut self) {
        use Target::Endpoint as E;
        let frontend = self.service("frontend", "nodejs", "2.4.1", 8080);
        let checkout = self.service("checkout", "go", "1.9.3", 5050);
        let payment = self.service("payment", "nodejs", "1.4.0", 50051);
        let cart = self.service("cart", "dotnet", "3.2.7", 7070);
        let catalog = self.service("product-catalog", "go", "1.12.0", 3550);
        let recommendation = self.service("recommendation", "python", "0.8.2", 9001);
        let ad = self.service("ad", "java", "1.5.1", 9555);

        // Data stores (leaf CLIENT spans, not services of their own).
        let q_products = self.pg(
            "SELECT",
            "products",
            "SELECT id, name, description, picture, price_usd, categories FROM products ORDER BY id LIMIT $1",
            2.5,
        );
        let q_product = self.pg(
            "SELECT",
            "products",
            "SELECT id, name, description, picture, price_usd, categories FROM products WHERE id = $1",
            0.9,
        );
        let q_search = self.pg(
            "SELECT",
            "products",
            "SELECT id, name, price_usd FROM products WHERE name ILIKE $1 OR description ILIKE $1 LIMIT 50",
            6.0,
        );
        let q_insert_order = self.pg(
            "INSERT",
            "orders",
            "INSERT INTO orders (id, user_id, items, total_usd, created_at) VALUES ($1, $2, $3, $4, now())",
            1.8,
        );
        let q_order = self.pg(
            "SELECT",
            "orders",
            "SELECT id, user_id, items, total_usd, status FROM orders WHERE id = $1",
            0.8,
        );
        let q_insert_payment = self.pg(
            "INSERT",
            "payments",
            "INSERT INTO payments (id, order_id, amount_usd, card_last4) VALUES ($1, $2, $3, $4)",
            1.5,
        );
        let q_ads = self.pg(
            "SELECT",
            "ads",
            "SELECT id, redirect_url, text FROM ads WHERE category = ANY($1)",
            1.2,
        );
        let r_products = self.redis("GET", "GET products:all", 0.25);
        let r_product = self.redis("GET", "GET product:?", 0.2);
        let r_cart_get = self.redis("HGETALL", "HGETALL cart:?", 0.3);
        let r_cart_set = self.redis("HSET", "HSET cart:? ? ?", 0.3);
        let r_cart_expire = self.redis("EXPIRE", "EXPIRE cart:? ?", 0.15);
        let r_cart_del = self.redis("DEL", "DEL cart:?", 0.2);

        // product-catalog
        let list_products = self.grpc(
            catalog,
            "ListProducts",
            1.5,
            0.006,
            vec![call(r_products), call(q_products).prob(0.3)],
        );
        let get_product = self.grpc(
            catalog,
            "GetProduct",
            0.8,
            0.006,
            vec![call(r_product), call(q_product).prob(0.2)],
        );
        let search_products =
            self.grpc(catalog, "SearchProducts", 3.0, 0.009, vec![call(q_search)]);
        // cart
        let get_cart = self.grpc(cart, "GetCart", 0.6, 0.006, vec![call(r_cart_get)]);
        let add_item = self.grpc(
            cart,
            "AddItem",
            0.8,
            0.006,
            vec![call(r_cart_set), call(r_cart_expire)],
        );
        let empty_cart = self.grpc(cart, "EmptyCart", 0.5, 0.006, vec![call(r_cart_del)]);
        // recommendation, ad
        let list_recs = self.grpc(
            recommendation,
            "ListRecommendations",
            3.0,
            0.012,
            vec![call(E(list_products))],
        );
        let get_ads = self.grpc(ad, "GetAds", 2.0, 0.012, vec![call(q_ads).prob(0.15)]);
        // payment
        let charge = self.grpc(payment, "Charge", 25.0, 0.018, vec![call(q_insert_payment)]);
        // checkout
        let place_order = self.grpc(
            checkout,
            "PlaceOrder",
            4.0,
            0.009,
            vec![
                call(E(get_cart)),
                call(E(get_product)).repeat(1, 3),
                call(E(charge)),
                call(q_insert_order),
                call(E(empty_cart)),
            ],
        );
        let get_order = self.grpc(checkout, "GetOrder", 1.0, 0.006, vec![call(q_order)]);
        // frontend routes
        self.http(
            frontend,
            "GET",
            "/",
            3.0,
            20,
            true,
            vec![call(E(list_products)), call(E(get_ads)).optional()],
        );
        self.http(
            frontend,
            "GET",
            "/api/products",
            2.0,
            15,
            false,
            vec![call(E(list_products))],
        );
        self.http(
            frontend,
            "GET",
            "/api/products/{id}",
            2.0,
            30,
            true,
            vec![
                call(E(get_product)),
                call(E(list_recs)).optional(),
                call(E(get_ads)).optional().prob(0.7),
            ],
        );
        self.http(
            frontend,
            "GET",
            "/api/search",
            2.0,
            8,
            false,
            vec![call(E(search_products))],
        );
        self.http(
            frontend,
            "GET",
            "/api/cart",
            1.5,
            10,
            false,
            vec![call(E(get_cart))],
        );
        self.http(
            frontend,
            "POST",
            "/api/cart",
            1.5,
            8,
            false,
            vec![call(E(get_product)), call(E(add_item))],
        );
        self.http(
            frontend,
            "POST",
            "/api/checkout",
            4.0,
            4,
            false,
            vec![call(E(place_order))],
        );
        self.http(
            frontend,
            "GET",
            "/api/orders/{id}",
            1.5,
            5,
            false,
            vec![call(E(get_order))],
        );
    }

    /// Grow the shop with extra backend services (tiers 1..=3, calls only go
    /// from tier t to tier t+1, so the call graph stays a DAG) and extra
    /// frontend routes, until there are `services` services and about
    /// `endpoints` endpoints.
    fn extend(&mut self, services: usize, endpoints: usize) {
        const NAMES: [&str; 20] = [
            "inventory",
            "shipping",
            "currency",
            "email",
            "fraud-detection",
            "quote",
            "accounting",
            "notification",
            "review",
            "loyalty",
            "pricing",
            "tax",
            "user",
            "auth",
            "session",
            "search-indexer",
            "warehouse",
            "returns",
            "coupon",
            "analytics-ingest",
        ];
        const LANGS: [&str; 6] = ["go", "java", "python", "dotnet", "nodejs", "rust"];
        const VERBS: [&str; 8] = [
            "Get", "List", "Create", "Update", "Delete", "Validate", "Compute", "Sync",
        ];
        let extra_services = services.saturating_sub(self.services.len());
        if extra_services == 0 {
            return;
        }
        let frontend = 0;
        let extra_endpoints = endpoints
            .saturating_sub(self.endpoints.len())
            .max(extra_services + 1);
        let fe_routes = (extra_endpoints / 10).max(1);
        let svc_endpoints = (extra_endpoints - fe_routes).max(extra_services);

        // Services and their endpoints (calls filled in afterwards).
        let mut tiers: [Vec<usize>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for i in 0..extra_services {
            let name = match NAMES.get(i) {
                Some(n) => (*n).to_owned(),
                None => format!("service-{i}"),
            };
            let lang = LANGS[i % LANGS.len()];
            let version = format!(
                "1.{}.{}",
                self.rng.random_range(0..20),
                self.rng.random_range(0..10)
            );
            let port = 8000 + i64::try_from(i).unwrap_or(0);
            let svc = self.service(&name, lang, &version, port);
            let noun = pascal(&name);
            let table = name.replace('-', "_");
            let select_ms = self.rng.random_range(0.5..3.0);
            let update_ms = self.rng.random_range(1.0..4.0);
            let q_select = self.pg(
                "SELECT",
                &table,
                &format!("SELECT * FROM {table} WHERE id = $1"),
                select_ms,
            );
            let q_update = self.pg(
                "UPDATE",
                &table,
                &format!("UPDATE {table} SET data = $2, updated_at = now() WHERE id = $1"),
                update_ms,
            );
            let r_get = self.redis("GET", &format!("GET {table}:?"), 0.2);
            let count =
                svc_endpoints / extra_services + usize::from(i < svc_endpoints % extra_services);
            let tier = i % 3;
            for k in 0..count {
                let verb = VERBS[k % VERBS.len()];
                let method = if k < VERBS.len() {
                    format!("{verb}{noun}")
                } else {
                    format!("{verb}{noun}{}", k / VERBS.len())
                };
                let mut calls = Vec::new();
                if self.rng.random_bool(0.3) {
                    calls.push(call(r_get));
                }
                if self.rng.random_bool(0.5) {
                    let q = if verb == "Update" || verb == "Create" || verb == "Delete" {
                        q_update
                    } else {
                        q_select
                    };
                    calls.push(call(q));
                }
                let self_ms = lognormal(&mut self.rng, 1.5, 0.8).clamp(0.2, 20.0);
                let sigma = self.rng.random_range(0.35..0.8);
                let err = self.rng.random_range(0.002..0.012);
                let kind = EndpointKind::Grpc { method };
                let ep = self.endpoint(svc, kind, self_ms, sigma, err, 0, false, calls);
                tiers[tier].push(ep);
            }
        }

        // Extra frontend routes.
        let mut routes = Vec::with_capacity(fe_routes);
        for k in 0..fe_routes {
            let method = if k % 3 == 2 { "POST" } else { "GET" };
            let kind = EndpointKind::Http {
                method,
                route: String::new(), // named below once its callees are known
            };
            let self_ms = self.rng.random_range(1.0..3.0);
            let ep = self.endpoint(
                frontend,
                kind,
                self_ms,
                0.45,
                0.005,
                3,
                k % 2 == 0,
                Vec::new(),
            );
            routes.push(ep);
        }
        // Wire the call graph: each endpoint gets one caller one tier up.
        for tier in (0..3).rev() {
            let callers: Vec<usize> = if tier == 0 {
                routes.clone()
            } else {
                tiers[tier - 1].clone()
            };
            if callers.is_empty() {
                continue;
            }
            for &ep in &tiers[tier] {
                let caller = callers[self.rng.random_range(0..callers.len())];
                let mut c = call(Target::Endpoint(ep));
                if self.rng.random_bool(0.2) {
                    c = c.optional();
                }
                if self.rng.random_bool(0.25) {
                    c = c.prob(0.5);
                }
                self.endpoints[caller].calls.push(c);
            }
        }
        for (k, &ep) in routes.iter().enumerate() {
            let first = self.endpoints[ep]
                .calls
                .iter()
                .find_map(|c| match c.target {
                    Target::Endpoint(t) => {
                        Some(self.services[self.endpoints[t].service].name.clone())
                    }
                    Target::Db(_) => None,
                });
            let route = format!("/api/{}/{}", first.unwrap_or_else(|| "misc".to_owned()), k);
            let e = &mut self.endpoints[ep];
            if let EndpointKind::Http { method, route: r } = &mut e.kind {
                e.name = format!("{method} {route}");
                *r = route;
            }
        }
    }

    fn finish(self) -> Model {
        let mut endpoints = self.endpoints;
        let mut memo: Vec<Option<f64>> = vec![None; endpoints.len()];
        for i in 0..endpoints.len() {
            total_ms(&endpoints, &self.db_ops, &mut memo, i, 0);
        }
        for (ep, total) in endpoints.iter_mut().zip(memo) {
            ep.total_ms = total.unwrap_or(ep.self_ms);
        }
        let mut roots = Vec::new();
        let mut cumulative = 0u32;
        if let Some(frontend) = self.services.first() {
            for &ep in &frontend.endpoints {
                if endpoints[ep].weight > 0 {
                    cumulative += endpoints[ep].weight;
                    roots.push((cumulative, ep));
                }
            }
        }
        Model {
            services: self.services,
            instances: self.instances,
            endpoints,
            db_ops: self.db_ops,
            roots,
        }
    }
}

/// Typical end-to-end latency of an endpoint (memoised over the DAG).
fn total_ms(
    endpoints: &[EndpointDef],
    db_ops: &[DbOp],
    memo: &mut [Option<f64>],
    ep: usize,
    depth: usize,
) -> f64 {
    if let Some(v) = memo[ep] {
        return v;
    }
    let def = &endpoints[ep];
    if depth > 32 {
        return def.self_ms;
    }
    let mut seq = 0.0;
    let mut par: f64 = 0.0;
    for c in &def.calls {
        let reps = (f64::from(c.min_repeat) + f64::from(c.max_repeat)) / 2.0;
        let t = match c.target {
            Target::Endpoint(t) => total_ms(endpoints, db_ops, memo, t, depth + 1) + 0.5,
            Target::Db(d) => db_ops[d].median_ms,
        };
        seq += c.prob * reps * t;
        par = par.max(t);
    }
    let v = def.self_ms + if def.parallel { par } else { seq };
    memo[ep] = Some(v);
    v
}

/// Whether `name` names the endpoint: its HTTP route, `rpc.service/rpc.method` or span name.
fn endpoint_is(ep: &EndpointDef, svc: &ServiceDef, name: &str) -> bool {
    ep.name == name
        || match &ep.kind {
            EndpointKind::Http { route, .. } => route == name,
            EndpointKind::Grpc { method } => {
                name.split_once('/') == Some((svc.rpc_service.as_str(), method.as_str()))
            }
        }
}

impl Model {
    fn pick_root(&self, rng: &mut SmallRng) -> Option<usize> {
        let total = self.roots.last()?.0;
        let r = rng.random_range(0..total);
        let i = self.roots.partition_point(|&(c, _)| c <= r);
        self.roots.get(i).map(|&(_, ep)| ep)
    }
}

// ---------------------------------------------------------------------------
// Trace generation
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fail {
    None,
    /// gRPC UNAVAILABLE (14) / HTTP 503.
    Unavailable,
    /// gRPC INTERNAL (13) / HTTP 500.
    Internal,
}

impl Fail {
    fn grpc_code(self) -> i64 {
        match self {
            Fail::None => 0,
            Fail::Unavailable => 14,
            Fail::Internal => 13,
        }
    }
    fn grpc_name(self) -> &'static str {
        match self {
            Fail::None => "OK",
            Fail::Unavailable => "UNAVAILABLE",
            Fail::Internal => "INTERNAL",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum LogKind {
    Request { status: i64, duration_ns: u64 },
    Error { fail: Fail },
}

/// A span worth a log line, remembered for [`Topology::logs_request`].
#[derive(Clone, Copy, Debug)]
struct LogCandidate {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    instance: usize,
    endpoint: usize,
    time: u64,
    kind: LogKind,
}

const LOG_CANDIDATES: usize = 512;

struct TraceBuilder<'a> {
    model: &'a Model,
    faults: &'a ActiveFaults,
    served: &'a mut [u64],
    rng: &'a mut SmallRng,
    out: &'a mut [Vec<Span>],
    logs: &'a mut VecDeque<LogCandidate>,
    trace_id: [u8; 16],
    spans: usize,
}

fn error_status(message: &str) -> Option<Status> {
    Some(Status {
        message: message.to_owned(),
        code: status::StatusCode::Error as i32,
    })
}

impl TraceBuilder<'_> {
    fn push(&mut self, instance: usize, scope: ScopeKind, span: Span) {
        self.spans += 1;
        self.out[instance * SCOPE_COUNT + scope as usize].push(span);
    }

    fn remember(&mut self, candidate: LogCandidate) {
        if self.logs.len() >= LOG_CANDIDATES {
            self.logs.pop_front();
        }
        self.logs.push_back(candidate);
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
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
    fn server(&mut self, ep_idx: usize, parent: Option<[u8; 8]>, start: u64) -> (u64, Fail) {
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
    fn call(
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

    fn call_rpc(
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

    fn call_db(
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

// ---------------------------------------------------------------------------
// Metrics state
// ---------------------------------------------------------------------------

/// Cumulative state of one (instance, endpoint, outcome) series.
#[derive(Clone, Debug, Default)]
struct HistState {
    count: u64,
    sum_s: f64,
    min_s: f64,
    max_s: f64,
    buckets: [u64; HTTP_DURATION_BOUNDS.len() + 1],
    exp_zero: u64,
    exp_offset: i32,
    exp_counts: Vec<u64>,
}

impl HistState {
    fn record(&mut self, seconds: f64) {
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
struct MetricsState {
    start: u64,
    /// Per instance, per endpoint of its service: [ok, error].
    series: Vec<Vec<[HistState; 2]>>,
    cpu: Vec<f64>,
}

// ---------------------------------------------------------------------------
// Faults (public)
// ---------------------------------------------------------------------------

/// Trouble injected into the generated traffic: the demo's deploys and incidents, and the
/// faults root-cause analysis must find. Set with [`Topology::set_faults`]; they hold until
/// the next call.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Every baseline failure probability (endpoints and databases) times `factor`: 0.1 makes
    /// the shop ten times healthier.
    ErrorScale(f64),
    /// `service` (running `version`, when given: a release) does its own work
    /// `latency_factor` times as slowly, and its `endpoint` (HTTP route,
    /// `rpc.service/rpc.method` or span name; all of them when `None`) also fails with
    /// probability `error_prob`.
    Service {
        service: String,
        version: Option<String>,
        latency_factor: f64,
        error_prob: f64,
        endpoint: Option<String>,
    },
    /// The `instance`-th instance (pod) of `service` takes `latency_factor` times as long.
    SlowInstance {
        service: String,
        instance: usize,
        latency_factor: f64,
    },
    /// Calls to a database (`db.system`: `postgresql` or `redis`) fail with `error_prob`; the
    /// failure propagates to every caller that needs the answer.
    Database { system: String, error_prob: f64 },
}

/// [`Fault`]s resolved against the model's indices, read on every generated span.
#[derive(Clone, Debug)]
struct ActiveFaults {
    error_scale: f64,
    service_latency: Vec<f64>,
    instance_latency: Vec<f64>,
    endpoint_error: Vec<f64>,
    db_error: Vec<Option<f64>>,
}

impl ActiveFaults {
    fn none(model: &Model) -> Self {
        ActiveFaults {
            error_scale: 1.0,
            service_latency: vec![1.0; model.services.len()],
            instance_latency: vec![1.0; model.instances.len()],
            endpoint_error: vec![0.0; model.endpoints.len()],
            db_error: vec![None; model.db_ops.len()],
        }
    }

    fn endpoint_error_prob(&self, ep_idx: usize, base: f64) -> f64 {
        (base * self.error_scale + self.endpoint_error[ep_idx]).clamp(0.0, 1.0)
    }

    fn db_error_prob(&self, op_idx: usize, base: f64) -> f64 {
        self.db_error[op_idx]
            .unwrap_or(base * self.error_scale)
            .clamp(0.0, 1.0)
    }
}

fn check_probability(what: &str, p: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("{what} must be a probability in [0, 1], got {p}"))
    }
}

fn check_factor(what: &str, f: f64) -> Result<(), String> {
    if f.is_finite() && f > 0.0 {
        Ok(())
    } else {
        Err(format!("{what} must be a positive number, got {f}"))
    }
}

// ---------------------------------------------------------------------------
// Topology (public)
// ---------------------------------------------------------------------------

/// Simulated topology: frontend → checkout → payment, cart,
/// product-catalog, recommendation, ad, with a postgresql database
/// (`db.system`) and a redis cache as leaf CLIENT calls; optionally grown
/// with extra services/endpoints for big benchmarks ([`Topology::with_size`]).
///
/// Everything is derived from the seed, so two topologies built with the same
/// seed (and size) have the same services, instance ids and pods.
#[derive(Clone)]
pub struct Topology {
    model: Model,
    faults: ActiveFaults,
    /// Each service's version as built, restored when a release ends.
    versions: Vec<String>,
    rng: SmallRng,
    logs: VecDeque<LogCandidate>,
    metrics: Option<MetricsState>,
    /// Server spans per instance since the last [`Topology::cpu_request`].
    served: Vec<u64>,
    cpu: Option<CpuState>,
}

/// What [`Topology::cpu_request`] keeps between calls.
#[derive(Clone, Debug)]
struct CpuState {
    first: u64,
    last: u64,
    total: Vec<u64>,
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

    fn from_model(model: Model, seed: u64) -> Self {
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
    fn generate(
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

fn cpu_metric(time_unix_nano: u64, utilization: f64) -> Metric {
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

fn process_scope(metrics: Vec<Metric>) -> ScopeMetrics {
    ScopeMetrics {
        scope: Some(scope("opentelemetry.instrumentation.process", "0.1.0")),
        metrics,
        schema_url: SCHEMA_URL.to_owned(),
    }
}

fn http_metric_attrs(svc: &ServiceDef, ep: &EndpointDef, err: bool) -> Vec<KeyValue> {
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

// ---------------------------------------------------------------------------
// Pre-encoded request pool
// ---------------------------------------------------------------------------

/// A prost-encoded traces request plus the byte offsets of every id and
/// timestamp in it, so copies can be made unique and current cheaply.
#[derive(Clone, Debug)]
struct Template {
    bytes: Bytes,
    trace_ids: Vec<u32>,
    span_ids: Vec<u32>,
    times: Vec<u32>,
    max_time: u64,
    spans: u64,
}

impl Template {
    fn new(req: &ExportTraceServiceRequest) -> Result<Self, LoadgenError> {
        let bytes = req.encode_to_vec();
        let mut t = Template {
            bytes: Bytes::new(),
            trace_ids: Vec::new(),
            span_ids: Vec::new(),
            times: Vec::new(),
            max_time: 0,
            spans: span_count(req),
        };
        if u32::try_from(bytes.len()).is_err() {
            return Err(LoadgenError::Encode("request larger than 4 GiB".to_owned()));
        }
        scan_request(&bytes, &mut t)
            .ok_or_else(|| LoadgenError::Encode("could not walk the encoded request".to_owned()))?;
        t.max_time = t
            .times
            .iter()
            .map(|&o| read_fixed64(&bytes, o as usize))
            .max()
            .unwrap_or(0);
        t.bytes = Bytes::from(bytes);
        Ok(t)
    }

    /// A copy with fresh ids (XOR with a random salt: consistent parent
    /// links, still unique) whose newest timestamp is `now_unix_nano`.
    fn instantiate(&self, now_unix_nano: u64, rng: &mut SmallRng) -> Bytes {
        let mut buf = self.bytes.to_vec();
        let trace_salt: [u8; 16] = rng.random();
        let span_salt: [u8; 8] = rng.random();
        for &o in &self.trace_ids {
            let o = o as usize;
            for (b, s) in buf[o..o + 16].iter_mut().zip(trace_salt) {
                *b ^= s;
            }
        }
        for &o in &self.span_ids {
            let o = o as usize;
            for (b, s) in buf[o..o + 8].iter_mut().zip(span_salt) {
                *b ^= s;
            }
        }
        let delta = (i128::from(now_unix_nano) - i128::from(self.max_time))
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        for &o in &self.times {
            let o = o as usize;
            let v = read_fixed64(&buf, o).wrapping_add_signed(delta);
            buf[o..o + 8].copy_from_slice(&v.to_le_bytes());
        }
        Bytes::from(buf)
    }
}

fn read_fixed64(buf: &[u8], offset: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&buf[offset..offset + 8]);
    u64::from_le_bytes(a)
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift >= 64 {
            return None;
        }
    }
}

/// Walk the fields of the message in `buf[start..end]`, calling
/// `f(field_number, wire_type, value_start, value_end)` for each.
fn walk_fields(
    buf: &[u8],
    start: usize,
    end: usize,
    mut f: impl FnMut(u64, u8, usize, usize) -> Option<()>,
) -> Option<()> {
    let mut pos = start;
    while pos < end {
        let key = read_varint(buf, &mut pos)?;
        let field = key >> 3;
        let wire = (key & 7) as u8;
        let value_start;
        match wire {
            0 => {
                value_start = pos;
                read_varint(buf, &mut pos)?;
            }
            1 => {
                value_start = pos;
                pos = pos.checked_add(8)?;
            }
            2 => {
                let len = usize::try_from(read_varint(buf, &mut pos)?).ok()?;
                value_start = pos;
                pos = pos.checked_add(len)?;
            }
            5 => {
                value_start = pos;
                pos = pos.checked_add(4)?;
            }
            _ => return None,
        }
        if pos > end {
            return None;
        }
        f(field, wire, value_start, pos)?;
    }
    Some(())
}

fn offset32(o: usize) -> Option<u32> {
    u32::try_from(o).ok()
}

fn scan_request(buf: &[u8], t: &mut Template) -> Option<()> {
    // ExportTraceServiceRequest.resource_spans = 1
    walk_fields(buf, 0, buf.len(), |field, wire, s, e| {
        if field == 1 && wire == 2 {
            // ResourceSpans.scope_spans = 2
            walk_fields(buf, s, e, |field, wire, s, e| {
                if field == 2 && wire == 2 {
                    // ScopeSpans.spans = 2
                    walk_fields(buf, s, e, |field, wire, s, e| {
                        if field == 2 && wire == 2 {
                            scan_span(buf, s, e, t)?;
                        }
                        Some(())
                    })?;
                }
                Some(())
            })?;
        }
        Some(())
    })
}

fn scan_span(buf: &[u8], start: usize, end: usize, t: &mut Template) -> Option<()> {
    walk_fields(buf, start, end, |field, wire, s, e| {
        match (field, wire, e - s) {
            // trace_id = 1
            (1, 2, 16) => t.trace_ids.push(offset32(s)?),
            // span_id = 2, parent_span_id = 4
            (2 | 4, 2, 8) => t.span_ids.push(offset32(s)?),
            // start_time_unix_nano = 7, end_time_unix_nano = 8 (fixed64)
            (7 | 8, 1, 8) => t.times.push(offset32(s)?),
            // events = 11: Event.time_unix_nano = 1 (fixed64)
            (11, 2, _) => walk_fields(buf, s, e, |field, wire, s, _| {
                if field == 1 && wire == 1 {
                    t.times.push(offset32(s)?);
                }
                Some(())
            })?,
            // links = 13: Link.trace_id = 1, Link.span_id = 2
            (13, 2, _) => walk_fields(buf, s, e, |field, wire, s, e| {
                match (field, wire, e - s) {
                    (1, 2, 16) => t.trace_ids.push(offset32(s)?),
                    (2, 2, 8) => t.span_ids.push(offset32(s)?),
                    _ => {}
                }
                Some(())
            })?,
            _ => {}
        }
        Some(())
    })
}

/// Keep pre-encoded pools within roughly this many spans of memory.
const POOL_SPAN_BUDGET: usize = 65_536;
const POOL_MAX_REQUESTS: usize = 64;
const POOL_MIN_REQUESTS: usize = 4;

fn build_pool(topo: &mut Topology, batch: usize, base: u64) -> Result<Vec<Template>, LoadgenError> {
    let n = (POOL_SPAN_BUDGET / batch.max(1)).clamp(POOL_MIN_REQUESTS, POOL_MAX_REQUESTS);
    (0..n)
        .map(|_| Template::new(&topo.traces_request(batch, base)))
        .collect()
}

// ---------------------------------------------------------------------------
// gRPC codec for pre-encoded bytes
// ---------------------------------------------------------------------------

/// Sends already-encoded protobuf bytes and decodes a prost response, so the
/// pooled requests are not decoded/re-encoded per send.
struct RawCodec<R>(PhantomData<fn() -> R>);

struct RawEncoder;

struct ProstDecoder<R>(PhantomData<fn() -> R>);

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

// ---------------------------------------------------------------------------
// CLI arguments, report, errors
// ---------------------------------------------------------------------------

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

/// `headroom loadgen` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// OTLP endpoint: `http://host:4317` for gRPC, the base URL (`http://host:4318`) for HTTP.
    #[arg(
        long,
        env = "HEADROOM_LOADGEN_ENDPOINT",
        default_value = "http://127.0.0.1:4317"
    )]
    pub endpoint: String,
    /// Wire protocol.
    #[arg(long, env = "HEADROOM_LOADGEN_PROTOCOL", value_enum, default_value_t = Protocol::Grpc)]
    pub protocol: Protocol,
    /// Target spans per second; 0 sends as fast as possible.
    #[arg(long, env = "HEADROOM_LOADGEN_RATE", default_value_t = 10_000)]
    pub rate: u64,
    /// How long to send for.
    #[arg(long, env = "HEADROOM_LOADGEN_DURATION_SECONDS", default_value_t = 10)]
    pub duration_seconds: u64,
    /// Maximum spans per request (smaller at low rates, so at least ~10 requests/s go out).
    #[arg(long, env = "HEADROOM_LOADGEN_BATCH_SPANS", default_value_t = 512)]
    pub batch_spans: usize,
    /// Concurrent in-flight trace requests.
    #[arg(long, env = "HEADROOM_LOADGEN_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
    /// Also send one metrics request per second (`--metrics=false` to disable).
    #[arg(
        long,
        env = "HEADROOM_LOADGEN_METRICS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub metrics: bool,
    /// Seed of the simulated topology (services, instances, traffic mix).
    #[arg(long, env = "HEADROOM_LOADGEN_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Retries of a request the server refused as retryable (OTLP: gRPC UNAVAILABLE, or
    /// RESOURCE_EXHAUSTED with RetryInfo; HTTP 429, 502, 503, 504), after the delay the server
    /// asked for. 0 counts every refusal as an error.
    #[arg(long, env = "HEADROOM_LOADGEN_MAX_RETRIES", default_value_t = 5)]
    pub max_retries: u32,
    /// Services of the simulated shop; more than its own 7 grow it with backend tiers.
    #[arg(long, env = "HEADROOM_LOADGEN_SERVICES", default_value_t = 0)]
    pub services: usize,
    /// Server endpoints of the simulated shop, about; more than its own 19 add routes and
    /// methods.
    #[arg(long, env = "HEADROOM_LOADGEN_ENDPOINTS", default_value_t = 0)]
    pub endpoints: usize,
    /// Instead of live traffic, write this many days of history ending now, at `--rate` spans
    /// per second on average (the demo's daily and weekly cycle and its incidents), as fast as
    /// the server acknowledges it (OTLP/gRPC).
    #[arg(long, env = "HEADROOM_LOADGEN_HISTORY_DAYS", default_value_t = 0.0)]
    pub history_days: f64,
}

impl Default for LoadgenArgs {
    fn default() -> Self {
        LoadgenArgs {
            endpoint: "http://127.0.0.1:4317".to_owned(),
            protocol: Protocol::Grpc,
            rate: 10_000,
            duration_seconds: 10,
            batch_spans: 512,
            concurrency: 4,
            metrics: true,
            seed: 42,
            max_retries: 5,
            services: 0,
            endpoints: 0,
            history_days: 0.0,
        }
    }
}

/// What the load generator sent and what the server acknowledged.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadgenReport {
    /// Trace and metrics requests attempted.
    pub requests_sent: u64,
    /// Requests answered with success (2xx / gRPC OK).
    pub requests_acked: u64,
    pub spans_sent: u64,
    /// Spans in acknowledged requests minus `partial_success.rejected_spans`.
    pub spans_acked: u64,
    /// Sum of `partial_success.rejected_spans`.
    pub spans_rejected: u64,
    pub metric_points_sent: u64,
    /// Data points in acknowledged requests minus rejected ones.
    pub metric_points_acked: u64,
    /// Failed requests (transport errors, non-2xx, gRPC non-OK), after any retries.
    pub errors: u64,
    /// Attempts repeated because the server asked for a retry.
    pub retries: u64,
    pub elapsed: Duration,
    /// Ack latency percentiles over all successful requests.
    pub ack_latency_p50_ms: f64,
    pub ack_latency_p99_ms: f64,
    pub ack_latency_max_ms: f64,
}

impl LoadgenReport {
    /// Acknowledged spans per second of wall-clock time.
    pub fn spans_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.spans_acked as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for LoadgenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "loadgen: {:.0} spans/s acknowledged over {:.2} s",
            self.spans_per_second(),
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  requests: {} sent, {} acked, {} errors, {} retries",
            self.requests_sent, self.requests_acked, self.errors, self.retries
        )?;
        writeln!(
            f,
            "  spans:    {} sent, {} acked, {} rejected",
            self.spans_sent, self.spans_acked, self.spans_rejected
        )?;
        writeln!(
            f,
            "  metrics:  {} points sent, {} acked",
            self.metric_points_sent, self.metric_points_acked
        )?;
        write!(
            f,
            "  ack latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.ack_latency_p50_ms, self.ack_latency_p99_ms, self.ack_latency_max_ms
        )
    }
}

/// Load generator failures.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("invalid loadgen arguments: {0}")]
    InvalidArgs(String),
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("could not build the HTTP client: {0}")]
    HttpClient(String),
    #[error("could not pre-encode the request pool: {0}")]
    Encode(String),
    #[error("every request to {endpoint} failed ({errors} errors); last error: {last_error}")]
    AllFailed {
        endpoint: String,
        errors: u64,
        last_error: String,
    },
    #[error("a load generator task failed: {0}")]
    Task(String),
}

// ---------------------------------------------------------------------------
// Transport
// ---------------------------------------------------------------------------

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait before a retry, whatever the server asks.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// A failed export: what went wrong, and when to try again if the failure is retryable.
#[derive(Debug)]
struct SendError {
    message: String,
    retry_after: Option<Duration>,
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
struct Retry {
    attempt: u32,
    max_retries: u32,
}

impl Retry {
    fn new(max_retries: u32) -> Self {
        Retry {
            attempt: 0,
            max_retries,
        }
    }

    /// After a failed attempt: waits and returns `Ok` if the request should be sent again (the
    /// delay the server asked for, at least an exponential backoff), or returns the error.
    async fn wait(&mut self, e: SendError) -> Result<(), String> {
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
enum Transport {
    Grpc(Channel),
    Http {
        client: reqwest::Client,
        traces_url: Arc<str>,
        metrics_url: Arc<str>,
    },
}

fn normalize_endpoint(endpoint: &str) -> Result<String, LoadgenError> {
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
    fn new(protocol: Protocol, endpoint: &str) -> Result<Self, LoadgenError> {
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

    fn trace_sender(&self) -> TraceSender {
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
    async fn send_metrics(&self, req: ExportMetricsServiceRequest) -> Result<i64, SendError> {
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
    transport: Transport,
    max_retries: u32,
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

enum TraceSender {
    Grpc(tonic::client::Grpc<Channel>),
    Http {
        client: reqwest::Client,
        url: Arc<str>,
    },
}

impl TraceSender {
    /// Send an encoded traces request; Ok(rejected spans).
    async fn send(&mut self, body: Bytes) -> Result<i64, SendError> {
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
fn error_chain(e: &dyn std::error::Error) -> String {
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
fn grpc_error(status: &tonic::Status) -> SendError {
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
async fn http_post<R: Message + Default>(
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

// ---------------------------------------------------------------------------
// Runner
// ---------------------------------------------------------------------------

struct Stats {
    requests_sent: u64,
    requests_acked: u64,
    spans_sent: u64,
    spans_acked: u64,
    spans_rejected: u64,
    metric_points_sent: u64,
    metric_points_acked: u64,
    errors: u64,
    retries: u64,
    last_error: Option<String>,
    /// Ack latency in microseconds.
    latency: Histogram<u64>,
}

impl Stats {
    fn new() -> Result<Self, LoadgenError> {
        let latency = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .map_err(|e| LoadgenError::Task(format!("latency histogram: {e}")))?;
        Ok(Stats {
            requests_sent: 0,
            requests_acked: 0,
            spans_sent: 0,
            spans_acked: 0,
            spans_rejected: 0,
            metric_points_sent: 0,
            metric_points_acked: 0,
            errors: 0,
            retries: 0,
            last_error: None,
            latency,
        })
    }

    fn record_latency(&mut self, since: tokio::time::Instant) {
        let us = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(us.max(1));
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        tracing::debug!(error = %e, "loadgen request failed");
        self.last_error = Some(e);
    }

    fn merge(&mut self, o: Stats) {
        self.requests_sent += o.requests_sent;
        self.requests_acked += o.requests_acked;
        self.spans_sent += o.spans_sent;
        self.spans_acked += o.spans_acked;
        self.spans_rejected += o.spans_rejected;
        self.metric_points_sent += o.metric_points_sent;
        self.metric_points_acked += o.metric_points_acked;
        self.errors += o.errors;
        self.retries += o.retries;
        // Keep the first error seen (trace workers are merged first).
        if self.last_error.is_none() {
            self.last_error = o.last_error;
        }
        if let Err(e) = self.latency.add(&o.latency) {
            tracing::warn!(error = %e, "could not merge latency histograms");
        }
    }
}

/// Spans per request: `batch_spans`, but smaller at low rates so that at
/// least ~10 requests per second go out (smooth traffic for the demo).
fn effective_batch(batch_spans: usize, rate: u64) -> usize {
    if rate == 0 {
        return batch_spans;
    }
    let per_tick = usize::try_from(rate / 10).unwrap_or(usize::MAX).max(1);
    batch_spans.min(per_tick)
}

struct Schedule {
    start: tokio::time::Instant,
    deadline: tokio::time::Instant,
    /// Nanoseconds between consecutive requests (0 = unpaced).
    interval_ns: u64,
    next: AtomicU64,
}

async fn trace_worker(
    pool: Arc<Vec<Template>>,
    mut sender: TraceSender,
    schedule: Arc<Schedule>,
    max_retries: u32,
    mut stats: Stats,
) -> Stats {
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    loop {
        let n = schedule.next.fetch_add(1, Ordering::Relaxed);
        if schedule.interval_ns > 0 {
            let at = schedule.start + Duration::from_nanos(schedule.interval_ns.saturating_mul(n));
            if at >= schedule.deadline {
                break;
            }
            tokio::time::sleep_until(at).await;
        } else if tokio::time::Instant::now() >= schedule.deadline {
            break;
        }
        let Some(template) = pool.get(usize::try_from(n).unwrap_or(0) % pool.len().max(1)) else {
            break;
        };
        let body = template.instantiate(now_unix_nano(), &mut rng);
        stats.requests_sent += 1;
        stats.spans_sent += template.spans;
        let sent_at = tokio::time::Instant::now();
        let mut retry = Retry::new(max_retries);
        let sent = loop {
            match sender.send(body.clone()).await {
                Ok(rejected) => break Ok(rejected),
                Err(e) => {
                    if let Err(e) = retry.wait(e).await {
                        break Err(e);
                    }
                }
            }
        };
        stats.retries += u64::from(retry.attempt);
        match sent {
            Ok(rejected) => {
                stats.record_latency(sent_at);
                let rejected = u64::try_from(rejected.max(0))
                    .unwrap_or(0)
                    .min(template.spans);
                stats.requests_acked += 1;
                stats.spans_rejected += rejected;
                stats.spans_acked += template.spans - rejected;
            }
            Err(e) => {
                stats.error(e);
                if tokio::time::Instant::now() + ERROR_BACKOFF < schedule.deadline {
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            }
        }
    }
    stats
}

async fn metrics_worker(
    mut topo: Topology,
    transport: Transport,
    deadline: tokio::time::Instant,
    max_retries: u32,
    mut stats: Stats,
) -> Stats {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let req = topo.metrics_request(now_unix_nano());
        let points = metric_point_count(&req);
        stats.requests_sent += 1;
        stats.metric_points_sent += points;
        let sent_at = tokio::time::Instant::now();
        let mut retry = Retry::new(max_retries);
        let sent = loop {
            match transport.send_metrics(req.clone()).await {
                Ok(rejected) => break Ok(rejected),
                Err(e) => {
                    if let Err(e) = retry.wait(e).await {
                        break Err(e);
                    }
                }
            }
        };
        stats.retries += u64::from(retry.attempt);
        match sent {
            Ok(rejected) => {
                stats.record_latency(sent_at);
                let rejected = u64::try_from(rejected.max(0)).unwrap_or(0).min(points);
                stats.requests_acked += 1;
                stats.metric_points_acked += points - rejected;
            }
            Err(e) => stats.error(e),
        }
    }
    stats
}

/// Run the load generator as configured and report what was sent and acked.
///
/// Before the clock starts, a pool of up to 64 traces requests is generated
/// and prost-encoded; during the run they are re-sent round-robin, each copy
/// with fresh ids and current timestamps (see the module docs). With
/// `rate > 0` requests are paced on a shared schedule across `concurrency`
/// tasks (a slow server turns it into a closed loop limited by
/// `concurrency`); with `rate == 0` every task sends back to back. Requests
/// the server refuses as retryable are retried up to `max_retries` times, as an
/// OTLP exporter would; other failures are counted. If every request failed,
/// the error names the endpoint.
/// `--history-days`: the demo's scenario over the past days, at `--rate` spans per second.
pub async fn history(args: &LoadgenArgs) -> Result<crate::demo::BackfillReport, LoadgenError> {
    if !(args.history_days > 0.0 && args.history_days <= 366.0) || args.rate == 0 {
        return Err(LoadgenError::InvalidArgs(
            "--history-days must be in (0, 366] with a --rate above 0".to_owned(),
        ));
    }
    let endpoint = normalize_endpoint(&args.endpoint)?;
    let to = now_unix_nano() as i64;
    let from = to - (args.history_days * 86_400e9) as i64;
    let topo = Topology::with_size(args.seed, args.services, args.endpoints);
    let scenario = crate::demo::Scenario::new(args.rate as f64, from, to);
    let progress = indicatif::ProgressBar::hidden();
    let concurrency = args.concurrency;
    let (_, report) =
        crate::demo::backfill(topo, scenario, &endpoint, from, to, concurrency, &progress)
            .await
            .map_err(|e| LoadgenError::Task(e.to_string()))?;
    Ok(report)
}

pub async fn run(args: &LoadgenArgs) -> Result<LoadgenReport, LoadgenError> {
    if args.batch_spans == 0 {
        return Err(LoadgenError::InvalidArgs(
            "--batch-spans must be > 0".to_owned(),
        ));
    }
    if args.concurrency == 0 {
        return Err(LoadgenError::InvalidArgs(
            "--concurrency must be > 0".to_owned(),
        ));
    }
    let endpoint = normalize_endpoint(&args.endpoint)?;
    let transport = Transport::new(args.protocol, &endpoint)?;
    let batch = effective_batch(args.batch_spans, args.rate);
    let seed = args.seed;

    let (services, endpoints) = (args.services, args.endpoints);
    let pool = tokio::task::spawn_blocking(move || {
        let mut topo = Topology::with_size(seed, services, endpoints);
        build_pool(&mut topo, batch, now_unix_nano())
    })
    .await
    .map_err(|e| LoadgenError::Task(e.to_string()))??;
    let avg_spans = pool.iter().map(|t| t.spans).sum::<u64>() as f64 / pool.len().max(1) as f64;
    let interval_ns = if args.rate == 0 {
        0
    } else {
        ((avg_spans * 1e9 / args.rate as f64) as u64).max(1)
    };
    let pool = Arc::new(pool);
    tracing::info!(
        endpoint = %endpoint,
        protocol = %args.protocol,
        rate = args.rate,
        batch,
        pool = pool.len(),
        "loadgen starting"
    );

    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_secs(args.duration_seconds);
    let schedule = Arc::new(Schedule {
        start,
        deadline,
        interval_ns,
        next: AtomicU64::new(0),
    });
    let mut handles = Vec::with_capacity(args.concurrency + 1);
    for _ in 0..args.concurrency {
        handles.push(tokio::spawn(trace_worker(
            pool.clone(),
            transport.trace_sender(),
            schedule.clone(),
            args.max_retries,
            Stats::new()?,
        )));
    }
    if args.metrics {
        handles.push(tokio::spawn(metrics_worker(
            Topology::new(seed),
            transport.clone(),
            deadline,
            args.max_retries,
            Stats::new()?,
        )));
    }
    let mut total = Stats::new()?;
    for h in handles {
        total.merge(h.await.map_err(|e| LoadgenError::Task(e.to_string()))?);
    }
    let elapsed = start.elapsed();

    if total.requests_sent > 0 && total.requests_acked == 0 {
        return Err(LoadgenError::AllFailed {
            endpoint,
            errors: total.errors,
            last_error: total.last_error.unwrap_or_default(),
        });
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let has_latency = !total.latency.is_empty();
    Ok(LoadgenReport {
        requests_sent: total.requests_sent,
        requests_acked: total.requests_acked,
        spans_sent: total.spans_sent,
        spans_acked: total.spans_acked,
        spans_rejected: total.spans_rejected,
        metric_points_sent: total.metric_points_sent,
        metric_points_acked: total.metric_points_acked,
        errors: total.errors,
        retries: total.retries,
        elapsed,
        ack_latency_p50_ms: if has_latency {
            ms(total.latency.value_at_quantile(0.5))
        } else {
            0.0
        },
        ack_latency_p99_ms: if has_latency {
            ms(total.latency.value_at_quantile(0.99))
        } else {
            0.0
        },
        ack_latency_max_ms: if has_latency {
            ms(total.latency.max())
        } else {
            0.0
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::{HashMap, HashSet};

    use clap::Parser;

    use super::*;

    const T0: u64 = 1_700_000_000_000_000_000;

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    fn attr_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
        match attr(attrs, key) {
            Some(any_value::Value::IntValue(i)) => Some(*i),
            _ => None,
        }
    }

    /// (service name, span) for every span of a request.
    fn flatten(req: &ExportTraceServiceRequest) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        for rs in &req.resource_spans {
            let res = rs.resource.as_ref().unwrap();
            let svc = attr_str(&res.attributes, "service.name")
                .unwrap()
                .to_owned();
            for ss in &rs.scope_spans {
                assert!(ss.scope.is_some());
                for s in &ss.spans {
                    out.push((svc.clone(), s.clone()));
                }
            }
        }
        out
    }

    /// Checks every structural invariant of generated traces; returns
    /// (spans, error spans).
    fn check_traces(req: &ExportTraceServiceRequest) -> (usize, usize) {
        let spans = flatten(req);
        let mut traces: HashMap<Vec<u8>, Vec<&(String, Span)>> = HashMap::new();
        for entry in &spans {
            let s = &entry.1;
            assert_eq!(s.trace_id.len(), 16);
            assert!(s.trace_id.iter().any(|&b| b != 0));
            assert_eq!(s.span_id.len(), 8);
            assert!(s.span_id.iter().any(|&b| b != 0));
            assert!(s.parent_span_id.is_empty() || s.parent_span_id.len() == 8);
            assert!(s.start_time_unix_nano < s.end_time_unix_nano, "{}", s.name);
            assert!(!s.name.is_empty());
            traces.entry(s.trace_id.clone()).or_default().push(entry);
        }
        let mut errors = 0;
        for members in traces.values() {
            let by_id: HashMap<&[u8], &(String, Span)> = members
                .iter()
                .map(|e| (e.1.span_id.as_slice(), *e))
                .collect();
            assert_eq!(by_id.len(), members.len(), "span ids unique within a trace");
            let mut children: HashMap<&[u8], usize> = HashMap::new();
            let mut roots = 0;
            for (svc, s) in members.iter().map(|e| (&e.0, &e.1)) {
                if s.status
                    .as_ref()
                    .is_some_and(|st| st.code == status::StatusCode::Error as i32)
                {
                    errors += 1;
                }
                if s.parent_span_id.is_empty() {
                    roots += 1;
                    assert_eq!(svc, "frontend");
                    assert_eq!(s.kind, span::SpanKind::Server as i32);
                    assert!(attr_str(&s.attributes, "http.route").is_some());
                    assert!(attr_str(&s.attributes, "http.request.method").is_some());
                    assert!(attr_str(&s.attributes, "url.path").is_some());
                    assert!(attr_int(&s.attributes, "http.response.status_code").is_some());
                    continue;
                }
                let (psvc, parent) = by_id
                    .get(s.parent_span_id.as_slice())
                    .map(|e| (&e.0, &e.1))
                    .expect("parent in the same trace");
                *children.entry(parent.span_id.as_slice()).or_default() += 1;
                assert!(
                    s.start_time_unix_nano >= parent.start_time_unix_nano,
                    "{}",
                    s.name
                );
                assert!(
                    s.end_time_unix_nano <= parent.end_time_unix_nano,
                    "{}",
                    s.name
                );
                for ev in &s.events {
                    assert!(ev.time_unix_nano >= s.start_time_unix_nano);
                    assert!(ev.time_unix_nano <= s.end_time_unix_nano);
                }
                if s.kind == span::SpanKind::Server as i32 {
                    // A callee's SERVER span hangs off the caller's CLIENT span.
                    assert_eq!(parent.kind, span::SpanKind::Client as i32);
                    assert_ne!(psvc, svc);
                    assert_eq!(parent.name, s.name);
                    assert_eq!(
                        attr_str(&parent.attributes, "peer.service"),
                        Some(svc.as_str())
                    );
                    assert_eq!(
                        attr_str(&parent.attributes, "server.address"),
                        Some(svc.as_str())
                    );
                    assert_eq!(
                        attr_str(&parent.attributes, "rpc.method"),
                        attr_str(&s.attributes, "rpc.method")
                    );
                    assert_eq!(attr_str(&s.attributes, "rpc.system"), Some("grpc"));
                    assert_eq!(
                        attr_int(&parent.attributes, "rpc.grpc.status_code"),
                        attr_int(&s.attributes, "rpc.grpc.status_code")
                    );
                } else {
                    assert_eq!(s.kind, span::SpanKind::Client as i32);
                    assert_eq!(psvc, svc, "CLIENT spans belong to the caller");
                    assert_eq!(parent.kind, span::SpanKind::Server as i32);
                    assert!(attr_str(&s.attributes, "server.address").is_some());
                    assert!(attr_str(&s.attributes, "peer.service").is_some());
                    if let Some(system) = attr_str(&s.attributes, "db.system") {
                        assert!(system == "postgresql" || system == "redis");
                        assert!(attr_str(&s.attributes, "db.operation.name").is_some());
                        assert!(attr_str(&s.attributes, "db.query.text").is_some());
                        if system == "postgresql" {
                            assert!(attr_str(&s.attributes, "db.collection.name").is_some());
                        }
                    } else {
                        assert_eq!(attr_str(&s.attributes, "rpc.system"), Some("grpc"));
                        assert!(attr_str(&s.attributes, "rpc.service").is_some());
                        assert!(attr_int(&s.attributes, "rpc.grpc.status_code").is_some());
                    }
                }
            }
            assert_eq!(roots, 1, "exactly one root per trace");
            // Every RPC CLIENT span has exactly one SERVER child.
            for (_, s) in members.iter().map(|e| (&e.0, &e.1)) {
                if s.kind == span::SpanKind::Client as i32
                    && attr_str(&s.attributes, "rpc.system").is_some()
                {
                    assert_eq!(children.get(s.span_id.as_slice()), Some(&1), "{}", s.name);
                }
            }
        }
        (spans.len(), errors)
    }

    #[test]
    fn traces_are_well_formed() {
        let mut topo = Topology::new(7);
        for requested in [1, 50, 512, 2000] {
            let req = topo.traces_request(requested, T0);
            let (n, _) = check_traces(&req);
            assert_eq!(n as u64, span_count(&req));
            assert!(n >= requested, "{n} < {requested}");
            assert!(n < requested + 100, "{n} overshoots {requested}");
            for s in flatten(&req) {
                assert!(s.1.start_time_unix_nano >= T0);
            }
        }
        assert_eq!(span_count(&topo.traces_request(0, T0)), 0);
    }

    #[test]
    fn resources_and_instances() {
        let mut a = Topology::new(3);
        let b = Topology::new(3);
        assert_eq!(a.service_names().len(), 7);
        for name in ["frontend", "checkout", "payment", "cart", "product-catalog"] {
            assert!(a.service_names().contains(&name), "{name}");
        }
        assert!(a.instance_count() >= 14 && a.instance_count() <= 21);
        let req = a.traces_request(5000, T0);
        let mut instances: HashMap<String, HashSet<String>> = HashMap::new();
        for rs in &req.resource_spans {
            let attrs = &rs.resource.as_ref().unwrap().attributes;
            for key in [
                "service.name",
                "service.version",
                "service.instance.id",
                "k8s.namespace.name",
                "k8s.pod.name",
                "telemetry.sdk.language",
            ] {
                assert!(attr_str(attrs, key).is_some(), "{key}");
            }
            assert_eq!(
                attr_str(attrs, "deployment.environment.name"),
                Some("production")
            );
            instances
                .entry(attr_str(attrs, "service.name").unwrap().to_owned())
                .or_default()
                .insert(attr_str(attrs, "service.instance.id").unwrap().to_owned());
        }
        assert_eq!(instances.len(), 7, "every service shows up");
        for (svc, ids) in &instances {
            assert!((2..=3).contains(&ids.len()), "{svc}: {ids:?}");
        }
        // Same seed, same instance ids.
        for (x, y) in a.model.instances.iter().zip(&b.model.instances) {
            assert_eq!(x.resource, y.resource);
        }
        // DB spans exist for both stores.
        let systems: HashSet<String> = flatten(&req)
            .iter()
            .filter_map(|(_, s)| attr_str(&s.attributes, "db.system").map(str::to_owned))
            .collect();
        assert!(systems.contains("postgresql") && systems.contains("redis"));
    }

    #[test]
    fn error_rate_is_sane() {
        let mut topo = Topology::new(11);
        let mut total = 0;
        let mut errors = 0;
        let mut roots = 0;
        let mut root_4xx = HashMap::new();
        let mut root_5xx = 0;
        let mut grpc_codes = HashSet::new();
        while total < 20_000 {
            let req = topo.traces_request(1000, T0);
            let (n, e) = check_traces(&req);
            total += n;
            errors += e;
            for (_, s) in flatten(&req) {
                if let Some(code) = attr_int(&s.attributes, "rpc.grpc.status_code") {
                    grpc_codes.insert(code);
                }
                if !s.parent_span_id.is_empty() {
                    continue;
                }
                roots += 1;
                let code = attr_int(&s.attributes, "http.response.status_code").unwrap();
                let is_error = s.status.is_some();
                match code {
                    400..500 => {
                        assert!(!is_error, "4xx is not a server error");
                        assert!(attr_str(&s.attributes, "error.type").is_none());
                        *root_4xx.entry(code).or_insert(0) += 1;
                    }
                    500.. => {
                        assert!(is_error);
                        assert_eq!(
                            attr_str(&s.attributes, "error.type"),
                            Some(code.to_string().as_str())
                        );
                        root_5xx += 1;
                    }
                    _ => assert!(!is_error),
                }
            }
        }
        let rate = errors as f64 / total as f64;
        let root_rate = f64::from(root_5xx) / f64::from(roots);
        println!("span error rate {rate:.4}, root 5xx rate {root_rate:.4}, 4xx {root_4xx:?}");
        assert!((0.005..0.04).contains(&rate), "span error rate {rate}");
        assert!(
            (0.005..0.05).contains(&root_rate),
            "root error rate {root_rate}"
        );
        assert!(root_4xx.contains_key(&404) && root_4xx.contains_key(&429));
        assert!(grpc_codes.contains(&0) && grpc_codes.contains(&13) && grpc_codes.contains(&14));
    }

    /// Per service: (server spans, failed server spans, mean server duration ms).
    type ServerStats = HashMap<String, (f64, f64, f64)>;
    /// Per service: the versions seen in resources.
    type Versions = HashMap<String, HashSet<String>>;

    fn server_stats(req: &ExportTraceServiceRequest) -> (ServerStats, Versions) {
        let mut stats: HashMap<String, (f64, f64, f64)> = HashMap::new();
        for (svc, s) in flatten(req) {
            if s.kind == span::SpanKind::Server as i32 {
                let e = stats.entry(svc).or_default();
                e.0 += 1.0;
                e.1 += f64::from(u8::from(s.status.is_some()));
                e.2 += (s.end_time_unix_nano - s.start_time_unix_nano) as f64 / 1e6;
            }
        }
        for e in stats.values_mut() {
            e.2 /= e.0;
        }
        let mut versions: HashMap<String, HashSet<String>> = HashMap::new();
        for rs in &req.resource_spans {
            let res = rs.resource.as_ref().unwrap();
            versions
                .entry(
                    attr_str(&res.attributes, "service.name")
                        .unwrap()
                        .to_owned(),
                )
                .or_default()
                .insert(
                    attr_str(&res.attributes, "service.version")
                        .unwrap()
                        .to_owned(),
                );
        }
        (stats, versions)
    }

    #[test]
    fn faults_change_the_traffic() {
        let mut topo = Topology::new(21);
        let (base, base_versions) = server_stats(&topo.traces_request(40_000, T0));
        assert_eq!(
            base_versions["checkout"],
            HashSet::from(["1.9.3".to_owned()])
        );

        // A release of checkout: slower, and PlaceOrder fails a third of the time.
        topo.set_faults(&[
            Fault::ErrorScale(0.0),
            Fault::Service {
                service: "checkout".into(),
                version: Some("1.10.0".into()),
                latency_factor: 4.0,
                error_prob: 0.3,
                endpoint: Some("oteldemo.CheckoutService/PlaceOrder".into()),
            },
        ])
        .unwrap();
        let req = topo.traces_request(40_000, T0);
        let (stats, versions) = server_stats(&req);
        assert_eq!(versions["checkout"], HashSet::from(["1.10.0".to_owned()]));
        assert_eq!(versions["payment"], base_versions["payment"]);
        let (n, failed, _) = stats["cart"];
        assert_eq!(failed, 0.0, "error scale 0 leaves cart healthy ({n} spans)");
        let mut place = (0.0, 0.0);
        for (_, s) in flatten(&req) {
            if s.name == "oteldemo.CheckoutService/PlaceOrder"
                && s.kind == span::SpanKind::Server as i32
            {
                place.0 += 1.0;
                place.1 += f64::from(u8::from(s.status.is_some()));
            }
            if s.name == "oteldemo.CheckoutService/GetOrder" {
                assert!(s.status.is_none(), "only PlaceOrder fails");
            }
        }
        let rate = place.1 / place.0;
        assert!((0.2..0.4).contains(&rate), "PlaceOrder failure rate {rate}");
        assert!(
            stats["frontend"].1 > 0.0,
            "the failure reaches the frontend"
        );

        // A failing database propagates: product-catalog fails, and the frontend with it.
        topo.set_faults(&[
            Fault::ErrorScale(0.0),
            Fault::Database {
                system: "postgresql".into(),
                error_prob: 1.0,
            },
        ])
        .unwrap();
        let (stats, versions) = server_stats(&topo.traces_request(40_000, T0));
        assert_eq!(
            versions["checkout"], base_versions["checkout"],
            "release over"
        );
        let search = stats["product-catalog"].1 / stats["product-catalog"].0;
        assert!(search > 0.05, "catalog failure rate {search}");
        assert!(stats["frontend"].1 / stats["frontend"].0 > 0.05);
        assert_eq!(stats["cart"].1, 0.0, "cart uses redis only");

        // One slow pod of payment: its spans are slower than its siblings'.
        topo.set_faults(&[Fault::SlowInstance {
            service: "payment".into(),
            instance: 0,
            latency_factor: 10.0,
        }])
        .unwrap();
        let slow_id = topo.instance_ids("payment")[0].clone();
        let req = topo.traces_request(40_000, T0);
        let (mut slow, mut other) = ((0.0, 0.0), (0.0, 0.0));
        for rs in &req.resource_spans {
            let res = rs.resource.as_ref().unwrap();
            if attr_str(&res.attributes, "service.name") != Some("payment") {
                continue;
            }
            let acc = if attr_str(&res.attributes, "service.instance.id") == Some(slow_id.as_str())
            {
                &mut slow
            } else {
                &mut other
            };
            for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                if s.kind == span::SpanKind::Server as i32 {
                    acc.0 += 1.0;
                    acc.1 += (s.end_time_unix_nano - s.start_time_unix_nano) as f64;
                }
            }
        }
        let ratio = (slow.1 / slow.0) / (other.1 / other.0);
        assert!(ratio > 4.0, "slow pod {ratio}x");
        assert!(base["payment"].2 > 0.0);

        // Bad names change nothing.
        for bad in [
            Fault::SlowInstance {
                service: "nope".into(),
                instance: 0,
                latency_factor: 2.0,
            },
            Fault::SlowInstance {
                service: "payment".into(),
                instance: 9,
                latency_factor: 2.0,
            },
            Fault::Database {
                system: "mysql".into(),
                error_prob: 0.5,
            },
            Fault::Database {
                system: "redis".into(),
                error_prob: 1.5,
            },
            Fault::ErrorScale(-1.0),
            Fault::Service {
                service: "cart".into(),
                version: None,
                latency_factor: 1.0,
                error_prob: 0.1,
                endpoint: Some("/nope".into()),
            },
        ] {
            let err = topo.set_faults(std::slice::from_ref(&bad)).unwrap_err();
            assert!(!err.is_empty(), "{bad:?}");
        }
        assert_eq!(
            topo.faults
                .instance_latency
                .iter()
                .filter(|&&f| f != 1.0)
                .count(),
            1
        );
    }

    #[test]
    fn cpu_follows_load() {
        let minute = 60_000_000_000;
        let mut topo = Topology::new(4);
        let cpu = |req: &ExportMetricsServiceRequest| -> Vec<f64> {
            req.resource_metrics
                .iter()
                .map(|rm| {
                    let m = &rm.scope_metrics[0].metrics[0];
                    assert_eq!(m.name, "process.cpu.utilization");
                    let Some(metric::Data::Gauge(g)) = &m.data else {
                        panic!("gauge")
                    };
                    match g.data_points[0].value {
                        Some(number_data_point::Value::AsDouble(v)) => v,
                        _ => panic!("double"),
                    }
                })
                .collect()
        };
        let idle = cpu(&topo.cpu_request(T0, 2.0));
        assert!(idle.iter().all(|&u| u < 0.05), "{idle:?}");
        let mut steady = Vec::new();
        let mut doubled = Vec::new();
        for m in 1..=10u64 {
            let spans = if m <= 8 { 20_000 } else { 40_000 };
            topo.traces_request_over(spans, T0 + (m - 1) * minute, minute);
            let u = cpu(&topo.cpu_request(T0 + m * minute, 2.0));
            if m == 8 {
                steady = u;
            } else if m == 10 {
                doubled = u;
            }
        }
        // At the mean rate an instance is at 3 % + 1/2; at twice the rate (mean now 1.2x) at
        // 3 % + 2/2.4.
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!((0.45..0.61).contains(&mean(&steady)), "{steady:?}");
        assert!((0.78..0.95).contains(&mean(&doubled)), "{doubled:?}");
    }

    #[test]
    fn spread_requests_cover_the_window() {
        let mut topo = Topology::new(2);
        let minute = 60_000_000_000;
        let req = topo.traces_request_over(3000, T0, minute);
        let roots: Vec<u64> = flatten(&req)
            .iter()
            .filter(|(_, s)| s.parent_span_id.is_empty())
            .map(|(_, s)| s.start_time_unix_nano - T0)
            .collect();
        assert!(roots.iter().all(|&t| t < minute));
        assert!(
            roots.iter().any(|&t| t < minute / 10) && roots.iter().any(|&t| t > minute * 9 / 10)
        );
    }

    #[test]
    fn endpoint_latencies_differ() {
        let mut topo = Topology::new(5);
        let req = topo.traces_request(20_000, T0);
        let mut by_name: HashMap<String, Vec<u64>> = HashMap::new();
        for (_, s) in flatten(&req) {
            if s.kind == span::SpanKind::Server as i32 {
                by_name
                    .entry(s.name.clone())
                    .or_default()
                    .push(s.end_time_unix_nano - s.start_time_unix_nano);
            }
        }
        let median = |v: &mut Vec<u64>| {
            v.sort_unstable();
            v[v.len() / 2]
        };
        let charge = median(by_name.get_mut("oteldemo.PaymentService/Charge").unwrap());
        let get_cart = median(by_name.get_mut("oteldemo.CartService/GetCart").unwrap());
        assert!(charge > 5 * get_cart, "{charge} vs {get_cart}");
        // A tail exists: max well above the median for a busy endpoint.
        let v = by_name
            .get_mut("oteldemo.ProductCatalogService/GetProduct")
            .unwrap();
        let m = median(v);
        assert!(*v.last().unwrap() > 4 * m);
    }

    #[test]
    fn sized_topology() {
        let mut topo = Topology::with_size(9, 20, 200);
        assert_eq!(topo.service_names().len(), 20);
        let eps = topo.endpoint_count();
        assert!((190..=215).contains(&eps), "{eps} endpoints");
        // Every non-frontend endpoint has a caller, so all are reachable.
        let mut called = HashSet::new();
        for ep in &topo.model.endpoints {
            for c in &ep.calls {
                if let Target::Endpoint(t) = c.target {
                    called.insert(t);
                }
            }
        }
        for (i, ep) in topo.model.endpoints.iter().enumerate() {
            if ep.service != 0 {
                assert!(called.contains(&i), "{} unreachable", ep.name);
            }
        }
        let req = topo.traces_request(5000, T0);
        let (n, _) = check_traces(&req);
        assert!(n >= 5000);
        // Smaller sizes leave the shop unchanged.
        let small = Topology::with_size(9, 3, 5);
        assert_eq!(small.service_names().len(), 7);
        assert_eq!(small.endpoint_count(), Topology::new(9).endpoint_count());
    }

    #[test]
    fn metrics_request_is_consistent() {
        let mut topo = Topology::new(4);
        let first = topo.metrics_request(T0);
        let second = topo.metrics_request(T0 + 1_000_000_000);
        assert!(metric_point_count(&second) > 0);
        let mut prev_counts: HashMap<String, u64> = HashMap::new();
        for (round, req) in [first, second].iter().enumerate() {
            let mut kinds = HashSet::new();
            let mut services = HashSet::new();
            for rm in &req.resource_metrics {
                let res = &rm.resource.as_ref().unwrap().attributes;
                for key in [
                    "service.name",
                    "service.instance.id",
                    "service.version",
                    "deployment.environment.name",
                ] {
                    assert!(attr_str(res, key).is_some(), "{key}");
                }
                let instance = attr_str(res, "service.instance.id").unwrap();
                services.insert(attr_str(res, "service.name").unwrap().to_owned());
                let mut hist_counts: HashMap<String, u64> = HashMap::new();
                let mut sum_counts: HashMap<String, u64> = HashMap::new();
                for m in rm.scope_metrics.iter().flat_map(|sm| &sm.metrics) {
                    match m.data.as_ref().unwrap() {
                        metric::Data::Histogram(h) => {
                            assert_eq!(m.name, "http.server.request.duration");
                            assert_eq!(m.unit, "s");
                            assert_eq!(
                                h.aggregation_temporality,
                                AggregationTemporality::Cumulative as i32
                            );
                            kinds.insert("histogram");
                            for p in &h.data_points {
                                assert_eq!(p.explicit_bounds, HTTP_DURATION_BOUNDS.to_vec());
                                assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
                                assert_eq!(p.count, p.bucket_counts.iter().sum::<u64>());
                                assert!(p.count > 0);
                                assert!(p.min.unwrap() <= p.max.unwrap());
                                assert!(p.start_time_unix_nano < p.time_unix_nano);
                                let key = format!("{instance}{:?}", p.attributes);
                                if round == 1 {
                                    assert!(p.count >= prev_counts.get(&key).copied().unwrap_or(0));
                                }
                                prev_counts.insert(key.clone(), p.count);
                                hist_counts.insert(key, p.count);
                            }
                        }
                        metric::Data::ExponentialHistogram(h) => {
                            assert_eq!(m.name, "rpc.server.duration");
                            assert_eq!(m.unit, "ms");
                            kinds.insert("exponential_histogram");
                            for p in &h.data_points {
                                let pos = p.positive.as_ref().unwrap();
                                assert_eq!(
                                    p.count,
                                    p.zero_count + pos.bucket_counts.iter().sum::<u64>()
                                );
                                // min/max fall in the first/last populated bucket range.
                                let base = 2f64.powf(2f64.powi(-p.scale));
                                let lo = base.powi(pos.offset);
                                let hi = base.powi(pos.offset + pos.bucket_counts.len() as i32);
                                assert!(p.min.unwrap() >= lo * 0.999, "{} < {lo}", p.min.unwrap());
                                assert!(p.max.unwrap() <= hi * 1.001);
                            }
                        }
                        metric::Data::Gauge(g) => {
                            kinds.insert("gauge");
                            for p in &g.data_points {
                                match p.value {
                                    Some(number_data_point::Value::AsDouble(v)) => {
                                        assert!((0.0..=1.0).contains(&v));
                                    }
                                    _ => panic!("gauge must be a double"),
                                }
                            }
                        }
                        metric::Data::Sum(s) => {
                            assert!(s.is_monotonic);
                            assert_eq!(
                                s.aggregation_temporality,
                                AggregationTemporality::Cumulative as i32
                            );
                            kinds.insert("sum");
                            for p in &s.data_points {
                                let Some(number_data_point::Value::AsInt(v)) = p.value else {
                                    panic!("sum must be an int");
                                };
                                sum_counts.insert(
                                    format!("{instance}{:?}", p.attributes),
                                    u64::try_from(v).unwrap(),
                                );
                            }
                        }
                        metric::Data::Summary(_) => panic!("no summaries"),
                    }
                }
                assert_eq!(hist_counts, sum_counts, "sum agrees with histogram counts");
            }
            assert_eq!(
                kinds,
                HashSet::from(["histogram", "exponential_histogram", "gauge", "sum"])
            );
            assert_eq!(services.len(), 7);
        }
    }

    #[test]
    fn logs_link_to_traces() {
        let mut topo = Topology::new(8);
        let req = topo.traces_request(5000, T0);
        let spans: HashSet<(Vec<u8>, Vec<u8>)> = flatten(&req)
            .into_iter()
            .map(|(_, s)| (s.trace_id, s.span_id))
            .collect();
        let logs = topo.logs_request(30, T0 + 2_000_000_000);
        let records: Vec<&LogRecord> = logs
            .resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .collect();
        assert_eq!(records.len(), 30);
        let mut errors = 0;
        for r in &records {
            assert!(spans.contains(&(r.trace_id.clone(), r.span_id.clone())));
            assert!(r.body.is_some());
            if r.severity_number == SeverityNumber::Error as i32 {
                errors += 1;
            }
        }
        assert!(errors > 0, "error logs come first");
        // Without prior traces it still produces linked-looking records.
        let mut fresh = Topology::new(8);
        let logs = fresh.logs_request(5, T0);
        let n: usize = logs
            .resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .map(|sl| sl.log_records.len())
            .sum();
        assert_eq!(n, 5);
    }

    #[test]
    fn template_patching_keeps_traces_valid() {
        let mut topo = Topology::new(2);
        let req = topo.traces_request(300, T0);
        let t = Template::new(&req).unwrap();
        assert_eq!(t.spans, span_count(&req));
        assert_eq!(t.trace_ids.len() as u64, t.spans);
        let mut rng = SmallRng::seed_from_u64(1);
        let now = T0 + 3_600_000_000_000;
        let a = ExportTraceServiceRequest::decode(t.instantiate(now, &mut rng)).unwrap();
        let b = ExportTraceServiceRequest::decode(t.instantiate(now + 5, &mut rng)).unwrap();
        check_traces(&a);
        check_traces(&b);
        let orig = flatten(&req);
        let pa = flatten(&a);
        let pb = flatten(&b);
        assert_eq!(orig.len(), pa.len());
        let delta = now - t.max_time;
        let mut max_end = 0;
        for ((o, x), y) in orig.iter().zip(&pa).zip(&pb) {
            let (o, x, y) = (&o.1, &x.1, &y.1);
            assert_ne!(o.trace_id, x.trace_id);
            assert_ne!(x.span_id, y.span_id);
            assert_eq!(x.start_time_unix_nano, o.start_time_unix_nano + delta);
            assert_eq!(x.end_time_unix_nano, o.end_time_unix_nano + delta);
            assert_eq!(x.name, o.name);
            assert_eq!(x.attributes, o.attributes);
            max_end = max_end.max(x.end_time_unix_nano);
        }
        assert!(max_end <= now);
        let ids_a: HashSet<_> = pa.iter().map(|(_, s)| s.trace_id.clone()).collect();
        let ids_o: HashSet<_> = orig.iter().map(|(_, s)| s.trace_id.clone()).collect();
        assert_eq!(ids_a.len(), ids_o.len());
    }

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: LoadgenArgs,
    }

    #[test]
    fn args_parse() {
        let cli = Cli::try_parse_from(["loadgen"]).unwrap();
        let d = LoadgenArgs::default();
        assert_eq!(cli.args.endpoint, d.endpoint);
        assert_eq!(cli.args.protocol, Protocol::Grpc);
        assert_eq!(cli.args.rate, 10_000);
        assert_eq!(cli.args.duration_seconds, 10);
        assert_eq!(cli.args.batch_spans, 512);
        assert_eq!(cli.args.concurrency, 4);
        assert!(cli.args.metrics);
        let cli = Cli::try_parse_from([
            "loadgen",
            "--protocol",
            "http",
            "--endpoint",
            "http://x:4318",
            "--rate",
            "0",
            "--metrics=false",
            "--seed",
            "9",
        ])
        .unwrap();
        assert_eq!(cli.args.protocol, Protocol::Http);
        assert_eq!(cli.args.rate, 0);
        assert!(!cli.args.metrics);
        assert_eq!(cli.args.seed, 9);
        assert!(
            Cli::try_parse_from(["loadgen", "--metrics"])
                .unwrap()
                .args
                .metrics
        );
    }

    #[test]
    fn batch_shrinks_at_low_rates() {
        assert_eq!(effective_batch(512, 0), 512);
        assert_eq!(effective_batch(512, 10_000), 512);
        assert_eq!(effective_batch(512, 1000), 100);
        assert_eq!(effective_batch(512, 3), 1);
        assert_eq!(
            normalize_endpoint("127.0.0.1:4317/").unwrap(),
            "http://127.0.0.1:4317"
        );
        assert!(normalize_endpoint("https://x").is_err());
    }

    #[tokio::test]
    async fn run_fails_when_nothing_is_acked() {
        // Grab a free port and close it again so nothing listens there.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        for protocol in [Protocol::Grpc, Protocol::Http] {
            let args = LoadgenArgs {
                endpoint: format!("127.0.0.1:{port}"),
                protocol,
                duration_seconds: 1,
                ..LoadgenArgs::default()
            };
            let err = run(&args).await.unwrap_err();
            let msg = err.to_string();
            println!("{msg}");
            assert!(matches!(err, LoadgenError::AllFailed { .. }));
            assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
        }
    }

    /// `cargo test --release --lib loadgen::tests::generation_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn generation_speed() {
        let mut topo = Topology::with_size(1, 20, 200);
        let start = std::time::Instant::now();
        let mut n = 0;
        while n < 1_000_000 {
            n += span_count(&topo.traces_request(512, T0));
        }
        let secs = start.elapsed().as_secs_f64();
        println!("{:.0} spans/s generated", n as f64 / secs);
        let req = topo.traces_request(512, T0);
        let t = Template::new(&req).unwrap();
        let mut rng = SmallRng::seed_from_u64(1);
        let start = std::time::Instant::now();
        for i in 0..10_000 {
            std::hint::black_box(t.instantiate(T0 + i, &mut rng));
        }
        let per = start.elapsed().as_secs_f64() / 10_000.0;
        println!(
            "{:.1} µs per instantiated request ({} spans)",
            per * 1e6,
            t.spans
        );
    }
}
