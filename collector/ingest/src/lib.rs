//! OTLP in: the receivers (gRPC and HTTP, protobuf and JSON), the conversion of OTLP requests
//! into the Arrow batches of `headroom-storage`'s tables, and the one ingest function that
//! makes them durable.
//!
//! Data flows one way: a [`receiver`] decodes a request and finds its tenant's
//! [`ingest::Ingester`] (through the server's [`tenant::Tenants`], after [`auth`] checked who
//! sent it); the ingester converts it ([`convert`]), logs the rows in the WAL and hands them to
//! the store, and answers only once they are durable. Protocol details (status codes,
//! encodings) stay in the receivers; conversion never touches a socket.
//!
//! It depends on `headroom-storage` (the schema, the WAL and the store) and on nothing of the
//! query side.

pub mod auth;
pub mod convert;
pub mod error;
pub mod ingest;
pub mod otlp_json;
pub mod receiver;
pub mod tenant;

/// The three OpenTelemetry signals Headroom ingests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

#[cfg(test)]
mod rollup_tests;
