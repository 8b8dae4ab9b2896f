//! The storage contract: every table Headroom writes, column by column.
//!
//! This module is the single source of truth for column names, Arrow types and where each value
//! comes from in OTLP. The converters build batches against these schemas (a mismatch is a
//! `RecordBatch::try_new` error caught by tests), the query side registers tables with them, and
//! `docs/schema.md` is generated from [`markdown`] (a test fails when the two drift apart).

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// One column of a stored table.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: &'static str,
    pub data_type: DataType,
    pub nullable: bool,
    /// Where the value comes from, for the documentation.
    pub source: &'static str,
}

use crate::time::NANOS_PER_HOUR as HOUR_NS;

/// How a rollup table aggregates spans.
#[derive(Debug, Clone, Copy)]
pub struct RollupSpec {
    /// Width of its time buckets.
    pub width_ns: i64,
    /// Whether endpoints keep rows of their own; without, `endpoint` is `*`.
    pub by_endpoint: bool,
}

/// One stored table: its columns and how its files are laid out.
#[derive(Debug)]
pub struct TableDef {
    pub name: &'static str,
    pub about: &'static str,
    /// The timestamp that places a row in its `date=/hour=` partition.
    pub time_column: &'static str,
    /// Sort order of rows inside a Parquet file.
    pub sort_columns: &'static [&'static str],
    /// Columns with a Parquet bloom filter.
    pub bloom_filter_columns: &'static [&'static str],
    /// For a rollup table, how it aggregates: its rows are partial aggregates, so a flush or a
    /// compaction merges the rows that share a key (see [`crate::rollup`]).
    pub rollup: Option<RollupSpec>,
    /// The span of time one partition (`date=/hour=` directory) holds: an hour, or a day for
    /// the hourly and the per-service rollups, whose hour would be a file of a few hundred
    /// rows.
    pub partition_ns: i64,
    pub columns: Vec<Column>,
    schema: SchemaRef,
}

impl TableDef {
    fn new(
        name: &'static str,
        about: &'static str,
        time_column: &'static str,
        sort_columns: &'static [&'static str],
        bloom_filter_columns: &'static [&'static str],
        columns: Vec<Column>,
    ) -> Self {
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(c.name, c.data_type.clone(), c.nullable))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        Self {
            name,
            about,
            time_column,
            sort_columns,
            bloom_filter_columns,
            rollup: None,
            partition_ns: HOUR_NS,
            columns,
            schema,
        }
    }

    fn rollup(mut self, width_ns: i64, by_endpoint: bool) -> Self {
        self.rollup = Some(RollupSpec {
            width_ns,
            by_endpoint,
        });
        // An hour of hourly rollups, or of a service's minutes, is a file of a few hundred or
        // thousand rows: a day per partition keeps the files a range query opens few.
        if width_ns >= HOUR_NS || !by_endpoint {
            self.partition_ns = 24 * HOUR_NS;
        }
        self
    }

    /// The start of the partition that holds time `t_ns`.
    pub fn partition_of(&self, t_ns: i64) -> i64 {
        t_ns.div_euclid(self.partition_ns) * self.partition_ns
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

pub const SPANS: &str = "spans";
pub const METRIC_POINTS: &str = "metric_points";
pub const HISTOGRAM_POINTS: &str = "histogram_points";
pub const EXP_HISTOGRAM_POINTS: &str = "exp_histogram_points";
pub const SUMMARY_POINTS: &str = "summary_points";
pub const LOGS: &str = "logs";
pub const SPAN_ROLLUP_1M: &str = "span_rollup_1m";
pub const SPAN_ROLLUP_1H: &str = "span_rollup_1h";
pub const SERVICE_ROLLUP_1M: &str = "service_rollup_1m";
pub const SERVICE_ROLLUP_1H: &str = "service_rollup_1h";
pub const SPAN_ROLLUP_1D: &str = "span_rollup_1d";
pub const SERVICE_ROLLUP_1D: &str = "service_rollup_1d";
pub const EDGE_ROLLUP_1M: &str = "edge_rollup_1m";

/// Every table, in a stable order.
pub fn tables() -> &'static [TableDef] {
    &TABLES
}

