//! Command-line configuration. Every flag has a long name, a `HEADROOM_*` environment variable
//! and a default; units are in the names.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

#[derive(Subcommand, Debug)]
pub enum BallistaCommand {
    /// The scheduler: takes queries from servers and hands their stages to executors.
    Scheduler {
        /// Listen address of the scheduler's gRPC service.
        #[arg(
            long,
            env = "HEADROOM_BALLISTA_SCHEDULER_ADDR",
            default_value = "0.0.0.0:50050"
        )]
        addr: SocketAddr,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// An executor: runs stages, reading the servers' object store.
    Executor(ExecutorArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ExecutorArgs {
    /// The scheduler, `host:port`.
    #[arg(
        long,
        env = "HEADROOM_BALLISTA_SCHEDULER",
        default_value = "127.0.0.1:50050"
    )]
    pub scheduler: String,
    /// Address the executor binds.
    #[arg(long, env = "HEADROOM_BALLISTA_BIND_HOST", default_value = "0.0.0.0")]
    pub bind_host: String,
    /// Host name or address the scheduler and the other executors reach this one at.
    #[arg(
        long,
        env = "HEADROOM_BALLISTA_EXTERNAL_HOST",
        default_value = "127.0.0.1"
    )]
    pub external_host: String,
    /// Arrow Flight port: shuffle reads and results.
    #[arg(long, env = "HEADROOM_BALLISTA_FLIGHT_PORT", default_value_t = 50051)]
    pub flight_port: u16,
    /// The executor's gRPC port.
    #[arg(long, env = "HEADROOM_BALLISTA_GRPC_PORT", default_value_t = 50052)]
    pub grpc_port: u16,
    /// Tasks run at once (0: one per core).
    #[arg(long, env = "HEADROOM_BALLISTA_TASK_SLOTS", default_value_t = 0)]
    pub task_slots: usize,
    /// Memory all running tasks together may use.
    #[arg(
        long,
        env = "HEADROOM_BALLISTA_MEMORY_LIMIT_BYTES",
        default_value_t = 2 << 30
    )]
    pub memory_limit_bytes: u64,
    /// Where shuffle files are written.
    #[arg(
        long,
        env = "HEADROOM_BALLISTA_WORK_DIR",
        default_value = "./headroom-ballista"
    )]
    pub work_dir: PathBuf,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// The object store a cluster node reads: the servers' `--storage`.
#[derive(Args, Debug, Clone)]
pub struct StorageArgs {
    /// The servers' `--storage`, which the plans read.
    #[arg(long, env = "HEADROOM_STORAGE")]
    pub storage: String,
    /// As `headroom serve --storage-option`.
    #[arg(
        long = "storage-option",
        env = "HEADROOM_STORAGE_OPTIONS",
        value_delimiter = ',',
        value_parser = parse_storage_option,
        hide_env_values = true
    )]
    pub storage_options: Vec<(String, String)>,
}

