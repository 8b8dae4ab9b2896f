//! Latency from OTLP explicit-bucket histograms, as SQL functions:
//!
//! - `histogram_quantile(phi, bounds, counts)`: the φ-quantile of one histogram, by
//!   Prometheus' `histogram_quantile` rules (linear interpolation inside the bucket; the
//!   lowest bucket starts at 0 when its upper bound is positive; a quantile in the +Inf bucket
//!   is the highest finite bound; NULL for an empty histogram).
//! - `bucket_sum(counts)`: aggregate, the element-wise sum of bucket counts (delta points of
//!   one window, or the per-point increases of cumulative ones).
//! - `bucket_total(counts)`: the observations a histogram holds.
//! - `bucket_delta(counts, previous)`: the increase of a cumulative histogram since its
//!   previous point; the whole of `counts` after a reset (any bucket went down, the previous
//!   point is missing or has other buckets).
//!
//! OTLP bucket counts are per bucket, not cumulative: bucket i covers (bounds[i-1], bounds[i]],
//! the last one (bounds[n-1], +Inf). No crate implements these rules over Arrow lists, so they
//! are written here.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Float64Builder, Int64Builder, ListArray, ListBuilder,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// The boilerplate of a user-defined function with fixed argument types.
macro_rules! udf_struct {
    ($name:ident) => {
        #[derive(Debug, PartialEq, Eq, Hash)]
        struct $name {
            signature: Signature,
        }

        impl $name {
            fn new() -> Self {
                Self {
                    signature: Signature::user_defined(Volatility::Immutable),
                }
            }
        }
    };
}

pub(crate) use udf_struct;

/// The φ-quantile of a histogram with upper `bounds` and per-bucket `counts`
/// (`counts.len() == bounds.len() + 1`). `None` when it has no observations or the buckets
/// do not fit the bounds.
pub fn explicit_quantile(phi: f64, bounds: &[f64], counts: &[i64]) -> Option<f64> {
    if phi.is_nan() || counts.len() != bounds.len() + 1 || counts.iter().any(|c| *c < 0) {
        return None;
    }
    if phi < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if phi > 1.0 {
        return Some(f64::INFINITY);
    }
    let total: i64 = counts.iter().sum();
    // Prometheus needs the +Inf bucket and one more.
    if total == 0 || bounds.is_empty() {
        return None;
    }
    let rank = phi * total as f64;
    let mut below = 0i64;
    for (i, &count) in counts.iter().enumerate() {
        let cumulative = below + count;
        if cumulative as f64 >= rank && count > 0 || i == counts.len() - 1 {
            if i == counts.len() - 1 {
                // In the +Inf bucket: the highest finite bound.
                return Some(bounds[bounds.len() - 1]);
            }
            let upper = bounds[i];
            if i == 0 && upper <= 0.0 {
                return Some(upper);
            }
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            return Some(lower + (upper - lower) * ((rank - below as f64) / count as f64));
        }
        below = cumulative;
    }
    None
}

pub(crate) fn i64_values(list: &ListArray, row: usize) -> Option<Vec<i64>> {
    if list.is_null(row) {
        return None;
    }
    let values = list.value(row);
    let values = values.as_primitive_opt::<Int64Type>()?;
    (values.null_count() == 0).then(|| values.values().to_vec())
}

fn f64_values(list: &ListArray, row: usize) -> Option<Vec<f64>> {
    if list.is_null(row) {
        return None;
    }
    let values = list.value(row);
    let values = values.as_primitive_opt::<Float64Type>()?;
    (values.null_count() == 0).then(|| values.values().to_vec())
}

fn list_arg(arg: &ColumnarValue, rows: usize, name: &str) -> Result<ListArray> {
    let array = arg.to_array(rows)?;
    array.as_list_opt::<i32>().cloned().ok_or_else(|| {
        DataFusionError::Plan(format!(
            "{name}: expected a list, got {}",
            array.data_type()
        ))
    })
}

