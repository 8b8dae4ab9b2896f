//! Traces → the `spans` table.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, FixedSizeBinaryBuilder, Int32Builder, Int64Builder,
    RecordBatch, StringBuilder, TimestampNanosecondBuilder,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};

use super::list_of_structs;
use super::{
    ConvertError, Converted, Hot, ResourceInfo, attrs_json, nanos, non_empty, scope_columns,
};
use headroom_storage::schema::{self, SPANS};

/// gRPC status codes that mean the server failed (OpenTelemetry semantic conventions).
const GRPC_SERVER_ERRORS: [i32; 6] = [2, 4, 12, 13, 14, 15];

pub fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind) {
        Ok(SpanKind::Internal) => "INTERNAL",
        Ok(SpanKind::Server) => "SERVER",
        Ok(SpanKind::Client) => "CLIENT",
        Ok(SpanKind::Producer) => "PRODUCER",
        Ok(SpanKind::Consumer) => "CONSUMER",
        Ok(SpanKind::Unspecified) | Err(_) => "UNSPECIFIED",
    }
}

fn status_name(code: i32) -> &'static str {
    match StatusCode::try_from(code) {
        Ok(StatusCode::Ok) => "OK",
        Ok(StatusCode::Error) => "ERROR",
        Ok(StatusCode::Unset) | Err(_) => "UNSET",
    }
}

/// `is_error` per the OpenTelemetry semantic conventions (see the schema documentation).
pub fn is_error(
    status: i32,
    kind: i32,
    http_status: Option<i32>,
    grpc_status: Option<i32>,
) -> bool {
    match StatusCode::try_from(status) {
        Ok(StatusCode::Error) => return true,
        Ok(StatusCode::Ok) => return false,
        _ => {}
    }
    let client = matches!(
        SpanKind::try_from(kind),
        Ok(SpanKind::Client) | Ok(SpanKind::Producer)
    );
    let server = matches!(
        SpanKind::try_from(kind),
        Ok(SpanKind::Server) | Ok(SpanKind::Consumer)
    );
    let http_bad = http_status.is_some_and(|c| if client { c >= 400 } else { server && c >= 500 });
    let grpc_bad = grpc_status.is_some_and(|c| {
        if client {
            c != 0
        } else {
            server && GRPC_SERVER_ERRORS.contains(&c)
        }
    });
    http_bad || grpc_bad
}

fn validate(span: &Span) -> Result<(i64, i64), String> {
    if span.trace_id.len() != 16 {
        return Err(format!(
            "span {:?}: trace_id must be 16 bytes, got {}",
            span.name,
            span.trace_id.len()
        ));
    }
    if span.span_id.len() != 8 {
        return Err(format!(
            "span {:?}: span_id must be 8 bytes, got {}",
            span.name,
            span.span_id.len()
        ));
    }
    if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
        return Err(format!(
            "span {:?}: parent_span_id must be empty or 8 bytes, got {}",
            span.name,
            span.parent_span_id.len()
        ));
    }
    let (Some(start), Some(end)) = (
        nanos(span.start_time_unix_nano),
        nanos(span.end_time_unix_nano),
    ) else {
        return Err(format!("span {:?}: timestamp out of range", span.name));
    };
    Ok((start, end))
}

struct Builders {
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    parent_span_id: FixedSizeBinaryBuilder,
    trace_state: StringBuilder,
    start_time: TimestampNanosecondBuilder,
    end_time: TimestampNanosecondBuilder,
    duration_ns: Int64Builder,
    service_name: StringBuilder,
    span_name: StringBuilder,
    span_kind: StringBuilder,
    status_code: StringBuilder,
    status_message: StringBuilder,
    is_root: BooleanBuilder,
    is_error: BooleanBuilder,
    http_request_method: StringBuilder,
    http_route: StringBuilder,
    http_response_status_code: Int32Builder,
    url_path: StringBuilder,
    rpc_system: StringBuilder,
    rpc_service: StringBuilder,
    rpc_method: StringBuilder,
    rpc_grpc_status_code: Int32Builder,
    db_system: StringBuilder,
    peer_service: StringBuilder,
    server_address: StringBuilder,
    error_type: StringBuilder,
    service_version: StringBuilder,
    service_namespace: StringBuilder,
    service_instance_id: StringBuilder,
    deployment_environment: StringBuilder,
    k8s_namespace_name: StringBuilder,
    k8s_pod_name: StringBuilder,
    attributes: StringBuilder,
    resource_attributes: StringBuilder,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    flags: Int64Builder,
    dropped_attributes_count: Int64Builder,
    dropped_events_count: Int64Builder,
    dropped_links_count: Int64Builder,
    events: EventBuilders,
    links: LinkBuilders,
}

