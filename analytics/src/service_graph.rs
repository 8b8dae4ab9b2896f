//! The service graph's rollup: `edge_rollup_1m`, and `service_graph_1m` reading it.
//!
//! Pairing a client span with the server span it called takes a join over every span of the
//! range: on a week of spans a graph query spends seconds in it. Spans cannot be paired at
//! flush time either, because the two sides of a call come from different services, in
//! different requests, often seconds apart. So the edges are computed per hour once the hour
//! has settled (the next hour has ended), with the same SQL the view runs over the spans
//! (`service_graph_calls`), and stored with latency sketches in `edge_rollup_1m`, one file per
//! hour.
//!
//! Each file records how many spans the partitions it read held (the hour and its neighbours,
//! which the 15-minute pairing margin reaches into). Late spans for an hour change that count,
//! or sit in the hot buffer: the hour's file is then stale. `service_graph_1m` is planned per
//! query: it reads the file of every hour that is up to date and counts every other hour with
//! spans from the spans, so an answer never waits for the refresh and never counts a call
//! twice. The refresh ([`refresh`], in the server's maintenance round) computes stale and
//! missing hours again.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StructArray};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use headroom_storage::schema::{self, EDGE_ROLLUP_1M, SPANS};
use headroom_storage::store::{Snapshot, Store};
use headroom_storage::time::{NANOS_PER_HOUR, NANOS_PER_MINUTE};

use crate::catalog::SnapshotSource;
use crate::ranged_view::{Range, plan_view, range_of, timestamp};
use crate::{QueryEngine, QueryError};

/// Where `service_graph_1m` puts the hours it counts from the spans.
pub const RAW_PLACEHOLDER: &str = "{raw_calls}";
/// Where it puts the hours it reads from `edge_rollup_1m`.
pub const ROLLED_PLACEHOLDER: &str = "{rolled_minutes}";
const TIME_COLUMN: &str = "time";

/// Which source answers each hour, from one look at the spans and the edge files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// Hours whose edges `edge_rollup_1m` holds, up to date.
    pub rolled: BTreeSet<i64>,
    /// Hours with spans whose edges it does not hold (missing or stale).
    pub raw: BTreeSet<i64>,
    /// Of `raw`, those with stored spans and none buffered nearby, with the spans their file
    /// would count: the refresh computes those that have settled.
    computable: Vec<(i64, u64)>,
}

fn hour_of(t_ns: i64) -> i64 {
    t_ns.div_euclid(NANOS_PER_HOUR) * NANOS_PER_HOUR
}

/// The hours the buffered (not yet flushed) spans start in.
fn hot_hours(spans: &Snapshot) -> Result<BTreeSet<i64>> {
    let mut hours = BTreeSet::new();
    for batch in &spans.batches {
        let Some(times) = batch
            .column_by_name("start_time")
            .and_then(|c| c.as_primitive_opt::<arrow::datatypes::TimestampNanosecondType>())
        else {
            return Err(DataFusionError::Internal(
                "spans: start_time is not a timestamp".into(),
            ));
        };
        let (Some(min), Some(max)) = (arrow::compute::min(times), arrow::compute::max(times))
        else {
            continue;
        };
        if max - min <= 3 * NANOS_PER_HOUR {
            // The usual batch: a few seconds of spans.
            hours.extend((hour_of(min)..=hour_of(max)).step_by(NANOS_PER_HOUR as usize));
        } else {
            hours.extend(times.values().iter().map(|t| hour_of(*t)));
        }
    }
    Ok(hours)
}

