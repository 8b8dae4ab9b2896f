//! The PostgreSQL wire protocol on `--pg-addr`, so Grafana's built-in PostgreSQL data source,
//! psql, psycopg, pgx and JDBC query Headroom unchanged.
//!
//! `datafusion-postgres` provides the protocol handling (simple and extended query, text and
//! binary results, `SET`/`SHOW`, transactions, cursors) over the one query session. Its
//! `serve` binds its own port, cannot be stopped and falls back to plain text when TLS cannot
//! be set up, so the accept loop here is our own. Every statement passes [`ReadOnlyHook`]
//! first: queries are planned by the engine (read-only check, binary and nested columns as
//! text); cursors may only be declared over a query; `SET` reaches the hooks only for the
//! settings they keep per connection, engine settings are refused and the rest is answered
//! and ignored; every other statement is refused.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::DFSchema;
use datafusion::common::ParamValues;
use datafusion::logical_expr::EmptyRelation;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::METADATA_USER;
use datafusion_postgres::pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::cancel::DefaultCancelHandler;
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::{Response, Tag};
use datafusion_postgres::pgwire::api::{ClientInfo, ConnectionManager, PgWireServerHandlers};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::startup::PasswordMessageFamily;
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::pgwire::types::format::FormatOptions;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::Sink;
use headroom_analytics::{QueryEngine, QueryError};
use headroom_ingest::auth::{Access, DEFAULT_TENANT};
use headroom_status::ErrorClass;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::tenants::Registry;

/// How PostgreSQL clients connect.
#[derive(Clone, Default)]
pub struct PgSecurity {
    /// The one user and password accepted (SCRAM-SHA-256); `None`: no password asked.
    pub login: Option<(String, String)>,
    pub tls: Option<TlsAcceptor>,
}

/// The handlers of every connection.
pub struct PgHandlers {
    service: Arc<DfSessionService>,
    connections: Arc<ConnectionManager>,
    cancel: Arc<DefaultCancelHandler>,
    login: Login,
}

/// How PostgreSQL clients log in.
enum Login {
    /// Anyone, to the default tenant.
    Open,
    /// The one configured user and password (SCRAM-SHA-256), to the default tenant.
    Password(Arc<Passwords>),
    /// The tenant's id as the user and one of its bearer tokens as the password; the
    /// connection then reaches that tenant's tables only.
    Tokens(Access),
}

/// The client metadata entry naming the tenant a token authenticated. Set after the token is
/// checked, over anything the client sent under that name at startup.
const TENANT_KEY: &str = "headroom.tenant";

impl PgHandlers {
    pub fn new(tenants: Arc<Registry>, login: Option<(String, String)>) -> Self {
        let session = Arc::new(tenants.default_tenant().engine.session().clone());
        let login = if tenants.access().requires_token() {
            Login::Tokens(tenants.access().clone())
        } else {
            match login {
                None => Login::Open,
                Some((user, password)) => {
                    Login::Password(Arc::new(Passwords::new(user, &password)))
                }
            }
        };
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(ReadOnlyHook { tenants }),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let connections = Arc::new(ConnectionManager::new());
        Self {
            service: Arc::new(DfSessionService::new_with_hooks(session, hooks)),
            cancel: Arc::new(DefaultCancelHandler::new(connections.clone())),
            connections,
            login,
        }
    }
}

impl PgWireServerHandlers for PgHandlers {
    fn simple_query_handler(
        &self,
    ) -> Arc<impl datafusion_postgres::pgwire::api::query::SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(
        &self,
    ) -> Arc<impl datafusion_postgres::pgwire::api::query::ExtendedQueryHandler> {
        self.service.clone()
    }

    /// Called once per connection: SCRAM keeps per-connection state in its handler.
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(match &self.login {
            Login::Open => Startup::Open(OpenStartup {
                connections: self.connections.clone(),
            }),
            Login::Tokens(access) => {
                let verified = Arc::new(std::sync::Mutex::new(None));
                Startup::Token(TokenStartup {
                    access: access.clone(),
                    verified: verified.clone(),
                    inner: CleartextPasswordAuthStartupHandler::new(
                        VerifiedToken(verified),
                        DefaultServerParameterProvider::default(),
                    )
                    .with_connection_manager(self.connections.clone()),
                })
            }
            Login::Password(passwords) => {
                let mut scram = ScramAuth::new(passwords.clone());
                scram.set_iterations(SCRAM_ITERATIONS);
                Startup::Scram(
                    SASLAuthStartupHandler::new(
                        Arc::new(DefaultServerParameterProvider::default()),
                    )
                    .with_scram(scram)
                    .with_connection_manager(self.connections.clone()),
                )
            }
        })
    }

    fn cancel_handler(&self) -> Arc<impl datafusion_postgres::pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// Connection start-up: open, SCRAM-SHA-256 with the configured password, or a tenant's token.
