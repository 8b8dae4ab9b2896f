//! The one ingest function every receiver calls: convert a decoded OTLP request, log its rows in
//! the WAL and hand them to the store; it returns only once they are durable. Protocol details
//! (status codes, encodings) stay in the receivers.
//!
//! Memory is bounded twice: a request is refused before conversion while the buffer is full,
//! and again after conversion if its rows would overfill it (rows waiting for the WAL count too).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};

use crate::Signal;
use crate::convert::{self, Converted};
use crate::error::IngestError;
use headroom_storage::error::StoreError;
use headroom_storage::rollup::{RollupConfig, SpanRollups};
use headroom_storage::schema::SPANS;
use headroom_storage::store::Store;
use headroom_storage::wal::Wal;

/// The result of an accepted request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub accepted: u64,
    pub rejected: u64,
    /// Why items were rejected (first reason), for `partial_success.error_message`.
    pub message: Option<String>,
}

/// Counters per signal, exported on `/metrics`.
#[derive(Debug, Default)]
pub struct SignalCounters {
    pub requests: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub failed_requests: AtomicU64,
}

impl SignalCounters {
    /// (requests, failed requests, accepted items, rejected items).
    pub fn values(&self) -> [u64; 4] {
        [
            self.requests.load(Ordering::Relaxed),
            self.failed_requests.load(Ordering::Relaxed),
            self.accepted.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        ]
    }
}

pub struct Ingester {
    store: Arc<Store>,
    /// `None`: acknowledged rows live only in memory until flushed (`--wal-sync off`).
    wal: Option<Arc<Wal>>,
    rollups: RollupConfig,
    accepting: AtomicBool,
    /// Bytes of converted rows not yet in the store (waiting for the WAL).
    in_flight_bytes: AtomicUsize,
    counters: [SignalCounters; 3],
}

/// Bytes reserved in the buffer budget for one request, released when it is done.
struct Reservation<'a> {
    counter: &'a AtomicUsize,
    bytes: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

