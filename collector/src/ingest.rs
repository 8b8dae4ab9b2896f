//! The one ingest function every receiver calls: convert a decoded OTLP request and hand its rows
//! to the store. Protocol details (status codes, encodings) stay in the receivers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};

use crate::Signal;
use crate::convert::{self, Converted};
use crate::error::IngestError;
use crate::store::Store;

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
    accepting: AtomicBool,
    counters: [SignalCounters; 3],
}

fn idx(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

impl Ingester {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            accepting: AtomicBool::new(true),
            counters: Default::default(),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
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
            for (table, batch) in converted.batches {
                self.store.append(table, batch)?;
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
        let buffered_bytes = self.store.buffered_bytes();
        if buffered_bytes >= self.store.config().max_buffer_bytes {
            return Err(IngestError::Overloaded { buffered_bytes });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;
    use crate::receiver::grpc;
    use crate::store::StoreConfig;

    fn one_span() -> ExportTraceServiceRequest {
        crate::convert::one_span_request(Vec::new())
    }

    #[test]
    fn overload_and_shutdown_are_retryable_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path());
        config.max_buffer_bytes = 1;
        let ingester = Ingester::new(Arc::new(Store::open(config).unwrap()));

        assert_eq!(ingester.traces(&one_span()).unwrap().accepted, 1);
        // The buffer now holds more than its limit: refuse until a flush frees it.
        let e = ingester.traces(&one_span()).unwrap_err();
        assert!(matches!(e, IngestError::Overloaded { .. }), "{e}");
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert_eq!(grpc::status(&e).code(), tonic::Code::Unavailable);
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
