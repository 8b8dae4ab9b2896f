//! `ExportMetricsServiceRequest`: metrics of the five data types and their points.

use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, exponential_histogram_data_point, metric, number_data_point,
    summary_data_point,
};
use serde_json::Value;

use super::*;
use super::{common::*, fields::*, path::*};

pub(crate) fn resource_metrics(v: &Value, path: &Path<'_>) -> Result<ResourceMetrics> {
    let o = Obj::new(v, path)?;
    Ok(ResourceMetrics {
        resource: o.opt("resource", "resource", resource)?,
        scope_metrics: o.list("scopeMetrics", "scope_metrics", scope_metrics)?,
        schema_url: o.string("schemaUrl", "schema_url")?,
    })
}

pub(crate) fn scope_metrics(v: &Value, path: &Path<'_>) -> Result<ScopeMetrics> {
    let o = Obj::new(v, path)?;
    Ok(ScopeMetrics {
        scope: o.opt("scope", "scope", scope)?,
        metrics: o.list("metrics", "metrics", metric)?,
        schema_url: o.string("schemaUrl", "schema_url")?,
    })
}

pub(crate) type DataDecoder = fn(&Value, &Path<'_>) -> Result<metric::Data>;

pub(crate) const METRIC_DATA: [(&str, &str, DataDecoder); 5] = [
    ("gauge", "gauge", gauge),
    ("sum", "sum", sum),
    ("histogram", "histogram", histogram),
    (
        "exponentialHistogram",
        "exponential_histogram",
        exponential_histogram,
    ),
    ("summary", "summary", summary),
];

pub(crate) fn metric(v: &Value, path: &Path<'_>) -> Result<Metric> {
    let o = Obj::new(v, path)?;
    let mut data = None;
    let mut first: Option<&str> = None;
    for (camel, snake, decode) in METRIC_DATA {
        if let Some(d) = o.opt(camel, snake, decode)? {
            if let Some(prev) = first {
                return Err(path.err(format!(
                    "metric has more than one data field ({prev} and {camel})"
                )));
            }
            first = Some(camel);
            data = Some(d);
        }
    }
    // No data field at all: kept with `data: None`; the converter counts it as rejected.
    Ok(Metric {
        name: o.string("name", "name")?,
        description: o.string("description", "description")?,
        unit: o.string("unit", "unit")?,
        metadata: o.attributes("metadata", "metadata")?,
        data,
    })
}

pub(crate) fn temporality(o: &Obj<'_, '_>) -> Result<i32> {
    o.named(
        "aggregationTemporality",
        "aggregation_temporality",
        "AggregationTemporality",
        temporality_name,
    )
}

pub(crate) fn gauge(v: &Value, path: &Path<'_>) -> Result<metric::Data> {
    let o = Obj::new(v, path)?;
    Ok(metric::Data::Gauge(Gauge {
        data_points: o.list("dataPoints", "data_points", number_data_point)?,
    }))
}

pub(crate) fn sum(v: &Value, path: &Path<'_>) -> Result<metric::Data> {
    let o = Obj::new(v, path)?;
    Ok(metric::Data::Sum(Sum {
        data_points: o.list("dataPoints", "data_points", number_data_point)?,
        aggregation_temporality: temporality(&o)?,
        is_monotonic: o.boolean("isMonotonic", "is_monotonic")?,
    }))
}

pub(crate) fn histogram(v: &Value, path: &Path<'_>) -> Result<metric::Data> {
    let o = Obj::new(v, path)?;
    Ok(metric::Data::Histogram(Histogram {
        data_points: o.list("dataPoints", "data_points", histogram_data_point)?,
        aggregation_temporality: temporality(&o)?,
    }))
}

pub(crate) fn exponential_histogram(v: &Value, path: &Path<'_>) -> Result<metric::Data> {
    let o = Obj::new(v, path)?;
    Ok(metric::Data::ExponentialHistogram(ExponentialHistogram {
        data_points: o.list("dataPoints", "data_points", exp_histogram_data_point)?,
        aggregation_temporality: temporality(&o)?,
    }))
}

pub(crate) fn summary(v: &Value, path: &Path<'_>) -> Result<metric::Data> {
    let o = Obj::new(v, path)?;
    Ok(metric::Data::Summary(Summary {
        data_points: o.list("dataPoints", "data_points", summary_data_point)?,
    }))
}

pub(crate) fn data_point_flags(o: &Obj<'_, '_>) -> Result<u32> {
    o.named("flags", "flags", "DataPointFlags", data_point_flags_name)
}

/// The `asDouble` / `asInt` oneof shared by NumberDataPoint and Exemplar.
pub(crate) enum NumberValue {
    Double(f64),
    Int(i64),
}

pub(crate) fn number_value(o: &Obj<'_, '_>) -> Result<Option<NumberValue>> {
    let d = o.opt_double("asDouble", "as_double")?;
    let i = o.opt("asInt", "as_int", int::<i64>)?;
    match (d, i) {
        (Some(_), Some(_)) => Err(o.path.err("both asDouble and asInt are set")),
        (Some(d), None) => Ok(Some(NumberValue::Double(d))),
        (None, Some(i)) => Ok(Some(NumberValue::Int(i))),
        (None, None) => Ok(None),
    }
}

pub(crate) fn number_data_point(v: &Value, path: &Path<'_>) -> Result<NumberDataPoint> {
    let o = Obj::new(v, path)?;
    Ok(NumberDataPoint {
        attributes: o.attributes("attributes", "attributes")?,
        start_time_unix_nano: o.int("startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: o.int("timeUnixNano", "time_unix_nano")?,
        exemplars: o.list("exemplars", "exemplars", exemplar)?,
        flags: data_point_flags(&o)?,
        value: number_value(&o)?.map(|n| match n {
            NumberValue::Double(d) => number_data_point::Value::AsDouble(d),
            NumberValue::Int(i) => number_data_point::Value::AsInt(i),
        }),
    })
}

pub(crate) fn exemplar(v: &Value, path: &Path<'_>) -> Result<Exemplar> {
    let o = Obj::new(v, path)?;
    Ok(Exemplar {
        filtered_attributes: o.attributes("filteredAttributes", "filtered_attributes")?,
        time_unix_nano: o.int("timeUnixNano", "time_unix_nano")?,
        span_id: o.hex("spanId", "span_id")?,
        trace_id: o.hex("traceId", "trace_id")?,
        value: number_value(&o)?.map(|n| match n {
            NumberValue::Double(d) => exemplar::Value::AsDouble(d),
            NumberValue::Int(i) => exemplar::Value::AsInt(i),
        }),
    })
}

pub(crate) fn histogram_data_point(v: &Value, path: &Path<'_>) -> Result<HistogramDataPoint> {
    let o = Obj::new(v, path)?;
    Ok(HistogramDataPoint {
        attributes: o.attributes("attributes", "attributes")?,
        start_time_unix_nano: o.int("startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: o.int("timeUnixNano", "time_unix_nano")?,
        count: o.int("count", "count")?,
        sum: o.opt_double("sum", "sum")?,
        bucket_counts: o.list("bucketCounts", "bucket_counts", int::<u64>)?,
        explicit_bounds: o.list("explicitBounds", "explicit_bounds", double)?,
        exemplars: o.list("exemplars", "exemplars", exemplar)?,
        flags: data_point_flags(&o)?,
        min: o.opt_double("min", "min")?,
        max: o.opt_double("max", "max")?,
    })
}

pub(crate) fn buckets(
    v: &Value,
    path: &Path<'_>,
) -> Result<exponential_histogram_data_point::Buckets> {
    let o = Obj::new(v, path)?;
    Ok(exponential_histogram_data_point::Buckets {
        offset: o.int("offset", "offset")?,
        bucket_counts: o.list("bucketCounts", "bucket_counts", int::<u64>)?,
    })
}

pub(crate) fn exp_histogram_data_point(
    v: &Value,
    path: &Path<'_>,
) -> Result<ExponentialHistogramDataPoint> {
    let o = Obj::new(v, path)?;
    Ok(ExponentialHistogramDataPoint {
        attributes: o.attributes("attributes", "attributes")?,
        start_time_unix_nano: o.int("startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: o.int("timeUnixNano", "time_unix_nano")?,
        count: o.int("count", "count")?,
        sum: o.opt_double("sum", "sum")?,
        scale: o.int("scale", "scale")?,
        zero_count: o.int("zeroCount", "zero_count")?,
        positive: o.opt("positive", "positive", buckets)?,
        negative: o.opt("negative", "negative", buckets)?,
        flags: data_point_flags(&o)?,
        exemplars: o.list("exemplars", "exemplars", exemplar)?,
        min: o.opt_double("min", "min")?,
        max: o.opt_double("max", "max")?,
        zero_threshold: o.double("zeroThreshold", "zero_threshold")?,
    })
}

pub(crate) fn value_at_quantile(
    v: &Value,
    path: &Path<'_>,
) -> Result<summary_data_point::ValueAtQuantile> {
    let o = Obj::new(v, path)?;
    Ok(summary_data_point::ValueAtQuantile {
        quantile: o.double("quantile", "quantile")?,
        value: o.double("value", "value")?,
    })
}

pub(crate) fn summary_data_point(v: &Value, path: &Path<'_>) -> Result<SummaryDataPoint> {
    let o = Obj::new(v, path)?;
    Ok(SummaryDataPoint {
        attributes: o.attributes("attributes", "attributes")?,
        start_time_unix_nano: o.int("startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: o.int("timeUnixNano", "time_unix_nano")?,
        count: o.int("count", "count")?,
        sum: o.double("sum", "sum")?,
        quantile_values: o.list("quantileValues", "quantile_values", value_at_quantile)?,
        flags: data_point_flags(&o)?,
    })
}