impl Coverage {
    /// `edges` and `spans`: snapshots of `edge_rollup_1m` and `spans`.
    pub fn of(edges: &Snapshot, spans: &Snapshot) -> Result<Self> {
        let mut span_rows: HashMap<i64, u64> = HashMap::new();
        // Other writers' files count too: an hour whose spans several writers hold has one
        // edge file per writer, or a file counting fewer spans than there are, and is paired
        // from the spans of all of them.
        for f in spans.files.iter().chain(&spans.remote_files) {
            if let Some(hour) = f.hour_ns {
                *span_rows.entry(hour).or_default() += f.rows;
            }
        }
        let hot = hot_hours(spans)?;
        // What the hour's file would count: its partition and the two the margin reaches.
        let source_rows = |hour: i64| -> u64 {
            [hour - NANOS_PER_HOUR, hour, hour + NANOS_PER_HOUR]
                .iter()
                .filter_map(|h| span_rows.get(h))
                .sum()
        };
        // No buffered span the hour's file would have to count.
        let quiet = |hour: i64| {
            hot.range(hour - NANOS_PER_HOUR..=hour + NANOS_PER_HOUR)
                .next()
                .is_none()
        };
        let mut files: HashMap<i64, Vec<Option<u64>>> = HashMap::new();
        for f in edges.files.iter().chain(&edges.remote_files) {
            if let Some(hour) = f.hour_ns {
                files.entry(hour).or_default().push(f.source_rows);
            }
        }
        let mut coverage = Coverage::default();
        for (hour, recorded) in &files {
            let up_to_date = match recorded.as_slice() {
                // Spans of an hour past their retention are gone; its edges stay.
                [Some(n)] => !span_rows.contains_key(hour) || source_rows(*hour) == *n,
                _ => false,
            };
            if up_to_date && quiet(*hour) {
                coverage.rolled.insert(*hour);
            }
        }
        let with_spans = span_rows.keys().chain(hot.iter()).copied();
        coverage.raw = with_spans
            .filter(|h| !coverage.rolled.contains(h))
            .collect();
        coverage.computable = coverage
            .raw
            .iter()
            .filter(|h| span_rows.contains_key(h) && quiet(**h))
            .map(|h| (*h, source_rows(*h)))
            .collect();
        Ok(coverage)
    }

    /// The hours to compute at `now_ns`, oldest first, with the spans their file will count:
    /// those whose next hour has ended.
    pub fn due(&self, now_ns: i64) -> Vec<(i64, u64)> {
        self.computable
            .iter()
            .filter(|(h, _)| h + 2 * NANOS_PER_HOUR <= now_ns)
            .copied()
            .collect()
    }
}

/// Runs of consecutive hours as `[start, end)` intervals, clipped to `[lo, hi)`.
fn runs(hours: &BTreeSet<i64>, lo: Option<i64>, hi: Option<i64>) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for h in hours {
        let (start, end) = (*h, h + NANOS_PER_HOUR);
        if lo.is_some_and(|lo| end <= lo) || hi.is_some_and(|hi| start >= hi) {
            continue;
        }
        match out.last_mut() {
            Some((_, e)) if *e == start => *e = end,
            _ => out.push((start, end)),
        }
    }
    for (s, e) in &mut out {
        *s = lo.map_or(*s, |lo| (*s).max(lo));
        *e = hi.map_or(*e, |hi| (*e).min(hi));
    }
    out
}

/// `"time"` within any of `intervals`, with their hull spelled out for the scans' pruning.
fn within(intervals: &[(i64, i64)]) -> String {
    let between = |(s, e): &(i64, i64)| {
        format!(
            "\"time\" >= {} AND \"time\" < {}",
            timestamp(*s),
            timestamp(*e)
        )
    };
    match intervals {
        [] => "FALSE".to_owned(),
        [one] => format!("({})", between(one)),
        [first, .., last] => format!(
            "({} AND ({}))",
            between(&(first.0, last.1)),
            intervals
                .iter()
                .map(|i| format!("({})", between(i)))
                .collect::<Vec<_>>()
                .join(" OR ")
        ),
    }
}

/// `service_graph_1m`, planned per query: see the module docs.
pub struct ServiceGraphView {
    query: String,
    schema: SchemaRef,
    /// Without one (tables held in memory), every hour is counted from the spans.
    source: Option<Arc<dyn SnapshotSource>>,
}

impl fmt::Debug for ServiceGraphView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceGraphView").finish_non_exhaustive()
    }
}

