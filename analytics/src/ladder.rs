//! Reading the coarsest rollup that answers a query: a week of `span_rollup_1h` read as six
//! days of `span_rollup_1d` and the hours at either end.
//!
//! The rollup tables of one kind form a ladder (per minute, hour, day), each level the sum of
//! the one below. A query that aggregates a rollup table with functions that give the same
//! answer over partial aggregates however they are cut (`sum`, `min`, `max`, `latency_sketch`),
//! does not group by or compute with its time column, and bounds that column with plain
//! comparisons, gets the same answer from any mix of levels that covers each instant of its
//! range once. [`RollupLadder`] (an optimizer rule) finds such aggregates and swaps the scan for
//! a [`LadderScan`], which reads the whole days of the range from the daily table, the whole
//! hours left from the hourly one, and only the ragged ends from the table the query named.
//!
//! A coarser table is trusted only from the end of its first partition on: the partition in
//! which it started to be written (an upgrade) holds only part of what the finer one does.
//! DataFusion rewrites queries with materialized views only where they match the query's
//! shape; none of its rules re-aggregate a coarser table for a finer one.

use crate::file_cache::DecodedFiles;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::{DefaultTableSource, TableProvider, TableType, provider_as_source};
use datafusion::error::Result;
use datafusion::logical_expr::{
    Aggregate, Expr, LogicalPlan, TableProviderFilterPushDown, TableScan, col, lit,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use headroom_storage::schema::{self, TableDef};

use crate::catalog::{SnapshotSource, StoredTable};
use crate::ranged_view::{is_range_filter, range_of};

/// Aggregates whose value over a set of rows is their value over any partition of it, merged:
/// the ones rollup rows are made for.
const RE_AGGREGATABLE: [&str; 4] = ["sum", "min", "max", "latency_sketch"];

/// `def` and the coarser rollup tables of its kind, finest first.
fn ladder(def: &'static TableDef) -> Vec<&'static TableDef> {
    let Some(spec) = def.rollup else {
        return Vec::new();
    };
    let mut levels: Vec<&'static TableDef> = schema::tables()
        .iter()
        .filter(|t| {
            t.rollup.is_some_and(|r| {
                r.by_endpoint == spec.by_endpoint
                    && r.width_ns >= spec.width_ns
                    && r.width_ns % spec.width_ns == 0
                    && t.time_column == def.time_column
            })
        })
        .collect();
    levels.sort_by_key(|t| t.rollup.map_or(0, |r| r.width_ns));
    levels
}

/// The optimizer rule: see the module docs.
pub struct RollupLadder {
    source: Arc<dyn SnapshotSource>,
    cache: Option<Arc<DecodedFiles>>,
}

impl std::fmt::Debug for RollupLadder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RollupLadder").finish_non_exhaustive()
    }
}

impl RollupLadder {
    pub fn new(source: Arc<dyn SnapshotSource>, cache: Option<Arc<DecodedFiles>>) -> Self {
        Self { source, cache }
    }
}

fn mentions(expr: &Expr, column: &str) -> bool {
    expr.column_refs().iter().any(|c| c.name == column)
}

/// Whether the aggregate can read any level: see the module docs.
fn re_aggregatable(agg: &Aggregate, time: &str) -> bool {
    agg.group_expr.iter().all(|e| !mentions(e, time))
        && agg.aggr_expr.iter().all(|e| {
            let Expr::AggregateFunction(f) = e.clone().unalias() else {
                return false;
            };
            RE_AGGREGATABLE.contains(&f.func.name())
                && !f.params.distinct
                && f.params.order_by.is_empty()
                && f.params.args.iter().all(|a| !mentions(a, time))
                && f.params
                    .filter
                    .as_deref()
                    .is_none_or(|x| !mentions(x, time))
        })
}

