//! Headroom: one binary that ingests OpenTelemetry data and answers questions about it in SQL.
//!
//! This crate is the server (tenants, background jobs, the HTTP API, the PostgreSQL wire
//! protocol, the KEDA scaler, the console, TLS), the load generator and the demo, and the
//! command line. It puts together `headroom-ingest` (OTLP in), `headroom-storage` (the tables)
//! and `headroom-analytics` (the queries and models); nothing depends on it.

pub mod anomaly;
pub mod api;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod forecast;
pub mod query;
pub mod scaling;
pub mod serve;
pub mod tenants;
pub mod tls;
