//! `ExportLogsServiceRequest`: resource logs, scope logs, log records.

use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use serde_json::Value;

use super::*;
use super::{common::*, fields::*, path::*};

pub(crate) fn resource_logs(v: &Value, path: &Path<'_>) -> Result<ResourceLogs> {
    let o = Obj::new(v, path)?;
    Ok(ResourceLogs {
        resource: o.opt("resource", "resource", resource)?,
        scope_logs: o.list("scopeLogs", "scope_logs", scope_logs)?,
        schema_url: o.string("schemaUrl", "schema_url")?,
    })
}

pub(crate) fn scope_logs(v: &Value, path: &Path<'_>) -> Result<ScopeLogs> {
    let o = Obj::new(v, path)?;
    Ok(ScopeLogs {
        scope: o.opt("scope", "scope", scope)?,
        log_records: o.list("logRecords", "log_records", log_record)?,
        schema_url: o.string("schemaUrl", "schema_url")?,
    })
}

pub(crate) fn log_record(v: &Value, path: &Path<'_>) -> Result<LogRecord> {
    let o = Obj::new(v, path)?;
    Ok(LogRecord {
        time_unix_nano: o.int("timeUnixNano", "time_unix_nano")?,
        observed_time_unix_nano: o.int("observedTimeUnixNano", "observed_time_unix_nano")?,
        severity_number: o.named(
            "severityNumber",
            "severity_number",
            "SeverityNumber",
            severity_name,
        )?,
        severity_text: o.string("severityText", "severity_text")?,
        body: o.opt("body", "body", |v, p| any_value(v, p, 1))?,
        attributes: o.attributes("attributes", "attributes")?,
        dropped_attributes_count: o.int("droppedAttributesCount", "dropped_attributes_count")?,
        flags: o.named("flags", "flags", "LogRecordFlags", log_flags_name)?,
        trace_id: o.hex("traceId", "trace_id")?,
        span_id: o.hex("spanId", "span_id")?,
        event_name: o.string("eventName", "event_name")?,
    })
}
