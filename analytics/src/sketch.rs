//! `latency_sketch(latency_bucket_index, latency_bucket_count, latency_zero_count)`: the
//! aggregate that merges the sparse latency sketches of the span rollups (see
//! `headroom_collector::rollup`) into the exponential-histogram struct the `exp_histogram_*`
//! functions take, so `exp_histogram_percentile`, `exp_histogram_count_le` and friends answer
//! the same way over rollups and over OTLP exponential histograms.
//!
//! Unlike `exp_histogram_merge` it never downscales: every sketch has the one fixed scale, so
//! the result keeps the rollups' 0.54 % bound however wide the range. A dashboard groups tens
//! of thousands of minutes at once, so it is a `GroupsAccumulator` (one dense vector per
//! group, filled straight from the list columns) rather than an accumulator per group.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use headroom_collector::rollup::SKETCH_SCALE;

use crate::exp_histogram::{Buckets, ExpHistogram, exp_histogram_type, from_array, to_array};
use crate::histogram::{coerce_to, counts_type, udf_struct};

/// Bucket indexes a sketch may hold: beyond them the bucket bounds leave the range of doubles
/// (2^±1100), so such an index can only come from a damaged file.
const MAX_INDEX: i32 = 1100 << SKETCH_SCALE;

pub fn register(ctx: &SessionContext) {
    ctx.register_udaf(AggregateUDF::from(LatencySketch::new()));
}

udf_struct!(LatencySketch);

/// One group's sketch: dense counts from bucket `offset` on.
#[derive(Debug, Default, Clone)]
struct Dense {
    seen: bool,
    zero: i64,
    offset: i32,
    counts: Vec<i64>,
}

impl Dense {
    fn add(&mut self, index: i32, count: i64) -> Result<()> {
        if !(-MAX_INDEX..=MAX_INDEX).contains(&index) {
            return Err(DataFusionError::Execution(format!(
                "latency_sketch: bucket index {index} is out of range"
            )));
        }
        if self.counts.is_empty() {
            self.offset = index;
        } else if index < self.offset {
            let grow = (self.offset - index) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = index;
        }
        let k = (index - self.offset) as usize;
        if k >= self.counts.len() {
            self.counts.resize(k + 1, 0);
        }
        self.counts[k] = self.counts[k].saturating_add(count);
        Ok(())
    }

    fn histogram(&self) -> Option<ExpHistogram> {
        self.seen.then(|| ExpHistogram {
            scale: SKETCH_SCALE,
            zero_count: self.zero,
            zero_threshold: 0.0,
            positive: Buckets {
                offset: self.offset,
                counts: self.counts.clone(),
            },
            negative: Buckets::default(),
        })
    }

    fn add_histogram(&mut self, h: &ExpHistogram) -> Result<()> {
        if h.scale != SKETCH_SCALE || h.negative.counts.iter().any(|c| *c != 0) {
            return Err(DataFusionError::Execution(format!(
                "latency_sketch: cannot merge a histogram of scale {} with negative buckets",
                h.scale
            )));
        }
        self.seen = true;
        self.zero = self.zero.saturating_add(h.zero_count);
        for (k, c) in h.positive.counts.iter().enumerate() {
            if *c != 0 {
                self.add(h.positive.offset + k as i32, *c)?;
            }
        }
        Ok(())
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.counts.capacity() * 8
    }
}

/// The three arguments of one `update_batch`.
struct Inputs<'a> {
    index: &'a ListArray,
    count: &'a ListArray,
    zero: &'a Int64Array,
}

