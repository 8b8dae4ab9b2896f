//! The bucket maths of exponential histograms, shared by the write side (the span rollups'
//! latency sketches are built in `headroom-storage`) and the read side (the SQL functions of
//! `headroom-query` merge them and take percentiles).
//!
//! It exists as its own crate so that both sides compute bucket indexes, merges and
//! percentiles with the same code, and neither has to depend on the other to do so. It
//! depends on nothing: no Arrow, no DataFusion, only numbers.

pub mod exp_histogram;
pub mod latency;
