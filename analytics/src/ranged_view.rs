//! Views that see the time range a query asks for.
//!
//! A plain view is planned once, whatever the query around it: DataFusion pushes a filter on
//! the view's output down through projections, aggregates and the preserved side of outer
//! joins, but not into the other side of a join. `service_graph_1m` pairs each client span
//! with the server span it called, so `WHERE "time" > now() - INTERVAL '1 hour'` still hashed
//! every server span ever stored, and ran out of memory on two weeks of data.
//!
//! A [`BoundedView`] is planned per query instead: it reads the bounds of the query's filters
//! on its `time` column and writes them, widened by a margin, into every place the view text
//! marks with `{start_time_bounds}` (a predicate on `start_time`). The filters still run above
//! it, so the answer is the same as the plain view's, as long as the spans that belong
//! together start within the margin of each other. No crate offers this: it is the view
//! expansion DataFusion does, done later, when the filters are known.

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, LogicalPlan, LogicalPlanBuilder, Operator,
    TableProviderFilterPushDown,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::scalar::ScalarValue;
use headroom_storage::time::NANOS_PER_MINUTE;

/// The placeholder a bounded view's text puts where the time bounds go.
pub const PLACEHOLDER: &str = "{start_time_bounds}";
const TIME_COLUMN: &str = "time";

/// A view planned per query with its `time` bounds written in; see the module docs.
#[derive(Debug)]
pub struct BoundedView {
    name: String,
    /// The view's query, with [`PLACEHOLDER`] where the bounds go.
    query: String,
    schema: SchemaRef,
    /// Spans read reach this far outside the asked range.
    margin_ns: i64,
    /// Width of the `time` buckets: a row at `time` holds spans up to a bucket later.
    bucket_ns: i64,
}

/// `[from, to)` in nanoseconds since the epoch; either end may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Range {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl BoundedView {
    /// Plans `query` once, unbounded, for its schema.
    pub async fn new(
        ctx: &datafusion::prelude::SessionContext,
        name: &str,
        query: &str,
        margin_ns: i64,
    ) -> Result<Self> {
        if !query.contains(PLACEHOLDER) {
            return Err(DataFusionError::Plan(format!(
                "bounded view {name}: no {PLACEHOLDER} in its text"
            )));
        }
        let plan = ctx
            .state()
            .create_logical_plan(&query.replace(PLACEHOLDER, "TRUE"))
            .await?;
        Ok(Self {
            name: name.to_owned(),
            query: query.to_owned(),
            schema: Arc::new(plan.schema().as_arrow().clone()),
            margin_ns,
            bucket_ns: NANOS_PER_MINUTE,
        })
    }

    /// The view text for rows whose `time` lies in `range`.
    pub fn render(&self, range: Range) -> String {
        let mut bounds = Vec::new();
        if let Some(from) = range.from {
            bounds.push(format!(
                "start_time >= {}",
                timestamp(from - self.margin_ns)
            ));
        }
        if let Some(to) = range.to {
            // The last row allowed is at `to - 1`, and holds spans up to a bucket later.
            let end = to
                .saturating_sub(1)
                .saturating_add(self.bucket_ns)
                .saturating_add(self.margin_ns);
            bounds.push(format!("start_time < {}", timestamp(end)));
        }
        let predicate = if bounds.is_empty() {
            "TRUE".to_owned()
        } else {
            format!("({})", bounds.join(" AND "))
        };
        self.query.replace(PLACEHOLDER, &predicate)
    }
}

pub(crate) fn timestamp(ns: i64) -> String {
    format!("arrow_cast({ns}, 'Timestamp(Nanosecond, Some(\"UTC\"))')")
}

/// Nanoseconds of a timestamp literal.
fn literal_ns(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else {
        return None;
    };
    match v
        .cast_to(&DataType::Timestamp(TimeUnit::Nanosecond, None))
        .ok()?
    {
        ScalarValue::TimestampNanosecond(Some(ns), _) => Some(ns),
        _ => None,
    }
}