/// The rollup scan under `plan` through filters, aliases and projections that leave its time
/// column alone, if every filter on the way bounds time plainly.
fn rollup_scan<'a>(plan: &'a LogicalPlan, time: &str) -> Option<&'a TableScan> {
    match plan {
        LogicalPlan::TableScan(scan) => scan
            .filters
            .iter()
            .all(|f| !mentions(f, time) || is_range_filter(time, f))
            .then_some(scan),
        LogicalPlan::Filter(f) => {
            let plain = datafusion::logical_expr::utils::split_conjunction(&f.predicate)
                .iter()
                .all(|p| !mentions(p, time) || is_range_filter(time, p));
            if plain {
                rollup_scan(&f.input, time)
            } else {
                None
            }
        }
        LogicalPlan::SubqueryAlias(a) => rollup_scan(&a.input, time),
        LogicalPlan::Projection(p) => {
            let passes_time = p
                .expr
                .iter()
                .all(|e| !mentions(e, time) || matches!(e, Expr::Column(c) if c.name == time));
            if passes_time {
                rollup_scan(&p.input, time)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The stored rollup table a scan reads, if it is one with a coarser level.
fn stored_rollup(scan: &TableScan) -> Option<&'static TableDef> {
    let source =
        (scan.source.as_ref() as &dyn std::any::Any).downcast_ref::<DefaultTableSource>()?;
    let table = source.table_provider.downcast_ref::<StoredTable>()?;
    let def = table.def();
    (ladder(def).len() > 1).then_some(def)
}

impl OptimizerRule for RollupLadder {
    fn name(&self) -> &str {
        "rollup_ladder"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(agg) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let Some(def) = rollup_scan(&agg.input, "time").and_then(stored_rollup) else {
            return Ok(Transformed::no(plan));
        };
        if def.time_column != "time" || !re_aggregatable(agg, def.time_column) {
            return Ok(Transformed::no(plan));
        }
        let ladder: Arc<dyn TableProvider> = Arc::new(LadderScan {
            levels: ladder(def),
            source: self.source.clone(),
            cache: self.cache.clone(),
        });
        // The scan itself is swapped; everything above it stays as planned.
        plan.transform_down(|node| match node {
            LogicalPlan::TableScan(scan)
                if stored_rollup(&scan).is_some_and(|d| std::ptr::eq(d, def)) =>
            {
                Ok(Transformed::yes(LogicalPlan::TableScan(TableScan {
                    source: provider_as_source(ladder.clone()),
                    ..scan
                })))
            }
            other => Ok(Transformed::no(other)),
        })
    }
}

/// A rollup table read from the coarsest levels that cover the asked range: see the module
/// docs. Its rows are the finest level's rows, re-cut; only aggregates that do not see the cut
/// may read it.
pub struct LadderScan {
    /// The table the query named first, then its coarser levels.
    levels: Vec<&'static TableDef>,
    source: Arc<dyn SnapshotSource>,
    cache: Option<Arc<DecodedFiles>>,
}

impl std::fmt::Debug for LadderScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.levels.iter().map(|d| d.name).collect();
        f.debug_struct("LadderScan")
            .field("levels", &names)
            .finish_non_exhaustive()
    }
}

/// `[from, to)` of level `level`.
type Segment = (usize, i64, i64);

/// Cuts `[from, to)` into the coarsest levels that cover it whole: `widths[i]` is level `i`'s
/// bucket, `trusted[i]` where its rows start to be complete.
fn segments(from: i64, to: i64, level: usize, widths: &[i64], trusted: &[i64]) -> Vec<Segment> {
    let Some((width, since)) = widths.get(level + 1).zip(trusted.get(level + 1)) else {
        return vec![(level, from, to)];
    };
    let start = from.max(*since);
    // The first whole bucket at or after `start` (never, for a table with nothing stored).
    let floor = start.div_euclid(*width).saturating_mul(*width);
    let lo = if floor < start {
        floor.saturating_add(*width)
    } else {
        floor
    };
    let hi = to.div_euclid(*width) * width;
    if lo >= hi {
        return vec![(level, from, to)];
    }
    let mut out = Vec::new();
    if from < lo {
        out.push((level, from, lo));
    }
    out.extend(segments(lo, hi, level + 1, widths, trusted));
    if hi < to {
        out.push((level, hi, to));
    }
    out
}

fn timestamp(ns: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(
        Some(ns),
        Some("UTC".into()),
    ))
}