enum Startup {
    Open(OpenStartup),
    Scram(SASLAuthStartupHandler<DefaultServerParameterProvider>),
    Token(TokenStartup),
}

/// Asks for the password in clear text (a bearer token, like the OTLP and HTTP clients send;
/// use TLS), checks that it is a token of the tenant named as the user, notes the tenant in the
/// connection's metadata, and lets pgwire's clear-text handler finish the login.
struct TokenStartup {
    access: Access,
    /// The token this connection presented, once checked: what [`VerifiedToken`] expects.
    verified: Arc<std::sync::Mutex<Option<String>>>,
    inner: CleartextPasswordAuthStartupHandler<VerifiedToken, DefaultServerParameterProvider>,
}

impl TokenStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let PgWireFrontendMessage::PasswordMessageFamily(password) = message else {
            return self.inner.on_startup(client, message).await;
        };
        let password = password.into_password()?;
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        match self.access.tenant_of_token(&password.password) {
            Some(tenant) if tenant == user => {
                client
                    .metadata_mut()
                    .insert(TENANT_KEY.to_owned(), tenant.to_owned());
                *self.verified.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(password.password.clone());
            }
            _ => return Err(PgWireError::InvalidPassword(user)),
        }
        let message =
            PgWireFrontendMessage::PasswordMessageFamily(PasswordMessageFamily::Password(password));
        self.inner.on_startup(client, message).await
    }
}

/// The password pgwire's clear-text handler compares with: the token already checked.
struct VerifiedToken(Arc<std::sync::Mutex<Option<String>>>);

/// Never prints the token.
impl std::fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifiedToken(..)")
    }
}

#[async_trait]
impl AuthSource for VerifiedToken {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        match self.0.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            Some(token) => Ok(Password::new(None, token.into_bytes())),
            None => Err(PgWireError::InvalidPassword(
                login.user().unwrap_or_default().to_owned(),
            )),
        }
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Startup::Open(h) => h.on_startup(client, message).await,
            Startup::Scram(h) => h.on_startup(client, message).await,
            Startup::Token(h) => h.on_startup(client, message).await,
        }
    }
}

struct OpenStartup {
    connections: Arc<ConnectionManager>,
}

impl NoopStartupHandler for OpenStartup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.connections.clone())
    }
}

const SCRAM_ITERATIONS: usize = 4096;

/// The salted password of the one configured user; the plain password is not kept.
#[derive(Debug)]
struct Passwords {
    user: String,
    salt: Vec<u8>,
    salted: Vec<u8>,
}

impl Passwords {
    fn new(user: String, password: &str) -> Self {
        let salt: [u8; 16] = rand::random();
        Self {
            salted: gen_salted_password(password, &salt, SCRAM_ITERATIONS),
            salt: salt.to_vec(),
            user,
        }
    }
}

#[async_trait]
impl AuthSource for Passwords {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        if login.user() != Some(self.user.as_str()) {
            return Err(PgWireError::InvalidPassword(
                login.user().unwrap_or_default().to_owned(),
            ));
        }
        Ok(Password::new(Some(self.salt.clone()), self.salted.clone()))
    }
}

/// Accepts connections until `stop`, then closes the open ones.
pub async fn serve(
    listener: TcpListener,
    handlers: Arc<PgHandlers>,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) -> Result<(), String> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let handlers = handlers.clone();
                    let tls = tls.clone();
                    connections.spawn(async move {
                        if tls.is_some() && !asks_for_tls(&socket).await {
                            refuse_plain_text(socket).await;
                            return;
                        }
                        if let Err(e) = datafusion_postgres::pgwire::tokio::process_socket(socket, tls, handlers).await {
                            tracing::debug!(%peer, error = %e, "PostgreSQL connection ended with an error");
                        }
                    });
                }
                // Out of file descriptors and the like: keep serving the open connections.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a PostgreSQL connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
    Ok(())
}

