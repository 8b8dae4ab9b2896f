//! Anomaly detection: a causal detector per KPI series ([`detector`]), run live over every
//! service's KPIs ([`live`]) and measured on the Numenta Anomaly Benchmark ([`nab`]).

pub mod detector;
pub mod live;
pub mod nab;

pub use detector::{ANOMALY_THRESHOLD, Detector, Scored};
