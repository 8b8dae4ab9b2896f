//! Query-facing servers.

pub mod anomalies;
pub mod answer;
pub mod console;
pub mod forecast;
pub mod http;
pub mod incidents;
pub mod keda;
pub mod kpis;
pub mod pg;
pub mod recommendations;