/// The table called `name`. Panics on an unknown name: table names are compile-time constants.
pub fn table(name: &str) -> &'static TableDef {
    match TABLES.iter().find(|t| t.name == name) {
        Some(t) => t,
        None => unreachable!("unknown table {name}"),
    }
}

/// Nanosecond UTC timestamp, the type of every time column.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

pub fn trace_id_type() -> DataType {
    DataType::FixedSizeBinary(16)
}

pub fn span_id_type() -> DataType {
    DataType::FixedSizeBinary(8)
}

/// Field of the struct inside `spans.events`.
pub fn event_fields() -> Fields {
    Fields::from(vec![
        Field::new("time", timestamp_type(), false),
        Field::new("name", DataType::Utf8, false),
        Field::new("attributes", DataType::Utf8, true),
        Field::new("dropped_attributes_count", DataType::Int64, false),
    ])
}

/// Fields of the struct inside `spans.links`.
pub fn link_fields() -> Fields {
    Fields::from(vec![
        Field::new("trace_id", trace_id_type(), false),
        Field::new("span_id", span_id_type(), false),
        Field::new("trace_state", DataType::Utf8, true),
        Field::new("attributes", DataType::Utf8, true),
        Field::new("dropped_attributes_count", DataType::Int64, false),
        Field::new("flags", DataType::Int64, false),
    ])
}

/// Fields of the struct inside every `exemplars` column.
pub fn exemplar_fields() -> Fields {
    Fields::from(vec![
        Field::new("time", timestamp_type(), false),
        Field::new("value", DataType::Float64, false),
        Field::new("value_int", DataType::Int64, true),
        Field::new("trace_id", trace_id_type(), true),
        Field::new("span_id", span_id_type(), true),
        Field::new("filtered_attributes", DataType::Utf8, true),
    ])
}

/// Fields of the struct inside `summary_points.quantiles`.
pub fn quantile_fields() -> Fields {
    Fields::from(vec![
        Field::new("quantile", DataType::Float64, false),
        Field::new("value", DataType::Float64, false),
    ])
}

fn list_of(fields: Fields) -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(fields),
        false,
    )))
}

fn list_of_prim(t: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", t, false)))
}

fn col(name: &'static str, data_type: DataType, nullable: bool, source: &'static str) -> Column {
    Column {
        name,
        data_type,
        nullable,
        source,
    }
}

const ATTRS_DOC: &str =
    "all other attributes of the item as a typed JSON object (see below); NULL when none";
const RESOURCE_ATTRS_DOC: &str =
    "all resource attributes not stored in a column above, typed JSON; NULL when none";

fn metric_common(kind_doc: &'static str) -> Vec<Column> {
    use DataType::*;
    vec![
        col(
            "time",
            timestamp_type(),
            false,
            "`time_unix_nano` of the data point",
        ),
        col(
            "start_time",
            timestamp_type(),
            true,
            "`start_time_unix_nano`; NULL when 0",
        ),
        col(
            "service_name",
            Utf8,
            false,
            "resource `service.name` (`unknown_service` when absent)",
        ),
        col(
            "service_instance_id",
            Utf8,
            true,
            "resource `service.instance.id`",
        ),
        col("metric_name", Utf8, false, "`Metric.name`"),
        col("metric_description", Utf8, true, "`Metric.description`"),
        col("metric_unit", Utf8, true, "`Metric.unit`"),
        col("metric_type", Utf8, false, kind_doc),
        col(
            "attributes",
            Utf8,
            true,
            "data point attributes, typed JSON; NULL when none",
        ),
        col("resource_attributes", Utf8, true, RESOURCE_ATTRS_DOC),
        col("scope_name", Utf8, true, "`InstrumentationScope.name`"),
        col(
            "scope_version",
            Utf8,
            true,
            "`InstrumentationScope.version`",
        ),
        col(
            "flags",
            Int64,
            false,
            "data point `flags` (1 = no recorded value)",
        ),
    ]
}

