//! Attributes: the hot semantic-convention keys become columns, the rest typed JSON.
//!
//! JSON is written by hand (not through `serde_json::Value`) because it runs once per span on the
//! ingest hot path; string escaping is delegated to `serde_json`.

use std::fmt::Write;

use base64::Engine;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// Nesting beyond this is written as a string marker instead of recursing further.
const MAX_DEPTH: usize = 64;

fn write_str(out: &mut String, s: &str) {
    // serde_json escaping writes into a Vec<u8>; strings are valid UTF-8 in and out.
    let escaped = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    out.push_str(&escaped);
}

/// Writes one OTLP `AnyValue` as typed JSON (see the schema documentation).
pub fn write_any_value(out: &mut String, v: Option<&AnyValue>, depth: usize) {
    let Some(value) = v.and_then(|v| v.value.as_ref()) else {
        out.push_str("null");
        return;
    };
    if depth > MAX_DEPTH {
        out.push_str("\"<nested too deep>\"");
        return;
    }
    match value {
        Value::StringValue(s) => write_str(out, s),
        Value::BoolValue(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::IntValue(i) => {
            let _ = write!(out, "{i}");
        }
        Value::DoubleValue(d) => {
            if d.is_finite() {
                // Always keep a fraction or exponent so the value reads back as a double.
                let s = format!("{d:?}");
                out.push_str(&s);
            } else if d.is_nan() {
                out.push_str("\"NaN\"");
            } else if *d > 0.0 {
                out.push_str("\"Infinity\"");
            } else {
                out.push_str("\"-Infinity\"");
            }
        }
        Value::ArrayValue(a) => {
            out.push('[');
            for (i, item) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_any_value(out, Some(item), depth + 1);
            }
            out.push(']');
        }
        Value::KvlistValue(kv) => write_object(out, kv.values.iter(), depth + 1),
        Value::BytesValue(b) => {
            out.push_str("{\"bytes\":\"");
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            out.push_str("\"}");
        }
        Value::StringValueStrindex(i) => {
            let _ = write!(out, "{{\"string_index\":{i}}}");
        }
    }
}

fn write_object<'a>(out: &mut String, kvs: impl Iterator<Item = &'a KeyValue>, depth: usize) {
    out.push('{');
    for (i, kv) in kvs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, &kv.key);
        out.push(':');
        write_any_value(out, kv.value.as_ref(), depth);
    }
    out.push('}');
}

/// The attributes that `keep` accepts as a JSON object, or `None` when none remain.
pub fn attrs_json(kvs: &[KeyValue], keep: impl Fn(&KeyValue) -> bool) -> Option<String> {
    let mut kept = kvs.iter().filter(|kv| keep(kv)).peekable();
    kept.peek()?;
    let mut out = String::with_capacity(64);
    write_object(&mut out, kept, 0);
    Some(out)
}

