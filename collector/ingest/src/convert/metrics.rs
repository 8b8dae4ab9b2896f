//! Metrics → `metric_points`, `histogram_points`, `exp_histogram_points`, `summary_points`.
//!
//! One long table per point type (not one table per metric name), so a new metric never changes
//! the schema.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, FixedSizeBinaryBuilder, Float64Builder, Int32Builder,
    Int64Builder, ListBuilder, RecordBatch, StringBuilder, TimestampNanosecondBuilder,
};
use arrow::datatypes::{DataType, Field};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, Metric, exemplar, metric::Data, number_data_point,
};

use super::list_of_structs;
use super::{ConvertError, Converted, ResourceInfo, attrs_json, nanos, non_empty, scope_columns};
use headroom_storage::schema::{
    self, EXP_HISTOGRAM_POINTS, HISTOGRAM_POINTS, METRIC_POINTS, SUMMARY_POINTS,
};

fn temporality(t: i32) -> Option<&'static str> {
    match AggregationTemporality::try_from(t) {
        Ok(AggregationTemporality::Delta) => Some("delta"),
        Ok(AggregationTemporality::Cumulative) => Some("cumulative"),
        _ => None,
    }
}

/// Columns every metric table starts with.
struct Common {
    time: TimestampNanosecondBuilder,
    start_time: TimestampNanosecondBuilder,
    service_name: StringBuilder,
    service_instance_id: StringBuilder,
    metric_name: StringBuilder,
    metric_description: StringBuilder,
    metric_unit: StringBuilder,
    metric_type: StringBuilder,
    attributes: StringBuilder,
    resource_attributes: StringBuilder,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    flags: Int64Builder,
    temporality: StringBuilder,
    exemplars: Exemplars,
}

struct Exemplars {
    offsets: Vec<i32>,
    time: TimestampNanosecondBuilder,
    value: Float64Builder,
    value_int: Int64Builder,
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    filtered_attributes: StringBuilder,
}

impl Exemplars {
    fn new() -> Self {
        Self {
            offsets: vec![0],
            time: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            value: Float64Builder::new(),
            value_int: Int64Builder::new(),
            trace_id: FixedSizeBinaryBuilder::new(16),
            span_id: FixedSizeBinaryBuilder::new(8),
            filtered_attributes: StringBuilder::new(),
        }
    }

    /// Exemplar ids of the wrong length are stored as NULL: the point itself is still valid.
    fn push(&mut self, exemplars: &[Exemplar]) -> Result<(), arrow::error::ArrowError> {
        for e in exemplars {
            self.time
                .append_value(nanos(e.time_unix_nano).unwrap_or(i64::MAX));
            match e.value {
                Some(exemplar::Value::AsDouble(d)) => {
                    self.value.append_value(d);
                    self.value_int.append_null();
                }
                Some(exemplar::Value::AsInt(i)) => {
                    self.value.append_value(i as f64);
                    self.value_int.append_value(i);
                }
                None => {
                    self.value.append_value(f64::NAN);
                    self.value_int.append_null();
                }
            }
            if e.trace_id.len() == 16 {
                self.trace_id.append_value(&e.trace_id)?;
            } else {
                self.trace_id.append_null();
            }
            if e.span_id.len() == 8 {
                self.span_id.append_value(&e.span_id)?;
            } else {
                self.span_id.append_null();
            }
            self.filtered_attributes
                .append_option(attrs_json(&e.filtered_attributes, |_| true));
        }
        self.offsets.push(self.value.len() as i32);
        Ok(())
    }

    fn finish(mut self) -> Result<ArrayRef, arrow::error::ArrowError> {
        list_of_structs(
            schema::exemplar_fields(),
            vec![
                Arc::new(self.time.finish()),
                Arc::new(self.value.finish()),
                Arc::new(self.value_int.finish()),
                Arc::new(self.trace_id.finish()),
                Arc::new(self.span_id.finish()),
                Arc::new(self.filtered_attributes.finish()),
            ],
            self.offsets,
        )
    }
}

/// What every point shares, borrowed from its metric, scope and resource.
struct PointCtx<'a> {
    res: &'a ResourceInfo,
    scope: (Option<&'a str>, Option<&'a str>),
    metric: &'a Metric,
    metric_type: &'static str,
    temporality: Option<&'static str>,
}

