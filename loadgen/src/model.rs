//! The static part of a simulated shop: services, instances, endpoints and the call graph
//! between them, built from a seed and grown to the size a benchmark asks for.

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::util::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScopeKind {
    Http = 0,
    Grpc = 1,
    Postgres = 2,
    Redis = 3,
}
pub(crate) const SCOPE_COUNT: usize = 4;

impl ScopeKind {
    pub(crate) const ALL: [ScopeKind; SCOPE_COUNT] = [
        ScopeKind::Http,
        ScopeKind::Grpc,
        ScopeKind::Postgres,
        ScopeKind::Redis,
    ];
    pub(crate) fn scope(self) -> InstrumentationScope {
        match self {
            ScopeKind::Http => scope("opentelemetry.instrumentation.http", "0.57.0"),
            ScopeKind::Grpc => scope("opentelemetry.instrumentation.grpc", "0.57.0"),
            ScopeKind::Postgres => scope("opentelemetry.instrumentation.pg", "0.51.0"),
            ScopeKind::Redis => scope("opentelemetry.instrumentation.redis", "0.49.0"),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ServiceDef {
    pub(crate) name: String,
    pub(crate) language: &'static str,
    /// Fully qualified gRPC service name (unused for the HTTP frontend).
    pub(crate) rpc_service: String,
    pub(crate) port: i64,
    pub(crate) instances: Vec<usize>,
    pub(crate) endpoints: Vec<usize>,
}

#[derive(Clone, Debug)]
pub(crate) struct InstanceDef {
    pub(crate) service: usize,
    pub(crate) resource: Resource,
}

#[derive(Clone, Debug)]
pub(crate) enum EndpointKind {
    Http { method: &'static str, route: String },
    Grpc { method: String },
}

#[derive(Clone, Debug)]
pub(crate) struct EndpointDef {
    pub(crate) service: usize,
    pub(crate) kind: EndpointKind,
    /// Span name: `GET /api/cart` or `oteldemo.CartService/GetCart`.
    pub(crate) name: String,
    /// Median of the endpoint's own work (ms), excluding downstream calls.
    pub(crate) self_ms: f64,
    pub(crate) sigma: f64,
    /// Probability that the endpoint fails on its own.
    pub(crate) error_prob: f64,
    /// Downstream calls are issued concurrently instead of one after another.
    pub(crate) parallel: bool,
    pub(crate) calls: Vec<CallDef>,
    /// Typical end-to-end latency (ms), used by the metrics simulation.
    pub(crate) total_ms: f64,
    /// Share of root traffic (frontend routes only).
    pub(crate) weight: u32,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    Endpoint(usize),
    Db(usize),
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct CallDef {
    pub(crate) target: Target,
    pub(crate) prob: f64,
    pub(crate) min_repeat: u8,
    pub(crate) max_repeat: u8,
    /// A failure of this call fails the caller.
    pub(crate) critical: bool,
}

pub(crate) fn call(target: Target) -> CallDef {
    CallDef {
        target,
        prob: 1.0,
        min_repeat: 1,
        max_repeat: 1,
        critical: true,
    }
}

impl CallDef {
    pub(crate) fn prob(mut self, p: f64) -> Self {
        self.prob = p;
        self
    }
    pub(crate) fn optional(mut self) -> Self {
        self.critical = false;
        self
    }
    pub(crate) fn repeat(mut self, min: u8, max: u8) -> Self {
        self.min_repeat = min;
        self.max_repeat = max;
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DbSystem {
    Postgres,
    Redis,
}

impl DbSystem {
    /// `db.system`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            DbSystem::Postgres => "postgresql",
            DbSystem::Redis => "redis",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct DbOp {
    pub(crate) system: DbSystem,
    pub(crate) operation: &'static str,
    pub(crate) collection: Option<String>,
    pub(crate) query: String,
    /// Span name (`SELECT products`, `HGETALL`).
    pub(crate) name: String,
    pub(crate) median_ms: f64,
    pub(crate) sigma: f64,
    pub(crate) error_prob: f64,
}

impl DbOp {
    pub(crate) fn server(&self) -> (&'static str, i64, &'static str, &'static str) {
        // (server.address, server.port, db.namespace, peer.service)
        match self.system {
            DbSystem::Postgres => ("postgres", 5432, "shop", "postgresql"),
            DbSystem::Redis => ("redis-cart", 6379, "0", "redis"),
        }
    }
}

/// The static part of a topology: services, instances, endpoints, call graph.
#[derive(Clone, Debug)]
pub(crate) struct Model {
    pub(crate) services: Vec<ServiceDef>,
    pub(crate) instances: Vec<InstanceDef>,
    pub(crate) endpoints: Vec<EndpointDef>,
    pub(crate) db_ops: Vec<DbOp>,
    /// Cumulative root weights over frontend routes: (cumulative, endpoint).
    pub(crate) roots: Vec<(u32, usize)>,
}

pub(crate) struct Builder {
    pub(crate) rng: SmallRng,
    pub(crate) services: Vec<ServiceDef>,
    pub(crate) instances: Vec<InstanceDef>,
    pub(crate) endpoints: Vec<EndpointDef>,
    pub(crate) db_ops: Vec<DbOp>,
}

impl Builder {
    pub(crate) fn new(seed: u64) -> Self {
        Builder {
            rng: SmallRng::seed_from_u64(seed),
            services: Vec::new(),
            instances: Vec::new(),
            endpoints: Vec::new(),
            db_ops: Vec::new(),
        }
    }

    pub(crate) fn service(
        &mut self,
        name: &str,
        language: &'static str,
        version: &str,
        port: i64,
    ) -> usize {
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
    pub(crate) fn endpoint(
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

    pub(crate) fn grpc(
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
    pub(crate) fn http(
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

    pub(crate) fn pg(
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

    pub(crate) fn redis(&mut self, operation: &'static str, query: &str, median_ms: f64) -> Target {
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
    pub(crate) fn shop(&mut self) {
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
    pub(crate) fn extend(&mut self, services: usize, endpoints: usize) {
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

    pub(crate) fn finish(self) -> Model {
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
pub(crate) fn total_ms(
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
pub(crate) fn endpoint_is(ep: &EndpointDef, svc: &ServiceDef, name: &str) -> bool {
    ep.name == name
        || match &ep.kind {
            EndpointKind::Http { route, .. } => route == name,
            EndpointKind::Grpc { method } => {
                name.split_once('/') == Some((svc.rpc_service.as_str(), method.as_str()))
            }
        }
}

impl Model {
    pub(crate) fn pick_root(&self, rng: &mut SmallRng) -> Option<usize> {
        let total = self.roots.last()?.0;
        let r = rng.random_range(0..total);
        let i = self.roots.partition_point(|&(c, _)| c <= r);
        self.roots.get(i).map(|&(_, ep)| ep)
    }
}
