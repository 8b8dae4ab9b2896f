//! Headroom: one binary that ingests OpenTelemetry data and answers questions about it in SQL.

pub mod anomaly;
pub mod api;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod forecast;
pub mod loadgen;
pub mod query;
pub mod scaling;
pub mod serve;
pub mod tenants;
pub mod tls;