#[derive(Default)]
struct EventBuilders {
    offsets: Vec<i32>,
    time: TimestampNanosecondBuilder,
    name: StringBuilder,
    attributes: StringBuilder,
    dropped: Int64Builder,
}

struct LinkBuilders {
    offsets: Vec<i32>,
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    trace_state: StringBuilder,
    attributes: StringBuilder,
    dropped: Int64Builder,
    flags: Int64Builder,
}

fn ts(capacity: usize) -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::with_capacity(capacity).with_timezone("UTC")
}

fn strings(capacity: usize) -> StringBuilder {
    StringBuilder::with_capacity(capacity, capacity * 8)
}

impl Builders {
    fn new(n: usize) -> Self {
        Self {
            trace_id: FixedSizeBinaryBuilder::with_capacity(n, 16),
            span_id: FixedSizeBinaryBuilder::with_capacity(n, 8),
            parent_span_id: FixedSizeBinaryBuilder::with_capacity(n, 8),
            trace_state: strings(n),
            start_time: ts(n),
            end_time: ts(n),
            duration_ns: Int64Builder::with_capacity(n),
            service_name: strings(n),
            span_name: strings(n),
            span_kind: strings(n),
            status_code: strings(n),
            status_message: strings(n),
            is_root: BooleanBuilder::with_capacity(n),
            is_error: BooleanBuilder::with_capacity(n),
            http_request_method: strings(n),
            http_route: strings(n),
            http_response_status_code: Int32Builder::with_capacity(n),
            url_path: strings(n),
            rpc_system: strings(n),
            rpc_service: strings(n),
            rpc_method: strings(n),
            rpc_grpc_status_code: Int32Builder::with_capacity(n),
            db_system: strings(n),
            peer_service: strings(n),
            server_address: strings(n),
            error_type: strings(n),
            service_version: strings(n),
            service_namespace: strings(n),
            service_instance_id: strings(n),
            deployment_environment: strings(n),
            k8s_namespace_name: strings(n),
            k8s_pod_name: strings(n),
            attributes: strings(n),
            resource_attributes: strings(n),
            scope_name: strings(n),
            scope_version: strings(n),
            flags: Int64Builder::with_capacity(n),
            dropped_attributes_count: Int64Builder::with_capacity(n),
            dropped_events_count: Int64Builder::with_capacity(n),
            dropped_links_count: Int64Builder::with_capacity(n),
            events: EventBuilders {
                offsets: vec![0],
                time: ts(0),
                ..Default::default()
            },
            links: LinkBuilders {
                offsets: vec![0],
                trace_id: FixedSizeBinaryBuilder::new(16),
                span_id: FixedSizeBinaryBuilder::new(8),
                trace_state: StringBuilder::new(),
                attributes: StringBuilder::new(),
                dropped: Int64Builder::new(),
                flags: Int64Builder::new(),
            },
        }
    }