/// Where queries run.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryEngineKind {
    /// In this process.
    Local,
    /// On an Apache Ballista cluster (`--ballista-scheduler`), over `--storage`.
    Ballista,
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
    /// PostgreSQL wire protocol listen address (Grafana, psql, JDBC…).
    #[arg(long, env = "HEADROOM_PG_ADDR", default_value = "127.0.0.1:5433")]
    pub pg_addr: SocketAddr,
    /// The user PostgreSQL clients log in as when `--pg-password` is set.
    #[arg(long, env = "HEADROOM_PG_USER", default_value = "headroom")]
    pub pg_user: String,
    /// Password of `--pg-user` (SCRAM-SHA-256). Empty: PostgreSQL clients log in without one,
    /// as any user.
    #[arg(
        long,
        env = "HEADROOM_PG_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub pg_password: String,
    /// PEM certificate chain for TLS on every listener: OTLP/gRPC, OTLP/HTTP, the HTTP API,
    /// the KEDA scaler and PostgreSQL (unless `--pg-tls-cert-path` is given). With
    /// `--tls-key-path`.
    #[arg(long, env = "HEADROOM_TLS_CERT_PATH")]
    pub tls_cert_path: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `--tls-cert-path`.
    #[arg(long, env = "HEADROOM_TLS_KEY_PATH")]
    pub tls_key_path: Option<PathBuf>,
    /// Bearer tokens, one `<token> <tenant>` per line: with it, every OTLP and query request
    /// needs `Authorization: Bearer <token>` and reaches only that token's tenant (PostgreSQL
    /// clients give the token as their password). Without it, `X-Scope-OrgID` names the tenant
    /// and requests without one go to `default`.
    #[arg(long, env = "HEADROOM_AUTH_TOKENS_PATH")]
    pub auth_tokens_path: Option<PathBuf>,
    /// Tenants served at most, the default one included; a request for one more is refused.
    #[arg(long, env = "HEADROOM_MAX_TENANTS", default_value_t = 100)]
    pub max_tenants: usize,
    /// Where Parquet files are published for every server to read: an object store
    /// (`s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`) or a directory
    /// all servers mount (`file:///mnt/headroom` or an absolute path). Several servers may
    /// write to one. The WAL and a copy of this server's own files stay in `--data-dir`.
    /// Credentials and endpoints come from the cloud SDKs' variables (`AWS_ACCESS_KEY_ID`,
    /// `AWS_ENDPOINT`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`…) and
    /// `--storage-option`. Empty: files stay in the data directory only.
    #[arg(long, env = "HEADROOM_STORAGE", default_value = "")]
    pub storage: String,
    /// An object store setting `KEY=VALUE`, in object_store's keys (`aws_endpoint`,
    /// `aws_allow_http`, `aws_region`…); repeat the flag, or separate them with commas.
    #[arg(
        long = "storage-option",
        env = "HEADROOM_STORAGE_OPTIONS",
        value_delimiter = ',',
        value_parser = parse_storage_option,
        hide_env_values = true
    )]
    pub storage_options: Vec<(String, String)>,
    /// This server's name among the writers of `--storage`: unique per server, kept with the
    /// data directory. Empty: one is chosen at the first start and kept in the data directory.
    #[arg(long, env = "HEADROOM_WRITER_ID", default_value = "")]
    pub writer_id: String,
    /// How often the other writers' lists of files are read from `--storage`: how long their
    /// flushed rows take to show here, at most.
    #[arg(long, env = "HEADROOM_STORAGE_REFRESH_SECONDS", default_value_t = 10.0)]
    pub storage_refresh_seconds: f64,
    /// Where queries run: here, or on a Ballista cluster over what every writer published to
    /// `--storage`.
    #[arg(long, env = "HEADROOM_QUERY_ENGINE", value_enum, default_value_t = QueryEngineKind::Local)]
    pub query_engine: QueryEngineKind,
    /// The Ballista scheduler, `df://host:port`, with `--query-engine ballista`.
    #[arg(long, env = "HEADROOM_BALLISTA_SCHEDULER", default_value = "")]
    pub ballista_scheduler: String,
    /// PEM certificate chain for TLS on the PostgreSQL port only (with `--pg-tls-key-path`);
    /// it takes precedence over `--tls-cert-path` there.
    #[arg(long, env = "HEADROOM_PG_TLS_CERT_PATH")]
    pub pg_tls_cert_path: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for TLS on the PostgreSQL port.
    #[arg(long, env = "HEADROOM_PG_TLS_KEY_PATH")]
    pub pg_tls_key_path: Option<PathBuf>,
    /// Write the span rollups (`span_rollup_*`, `service_rollup_*`) as spans arrive, and the
    /// service graph's (`edge_rollup_1m`) once an hour has settled. The KPI, SLO and graph
    /// views read them: turn them off only to measure what they cost.
    #[arg(
        long,
        env = "HEADROOM_ROLLUPS",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub rollups: bool,
    /// Routes (or URL paths, for spans without a route) of health checks: not requests in the
    /// KPIs (comma-separated).
    #[arg(
        long,
        env = "HEADROOM_KPI_HEALTH_CHECK_ROUTES",
        value_delimiter = ',',
        default_value = "/healthz,/readyz,/livez,/health,/ready,/live"
    )]
    pub kpi_health_check_routes: Vec<String>,
    /// Count HTTP 429 and gRPC RESOURCE_EXHAUSTED as bad requests of the server.
    #[arg(long, env = "HEADROOM_KPI_THROTTLED_IS_BAD", default_value_t = false)]
    pub kpi_throttled_is_bad: bool,
    /// `error.type` values that mean a timeout, besides gRPC DEADLINE_EXCEEDED and HTTP 408/504
    /// (comma-separated).
    #[arg(
        long,
        env = "HEADROOM_KPI_TIMEOUT_ERROR_TYPES",
        value_delimiter = ',',
        default_value = "timeout,TimeoutError,java.net.SocketTimeoutException,System.TimeoutException,context.deadlineExceededError,DEADLINE_EXCEEDED,57014"
    )]
    pub kpi_timeout_error_types: Vec<String>,
    /// Apdex threshold T: requests up to T are satisfied, up to 4T tolerating.
    #[arg(long, env = "HEADROOM_KPI_APDEX_THRESHOLD_MS", default_value_t = 500.0)]
    pub kpi_apdex_threshold_ms: f64,
    /// Apdex threshold of one service, `SERVICE=MS` (repeat the flag, or separate with commas
    /// in the environment variable).
    #[arg(long, env = "HEADROOM_KPI_SERVICE_APDEX_THRESHOLD_MS", value_delimiter = ',',
          value_parser = parse_service_threshold)]
    pub kpi_service_apdex_threshold_ms: Vec<(String, f64)>,
    /// SLO file (TOML; see the README). Without one, every service gets a 99.9 % availability
    /// SLO over 28 days.
    #[arg(long, env = "HEADROOM_SLO_CONFIG_PATH")]
    pub slo_config_path: Option<PathBuf>,
    /// Memory one query may reserve; sorts and aggregations spill to disk beyond it, other
    /// operators cancel the query.
    #[arg(long, env = "HEADROOM_QUERY_MEMORY_LIMIT_BYTES", default_value_t = 512 << 20,
          value_parser = clap::value_parser!(u64).range(1 << 20..))]
    pub query_memory_limit_bytes: u64,
    /// How long one query may run before it is cancelled.
    #[arg(long, env = "HEADROOM_QUERY_TIMEOUT_SECONDS", default_value_t = 60.0)]
    pub query_timeout_seconds: f64,
    /// Memory for rollup files kept decoded, shared by every query: dashboards that refresh
    /// read their rollups from memory instead of decoding Parquet again. 0 turns it off.
    #[arg(long, env = "HEADROOM_FILE_CACHE_BYTES", default_value_t = 256 << 20)]
    pub file_cache_bytes: u64,
    /// How often every service's load forecast is refreshed (the `forecasts` table); 0 turns
    /// the refresh off.
    #[arg(
        long,
        env = "HEADROOM_FORECAST_INTERVAL_SECONDS",
        default_value_t = 300
    )]
    pub forecast_interval_seconds: u64,
    /// Step of the published forecasts.
    #[arg(long, env = "HEADROOM_FORECAST_STEP_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub forecast_step_seconds: u64,
    /// How far ahead the published forecasts reach.
    #[arg(long, env = "HEADROOM_FORECAST_HORIZON_SECONDS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..=30 * 86_400))]
    pub forecast_horizon_seconds: u64,
    /// How much history the forecasts learn from.
    #[arg(long, env = "HEADROOM_FORECAST_HISTORY_DAYS", default_value_t = 28,
          value_parser = clap::value_parser!(u64).range(1..=366))]
    pub forecast_history_days: u64,
    /// How often every service's replica recommendation is refreshed (the `recommendations`
    /// table, the API and the KEDA scaler); 0 turns recommendations off.
    #[arg(long, env = "HEADROOM_SCALING_INTERVAL_SECONDS", default_value_t = 60)]
    pub scaling_interval_seconds: u64,
    /// How often the anomaly detectors look for newly complete minutes of every service's KPI
    /// series (the `anomalies` and `anomaly_scores` tables, `GET /api/v1/anomalies`); a look
    /// with nothing new costs nothing. 0 turns anomaly detection off.
    #[arg(long, env = "HEADROOM_ANOMALY_INTERVAL_SECONDS", default_value_t = 15)]
    pub anomaly_interval_seconds: u64,
    /// History the anomaly detectors learn from when the server starts (a week lets them
    /// learn weekly patterns).
    #[arg(long, env = "HEADROOM_ANOMALY_HISTORY_HOURS", default_value_t = 168,
          value_parser = clap::value_parser!(u64).range(1..=24 * 90))]
    pub anomaly_history_hours: u64,
    /// How often the capacity per replica is learned again from the last 7 days of requests
    /// and CPU (also whenever a new service shows up).
    #[arg(long, env = "HEADROOM_SCALING_LEARN_INTERVAL_SECONDS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub scaling_learn_interval_seconds: u64,
    /// Scaling settings per service (TOML; see the README). Without one, every service gets
    /// the defaults and a capacity learned from its data.
    #[arg(long, env = "HEADROOM_SCALING_CONFIG_PATH")]
    pub scaling_config_path: Option<PathBuf>,
    /// KEDA external scaler (gRPC `externalscaler.ExternalScaler`) listen address.
    #[arg(
        long,
        env = "HEADROOM_KEDA_GRPC_ADDR",
        default_value = "127.0.0.1:6000"
    )]
    pub keda_grpc_addr: SocketAddr,
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
    /// Merge an hour partition's Parquet files smaller than half of this into files of about
    /// this size.
    #[arg(long, env = "HEADROOM_COMPACTION_TARGET_BYTES", default_value_t = 128 << 20,
          value_parser = clap::value_parser!(u64).range(1 << 16..))]
    pub compaction_target_bytes: u64,
    /// How often compaction, retention and the deletion of replaced files run.
    #[arg(
        long,
        env = "HEADROOM_MAINTENANCE_INTERVAL_SECONDS",
        default_value_t = 30.0
    )]
    pub maintenance_interval_seconds: f64,
    /// How long a file replaced by compaction or dropped by retention stays on disk, so that
    /// queries already reading it can finish.
    #[arg(
        long,
        env = "HEADROOM_DELETED_FILE_GRACE_SECONDS",
        default_value_t = 300.0
    )]
    pub deleted_file_grace_seconds: f64,
    /// How long data is kept, for every table: `30d`, `12h`, `90m`; `0` keeps it forever.
    /// Whole hour partitions are dropped once they are entirely older than this.
    #[arg(long, env = "HEADROOM_RETENTION", default_value = "0", value_parser = parse_retention)]
    pub retention: Retention,
    /// Retention of one table, overriding `--retention`: `TABLE=DURATION`, e.g. `logs=7d`
    /// (repeat the flag, or separate with commas in the environment variable).
    #[arg(long, env = "HEADROOM_TABLE_RETENTION", value_delimiter = ',', value_parser = parse_table_retention)]
    pub table_retention: Vec<(String, Retention)>,
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
    /// How long rows of `table` are kept (`None`: forever).
    pub fn retention_of(&self, table: &str) -> Option<Duration> {
        self.table_retention
            .iter()
            .rev()
            .find(|(t, _)| t == table)
            .map_or(self.retention, |(_, d)| *d)
            .0
    }

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
        for (name, value) in [
            (
                "--maintenance-interval-seconds",
                self.maintenance_interval_seconds,
            ),
            (
                "--deleted-file-grace-seconds",
                self.deleted_file_grace_seconds,
            ),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("{name} must be a number ≥ 0, got {value}"));
            }
        }
        if !self.storage.is_empty() {
            if !(self.storage_refresh_seconds.is_finite() && self.storage_refresh_seconds > 0.0) {
                return Err(format!(
                    "--storage-refresh-seconds must be a positive number, got {}",
                    self.storage_refresh_seconds
                ));
            }
            // Another server may plan a query on a file until it reads the manifest that
            // dropped it.
            if self.deleted_file_grace_seconds < 2.0 * self.storage_refresh_seconds {
                return Err(format!(
                    "--deleted-file-grace-seconds ({}) must be at least twice --storage-refresh-seconds ({}) with --storage: other servers read a file until they see it is gone",
                    self.deleted_file_grace_seconds, self.storage_refresh_seconds
                ));
            }
        } else if !self.storage_options.is_empty() {
            return Err("--storage-option needs --storage".into());
        }
        if self.query_engine == QueryEngineKind::Ballista {
            if self.storage.is_empty() {
                return Err(
                    "--query-engine ballista reads what is published to --storage: set it".into(),
                );
            }
            headroom_analytics::cluster::Cluster::new(&self.ballista_scheduler)
                .map_err(|e| e.to_string())?;
        }
        if !self.writer_id.is_empty()
            && !headroom_storage::remote::is_valid_writer_id(&self.writer_id)
        {
            return Err(format!(
                "--writer-id {:?}: use 1 to 64 letters, digits, '-', '_' or '.'",
                self.writer_id
            ));
        }
        if self.max_tenants == 0 {
            return Err("--max-tenants must be at least 1 (the default tenant)".into());
        }
        for (cert, key, pair) in [
            (
                &self.tls_cert_path,
                &self.tls_key_path,
                "--tls-cert-path and --tls-key-path",
            ),
            (
                &self.pg_tls_cert_path,
                &self.pg_tls_key_path,
                "--pg-tls-cert-path and --pg-tls-key-path",
            ),
        ] {
            if cert.is_some() != key.is_some() {
                return Err(format!("{pair} go together: give both or neither"));
            }
        }
        for (name, ms) in std::iter::once(("--kpi-apdex-threshold-ms", self.kpi_apdex_threshold_ms))
            .chain(
                self.kpi_service_apdex_threshold_ms
                    .iter()
                    .map(|(_, ms)| ("--kpi-service-apdex-threshold-ms", *ms)),
            )
        {
            if !(ms.is_finite() && ms > 0.0) {
                return Err(format!(
                    "{name} must be a positive number of milliseconds, got {ms}"
                ));
            }
        }
        let mut services: Vec<&str> = self
            .kpi_service_apdex_threshold_ms
            .iter()
            .map(|(s, _)| s.as_str())
            .collect();
        services.sort_unstable();
        if let Some(w) = services.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!(
                "--kpi-service-apdex-threshold-ms names service {:?} twice",
                w[0]
            ));
        }
        if !(self.query_timeout_seconds.is_finite() && self.query_timeout_seconds > 0.0) {
            return Err(format!(
                "--query-timeout-seconds must be a positive number, got {}",
                self.query_timeout_seconds
            ));
        }
        if self.maintenance_interval_seconds == 0.0 {
            return Err("--maintenance-interval-seconds must be above 0".into());
        }
        if !(self.shutdown_timeout_seconds.is_finite() && self.shutdown_timeout_seconds > 0.0) {
            return Err(format!(
                "--shutdown-timeout-seconds must be a positive number, got {}",
                self.shutdown_timeout_seconds
            ));
        }
        Ok(())
    }

    /// The operator's choices in the KPI definitions; reads the SLO file.
    pub fn kpi_settings(&self) -> Result<headroom_analytics::KpiSettings, String> {
        let slos = match &self.slo_config_path {
            Some(path) => headroom_analytics::slo::SloConfig::load(path)?,
            None => headroom_analytics::slo::SloConfig::default(),
        };
        Ok(headroom_analytics::KpiSettings {
            health_check_routes: self.kpi_health_check_routes.clone(),
            throttled_is_bad: self.kpi_throttled_is_bad,
            timeout_error_types: self.kpi_timeout_error_types.clone(),
            apdex_threshold_ms: self.kpi_apdex_threshold_ms,
            service_apdex_threshold_ms: self.kpi_service_apdex_threshold_ms.clone(),
            slos,
        })
    }

    /// The scaling settings; reads the scaling file.
    pub fn scaling_config(
        &self,
    ) -> Result<headroom_analytics::scaling::config::ScalingConfig, String> {
        match &self.scaling_config_path {
            Some(path) => headroom_analytics::scaling::config::ScalingConfig::load(path),
            None => Ok(Default::default()),
        }
    }

    /// How old a recommendation may be and still be served to autoscalers: five refreshes,
    /// at least five minutes.
    pub fn recommendation_max_age_ns(&self) -> i64 {
        let seconds = (self.scaling_interval_seconds.saturating_mul(5)).max(300);
        i64::try_from(seconds.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX)
    }

    /// The grid of the published forecasts.
    pub fn forecast_span(&self) -> headroom_analytics::forecast::live::Span {
        let step = self.forecast_step_seconds;
        headroom_analytics::forecast::live::Span {
            step_ns: step as i64 * 1_000_000_000,
            horizon_steps: self.forecast_horizon_seconds.div_ceil(step) as usize,
            history_steps: (self.forecast_history_days * 86_400 / step) as usize,
        }
    }

    /// What one query may use.
    pub fn query_limits(&self) -> headroom_analytics::QueryLimits {
        headroom_analytics::QueryLimits {
            memory_bytes: usize::try_from(self.query_memory_limit_bytes).unwrap_or(usize::MAX),
            timeout: Duration::from_secs_f64(self.query_timeout_seconds),
        }
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
            pg_user: "headroom".into(),
            pg_password: String::new(),
            auth_tokens_path: None,
            max_tenants: 100,
            storage: String::new(),
            storage_options: Vec::new(),
            writer_id: String::new(),
            storage_refresh_seconds: 10.0,
            query_engine: QueryEngineKind::Local,
            ballista_scheduler: String::new(),
            tls_cert_path: None,
            tls_key_path: None,
            pg_tls_cert_path: None,
            pg_tls_key_path: None,
            rollups: true,
            kpi_health_check_routes: headroom_analytics::KpiSettings::default().health_check_routes,
            kpi_throttled_is_bad: false,
            kpi_timeout_error_types: headroom_analytics::KpiSettings::default().timeout_error_types,
            kpi_apdex_threshold_ms: 500.0,
            kpi_service_apdex_threshold_ms: Vec::new(),
            slo_config_path: None,
            query_memory_limit_bytes: 512 << 20,
            query_timeout_seconds: 60.0,
            file_cache_bytes: 256 << 20,
            forecast_interval_seconds: 300,
            scaling_interval_seconds: 60,
            anomaly_interval_seconds: 15,
            anomaly_history_hours: 168,
            scaling_learn_interval_seconds: 900,
            scaling_config_path: None,
            keda_grpc_addr: any,
            forecast_step_seconds: 300,
            forecast_horizon_seconds: 86_400,
            forecast_history_days: 28,
            max_request_bytes: 16 << 20,
            flush_max_rows: 500_000,
            flush_max_bytes: 64 << 20,
            flush_max_age_seconds: 60.0,
            max_buffer_bytes: 512 << 20,
            wal_sync: WalSync::Fsync,
            wal_segment_bytes: 64 << 20,
            compaction_target_bytes: 128 << 20,
            maintenance_interval_seconds: 30.0,
            deleted_file_grace_seconds: 300.0,
            retention: Retention(None),
            table_retention: Vec::new(),
            shutdown_timeout_seconds: 30.0,
        }
    }
}

