//! `latency_sketch(latency_bucket_index, latency_bucket_count, latency_zero_count)`: the
//! aggregate that merges the sparse latency sketches of the span rollups (see
//! `headroom_sketch::latency`) into one sketch of the same sparse shape, a struct of `scale`,
//! `zero_count`, `bucket_index` and `bucket_count`. The `exp_histogram_*` functions take it as
//! they take the OTLP exponential-histogram struct, so `exp_histogram_percentile`,
//! `exp_histogram_count_le` and friends answer the same way over rollups and over OTLP
//! exponential histograms.
//!
//! Unlike `exp_histogram_merge` it never downscales: every sketch has the one fixed scale, so
//! the result keeps the rollups' 0.54 % bound however wide the range. It stays sparse, in the
//! groups and in the result: a dashboard groups tens of thousands of minutes at once, each
//! with a few spans spread over hundreds of buckets. It is a `GroupsAccumulator` (one sorted
//! bucket list per group, filled straight from the list columns) rather than an accumulator
//! per group.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, ListArray, StructArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use headroom_sketch::exp_histogram::{Buckets, ExpHistogram, Midpoint};
use headroom_sketch::latency::{SKETCH_SCALE, add_to_bucket, merge_buckets};

use crate::histogram::{coerce_to, counts_type};

/// Bucket indexes a sketch may hold: beyond them the bucket bounds leave the range of doubles
/// (2^±1100), so such an index can only come from a damaged file.
const MAX_INDEX: i32 = 1100 << SKETCH_SCALE;

pub fn register(ctx: &SessionContext) {
    ctx.register_udaf(AggregateUDF::from(LatencySketch::new(false)));
    ctx.register_udaf(AggregateUDF::from(LatencySketch::new(true)));
}

fn index_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Int32, true)))
}

fn sketch_fields() -> Fields {
    Fields::from(vec![
        Field::new("scale", DataType::Int32, false),
        Field::new("zero_count", DataType::Int64, false),
        Field::new("bucket_index", index_type(), false),
        Field::new("bucket_count", counts_type(), false),
    ])
}

/// The struct `latency_sketch` returns.
pub fn latency_sketch_type() -> DataType {
    DataType::Struct(sketch_fields())
}

/// One group's sketch: its buckets sorted by index, or, once it has many and fills a good
/// part of their range, a dense count per index from `first`.
#[derive(Debug, Default, Clone)]
struct Sparse {
    seen: bool,
    zero: i64,
    buckets: Vec<(i32, i64)>,
    dense: Vec<i64>,
    first: i32,
    /// Sketches merged in whole.
    merged: u32,
}

/// A sketch turns dense once it has merged this many others, holds this many buckets and they
/// fill a quarter of their range: then every added bucket is an index into an array (a merge of
/// two sorted lists costs their whole length), and the array takes at most twice the list's
/// memory. A group of a few rows (a service's minute) stays a list: converting costs more than
/// it saves.
const DENSE_MIN_BUCKETS: usize = 64;
const DENSE_MIN_MERGES: u32 = 8;

impl Sparse {
    fn add(&mut self, index: i32, count: i64) -> Result<()> {
        if !(-MAX_INDEX..=MAX_INDEX).contains(&index) {
            return Err(DataFusionError::Execution(format!(
                "latency_sketch: bucket index {index} is out of range"
            )));
        }
        if self.dense.is_empty() {
            add_to_bucket(&mut self.buckets, index, count);
        } else {
            self.add_dense(index, count);
        }
        Ok(())
    }

    fn add_dense(&mut self, index: i32, count: i64) {
        if index < self.first {
            let grow = (self.first - index) as usize;
            self.dense.splice(0..0, std::iter::repeat_n(0, grow));
            self.first = index;
        }
        let at = (index - self.first) as usize;
        if at >= self.dense.len() {
            self.dense.resize(at + 1, 0);
        }
        self.dense[at] = self.dense[at].saturating_add(count);
    }

    /// Adds a sketch whose buckets are ascending and in range.
    fn merge(&mut self, index: &[i32], count: &[i64]) {
        if !self.dense.is_empty() {
            for (i, c) in index.iter().zip(count) {
                self.add_dense(*i, *c);
            }
            return;
        }
        merge_buckets(
            &mut self.buckets,
            index.iter().copied().zip(count.iter().copied()),
        );
        self.merged = self.merged.saturating_add(1);
        if self.merged < DENSE_MIN_MERGES || self.buckets.len() < DENSE_MIN_BUCKETS {
            return;
        }
        if let (Some(&(lo, _)), Some(&(hi, _))) = (self.buckets.first(), self.buckets.last()) {
            let width = (hi as i64 - lo as i64 + 1) as usize;
            if self.buckets.len() * 4 >= width {
                self.first = lo;
                self.dense = vec![0; width];
                for (i, c) in std::mem::take(&mut self.buckets) {
                    self.dense[(i - lo) as usize] = c;
                }
            }
        }
    }

