//! The write side of Headroom: OTLP receivers, OTLP→Arrow conversion, the table schemas
//! (the storage contract shared with `analytics`), the hot in-memory buffer and the Parquet writer.
//!
//! Data flows one way: `receiver` decodes a request, [`ingest::Ingester`] converts it
//! (`convert`) into Arrow batches of the tables in [`schema`] and appends them to the
//! [`store::Store`], which keeps them queryable in memory until a flush writes them to Parquet.

pub mod convert;
pub mod error;
pub mod ingest;
pub mod otlp_json;
pub mod parquet;
pub mod receiver;
pub mod schema;
pub mod store;

/// The three OpenTelemetry signals Headroom ingests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}
