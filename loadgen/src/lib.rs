//! A simulated microservice shop as OTLP traffic, for the demo, the benchmarks and the tests.
//!
//! Headroom needs traffic that looks like a real microservice system to be
//! useful to demo, benchmark or test end to end: RED metrics, service maps,
//! critical paths and error breakdowns are only meaningful if the spans carry
//! correct parent/child links, semantic-convention attributes, plausible
//! latencies with a tail, and a realistic sprinkle of failures. This crate
//! provides three things:
//!
//! * [`Topology`], a deterministic (seeded) simulated shop — `frontend` →
//!   `checkout` → `payment`, `cart` (redis), `product-catalog` (postgresql +
//!   redis), `recommendation`, `ad` — optionally grown with extra services and
//!   endpoints for big benchmarks. It produces ready-to-send
//!   `ExportTraceServiceRequest`s, `ExportMetricsServiceRequest`s and
//!   `ExportLogsServiceRequest`s.
//! * [`Scenario`], the demo's load over time (daily and weekly cycles, a slow
//!   deploy, an incident, a downstream failure), and [`backfill`], which writes a
//!   scenario's history as fast as the server acknowledges it.
//! * [`run`], the `headroom loadgen` command: it sends that traffic to an OTLP
//!   endpoint over gRPC or HTTP/protobuf at a target rate, reads
//!   `partial_success` from every response and reports what was sent and what
//!   the server acknowledged ([`LoadgenReport`]).
//!
//! To measure the *server* and not the generator, [`run`] builds a pool of
//! requests and prost-encodes them once before the clock starts. Re-sending
//! the same bytes would produce duplicate ids and stale timestamps, so each
//! send copies a pooled request and patches it in place: trace and span ids
//! are XOR-ed with a fresh random salt (a bijection, so parent links stay
//! consistent and ids stay unique) and all timestamps are shifted so that the
//! request's newest span ends "now". The patch offsets are found once by a
//! small protobuf wire-format walk. This costs one memcpy plus a few thousand
//! byte writes per request — far cheaper than generating or encoding.
//!
//! It speaks OTLP as a client and depends on no other crate of the workspace: the server is
//! what it talks to, never what it links.

mod error;
mod exporter;
mod fault;
mod model;
mod runner;
mod scenario;
mod template;
mod topology;
mod traces;
mod util;

#[cfg(test)]
mod tests;

pub use error::LoadgenError;
pub use exporter::{Exporter, Protocol};
pub use fault::Fault;
pub use runner::{LoadgenArgs, LoadgenReport, history, run};
pub use scenario::{
    BackfillError, BackfillReport, Event, FULL_CPU_FACTOR, Scenario, backfill, minute_floor, to_u64,
};
pub use topology::{Topology, metric_point_count, span_count};
