//! Query-facing servers.

pub mod http;
pub mod pg;
