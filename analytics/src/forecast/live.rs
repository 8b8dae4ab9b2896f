//! Live load forecasts per service: the recent load of every service on a step grid, read
//! with SQL from the KPI views, forecast, and published as the `forecasts` table.
//!
//! Metrics: `requests` (requests per second served, from `server_requests`; a step without
//! requests is a real zero) and `cpu_utilization` (the mean over a service's instances, from
//! `service_saturation_1m`; steps without points are filled like any gap). The last,
//! incomplete step is left out.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};

use super::features::{Grid, fill_grid};
use super::{Forecast, ForecastOptions, Seasonality, forecast};
use crate::QueryEngine;
use crate::error::QueryError;

/// The table the forecasts are published in.
pub const TABLE: &str = "forecasts";

/// What a forecast covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub step_ns: i64,
    pub horizon_steps: usize,
    pub history_steps: usize,
}

/// A load metric that can be forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Requests,
    CpuUtilization,
}

impl Metric {
    pub const ALL: [Metric; 2] = [Metric::Requests, Metric::CpuUtilization];

    pub fn name(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::CpuUtilization => "cpu_utilization",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Self::Requests => "requests/s",
            Self::CpuUtilization => "1",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    fn query(self, step_ns: i64, from_ns: i64, to_ns: i64, service: Option<&str>) -> String {
        let step = format!("INTERVAL '{} seconds'", step_ns / 1_000_000_000);
        let only = service.map_or(String::new(), |s| {
            format!(" AND service_name = '{}'", s.replace('\'', "''"))
        });
        let (value, time, table) = match self {
            Self::Requests => (
                format!("CAST(count(*) AS DOUBLE) / {}", step_ns as f64 / 1e9),
                "start_time",
                "server_requests",
            ),
            Self::CpuUtilization => (
                "avg(cpu_utilization)".to_owned(),
                "\"time\"",
                "service_saturation_1m",
            ),
        };
        format!(
            "SELECT service_name, \
             CAST(date_bin({step}, {time}, TIMESTAMP '1970-01-01T00:00:00Z') AS BIGINT) AS t, \
             {value} AS v \
             FROM {table} \
             WHERE {time} >= to_timestamp_nanos({from_ns}) AND {time} < to_timestamp_nanos({to_ns}){only} \
             GROUP BY 1, 2"
        )
    }
}

/// One service's forecast of one metric.
#[derive(Debug, Clone)]
pub struct ServiceForecast {
    pub service: String,
    pub metric: Metric,
    /// When the first forecast step starts.
    pub start_ns: i64,
    pub step_ns: i64,
    pub history_points: usize,
    pub forecast: Forecast,
    pub generated_at_ns: i64,
}

impl ServiceForecast {
    pub fn time_ns(&self, step: usize) -> i64 {
        self.start_ns + step as i64 * self.step_ns
    }
}

/// The recent history of `metric` per service, on the grid of `span.step_ns` ending before the
/// step that holds `now_ns`.
pub async fn histories(
    engine: &QueryEngine,
    metric: Metric,
    span: Span,
    now_ns: i64,
    service: Option<&str>,
) -> Result<Vec<(String, Grid)>, QueryError> {
    let end_ns = now_ns.div_euclid(span.step_ns) * span.step_ns;
    let from_ns = end_ns - span.history_steps as i64 * span.step_ns;
    let batches = engine
        .sql(&metric.query(span.step_ns, from_ns, end_ns, service))
        .await?;
    let mut per_service: std::collections::BTreeMap<String, Vec<(i64, f64)>> = Default::default();
    for batch in &batches {
        let names = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let times = batch.column(1).as_primitive::<Int64Type>();
        let values = arrow::compute::cast(batch.column(2), &DataType::Float64)?;
        let values = values.as_primitive::<arrow::datatypes::Float64Type>();
        for row in 0..batch.num_rows() {
            if values.is_valid(row) && times.is_valid(row) {
                per_service
                    .entry(names.value(row).to_owned())
                    .or_default()
                    .push((times.value(row), values.value(row)));
            }
        }
    }
    let mut out = Vec::new();
    for (name, mut points) in per_service {
        points.sort_unstable_by_key(|p| p.0);
        let start_ns = points[0].0;
        let steps = ((end_ns - start_ns) / span.step_ns) as usize;
        let grid = match metric {
            // No requests in a step is a zero, not a gap.
            Metric::Requests => {
                let mut values = vec![0.0; steps];
                for (t, v) in &points {
                    values[((t - start_ns) / span.step_ns) as usize] = *v;
                }
                Grid {
                    start_ns,
                    step_ns: span.step_ns,
                    values,
                    filled: vec![false; steps],
                }
            }
            Metric::CpuUtilization => {
                let last = ((points[points.len() - 1].0 - start_ns) / span.step_ns) as usize + 1;
                let positions: Vec<i64> = points
                    .iter()
                    .map(|(t, _)| (t - start_ns) / span.step_ns)
                    .collect();
                let values: Vec<f64> = points.iter().map(|p| p.1).collect();
                fill_grid(start_ns, span.step_ns, last, &positions, &values)
                    .map_err(|e| QueryError::Internal(e.to_string()))?
            }
        };
        out.push((name, grid));
    }
    Ok(out)
}

/// Forecasts every history, on all cores, in order; a series that cannot be forecast is
/// logged and left out.
pub fn forecast_all(
    work: &[(String, Metric, Grid)],
    horizon_steps: usize,
    generated_at_ns: i64,
    extra: &[f64],
) -> Vec<ServiceForecast> {
    // Plain threads, not a rayon pool: the polars feature queries run on polars' own pool,
    // and a rayon worker waiting for them would steal further forecasts onto its stack.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(work.len().max(1));
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, ServiceForecast)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((service, metric, grid)) = work.get(i) else {
                            break done;
                        };
                        // One series' panic must not take the worker's other forecasts with it.
                        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            forecast_grid(service, *metric, grid, horizon_steps, generated_at_ns, extra)
                        }));
                        match result {
                            Ok(Ok(f)) => done.push((i, f)),
                            Ok(Err(e)) => {
                                tracing::warn!(service, metric = metric.name(), error = %e, "no forecast")
                            }
                            Err(_) => {
                                tracing::error!(service, metric = metric.name(), "the forecast panicked")
                            }
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, f)| f).collect()
}