    /// Calls `f` with each bucket that holds something, ascending.
    fn each(&self, mut f: impl FnMut(i32, i64)) {
        if self.dense.is_empty() {
            self.buckets.iter().for_each(|(i, c)| f(*i, *c));
        } else {
            (self.first..)
                .zip(&self.dense)
                .filter(|(_, c)| **c != 0)
                .for_each(|(i, c)| f(i, *c));
        }
    }

    /// How many buckets [`Sparse::each`] calls back with.
    fn len(&self) -> usize {
        let mut n = 0;
        self.each(|_, _| n += 1);
        n
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.buckets.capacity() * 16 + self.dense.capacity() * 8
    }
}

/// Sketches as the struct array `latency_sketch` returns (NULL where nothing was added).
fn to_array(sketches: &[Sparse]) -> Result<ArrayRef> {
    // Straight into value buffers sized once: a list builder appends value by value, and
    // growing a vector of a million buckets copies it again at every doubling.
    let lengths: Vec<usize> = sketches.iter().map(Sparse::len).collect();
    let total = lengths.iter().sum();
    let mut index = Vec::with_capacity(total);
    let mut count = Vec::with_capacity(total);
    for s in sketches {
        if s.dense.is_empty() {
            index.extend(s.buckets.iter().map(|b| b.0));
            count.extend(s.buckets.iter().map(|b| b.1));
        } else {
            s.each(|i, c| {
                index.push(i);
                count.push(c);
            });
        }
    }
    let offsets = OffsetBuffer::<i32>::from_lengths(lengths);
    let list = |field: DataType, values: ArrayRef| -> Result<ArrayRef> {
        let DataType::List(item) = field else {
            unreachable!("sketch bucket columns are lists")
        };
        Ok(Arc::new(ListArray::try_new(
            item,
            offsets.clone(),
            values,
            None,
        )?))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from(vec![SKETCH_SCALE; sketches.len()])),
        Arc::new(sketches.iter().map(|s| s.zero).collect::<Int64Array>()),
        list(index_type(), Arc::new(Int32Array::from(index)))?,
        list(counts_type(), Arc::new(Int64Array::from(count)))?,
    ];
    let nulls: Vec<bool> = sketches.iter().map(|s| s.seen).collect();
    Ok(Arc::new(StructArray::try_new(
        sketch_fields(),
        columns,
        Some(nulls.into()),
    )?))
}

