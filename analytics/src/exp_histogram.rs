//! Latency from OTLP exponential histograms, as SQL functions over one struct type, the
//! columns of `exp_histogram_points` (`scale`, `zero_count`, `zero_threshold`,
//! `positive_offset`, `positive_bucket_counts`, `negative_offset`, `negative_bucket_counts`):
//!
//! - `exp_histogram(scale, zero_count, zero_threshold, positive_offset, positive_bucket_counts,
//!   negative_offset, negative_bucket_counts)`: that struct from the stored columns; NULL when
//!   they do not make a histogram (negative counts, scale outside [-10, 20]).
//! - `exp_histogram_merge(h)`: aggregate, the sum of histograms. Histograms of different scales
//!   are merged at the finest scale every input can be brought down to, and coarser still when
//!   one side would need more than 160 buckets (as the OpenTelemetry SDKs do); the
//!   result does not depend on the order of the inputs. With different zero thresholds the
//!   largest wins, and the buckets wholly inside it move to the zero bucket.
//! - `exp_histogram_delta(h, previous)`: the increase of a cumulative histogram since its
//!   previous point (both brought to a common scale); the whole of `h` after a reset (a count
//!   went down, or there is no previous point).
//! - `exp_histogram_quantile(phi, h)`: the φ-quantile by Prometheus' rules for native
//!   histograms: log-linear interpolation inside a bucket, linear inside the zero bucket (from
//!   0 when the histogram has no negative buckets).
//! - `exp_histogram_count(h)`: the observations a histogram holds.
//!
//! The maths is `headroom_sketch`'s; this module only moves histograms between it and Arrow.
//! The rollup sketches use the same struct, so one set of functions serves both.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Float64Builder, Int32Array, Int64Array, ListArray,
    StructArray,
};
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use headroom_sketch::exp_histogram::{Buckets, ExpHistogram, count_le_of, percentile_of};

use crate::histogram::{coerce_to, counts_type, i64_values, udf_struct};

/// The struct type the functions take and return.
pub fn exp_histogram_type() -> DataType {
    DataType::Struct(struct_fields())
}

fn struct_fields() -> Fields {
    Fields::from(vec![
        Field::new("scale", DataType::Int32, false),
        Field::new("zero_count", DataType::Int64, false),
        Field::new("zero_threshold", DataType::Float64, false),
        Field::new("positive_offset", DataType::Int32, false),
        Field::new("positive_bucket_counts", counts_type(), false),
        Field::new("negative_offset", DataType::Int32, false),
        Field::new("negative_bucket_counts", counts_type(), false),
    ])
}

/// Histograms as a struct array (NULL rows for `None`).
fn to_array(histograms: &[Option<ExpHistogram>]) -> Result<ArrayRef> {
    let lists = |side: fn(&ExpHistogram) -> &Buckets| {
        ListArray::from_iter_primitive::<Int64Type, _, _>(histograms.iter().map(|h| {
            Some(h.as_ref().map_or(Vec::new(), |h| {
                side(h).counts.iter().copied().map(Some).collect()
            }))
        }))
    };
    let offsets = |side: fn(&ExpHistogram) -> &Buckets| {
        histograms
            .iter()
            .map(|h| h.as_ref().map_or(0, |h| side(h).offset))
            .collect::<Int32Array>()
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            histograms
                .iter()
                .map(|h| h.as_ref().map_or(0, |h| h.scale))
                .collect::<Int32Array>(),
        ),
        Arc::new(
            histograms
                .iter()
                .map(|h| h.as_ref().map_or(0, |h| h.zero_count))
                .collect::<Int64Array>(),
        ),
        Arc::new(
            histograms
                .iter()
                .map(|h| h.as_ref().map_or(0.0, |h| h.zero_threshold))
                .collect::<Float64Array>(),
        ),
        Arc::new(offsets(|h| &h.positive)),
        Arc::new(lists(|h| &h.positive)),
        Arc::new(offsets(|h| &h.negative)),
        Arc::new(lists(|h| &h.negative)),
    ];
    let nulls = histograms.iter().map(Option::is_some).collect::<Vec<_>>();
    Ok(Arc::new(StructArray::try_new(
        struct_fields(),
        columns,
        Some(nulls.into()),
    )?))
}

