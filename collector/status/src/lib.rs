//! What an error means to whoever sent the request.
//!
//! Every error Headroom raises is classified once, where it is raised, as an [`ErrorClass`]
//! (`IngestError::class`, `QueryError::class`). This crate is the one place that says what each
//! class is on every protocol Headroom speaks: the HTTP status, the gRPC code and the SQLSTATE,
//! each an exhaustive match, so a new class cannot be added without deciding all three
//! (GreptimeDB's `StatusCode` is the model). [`report`] renders an error and its sources for a
//! human, each message once.
//!
//! It sits at the bottom of the crate graph, beside `headroom-sketch`: the OTLP receivers and
//! the SQL surfaces both map through it. It depends only on `http` and `tonic`, for their
//! status types.

use std::error::Error;

use http::StatusCode;
use tonic::Code;

/// What a client should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is wrong (malformed payload, bad SQL, unknown table); retrying it unchanged
    /// will fail again.
    InvalidInput,
    /// The request was too large for the configured limit.
    TooLarge,
    /// The request's content type or encoding is not one we speak.
    UnsupportedMediaType,
    /// The server is busy: try again after a delay (gRPC RESOURCE_EXHAUSTED with RetryInfo,
    /// HTTP 429 with Retry-After).
    Throttled,
    /// Try again later (shutting down, storage unavailable).
    Retryable,
    /// A bug or an I/O failure on our side.
    Internal,
    /// No valid credentials (gRPC UNAUTHENTICATED, HTTP 401).
    Unauthenticated,
    /// Valid credentials that may not do this (gRPC PERMISSION_DENIED, HTTP 403).
    Forbidden,
    /// A statement that would change something: query users are read-only.
    ReadOnly,
    /// A query ran past its deadline.
    Timeout,
    /// A query needed more memory than its budget.
    ResourcesExhausted,
}

impl ErrorClass {
    /// The HTTP status of an answer that failed with this class.
    pub fn http_status(self) -> StatusCode {
        match self {
            // A query's own limits are the query's fault: asking again unchanged fails again.
            ErrorClass::InvalidInput
            | ErrorClass::ReadOnly
            | ErrorClass::Timeout
            | ErrorClass::ResourcesExhausted => StatusCode::BAD_REQUEST,
            ErrorClass::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorClass::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorClass::Throttled => StatusCode::TOO_MANY_REQUESTS,
            ErrorClass::Retryable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorClass::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorClass::Forbidden => StatusCode::FORBIDDEN,
        }
    }

    /// The gRPC code. OTLP clients retry UNAVAILABLE, and RESOURCE_EXHAUSTED only when it
    /// carries RetryInfo (which the receiver adds for [`ErrorClass::Throttled`]): a request over
    /// the size limit must not be retried, an overloaded server wants it again later.
    pub fn grpc_code(self) -> Code {
        match self {
            ErrorClass::InvalidInput | ErrorClass::UnsupportedMediaType => Code::InvalidArgument,
            ErrorClass::TooLarge | ErrorClass::Throttled | ErrorClass::ResourcesExhausted => {
                Code::ResourceExhausted
            }
            ErrorClass::Retryable => Code::Unavailable,
            ErrorClass::Internal => Code::Internal,
            ErrorClass::Unauthenticated => Code::Unauthenticated,
            ErrorClass::Forbidden | ErrorClass::ReadOnly => Code::PermissionDenied,
            ErrorClass::Timeout => Code::DeadlineExceeded,
        }
    }

    /// The SQLSTATE, as PostgreSQL names its error codes.
    pub fn sqlstate(self) -> &'static str {
        match self {
            ErrorClass::InvalidInput => "42000", // syntax_error_or_access_rule_violation
            ErrorClass::TooLarge => "54000",     // program_limit_exceeded
            ErrorClass::UnsupportedMediaType => "0A000", // feature_not_supported
            ErrorClass::Throttled | ErrorClass::ResourcesExhausted => "53000", // insufficient_resources
            ErrorClass::Retryable => "57P03",                                  // cannot_connect_now
            ErrorClass::Internal => "XX000",                                   // internal_error
            ErrorClass::Unauthenticated => "28000", // invalid_authorization_specification
            ErrorClass::Forbidden => "42501",       // insufficient_privilege
            ErrorClass::ReadOnly => "25006",        // read_only_sql_transaction
            ErrorClass::Timeout => "57014",         // query_canceled
        }
    }
}

/// `e` and its sources, joined by ": ", each message once: a source whose text the report
/// already holds (an error that quotes its cause, as many library errors do) adds nothing.
pub fn report(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(source) = next {
        let text = source.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = source.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn Error + 'static))
        }
    }

    fn chain(messages: &[&'static str]) -> Layer {
        messages
            .iter()
            .rev()
            .fold(None, |inner, m| Some(Layer(m, inner.map(Box::new))))
            .unwrap()
    }

    #[test]
    fn a_report_says_each_message_once() {
        let e = chain(&[
            "cannot open data directory",
            "I/O error on /x",
            "Permission denied",
        ]);
        assert_eq!(
            report(&e),
            "cannot open data directory: I/O error on /x: Permission denied"
        );
        // A layer that quotes its cause, and a cause quoted twice.
        let e = chain(&[
            "storage: I/O error on /x: denied",
            "I/O error on /x: denied",
            "denied",
        ]);
        assert_eq!(report(&e), "storage: I/O error on /x: denied");
    }

    #[test]
    fn every_protocol_keeps_what_it_answered_before() {
        use ErrorClass::*;
        let table = [
            (InvalidInput, 400, Code::InvalidArgument, "42000"),
            (TooLarge, 413, Code::ResourceExhausted, "54000"),
            (UnsupportedMediaType, 415, Code::InvalidArgument, "0A000"),
            (Throttled, 429, Code::ResourceExhausted, "53000"),
            (Retryable, 503, Code::Unavailable, "57P03"),
            (Internal, 500, Code::Internal, "XX000"),
            (Unauthenticated, 401, Code::Unauthenticated, "28000"),
            (Forbidden, 403, Code::PermissionDenied, "42501"),
            (ReadOnly, 400, Code::PermissionDenied, "25006"),
            (Timeout, 400, Code::DeadlineExceeded, "57014"),
            (ResourcesExhausted, 400, Code::ResourceExhausted, "53000"),
        ];
        for (class, http, grpc, sqlstate) in table {
            assert_eq!(class.http_status().as_u16(), http, "{class:?}");
            assert_eq!(class.grpc_code(), grpc, "{class:?}");
            assert_eq!(class.sqlstate(), sqlstate, "{class:?}");
        }
    }
}