/// The histograms of a `latency_sketch` struct array, dense, for the `exp_histogram_*`
/// functions that have no in-place path; `None` when `array` is not one.
pub(crate) fn histograms(array: &ArrayRef) -> Result<Option<Vec<Option<ExpHistogram>>>> {
    let Some(sketches) = Sketches::of(array)? else {
        return Ok(None);
    };
    (0..array.len())
        .map(|row| {
            if sketches.structs.is_null(row) {
                return Ok(None);
            }
            let mut one = Sparse::default();
            sketches.inputs.add_row(row, &mut one)?;
            let mut buckets = Vec::new();
            one.each(|i, c| buckets.push((i, c)));
            let (offset, counts) = match (buckets.first(), buckets.last()) {
                (Some((first, _)), Some((last, _))) => {
                    let mut counts = vec![0; (last - first) as usize + 1];
                    for (i, c) in &buckets {
                        counts[(i - first) as usize] = *c;
                    }
                    (*first, counts)
                }
                _ => (0, Vec::new()),
            };
            Ok(Some(ExpHistogram {
                scale: sketches.scale.value(row),
                zero_count: one.zero,
                zero_threshold: 0.0,
                positive: Buckets { offset, counts },
                negative: Buckets::default(),
            }))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// A `latency_sketch` struct array, read in place: percentiles and counts need no dense copy.
pub(crate) struct Sketches<'a> {
    inputs: Inputs<'a>,
    structs: &'a StructArray,
    scale: &'a Int32Array,
}

impl<'a> Sketches<'a> {
    /// `None` when `array` is not a `latency_sketch` struct.
    pub(crate) fn of(array: &'a ArrayRef) -> Result<Option<Self>> {
        let is_sketch = array
            .as_struct_opt()
            .is_some_and(|s| s.column_by_name("bucket_index").is_some());
        if !is_sketch {
            return Ok(None);
        }
        let (inputs, structs) = Inputs::of_struct(array)?;
        let scale = structs
            .column_by_name("scale")
            .and_then(|c| c.as_primitive_opt::<Int32Type>())
            .ok_or_else(|| {
                DataFusionError::Plan("a latency sketch's scale must be an INT".into())
            })?;
        Ok(Some(Self {
            inputs,
            structs,
            scale,
        }))
    }

    /// Row `row`'s observation count and its observations as (log-midpoint, count),
    /// ascending; `None` for a NULL sketch.
    pub(crate) fn row(
        &self,
        row: usize,
    ) -> Option<(i64, impl Iterator<Item = (Midpoint, i64)> + '_)> {
        if self.structs.is_null(row) || self.inputs.index.is_null(row) {
            return None;
        }
        let (index, count) = self.inputs.buckets(row);
        let zero = if self.inputs.zero.is_valid(row) {
            self.inputs.zero.value(row)
        } else {
            0
        };
        let total = count.iter().fold(zero, |n, c| n.saturating_add(*c));
        let scale = self.scale.value(row);
        let buckets = index
            .iter()
            .zip(count)
            .map(move |(i, c)| (Midpoint::positive(*i, scale), *c));
        Some((
            total,
            std::iter::once((Midpoint::ZERO, zero))
                .chain(buckets)
                .filter(|(_, c)| *c > 0),
        ))
    }
}

/// Bucket indexes, their counts and the zero count, one sketch per row: the rollups' three
/// columns, or the fields of a `latency_sketch` struct.
struct Inputs<'a> {
    index: &'a ListArray,
    count: &'a ListArray,
    zero: &'a Int64Array,
    /// The lists' values, read through the offsets: slicing a list per row costs more than
    /// the percentile it feeds.
    index_values: &'a [i32],
    count_values: &'a [i64],
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
        Self::of_lists(
            list(0)?,
            list(1)?,
            values[2].as_primitive_opt::<Int64Type>().ok_or_else(|| {
                DataFusionError::Plan("latency_sketch: argument 3 must be a BIGINT".into())
            })?,
        )
    }

    fn of_lists(index: &'a ListArray, count: &'a ListArray, zero: &'a Int64Array) -> Result<Self> {
        let index_values = index
            .values()
            .as_primitive_opt::<Int32Type>()
            .ok_or_else(|| {
                DataFusionError::Plan("latency_sketch: bucket indexes must be INTs".into())
            })?
            .values();
        let count_values = count
            .values()
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| {
                DataFusionError::Plan("latency_sketch: bucket counts must be BIGINTs".into())
            })?
            .values();
        Ok(Self {
            index,
            count,
            zero,
            index_values,
            count_values,
        })
    }

    /// Row `row`'s bucket indexes and counts (cut to the shorter of the two).
    fn buckets(&self, row: usize) -> (&'a [i32], &'a [i64]) {
        let (io, co) = (self.index.value_offsets(), self.count.value_offsets());
        let index = &self.index_values[io[row] as usize..io[row + 1] as usize];
        let count = &self.count_values[co[row] as usize..co[row + 1] as usize];
        let n = index.len().min(count.len());
        (&index[..n], &count[..n])
    }

    /// The three fields of a `latency_sketch` struct array.
    fn of_struct(array: &'a ArrayRef) -> Result<(Self, &'a StructArray)> {
        let s = array.as_struct_opt().ok_or_else(|| {
            DataFusionError::Plan("latency_sketch: the state is not a sketch struct".into())
        })?;
        let field = |name: &str| {
            s.column_by_name(name).ok_or_else(|| {
                DataFusionError::Plan(format!("latency_sketch: the state has no {name}"))
            })
        };
        let inputs = Self::of_lists(
            field("bucket_index")?.as_list_opt::<i32>().ok_or_else(|| {
                DataFusionError::Plan("latency_sketch: bucket_index is not a list".into())
            })?,
            field("bucket_count")?.as_list_opt::<i32>().ok_or_else(|| {
                DataFusionError::Plan("latency_sketch: bucket_count is not a list".into())
            })?,
            field("zero_count")?
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| {
                    DataFusionError::Plan("latency_sketch: zero_count is not a BIGINT".into())
                })?,
        )?;
        Ok((inputs, s))
    }

    fn add_row(&self, row: usize, into: &mut Sparse) -> Result<()> {
        if self.index.is_null(row) || self.count.is_null(row) {
            return Ok(());
        }
        into.seen = true;
        if self.zero.is_valid(row) {
            into.zero = into.zero.saturating_add(self.zero.value(row));
        }
        if self.index.value_length(row) != self.count.value_length(row) {
            return Err(DataFusionError::Execution(
                "latency_sketch: bucket indexes and counts differ in length".into(),
            ));
        }
        let (index, count) = self.buckets(row);
        // Rows in order and in range, as the rollups write them, are merged whole.
        let in_order = index.windows(2).all(|w| w[0] < w[1])
            && index
                .first()
                .zip(index.last())
                .is_none_or(|(lo, hi)| *lo >= -MAX_INDEX && *hi <= MAX_INDEX);
        if in_order {
            into.merge(index, count);
            return Ok(());
        }
        for (i, c) in index.iter().zip(count) {
            into.add(*i, *c)?;
        }
        Ok(())
    }
}

