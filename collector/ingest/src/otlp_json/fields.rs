//! Reading an object's fields and the scalars in them as the OTLP JSON mapping allows:
//! either key spelling, integers as numbers or strings, special doubles, hex ids, lenient
//! base64, enums by number or name.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::{LogRecordFlags, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, DataPointFlags};
use opentelemetry_proto::tonic::trace::v1::{SpanFlags, span, status};
use serde_json::{Map, Value};

use super::*;
use super::{common::*, path::*};

/// A JSON object being decoded, with its path.
pub(crate) struct Obj<'v, 'p> {
    pub(crate) map: &'v Map<String, Value>,
    pub(crate) path: &'p Path<'p>,
}

impl<'v, 'p> Obj<'v, 'p> {
    pub(crate) fn new(v: &'v Value, path: &'p Path<'p>) -> Result<Self> {
        match v {
            Value::Object(map) => Ok(Self { map, path }),
            other => Err(path.expected("an object", other)),
        }
    }

    /// The field's value under its camelCase or snake_case name; `null` counts as absent.
    pub(crate) fn raw(&self, camel: &str, snake: &str) -> Option<&'v Value> {
        let get = |k: &str| self.map.get(k).filter(|v| !v.is_null());
        get(camel).or_else(|| if snake == camel { None } else { get(snake) })
    }

    pub(crate) fn opt<T>(
        &self,
        camel: &'static str,
        snake: &'static str,
        f: impl FnOnce(&Value, &Path<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        match self.raw(camel, snake) {
            Some(v) => f(v, &self.path.key(camel)).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn get<T: Default>(
        &self,
        camel: &'static str,
        snake: &'static str,
        f: impl FnOnce(&Value, &Path<'_>) -> Result<T>,
    ) -> Result<T> {
        Ok(self.opt(camel, snake, f)?.unwrap_or_default())
    }

    pub(crate) fn list<T>(
        &self,
        camel: &'static str,
        snake: &'static str,
        f: impl Fn(&Value, &Path<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.get(camel, snake, |v, p| list(v, p, f))
    }

    pub(crate) fn string(&self, camel: &'static str, snake: &'static str) -> Result<String> {
        self.get(camel, snake, string)
    }

    pub(crate) fn int<T: TryFrom<i128> + Default>(
        &self,
        camel: &'static str,
        snake: &'static str,
    ) -> Result<T> {
        self.get(camel, snake, int::<T>)
    }

    pub(crate) fn double(&self, camel: &'static str, snake: &'static str) -> Result<f64> {
        self.get(camel, snake, double)
    }

    pub(crate) fn opt_double(
        &self,
        camel: &'static str,
        snake: &'static str,
    ) -> Result<Option<f64>> {
        self.opt(camel, snake, double)
    }

    pub(crate) fn hex(&self, camel: &'static str, snake: &'static str) -> Result<Vec<u8>> {
        self.get(camel, snake, hex_bytes)
    }

    pub(crate) fn boolean(&self, camel: &'static str, snake: &'static str) -> Result<bool> {
        self.get(camel, snake, boolean)
    }

    /// An int/enum field that also accepts the enum value names `from_name` knows.
    pub(crate) fn named<T: TryFrom<i128> + Default>(
        &self,
        camel: &'static str,
        snake: &'static str,
        type_name: &'static str,
        from_name: fn(&str) -> Option<i128>,
    ) -> Result<T> {
        self.get(camel, snake, |v, p| named_int(v, p, type_name, from_name))
    }

    pub(crate) fn attributes(
        &self,
        camel: &'static str,
        snake: &'static str,
    ) -> Result<Vec<KeyValue>> {
        self.list(camel, snake, |v, p| key_value(v, p, 1))
    }
}

pub(crate) fn list<T>(
    v: &Value,
    path: &Path<'_>,
    f: impl Fn(&Value, &Path<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let Value::Array(items) = v else {
        return Err(path.expected("an array", v));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| f(item, &path.index(i)))
        .collect()
}

pub(crate) fn string(v: &Value, path: &Path<'_>) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(path.expected("a string", other)),
    }
}

pub(crate) fn boolean(v: &Value, path: &Path<'_>) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => Err(path.expected("a boolean", other)),
    }
}

/// An integral f64 as i128, if it is one (and fits comfortably).
pub(crate) fn integral(f: f64) -> Option<i128> {
    // 2^126: well inside i128 and far outside every proto integer type.
    const LIMIT: f64 = 85_070_591_730_234_615_865_843_651_857_942_052_864.0;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < LIMIT).then_some(f as i128)
}

/// Any JSON integer: a number or a decimal string (exponent forms like `1e3` accepted
/// when they denote an integer).
pub(crate) fn integer(v: &Value, path: &Path<'_>) -> Result<i128> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i.into())
            } else if let Some(u) = n.as_u64() {
                Ok(u.into())
            } else {
                n.as_f64()
                    .and_then(integral)
                    .ok_or_else(|| path.err(format!("{n} is not an integer")))
            }
        }
        Value::String(s) => s
            .parse::<i128>()
            .ok()
            .or_else(|| s.parse::<f64>().ok().and_then(integral))
            .ok_or_else(|| path.err(format!("{} is not an integer", quoted(s)))),
        other => Err(path.expected("a string or number", other)),
    }
}

