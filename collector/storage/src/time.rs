//! Time in the store: every time column is nanoseconds since the Unix epoch, UTC, and data is
//! partitioned and rolled up by these spans of it.

pub const NANOS_PER_MINUTE: i64 = 60_000_000_000;
pub const NANOS_PER_HOUR: i64 = 60 * NANOS_PER_MINUTE;
pub const NANOS_PER_DAY: i64 = 24 * NANOS_PER_HOUR;