/// Fields of one data point that the common columns need.
struct PointHead<'a> {
    time: u64,
    start_time: u64,
    attributes: &'a [KeyValue],
    flags: u32,
    exemplars: &'a [Exemplar],
}

impl Common {
    fn new() -> Self {
        Self {
            time: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            start_time: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            service_name: StringBuilder::new(),
            service_instance_id: StringBuilder::new(),
            metric_name: StringBuilder::new(),
            metric_description: StringBuilder::new(),
            metric_unit: StringBuilder::new(),
            metric_type: StringBuilder::new(),
            attributes: StringBuilder::new(),
            resource_attributes: StringBuilder::new(),
            scope_name: StringBuilder::new(),
            scope_version: StringBuilder::new(),
            flags: Int64Builder::new(),
            temporality: StringBuilder::new(),
            exemplars: Exemplars::new(),
        }
    }

    fn len(&self) -> usize {
        self.time.len()
    }

    /// Validates and appends the common columns; `Err` is the rejection reason.
    fn push(
        &mut self,
        ctx: &PointCtx,
        p: PointHead,
    ) -> Result<Result<(), String>, arrow::error::ArrowError> {
        let (Some(time), Some(start)) = (nanos(p.time), nanos(p.start_time)) else {
            return Ok(Err(format!(
                "metric {:?}: timestamp out of range",
                ctx.metric.name
            )));
        };
        self.time.append_value(time);
        self.start_time.append_option((start != 0).then_some(start));
        self.service_name.append_value(&ctx.res.service_name);
        self.service_instance_id
            .append_option(ctx.res.service_instance_id.as_deref());
        self.metric_name.append_value(&ctx.metric.name);
        self.metric_description
            .append_option(non_empty(&ctx.metric.description));
        self.metric_unit.append_option(non_empty(&ctx.metric.unit));
        self.metric_type.append_value(ctx.metric_type);
        self.attributes
            .append_option(attrs_json(p.attributes, |_| true));
        self.resource_attributes
            .append_option(ctx.res.json.as_deref());
        self.scope_name.append_option(ctx.scope.0);
        self.scope_version.append_option(ctx.scope.1);
        self.flags.append_value(i64::from(p.flags));
        self.temporality.append_option(ctx.temporality);
        self.exemplars.push(p.exemplars)?;
        Ok(Ok(()))
    }

    /// The common columns in schema order; `with_temporality` is false for summaries.
    fn finish(mut self, with_temporality: bool) -> Result<Vec<ArrayRef>, arrow::error::ArrowError> {
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.start_time.finish()),
            Arc::new(self.service_name.finish()),
            Arc::new(self.service_instance_id.finish()),
            Arc::new(self.metric_name.finish()),
            Arc::new(self.metric_description.finish()),
            Arc::new(self.metric_unit.finish()),
            Arc::new(self.metric_type.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.resource_attributes.finish()),
            Arc::new(self.scope_name.finish()),
            Arc::new(self.scope_version.finish()),
            Arc::new(self.flags.finish()),
        ];
        if with_temporality {
            cols.push(Arc::new(self.temporality.finish()));
        }
        cols.push(self.exemplars.finish()?);
        Ok(cols)
    }
}

fn i64_list() -> ListBuilder<Int64Builder> {
    ListBuilder::new(Int64Builder::new()).with_field(Arc::new(Field::new(
        "item",
        DataType::Int64,
        false,
    )))
}

fn f64_list() -> ListBuilder<Float64Builder> {
    ListBuilder::new(Float64Builder::new()).with_field(Arc::new(Field::new(
        "item",
        DataType::Float64,
        false,
    )))
}

/// Counts are u64 in OTLP; beyond i64::MAX they cannot be stored and the point is rejected.
fn count(v: u64, what: &str, metric: &str) -> Result<i64, String> {
    i64::try_from(v).map_err(|_| format!("metric {metric:?}: {what} {v} exceeds 2^63-1"))
}

fn counts(v: &[u64], metric: &str) -> Result<Vec<i64>, String> {
    v.iter()
        .map(|c| count(*c, "bucket count", metric))
        .collect()
}

