//! Command-line configuration. Every flag has a long name, a `HEADROOM_*` environment variable
//! and a default; units are in the names.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::loadgen::LoadgenArgs;

#[derive(Parser, Debug)]
#[command(
    name = "headroom",
    version,
    about = "OpenTelemetry analytics backend: OTLP in, KPIs out"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the OTLP receivers and the query API.
    Serve(ServeConfig),
    /// Run the server with simulated microservice traffic and print live KPIs.
    Demo(crate::demo::DemoArgs),
    /// Run a query over a data directory's Parquet files and print a table.
    Query(QueryArgs),
    /// Send simulated microservice traffic to an OTLP endpoint.
    Loadgen(LoadgenArgs),
    /// Print the storage schema as Markdown.
    Schema,
}

#[derive(Args, Debug, Clone)]
pub struct ServeConfig {
    /// Directory holding the Parquet tables.
    #[arg(long, env = "HEADROOM_DATA_DIR", default_value = "./headroom-data")]
    pub data_dir: PathBuf,
    /// OTLP/gRPC listen address.
    #[arg(
        long,
        env = "HEADROOM_OTLP_GRPC_ADDR",
        default_value = "127.0.0.1:4317"
    )]
    pub otlp_grpc_addr: SocketAddr,
    /// OTLP/HTTP listen address.
    #[arg(
        long,
        env = "HEADROOM_OTLP_HTTP_ADDR",
        default_value = "127.0.0.1:4318"
    )]
    pub otlp_http_addr: SocketAddr,
    /// Query API listen address (SQL, health, metrics).
    #[arg(long, env = "HEADROOM_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// PostgreSQL wire protocol listen address (reserved; the PostgreSQL server is not part of
    /// this release).
    #[arg(long, env = "HEADROOM_PG_ADDR", default_value = "127.0.0.1:5433")]
    pub pg_addr: SocketAddr,
    /// Largest accepted OTLP request, after decompression.
    #[arg(long, env = "HEADROOM_MAX_REQUEST_BYTES", default_value_t = 16 << 20,
          value_parser = clap::value_parser!(u64).range(1024..=1 << 30))]
    pub max_request_bytes: u64,
    /// Flush a table to Parquet once this many rows are buffered.
    #[arg(long, env = "HEADROOM_FLUSH_MAX_ROWS", default_value_t = 500_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub flush_max_rows: u64,
    /// Flush a table to Parquet once its buffered rows take this much memory.
    #[arg(long, env = "HEADROOM_FLUSH_MAX_BYTES", default_value_t = 64 << 20,
          value_parser = clap::value_parser!(u64).range(1 << 16..))]
    pub flush_max_bytes: u64,
    /// Flush a table to Parquet once its oldest buffered row is this old.
    #[arg(long, env = "HEADROOM_FLUSH_MAX_AGE_SECONDS", default_value_t = 60.0)]
    pub flush_max_age_seconds: f64,
    /// When an acknowledged request is durable: `fsync` (the WAL is fsynced before the
    /// acknowledgement; survives power loss), `os` (written to the operating system before the
    /// acknowledgement, fsynced per segment; survives a crash of the process, not of the
    /// machine) or `off` (no WAL: what is not yet in Parquet is lost in a crash).
    #[arg(long, env = "HEADROOM_WAL_SYNC", value_enum, default_value_t = WalSync::Fsync)]
    pub wal_sync: WalSync,
    /// Start a new WAL segment once the current one is this large.
    #[arg(long, env = "HEADROOM_WAL_SEGMENT_BYTES", default_value_t = 64 << 20,
          value_parser = clap::value_parser!(u64).range(1 << 16..))]
    pub wal_segment_bytes: u64,
    /// Refuse new data (retryable: gRPC RESOURCE_EXHAUSTED with RetryInfo, HTTP 429 with
    /// Retry-After) while this much is buffered.
    #[arg(long, env = "HEADROOM_MAX_BUFFER_BYTES", default_value_t = 512 << 20,
          value_parser = clap::value_parser!(u64).range(1 << 20..))]
    pub max_buffer_bytes: u64,
    /// How long shutdown may take to finish in-flight requests and flush.
    #[arg(
        long,
        env = "HEADROOM_SHUTDOWN_TIMEOUT_SECONDS",
        default_value_t = 30.0
    )]
    pub shutdown_timeout_seconds: f64,
}

impl ServeConfig {
    /// Checks what clap's parsers cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.flush_max_age_seconds.is_finite() && self.flush_max_age_seconds > 0.0) {
            return Err(format!(
                "--flush-max-age-seconds must be a positive number, got {}",
                self.flush_max_age_seconds
            ));
        }
        if self.flush_max_bytes >= self.max_buffer_bytes {
            return Err(format!(
                "--flush-max-bytes ({}) must be below --max-buffer-bytes ({}), or ingest stalls before a flush starts",
                self.flush_max_bytes, self.max_buffer_bytes
            ));
        }
        if !(self.shutdown_timeout_seconds.is_finite() && self.shutdown_timeout_seconds > 0.0) {
            return Err(format!(
                "--shutdown-timeout-seconds must be a positive number, got {}",
                self.shutdown_timeout_seconds
            ));
        }
        Ok(())
    }

    /// Defaults with every address on an ephemeral loopback port (tests, demos).
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            data_dir: data_dir.into(),
            otlp_grpc_addr: any,
            otlp_http_addr: any,
            http_addr: any,
            pg_addr: any,
            max_request_bytes: 16 << 20,
            flush_max_rows: 500_000,
            flush_max_bytes: 64 << 20,
            flush_max_age_seconds: 60.0,
            max_buffer_bytes: 512 << 20,
            wal_sync: WalSync::Fsync,
            wal_segment_bytes: 64 << 20,
            shutdown_timeout_seconds: 30.0,
        }
    }
}

/// `--wal-sync`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalSync {
    Fsync,
    Os,
    Off,
}

#[derive(Args, Debug, Clone)]
pub struct QueryArgs {
    /// Directory holding the Parquet tables.
    #[arg(long, env = "HEADROOM_DATA_DIR", default_value = "./headroom-data")]
    pub data_dir: PathBuf,
    /// The SQL statement.
    pub sql: String,
}