impl ServiceGraphView {
    pub async fn new(
        ctx: &datafusion::prelude::SessionContext,
        query: &str,
        source: Option<Arc<dyn SnapshotSource>>,
    ) -> Result<Self> {
        let all_raw = query
            .replace(RAW_PLACEHOLDER, "TRUE")
            .replace(ROLLED_PLACEHOLDER, "FALSE");
        let plan = ctx.state().create_logical_plan(&all_raw).await?;
        Ok(Self {
            query: query.to_owned(),
            schema: Arc::new(plan.schema().as_arrow().clone()),
            source,
        })
    }

    /// The view text for rows whose `time` lies in `range`, each hour answered by the source
    /// `coverage` names (`None`: every hour from the spans).
    pub fn render(&self, range: Range, coverage: Option<&Coverage>) -> String {
        // Rows are minutes: the minutes the range touches, whole.
        let lo = range
            .from
            .map(|t| t.div_euclid(NANOS_PER_MINUTE) * NANOS_PER_MINUTE);
        let hi = range.to.map(|t| {
            (t.saturating_sub(1)).div_euclid(NANOS_PER_MINUTE) * NANOS_PER_MINUTE + NANOS_PER_MINUTE
        });
        let (raw, rolled) = match coverage {
            Some(c) => (
                within(&runs(&c.raw, lo, hi)),
                within(&runs(&c.rolled, lo, hi)),
            ),
            None => {
                let mut bounds = vec!["TRUE".to_owned()];
                bounds.extend(lo.map(|t| format!("\"time\" >= {}", timestamp(t))));
                bounds.extend(hi.map(|t| format!("\"time\" < {}", timestamp(t))));
                (format!("({})", bounds.join(" AND ")), "FALSE".to_owned())
            }
        };
        self.query
            .replace(RAW_PLACEHOLDER, &raw)
            .replace(ROLLED_PLACEHOLDER, &rolled)
    }

    fn coverage(&self) -> Result<Option<Coverage>> {
        let Some(source) = &self.source else {
            return Ok(None);
        };
        let snapshot = |t| source.snapshot(t).map_err(DataFusionError::Execution);
        // Edges first: a file written in between only makes an hour look stale, never the
        // reverse.
        let edges = snapshot(EDGE_ROLLUP_1M)?;
        let spans = snapshot(SPANS)?;
        Coverage::of(&edges, &spans).map(Some)
    }
}

#[async_trait]
impl TableProvider for ServiceGraphView {
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
        let sql = self.render(range_of(TIME_COLUMN, filters), self.coverage()?.as_ref());
        plan_view(state, "service_graph_1m", &sql, projection, limit).await
    }
}

/// The edges of the calls that started in `[from, to)`, as `edge_rollup_1m` holds them.
fn edges_query(from: i64, to: i64) -> String {
    format!(
        "SELECT date_bin(INTERVAL '1 minute', \"time\", TIMESTAMP '1970-01-01T00:00:00Z') AS \"time\",
           client, server, connection_type, count(*) AS requests, sum(failed) AS failed,
           sum(failed_origin_downstream) AS failed_origin_downstream,
           sum(failed_origin_server) AS failed_origin_server,
           sum(failed_origin_edge) AS failed_origin_edge,
           latency_sketch_of(client_ns) AS client_latency,
           latency_sketch_of(server_ns) AS server_latency
         FROM service_graph_calls
         WHERE \"time\" >= {} AND \"time\" < {}
         GROUP BY 1, 2, 3, 4
         ORDER BY 1, 2, 3, 4",
        timestamp(from),
        timestamp(to)
    )
}

