//! Conversion throughput: an OTLP/protobuf trace request (512 spans from the simulated shop)
//! decoded and converted to an Arrow batch, on one core. Target: ≥ 1,000,000 spans/s.
//! `decode_convert_and_roll_up` adds the span rollups ingest computes for every batch (per
//! minute, with and without the endpoint), before they are merged into the tables' buffers:
//! their cost is its difference to `decode_protobuf_and_convert`.
//!
//! `cargo bench --bench convert`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use headroom_ingest::convert;
use headroom_loadgen::{Topology, span_count};
use headroom_storage::rollup::{self, RollupConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

fn bench(c: &mut Criterion) {
    let mut topo = Topology::new(42);
    let requests: Vec<ExportTraceServiceRequest> = (0..16)
        .map(|i| topo.traces_request(512, 1_767_225_600_000_000_000 + i * 1_000_000_000))
        .collect();
    let spans: u64 = requests.iter().map(span_count).sum();
    let encoded: Vec<Vec<u8>> = requests.iter().map(|r| r.encode_to_vec()).collect();

    let mut g = c.benchmark_group("traces");
    g.throughput(Throughput::Elements(spans));
    g.bench_function("convert_to_arrow", |b| {
        b.iter(|| {
            for r in &requests {
                std::hint::black_box(convert::traces::convert(r).expect("converts"));
            }
        })
    });
    g.bench_function("decode_protobuf_and_convert", |b| {
        b.iter(|| {
            for bytes in &encoded {
                let r = ExportTraceServiceRequest::decode(&bytes[..]).expect("decodes");
                std::hint::black_box(convert::traces::convert(&r).expect("converts"));
            }
        })
    });
    let rollups = RollupConfig::default();
    g.bench_function("decode_convert_and_roll_up", |b| {
        b.iter(|| {
            for bytes in &encoded {
                let r = ExportTraceServiceRequest::decode(&bytes[..]).expect("decodes");
                let converted = convert::traces::convert(&r).expect("converts");
                let spans = &converted.batches[0].1;
                let rolled = rollup::SpanRollups::of(spans, &rollups).expect("rolls up");
                std::hint::black_box((converted, rolled));
            }
        })
    });
    g.finish();

    let mut topo = Topology::new(43);
    let metrics: Vec<_> = (0..16)
        .map(|i| topo.metrics_request(1_767_225_600_000_000_000 + i * 10_000_000_000))
        .collect();
    let points: u64 = metrics
        .iter()
        .map(headroom_loadgen::metric_point_count)
        .sum();
    let mut g = c.benchmark_group("metrics");
    g.throughput(Throughput::Elements(points));
    g.bench_function("convert_to_arrow", |b| {
        b.iter(|| {
            for r in &metrics {
                std::hint::black_box(convert::metrics::convert(r).expect("converts"));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
