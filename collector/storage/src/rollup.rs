//! Span rollups: spans aggregated per time bucket, service, endpoint, span kind and status
//! class, with a mergeable latency sketch, so that KPI queries over days read thousands of
//! rows instead of millions of spans.
//!
//! Rollup rows are computed from each ingested spans batch and enter the store with the spans'
//! WAL record, but are not logged: a replay computes them again from the record's spans (a
//! tenth less WAL to write), so they are exactly as durable as the spans. A rollup
//! row is a partial aggregate: the rows of one key from different requests (late spans
//! included) are merged as they enter a table's buffer ([`Merged`]) and again when compaction
//! merges files, and a query sums what is left. No span is ever counted twice, because each
//! lands in exactly one row.
//!
//! The sketch is `headroom_sketch::latency`'s: an exponential histogram at one fixed scale,
//! stored sparsely.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Int32Array, Int32Builder, Int64Array,
    Int64Builder, ListBuilder, RecordBatch, StringArray, StringBuilder, TimestampNanosecondArray,
};
use arrow::datatypes::{Int32Type, Int64Type};
use arrow::error::ArrowError;

use headroom_sketch::latency::{add_to_bucket, bucket_index, merge_buckets};

use crate::schema::{self, TableDef};

/// The endpoint of a service rollup row: all of them.
pub const ALL_ENDPOINTS: &str = "*";

/// Whether ingest writes rollups (`--rollups`), and which health-check requests they mark
/// (`--kpi-health-check-routes`).
#[derive(Debug, Clone)]
pub struct RollupConfig {
    pub enabled: bool,
    pub health_check_routes: Vec<String>,
}

impl Default for RollupConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            health_check_routes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum StatusClass {
    Ok,
    Throttled,
    Error,
}

