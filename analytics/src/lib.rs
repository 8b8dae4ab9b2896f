//! The read side of Headroom: a DataFusion session over the stored tables and the hot buffer,
//! the SQL functions and KPI views on it, the Ballista cluster that can run its plans, and the
//! models (forecasts, scaling, anomalies, root causes) that read its answers.
//!
//! It reads what `headroom-storage` keeps (the schema and the store's snapshots) and uses
//! `headroom-sketch` for histogram maths; it knows nothing of OTLP or of the receivers.

pub mod anomaly;
pub mod catalog;
pub mod client_columns;
pub mod cluster;
pub mod engine;
pub mod error;
pub mod exp_histogram;
pub mod file_cache;
pub mod forecast;
pub mod functions;
pub mod histogram;
pub mod kpi;
pub mod ladder;
pub mod pg_compat;
pub mod query_limits;
pub mod ranged_view;
pub mod root_cause;
pub mod scaling;
pub mod service_graph;
pub mod sketch;
pub mod slo;
pub mod stats;

pub use engine::{JsonRows, QueryEngine};
pub use error::QueryError;
pub use kpi::KpiSettings;
pub use query_limits::QueryLimits;