/// `latency_sketch(latency_bucket_index, latency_bucket_count, latency_zero_count)` merges
/// rollup sketches; `latency_sketch_of(duration_ns)` builds the same sketch from raw durations,
/// bucketed as the rollups bucket spans (what a rollup computed by a query, `edge_rollup_1m`,
/// stores). One implementation, two inputs.
#[derive(Debug, PartialEq, Eq, Hash)]
struct LatencySketch {
    signature: Signature,
    /// The input is durations (`latency_sketch_of`), not sketches.
    of_values: bool,
}

impl LatencySketch {
    fn new(of_values: bool) -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            of_values,
        }
    }

    fn groups(&self) -> SketchGroups {
        SketchGroups {
            groups: Vec::new(),
            from_values: self.of_values,
        }
    }
}

impl AggregateUDFImpl for LatencySketch {
    fn name(&self) -> &str {
        if self.of_values {
            "latency_sketch_of"
        } else {
            "latency_sketch"
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if self.of_values {
            coerce_to(
                "latency_sketch_of(duration_ns)",
                arg_types,
                vec![DataType::Int64],
            )
        } else {
            coerce_to(
                "latency_sketch(latency_bucket_index, latency_bucket_count, latency_zero_count)",
                arg_types,
                vec![index_type(), counts_type(), DataType::Int64],
            )
        }
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(latency_sketch_type())
    }
    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(self.groups()))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<Arc<Field>>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[sketch]", args.name),
            latency_sketch_type(),
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
        Ok(Box::new(self.groups()))
    }
}

#[derive(Debug, Default)]
struct SketchGroups {
    groups: Vec<Sparse>,
    /// The inputs are durations in ns (`latency_sketch_of`), not sketches.
    from_values: bool,
}