/// The rows of [`edges_query`] in the columns of `edge_rollup_1m`: each sketch struct becomes
/// its zero count, bucket indexes and bucket counts.
fn to_table(batches: &[RecordBatch]) -> std::result::Result<RecordBatch, QueryError> {
    let target = schema::table(EDGE_ROLLUP_1M).schema();
    let Some(first) = batches.first() else {
        return Ok(RecordBatch::new_empty(target));
    };
    let input = arrow::compute::concat_batches(&first.schema(), batches)?;
    let column = |name: &str| {
        input
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| QueryError::Internal(format!("edges query: no column {name}")))
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let array = match field.name().split_once('_') {
            Some((side @ ("client" | "server"), part)) => {
                let sketch = column(&format!("{side}_latency"))?;
                let sketch: &StructArray = sketch.as_struct();
                let part = sketch
                    .column_by_name(part)
                    .ok_or_else(|| QueryError::Internal(format!("sketch without {part}")))?;
                // A NULL sketch (a call without a server span) is NULL in each column.
                match sketch.nulls() {
                    Some(valid) => arrow::compute::nullif(
                        part,
                        &arrow::array::BooleanArray::new(!valid.inner(), None),
                    )?,
                    None => part.clone(),
                }
            }
            _ => column(field.name())?,
        };
        columns.push(arrow::compute::cast(&array, field.data_type())?);
    }
    Ok(RecordBatch::try_new(target, columns)?)
}

/// What one [`refresh`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Hours computed (again).
    pub hours: usize,
    /// Hours still due: the next call goes on with them.
    pub remaining: usize,
}

