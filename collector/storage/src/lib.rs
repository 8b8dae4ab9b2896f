//! Headroom's storage: the table schemas (the contract between the write and the read side),
//! the write-ahead log, the hot in-memory buffer, the Parquet files, their compaction and
//! expiry, the span rollups, and publishing to an object store.
//!
//! Rows arrive as Arrow batches of the tables in [`schema`]. They are logged durably in the
//! [`wal::Wal`] and appended to the [`store::Store`], which keeps them queryable in memory until
//! a flush writes them to Parquet ([`parquet`]) and the log covering them is retired. With an
//! object store ([`remote`]), the Parquet files are also uploaded there, where other servers
//! read them.
//!
//! It knows nothing of OTLP or of any protocol: `headroom-ingest` converts requests into its
//! batches, and the query side reads its snapshots. It depends only on `headroom-sketch`.

pub mod compact;
pub mod error;
pub mod parquet;
pub mod remote;
pub mod rollup;
pub mod schema;
pub mod store;
pub mod time;
pub mod wal;

#[cfg(test)]
mod testing;