/// The codes of the 8-byte requests a client sends before its startup message to ask for
/// TLS (`SSLRequest`) or GSS encryption; PostgreSQL 17 clients may also start the TLS
/// handshake directly (a record starting with 0x16).
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Whether the connection starts by asking for encryption. A server with TLS configured
/// serves nobody in plain text, which pgwire would otherwise allow. Peeks only: the bytes stay
/// for the protocol handler.
async fn asks_for_tls(socket: &tokio::net::TcpStream) -> bool {
    let mut head = [0u8; 8];
    let peeked = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match socket.peek(&mut head).await {
                Ok(n) if n >= 8 || (n >= 1 && head[0] == TLS_HANDSHAKE_RECORD) => return true,
                Ok(0) | Err(_) => return false,
                // A partial request: wait for the rest rather than spin.
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
    })
    .await
    .unwrap_or(false);
    if !peeked {
        return false;
    }
    if head[0] == TLS_HANDSHAKE_RECORD {
        return true;
    }
    let code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    u32::from_be_bytes([head[0], head[1], head[2], head[3]]) == 8
        && (code == SSL_REQUEST || code == GSSENC_REQUEST)
}

/// Answers a plain-text startup with a FATAL `ErrorResponse` (SQLSTATE 28000) and closes.
/// Written by hand: pgwire offers no way to answer before its own handshake.
async fn refuse_plain_text(mut socket: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let mut fields = Vec::new();
    for (code, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "28000"),
        (
            b'M',
            "this server requires TLS: connect with sslmode=require or stronger",
        ),
    ] {
        fields.push(code);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(&fields);
    let _ = socket.write_all(&message).await;
    let _ = socket.shutdown().await;
}

/// What a statement is, for the read-only gate.
enum Kind {
    /// Planned and run by the engine.
    Query,
    /// Left to the protocol hooks: `SHOW`, transactions, cursors over a read-only query, and
    /// the per-connection settings those hooks keep for the client.
    Protocol,
    /// Answered `SET` and otherwise ignored: settings of PostgreSQL that Headroom does not
    /// have. Passing them on would run them on the shared session.
    Ignored,
    Refused(String),
}

/// `SET` variables the protocol hooks keep per connection (client metadata), never on the
/// shared session.
const CLIENT_SETTINGS: [&str; 7] = [
    "statement_timeout",
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
];

fn classify_set(set: &Set) -> Kind {
    match set {
        Set::SingleAssignment {
            scope: None,
            hivevar: false,
            variable,
            ..
        } => {
            let name = variable
                .0
                .iter()
                .map(|part| part.to_string().trim_matches('"').to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(".");
            if CLIENT_SETTINGS.contains(&name.as_str()) {
                Kind::Protocol
            } else if name.starts_with("datafusion.") {
                Kind::Refused(format!(
                    "{name} is a setting of the query engine, shared by every session"
                ))
            } else {
                Kind::Ignored
            }
        }
        // Kept in the client's metadata and a copy of the session state.
        Set::SetTimeZone { local: false, .. } => Kind::Protocol,
        _ => Kind::Ignored,
    }
}

fn classify(statement: &Statement) -> Kind {
    match statement {
        Statement::Query(_)
        | Statement::Explain { .. }
        | Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. } => Kind::Query,
        Statement::Set(set) => classify_set(set),
        // The cursor hook runs the cursor's statement on the session itself: only a query may
        // be declared (checked by the engine in `ReadOnlyHook::check_cursor`).
        Statement::Declare { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. } => Kind::Protocol,
        other => {
            let text = other.to_string();
            let verb: String = text
                .split_whitespace()
                .take(if text.to_ascii_uppercase().starts_with("CREATE") {
                    3
                } else {
                    1
                })
                .collect::<Vec<_>>()
                .join(" ")
                .to_ascii_uppercase();
            Kind::Refused(format!("{verb} is not allowed"))
        }
    }
}

/// SQLSTATE codes for what a query user did wrong or what stopped the query.
fn pg_error(e: QueryError) -> PgWireError {
    user_error(e.class(), &e)
}

