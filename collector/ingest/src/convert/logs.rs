//! Logs → the `logs` table.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeBinaryBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampNanosecondBuilder,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use super::{
    ConvertError, Converted, ResourceInfo, attrs_json, nanos, non_empty, scope_columns,
    write_any_value,
};
use headroom_storage::schema::{self, LOGS};

/// A string body is stored as is; any other body as typed JSON.
fn body_text(r: &LogRecord) -> Option<String> {
    let body = r.body.as_ref()?;
    match body.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        _ => {
            let mut s = String::new();
            write_any_value(&mut s, Some(body), 0);
            Some(s)
        }
    }
}

fn validate(r: &LogRecord) -> Result<(i64, Option<i64>), String> {
    if !r.trace_id.is_empty() && r.trace_id.len() != 16 {
        return Err(format!(
            "log record: trace_id must be empty or 16 bytes, got {}",
            r.trace_id.len()
        ));
    }
    if !r.span_id.is_empty() && r.span_id.len() != 8 {
        return Err(format!(
            "log record: span_id must be empty or 8 bytes, got {}",
            r.span_id.len()
        ));
    }
    let (Some(time), Some(observed)) = (nanos(r.time_unix_nano), nanos(r.observed_time_unix_nano))
    else {
        return Err("log record: timestamp out of range".into());
    };
    let observed = (observed != 0).then_some(observed);
    // The spec lets `time` be unset; the observation time then places the record.
    let time = if time != 0 {
        time
    } else {
        observed.unwrap_or(0)
    };
    Ok((time, observed))
}

/// Converts a logs export request into rows of `logs`.
pub fn convert(req: &ExportLogsServiceRequest) -> Result<Converted, ConvertError> {
    let err = |source| ConvertError {
        table: LOGS,
        source,
    };
    let mut out = Converted::default();
    let mut time = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let mut observed_time = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let mut service_name = StringBuilder::new();
    let mut service_instance_id = StringBuilder::new();
    let mut severity_number = Int32Builder::new();
    let mut severity_text = StringBuilder::new();
    let mut body = StringBuilder::new();
    let mut trace_id = FixedSizeBinaryBuilder::new(16);
    let mut span_id = FixedSizeBinaryBuilder::new(8);
    let mut flags = Int64Builder::new();
    let mut event_name = StringBuilder::new();
    let mut attributes = StringBuilder::new();
    let mut resource_attributes = StringBuilder::new();
    let mut scope_name = StringBuilder::new();
    let mut scope_version = StringBuilder::new();
    let mut dropped = Int64Builder::new();
    for rl in &req.resource_logs {
        let res = ResourceInfo::new(rl.resource.as_ref());
        for sl in &rl.scope_logs {
            let (scope_name_value, scope_version_value) = scope_columns(sl.scope.as_ref());
            for r in &sl.log_records {
                let (t, observed) = match validate(r) {
                    Ok(v) => v,
                    Err(reason) => {
                        out.reject(|| reason);
                        continue;
                    }
                };
                time.append_value(t);
                observed_time.append_option(observed);
                service_name.append_value(&res.service_name);
                service_instance_id.append_option(res.service_instance_id.as_deref());
                severity_number.append_value(r.severity_number);
                severity_text.append_option(non_empty(&r.severity_text));
                body.append_option(body_text(r));
                if r.trace_id.is_empty() {
                    trace_id.append_null();
                } else {
                    trace_id.append_value(&r.trace_id).map_err(err)?;
                }
                if r.span_id.is_empty() {
                    span_id.append_null();
                } else {
                    span_id.append_value(&r.span_id).map_err(err)?;
                }
                flags.append_value(i64::from(r.flags));
                event_name.append_option(non_empty(&r.event_name));
                attributes.append_option(attrs_json(&r.attributes, |_| true));
                resource_attributes.append_option(res.json.as_deref());
                scope_name.append_option(scope_name_value);
                scope_version.append_option(scope_version_value);
                dropped.append_value(i64::from(r.dropped_attributes_count));
                out.accepted += 1;
            }
        }
    }
    if out.accepted > 0 {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(time.finish()),
            Arc::new(observed_time.finish()),
            Arc::new(service_name.finish()),
            Arc::new(service_instance_id.finish()),
            Arc::new(severity_number.finish()),
            Arc::new(severity_text.finish()),
            Arc::new(body.finish()),
            Arc::new(trace_id.finish()),
            Arc::new(span_id.finish()),
            Arc::new(flags.finish()),
            Arc::new(event_name.finish()),
            Arc::new(attributes.finish()),
            Arc::new(resource_attributes.finish()),
            Arc::new(scope_name.finish()),
            Arc::new(scope_version.finish()),
            Arc::new(dropped.finish()),
        ];
        let batch = RecordBatch::try_new(schema::table(LOGS).schema(), cols).map_err(err)?;
        out.batches.push((LOGS, batch));
    }
    Ok(out)
}