impl StatusClass {
    fn as_str(self) -> &'static str {
        match self {
            StatusClass::Ok => "ok",
            StatusClass::Throttled => "throttled",
            StatusClass::Error => "error",
        }
    }

    fn parse(s: &str) -> Result<Self, ArrowError> {
        match s {
            "ok" => Ok(StatusClass::Ok),
            "throttled" => Ok(StatusClass::Throttled),
            "error" => Ok(StatusClass::Error),
            other => Err(ArrowError::InvalidArgumentError(format!(
                "unknown status class {other:?}"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key<'a> {
    time: i64,
    service: &'a str,
    endpoint: Cow<'a, str>,
    kind: &'a str,
    class: StatusClass,
    health_check: bool,
}

#[derive(Debug, Clone, Default)]
struct Aggregate<S = Vec<(i32, i64)>> {
    spans: i64,
    sum: i64,
    min: i64,
    max: i64,
    zero: i64,
    /// By default (bucket index, count), ascending: a request's row of one key holds a few
    /// buckets, and a sorted vector costs one allocation where a map costs a node per few
    /// entries.
    buckets: S,
}

/// The buckets of a latency sketch.
trait Sketch: Default {
    /// Adds a sparse sketch: (bucket index, count), strictly ascending.
    fn merge_sparse(&mut self, incoming: &[(i32, i64)]);
    /// How many buckets hold spans.
    fn bucket_count(&self) -> usize;
    /// Each bucket holding spans, ascending.
    fn each(&self, f: impl FnMut(i32, i64));
    /// Memory it holds.
    fn bytes(&self) -> usize;
}

impl Sketch for Vec<(i32, i64)> {
    fn merge_sparse(&mut self, incoming: &[(i32, i64)]) {
        merge_buckets(self, incoming.iter().copied());
    }

    fn bucket_count(&self) -> usize {
        self.len()
    }

    fn each(&self, mut f: impl FnMut(i32, i64)) {
        self.iter().for_each(|&(i, c)| f(i, c));
    }

    fn bytes(&self) -> usize {
        self.capacity() * std::mem::size_of::<(i32, i64)>()
    }
}

/// A sketch as the counts of consecutive buckets from `offset`. A table's buffered row takes
/// the rows of thousands of requests and grows to hundreds of buckets: adding to it is an index
/// here, where a sorted sparse sketch searches and shifts for every bucket. Durations are
/// positive `i64` nanoseconds, so a row spans at most 64 doublings: 4,097 buckets.
#[derive(Debug, Clone, Default)]
struct Dense {
    offset: i32,
    counts: Vec<i64>,
}

impl Sketch for Dense {
    fn merge_sparse(&mut self, incoming: &[(i32, i64)]) {
        let (Some(&(low, _)), Some(&(high, _))) = (incoming.first(), incoming.last()) else {
            return;
        };
        if self.counts.is_empty() {
            self.offset = low;
        }
        if low < self.offset {
            let grow = (i64::from(self.offset) - i64::from(low)) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = low;
        }
        let end = (i64::from(high) - i64::from(self.offset)) as usize + 1;
        if end > self.counts.len() {
            self.counts.resize(end, 0);
        }
        for &(index, count) in incoming {
            let slot = &mut self.counts[(i64::from(index) - i64::from(self.offset)) as usize];
            *slot = slot.saturating_add(count);
        }
    }

    fn bucket_count(&self) -> usize {
        self.counts.iter().filter(|&&c| c != 0).count()
    }

    fn each(&self, mut f: impl FnMut(i32, i64)) {
        for (i, &c) in (self.offset..).zip(&self.counts) {
            if c != 0 {
                f(i, c);
            }
        }
    }

    fn bytes(&self) -> usize {
        self.counts.capacity() * std::mem::size_of::<i64>()
    }
}

impl Key<'_> {
    /// The same key, borrowing its endpoint.
    fn view(&self) -> Key<'_> {
        Key {
            endpoint: Cow::Borrowed(&self.endpoint),
            ..*self
        }
    }

    /// The key of the row this one falls into in a rollup table of `spec`: its time bucket,
    /// and `*` for the endpoint where the table has none.
    fn in_table(mut self, spec: schema::RollupSpec) -> Self {
        self.time = bucket_start(self.time, spec.width_ns);
        if !spec.by_endpoint {
            self.endpoint = Cow::Borrowed(ALL_ENDPOINTS);
        }
        self
    }

    /// Whether the row counts requests a service served: SERVER and CONSUMER spans, health
    /// checks left out. The service rollups hold only these: they serve the KPI and SLO views,
    /// which read nothing else, and a dashboard over every service reads half the rows.
    fn is_server_request(&self) -> bool {
        (self.kind == "SERVER" || self.kind == "CONSUMER") && !self.health_check
    }
}

impl<S: Sketch> Aggregate<S> {
    fn merge(&mut self, other: &Aggregate) {
        self.add(other.spans, other.sum, other.min, other.max);
        self.zero = self.zero.saturating_add(other.zero);
        self.buckets.merge_sparse(&other.buckets);
    }

    /// Bytes its sketch holds.
    fn bucket_bytes(&self) -> usize {
        self.buckets.bytes()
    }

    fn add(&mut self, spans: i64, sum: i64, min: i64, max: i64) {
        if self.spans == 0 {
            (self.min, self.max) = (min, max);
        } else {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
        self.spans = self.spans.saturating_add(spans);
        self.sum = self.sum.saturating_add(sum);
    }
}

impl Aggregate {
    fn add_span(&mut self, duration_ns: i64) {
        self.add(1, duration_ns, duration_ns, duration_ns);
        if duration_ns <= 0 {
            self.zero += 1;
        } else {
            self.add_to_bucket(bucket_index(duration_ns), 1);
        }
    }

    fn add_to_bucket(&mut self, index: i32, count: i64) {
        add_to_bucket(&mut self.buckets, index, count);
    }
}

/// Rows of one rollup table being aggregated.
#[derive(Default)]
struct Rollup<'a> {
    groups: HashMap<Key<'a>, Aggregate, foldhash::fast::RandomState>,
}

impl<'a> Rollup<'a> {
    /// These rows, those `keep` wants, merged into the buckets and keys of rollup `table`.
    fn regroup(
        &self,
        table: &str,
        keep: impl Fn(&Key<'a>) -> bool,
    ) -> Result<Rollup<'a>, ArrowError> {
        let spec = schema::table(table)
            .rollup
            .ok_or_else(|| ArrowError::InvalidArgumentError(format!("{table} is no rollup")))?;
        let mut out = Rollup::default();
        for (key, agg) in self.groups.iter().filter(|(k, _)| keep(k)) {
            out.groups
                .entry(key.clone().in_table(spec))
                .or_default()
                .merge(agg);
        }
        Ok(out)
    }
}

fn column<'b, T: 'static>(batch: &'b RecordBatch, name: &str) -> Result<&'b T, ArrowError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| ArrowError::SchemaError(format!("column {name} missing or mistyped")))
}

fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

fn opt_i32(a: &Int32Array, i: usize) -> Option<i32> {
    a.is_valid(i).then(|| a.value(i))
}

fn bucket_start(t: i64, width_ns: i64) -> i64 {
    t.div_euclid(width_ns) * width_ns
}

/// The rollup rows of one request's spans, at the minute, with and without the endpoint, owning
/// their strings: they wait for the request's WAL record and are applied with it (see
/// [`crate::store::Store::add_rollups`]).
pub struct SpanRollups {
    spans: Rows,
    services: Rows,
}

impl SpanRollups {
    pub fn of(spans: &RecordBatch, config: &RollupConfig) -> Result<Self, ArrowError> {
        // The service minutes are merged from the minutes' aggregates, not read back from Arrow.
        let minute = minute_rollup(spans, config)?;
        let services =
            Rows::new(minute.regroup(schema::SERVICE_ROLLUP_1M, Key::is_server_request)?);
        Ok(Self {
            spans: Rows::new(minute),
            services,
        })
    }

    /// The rows each rollup table takes from these: hours and days are the minutes' rows with
    /// their time cut to the hour or day.
    pub fn tables(&self) -> [(&'static str, &Rows); 6] {
        [
            (schema::SPAN_ROLLUP_1M, &self.spans),
            (schema::SPAN_ROLLUP_1H, &self.spans),
            (schema::SPAN_ROLLUP_1D, &self.spans),
            (schema::SERVICE_ROLLUP_1M, &self.services),
            (schema::SERVICE_ROLLUP_1H, &self.services),
            (schema::SERVICE_ROLLUP_1D, &self.services),
        ]
    }

    /// Memory they hold, for the ingest buffer budget.
    pub fn bytes(&self) -> usize {
        self.spans.bytes() + self.services.bytes()
    }

    /// Each rollup table's rows of these spans as Arrow.
    pub fn batches(&self) -> Result<Vec<(&'static str, RecordBatch)>, ArrowError> {
        self.tables()
            .into_iter()
            .map(|(table, rows)| {
                let def = schema::table(table);
                let mut merged = Merged::default();
                merged.add(def, rows, |_| true)?;
                Ok((table, merged.to_batch(def)?))
            })
            .collect()
    }
}

/// Byte offsets of a string in [`Rows::text`].
type TextRange = (usize, usize);

#[derive(Debug, Clone, Copy)]
struct RowKey {
    time: i64,
    service: TextRange,
    endpoint: TextRange,
    kind: TextRange,
    class: StatusClass,
    health_check: bool,
}

/// Rollup rows with owned keys, their strings in one buffer: one allocation for a request's
/// rows instead of three per row.
pub struct Rows {
    text: String,
    rows: Vec<(RowKey, Aggregate)>,
}

impl Rows {
    fn new(rollup: Rollup<'_>) -> Self {
        let len = |k: &Key| k.service.len() + k.endpoint.len() + k.kind.len();
        let mut text = String::with_capacity(rollup.groups.keys().map(len).sum());
        let mut push = |s: &str| {
            text.push_str(s);
            (text.len() - s.len(), text.len())
        };
        let rows = rollup
            .groups
            .into_iter()
            .map(|(k, a)| {
                let key = RowKey {
                    time: k.time,
                    service: push(k.service),
                    endpoint: push(&k.endpoint),
                    kind: push(k.kind),
                    class: k.class,
                    health_check: k.health_check,
                };
                (key, a)
            })
            .collect();
        Self { text, rows }
    }

    fn iter(&self) -> impl Iterator<Item = (Key<'_>, &Aggregate)> {
        let text = |(from, to): TextRange| &self.text[from..to];
        self.rows.iter().map(move |(k, a)| {
            let key = Key {
                time: k.time,
                service: text(k.service),
                endpoint: Cow::Borrowed(text(k.endpoint)),
                kind: text(k.kind),
                class: k.class,
                health_check: k.health_check,
            };
            (key, a)
        })
    }

    fn bytes(&self) -> usize {
        self.text.capacity()
            + self.rows.capacity() * std::mem::size_of::<(RowKey, Aggregate)>()
            + self
                .rows
                .iter()
                .map(|(_, a)| a.bucket_bytes())
                .sum::<usize>()
    }
}

/// A rollup key owning its strings: a row of [`Merged`].
#[derive(Debug, Clone)]
struct OwnedKey {
    time: i64,
    service: Box<str>,
    endpoint: Box<str>,
    kind: Box<str>,
    class: StatusClass,
    health_check: bool,
}

impl OwnedKey {
    fn new(k: &Key<'_>) -> Self {
        Self {
            time: k.time,
            service: k.service.into(),
            endpoint: k.endpoint.as_ref().into(),
            kind: k.kind.into(),
            class: k.class,
            health_check: k.health_check,
        }
    }

    fn view(&self) -> Key<'_> {
        Key {
            time: self.time,
            service: &self.service,
            endpoint: Cow::Borrowed(&self.endpoint),
            kind: &self.kind,
            class: self.class,
            health_check: self.health_check,
        }
    }
}

/// The buffered rows of one rollup table, merged by key as requests' rows arrive. A table holds
/// one row per key and bucket until a flush writes it, however many requests fed it: a few
/// thousand rows a minute at any load, where a list of each request's rows would grow with the
/// load and be merged only at the flush.
#[derive(Default)]
pub struct Merged {
    rows: hashbrown::HashTable<(OwnedKey, Aggregate<Dense>)>,
    hasher: foldhash::fast::RandomState,
    /// Bytes of the rows' strings and sketches.
    bytes: usize,
}

impl Merged {
    /// Merges the rows `keep` wants (by their time in `def`'s buckets) into the rows of rollup
    /// table `def`; returns how many it kept.
    pub fn add(
        &mut self,
        def: &TableDef,
        rows: &Rows,
        keep: impl Fn(i64) -> bool,
    ) -> Result<usize, ArrowError> {
        let spec = def.rollup.ok_or_else(|| {
            ArrowError::InvalidArgumentError(format!("{} is no rollup", def.name))
        })?;
        let Self {
            rows: table,
            hasher,
            bytes,
        } = self;
        let mut kept = 0;
        for (key, agg) in rows.iter() {
            let key = key.in_table(spec);
            if !keep(key.time) {
                continue;
            }
            kept += 1;
            let hash = hasher.hash_one(&key);
            match table.find_mut(hash, |(k, _)| k.view() == key) {
                Some((_, a)) => {
                    let before = a.bucket_bytes();
                    a.merge(agg);
                    *bytes += a.bucket_bytes() - before;
                }
                None => {
                    let owned = OwnedKey::new(&key);
                    let mut row = Aggregate::<Dense>::default();
                    row.merge(agg);
                    *bytes += owned.service.len()
                        + owned.endpoint.len()
                        + owned.kind.len()
                        + row.bucket_bytes();
                    table.insert_unique(hash, (owned, row), |(k, _)| hasher.hash_one(k.view()));
                }
            }
        }
        Ok(kept)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Memory the rows hold, roughly: the table, key strings and sketches.
    pub fn bytes(&self) -> usize {
        self.rows.capacity() * (std::mem::size_of::<(OwnedKey, Aggregate<Dense>)>() + 1)
            + self.bytes
    }

    /// The rows as a batch of rollup table `def`, sorted by key.
    pub fn to_batch(&self, def: &TableDef) -> Result<RecordBatch, ArrowError> {
        to_batch(def, self.rows.iter().map(|(k, a)| (k.view(), a)).collect())
    }
}

/// The `span_rollup_1m` rows of a batch of `spans` rows.
pub fn spans_to_rollup(
    spans: &RecordBatch,
    config: &RollupConfig,
) -> Result<RecordBatch, ArrowError> {
    minute_rollup(spans, config)?.finish(schema::table(schema::SPAN_ROLLUP_1M))
}

fn minute_rollup<'a>(
    spans: &'a RecordBatch,
    config: &RollupConfig,
) -> Result<Rollup<'a>, ArrowError> {
    let def = schema::table(schema::SPAN_ROLLUP_1M);
    let width = def.rollup.map_or(1, |r| r.width_ns);
    let start = column::<TimestampNanosecondArray>(spans, "start_time")?;
    let duration = column::<Int64Array>(spans, "duration_ns")?;
    let service = column::<StringArray>(spans, "service_name")?;
    let name = column::<StringArray>(spans, "span_name")?;
    let kind = column::<StringArray>(spans, "span_kind")?;
    let status = column::<StringArray>(spans, "status_code")?;
    let is_error = column::<BooleanArray>(spans, "is_error")?;
    let route = column::<StringArray>(spans, "http_route")?;
    let path = column::<StringArray>(spans, "url_path")?;
    let http_status = column::<Int32Array>(spans, "http_response_status_code")?;
    let rpc_service = column::<StringArray>(spans, "rpc_service")?;
    let rpc_method = column::<StringArray>(spans, "rpc_method")?;
    let grpc_status = column::<Int32Array>(spans, "rpc_grpc_status_code")?;

    let mut rollup = Rollup::default();
    for i in 0..spans.num_rows() {
        let route_i = opt_str(route, i);
        // The endpoint as `server_requests` defines it.
        let endpoint = match (route_i, opt_str(rpc_service, i)) {
            (Some(r), _) => Cow::Borrowed(r),
            (None, Some(s)) => Cow::Owned(format!("{s}/{}", opt_str(rpc_method, i).unwrap_or(""))),
            (None, None) => Cow::Borrowed(name.value(i)),
        };
        let class = if is_error.value(i) {
            StatusClass::Error
        } else if status.value(i) != "OK"
            && (opt_i32(http_status, i) == Some(429) || opt_i32(grpc_status, i) == Some(8))
        {
            StatusClass::Throttled
        } else {
            StatusClass::Ok
        };
        let health_check = route_i
            .or_else(|| opt_str(path, i))
            .is_some_and(|p| config.health_check_routes.iter().any(|r| r == p));
        let key = Key {
            time: bucket_start(start.value(i), width),
            service: service.value(i),
            endpoint,
            kind: kind.value(i),
            class,
            health_check,
        };
        rollup
            .groups
            .entry(key)
            .or_default()
            .add_span(duration.value(i));
    }
    Ok(rollup)
}