#[async_trait]
impl TableProvider for LadderScan {
    fn schema(&self) -> SchemaRef {
        self.levels[0].schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let finest = self.levels[0];
        let time = finest.time_column;
        let table = |def| StoredTable::new(def, self.source.clone()).with_cache(self.cache.clone());
        let range = range_of(time, filters);
        let (Some(from), Some(to)) = (range.from, range.to) else {
            return table(finest).scan(state, projection, filters, limit).await;
        };
        let mut widths = Vec::new();
        let mut trusted = Vec::new();
        for (i, def) in self.levels.iter().enumerate() {
            widths.push(def.rollup.map_or(1, |r| r.width_ns));
            let first = if i == 0 {
                Some(i64::MIN)
            } else {
                let snap = self
                    .source
                    .snapshot(def.name)
                    .map_err(datafusion::error::DataFusionError::Execution)?;
                snap.files
                    .iter()
                    .chain(&snap.remote_files)
                    .filter_map(|f| f.hour_ns)
                    .min()
                    .map(|start| start.saturating_add(def.partition_ns))
            };
            trusted.push(first.unwrap_or(i64::MAX));
        }
        let cuts = segments(from, to, 0, &widths, &trusted);
        if cuts.len() == 1 {
            return table(finest).scan(state, projection, filters, limit).await;
        }
        // Each level's rows are cut to their segment exactly (the filters below only prune);
        // the cut needs the time column, which the query's projection may not hold.
        let schema = finest.schema();
        let time_index = schema.index_of(time)?;
        let wanted: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..schema.fields().len()).collect());
        let mut read = wanted.clone();
        if !read.contains(&time_index) {
            read.push(time_index);
        }
        let read_schema = Arc::new(schema.project(&read)?);
        let df_schema = DFSchema::try_from(read_schema.as_ref().clone())?;
        let mut parts: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        for (level, a, b) in cuts {
            let bounds = col(time)
                .gt_eq(timestamp(a))
                .and(col(time).lt(timestamp(b)));
            let mut scan_filters = filters.to_vec();
            scan_filters.push(bounds.clone());
            let plan = table(self.levels[level])
                .scan(state, Some(&read), &scan_filters, None)
                .await?;
            let predicate = state.create_physical_expr(bounds, &df_schema)?;
            let mut plan: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(predicate, plan)?);
            if read.len() != wanted.len() {
                let exprs = (0..wanted.len())
                    .map(|i| {
                        let field = read_schema.field(i);
                        (
                            Arc::new(datafusion::physical_expr::expressions::Column::new(
                                field.name(),
                                i,
                            )) as _,
                            field.name().clone(),
                        )
                    })
                    .collect::<Vec<_>>();
                plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
            }
            parts.push(plan);
        }
        UnionExec::try_new(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000_000;
    const D: i64 = 24 * H;
    const M: i64 = 60_000_000_000;

    #[test]
    fn a_range_is_cut_into_the_coarsest_whole_buckets() {
        let widths = [M, H, D];
        let all = [i64::MIN, i64::MIN, i64::MIN];
        // 7 days from 13:00: 11 hours, 6 days, 13 hours.
        let from = 10 * D + 13 * H;
        assert_eq!(
            segments(from, from + 7 * D, 1, &widths[..], &all),
            vec![
                (1, from, 11 * D),
                (2, 11 * D, 17 * D),
                (1, 17 * D, from + 7 * D)
            ]
        );
        // Per-minute rows from 12:30 to 12:30 two days later: minutes, hours, a day, hours,
        // minutes.
        let from = D + 12 * H + 30 * M;
        assert_eq!(
            segments(from, from + 2 * D, 0, &widths, &all),
            vec![
                (0, from, D + 13 * H),
                (1, D + 13 * H, 2 * D),
                (2, 2 * D, 3 * D),
                (1, 3 * D, 3 * D + 12 * H),
                (0, 3 * D + 12 * H, from + 2 * D),
            ]
        );
        // Within one hour: the level asked for only.
        assert_eq!(
            segments(5 * M, 50 * M, 0, &widths, &all),
            vec![(0, 5 * M, 50 * M)]
        );
        // The daily table is trusted from day 12 on: days 11 come from hours.
        let from = 10 * D + 13 * H;
        assert_eq!(
            segments(
                from,
                from + 7 * D,
                1,
                &widths,
                &[i64::MIN, i64::MIN, 12 * D]
            ),
            vec![
                (1, from, 12 * D),
                (2, 12 * D, 17 * D),
                (1, 17 * D, from + 7 * D)
            ]
        );
        // A table with nothing stored is never read.
        assert_eq!(
            segments(
                from,
                from + 7 * D,
                1,
                &widths,
                &[i64::MIN, i64::MIN, i64::MAX]
            ),
            vec![(1, from, from + 7 * D)]
        );
    }

    #[test]
    fn each_rollup_table_climbs_its_own_ladder() {
        let names = |t| {
            ladder(schema::table(t))
                .iter()
                .map(|d| d.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(schema::SPAN_ROLLUP_1M),
            [
                schema::SPAN_ROLLUP_1M,
                schema::SPAN_ROLLUP_1H,
                schema::SPAN_ROLLUP_1D
            ]
        );
        assert_eq!(
            names(schema::SERVICE_ROLLUP_1H),
            [schema::SERVICE_ROLLUP_1H, schema::SERVICE_ROLLUP_1D]
        );
        assert!(names(schema::SPANS).is_empty());
    }
}