impl<'a> Inputs<'a> {
    fn new(values: &'a [ArrayRef]) -> Result<Self> {
        let list = |i: usize| {
            values[i].as_list_opt::<i32>().ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "latency_sketch: argument {} must be a list, got {}",
                    i + 1,
                    values[i].data_type()
                ))
            })
        };
        Ok(Self {
            index: list(0)?,
            count: list(1)?,
            zero: values[2].as_primitive_opt::<Int64Type>().ok_or_else(|| {
                DataFusionError::Plan("latency_sketch: argument 3 must be a BIGINT".into())
            })?,
        })
    }

    fn add_row(&self, row: usize, into: &mut Dense) -> Result<()> {
        if self.index.is_null(row) || self.count.is_null(row) {
            return Ok(());
        }
        into.seen = true;
        if self.zero.is_valid(row) {
            into.zero = into.zero.saturating_add(self.zero.value(row));
        }
        let (index, count) = (self.index.value(row), self.count.value(row));
        let index = index.as_primitive::<Int32Type>();
        let count = count.as_primitive::<Int64Type>();
        if index.len() != count.len() {
            return Err(DataFusionError::Execution(
                "latency_sketch: bucket indexes and counts differ in length".into(),
            ));
        }
        for (i, c) in index.values().iter().zip(count.values()) {
            into.add(*i, *c)?;
        }
        Ok(())
    }
}

impl AggregateUDFImpl for LatencySketch {
    fn name(&self) -> &str {
        "latency_sketch"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_to(
            "latency_sketch(latency_bucket_index, latency_bucket_count, latency_zero_count)",
            arg_types,
            vec![
                DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
                counts_type(),
                DataType::Int64,
            ],
        )
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(exp_histogram_type())
    }
    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SketchGroups::default()))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<Arc<Field>>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[sketch]", args.name),
            exp_histogram_type(),
            true,
        ))])
    }
    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }
    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(SketchGroups::default()))
    }
}

#[derive(Debug, Default)]
struct SketchGroups {
    groups: Vec<Dense>,
}

impl SketchGroups {
    fn take(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let emitted = emit_to.take_needed(&mut self.groups);
        let histograms: Vec<Option<ExpHistogram>> = emitted.iter().map(Dense::histogram).collect();
        to_array(&histograms)
    }
}

fn selected(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}

impl GroupsAccumulator for SketchGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Dense::default);
        let inputs = Inputs::new(values)?;
        for (row, g) in group_indices.iter().enumerate() {
            if selected(opt_filter, row) {
                inputs.add_row(row, &mut self.groups[*g])?;
            }
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Dense::default);
        let histograms = from_array(&values[0], "latency_sketch")?;
        for (g, h) in group_indices.iter().zip(&histograms) {
            if let Some(h) = h {
                self.groups[*g].add_histogram(h)?;
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let inputs = Inputs::new(values)?;
        let histograms = (0..inputs.index.len())
            .map(|row| {
                let mut one = Dense::default();
                if selected(opt_filter, row) {
                    inputs.add_row(row, &mut one)?;
                }
                Ok(one.histogram())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(vec![to_array(&histograms)?])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        self.take(emit_to)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.take(emit_to)?])
    }

    fn size(&self) -> usize {
        self.groups.iter().map(Dense::size).sum::<usize>() + std::mem::size_of::<Self>()
    }
}