struct Tables {
    number: Common,
    number_monotonic: BooleanBuilder,
    number_value: Float64Builder,
    number_value_int: Int64Builder,
    hist: Common,
    hist_count: Int64Builder,
    hist_sum: Float64Builder,
    hist_min: Float64Builder,
    hist_max: Float64Builder,
    hist_buckets: ListBuilder<Int64Builder>,
    hist_bounds: ListBuilder<Float64Builder>,
    exp: Common,
    exp_count: Int64Builder,
    exp_sum: Float64Builder,
    exp_min: Float64Builder,
    exp_max: Float64Builder,
    exp_scale: Int32Builder,
    exp_zero_count: Int64Builder,
    exp_zero_threshold: Float64Builder,
    exp_pos_offset: Int32Builder,
    exp_pos: ListBuilder<Int64Builder>,
    exp_neg_offset: Int32Builder,
    exp_neg: ListBuilder<Int64Builder>,
    summary: Common,
    summary_count: Int64Builder,
    summary_sum: Float64Builder,
    summary_q_offsets: Vec<i32>,
    summary_q: Float64Builder,
    summary_v: Float64Builder,
}

impl Tables {
    fn new() -> Self {
        Self {
            number: Common::new(),
            number_monotonic: BooleanBuilder::new(),
            number_value: Float64Builder::new(),
            number_value_int: Int64Builder::new(),
            hist: Common::new(),
            hist_count: Int64Builder::new(),
            hist_sum: Float64Builder::new(),
            hist_min: Float64Builder::new(),
            hist_max: Float64Builder::new(),
            hist_buckets: i64_list(),
            hist_bounds: f64_list(),
            exp: Common::new(),
            exp_count: Int64Builder::new(),
            exp_sum: Float64Builder::new(),
            exp_min: Float64Builder::new(),
            exp_max: Float64Builder::new(),
            exp_scale: Int32Builder::new(),
            exp_zero_count: Int64Builder::new(),
            exp_zero_threshold: Float64Builder::new(),
            exp_pos_offset: Int32Builder::new(),
            exp_pos: i64_list(),
            exp_neg_offset: Int32Builder::new(),
            exp_neg: i64_list(),
            summary: Common::new(),
            summary_count: Int64Builder::new(),
            summary_sum: Float64Builder::new(),
            summary_q_offsets: vec![0],
            summary_q: Float64Builder::new(),
            summary_v: Float64Builder::new(),
        }
    }

