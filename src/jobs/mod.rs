//! A tenant's background work, one job per file, each a loop that runs until its stop token
//! is cancelled: flushing, reading other writers, maintenance, planning, anomaly scoring.

pub(crate) mod anomaly;
pub(crate) mod flush;
pub(crate) mod maintain;
pub(crate) mod plan;
pub(crate) mod refresh;