/// `--storage-option`: `KEY=VALUE`.
fn parse_storage_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// `--kpi-service-apdex-threshold-ms`: `SERVICE=MS`.
fn parse_service_threshold(text: &str) -> Result<(String, f64), String> {
    let (service, ms) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("{text:?} is not SERVICE=MILLISECONDS"))?;
    let ms: f64 = ms
        .trim()
        .parse()
        .map_err(|_| format!("{ms:?} in {text:?} is not a number of milliseconds"))?;
    if service.trim().is_empty() {
        return Err(format!("{text:?} names no service"));
    }
    Ok((service.trim().to_owned(), ms))
}

/// How long data is kept; `None`: forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

/// `--retention`: a number and a unit (`d`, `h`, `m`, `s`); `0` means keep forever.
pub fn parse_retention(text: &str) -> Result<Retention, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Retention(None));
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit; write e.g. 30d, 12h, 90m or 0"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let seconds = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}; use d, h, m or s"
            ));
        }
    };
    Ok(Retention(
        (n > 0).then(|| Duration::from_secs(n.saturating_mul(seconds))),
    ))
}

/// `--table-retention TABLE=DURATION`.
fn parse_table_retention(text: &str) -> Result<(String, Retention), String> {
    let (table, duration) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not TABLE=DURATION"))?;
    let table = table.trim();
    if !headroom_storage::schema::tables()
        .iter()
        .any(|t| t.name == table)
    {
        let names: Vec<_> = headroom_storage::schema::tables()
            .iter()
            .map(|t| t.name)
            .collect();
        return Err(format!(
            "unknown table {table:?}; tables are {}",
            names.join(", ")
        ));
    }
    Ok((table.to_owned(), parse_retention(duration)?))
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn serve(args: &[&str]) -> Result<ServeConfig, String> {
        let cli = Cli::try_parse_from(["headroom", "serve"].iter().chain(args))
            .map_err(|e| e.to_string())?;
        match cli.command {
            Command::Serve(c) => Ok(c),
            _ => unreachable!(),
        }
    }

    #[test]
    fn kpi_flag_defaults_are_the_kpi_defaults() {
        let settings = serve(&[]).unwrap().kpi_settings().unwrap();
        assert_eq!(settings, headroom_analytics::KpiSettings::default());
    }

    #[test]
    fn retention_per_table_overrides_the_default() {
        let c = serve(&["--retention", "30d", "--table-retention", "logs=12h"]).unwrap();
        let day = Duration::from_secs(86_400);
        assert_eq!(c.retention_of("spans"), Some(30 * day));
        assert_eq!(c.retention_of("logs"), Some(Duration::from_secs(12 * 3600)));
        let c = serve(&["--table-retention", "spans=90m,logs=0"]).unwrap();
        assert_eq!(c.retention_of("spans"), Some(Duration::from_secs(5400)));
        assert_eq!(c.retention_of("logs"), None, "0 keeps forever");
        assert_eq!(c.retention_of("metric_points"), None, "forever by default");
    }

    #[test]
    fn bad_retention_is_refused_with_a_reason() {
        let e = serve(&["--retention", "30x"]).unwrap_err();
        assert!(e.contains("unknown unit"), "{e}");
        let e = serve(&["--retention", "30"]).unwrap_err();
        assert!(e.contains("no unit"), "{e}");
        let e = serve(&["--table-retention", "traces=1d"]).unwrap_err();
        assert!(e.contains("unknown table \"traces\""), "{e}");
        assert!(e.contains("spans"), "{e}");
    }
}