fn idx(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

impl Ingester {
    /// `rollups` says how the span rollups written with every spans batch classify requests.
    pub fn new(store: Arc<Store>, wal: Option<Arc<Wal>>, rollups: RollupConfig) -> Self {
        Self {
            store,
            wal,
            rollups,
            accepting: AtomicBool::new(true),
            in_flight_bytes: AtomicUsize::new(0),
            counters: Default::default(),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn wal(&self) -> Option<&Arc<Wal>> {
        self.wal.as_ref()
    }

    /// After this, every request is refused as retryable (used during shutdown).
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    pub fn counters(&self, signal: Signal) -> &SignalCounters {
        &self.counters[idx(signal)]
    }

    pub fn traces(&self, req: &ExportTraceServiceRequest) -> Result<Outcome, IngestError> {
        self.run(Signal::Traces, || convert::traces::convert(req))
    }

    pub fn metrics(&self, req: &ExportMetricsServiceRequest) -> Result<Outcome, IngestError> {
        self.run(Signal::Metrics, || convert::metrics::convert(req))
    }

    pub fn logs(&self, req: &ExportLogsServiceRequest) -> Result<Outcome, IngestError> {
        self.run(Signal::Logs, || convert::logs::convert(req))
    }

    /// Counts a request refused before it reached [`Ingester::traces`] and friends
    /// (undecodable, too large…).
    pub fn count_failure(&self, signal: Signal) {
        let c = &self.counters[idx(signal)];
        c.requests.fetch_add(1, Ordering::Relaxed);
        c.failed_requests.fetch_add(1, Ordering::Relaxed);
    }

    fn run(
        &self,
        signal: Signal,
        convert: impl FnOnce() -> Result<Converted, convert::ConvertError>,
    ) -> Result<Outcome, IngestError> {
        let result = self.admit().and_then(|()| {
            let converted = convert()?;
            let mut batches = Vec::with_capacity(converted.batches.len());
            let mut rollups = Vec::new();
            let mut bytes = 0;
            for (table, batch) in converted.batches {
                if table == SPANS && self.rollups.enabled {
                    // Not logged: they enter the store with their spans' record, and a replay
                    // computes them again from its spans, so both or neither come back.
                    let rolled =
                        SpanRollups::of(&batch, &self.rollups).map_err(StoreError::from)?;
                    bytes += rolled.bytes();
                    rollups.push(rolled);
                }
                let batch = self.store.prepare(table, batch)?;
                bytes += batch.batch().get_array_memory_size();
                batches.push((table, batch));
            }
            let _reserved = self.reserve(bytes)?;
            match &self.wal {
                Some(wal) if !batches.is_empty() => {
                    wal.commit(batches, rollups)?;
                }
                _ => {
                    for (table, batch) in batches {
                        self.store.append_prepared(table, batch, 0)?;
                    }
                    for rolled in &rollups {
                        self.store.add_rollups(rolled, 0, false)?;
                    }
                }
            }
            Ok(Outcome {
                accepted: converted.accepted,
                rejected: converted.rejected,
                message: converted.reject_message,
            })
        });
        let c = &self.counters[idx(signal)];
        c.requests.fetch_add(1, Ordering::Relaxed);
        match &result {
            Ok(o) => {
                c.accepted.fetch_add(o.accepted, Ordering::Relaxed);
                c.rejected.fetch_add(o.rejected, Ordering::Relaxed);
            }
            Err(_) => {
                c.failed_requests.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn admit(&self) -> Result<(), IngestError> {
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(IngestError::ShuttingDown);
        }
        let buffered_bytes =
            self.store.buffered_bytes() + self.in_flight_bytes.load(Ordering::SeqCst);
        if buffered_bytes >= self.store.config().max_buffer_bytes {
            return Err(IngestError::Overloaded { buffered_bytes });
        }
        Ok(())
    }

    /// Counts `bytes` of converted rows against the buffer budget, or refuses them if they do
    /// not fit. A request is never refused into an empty buffer, however large it is.
    fn reserve(&self, bytes: usize) -> Result<Reservation<'_>, IngestError> {
        let before = self.in_flight_bytes.fetch_add(bytes, Ordering::SeqCst);
        let reservation = Reservation {
            counter: &self.in_flight_bytes,
            bytes,
        };
        let buffered_bytes = self.store.buffered_bytes() + before;
        if buffered_bytes > 0 && buffered_bytes + bytes > self.store.config().max_buffer_bytes {
            return Err(IngestError::Overloaded { buffered_bytes });
        }
        Ok(reservation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::grpc;
    use headroom_status::ErrorClass;
    use headroom_storage::store::StoreConfig;

    fn one_span() -> ExportTraceServiceRequest {
        crate::convert::one_span_request(Vec::new())
    }

    #[test]
    fn overload_and_shutdown_are_retryable_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path());
        config.max_buffer_bytes = 1;
        let ingester = Ingester::new(
            Arc::new(Store::open(config).unwrap()),
            None,
            RollupConfig::default(),
        );

        assert_eq!(ingester.traces(&one_span()).unwrap().accepted, 1);
        // The buffer now holds more than its limit: refuse until a flush frees it.
        let e = ingester.traces(&one_span()).unwrap_err();
        assert!(matches!(e, IngestError::Overloaded { .. }), "{e}");
        assert_eq!(e.class(), ErrorClass::Throttled);
        let status = grpc::status(&e);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        // Without RetryInfo, OTLP clients would drop the data instead of retrying.
        use tonic_types::StatusExt;
        let retry = status.get_details_retry_info().expect("RetryInfo");
        assert!(retry.retry_delay.is_some_and(|d| !d.is_zero()));
        ingester.store().flush_all(true).unwrap();
        assert_eq!(ingester.traces(&one_span()).unwrap().accepted, 1);

        ingester.stop_accepting();
        let e = ingester.traces(&one_span()).unwrap_err();
        assert!(matches!(e, IngestError::ShuttingDown), "{e}");
        assert_eq!(grpc::status(&e).code(), tonic::Code::Unavailable);
        assert_eq!(ingester.counters(Signal::Traces).values(), [4, 2, 2, 0]);
        assert_eq!(ingester.store().stats("spans").unwrap().file_rows, 1);
    }
}