fn exemplars_col() -> Column {
    col(
        "exemplars",
        list_of(exemplar_fields()),
        false,
        "exemplars: time, value (as double), value_int (when integral), trace_id, span_id, filtered_attributes",
    )
}

fn temporality_cols() -> Vec<Column> {
    vec![col(
        "temporality",
        DataType::Utf8,
        true,
        "'delta' or 'cumulative'; NULL for gauges",
    )]
}

static TABLES: LazyLock<Vec<TableDef>> = LazyLock::new(|| {
    use DataType::*;
    let spans = TableDef::new(
        SPANS,
        "One row per span.",
        "start_time",
        &["service_name", "span_name", "start_time"],
        &["trace_id"],
        vec![
            col(
                "trace_id",
                trace_id_type(),
                false,
                "`Span.trace_id` (16 bytes; spans with any other length are rejected)",
            ),
            col("span_id", span_id_type(), false, "`Span.span_id` (8 bytes)"),
            col(
                "parent_span_id",
                span_id_type(),
                true,
                "`Span.parent_span_id`; NULL for a root span",
            ),
            col(
                "trace_state",
                Utf8,
                true,
                "`Span.trace_state`; NULL when empty",
            ),
            col(
                "start_time",
                timestamp_type(),
                false,
                "`start_time_unix_nano`",
            ),
            col("end_time", timestamp_type(), false, "`end_time_unix_nano`"),
            col(
                "duration_ns",
                Int64,
                false,
                "end_time − start_time in nanoseconds",
            ),
            col(
                "service_name",
                Utf8,
                false,
                "resource `service.name` (`unknown_service` when absent)",
            ),
            col("span_name", Utf8, false, "`Span.name`"),
            col(
                "span_kind",
                Utf8,
                false,
                "'UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER' or 'CONSUMER'",
            ),
            col("status_code", Utf8, false, "'UNSET', 'OK' or 'ERROR'"),
            col(
                "status_message",
                Utf8,
                true,
                "`Status.message`; NULL when empty",
            ),
            col("is_root", Boolean, false, "derived: the span has no parent"),
            col(
                "is_error",
                Boolean,
                false,
                "derived: status ERROR; or, with status UNSET, HTTP ≥ 500 on SERVER/CONSUMER spans, HTTP ≥ 400 on CLIENT/PRODUCER spans, gRPC status 2, 4, 12, 13, 14, 15 on SERVER/CONSUMER spans and any non-zero gRPC status on CLIENT/PRODUCER spans",
            ),
            col(
                "http_request_method",
                Utf8,
                true,
                "attribute `http.request.method` (or legacy `http.method`)",
            ),
            col("http_route", Utf8, true, "attribute `http.route`"),
            col(
                "http_response_status_code",
                Int32,
                true,
                "attribute `http.response.status_code` (or legacy `http.status_code`)",
            ),
            col("url_path", Utf8, true, "attribute `url.path`"),
            col("rpc_system", Utf8, true, "attribute `rpc.system`"),
            col("rpc_service", Utf8, true, "attribute `rpc.service`"),
            col("rpc_method", Utf8, true, "attribute `rpc.method`"),
            col(
                "rpc_grpc_status_code",
                Int32,
                true,
                "attribute `rpc.grpc.status_code`",
            ),
            col(
                "db_system",
                Utf8,
                true,
                "attribute `db.system` (or `db.system.name`)",
            ),
            col("peer_service", Utf8, true, "attribute `peer.service`"),
            col("server_address", Utf8, true, "attribute `server.address`"),
            col("error_type", Utf8, true, "attribute `error.type`"),
            col("service_version", Utf8, true, "resource `service.version`"),
            col(
                "service_namespace",
                Utf8,
                true,
                "resource `service.namespace`",
            ),
            col(
                "service_instance_id",
                Utf8,
                true,
                "resource `service.instance.id`",
            ),
            col(
                "deployment_environment",
                Utf8,
                true,
                "resource `deployment.environment.name` (or legacy `deployment.environment`)",
            ),
            col(
                "k8s_namespace_name",
                Utf8,
                true,
                "resource `k8s.namespace.name`",
            ),
            col("k8s_pod_name", Utf8, true, "resource `k8s.pod.name`"),
            col("attributes", Utf8, true, ATTRS_DOC),
            col("resource_attributes", Utf8, true, RESOURCE_ATTRS_DOC),
            col("scope_name", Utf8, true, "`InstrumentationScope.name`"),
            col(
                "scope_version",
                Utf8,
                true,
                "`InstrumentationScope.version`",
            ),
            col("flags", Int64, false, "`Span.flags`"),
            col(
                "dropped_attributes_count",
                Int64,
                false,
                "`Span.dropped_attributes_count`",
            ),
            col(
                "dropped_events_count",
                Int64,
                false,
                "`Span.dropped_events_count`",
            ),
            col(
                "dropped_links_count",
                Int64,
                false,
                "`Span.dropped_links_count`",
            ),
            col(
                "events",
                list_of(event_fields()),
                false,
                "span events: time, name, attributes (typed JSON), dropped_attributes_count",
            ),
            col(
                "links",
                list_of(link_fields()),
                false,
                "span links: trace_id, span_id, trace_state, attributes (typed JSON), dropped_attributes_count, flags",
            ),
        ],
    );

    let mut points = metric_common("'gauge' or 'sum'");
    points.extend(temporality_cols());
    points.extend([
        col(
            "is_monotonic",
            Boolean,
            true,
            "`Sum.is_monotonic`; NULL for gauges",
        ),
        col(
            "value",
            Float64,
            false,
            "the point's value as a double (`as_double`, or `as_int` converted)",
        ),
        col(
            "value_int",
            Int64,
            true,
            "`as_int` exactly, when the point is an integer",
        ),
        exemplars_col(),
    ]);
    let metric_points = TableDef::new(
        METRIC_POINTS,
        "One row per gauge or sum data point.",
        "time",
        &["service_name", "metric_name", "time"],
        &[],
        points,
    );

    let mut hist = metric_common("'histogram'");
    hist.extend(temporality_cols());
    hist.extend([
        col("count", Int64, false, "`count`"),
        col("sum", Float64, true, "`sum` (NULL when not recorded)"),
        col("min", Float64, true, "`min`"),
        col("max", Float64, true, "`max`"),
        col(
            "bucket_counts",
            list_of_prim(Int64),
            false,
            "`bucket_counts` (len(explicit_bounds)+1 entries)",
        ),
        col(
            "explicit_bounds",
            list_of_prim(Float64),
            false,
            "`explicit_bounds` (upper bounds, inclusive)",
        ),
        exemplars_col(),
    ]);
    let histogram_points = TableDef::new(
        HISTOGRAM_POINTS,
        "One row per explicit-bucket histogram data point.",
        "time",
        &["service_name", "metric_name", "time"],
        &[],
        hist,
    );

    let mut exp = metric_common("'exponential_histogram'");
    exp.extend(temporality_cols());
    exp.extend([
        col("count", Int64, false, "`count`"),
        col("sum", Float64, true, "`sum` (NULL when not recorded)"),
        col("min", Float64, true, "`min`"),
        col("max", Float64, true, "`max`"),
        col(
            "scale",
            Int32,
            false,
            "`scale`: bucket boundaries are powers of 2^(2^-scale)",
        ),
        col("zero_count", Int64, false, "`zero_count`"),
        col("zero_threshold", Float64, false, "`zero_threshold`"),
        col("positive_offset", Int32, false, "`positive.offset`"),
        col(
            "positive_bucket_counts",
            list_of_prim(Int64),
            false,
            "`positive.bucket_counts`",
        ),
        col("negative_offset", Int32, false, "`negative.offset`"),
        col(
            "negative_bucket_counts",
            list_of_prim(Int64),
            false,
            "`negative.bucket_counts`",
        ),
        exemplars_col(),
    ]);
    let exp_histogram_points = TableDef::new(
        EXP_HISTOGRAM_POINTS,
        "One row per exponential histogram data point, lossless.",
        "time",
        &["service_name", "metric_name", "time"],
        &[],
        exp,
    );

    let mut summary = metric_common("'summary'");
    summary.extend([
        col("count", Int64, false, "`count`"),
        col("sum", Float64, false, "`sum`"),
        col(
            "quantiles",
            list_of(quantile_fields()),
            false,
            "`quantile_values`: quantile, value",
        ),
    ]);
    let summary_points = TableDef::new(
        SUMMARY_POINTS,
        "One row per summary data point.",
        "time",
        &["service_name", "metric_name", "time"],
        &[],
        summary,
    );

    let logs = TableDef::new(
        LOGS,
        "One row per log record, linked to its trace when it has one.",
        "time",
        &["service_name", "time"],
        &["trace_id"],
        vec![
            col(
                "time",
                timestamp_type(),
                false,
                "`time_unix_nano`, or `observed_time_unix_nano` when 0",
            ),
            col(
                "observed_time",
                timestamp_type(),
                true,
                "`observed_time_unix_nano`; NULL when 0",
            ),
            col(
                "service_name",
                Utf8,
                false,
                "resource `service.name` (`unknown_service` when absent)",
            ),
            col(
                "service_instance_id",
                Utf8,
                true,
                "resource `service.instance.id`",
            ),
            col(
                "severity_number",
                Int32,
                false,
                "`severity_number` (0 = unspecified, 9 = INFO, 17 = ERROR…)",
            ),
            col("severity_text", Utf8, true, "`severity_text`"),
            col(
                "body",
                Utf8,
                true,
                "`body`: a string body as is, any other value as typed JSON",
            ),
            col(
                "trace_id",
                trace_id_type(),
                true,
                "`trace_id`; NULL when absent",
            ),
            col(
                "span_id",
                span_id_type(),
                true,
                "`span_id`; NULL when absent",
            ),
            col("flags", Int64, false, "`flags`"),
            col("event_name", Utf8, true, "`event_name`"),
            col("attributes", Utf8, true, ATTRS_DOC),
            col("resource_attributes", Utf8, true, RESOURCE_ATTRS_DOC),
            col("scope_name", Utf8, true, "`InstrumentationScope.name`"),
            col(
                "scope_version",
                Utf8,
                true,
                "`InstrumentationScope.version`",
            ),
            col(
                "dropped_attributes_count",
                Int64,
                false,
                "`dropped_attributes_count`",
            ),
        ],
    );
    let rollup_1m = TableDef::new(
        SPAN_ROLLUP_1M,
        "Spans aggregated per minute, service, endpoint, kind and status class, written as spans \
         arrive. Rows are partial aggregates: sum `spans`, merge the sketches (`latency_sketch`), \
         and group by the key columns to read it.",
        "time",
        ROLLUP_KEY,
        &[],
        rollup_columns(),
    )
    .rollup(HOUR_NS / 60, true);
    let rollup_1h = TableDef::new(
        SPAN_ROLLUP_1H,
        "`span_rollup_1m` per hour: the same columns and rules.",
        "time",
        ROLLUP_KEY,
        &[],
        rollup_columns(),
    )
    .rollup(HOUR_NS, true);
    let rollup_1d = TableDef::new(
        SPAN_ROLLUP_1D,
        "`span_rollup_1m` per day (UTC): the same columns and rules. Queries over whole days \
         of `span_rollup_1m` or `span_rollup_1h` that do not group by time read it instead.",
        "time",
        ROLLUP_KEY,
        &[],
        rollup_columns(),
    )
    .rollup(24 * HOUR_NS, true);
    let service_1m = TableDef::new(
        SERVICE_ROLLUP_1M,
        "`span_rollup_1m` without the endpoint (`*`), of the requests a service served only \
         (`SERVER` and `CONSUMER` spans, health checks left out): a service's minute in a few \
         rows, for dashboards over every service.",
        "time",
        ROLLUP_KEY,
        &[],
        rollup_columns(),
    )
    .rollup(HOUR_NS / 60, false);
    let service_1h = TableDef::new(
        SERVICE_ROLLUP_1H,
        "`service_rollup_1m` per hour.",
        "time",
        ROLLUP_KEY,
        &[],
        rollup_columns(),
    )
    .rollup(HOUR_NS, false);
    let service_1d = TableDef::new(
        SERVICE_ROLLUP_1D,
        "`service_rollup_1m` per day (UTC), read instead of the finer ones as `span_rollup_1d` is.",
        "time",
        ROLLUP_KEY,
        &[],
        rollup_columns(),
    )
    .rollup(24 * HOUR_NS, false);
    let edges_1m = TableDef::new(
        EDGE_ROLLUP_1M,
        "`service_graph_1m` before its percentiles: the dependency graph's edges per minute, \
         computed from the spans once an hour has settled (the next hour has ended) and computed \
         again when late spans arrive for it. `service_graph_1m` reads it for the hours it \
         covers and the spans for the rest. One file per hour, each replaced whole.",
        "time",
        &["time", "client", "server", "connection_type"],
        &[],
        edge_columns(),
    );
    vec![
        spans,
        metric_points,
        histogram_points,
        exp_histogram_points,
        summary_points,
        logs,
        rollup_1m,
        rollup_1h,
        rollup_1d,
        service_1m,
        service_1h,
        service_1d,
        edges_1m,
    ]
});