pub(crate) fn int<T: TryFrom<i128>>(v: &Value, path: &Path<'_>) -> Result<T> {
    let i = integer(v, path)?;
    T::try_from(i).map_err(|_| {
        path.err(format!(
            "{i} is out of range for {}",
            std::any::type_name::<T>()
        ))
    })
}

/// An enum (or flags) value: the integer, or a value name known to `from_name`.
pub(crate) fn named_int<T: TryFrom<i128>>(
    v: &Value,
    path: &Path<'_>,
    type_name: &str,
    from_name: fn(&str) -> Option<i128>,
) -> Result<T> {
    let Value::String(s) = v else {
        return int(v, path);
    };
    let i = match from_name(s) {
        Some(i) => i,
        None => integer(v, path)
            .map_err(|_| path.err(format!("unknown {type_name} value {}", quoted(s))))?,
    };
    T::try_from(i).map_err(|_| path.err(format!("{i} is out of range for {type_name}")))
}

pub(crate) fn double(v: &Value, path: &Path<'_>) -> Result<f64> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| path.err(format!("{n} is not a valid double"))),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => s
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| path.err(format!("{} is not a valid double", quoted(s)))),
        },
        other => Err(path.expected("a string or number", other)),
    }
}

/// Trace / span ids: case-insensitive hex. The length is checked by the converter.
pub(crate) fn hex_bytes(v: &Value, path: &Path<'_>) -> Result<Vec<u8>> {
    let Value::String(s) = v else {
        return Err(path.expected("a hex string", v));
    };
    hex::decode(s).map_err(|e| path.err(format!("invalid hex: {e}")))
}

pub(crate) const LENIENT_B64: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
pub(crate) const B64_STANDARD: GeneralPurpose =
    GeneralPurpose::new(&alphabet::STANDARD, LENIENT_B64);
pub(crate) const B64_URL_SAFE: GeneralPurpose =
    GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT_B64);

/// `bytes` fields: standard or URL-safe base64, padding optional.
pub(crate) fn base64_bytes(v: &Value, path: &Path<'_>) -> Result<Vec<u8>> {
    let Value::String(s) = v else {
        return Err(path.expected("a base64 string", v));
    };
    let engine = if s.contains(['-', '_']) {
        &B64_URL_SAFE
    } else {
        &B64_STANDARD
    };
    engine
        .decode(s)
        .map_err(|e| path.err(format!("invalid base64: {e}")))
}

pub(crate) fn span_kind_name(s: &str) -> Option<i128> {
    span::SpanKind::from_str_name(s).map(|k| i128::from(k as i32))
}

pub(crate) fn status_code_name(s: &str) -> Option<i128> {
    status::StatusCode::from_str_name(s).map(|c| i128::from(c as i32))
}

pub(crate) fn span_flags_name(s: &str) -> Option<i128> {
    SpanFlags::from_str_name(s).map(|f| i128::from(f as i32))
}

pub(crate) fn temporality_name(s: &str) -> Option<i128> {
    AggregationTemporality::from_str_name(s).map(|t| i128::from(t as i32))
}

pub(crate) fn data_point_flags_name(s: &str) -> Option<i128> {
    DataPointFlags::from_str_name(s).map(|f| i128::from(f as i32))
}

pub(crate) fn severity_name(s: &str) -> Option<i128> {
    SeverityNumber::from_str_name(s).map(|n| i128::from(n as i32))
}

pub(crate) fn log_flags_name(s: &str) -> Option<i128> {
    LogRecordFlags::from_str_name(s).map(|f| i128::from(f as i32))
}
