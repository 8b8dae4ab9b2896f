//! The messages every signal shares: `AnyValue` (depth-bounded), `KeyValue`, the
//! instrumentation scope and the resource.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::Value;

use super::*;
use super::{fields::*, path::*};

pub(crate) fn any_value(v: &Value, path: &Path<'_>, depth: usize) -> Result<AnyValue> {
    if depth > MAX_ANY_VALUE_DEPTH {
        return Err(path.err(format!(
            "AnyValue nested deeper than {MAX_ANY_VALUE_DEPTH} levels"
        )));
    }
    let o = Obj::new(v, path)?;
    let mut value: Option<any_value::Value> = None;
    let mut first: Option<&'static str> = None;
    let mut set = |name: &'static str, v: any_value::Value| -> Result<()> {
        if let Some(prev) = first {
            return Err(path.err(format!(
                "AnyValue has more than one value set ({prev} and {name})"
            )));
        }
        first = Some(name);
        value = Some(v);
        Ok(())
    };
    use any_value::Value as V;
    if let Some(s) = o.opt("stringValue", "string_value", string)? {
        set("stringValue", V::StringValue(s))?;
    }
    if let Some(b) = o.opt("boolValue", "bool_value", boolean)? {
        set("boolValue", V::BoolValue(b))?;
    }
    if let Some(i) = o.opt("intValue", "int_value", int::<i64>)? {
        set("intValue", V::IntValue(i))?;
    }
    if let Some(d) = o.opt("doubleValue", "double_value", double)? {
        set("doubleValue", V::DoubleValue(d))?;
    }
    if let Some(a) = o.opt("arrayValue", "array_value", |v, p| {
        let a = Obj::new(v, p)?;
        Ok(ArrayValue {
            values: a.list("values", "values", |v, p| any_value(v, p, depth + 1))?,
        })
    })? {
        set("arrayValue", V::ArrayValue(a))?;
    }
    if let Some(kv) = o.opt("kvlistValue", "kvlist_value", |v, p| {
        let l = Obj::new(v, p)?;
        Ok(KeyValueList {
            values: l.list("values", "values", |v, p| key_value(v, p, depth + 1))?,
        })
    })? {
        set("kvlistValue", V::KvlistValue(kv))?;
    }
    if let Some(b) = o.opt("bytesValue", "bytes_value", base64_bytes)? {
        set("bytesValue", V::BytesValue(b))?;
    }
    if let Some(i) = o.opt("stringValueStrindex", "string_value_strindex", int::<i32>)? {
        set("stringValueStrindex", V::StringValueStrindex(i))?;
    }
    Ok(AnyValue { value })
}

/// A KeyValue whose value is an AnyValue at nesting level `depth`.
pub(crate) fn key_value(v: &Value, path: &Path<'_>, depth: usize) -> Result<KeyValue> {
    let o = Obj::new(v, path)?;
    Ok(KeyValue {
        key: o.string("key", "key")?,
        value: o.opt("value", "value", |v, p| any_value(v, p, depth))?,
        key_strindex: o.int("keyStrindex", "key_strindex")?,
    })
}

pub(crate) fn scope(v: &Value, path: &Path<'_>) -> Result<InstrumentationScope> {
    let o = Obj::new(v, path)?;
    Ok(InstrumentationScope {
        name: o.string("name", "name")?,
        version: o.string("version", "version")?,
        attributes: o.attributes("attributes", "attributes")?,
        dropped_attributes_count: o.int("droppedAttributesCount", "dropped_attributes_count")?,
    })
}

pub(crate) fn entity_ref(v: &Value, path: &Path<'_>) -> Result<EntityRef> {
    let o = Obj::new(v, path)?;
    Ok(EntityRef {
        schema_url: o.string("schemaUrl", "schema_url")?,
        r#type: o.string("type", "type")?,
        id_keys: o.list("idKeys", "id_keys", string)?,
        description_keys: o.list("descriptionKeys", "description_keys", string)?,
    })
}

pub(crate) fn resource(v: &Value, path: &Path<'_>) -> Result<Resource> {
    let o = Obj::new(v, path)?;
    Ok(Resource {
        attributes: o.attributes("attributes", "attributes")?,
        dropped_attributes_count: o.int("droppedAttributesCount", "dropped_attributes_count")?,
        entity_refs: o.list("entityRefs", "entity_refs", entity_ref)?,
    })
}