    fn metric(
        &mut self,
        res: &ResourceInfo,
        scope: (Option<&str>, Option<&str>),
        metric: &Metric,
        out: &mut Converted,
    ) -> Result<(), arrow::error::ArrowError> {
        let name = metric.name.as_str();
        let mut ctx = PointCtx {
            res,
            scope,
            metric,
            metric_type: "gauge",
            temporality: None,
        };
        let accept = |r: Result<(), String>, out: &mut Converted| match r {
            Ok(()) => out.accepted += 1,
            Err(reason) => out.reject(|| reason),
        };
        match &metric.data {
            None => out.reject(|| format!("metric {name:?} has no data (gauge, sum, histogram, exponential histogram or summary)")),
            Some(Data::Gauge(_)) | Some(Data::Sum(_)) => {
                let (points, monotonic) = match &metric.data {
                    Some(Data::Sum(s)) => {
                        ctx.metric_type = "sum";
                        ctx.temporality = temporality(s.aggregation_temporality);
                        (&s.data_points, Some(s.is_monotonic))
                    }
                    Some(Data::Gauge(g)) => (&g.data_points, None),
                    _ => unreachable!("matched above"),
                };
                for p in points {
                    let head = PointHead {
                        time: p.time_unix_nano,
                        start_time: p.start_time_unix_nano,
                        attributes: &p.attributes,
                        flags: p.flags,
                        exemplars: &p.exemplars,
                    };
                    let r = self.number.push(&ctx, head)?;
                    if r.is_ok() {
                        self.number_monotonic.append_option(monotonic);
                        match p.value {
                            Some(number_data_point::Value::AsDouble(d)) => {
                                self.number_value.append_value(d);
                                self.number_value_int.append_null();
                            }
                            Some(number_data_point::Value::AsInt(i)) => {
                                self.number_value.append_value(i as f64);
                                self.number_value_int.append_value(i);
                            }
                            // No value: the point carries the "no recorded value" flag.
                            None => {
                                self.number_value.append_value(f64::NAN);
                                self.number_value_int.append_null();
                            }
                        }
                    }
                    accept(r, out);
                }
            }
            Some(Data::Histogram(h)) => {
                ctx.metric_type = "histogram";
                ctx.temporality = temporality(h.aggregation_temporality);
                for p in &h.data_points {
                    let checked = count(p.count, "count", name).and_then(|c| {
                        let buckets = counts(&p.bucket_counts, name)?;
                        if !p.bucket_counts.is_empty()
                            && p.bucket_counts.len() != p.explicit_bounds.len() + 1
                        {
                            return Err(format!(
                                "metric {name:?}: {} bucket counts for {} explicit bounds (want bounds + 1)",
                                p.bucket_counts.len(),
                                p.explicit_bounds.len()
                            ));
                        }
                        Ok((c, buckets))
                    });
                    let (c, buckets) = match checked {
                        Ok(v) => v,
                        Err(reason) => {
                            out.reject(|| reason);
                            continue;
                        }
                    };
                    let head = PointHead {
                        time: p.time_unix_nano,
                        start_time: p.start_time_unix_nano,
                        attributes: &p.attributes,
                        flags: p.flags,
                        exemplars: &p.exemplars,
                    };
                    let r = self.hist.push(&ctx, head)?;
                    if r.is_ok() {
                        self.hist_count.append_value(c);
                        self.hist_sum.append_option(p.sum);
                        self.hist_min.append_option(p.min);
                        self.hist_max.append_option(p.max);
                        self.hist_buckets.values().append_slice(&buckets);
                        self.hist_buckets.append(true);
                        self.hist_bounds.values().append_slice(&p.explicit_bounds);
                        self.hist_bounds.append(true);
                    }
                    accept(r, out);
                }
            }
            Some(Data::ExponentialHistogram(h)) => {
                ctx.metric_type = "exponential_histogram";
                ctx.temporality = temporality(h.aggregation_temporality);
                for p in &h.data_points {
                    let empty = Vec::new();
                    let pos = p.positive.as_ref();
                    let neg = p.negative.as_ref();
                    let checked = (|| {
                        Ok::<_, String>((
                            count(p.count, "count", name)?,
                            count(p.zero_count, "zero_count", name)?,
                            counts(pos.map_or(&empty, |b| &b.bucket_counts), name)?,
                            counts(neg.map_or(&empty, |b| &b.bucket_counts), name)?,
                        ))
                    })();
                    let (c, zc, pos_counts, neg_counts) = match checked {
                        Ok(v) => v,
                        Err(reason) => {
                            out.reject(|| reason);
                            continue;
                        }
                    };
                    let head = PointHead {
                        time: p.time_unix_nano,
                        start_time: p.start_time_unix_nano,
                        attributes: &p.attributes,
                        flags: p.flags,
                        exemplars: &p.exemplars,
                    };
                    let r = self.exp.push(&ctx, head)?;
                    if r.is_ok() {
                        self.exp_count.append_value(c);
                        self.exp_sum.append_option(p.sum);
                        self.exp_min.append_option(p.min);
                        self.exp_max.append_option(p.max);
                        self.exp_scale.append_value(p.scale);
                        self.exp_zero_count.append_value(zc);
                        self.exp_zero_threshold.append_value(p.zero_threshold);
                        self.exp_pos_offset.append_value(pos.map_or(0, |b| b.offset));
                        self.exp_pos.values().append_slice(&pos_counts);
                        self.exp_pos.append(true);
                        self.exp_neg_offset.append_value(neg.map_or(0, |b| b.offset));
                        self.exp_neg.values().append_slice(&neg_counts);
                        self.exp_neg.append(true);
                    }
                    accept(r, out);
                }
            }
            Some(Data::Summary(s)) => {
                ctx.metric_type = "summary";
                for p in &s.data_points {
                    let c = match count(p.count, "count", name) {
                        Ok(c) => c,
                        Err(reason) => {
                            out.reject(|| reason);
                            continue;
                        }
                    };
                    let head = PointHead {
                        time: p.time_unix_nano,
                        start_time: p.start_time_unix_nano,
                        attributes: &p.attributes,
                        flags: p.flags,
                        exemplars: &[],
                    };
                    let r = self.summary.push(&ctx, head)?;
                    if r.is_ok() {
                        self.summary_count.append_value(c);
                        self.summary_sum.append_value(p.sum);
                        for q in &p.quantile_values {
                            self.summary_q.append_value(q.quantile);
                            self.summary_v.append_value(q.value);
                        }
                        self.summary_q_offsets.push(self.summary_q.len() as i32);
                    }
                    accept(r, out);
                }
            }
        }
        Ok(())
    }

