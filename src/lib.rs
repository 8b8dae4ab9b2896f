//! Headroom: one binary that ingests OpenTelemetry data and answers questions about it in SQL.
//!
//! This crate is the server (`tenant` and `tenants`, background `jobs`, the HTTP API, the
//! PostgreSQL wire protocol, the KEDA scaler, the console, TLS), the demo, and the command
//! line (`cli`, one module per command). It puts together `headroom-ingest` (OTLP in),
//! `headroom-storage` (the tables), `headroom-analytics` (the queries and models) and
//! `headroom-loadgen` (the demo's traffic); nothing depends on it.

pub mod anomaly;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod error;
pub mod forecast;
pub(crate) mod jobs;
pub mod query;
pub mod scaling;
pub mod serve;
pub mod tenant;
pub mod tenants;
pub mod tls;
