//! The read side of Headroom: a DataFusion session over the stored tables and the hot buffer.

pub mod anomaly;
pub mod bounded;
pub mod catalog;
pub mod cluster;
pub mod edges;
pub mod engine;
pub mod error;
pub mod exp_histogram;
pub mod explain;
pub mod file_cache;
pub mod forecast;
pub mod guard;
pub mod histogram;
pub mod kpi;
pub mod ladder;
pub mod pg_compat;
pub mod readable;
pub mod scaling;
pub mod sketch;
pub mod slo;
pub mod stats;

pub use engine::{JsonRows, QueryEngine};
pub use error::QueryError;
pub use guard::QueryLimits;
pub use kpi::KpiSettings;
