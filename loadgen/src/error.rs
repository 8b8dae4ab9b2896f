//! Why the load generator could not run, or stopped.

/// Load generator failures.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("invalid loadgen arguments: {0}")]
    InvalidArgs(String),
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("could not build the HTTP client: {0}")]
    HttpClient(String),
    #[error("could not pre-encode the request pool: {0}")]
    Encode(String),
    #[error("every request to {endpoint} failed ({errors} errors); last error: {last_error}")]
    AllFailed {
        endpoint: String,
        errors: u64,
        last_error: String,
    },
    #[error("a load generator task failed: {0}")]
    Task(String),
}