/// An `ERROR` with the class's SQLSTATE and the error's report.
fn user_error(class: ErrorClass, e: &(dyn std::error::Error + 'static)) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        class.sqlstate().into(),
        headroom_status::report(e),
    )))
}

fn refused(reason: String) -> PgWireError {
    pg_error(QueryError::ReadOnly(reason))
}

/// The read-only gate and the planner of every query arriving over the wire, with the engine
/// of the connection's tenant: its catalog holds that tenant's tables only.
struct ReadOnlyHook {
    tenants: Arc<Registry>,
}

/// The engine a connection queries, and whether it is the default tenant's.
struct Target {
    engine: QueryEngine,
    default: bool,
}

impl ReadOnlyHook {
    async fn target(&self, metadata: &HashMap<String, String>) -> PgWireResult<Target> {
        if !self.tenants.access().requires_token() {
            return Ok(Target {
                engine: self.tenants.default_tenant().engine.clone(),
                default: true,
            });
        }
        // Set by `TokenStartup` on every connection that logged in.
        let id = metadata
            .get(TENANT_KEY)
            .ok_or_else(|| refused("this connection has no tenant".into()))?;
        let tenant = self
            .tenants
            .get(id)
            .await
            .map_err(|e| user_error(e.class(), &e))?;
        Ok(Target {
            engine: tenant.engine.clone(),
            default: tenant.id == DEFAULT_TENANT,
        })
    }

    async fn plan(&self, target: &Target, statement: &Statement) -> PgWireResult<LogicalPlan> {
        let plan = target
            .engine
            .plan_statement(statement.clone())
            .await
            .map_err(pg_error)?;
        headroom_analytics::client_columns::readable(plan).map_err(|e| pg_error(e.into()))
    }

    /// What the statement is, after checking that a cursor declares nothing but a query.
    async fn classify(&self, target: &Target, statement: &Statement) -> Kind {
        if let Statement::Declare { stmts } = statement {
            // The cursor hook runs the cursor's query on the shared session, whose catalog is
            // the default tenant's.
            if !target.default {
                return Kind::Refused(
                    "DECLARE CURSOR is served for the default tenant only; fetch in batches \
                     with the extended protocol (a fetch size) instead"
                        .into(),
                );
            }
            for declare in stmts {
                let Some(query) = &declare.for_query else {
                    return Kind::Refused("DECLARE is only for cursors over a query".into());
                };
                if let Err(e) = target
                    .engine
                    .plan_statement(Statement::Query(query.clone()))
                    .await
                {
                    return Kind::Refused(format!("cursor: {e}"));
                }
            }
        }
        classify(statement)
    }
}

fn ignored_set() -> Response {
    Response::Execution(Tag::new("SET"))
}

#[async_trait]
impl QueryHook for ReadOnlyHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let target = match self.target(client.metadata()).await {
            Ok(target) => target,
            Err(e) => return Some(Err(e)),
        };
        match self.classify(&target, statement).await {
            Kind::Protocol => None,
            Kind::Ignored => Some(Ok(ignored_set())),
            Kind::Refused(reason) => Some(Err(refused(reason))),
            Kind::Query => Some(
                async {
                    let plan = self.plan(&target, statement).await?;
                    let df = session
                        .execute_logical_plan(plan)
                        .await
                        .map_err(|e| pg_error(e.into()))?;
                    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
                    let result = encode_dataframe(df, &Format::UnifiedText, Some(options)).await?;
                    Ok(Response::Query(result))
                }
                .await,
            ),
        }
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let target = match self.target(client.metadata()).await {
            Ok(target) => target,
            Err(e) => return Some(Err(e)),
        };
        match self.classify(&target, statement).await {
            Kind::Protocol => None,
            // Answered in `handle_extended_query`; nothing to plan.
            Kind::Ignored => Some(Ok(LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema: Arc::new(DFSchema::empty()),
            }))),
            Kind::Refused(reason) => Some(Err(refused(reason))),
            // Executed by the session service with the portal's parameters and formats.
            Kind::Query => Some(self.plan(&target, statement).await),
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _session: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match statement {
            Statement::Set(set) if matches!(classify_set(set), Kind::Ignored) => {
                Some(Ok(ignored_set()))
            }
            _ => None,
        }
    }
}