pub(crate) fn as_str(v: &Option<AnyValue>) -> Option<&str> {
    match v.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// An integer attribute; numeric strings are accepted too (older SDKs send status codes as text).
pub(crate) fn as_i32(v: &Option<AnyValue>) -> Option<i32> {
    match v.as_ref()?.value.as_ref()? {
        Value::IntValue(i) => i32::try_from(*i).ok(),
        Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An integer that an Int32 column can hold exactly.
fn is_i32(v: &Option<AnyValue>) -> bool {
    matches!(
        v.as_ref().and_then(|v| v.value.as_ref()),
        Some(Value::IntValue(i)) if i32::try_from(*i).is_ok()
    )
}

fn is_string(v: &Option<AnyValue>) -> bool {
    matches!(
        v.as_ref().and_then(|v| v.value.as_ref()),
        Some(Value::StringValue(_))
    )
}

/// Resource-level columns, computed once per `Resource*` and shared by all its rows.
#[derive(Debug, Clone, Default)]
pub struct ResourceInfo {
    pub service_name: String,
    pub service_version: Option<String>,
    pub service_namespace: Option<String>,
    pub service_instance_id: Option<String>,
    pub deployment_environment: Option<String>,
    pub k8s_namespace_name: Option<String>,
    pub k8s_pod_name: Option<String>,
    /// Remaining attributes as typed JSON.
    pub json: Option<String>,
}

/// Resource keys stored in columns (removed from the JSON when they are strings).
const RESOURCE_COLUMNS: &[&str] = &[
    "service.name",
    "service.version",
    "service.namespace",
    "service.instance.id",
    "deployment.environment.name",
    "k8s.namespace.name",
    "k8s.pod.name",
];

impl ResourceInfo {
    pub fn new(resource: Option<&Resource>) -> Self {
        let empty = Vec::new();
        let attrs = resource.map(|r| &r.attributes).unwrap_or(&empty);
        let mut info = ResourceInfo::default();
        let mut legacy_env = None;
        for kv in attrs {
            let Some(s) = as_str(&kv.value) else { continue };
            let slot = match kv.key.as_str() {
                "service.name" => {
                    info.service_name = s.to_owned();
                    continue;
                }
                "service.version" => &mut info.service_version,
                "service.namespace" => &mut info.service_namespace,
                "service.instance.id" => &mut info.service_instance_id,
                "deployment.environment.name" => &mut info.deployment_environment,
                "deployment.environment" => &mut legacy_env,
                "k8s.namespace.name" => &mut info.k8s_namespace_name,
                "k8s.pod.name" => &mut info.k8s_pod_name,
                _ => continue,
            };
            *slot = Some(s.to_owned());
        }
        if info.deployment_environment.is_none() {
            info.deployment_environment = legacy_env;
        }
        if info.service_name.is_empty() {
            info.service_name = "unknown_service".to_owned();
        }
        info.json = attrs_json(attrs, |kv| {
            !(RESOURCE_COLUMNS.contains(&kv.key.as_str()) && is_string(&kv.value))
        });
        info
    }
}

/// Span-level semantic-convention columns.
#[derive(Debug, Default)]
pub struct Hot<'a> {
    pub http_request_method: Option<&'a str>,
    pub http_route: Option<&'a str>,
    pub http_response_status_code: Option<i32>,
    pub url_path: Option<&'a str>,
    pub rpc_system: Option<&'a str>,
    pub rpc_service: Option<&'a str>,
    pub rpc_method: Option<&'a str>,
    pub rpc_grpc_status_code: Option<i32>,
    pub db_system: Option<&'a str>,
    pub peer_service: Option<&'a str>,
    pub server_address: Option<&'a str>,
    pub error_type: Option<&'a str>,
}

/// Is `kv` stored in a span column, so the JSON can leave it out?
fn span_column_holds(kv: &KeyValue) -> bool {
    match kv.key.as_str() {
        "http.response.status_code" | "rpc.grpc.status_code" => is_i32(&kv.value),
        "http.request.method"
        | "http.route"
        | "url.path"
        | "rpc.system"
        | "rpc.service"
        | "rpc.method"
        | "db.system"
        | "peer.service"
        | "server.address"
        | "error.type" => is_string(&kv.value),
        _ => false,
    }
}

impl<'a> Hot<'a> {
    /// Picks the hot keys out of `attrs`; returns them and the JSON of everything else.
    pub fn extract(attrs: &'a [KeyValue]) -> (Self, Option<String>) {
        let mut h = Hot::default();
        let mut legacy_method = None;
        let mut legacy_status = None;
        let mut db_system_name = None;
        for kv in attrs {
            let v = &kv.value;
            match kv.key.as_str() {
                "http.request.method" => h.http_request_method = as_str(v),
                "http.method" => legacy_method = as_str(v),
                "http.route" => h.http_route = as_str(v),
                "http.response.status_code" => h.http_response_status_code = as_i32(v),
                "http.status_code" => legacy_status = as_i32(v),
                "url.path" => h.url_path = as_str(v),
                "rpc.system" => h.rpc_system = as_str(v),
                "rpc.service" => h.rpc_service = as_str(v),
                "rpc.method" => h.rpc_method = as_str(v),
                "rpc.grpc.status_code" => h.rpc_grpc_status_code = as_i32(v),
                "db.system" => h.db_system = as_str(v),
                "db.system.name" => db_system_name = as_str(v),
                "peer.service" => h.peer_service = as_str(v),
                "server.address" => h.server_address = as_str(v),
                "error.type" => h.error_type = as_str(v),
                _ => {}
            }
        }
        h.http_request_method = h.http_request_method.or(legacy_method);
        h.http_response_status_code = h.http_response_status_code.or(legacy_status);
        h.db_system = h.db_system.or(db_system_name);
        let json = attrs_json(attrs, |kv| !span_column_holds(kv));
        (h, json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn json_is_typed_and_parses_back() {
        let attrs = vec![
            kv("s", Value::StringValue("a\"b\n".into())),
            kv("i", Value::IntValue(i64::MAX)),
            kv("d", Value::DoubleValue(1.0)),
            kv("b", Value::BoolValue(true)),
            kv("bytes", Value::BytesValue(vec![1, 2, 255])),
            kv(
                "arr",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::IntValue(1)),
                    }],
                }),
            ),
            kv(
                "kv",
                Value::KvlistValue(KeyValueList {
                    values: vec![kv("x", Value::BoolValue(false))],
                }),
            ),
        ];
        let json = attrs_json(&attrs, |_| true).expect("some attributes");
        assert_eq!(
            json,
            r#"{"s":"a\"b\n","i":9223372036854775807,"d":1.0,"b":true,"bytes":{"bytes":"AQL/"},"arr":[1],"kv":{"x":false}}"#
        );
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(v["i"].as_i64(), Some(i64::MAX));
        assert!(v["d"].is_f64());
        assert_eq!(attrs_json(&[], |_| true), None);
    }

    #[test]
    fn hot_keys_leave_the_json_only_when_the_column_holds_them() {
        let attrs = vec![
            kv("http.route", Value::StringValue("/a".into())),
            kv(
                "http.response.status_code",
                Value::StringValue("503".into()),
            ),
            kv("other", Value::IntValue(1)),
        ];
        let (hot, json) = Hot::extract(&attrs);
        assert_eq!(hot.http_route, Some("/a"));
        assert_eq!(hot.http_response_status_code, Some(503));
        assert_eq!(
            json.as_deref(),
            Some(r#"{"http.response.status_code":"503","other":1}"#)
        );
    }
}
