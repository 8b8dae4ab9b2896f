//! How ingested spans roll up: OTLP spans converted as the receivers convert them, aggregated
//! by `headroom_storage::rollup`, buffered and replayed through the store and the WAL.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use headroom_sketch::latency::bucket_index;
use headroom_storage::rollup::{
    ALL_ENDPOINTS, Merged, RollupConfig, SpanRollups, combine, spans_to_rollup,
};
use headroom_storage::schema;
use headroom_storage::store::{Store, StoreConfig};

use crate::ingest::Ingester;

const MINUTE: u64 = 60_000_000_000;
/// 2026-11-02T10:00:00Z.
const T0: u64 = 1_793_613_600_000_000_000;

fn attr(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn route(r: &str) -> KeyValue {
    attr("http.route", any_value::Value::StringValue(r.into()))
}

fn http_status(code: i64) -> KeyValue {
    attr(
        "http.response.status_code",
        any_value::Value::IntValue(code),
    )
}

/// A SERVER span of service `svc` starting `offset_ns` after [`T0`].
fn span(offset_ns: u64, duration_ns: u64, attributes: Vec<KeyValue>, status: i32) -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "GET".into(),
        kind: 2,
        start_time_unix_nano: T0 + offset_ns,
        end_time_unix_nano: T0 + offset_ns + duration_ns,
        attributes,
        status: Some(Status {
            code: status,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: vec![attr(
                    "service.name",
                    any_value::Value::StringValue("svc".into()),
                )],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// (time offset in minutes, endpoint, class, health_check, spans, sum, min, max, zero,
/// buckets) of every row, in key order.
type Row = (
    i64,
    String,
    String,
    bool,
    i64,
    i64,
    i64,
    i64,
    i64,
    Vec<(i32, i64)>,
);

fn rows(batch: &RecordBatch) -> Vec<Row> {
    let s = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_string::<i32>()
            .clone()
    };
    let n = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone()
    };
    let time = batch
        .column_by_name("time")
        .unwrap()
        .as_primitive::<arrow::datatypes::TimestampNanosecondType>()
        .clone();
    let (endpoint, class) = (s("endpoint"), s("status_class"));
    let health = batch
        .column_by_name("health_check")
        .unwrap()
        .as_boolean()
        .clone();
    let (spans, sum, min, max, zero) = (
        n("spans"),
        n("duration_sum_ns"),
        n("duration_min_ns"),
        n("duration_max_ns"),
        n("latency_zero_count"),
    );
    let index = batch
        .column_by_name("latency_bucket_index")
        .unwrap()
        .as_list::<i32>()
        .clone();
    let count = batch
        .column_by_name("latency_bucket_count")
        .unwrap()
        .as_list::<i32>()
        .clone();
    let mut out: Vec<Row> = (0..batch.num_rows())
        .map(|i| {
            let buckets = index
                .value(i)
                .as_primitive::<Int32Type>()
                .values()
                .iter()
                .copied()
                .zip(
                    count
                        .value(i)
                        .as_primitive::<Int64Type>()
                        .values()
                        .iter()
                        .copied(),
                )
                .collect();
            (
                (time.value(i) - T0 as i64) / MINUTE as i64,
                endpoint.value(i).to_owned(),
                class.value(i).to_owned(),
                health.value(i),
                spans.value(i),
                sum.value(i),
                min.value(i),
                max.value(i),
                zero.value(i),
                buckets,
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn spans_are_counted_per_minute_endpoint_and_class() {
    let spans = vec![
        span(0, 1_000, vec![route("/a")], 0),
        span(1_000, 3_000, vec![route("/a")], 0),
        span(MINUTE - 1, 1_024, vec![route("/a")], 0),
        span(MINUTE, 0, vec![route("/a")], 0),
        span(5, 2_000, vec![route("/a"), http_status(503)], 0),
        span(6, 2_000, vec![route("/a"), http_status(429)], 0),
        // A status set to OK is final, whatever the HTTP status says.
        span(7, 2_000, vec![route("/a"), http_status(429)], 1),
        span(8, 50, vec![route("/healthz")], 0),
        span(
            9,
            50,
            vec![attr(
                "url.path",
                any_value::Value::StringValue("/healthz".into()),
            )],
            0,
        ),
        span(
            10,
            70,
            vec![
                attr("rpc.service", any_value::Value::StringValue("Cart".into())),
                attr("rpc.method", any_value::Value::StringValue("Get".into())),
            ],
            0,
        ),
    ];
    let batch = crate::convert::traces::convert(&request(spans))
        .unwrap()
        .batches
        .remove(0)
        .1;
    let config = RollupConfig {
        health_check_routes: vec!["/healthz".into()],
        ..RollupConfig::default()
    };
    let got = rows(&spans_to_rollup(&batch, &config).unwrap());
    let want: Vec<Row> = vec![
        (
            0,
            "/a".into(),
            "error".into(),
            false,
            1,
            2_000,
            2_000,
            2_000,
            0,
            vec![(bucket_index(2_000), 1)],
        ),
        (
            0,
            "/a".into(),
            "ok".into(),
            false,
            4,
            7_024,
            1_000,
            3_000,
            0,
            vec![
                (bucket_index(1_000), 1),
                (639, 1),
                (bucket_index(2_000), 1),
                (bucket_index(3_000), 1),
            ],
        ),
        (
            0,
            "/a".into(),
            "throttled".into(),
            false,
            1,
            2_000,
            2_000,
            2_000,
            0,
            vec![(bucket_index(2_000), 1)],
        ),
        (
            0,
            "/healthz".into(),
            "ok".into(),
            true,
            1,
            50,
            50,
            50,
            0,
            vec![(bucket_index(50), 1)],
        ),
        (
            0,
            "Cart/Get".into(),
            "ok".into(),
            false,
            1,
            70,
            70,
            70,
            0,
            vec![(bucket_index(70), 1)],
        ),
        // No route: the endpoint is the span name, the health check is the path.
        (
            0,
            "GET".into(),
            "ok".into(),
            true,
            1,
            50,
            50,
            50,
            0,
            vec![(bucket_index(50), 1)],
        ),
        (1, "/a".into(), "ok".into(), false, 1, 0, 0, 0, 1, vec![]),
    ];
    let mut want = want;
    want.sort();
    assert_eq!(got, want);

    // The service rollups count server requests only: no health check, no client span.
    let mut client = span(0, 500, vec![route("/a")], 0);
    client.kind = 3;
    let client = crate::convert::traces::convert(&request(vec![client]))
        .unwrap()
        .batches
        .remove(0)
        .1;
    let both = arrow::compute::concat_batches(&batch.schema(), [&batch, &client]).unwrap();
    let [(_, m), (_, h), (_, d), (_, minute), (_, hour), (_, day)] =
        SpanRollups::of(&both, &config)
            .unwrap()
            .batches()
            .unwrap()
            .try_into()
            .unwrap();
    // The rows of the hour and the day: what merging the minutes gives.
    let by_combine = |table, batch: &RecordBatch| {
        rows(&combine(schema::table(table), std::slice::from_ref(batch)).unwrap())
    };
    for (table, coarse, fine) in [
        (schema::SPAN_ROLLUP_1H, &h, &m),
        (schema::SPAN_ROLLUP_1D, &d, &m),
        (schema::SERVICE_ROLLUP_1H, &hour, &minute),
        (schema::SERVICE_ROLLUP_1D, &day, &minute),
    ] {
        assert_eq!(
            by_combine(table, coarse),
            by_combine(table, fine),
            "{table}"
        );
    }
    assert!(
        rows(&d).iter().all(|r| r.0 == -600),
        "cut to the day's midnight, 600 minutes before T0: {:?}",
        rows(&d)
    );
    assert_eq!(
        rows(&minute).len(),
        4,
        "error, ok and throttled at minute 0, ok at 1"
    );
    for service in [minute, hour] {
        let service = rows(&service);
        let spans: i64 = service.iter().map(|r| r.4).sum();
        assert_eq!(spans, 8, "{service:?}");
        assert!(service.iter().all(|r| !r.3 && r.1 == ALL_ENDPOINTS));
    }
}

#[test]
fn combining_partial_rows_neither_loses_nor_doubles_a_span() {
    let one = |offset, duration| {
        let req = request(vec![span(offset, duration, vec![route("/a")], 0)]);
        let batch = crate::convert::traces::convert(&req)
            .unwrap()
            .batches
            .remove(0)
            .1;
        spans_to_rollup(&batch, &RollupConfig::default()).unwrap()
    };
    let parts = [one(0, 100), one(10, 300), one(MINUTE * 2, 100)];
    let minute = rows(&combine(schema::table(schema::SPAN_ROLLUP_1M), &parts).unwrap());
    assert_eq!(minute.len(), 2);
    assert_eq!(minute[0].4, 2);
    assert_eq!((minute[0].5, minute[0].6, minute[0].7), (400, 100, 300));
    assert_eq!(
        minute[0].9,
        vec![(bucket_index(100), 1), (bucket_index(300), 1)]
    );
    // The hour holds all three.
    let hour = rows(&combine(schema::table(schema::SPAN_ROLLUP_1H), &parts).unwrap());
    assert_eq!(hour.len(), 1);
    assert_eq!((hour[0].0, hour[0].4, hour[0].5), (0, 3, 500));
    assert_eq!(
        hour[0].9,
        vec![(bucket_index(100), 2), (bucket_index(300), 1)]
    );
    // The service rollup merges endpoints.
    let other = {
        let req = request(vec![span(20, 300, vec![route("/b")], 0)]);
        let batch = crate::convert::traces::convert(&req)
            .unwrap()
            .batches
            .remove(0)
            .1;
        spans_to_rollup(&batch, &RollupConfig::default()).unwrap()
    };
    let all = [parts[0].clone(), parts[1].clone(), other];
    let service = rows(&combine(schema::table(schema::SERVICE_ROLLUP_1M), &all).unwrap());
    assert_eq!(service.len(), 1);
    assert_eq!(
        (service[0].1.as_str(), service[0].4, service[0].5),
        ("*", 3, 700)
    );
}

proptest::proptest! {
    /// However a stream of spans is cut into requests, the rows each rollup table buffers
    /// are what rolling them all up at once gives.
    #[test]
    fn merged_rows_do_not_depend_on_how_requests_cut_the_spans(
        spans in proptest::collection::vec(
            (0u64..7_200, 0usize..3, 0i32..3, 0u64..5_000_000), 1..60),
        cuts in proptest::collection::btree_set(1usize..60, 0..5),
    ) {
        let routes = ["/a", "/b", "/c"];
        let spans: Vec<Span> = spans
            .into_iter()
            .map(|(s, r, status, d)| span(s * 1_000_000_000, d, vec![route(routes[r])], status))
            .collect();
        let convert = |spans: &[Span]| {
            crate::convert::traces::convert(&request(spans.to_vec()))
                .unwrap()
                .batches
                .remove(0)
                .1
        };
        let config = RollupConfig::default();
        // Every span is a SERVER span and no health check, so the service tables hold them all.
        let minutes = spans_to_rollup(&convert(&spans), &config).unwrap();
        let tables = SpanRollups::of(&convert(&spans[..1]), &config).unwrap().tables().map(|t| t.0);
        let whole = tables.map(|table| {
            (table, combine(schema::table(table), std::slice::from_ref(&minutes)).unwrap())
        });
        let mut merged: Vec<Merged> = whole.iter().map(|_| Merged::default()).collect();
        let mut from = 0;
        for to in cuts.into_iter().filter(|&c| c < spans.len()).chain([spans.len()]) {
            let part = SpanRollups::of(&convert(&spans[from..to]), &config).unwrap();
            for (m, (table, rows)) in merged.iter_mut().zip(part.tables()) {
                m.add(schema::table(table), rows, |_| true).unwrap();
            }
            from = to;
        }
        for (m, (table, want)) in merged.iter().zip(&whole) {
            let got = m.to_batch(schema::table(table)).unwrap();
            proptest::prop_assert_eq!(rows(&got), rows(want), "{}", table);
        }
    }
}

/// Rows and spans of a rollup table, buffered and in Parquet.
fn total(store: &Store, table: &str) -> (usize, i64) {
    let snap = store.snapshot(table).unwrap();
    let mut batches = snap.batches.clone();
    for f in &snap.files {
        batches.extend(headroom_storage::parquet::read_file(&f.path).unwrap());
    }
    let spans = batches
        .iter()
        .map(|b| {
            b.column_by_name("spans")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .sum::<i64>()
        })
        .sum();
    (batches.iter().map(|b| b.num_rows()).sum(), spans)
}

/// Rollups are not logged: a replay rolls the logged spans up again, and a rollup table
/// that reached Parquet before the crash does not count them twice.
#[test]
fn a_replay_rolls_the_logged_spans_up_again() {
    use headroom_storage::wal::{SyncMode, Wal, WalConfig};
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let store = Arc::new(Store::open(StoreConfig::new(dir.path().join("data"))).unwrap());
        let (wal, report) = Wal::open(
            WalConfig {
                dir: dir.path().join("data/wal"),
                sync: SyncMode::Fsync,
                segment_bytes: 1 << 20,
                rollups: RollupConfig::default(),
            },
            store.clone(),
        )
        .unwrap();
        (store, Arc::new(wal), report)
    };
    {
        let (store, wal, _) = open();
        let ingester = Ingester::new(store.clone(), Some(wal.clone()), RollupConfig::default());
        for k in 0..3 {
            ingester
                .traces(&request(vec![span(k, 100, vec![route("/a")], 0)]))
                .unwrap();
        }
        store.flush_table(schema::SPAN_ROLLUP_1H, true).unwrap();
        wal.close();
    }
    let (store, _wal, report) = open();
    assert_eq!(report.records, 3);
    assert_eq!(store.stats(schema::SPANS).unwrap().buffered_rows, 3);
    for table in [
        schema::SPAN_ROLLUP_1M,
        schema::SPAN_ROLLUP_1H,
        schema::SERVICE_ROLLUP_1M,
        schema::SERVICE_ROLLUP_1H,
    ] {
        assert_eq!(total(&store, table).1, 3, "{table}");
    }
}

/// Through the ingest path: rollups are written with their spans, merged in the buffer and
/// by compaction, and a late span for a minute already in Parquet adds to it.
#[test]
fn late_spans_add_to_minutes_already_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(StoreConfig::new(dir.path())).unwrap());
    let ingester = Ingester::new(store.clone(), None, RollupConfig::default());
    let total = |table: &str| total(&store, table);
    for k in 0..3 {
        ingester
            .traces(&request(vec![span(k, 100, vec![route("/a")], 0)]))
            .unwrap();
    }
    assert_eq!(
        total(schema::SPAN_ROLLUP_1M),
        (1, 3),
        "the buffer merges the requests' rows of one key"
    );
    store.flush_all(true).unwrap();
    assert_eq!(total(schema::SPAN_ROLLUP_1M), (1, 3));
    // Late: the same minute, after it was written.
    ingester
        .traces(&request(vec![span(5, 100, vec![route("/a")], 0)]))
        .unwrap();
    store.flush_all(true).unwrap();
    assert_eq!(total(schema::SPAN_ROLLUP_1M), (2, 4));
    assert_eq!(total(schema::SPAN_ROLLUP_1H), (2, 4));
    let stats = store.compact(64 << 20, i64::MAX).unwrap();
    assert_eq!(
        stats.files_merged, 14,
        "two files each of spans and six rollups"
    );
    assert_eq!(
        total(schema::SPAN_ROLLUP_1M),
        (1, 4),
        "compaction merges the late row"
    );
    assert_eq!(total(schema::SPAN_ROLLUP_1H), (1, 4));
    assert_eq!(total(schema::SERVICE_ROLLUP_1M), (1, 4));
    assert_eq!(total(schema::SERVICE_ROLLUP_1H), (1, 4));
    let spans = store.snapshot(schema::SPANS).unwrap();
    assert_eq!(spans.files.iter().map(|f| f.rows).sum::<u64>(), 4);
}

/// `--rollups false`: spans are stored, no rollup row is written.
#[test]
fn rollups_off_stores_spans_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(StoreConfig::new(dir.path())).unwrap());
    let off = RollupConfig {
        enabled: false,
        ..RollupConfig::default()
    };
    let ingester = Ingester::new(store.clone(), None, off);
    ingester
        .traces(&request(vec![span(0, 100, vec![route("/a")], 0)]))
        .unwrap();
    store.flush_all(true).unwrap();
    let rows = |table: &str| store.stats(table).unwrap().file_rows;
    assert_eq!(rows(schema::SPANS), 1);
    for table in [
        schema::SPAN_ROLLUP_1M,
        schema::SPAN_ROLLUP_1H,
        schema::SERVICE_ROLLUP_1M,
        schema::SERVICE_ROLLUP_1H,
    ] {
        assert_eq!(rows(table), 0, "{table}");
    }
}
