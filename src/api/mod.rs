//! Query-facing servers.

pub mod http;