/// Adds the durations of `values` (ns) to `groups` as the rollups do: one count in the bucket
/// of each positive duration, zero and negative ones in the zero bucket, NULLs left out.
fn add_values(
    values: &ArrayRef,
    opt_filter: Option<&BooleanArray>,
    mut group: impl FnMut(usize) -> usize,
    groups: &mut [Sparse],
) -> Result<()> {
    let values = values.as_primitive_opt::<Int64Type>().ok_or_else(|| {
        DataFusionError::Execution("latency_sketch_of: the durations are not BIGINT".into())
    })?;
    for (row, v) in values.iter().enumerate() {
        let (Some(v), true) = (v, selected(opt_filter, row)) else {
            continue;
        };
        let into = &mut groups[group(row)];
        into.seen = true;
        if v <= 0 {
            into.zero = into.zero.saturating_add(1);
        } else {
            into.add(headroom_sketch::latency::bucket_index(v), 1)?;
        }
    }
    Ok(())
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
        self.groups.resize_with(total_num_groups, Sparse::default);
        if self.from_values {
            return add_values(
                &values[0],
                opt_filter,
                |row| group_indices[row],
                &mut self.groups,
            );
        }
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
        self.groups.resize_with(total_num_groups, Sparse::default);
        let (inputs, states) = Inputs::of_struct(&values[0])?;
        for (row, g) in group_indices.iter().enumerate() {
            if states.is_valid(row) {
                inputs.add_row(row, &mut self.groups[*g])?;
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        if self.from_values {
            let mut sketches = vec![Sparse::default(); values[0].len()];
            add_values(&values[0], opt_filter, |row| row, &mut sketches)?;
            return Ok(vec![to_array(&sketches)?]);
        }
        let inputs = Inputs::new(values)?;
        let sketches = (0..inputs.index.len())
            .map(|row| {
                let mut one = Sparse::default();
                if selected(opt_filter, row) {
                    inputs.add_row(row, &mut one)?;
                }
                Ok(one)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(vec![to_array(&sketches)?])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        to_array(&emit_to.take_needed(&mut self.groups))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![to_array(&emit_to.take_needed(&mut self.groups))?])
    }

    fn size(&self) -> usize {
        self.groups.iter().map(Sparse::size).sum::<usize>() + std::mem::size_of::<Self>()
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
        let one = self.groups.first().cloned().unwrap_or_default();
        ScalarValue::try_from_array(&to_array(&[one])?, 0)
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
    use headroom_sketch::latency::bucket_index;

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

    /// `latency_sketch_of` over durations builds the sketch the rollups store for them; NULL
    /// durations are left out, and a group of only NULLs has no sketch.
    #[tokio::test]
    async fn sketches_of_durations_are_the_rollups_sketches() {
        let ms = 1_000_000;
        let groups: [(&str, &[i64]); 3] = [
            ("a", &[10 * ms, 20 * ms, 10 * ms + 1, 0, -5]),
            ("b", &[7, 1 << 40]),
            ("c", &[]),
        ];
        let batch = table(&groups);
        let (names, durations): (Vec<&str>, Vec<Option<i64>>) = groups
            .iter()
            .flat_map(|(g, ds)| ds.iter().map(|d| (*g, Some(*d))).chain([(*g, None)]))
            .unzip();
        let values = RecordBatch::try_from_iter([
            (
                "g",
                Arc::new(arrow::array::StringArray::from(names)) as ArrayRef,
            ),
            ("d", Arc::new(Int64Array::from(durations)) as ArrayRef),
        ])
        .unwrap();
        let merged = query(
            batch,
            "SELECT g, CASE WHEN g = 'c' THEN NULL ELSE latency_sketch(idx, cnt, zero) END AS s
             FROM t GROUP BY g ORDER BY g",
        )
        .await;
        let built = query(
            values,
            "SELECT g, latency_sketch_of(d) AS s FROM t GROUP BY g ORDER BY g",
        )
        .await;
        assert_eq!(merged[0].column(1), built[0].column(1));
        assert!(built[0].column(1).is_null(2));
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

    proptest::proptest! {
        /// A sketch that turned dense holds what adding every bucket to a sorted list holds,
        /// including buckets below and above its first range.
        #[test]
        fn dense_sketches_hold_what_sparse_ones_do(
            rows in proptest::collection::vec(
                proptest::collection::btree_map(-300i32..300, 1i64..100, 0..150), 1..12),
        ) {
            let mut sketch = Sparse::default();
            let mut want: Vec<(i32, i64)> = Vec::new();
            for row in &rows {
                let (index, count): (Vec<i32>, Vec<i64>) = row.iter().map(|(i, c)| (*i, *c)).unzip();
                sketch.merge(&index, &count);
                for (i, c) in row {
                    add_to_bucket(&mut want, *i, *c);
                }
            }
            let mut got = Vec::new();
            sketch.each(|i, c| got.push((i, c)));
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn damaged_sketches_are_errors_not_panics() {
        let mut d = Sparse::default();
        assert!(d.add(MAX_INDEX + 1, 1).is_err());
        d.add(5, 1).unwrap();
        d.add(2, 1).unwrap();
        d.add(5, i64::MAX).unwrap();
        assert_eq!(d.buckets, vec![(2, 1), (5, i64::MAX)]);
        // A first row out of order or out of range is not copied as it is.
        let lists = |index: Vec<i32>| {
            let n = index.len();
            let index = ListArray::from_iter_primitive::<Int32Type, _, _>([Some(
                index.into_iter().map(Some).collect::<Vec<_>>(),
            )]);
            let count = ListArray::from_iter_primitive::<Int64Type, _, _>([Some(vec![Some(1); n])]);
            (index, count, Int64Array::from(vec![0]))
        };
        let (index, count, zero) = lists(vec![7, 3, 7]);
        let inputs = Inputs::of_lists(&index, &count, &zero).unwrap();
        let mut s = Sparse::default();
        inputs.add_row(0, &mut s).unwrap();
        assert_eq!(s.buckets, vec![(3, 1), (7, 2)]);
        let (index, count, zero) = lists(vec![1, MAX_INDEX + 1]);
        let inputs = Inputs::of_lists(&index, &count, &zero).unwrap();
        assert!(inputs.add_row(0, &mut Sparse::default()).is_err());
    }
}