/// The histograms of a struct array built by [`to_array`] (or any struct with those fields).
fn from_array(array: &ArrayRef, name: &str) -> Result<Vec<Option<ExpHistogram>>> {
    let structs = array.as_struct_opt().ok_or_else(|| {
        DataFusionError::Plan(format!(
            "{name}: expected an exp_histogram(...) or latency_sketch(...) struct, got {}",
            array.data_type()
        ))
    })?;
    if let Some(sketches) = crate::sketch::histograms(array)? {
        return Ok(sketches);
    }
    let column = |field: &str| {
        structs.column_by_name(field).cloned().ok_or_else(|| {
            DataFusionError::Plan(format!("{name}: the histogram struct has no field {field}"))
        })
    };
    let scale = arrow::compute::cast(&column("scale")?, &DataType::Int32)?;
    let scale = scale.as_primitive::<Int32Type>();
    let zero_count = arrow::compute::cast(&column("zero_count")?, &DataType::Int64)?;
    let zero_count = zero_count.as_primitive::<Int64Type>();
    let zero_threshold = arrow::compute::cast(&column("zero_threshold")?, &DataType::Float64)?;
    let zero_threshold = zero_threshold.as_primitive::<arrow::datatypes::Float64Type>();
    let side = |offset: &str, counts: &str| -> Result<(ArrayRef, ListArray)> {
        let offsets = arrow::compute::cast(&column(offset)?, &DataType::Int32)?;
        let counts = arrow::compute::cast(&column(counts)?, &counts_type())?;
        Ok((offsets, counts.as_list::<i32>().clone()))
    };
    let (pos_offset, pos_counts) = side("positive_offset", "positive_bucket_counts")?;
    let (neg_offset, neg_counts) = side("negative_offset", "negative_bucket_counts")?;
    let (pos_offset, neg_offset) = (
        pos_offset.as_primitive::<Int32Type>(),
        neg_offset.as_primitive::<Int32Type>(),
    );
    Ok((0..structs.len())
        .map(|row| {
            let valid = structs.is_valid(row)
                && scale.is_valid(row)
                && zero_count.is_valid(row)
                && zero_threshold.is_valid(row)
                && pos_offset.is_valid(row)
                && neg_offset.is_valid(row);
            if !valid {
                return None;
            }
            ExpHistogram::new(
                scale.value(row),
                zero_count.value(row),
                zero_threshold.value(row),
                Buckets {
                    offset: pos_offset.value(row),
                    counts: i64_values(&pos_counts, row)?,
                },
                Buckets {
                    offset: neg_offset.value(row),
                    counts: i64_values(&neg_counts, row)?,
                },
            )
        })
        .collect())
}

/// Registers the `exp_histogram*` functions.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(Constructor::new()));
    ctx.register_udf(ScalarUDF::from(Quantile::new()));
    ctx.register_udf(ScalarUDF::from(Percentile::new()));
    ctx.register_udf(ScalarUDF::from(CountLe::new()));
    ctx.register_udf(ScalarUDF::from(Delta::new()));
    ctx.register_udf(ScalarUDF::from(Count::new()));
    ctx.register_udaf(AggregateUDF::from(Merge::new()));
}

udf_struct!(Constructor);
udf_struct!(Quantile);
udf_struct!(Percentile);
udf_struct!(CountLe);
udf_struct!(Delta);
udf_struct!(Count);
udf_struct!(Merge);