/// Without GROUP BY: one group.
impl Accumulator for SketchGroups {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = values.first().map_or(0, |v| v.len());
        GroupsAccumulator::update_batch(self, values, &vec![0; rows], None, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states.first().map_or(0, |v| v.len());
        GroupsAccumulator::merge_batch(self, states, &vec![0; rows], 1)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![Accumulator::evaluate(self)?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let one = self.groups.first().and_then(Dense::histogram);
        ScalarValue::try_from_array(&to_array(std::slice::from_ref(&one))?, 0)
    }

    fn size(&self) -> usize {
        GroupsAccumulator::size(self)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int32Builder, Int64Builder, ListBuilder, RecordBatch};
    use arrow::datatypes::Schema;
    use datafusion::datasource::MemTable;
    use headroom_collector::rollup::bucket_index;

    use super::*;

    /// Sparse sketches as the rollups store them, one per (group, durations in ns).
    fn table(rows: &[(&str, &[i64])]) -> RecordBatch {
        let mut index = ListBuilder::new(Int32Builder::new());
        let mut count = ListBuilder::new(Int64Builder::new());
        let mut zero = Vec::new();
        for (_, durations) in rows {
            let mut buckets = std::collections::BTreeMap::new();
            for d in *durations {
                if *d > 0 {
                    *buckets.entry(bucket_index(*d)).or_insert(0i64) += 1;
                }
            }
            index
                .values()
                .append_slice(&buckets.keys().copied().collect::<Vec<_>>());
            index.append(true);
            count
                .values()
                .append_slice(&buckets.values().copied().collect::<Vec<_>>());
            count.append(true);
            zero.push(durations.iter().filter(|d| **d <= 0).count() as i64);
        }
        let groups: Vec<&str> = rows.iter().map(|(g, _)| *g).collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(arrow::array::StringArray::from(groups)),
            Arc::new(index.finish()),
            Arc::new(count.finish()),
            Arc::new(Int64Array::from(zero)),
        ];
        let schema = Schema::new(
            ["g", "idx", "cnt", "zero"]
                .iter()
                .zip(&columns)
                .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        RecordBatch::try_new(Arc::new(schema), columns).unwrap()
    }

    async fn query(batch: RecordBatch, sql: &str) -> Vec<RecordBatch> {
        let ctx = SessionContext::new();
        crate::exp_histogram::register(&ctx);
        register(&ctx);
        let t = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(t)).unwrap();
        ctx.sql(sql).await.unwrap().collect().await.unwrap()
    }

    #[tokio::test]
    async fn sketches_merge_per_group_and_answer_percentiles() {
        let ms = 1_000_000;
        let batch = table(&[
            ("a", &[10 * ms, 20 * ms]),
            ("a", &[30 * ms, 0]),
            ("b", &[5 * ms]),
            ("b", &[]),
        ]);
        let out = query(
            batch,
            "SELECT g, exp_histogram_count(s), exp_histogram_percentile(1.0, s) / 1e6,
                    exp_histogram_count_le(s, 15e6)
             FROM (SELECT g, latency_sketch(idx, cnt, zero) AS s FROM t GROUP BY g) ORDER BY g",
        )
        .await;
        let b = &out[0];
        let col = |i: usize| b.column(i).clone();
        assert_eq!(col(1).as_primitive::<Int64Type>().values(), &[4, 1]);
        let p100 = col(2);
        let p100 = p100.as_primitive::<arrow::datatypes::Float64Type>();
        assert!(
            (p100.value(0) / 30.0 - 1.0).abs() < 0.0055,
            "{}",
            p100.value(0)
        );
        assert!(
            (p100.value(1) / 5.0 - 1.0).abs() < 0.0055,
            "{}",
            p100.value(1)
        );
        // 0 and 10 ms are at most 15 ms.
        assert_eq!(col(3).as_primitive::<Int64Type>().values(), &[2, 1]);
        // Without GROUP BY, and with a filter that keeps nothing: NULL.
        let batch = table(&[("a", &[10 * ms])]);
        let out = query(
            batch,
            "SELECT exp_histogram_count(latency_sketch(idx, cnt, zero)),
                    latency_sketch(idx, cnt, zero) FILTER (WHERE g = 'z') IS NULL FROM t",
        )
        .await;
        assert_eq!(out[0].column(0).as_primitive::<Int64Type>().value(0), 1);
        assert!(out[0].column(1).as_boolean().value(0));
    }

    #[test]
    fn damaged_sketches_are_errors_not_panics() {
        let mut d = Dense::default();
        assert!(d.add(MAX_INDEX + 1, 1).is_err());
        d.add(5, 1).unwrap();
        d.add(2, 1).unwrap();
        assert_eq!((d.offset, d.counts.clone()), (2, vec![1, 0, 0, 1]));
    }
}
