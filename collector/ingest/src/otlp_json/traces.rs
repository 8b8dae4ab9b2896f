//! `ExportTraceServiceRequest`: resource spans, scope spans, spans, events, links, status.

use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use serde_json::Value;

use super::*;
use super::{common::*, fields::*, path::*};

pub(crate) fn resource_spans(v: &Value, path: &Path<'_>) -> Result<ResourceSpans> {
    let o = Obj::new(v, path)?;
    Ok(ResourceSpans {
        resource: o.opt("resource", "resource", resource)?,
        scope_spans: o.list("scopeSpans", "scope_spans", scope_spans)?,
        schema_url: o.string("schemaUrl", "schema_url")?,
    })
}

pub(crate) fn scope_spans(v: &Value, path: &Path<'_>) -> Result<ScopeSpans> {
    let o = Obj::new(v, path)?;
    Ok(ScopeSpans {
        scope: o.opt("scope", "scope", scope)?,
        spans: o.list("spans", "spans", span)?,
        schema_url: o.string("schemaUrl", "schema_url")?,
    })
}

pub(crate) fn span(v: &Value, path: &Path<'_>) -> Result<Span> {
    let o = Obj::new(v, path)?;
    Ok(Span {
        trace_id: o.hex("traceId", "trace_id")?,
        span_id: o.hex("spanId", "span_id")?,
        trace_state: o.string("traceState", "trace_state")?,
        parent_span_id: o.hex("parentSpanId", "parent_span_id")?,
        flags: o.named("flags", "flags", "SpanFlags", span_flags_name)?,
        name: o.string("name", "name")?,
        kind: o.named("kind", "kind", "SpanKind", span_kind_name)?,
        start_time_unix_nano: o.int("startTimeUnixNano", "start_time_unix_nano")?,
        end_time_unix_nano: o.int("endTimeUnixNano", "end_time_unix_nano")?,
        attributes: o.attributes("attributes", "attributes")?,
        dropped_attributes_count: o.int("droppedAttributesCount", "dropped_attributes_count")?,
        events: o.list("events", "events", event)?,
        dropped_events_count: o.int("droppedEventsCount", "dropped_events_count")?,
        links: o.list("links", "links", link)?,
        dropped_links_count: o.int("droppedLinksCount", "dropped_links_count")?,
        status: o.opt("status", "status", span_status)?,
    })
}

pub(crate) fn event(v: &Value, path: &Path<'_>) -> Result<span::Event> {
    let o = Obj::new(v, path)?;
    Ok(span::Event {
        time_unix_nano: o.int("timeUnixNano", "time_unix_nano")?,
        name: o.string("name", "name")?,
        attributes: o.attributes("attributes", "attributes")?,
        dropped_attributes_count: o.int("droppedAttributesCount", "dropped_attributes_count")?,
    })
}

pub(crate) fn link(v: &Value, path: &Path<'_>) -> Result<span::Link> {
    let o = Obj::new(v, path)?;
    Ok(span::Link {
        trace_id: o.hex("traceId", "trace_id")?,
        span_id: o.hex("spanId", "span_id")?,
        trace_state: o.string("traceState", "trace_state")?,
        attributes: o.attributes("attributes", "attributes")?,
        dropped_attributes_count: o.int("droppedAttributesCount", "dropped_attributes_count")?,
        flags: o.named("flags", "flags", "SpanFlags", span_flags_name)?,
    })
}

pub(crate) fn span_status(v: &Value, path: &Path<'_>) -> Result<Status> {
    let o = Obj::new(v, path)?;
    Ok(Status {
        message: o.string("message", "message")?,
        code: o.named("code", "code", "StatusCode", status_code_name)?,
    })
}