/// Narrows `range` by one filter on `column`, if it is one it understands.
fn narrow(column: &str, range: &mut Range, filter: &Expr) {
    let is_time = |e: &Expr| matches!(e, Expr::Column(c) if c.name == column);
    let mut lower = |ns: i64| range.from = Some(range.from.map_or(ns, |f| f.max(ns)));
    let upper = |range: &mut Range, end: i64| {
        range.to = Some(range.to.map_or(end, |t| t.min(end)));
    };
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, ns) = if is_time(left) {
                (*op, literal_ns(right))
            } else if is_time(right) {
                match op.swap() {
                    Some(op) => (op, literal_ns(left)),
                    None => return,
                }
            } else {
                if *op == Operator::And {
                    narrow(column, range, left);
                    narrow(column, range, right);
                }
                return;
            };
            let Some(ns) = ns else { return };
            match op {
                Operator::Gt | Operator::GtEq => lower(ns),
                Operator::Lt => upper(range, ns),
                Operator::LtEq => upper(range, ns.saturating_add(1)),
                Operator::Eq => {
                    lower(ns);
                    upper(range, ns.saturating_add(1));
                }
                _ => {}
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_time(expr) => {
            if let Some(ns) = literal_ns(low) {
                lower(ns);
            }
            if let Some(ns) = literal_ns(high) {
                upper(range, ns.saturating_add(1));
            }
        }
        _ => {}
    }
}

/// Whether `filter` is a bound on `column` that [`range_of`] reads in full: comparisons with
/// constants, `BETWEEN` and conjunctions of those. A filter that mentions the column otherwise
/// (a function of it, `OR`, `IN`) is not.
pub fn is_range_filter(column: &str, filter: &Expr) -> bool {
    let is_time = |e: &Expr| matches!(e, Expr::Column(c) if c.name == column);
    match filter {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => is_range_filter(column, left) && is_range_filter(column, right),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let comparison = matches!(
                op,
                Operator::Gt | Operator::GtEq | Operator::Lt | Operator::LtEq | Operator::Eq
            );
            comparison
                && ((is_time(left) && literal_ns(right).is_some())
                    || (is_time(right) && literal_ns(left).is_some()))
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => is_time(expr) && literal_ns(low).is_some() && literal_ns(high).is_some(),
        _ => false,
    }
}

/// The range of `column` (a timestamp) the filters allow: what a view planned per query and a
/// scan that skips partitions both need.
pub fn range_of(column: &str, filters: &[Expr]) -> Range {
    let mut range = Range::default();
    for f in filters {
        narrow(column, &mut range, f);
    }
    range
}

#[async_trait]
impl TableProvider for BoundedView {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Read for their bounds only; every filter still runs above the view.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let sql = self.render(range_of(TIME_COLUMN, filters));
        plan_view(state, &self.name, &sql, projection, limit).await
    }
}

/// The physical plan of a view's text written for one query, with the scan's projection and
/// limit: how the views planned per query ([`BoundedView`], `service_graph_1m`) expand.
pub(crate) async fn plan_view(
    state: &dyn Session,
    name: &str,
    sql: &str,
    projection: Option<&Vec<usize>>,
    limit: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let state = state
        .as_any()
        .downcast_ref::<SessionState>()
        .ok_or_else(|| DataFusionError::Internal(format!("view {name}: not a SessionState")))?;
    let plan = state.create_logical_plan(sql).await?;
    let plan = project(plan, projection, limit)?;
    state.create_physical_plan(&plan).await
}