fn edge_columns() -> Vec<Column> {
    use DataType::*;
    let mut columns = vec![
        col(
            "time",
            timestamp_type(),
            false,
            "start of the minute the client span started in",
        ),
        col("client", Utf8, false, "`service_graph_1m.client`"),
        col("server", Utf8, false, "`service_graph_1m.server`"),
        col(
            "connection_type",
            Utf8,
            false,
            "`service_graph_1m.connection_type`",
        ),
        col("requests", Int64, false, "calls"),
        col("failed", Int64, false, "calls that failed"),
        col(
            "failed_origin_downstream",
            Int64,
            false,
            "failed calls whose server failed because one of its own calls did",
        ),
        col(
            "failed_origin_server",
            Int64,
            false,
            "failed calls whose server failed on its own",
        ),
        col(
            "failed_origin_edge",
            Int64,
            false,
            "failed calls only the client saw fail",
        ),
    ];
    columns.extend([
        col(
            "client_zero_count",
            Int64,
            false,
            "calls of zero duration the client saw (the sketch's zero bucket)",
        ),
        col(
            "client_bucket_index",
            list_of_prim(Int32),
            false,
            "sketch of the latency the client saw: buckets as in `span_rollup_1m`",
        ),
        col(
            "client_bucket_count",
            list_of_prim(Int64),
            false,
            "calls in each of those buckets",
        ),
        col(
            "server_zero_count",
            Int64,
            true,
            "the same for the latency the server reported; NULL for virtual nodes",
        ),
        col(
            "server_bucket_index",
            list_of_prim(Int32),
            true,
            "sketch of the latency the server reported; NULL for virtual nodes",
        ),
        col(
            "server_bucket_count",
            list_of_prim(Int64),
            true,
            "calls in each of those buckets",
        ),
    ]);
    columns
}