    fn push(
        &mut self,
        span: &Span,
        start: i64,
        end: i64,
        res: &ResourceInfo,
        scope: (Option<&str>, Option<&str>),
        out: &mut Converted,
    ) -> Result<(), arrow::error::ArrowError> {
        // Links are checked first so a bad link rejects the span before any column is written.
        for link in &span.links {
            if link.trace_id.len() != 16 || link.span_id.len() != 8 {
                out.reject(|| {
                    format!(
                        "span {:?}: link ids must be 16 and 8 bytes, got {} and {}",
                        span.name,
                        link.trace_id.len(),
                        link.span_id.len()
                    )
                });
                return Ok(());
            }
        }
        let (hot, attrs) = Hot::extract(&span.attributes);
        let status = span.status.as_ref();
        let status_code = status.map_or(0, |s| s.code);
        self.trace_id.append_value(&span.trace_id)?;
        self.span_id.append_value(&span.span_id)?;
        if span.parent_span_id.is_empty() {
            self.parent_span_id.append_null();
        } else {
            self.parent_span_id.append_value(&span.parent_span_id)?;
        }
        self.trace_state.append_option(non_empty(&span.trace_state));
        self.start_time.append_value(start);
        self.end_time.append_value(end);
        self.duration_ns.append_value(end.saturating_sub(start));
        self.service_name.append_value(&res.service_name);
        self.span_name.append_value(&span.name);
        self.span_kind.append_value(kind_name(span.kind));
        self.status_code.append_value(status_name(status_code));
        self.status_message
            .append_option(status.and_then(|s| non_empty(&s.message)));
        self.is_root.append_value(span.parent_span_id.is_empty());
        self.is_error.append_value(is_error(
            status_code,
            span.kind,
            hot.http_response_status_code,
            hot.rpc_grpc_status_code,
        ));
        self.http_request_method
            .append_option(hot.http_request_method);
        self.http_route.append_option(hot.http_route);
        self.http_response_status_code
            .append_option(hot.http_response_status_code);
        self.url_path.append_option(hot.url_path);
        self.rpc_system.append_option(hot.rpc_system);
        self.rpc_service.append_option(hot.rpc_service);
        self.rpc_method.append_option(hot.rpc_method);
        self.rpc_grpc_status_code
            .append_option(hot.rpc_grpc_status_code);
        self.db_system.append_option(hot.db_system);
        self.peer_service.append_option(hot.peer_service);
        self.server_address.append_option(hot.server_address);
        self.error_type.append_option(hot.error_type);
        self.service_version
            .append_option(res.service_version.as_deref());
        self.service_namespace
            .append_option(res.service_namespace.as_deref());
        self.service_instance_id
            .append_option(res.service_instance_id.as_deref());
        self.deployment_environment
            .append_option(res.deployment_environment.as_deref());
        self.k8s_namespace_name
            .append_option(res.k8s_namespace_name.as_deref());
        self.k8s_pod_name.append_option(res.k8s_pod_name.as_deref());
        self.attributes.append_option(attrs);
        self.resource_attributes.append_option(res.json.as_deref());
        self.scope_name.append_option(scope.0);
        self.scope_version.append_option(scope.1);
        self.flags.append_value(i64::from(span.flags));
        self.dropped_attributes_count
            .append_value(i64::from(span.dropped_attributes_count));
        self.dropped_events_count
            .append_value(i64::from(span.dropped_events_count));
        self.dropped_links_count
            .append_value(i64::from(span.dropped_links_count));

        let ev = &mut self.events;
        for e in &span.events {
            // An event time past 2262 cannot be represented; clamp rather than drop the span.
            ev.time
                .append_value(nanos(e.time_unix_nano).unwrap_or(i64::MAX));
            ev.name.append_value(&e.name);
            ev.attributes
                .append_option(attrs_json(&e.attributes, |_| true));
            ev.dropped
                .append_value(i64::from(e.dropped_attributes_count));
        }
        ev.offsets.push(ev.name.len() as i32);

        let lk = &mut self.links;
        for l in &span.links {
            lk.trace_id.append_value(&l.trace_id)?;
            lk.span_id.append_value(&l.span_id)?;
            lk.trace_state.append_option(non_empty(&l.trace_state));
            lk.attributes
                .append_option(attrs_json(&l.attributes, |_| true));
            lk.dropped
                .append_value(i64::from(l.dropped_attributes_count));
            lk.flags.append_value(i64::from(l.flags));
        }
        lk.offsets.push(lk.trace_state.len() as i32);
        out.accepted += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let events = list_of_structs(
            schema::event_fields(),
            vec![
                Arc::new(self.events.time.finish()),
                Arc::new(self.events.name.finish()),
                Arc::new(self.events.attributes.finish()),
                Arc::new(self.events.dropped.finish()),
            ],
            self.events.offsets,
        )?;
        let links = list_of_structs(
            schema::link_fields(),
            vec![
                Arc::new(self.links.trace_id.finish()),
                Arc::new(self.links.span_id.finish()),
                Arc::new(self.links.trace_state.finish()),
                Arc::new(self.links.attributes.finish()),
                Arc::new(self.links.dropped.finish()),
                Arc::new(self.links.flags.finish()),
            ],
            self.links.offsets,
        )?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent_span_id.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.start_time.finish()),
            Arc::new(self.end_time.finish()),
            Arc::new(self.duration_ns.finish()),
            Arc::new(self.service_name.finish()),
            Arc::new(self.span_name.finish()),
            Arc::new(self.span_kind.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.status_message.finish()),
            Arc::new(self.is_root.finish()),
            Arc::new(self.is_error.finish()),
            Arc::new(self.http_request_method.finish()),
            Arc::new(self.http_route.finish()),
            Arc::new(self.http_response_status_code.finish()),
            Arc::new(self.url_path.finish()),
            Arc::new(self.rpc_system.finish()),
            Arc::new(self.rpc_service.finish()),
            Arc::new(self.rpc_method.finish()),
            Arc::new(self.rpc_grpc_status_code.finish()),
            Arc::new(self.db_system.finish()),
            Arc::new(self.peer_service.finish()),
            Arc::new(self.server_address.finish()),
            Arc::new(self.error_type.finish()),
            Arc::new(self.service_version.finish()),
            Arc::new(self.service_namespace.finish()),
            Arc::new(self.service_instance_id.finish()),
            Arc::new(self.deployment_environment.finish()),
            Arc::new(self.k8s_namespace_name.finish()),
            Arc::new(self.k8s_pod_name.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.resource_attributes.finish()),
            Arc::new(self.scope_name.finish()),
            Arc::new(self.scope_version.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.dropped_attributes_count.finish()),
            Arc::new(self.dropped_events_count.finish()),
            Arc::new(self.dropped_links_count.finish()),
            events,
            links,
        ];
        RecordBatch::try_new(schema::table(SPANS).schema(), columns)
    }
}