fn project(
    plan: LogicalPlan,
    projection: Option<&Vec<usize>>,
    limit: Option<usize>,
) -> Result<LogicalPlan> {
    let mut builder = LogicalPlanBuilder::from(plan);
    if let Some(projection) = projection {
        let columns = builder.schema().columns();
        let exprs = projection
            .iter()
            .map(|&i| {
                columns.get(i).cloned().map(Expr::Column).ok_or_else(|| {
                    DataFusionError::Internal(format!("projection index {i} out of range"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        builder = builder.project(exprs)?;
    }
    if let Some(limit) = limit {
        builder = builder.limit(0, Some(limit))?;
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    fn ts(ns: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(
            Some(ns),
            Some("UTC".into()),
        ))
    }

    /// The bounds reach the view's text: a view that counts the spans it read shows them.
    #[tokio::test]
    async fn the_query_range_limits_what_the_view_reads() {
        use arrow::array::{RecordBatch, TimestampNanosecondArray};
        use arrow::datatypes::{Field, Schema};
        use datafusion::datasource::MemTable;
        use datafusion::prelude::SessionContext;

        let minute = NANOS_PER_MINUTE;
        let ctx = SessionContext::new();
        let ty = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![Field::new("start_time", ty, false)]));
        let times: Vec<i64> = (0..10).map(|m| m * minute).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(
                TimestampNanosecondArray::from(times).with_timezone("UTC"),
            )],
        )
        .unwrap();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("spans", Arc::new(table)).unwrap();
        let query = "SELECT arrow_cast(3 * 60000000000, 'Timestamp(Nanosecond, Some(\"UTC\"))') \
                     AS \"time\", count(*) AS n FROM spans WHERE {start_time_bounds}";
        let view = BoundedView::new(&ctx, "v", query, minute).await.unwrap();
        ctx.register_table("v", Arc::new(view)).unwrap();
        let read = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
                arrow::util::pretty::pretty_format_batches(&batches)
                    .unwrap()
                    .to_string()
            }
        };
        // Unbounded: all 10 spans.
        assert!(read("SELECT n FROM v").await.contains("| 10 |"));
        // time in [3 min, 4 min]: spans from 2 min (margin) to before 6 min (bucket + margin).
        let bounded = read(
            "SELECT n FROM v WHERE \"time\" >= arrow_cast(180000000000, 'Timestamp(Nanosecond, Some(\"UTC\"))') \
             AND \"time\" <= arrow_cast(240000000000, 'Timestamp(Nanosecond, Some(\"UTC\"))')",
        )
        .await;
        assert!(bounded.contains("| 4 |"), "{bounded}");
    }

    #[test]
    fn bounds_come_from_comparisons_and_between() {
        let t = || col("time");
        assert_eq!(range_of(TIME_COLUMN, &[]), Range::default());
        assert_eq!(
            range_of(
                TIME_COLUMN,
                &[t().gt_eq(ts(100)), t().lt(ts(900)), t().gt(ts(50))]
            ),
            Range {
                from: Some(100),
                to: Some(900)
            }
        );
        assert_eq!(
            range_of(TIME_COLUMN, &[ts(300).lt_eq(t())]),
            Range {
                from: Some(300),
                to: None
            }
        );
        assert_eq!(
            range_of(
                TIME_COLUMN,
                &[t().between(ts(10), ts(20)).and(col("client").eq(lit("a")))]
            ),
            Range {
                from: Some(10),
                to: Some(21)
            }
        );
        // Inclusive ends and equality end one past the value.
        assert_eq!(
            range_of(TIME_COLUMN, &[t().lt_eq(ts(5))]),
            Range {
                from: None,
                to: Some(6)
            }
        );
        assert_eq!(
            range_of(TIME_COLUMN, &[t().eq(ts(7))]),
            Range {
                from: Some(7),
                to: Some(8)
            }
        );
        // Strings are cast the way the column would compare them; other columns are not time.
        assert_eq!(
            range_of(TIME_COLUMN, &[t().gt_eq(lit("1970-01-01T00:00:01Z"))]).from,
            Some(1_000_000_000)
        );
        assert_eq!(range_of("start_time", &[t().gt(ts(5))]), Range::default());
        // Not bounds on time: ignored.
        assert_eq!(
            range_of(
                TIME_COLUMN,
                &[
                    col("client").gt(lit("a")),
                    t().not_between(ts(1), ts(2)),
                    t().gt(ts(5)).or(t().lt(ts(1)))
                ]
            ),
            Range::default()
        );
        // Other literal types that cast to timestamps.
        let micros = lit(ScalarValue::TimestampMicrosecond(Some(7), None));
        assert_eq!(range_of(TIME_COLUMN, &[t().gt(micros)]).from, Some(7_000));
    }
}