/// The quantile levels every forecast has.
pub const QUANTILES: [f64; 3] = [0.1, 0.5, 0.9];

/// Forecasts one history, with the [`QUANTILES`] and the `extra` levels.
pub fn forecast_grid(
    service: &str,
    metric: Metric,
    grid: &Grid,
    horizon_steps: usize,
    generated_at_ns: i64,
    extra: &[f64],
) -> Result<ServiceForecast, super::ForecastError> {
    let mut quantiles = QUANTILES.to_vec();
    for q in extra {
        if !quantiles.contains(q) {
            quantiles.push(*q);
        }
    }
    let forecast = forecast(
        &grid.values,
        Seasonality::for_step_ns(grid.step_ns),
        &ForecastOptions {
            horizon: horizon_steps,
            quantiles,
        },
    )?;
    Ok(ServiceForecast {
        service: service.to_owned(),
        metric,
        start_ns: grid.timestamp_ns(grid.values.len()),
        step_ns: grid.step_ns,
        history_points: grid.values.len(),
        forecast,
        generated_at_ns,
    })
}

fn schema() -> SchemaRef {
    let time = || DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("service_name", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("time", time(), false),
        Field::new("yhat", DataType::Float64, false),
        Field::new("p10", DataType::Float64, false),
        Field::new("p50", DataType::Float64, false),
        Field::new("p90", DataType::Float64, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("short_history", DataType::Boolean, false),
        Field::new("generated_at", time(), false),
    ]))
}

/// The forecasts as rows of the `forecasts` table.
pub fn batch(forecasts: &[ServiceForecast]) -> Result<RecordBatch, QueryError> {
    let rows: Vec<(&ServiceForecast, usize)> = forecasts
        .iter()
        .flat_map(|f| (0..f.forecast.yhat.len()).map(move |h| (f, h)))
        .collect();
    let text = |get: &dyn Fn(&ServiceForecast) -> String| -> ArrayRef {
        Arc::new(
            rows.iter()
                .map(|(f, _)| Some(get(f)))
                .collect::<StringArray>(),
        )
    };
    let level = |q: f64| -> ArrayRef {
        Arc::new(
            rows.iter()
                .map(|(f, h)| {
                    f.forecast
                        .quantile(q)
                        .map_or(f.forecast.yhat[*h], |v| v[*h])
                })
                .collect::<Float64Array>(),
        )
    };
    let time = |get: &dyn Fn(&ServiceForecast, usize) -> i64| -> ArrayRef {
        Arc::new(
            TimestampNanosecondArray::from(
                rows.iter().map(|(f, h)| get(f, *h)).collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        )
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|f| f.service.clone()),
        text(&|f| f.metric.name().to_owned()),
        time(&|f, h| f.time_ns(h)),
        Arc::new(
            rows.iter()
                .map(|(f, h)| f.forecast.yhat[*h])
                .collect::<Float64Array>(),
        ),
        level(0.1),
        level(0.5),
        level(0.9),
        text(&|f| f.forecast.model.clone()),
        Arc::new(
            rows.iter()
                .map(|(f, _)| Some(f.forecast.short_history))
                .collect::<BooleanArray>(),
        ),
        time(&|f, _| f.generated_at_ns),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// Forecasts every service's metrics, with the [`QUANTILES`] and the `extra` levels, and
/// publishes them.
pub async fn refresh(
    engine: &QueryEngine,
    span: Span,
    now_ns: i64,
    extra: &[f64],
) -> Result<Vec<ServiceForecast>, QueryError> {
    let mut work = Vec::new();
    for metric in Metric::ALL {
        // One metric's failure does not hold back the other's forecasts.
        match histories(engine, metric, span, now_ns, None).await {
            Ok(series) => work.extend(series.into_iter().map(|(s, g)| (s, metric, g))),
            Err(e) => tracing::warn!(metric = metric.name(), error = %e, "no history to forecast"),
        }
    }
    let horizon = span.horizon_steps;
    let extra = extra.to_vec();
    let forecasts =
        tokio::task::spawn_blocking(move || forecast_all(&work, horizon, now_ns, &extra))
            .await
            .map_err(|e| QueryError::Internal(e.to_string()))?;
    engine.publish_forecasts(batch(&forecasts)?)?;
    Ok(forecasts)
}