/// Converts a trace export request into rows of `spans`.
pub fn convert(req: &ExportTraceServiceRequest) -> Result<Converted, ConvertError> {
    let err = |source| ConvertError {
        table: SPANS,
        source,
    };
    let total: usize = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    let mut out = Converted::default();
    let mut b = Builders::new(total);
    for rs in &req.resource_spans {
        let res = ResourceInfo::new(rs.resource.as_ref());
        for ss in &rs.scope_spans {
            let scope = scope_columns(ss.scope.as_ref());
            for span in &ss.spans {
                match validate(span) {
                    Ok((start, end)) => b
                        .push(span, start, end, &res, scope, &mut out)
                        .map_err(err)?,
                    Err(reason) => out.reject(|| reason),
                }
            }
        }
    }
    if out.accepted > 0 {
        out.batches.push((SPANS, b.finish().map_err(err)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_classification_follows_semconv() {
        let (server, client) = (SpanKind::Server as i32, SpanKind::Client as i32);
        assert!(is_error(StatusCode::Error as i32, server, None, None));
        assert!(!is_error(StatusCode::Ok as i32, server, Some(500), None));
        assert!(is_error(0, server, Some(500), None));
        assert!(!is_error(0, server, Some(404), None));
        assert!(is_error(0, client, Some(404), None));
        assert!(is_error(0, server, None, Some(14)));
        assert!(!is_error(0, server, None, Some(5)));
        assert!(is_error(0, client, None, Some(5)));
        assert!(!is_error(0, SpanKind::Internal as i32, Some(500), Some(13)));
    }
}