    fn finish(mut self, out: &mut Converted) -> Result<(), ConvertError> {
        fn batch(table: &'static str, cols: Vec<ArrayRef>) -> Result<RecordBatch, ConvertError> {
            RecordBatch::try_new(schema::table(table).schema(), cols)
                .map_err(|source| ConvertError { table, source })
        }
        let err = |table| move |source| ConvertError { table, source };
        if self.number.len() > 0 {
            let mut cols = self.number.finish(true).map_err(err(METRIC_POINTS))?;
            let exemplars = cols.pop();
            cols.push(Arc::new(self.number_monotonic.finish()));
            cols.push(Arc::new(self.number_value.finish()));
            cols.push(Arc::new(self.number_value_int.finish()));
            cols.extend(exemplars);
            out.batches
                .push((METRIC_POINTS, batch(METRIC_POINTS, cols)?));
        }
        if self.hist.len() > 0 {
            let mut cols = self.hist.finish(true).map_err(err(HISTOGRAM_POINTS))?;
            let exemplars = cols.pop();
            cols.push(Arc::new(self.hist_count.finish()));
            cols.push(Arc::new(self.hist_sum.finish()));
            cols.push(Arc::new(self.hist_min.finish()));
            cols.push(Arc::new(self.hist_max.finish()));
            cols.push(Arc::new(self.hist_buckets.finish()));
            cols.push(Arc::new(self.hist_bounds.finish()));
            cols.extend(exemplars);
            out.batches
                .push((HISTOGRAM_POINTS, batch(HISTOGRAM_POINTS, cols)?));
        }
        if self.exp.len() > 0 {
            let mut cols = self.exp.finish(true).map_err(err(EXP_HISTOGRAM_POINTS))?;
            let exemplars = cols.pop();
            cols.push(Arc::new(self.exp_count.finish()));
            cols.push(Arc::new(self.exp_sum.finish()));
            cols.push(Arc::new(self.exp_min.finish()));
            cols.push(Arc::new(self.exp_max.finish()));
            cols.push(Arc::new(self.exp_scale.finish()));
            cols.push(Arc::new(self.exp_zero_count.finish()));
            cols.push(Arc::new(self.exp_zero_threshold.finish()));
            cols.push(Arc::new(self.exp_pos_offset.finish()));
            cols.push(Arc::new(self.exp_pos.finish()));
            cols.push(Arc::new(self.exp_neg_offset.finish()));
            cols.push(Arc::new(self.exp_neg.finish()));
            cols.extend(exemplars);
            out.batches
                .push((EXP_HISTOGRAM_POINTS, batch(EXP_HISTOGRAM_POINTS, cols)?));
        }
        if self.summary.len() > 0 {
            let mut cols = self.summary.finish(false).map_err(err(SUMMARY_POINTS))?;
            // Summaries have no exemplars column.
            cols.pop();
            cols.push(Arc::new(self.summary_count.finish()));
            cols.push(Arc::new(self.summary_sum.finish()));
            cols.push(
                list_of_structs(
                    schema::quantile_fields(),
                    vec![
                        Arc::new(self.summary_q.finish()),
                        Arc::new(self.summary_v.finish()),
                    ],
                    self.summary_q_offsets,
                )
                .map_err(err(SUMMARY_POINTS))?,
            );
            out.batches
                .push((SUMMARY_POINTS, batch(SUMMARY_POINTS, cols)?));
        }
        Ok(())
    }
}

/// Converts a metrics export request into rows of the four metric tables.
pub fn convert(req: &ExportMetricsServiceRequest) -> Result<Converted, ConvertError> {
    let mut out = Converted::default();
    let mut t = Tables::new();
    for rm in &req.resource_metrics {
        let res = ResourceInfo::new(rm.resource.as_ref());
        for sm in &rm.scope_metrics {
            let scope = scope_columns(sm.scope.as_ref());
            for metric in &sm.metrics {
                t.metric(&res, scope, metric, &mut out)
                    .map_err(|source| ConvertError {
                        table: METRIC_POINTS,
                        source,
                    })?;
            }
        }
    }
    t.finish(&mut out)?;
    Ok(out)
}