/// The argument types of `call` (e.g. `"bucket_sum(counts)"`), when it got as many arguments as
/// it takes.
pub(crate) fn coerce_to(
    call: &str,
    arg_types: &[DataType],
    want: Vec<DataType>,
) -> Result<Vec<DataType>> {
    if arg_types.len() == want.len() {
        Ok(want)
    } else {
        Err(DataFusionError::Plan(format!(
            "{call} takes {} argument(s), got {}",
            want.len(),
            arg_types.len()
        )))
    }
}

pub(crate) fn counts_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Int64, true)))
}

fn bounds_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Float64, true)))
}

/// Registers `histogram_quantile`, `bucket_sum`, `bucket_delta` and `bucket_total`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(HistogramQuantile::new()));
    ctx.register_udf(ScalarUDF::from(BucketDelta::new()));
    ctx.register_udf(ScalarUDF::from(BucketTotal::new()));
    ctx.register_udaf(AggregateUDF::from(BucketSum::new()));
}

// `bucket_total(counts)`: the number of observations, the sum of the bucket counts.
udf_struct!(BucketTotal);

impl ScalarUDFImpl for BucketTotal {
    fn name(&self) -> &str {
        "bucket_total"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_to("bucket_total(counts)", arg_types, vec![counts_type()])
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let counts = list_arg(&args.args[0], rows, "bucket_total counts")?;
        let totals: arrow::array::Int64Array = (0..rows)
            .map(|row| i64_values(&counts, row).map(|c| c.iter().sum::<i64>()))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(totals)))
    }
}

udf_struct!(HistogramQuantile);

