//! Constants and small helpers the generator's pieces share: attribute builders, random
//! ids and latency samples.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use rand::Rng;
use rand::rngs::SmallRng;

pub(crate) const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.26.0";
pub(crate) const SDK_VERSION: &str = "1.38.0";
pub(crate) const ENVIRONMENT: &str = "production";
pub(crate) const K8S_NAMESPACE: &str = "shop";
pub(crate) const FRONTEND_HOST: &str = "shop.example.com";

/// Root spans of one traces request start within this window after
/// `start_unix_nano`.
pub(crate) const ROOT_SPREAD_NS: u64 = 100_000_000;

/// Semantic-conventions default bucket boundaries for
/// `http.server.request.duration` (seconds).
pub(crate) const HTTP_DURATION_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Scale of the `rpc.server.duration` exponential histogram (base 2^(1/8)).
pub(crate) const EXP_SCALE: i32 = 3;

/// Span flags: sampled, with the "is remote" bits for server spans whose
/// parent lives in another process.
pub(crate) const FLAGS_LOCAL_PARENT: u32 = 0x101;
pub(crate) const FLAGS_REMOTE_PARENT: u32 = 0x301;

pub(crate) const TRACE_EXPORT_PATH: &str =
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

pub(crate) const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "python-requests/2.31.0",
];
pub(crate) const PRODUCT_IDS: [&str; 8] = [
    "OLJCESPC7Z",
    "66VCHSJNUP",
    "1YMWWN1N4O",
    "L9ECAV7KIM",
    "2ZYFJ3GM2N",
    "0PUK6V6EV0",
    "LS4PSXUNUM",
    "9SIQT8TOJO",
];

pub(crate) fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        key_strindex: 0,
    }
}

pub(crate) fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        key_strindex: 0,
    }
}

/// The string value of attribute `key`.
pub(crate) fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    {
        Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
        _ => None,
    }
}

pub(crate) fn set_resource_attr(resource: &mut Resource, key: &str, value: &str) {
    match resource.attributes.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => *kv = kv_str(key, value),
        None => resource.attributes.push(kv_str(key, value)),
    }
}

pub(crate) fn scope(name: &str, version: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: name.to_owned(),
        version: version.to_owned(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    }
}

/// Standard normal sample (Box–Muller), clamped to ±5σ.
pub(crate) fn std_normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    z.clamp(-5.0, 5.0)
}

/// Log-normal sample with the given median (same unit as the median).
pub(crate) fn lognormal(rng: &mut SmallRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * std_normal(rng)).exp()
}

pub(crate) fn ms_to_ns(ms: f64) -> u64 {
    // Truncating float → int conversion is intended; at least 1 µs.
    (ms * 1_000_000.0).max(1_000.0) as u64
}

pub(crate) fn random_span_id(rng: &mut SmallRng) -> [u8; 8] {
    let v: u64 = rng.random();
    (if v == 0 { 1 } else { v }).to_be_bytes()
}

pub(crate) fn random_trace_id(rng: &mut SmallRng) -> [u8; 16] {
    let hi: u64 = rng.random();
    let lo: u64 = rng.random();
    let lo = if lo == 0 { 1 } else { lo };
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&hi.to_be_bytes());
    id[8..].copy_from_slice(&lo.to_be_bytes());
    id
}

pub(crate) fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn pascal(name: &str) -> String {
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
