//! Query-facing servers.

pub mod forecast;
pub mod http;
pub mod kpis;
pub mod pg;