impl ScalarUDFImpl for HistogramQuantile {
    fn name(&self) -> &str {
        "histogram_quantile"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_to(
            "histogram_quantile(phi, bounds, counts)",
            arg_types,
            vec![DataType::Float64, bounds_type(), counts_type()],
        )
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let phi = args.args[0].to_array(rows)?;
        let phi: &Float64Array = phi.as_primitive();
        let bounds = list_arg(&args.args[1], rows, "histogram_quantile bounds")?;
        let counts = list_arg(&args.args[2], rows, "histogram_quantile counts")?;
        let mut out = Float64Builder::with_capacity(rows);
        for row in 0..rows {
            let q = match (
                phi.is_valid(row),
                f64_values(&bounds, row),
                i64_values(&counts, row),
            ) {
                (true, Some(b), Some(c)) => explicit_quantile(phi.value(row), &b, &c),
                _ => None,
            };
            out.append_option(q);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

udf_struct!(BucketDelta);

/// `counts - previous` bucket by bucket, or `counts` when that is not an increase.
pub fn bucket_increase(counts: &[i64], previous: Option<&[i64]>) -> Vec<i64> {
    match previous {
        Some(prev)
            if prev.len() == counts.len() && counts.iter().zip(prev).all(|(c, p)| c >= p) =>
        {
            counts.iter().zip(prev).map(|(c, p)| c - p).collect()
        }
        _ => counts.to_vec(),
    }
}

impl ScalarUDFImpl for BucketDelta {
    fn name(&self) -> &str {
        "bucket_delta"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_to(
            "bucket_delta(counts, previous)",
            arg_types,
            vec![counts_type(), counts_type()],
        )
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(counts_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let counts = list_arg(&args.args[0], rows, "bucket_delta counts")?;
        let previous = list_arg(&args.args[1], rows, "bucket_delta previous")?;
        let mut out = ListBuilder::new(Int64Builder::new());
        for row in 0..rows {
            match i64_values(&counts, row) {
                None => out.append_null(),
                Some(c) => {
                    let prev = i64_values(&previous, row);
                    out.values()
                        .append_slice(&bucket_increase(&c, prev.as_deref()));
                    out.append(true);
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

udf_struct!(BucketSum);

impl AggregateUDFImpl for BucketSum {
    fn name(&self) -> &str {
        "bucket_sum"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_to("bucket_sum(counts)", arg_types, vec![counts_type()])
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(counts_type())
    }
    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::<BucketSumAccumulator>::default())
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<Arc<Field>>> {
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[sum]", args.name),
                counts_type(),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[mismatched]", args.name),
                DataType::Boolean,
                false,
            )),
        ])
    }
}

/// Sums bucket counts element-wise. Histograms with another number of buckets cannot be
/// added; the sum becomes NULL rather than a wrong answer.
#[derive(Debug, Default)]
struct BucketSumAccumulator {
    sum: Option<Vec<i64>>,
    mismatched: bool,
}

impl BucketSumAccumulator {
    fn add(&mut self, counts: &[i64]) {
        match &mut self.sum {
            None if !self.mismatched => self.sum = Some(counts.to_vec()),
            Some(sum) if sum.len() == counts.len() => {
                for (s, c) in sum.iter_mut().zip(counts) {
                    *s += c;
                }
            }
            _ => {
                self.sum = None;
                self.mismatched = true;
            }
        }
    }

    fn add_lists(&mut self, values: &ArrayRef) -> Result<()> {
        let list = values.as_list_opt::<i32>().ok_or_else(|| {
            DataFusionError::Internal("bucket_sum: expected a list of counts".into())
        })?;
        for row in 0..list.len() {
            if let Some(counts) = i64_values(list, row) {
                self.add(&counts);
            }
        }
        Ok(())
    }
}

impl Accumulator for BucketSumAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add_lists(&values[0])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let mismatched = states[1].as_boolean_opt().ok_or_else(|| {
            DataFusionError::Internal("bucket_sum: expected a boolean state".into())
        })?;
        if mismatched.true_count() > 0 {
            self.sum = None;
            self.mismatched = true;
        }
        self.add_lists(&states[0])
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            self.evaluate()?,
            ScalarValue::Boolean(Some(self.mismatched)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let list =
            match &self.sum {
                Some(sum) if !self.mismatched => ListArray::from_iter_primitive::<Int64Type, _, _>(
                    [Some(sum.iter().copied().map(Some).collect::<Vec<_>>())],
                ),
                _ => ListArray::new_null(Arc::new(Field::new("item", DataType::Int64, true)), 1),
            };
        Ok(ScalarValue::List(Arc::new(list)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sum.as_ref().map_or(0, |s| s.capacity() * 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_rules() {
        let bounds = [1.0, 2.0, 4.0];
        // 10 in (0,1], 10 in (1,2], 0 in (2,4], 0 above.
        assert_eq!(explicit_quantile(0.5, &bounds, &[10, 10, 0, 0]), Some(1.0));
        assert_eq!(explicit_quantile(0.75, &bounds, &[10, 10, 0, 0]), Some(1.5));
        assert_eq!(explicit_quantile(0.25, &bounds, &[10, 10, 0, 0]), Some(0.5));
        // In the +Inf bucket: the highest finite bound.
        assert_eq!(explicit_quantile(0.99, &bounds, &[1, 0, 0, 9]), Some(4.0));
        // Empty, malformed, out of range.
        assert_eq!(explicit_quantile(0.5, &bounds, &[0, 0, 0, 0]), None);
        assert_eq!(explicit_quantile(0.5, &bounds, &[1, 2]), None);
        assert_eq!(explicit_quantile(0.5, &[], &[5]), None);
        assert_eq!(
            explicit_quantile(-1.0, &bounds, &[1, 0, 0, 0]),
            Some(f64::NEG_INFINITY)
        );
        assert_eq!(
            explicit_quantile(2.0, &bounds, &[1, 0, 0, 0]),
            Some(f64::INFINITY)
        );
        // A non-positive lowest bucket has no lower limit: its upper bound is the answer.
        assert_eq!(
            explicit_quantile(0.1, &[-1.0, 0.0, 1.0], &[5, 5, 0, 0]),
            Some(-1.0)
        );
        // Empty buckets are skipped: the rank lands in the next bucket with observations.
        assert_eq!(explicit_quantile(0.5, &bounds, &[0, 0, 4, 0]), Some(3.0));
    }

    #[test]
    fn increases_and_resets() {
        assert_eq!(bucket_increase(&[5, 7, 1], Some(&[2, 7, 0])), vec![3, 0, 1]);
        // A bucket went down: the counter restarted.
        assert_eq!(bucket_increase(&[1, 0, 0], Some(&[2, 7, 0])), vec![1, 0, 0]);
        assert_eq!(bucket_increase(&[1, 2], None), vec![1, 2]);
        assert_eq!(bucket_increase(&[1, 2], Some(&[1, 2, 3])), vec![1, 2]);
    }
}
