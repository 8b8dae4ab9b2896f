//! Query-facing servers.

pub mod http;
pub mod kpis;
pub mod pg;