/// Computes the edges of up to `max_hours` settled hours whose file is missing or stale, oldest
/// first, and replaces their files.
pub async fn refresh(
    engine: &QueryEngine,
    store: &Arc<Store>,
    now_ns: i64,
    max_hours: usize,
) -> std::result::Result<Refreshed, QueryError> {
    // This writer rolls up the hours of its own spans.
    let snapshot = |t| {
        store
            .snapshot(t)
            .map(|s| Snapshot {
                remote_files: Vec::new(),
                ..s
            })
            .map_err(|e| QueryError::Internal(e.to_string()))
    };
    let due = Coverage::of(&snapshot(EDGE_ROLLUP_1M)?, &snapshot(SPANS)?)?.due(now_ns);
    let mut done = 0;
    for (hour, source_rows) in due.iter().take(max_hours) {
        // The spans were counted before the query reads them: a span arriving in between makes
        // the file look stale, so it is computed again, never trusted with a call missing.
        let batch = to_table(
            &engine
                .sql(&edges_query(*hour, hour + NANOS_PER_HOUR))
                .await?,
        )?;
        let (store, hour, source_rows) = (store.clone(), *hour, *source_rows);
        tokio::task::spawn_blocking(move || {
            store.replace_partition(EDGE_ROLLUP_1M, hour, &batch, source_rows)
        })
        .await
        .map_err(|e| QueryError::Internal(e.to_string()))?
        .map_err(|e| QueryError::Internal(e.to_string()))?;
        done += 1;
    }
    Ok(Refreshed {
        hours: done,
        remaining: due.len() - done,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use arrow::array::TimestampNanosecondArray;
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use headroom_storage::parquet::DataFile;

    use super::*;

    const H: i64 = NANOS_PER_HOUR;

    fn file(hour: i64, rows: u64, source_rows: Option<u64>) -> DataFile {
        DataFile {
            path: PathBuf::from(format!("/x/{hour}-{rows}.parquet")),
            size_bytes: 1,
            rows,
            hour_ns: Some(hour),
            wal_lsn: 0,
            source_rows,
        }
    }

    fn snapshot(files: Vec<DataFile>, hot_times: &[i64]) -> Snapshot {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "start_time",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        )]));
        let batches = if hot_times.is_empty() {
            Vec::new()
        } else {
            vec![
                RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(
                        TimestampNanosecondArray::from(hot_times.to_vec()).with_timezone("UTC"),
                    )],
                )
                .unwrap(),
            ]
        };
        Snapshot {
            schema,
            files,
            batches,
            remote_files: Vec::new(),
            remote_url: None,
        }
    }

    fn set(hours: &[i64]) -> BTreeSet<i64> {
        hours.iter().map(|h| h * H).collect()
    }

    /// Spans in hours 10..=14 (100 rows each, 150 in hour 12 after late spans).
    fn spans(hot_times: &[i64]) -> Snapshot {
        let mut files: Vec<DataFile> = (10..=14).map(|h| file(h * H, 100, None)).collect();
        files.push(file(12 * H, 50, None));
        snapshot(files, hot_times)
    }

    #[test]
    fn an_hour_is_rolled_up_while_its_spans_and_their_neighbours_are_unchanged() {
        // Hour 10 counted 200 (9 has none, 11 has 100); 11 counted 300 before hour 12 got 50
        // late spans: stale, like 12 and 13 themselves; 14 has none yet.
        let edges = snapshot(
            vec![
                file(10 * H, 7, Some(200)),
                file(11 * H, 7, Some(300)),
                file(12 * H, 7, Some(300)),
                file(13 * H, 7, Some(300)),
            ],
            &[],
        );
        let c = Coverage::of(&edges, &spans(&[])).unwrap();
        assert_eq!(c.rolled, set(&[10]));
        assert_eq!(c.raw, set(&[11, 12, 13, 14]));
        // Settled: an hour whose next hour has ended.
        assert_eq!(
            c.due(15 * H),
            vec![(11 * H, 350), (12 * H, 350), (13 * H, 350)]
        );
        assert_eq!(c.due(15 * H - 1), vec![(11 * H, 350), (12 * H, 350)]);
    }

    #[test]
    fn buffered_spans_make_their_hour_and_its_neighbours_raw() {
        let edges = snapshot(
            (10..=14)
                .map(|h| file(h * H, 7, Some(if h == 10 || h == 14 { 200 } else { 350 })))
                .collect(),
            &[],
        );
        let all = Coverage::of(&edges, &spans(&[])).unwrap();
        assert_eq!(all.rolled, set(&[10, 11, 12, 13, 14]));
        // A buffered span in hour 10: hours 10 and 11 are raw, and not computable yet.
        let c = Coverage::of(&edges, &spans(&[10 * H + 5])).unwrap();
        assert_eq!(c.rolled, set(&[12, 13, 14]));
        assert_eq!(c.raw, set(&[10, 11]));
        assert_eq!(c.due(i64::MAX), vec![]);
        // A batch with one span from long ago marks only that span's hour, not the years between.
        let c = Coverage::of(&edges, &spans(&[14 * H + 1, 1])).unwrap();
        assert_eq!(c.raw, set(&[0, 13, 14]));
        assert_eq!(c.due(i64::MAX), vec![]);
    }

    #[test]
    fn edges_outlive_their_spans_and_two_files_of_an_hour_are_not_trusted() {
        let edges = snapshot(
            vec![
                file(3 * H, 7, Some(999)),
                file(10 * H, 7, Some(200)),
                file(10 * H, 7, Some(200)),
                file(11 * H, 7, None),
            ],
            &[],
        );
        let c = Coverage::of(&edges, &spans(&[])).unwrap();
        assert_eq!(
            c.rolled,
            set(&[3]),
            "hour 3's spans are past their retention"
        );
        assert_eq!(c.raw, set(&[10, 11, 12, 13, 14]));
    }

    #[test]
    fn hours_become_runs_clipped_to_the_range() {
        let hours = set(&[1, 2, 3, 5, 7, 8]);
        assert_eq!(
            runs(&hours, None, None),
            vec![(H, 4 * H), (5 * H, 6 * H), (7 * H, 9 * H)]
        );
        assert_eq!(
            runs(&hours, Some(2 * H + 60), Some(7 * H + 120)),
            vec![(2 * H + 60, 4 * H), (5 * H, 6 * H), (7 * H, 7 * H + 120)]
        );
        assert_eq!(runs(&hours, Some(4 * H), Some(5 * H)), vec![]);
        assert_eq!(within(&[]), "FALSE");
        let two = within(&[(0, H), (2 * H, 3 * H)]);
        assert!(two.starts_with(&format!(
            "(\"time\" >= {} AND \"time\" < {} AND (",
            timestamp(0),
            timestamp(3 * H)
        )));
        assert_eq!(two.matches(" OR ").count(), 1);
    }
}