/// The key of a rollup row; rows are sorted by it.
/// Time first: a partition holds a day of rollups, and a dashboard's range then reads the pages
/// of its hours only (the page index prunes by time), whatever the services.
const ROLLUP_KEY: &[&str] = &[
    "time",
    "service_name",
    "endpoint",
    "span_kind",
    "status_class",
    "health_check",
];

fn rollup_columns() -> Vec<Column> {
    use DataType::*;
    vec![
        col(
            "time",
            timestamp_type(),
            false,
            "start of the time bucket the spans started in",
        ),
        col("service_name", Utf8, false, "`spans.service_name`"),
        col(
            "endpoint",
            Utf8,
            false,
            "`http_route`, else `rpc_service || '/' || rpc_method`, else `span_name`; `*` in the service rollups",
        ),
        col("span_kind", Utf8, false, "`spans.span_kind`"),
        col(
            "status_class",
            Utf8,
            false,
            "'error' (`is_error`), 'throttled' (else HTTP 429 or gRPC RESOURCE_EXHAUSTED, status not OK) or 'ok'",
        ),
        col(
            "health_check",
            Boolean,
            false,
            "`COALESCE(http_route, url_path)` is one of the health-check routes configured when the span arrived",
        ),
        col("spans", Int64, false, "spans in the bucket"),
        col("duration_sum_ns", Int64, false, "sum of `duration_ns`"),
        col("duration_min_ns", Int64, false, "smallest `duration_ns`"),
        col("duration_max_ns", Int64, false, "largest `duration_ns`"),
        col(
            "latency_zero_count",
            Int64,
            false,
            "spans with `duration_ns` <= 0 (the sketch's zero bucket)",
        ),
        col(
            "latency_bucket_index",
            list_of_prim(Int32),
            false,
            "sketch buckets that hold spans, ascending: bucket i holds durations (ns) in (2^(i/64), 2^((i+1)/64)] (exponential-histogram scale 6)",
        ),
        col(
            "latency_bucket_count",
            list_of_prim(Int64),
            false,
            "spans in each of those buckets",
        ),
    ]
}

