//! The write side of Headroom: OTLP receivers, OTLP→Arrow conversion, the table schemas
//! (the storage contract shared with `analytics`), the hot in-memory buffer and the Parquet writer.
//!
//! Data flows one way: `receiver` decodes a request, [`ingest::Ingester`] converts it
//! (`convert`) into Arrow batches of the tables in [`schema`], logs them durably in the
//! [`wal::Wal`] and appends them to the [`store::Store`], which keeps them queryable in memory
//! until a flush writes them to Parquet and the log covering them is retired. With an object
//! store ([`remote`]), the Parquet files are also uploaded there, where other servers read them.

pub mod compact;
pub mod convert;
pub mod error;
pub mod ingest;
pub mod otlp_json;
pub mod parquet;
pub mod receiver;
pub mod remote;
pub mod rollup;
pub mod schema;
pub mod store;
pub mod tenant;
pub mod wal;

/// The three OpenTelemetry signals Headroom ingests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}