impl ScalarUDFImpl for Constructor {
    fn name(&self) -> &str {
        "exp_histogram"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_to(
            "exp_histogram(scale, zero_count, zero_threshold, positive_offset, \
             positive_bucket_counts, negative_offset, negative_bucket_counts)",
            arg_types,
            struct_fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect(),
        )
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(exp_histogram_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let columns = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        // Nullable inputs: the struct's own null buffer marks rows with a NULL part, and
        // `from_array` reads those as NULL histograms.
        let nulls = (0..rows)
            .map(|row| columns.iter().all(|c| c.is_valid(row)))
            .collect::<Vec<_>>();
        let fields = Fields::from(
            struct_fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        );
        let raw: ArrayRef = Arc::new(StructArray::try_new(fields, columns, Some(nulls.into()))?);
        let histograms = from_array(&raw, "exp_histogram")?;
        Ok(ColumnarValue::Array(to_array(&histograms)?))
    }
}

impl ScalarUDFImpl for Quantile {
    fn name(&self) -> &str {
        "exp_histogram_quantile"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let want = vec![
            DataType::Float64,
            arg_types.get(1).cloned().unwrap_or(DataType::Null),
        ];
        coerce_to("exp_histogram_quantile(phi, histogram)", arg_types, want)
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let phi = args.args[0].to_array(rows)?;
        let phi: &Float64Array = phi.as_primitive();
        let histograms = histograms_arg(&args.args[1], rows, "exp_histogram_quantile")?;
        let mut out = Float64Builder::with_capacity(rows);
        for (row, h) in histograms.iter().enumerate() {
            out.append_option(match h {
                Some(h) if phi.is_valid(row) => h.quantile(phi.value(row)),
                _ => None,
            });
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

impl ScalarUDFImpl for Percentile {
    fn name(&self) -> &str {
        "exp_histogram_percentile"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let want = vec![
            DataType::Float64,
            arg_types.get(1).cloned().unwrap_or(DataType::Null),
        ];
        coerce_to("exp_histogram_percentile(phi, histogram)", arg_types, want)
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let phi = args.args[0].to_array(rows)?;
        let phi: &Float64Array = phi.as_primitive();
        let array = args.args[1].to_array(rows)?;
        if let Some(sketches) = crate::sketch::Sketches::of(&array)? {
            let out: Float64Array = (0..rows)
                .map(|row| match sketches.row(row) {
                    Some((total, observations)) if phi.is_valid(row) => {
                        percentile_of(observations, total, phi.value(row))
                    }
                    _ => None,
                })
                .collect();
            return Ok(ColumnarValue::Array(Arc::new(out)));
        }
        let histograms = histograms_arg(&args.args[1], rows, "exp_histogram_percentile")?;
        let out: Float64Array = histograms
            .iter()
            .enumerate()
            .map(|(row, h)| match h {
                Some(h) if phi.is_valid(row) => h.percentile(phi.value(row)),
                _ => None,
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

impl ScalarUDFImpl for CountLe {
    fn name(&self) -> &str {
        "exp_histogram_count_le"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let want = vec![
            arg_types.first().cloned().unwrap_or(DataType::Null),
            DataType::Float64,
        ];
        coerce_to("exp_histogram_count_le(histogram, x)", arg_types, want)
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let x = args.args[1].to_array(rows)?;
        let x: &Float64Array = x.as_primitive();
        let array = args.args[0].to_array(rows)?;
        if let Some(sketches) = crate::sketch::Sketches::of(&array)? {
            let out: Int64Array = (0..rows)
                .map(|row| match sketches.row(row) {
                    Some((_, observations)) if x.is_valid(row) => {
                        Some(count_le_of(observations, x.value(row)))
                    }
                    _ => None,
                })
                .collect();
            return Ok(ColumnarValue::Array(Arc::new(out)));
        }
        let histograms = histograms_arg(&args.args[0], rows, "exp_histogram_count_le")?;
        let out: Int64Array = histograms
            .iter()
            .enumerate()
            .map(|(row, h)| match h {
                Some(h) if x.is_valid(row) => Some(h.count_le(x.value(row))),
                _ => None,
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

fn histograms_arg(
    arg: &ColumnarValue,
    rows: usize,
    name: &str,
) -> Result<Vec<Option<ExpHistogram>>> {
    let array = arg.to_array(rows)?;
    if array.data_type() == &DataType::Null {
        return Ok(vec![None; rows]);
    }
    from_array(&array, name)
}

impl ScalarUDFImpl for Delta {
    fn name(&self) -> &str {
        "exp_histogram_delta"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_to(
            "exp_histogram_delta(histogram, previous)",
            arg_types,
            vec![exp_histogram_type(), exp_histogram_type()],
        )
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(exp_histogram_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let current = histograms_arg(&args.args[0], rows, "exp_histogram_delta")?;
        let previous = histograms_arg(&args.args[1], rows, "exp_histogram_delta")?;
        let increases: Vec<Option<ExpHistogram>> = current
            .iter()
            .zip(&previous)
            .map(|(h, p)| h.as_ref().map(|h| h.increase_since(p.as_ref())))
            .collect();
        Ok(ColumnarValue::Array(to_array(&increases)?))
    }
}

impl ScalarUDFImpl for Count {
    fn name(&self) -> &str {
        "exp_histogram_count"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        // Either struct: an exp_histogram(...) or a latency_sketch(...).
        let want = vec![arg_types.first().cloned().unwrap_or(DataType::Null)];
        coerce_to("exp_histogram_count(histogram)", arg_types, want)
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let histograms = histograms_arg(&args.args[0], rows, "exp_histogram_count")?;
        let counts: Int64Array = histograms
            .iter()
            .map(|h| h.as_ref().map(ExpHistogram::count))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(counts)))
    }
}

impl AggregateUDFImpl for Merge {
    fn name(&self) -> &str {
        "exp_histogram_merge"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_to(
            "exp_histogram_merge(histogram)",
            arg_types,
            vec![exp_histogram_type()],
        )
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(exp_histogram_type())
    }
    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::<MergeAccumulator>::default())
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<Arc<Field>>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[merged]", args.name),
            exp_histogram_type(),
            true,
        ))])
    }
}

#[derive(Debug, Default)]
struct MergeAccumulator {
    merged: Option<ExpHistogram>,
}

impl MergeAccumulator {
    fn add(&mut self, values: &ArrayRef) -> Result<()> {
        for h in from_array(values, "exp_histogram_merge")?
            .into_iter()
            .flatten()
        {
            self.merged = Some(match &self.merged {
                None => h,
                Some(m) => m.merge(&h),
            });
        }
        Ok(())
    }
}

impl Accumulator for MergeAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.add(&states[0])
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let array = to_array(std::slice::from_ref(&self.merged))?;
        ScalarValue::try_from_array(&array, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.merged.as_ref().map_or(0, |h| {
                (h.positive.counts.capacity() + h.negative.counts.capacity()) * 8
            })
    }
}