/// Merges the rows of `batches` (rows of any rollup table) that share a key of `def`, after
/// moving each row's time to the start of its bucket in `def`: what a flush and a compaction
/// write.
pub fn combine(def: &TableDef, batches: &[RecordBatch]) -> Result<RecordBatch, ArrowError> {
    let spec = def
        .rollup
        .ok_or_else(|| ArrowError::InvalidArgumentError(format!("{} is no rollup", def.name)))?;
    let mut rollup = Rollup::default();
    for batch in batches {
        let time = column::<TimestampNanosecondArray>(batch, "time")?;
        let service = column::<StringArray>(batch, "service_name")?;
        let endpoint = column::<StringArray>(batch, "endpoint")?;
        let kind = column::<StringArray>(batch, "span_kind")?;
        let class = column::<StringArray>(batch, "status_class")?;
        let health_check = column::<BooleanArray>(batch, "health_check")?;
        let spans = column::<Int64Array>(batch, "spans")?;
        let sum = column::<Int64Array>(batch, "duration_sum_ns")?;
        let min = column::<Int64Array>(batch, "duration_min_ns")?;
        let max = column::<Int64Array>(batch, "duration_max_ns")?;
        let zero = column::<Int64Array>(batch, "latency_zero_count")?;
        let indexes = batch
            .column_by_name("latency_bucket_index")
            .map(|c| c.as_list::<i32>())
            .ok_or_else(|| ArrowError::SchemaError("latency_bucket_index missing".into()))?;
        let counts = batch
            .column_by_name("latency_bucket_count")
            .map(|c| c.as_list::<i32>())
            .ok_or_else(|| ArrowError::SchemaError("latency_bucket_count missing".into()))?;
        for i in 0..batch.num_rows() {
            let key = Key {
                time: time.value(i),
                service: service.value(i),
                endpoint: Cow::Borrowed(endpoint.value(i)),
                kind: kind.value(i),
                class: StatusClass::parse(class.value(i))?,
                health_check: health_check.value(i),
            }
            .in_table(spec);
            let agg = rollup.groups.entry(key).or_default();
            agg.add(spans.value(i), sum.value(i), min.value(i), max.value(i));
            agg.zero = agg.zero.saturating_add(zero.value(i));
            let index = indexes.value(i);
            let count = counts.value(i);
            let (index, count) = (
                index.as_primitive::<Int32Type>(),
                count.as_primitive::<Int64Type>(),
            );
            if index.len() != count.len() {
                return Err(ArrowError::InvalidArgumentError(
                    "a sketch has as many bucket indexes as counts".into(),
                ));
            }
            for (b, c) in index.values().iter().zip(count.values()) {
                agg.add_to_bucket(*b, *c);
            }
        }
    }
    rollup.finish(def)
}