fn type_name(t: &DataType) -> String {
    match t {
        DataType::Timestamp(TimeUnit::Nanosecond, Some(_)) => "timestamp(ns, UTC)".into(),
        DataType::FixedSizeBinary(n) => format!("binary({n})"),
        DataType::Utf8 => "utf8".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::Float64 => "float64".into(),
        DataType::List(f) => match f.data_type() {
            DataType::Struct(_) => "list<struct>".into(),
            other => format!("list<{}>", type_name(other)),
        },
        other => format!("{other}"),
    }
}

/// The storage schema as Markdown (`docs/schema.md` is this text).
pub fn markdown() -> String {
    let mut out = String::from(
        "# Storage schema\n\n\
         Generated from `collector/storage/src/schema.rs` (`cargo run -- schema > docs/schema.md`); a test \
         keeps the two equal.\n\n\
         Files: `<data-dir>/<table>/date=YYYY-MM-DD/hour=HH/<ulid>.parquet`, zstd-compressed, \
         written to a temporary name and renamed into place.\n\n\
         Attributes that have no column of their own are kept losslessly in typed JSON objects: \
         strings, booleans and doubles as JSON values, 64-bit integers as JSON integers, arrays \
         and key-value lists as arrays and objects, bytes as `{\"bytes\":\"<base64>\"}`. An \
         attribute promoted to a column (for example `http.route`) is removed from the JSON when \
         its type matches the column. Read them in SQL with `json_get_str(attributes, 'key')`, \
         `json_get_int`, `json_get_float`, `json_get_bool`, or `attributes->>'key'`.\n",
    );
    for t in tables() {
        out.push_str(&format!(
            "\n## `{}`\n\n{} Partitioned by `{}` {}; rows sorted by ({}){}.\n\n\
             | column | type | null | source |\n|---|---|---|---|\n",
            t.name,
            t.about,
            t.time_column,
            if t.partition_ns == HOUR_NS {
                "per hour"
            } else {
                "per day (`hour=00`)"
            },
            t.sort_columns.join(", "),
            if t.bloom_filter_columns.is_empty() {
                String::new()
            } else {
                format!("; bloom filter on {}", t.bloom_filter_columns.join(", "))
            }
        ));
        for c in &t.columns {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                c.name,
                type_name(&c.data_type),
                if c.nullable { "yes" } else { "no" },
                c.source
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_schema_md_is_generated_from_this_module() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/schema.md");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == markdown(),
            "docs/schema.md is stale: run `cargo run -- schema > docs/schema.md`"
        );
    }

    #[test]
    fn every_table_has_its_time_and_sort_columns() {
        for t in tables() {
            let schema = t.schema();
            for c in t.sort_columns.iter().chain([&t.time_column]) {
                assert!(schema.field_with_name(c).is_ok(), "{}.{c}", t.name);
            }
        }
    }
}