impl Rollup<'_> {
    /// The rows as a batch of rollup table `def`, sorted by key.
    fn finish(&self, def: &TableDef) -> Result<RecordBatch, ArrowError> {
        to_batch(
            def,
            self.groups.iter().map(|(k, a)| (k.view(), a)).collect(),
        )
    }
}

/// Rollup rows as a batch of rollup table `def`, sorted by key: the order flushes and
/// compaction write, and what tests compare.
fn to_batch<S: Sketch>(
    def: &TableDef,
    mut groups: Vec<(Key<'_>, &Aggregate<S>)>,
) -> Result<RecordBatch, ArrowError> {
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let n = groups.len();
    // Buffers of the exact size: builders' default capacities (1,024 list values) would
    // hold several times a snapshot's few rows.
    let bytes = |f: fn(&Key) -> usize| groups.iter().map(|(k, _)| f(k)).sum::<usize>();
    let buckets = groups
        .iter()
        .map(|(_, a)| a.buckets.bucket_count())
        .sum::<usize>();
    let mut time = Vec::with_capacity(n);
    let mut service = StringBuilder::with_capacity(n, bytes(|k| k.service.len()));
    let mut endpoint = StringBuilder::with_capacity(n, bytes(|k| k.endpoint.len()));
    let mut kind = StringBuilder::with_capacity(n, bytes(|k| k.kind.len()));
    let mut class = StringBuilder::with_capacity(n, bytes(|k| k.class.as_str().len()));
    let mut health_check = BooleanBuilder::with_capacity(n);
    let mut spans = Int64Builder::with_capacity(n);
    let mut sum = Int64Builder::with_capacity(n);
    let mut min = Int64Builder::with_capacity(n);
    let mut max = Int64Builder::with_capacity(n);
    let mut zero = Int64Builder::with_capacity(n);
    let mut index = ListBuilder::with_capacity(Int32Builder::with_capacity(buckets), n)
        .with_field(list_item(def, "latency_bucket_index")?);
    let mut count = ListBuilder::with_capacity(Int64Builder::with_capacity(buckets), n)
        .with_field(list_item(def, "latency_bucket_count")?);
    for (k, a) in groups {
        time.push(k.time);
        service.append_value(k.service);
        endpoint.append_value(&k.endpoint);
        kind.append_value(k.kind);
        class.append_value(k.class.as_str());
        health_check.append_value(k.health_check);
        spans.append_value(a.spans);
        sum.append_value(a.sum);
        min.append_value(a.min);
        max.append_value(a.max);
        zero.append_value(a.zero);
        a.buckets.each(|i, c| {
            index.values().append_value(i);
            count.values().append_value(c);
        });
        index.append(true);
        count.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampNanosecondArray::from(time).with_timezone("UTC")),
        Arc::new(service.finish()),
        Arc::new(endpoint.finish()),
        Arc::new(kind.finish()),
        Arc::new(class.finish()),
        Arc::new(health_check.finish()),
        Arc::new(spans.finish()),
        Arc::new(sum.finish()),
        Arc::new(min.finish()),
        Arc::new(max.finish()),
        Arc::new(zero.finish()),
        Arc::new(index.finish()),
        Arc::new(count.finish()),
    ];
    RecordBatch::try_new(def.schema(), columns)
}

/// The item field of list column `name` of a rollup table, so built lists match the schema.
fn list_item(def: &TableDef, name: &str) -> Result<Arc<arrow::datatypes::Field>, ArrowError> {
    match def.schema().field_with_name(name)?.data_type() {
        arrow::datatypes::DataType::List(f) => Ok(f.clone()),
        other => Err(ArrowError::SchemaError(format!(
            "{}.{name} is {other}, not a list",
            def.name
        ))),
    }
}
