//! The database: a bb8 pool of tokio-postgres connections, each with its
//! service's statements prepared once when it connects and the server's own
//! timeouts set; the task's belief whether the database answers
//! ([`monitor`]); and the database error type that the HTTP layer maps to
//! 503, 400 or 500.
//!
//! Behind a transaction-mode pooler (`DB_POOLER=transaction`: PgBouncer, RDS
//! Proxy) a connection keeps no session state: no startup `options` (the
//! server's `statement_timeout` is then the login role's), and a [`Stmt`] is
//! not prepared but sent with its SQL and parameter types each time, unnamed
//! (`query_typed`: one round trip, like a prepared statement's execution).

pub mod batch;
pub mod metrics;
pub mod monitor;
pub mod replica;
pub mod tls;
mod types;

pub use metrics::{DbMetrics, Fallback, ReadTarget};
pub use monitor::Monitor;
pub use replica::{Replica, ReplicaState};
pub use tls::{SslMode, TlsSettings};
pub use types::Jsonb;

use bb8::{ErrorSink, ManageConnection, PooledConnection};
use bb8_postgres::PostgresConnectionManager;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{Config, DbPooler};

/// The statements a service prepares on every new connection, so requests never
/// pay for parsing and planning.
pub trait Statements: Sized + Send + Sync + 'static {
    /// Makes this service's statements for a fresh connection with [`Prepare::stmt`].
    fn prepare(db: &Prepare<'_>) -> impl Future<Output = Result<Self, tokio_postgres::Error>> + Send;
}

/// A fresh connection that [`Statements::prepare`] makes its statements for.
pub struct Prepare<'a> {
    client: &'a Client,
    /// False behind a transaction-mode pooler: nothing is prepared.
    named: bool,
}

impl Prepare<'_> {
    /// The statement `sql`, whose parameters `$1`, `$2`, … have `types`: prepared
    /// on the connection (a named statement, parsed and planned once), or under
    /// `DB_POOLER=transaction` kept as its SQL and types, to be sent unnamed with
    /// every execution. `types` must name every parameter: without a prepared
    /// statement nothing infers a missing one (verification/tests/pooler.rs runs
    /// both services' statements that way).
    pub async fn stmt(&self, sql: &'static str, types: &[Type]) -> Result<Stmt, tokio_postgres::Error> {
        let prepared = if self.named {
            Some(self.client.prepare_typed(sql, types).await?)
        } else {
            None
        };
        Ok(Stmt {
            sql,
            types: types.to_vec(),
            prepared,
        })
    }
}

/// One of a service's statements on one connection (see [`Prepare::stmt`]).
pub struct Stmt {
    sql: &'static str,
    types: Vec<Type>,
    prepared: Option<Statement>,
}

impl Stmt {
    /// Runs the statement with `params` on `client` (the connection it was made
    /// for): the prepared statement, or its SQL and types unnamed in one round
    /// trip (Parse, Bind, Describe, Execute, Sync), which leaves nothing behind
    /// on the server connection a transaction-mode pooler lent.
    pub async fn query(&self, client: &Client, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        if let Some(prepared) = &self.prepared {
            return Ok(client.query(prepared, params).await?);
        }
        if params.len() != self.types.len() {
            return Err(DbError::Other(format!(
                "{} parameters for a statement of {} types",
                params.len(),
                self.types.len()
            )));
        }
        let typed: Vec<(&(dyn ToSql + Sync), Type)> =
            params.iter().copied().zip(self.types.iter().cloned()).collect();
        Ok(client.query_typed(self.sql, &typed).await?)
    }
}

/// A pooled connection together with its prepared statements.
pub struct Conn<S> {
    /// The tokio-postgres client.
    pub client: Client,
    /// The statements prepared on it.
    pub stmts: S,
    /// Set when a statement on it timed out: its state is unknown (the server
    /// may be frozen with the statement in its socket), so it is not reused.
    broken: AtomicBool,
}

impl<S> Conn<S> {
    /// Runs `stmt`, one of this connection's statements, with `params` (see [`Stmt::query`]).
    pub async fn query(&self, stmt: &Stmt, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        stmt.query(&self.client, params).await
    }
}

/// Opens connections through bb8-postgres and prepares `S` on each. The
/// monitor's probe connects with a clone, so it connects exactly as the pool
/// does (see [`monitor`]).
pub struct Manager<S> {
    inner: PostgresConnectionManager<MakeRustlsConnect>,
    pooler: DbPooler,
    /// `DB_STATEMENT_TIMEOUT_MS`, as the probe expects to find it on the server.
    statement_timeout_ms: u128,
    _statements: PhantomData<fn() -> S>,
}

impl<S> Clone for Manager<S> {
    fn clone(&self) -> Self {
        Manager {
            inner: self.inner.clone(),
            pooler: self.pooler,
            statement_timeout_ms: self.statement_timeout_ms,
            _statements: PhantomData,
        }
    }
}

impl<S> Manager<S> {
    /// What statements are made with on the fresh connection `client`.
    fn prepare<'a>(&self, client: &'a Client) -> Prepare<'a> {
        Prepare {
            client,
            named: self.pooler == DbPooler::None,
        }
    }
}

impl<S: Statements> ManageConnection for Manager<S> {
    type Connection = Conn<S>;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let client = self.inner.connect().await?;
        let stmts = S::prepare(&self.prepare(&client)).await?;
        Ok(Conn {
            client,
            stmts,
            broken: AtomicBool::new(false),
        })
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        conn.client.simple_query("").await.map(|_| ())
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        // A connection whose socket died (e.g. the database restarted) is closed;
        // bb8 drops it and opens a new one on the next checkout.
        conn.client.is_closed() || conn.broken.load(Ordering::Acquire)
    }
}

/// bb8 only tells a waiting caller "timed out"; the real reason a connection
/// could not be made goes to the log here, and the database is reported down
/// at once, so requests stop waiting for connections that will not come.
#[derive(Clone)]
struct Sink(Monitor);

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sink")
    }
}

/// Why connecting failed, in the server's words (tokio-postgres' Display says
/// only "db error"), with what to do when it is a pooler refusing `options`.
fn describe(error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        return error.to_string();
    };
    let hint = if db.message().contains("startup parameter") {
        ": a pooler refuses the startup options; behind a transaction-mode pooler set DB_POOLER=transaction"
    } else {
        ""
    };
    format!("{} ({}){hint}", db.message(), db.code().code())
}

impl ErrorSink<tokio_postgres::Error> for Sink {
    fn sink(&self, error: tokio_postgres::Error) {
        let why = describe(&error);
        log::error!(target: "db", error = why.as_str(); "database connection failed");
        self.0.report_down(&why);
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<tokio_postgres::Error>> {
        Box::new(self.clone())
    }
}

/// A connection pool whose connections have `S` prepared, and the monitor of
/// the database behind it.
pub struct Pool<S: Statements> {
    inner: bb8::Pool<Manager<S>>,
    monitor: Monitor,
    metrics: Arc<DbMetrics>,
}

impl<S: Statements> Clone for Pool<S> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
            monitor: self.monitor.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// The server-side limits every pooled connection sets at start-up (no extra
/// round trip): PostgreSQL itself cancels a statement that runs longer than
/// `DB_STATEMENT_TIMEOUT_MS` and ends a session idle in a transaction, so work
/// a request was answered 503 for does not go on without it. Not behind a
/// transaction-mode pooler, which refuses `options`: there the login role
/// carries them (docs/DEPLOYMENT.md), and the deadline a write carries still
/// keeps a late statement from storing anything.
fn with_server_timeouts(config: &Config, db: &tokio_postgres::Config) -> tokio_postgres::Config {
    let mut db = db.clone();
    if config.db_pooler == DbPooler::Transaction {
        return db;
    }
    let ms = config.db_statement_timeout.as_millis();
    let limits = format!("-c statement_timeout={ms} -c idle_in_transaction_session_timeout={ms}");
    let options = match db.get_options() {
        Some(existing) if !existing.trim().is_empty() => format!("{existing} {limits}"),
        _ => limits,
    };
    db.options(options);
    db
}

impl<S: Statements> Pool<S> {
    /// Builds the pool without connecting, and starts the database's monitor: a
    /// task starts, and serves health checks, even while the database is down.
    /// What the database layer does is counted in `metrics`.
    pub fn new(config: &Config, metrics: Arc<DbMetrics>) -> Self {
        Pool::to(config, &config.db, "primary", metrics)
    }

    /// A pool like [`Pool::new`]'s to the database `db` (the primary's, or the
    /// read replica's), called `name` in the monitor's log lines.
    pub(crate) fn to(
        config: &Config,
        db: &tokio_postgres::Config,
        name: &'static str,
        metrics: Arc<DbMetrics>,
    ) -> Self {
        let manager = Manager {
            inner: PostgresConnectionManager::new(
                with_server_timeouts(config, db),
                config.db_tls_connector.clone(),
            ),
            pooler: config.db_pooler,
            statement_timeout_ms: config.db_statement_timeout.as_millis(),
            _statements: PhantomData,
        };
        let monitor = Monitor::start(manager.clone(), name);
        let inner = bb8::Pool::builder()
            .max_size(config.db_pool_size)
            .connection_timeout(config.db_connect_timeout)
            // Checking every checkout costs a round trip per request; a dead
            // connection shows as `is_closed()` and a failing query returns 503.
            .test_on_check_out(false)
            .idle_timeout(Some(Duration::from_secs(600)))
            .max_lifetime(Some(Duration::from_secs(1800)))
            .error_sink(Box::new(Sink(monitor.clone())))
            .build_unchecked(manager);
        Pool {
            inner,
            monitor,
            metrics,
        }
    }

    /// The monitor of the database behind this pool.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// What the database layer counts.
    pub fn metrics(&self) -> &Arc<DbMetrics> {
        &self.metrics
    }

    /// A pooled connection for a statement of the task's own (not a request's):
    /// the API clients' refresh.
    pub async fn client(&self) -> Result<PooledClient<S>, DbError> {
        batch::Source::get(self).await.map(PooledClient)
    }

    /// Connections open now, and how many of them are idle.
    pub fn connections(&self) -> (u32, u32) {
        let state = self.inner.state();
        (state.connections, state.idle_connections)
    }
}

impl<S: Statements> batch::Source for Pool<S> {
    type Conn = PooledConnection<'static, Manager<S>>;

    /// Checks out a connection, waiting at most `DB_CONNECT_TIMEOUT_MS`. Idle
    /// connections whose socket closed meanwhile (the server restarted) are
    /// passed over, so the first statement after an outage does not fail on one.
    async fn get(&self) -> Result<Self::Conn, DbError> {
        for _ in 0..=self.inner.state().connections {
            let conn = self.inner.get_owned().await.map_err(|e| match e {
                bb8::RunError::User(e) => DbError::from(e),
                bb8::RunError::TimedOut => {
                    DbError::Down("no database connection within the connect timeout".into())
                }
            })?;
            if !conn.client.is_closed() {
                return Ok(conn);
            }
            // Dropped here: bb8 sees has_broken and opens a new one next time.
        }
        Err(DbError::Down("every pooled connection was closed".into()))
    }

    fn discard(&self, conn: Self::Conn) {
        conn.broken.store(true, Ordering::Release);
    }
}

/// A connection checked out of a [`Pool`], given back when dropped.
pub struct PooledClient<S: Statements>(PooledConnection<'static, Manager<S>>);

impl<S: Statements> std::ops::Deref for PooledClient<S> {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.0.client
    }
}

/// Why a request was answered 503 without its statement being sent: these
/// requests were never seen by the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// `DB_QUEUE_MAX` requests were already waiting.
    QueueFull,
    /// It waited `DB_QUEUE_TIMEOUT_MS` and its statement had not started.
    QueueTimeout,
    /// The database is believed down (see [`monitor`]).
    DatabaseDown,
}

impl Shed {
    /// The reason as logs and metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Shed::QueueFull => "queue_full",
            Shed::QueueTimeout => "queue_timeout",
            Shed::DatabaseDown => "database_down",
        }
    }
}

/// What went wrong talking to the database. Plain text inside, so one error can
/// be handed to every request of a coalesced batch.
#[derive(Debug, Clone)]
pub enum DbError {
    /// Not sent: shed by admission control (503).
    Shed(Shed),
    /// The database cannot be reached: connecting failed, the connection was
    /// lost, a statement timed out, or the server is shutting down or starting.
    /// Reported to the [`Monitor`] (503).
    Down(String),
    /// The database answered but cannot do this now (a serialization failure, a
    /// deadlock, a statement past its deadline); worth retrying (503).
    Unavailable(String),
    /// A `data_exception` (class 22): the database refused a value (400).
    BadValue(String),
    /// Anything else: a bug or a schema mismatch (500).
    Other(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Shed(why) => write!(f, "shed before reaching the database: {}", why.as_str()),
            DbError::Down(why) => write!(f, "database down: {why}"),
            DbError::Unavailable(why) => write!(f, "database unavailable: {why}"),
            DbError::BadValue(why) => write!(f, "database refused a value: {why}"),
            DbError::Other(why) => write!(f, "database error: {why}"),
        }
    }
}

impl std::error::Error for DbError {}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        let Some(db) = e.as_db_error() else {
            // No SQLSTATE: I/O, a closed connection, a timeout connecting.
            return DbError::Down(e.to_string());
        };
        let code = db.code();
        // tokio-postgres' Display says only "db error" here; keep the server's words.
        let why = format!("{} ({})", db.message(), code.code());
        let down = code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
                // A prepared statement gone from the session: a transaction-mode
                // pooler lent another server connection (DB_POOLER is not set).
                SqlState::INVALID_SQL_STATEMENT_NAME,
            ]
            .contains(code);
        let transient = [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            // The server's statement_timeout, or a statement past its deadline.
            SqlState::QUERY_CANCELED,
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ]
        .contains(code);
        if down {
            DbError::Down(why)
        } else if transient {
            DbError::Unavailable(why)
        } else if code.code().starts_with("22") {
            DbError::BadValue(why)
        } else {
            DbError::Other(why)
        }
    }
}

/// Connects one client outside the pool (for migrations and one-shot commands).
pub async fn connect_once(config: &Config) -> Result<Client, DbError> {
    let (client, connection) = config.db.connect(config.db_tls_connector.clone()).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            log::warn!(target: "db", error:% = e; "database connection closed");
        }
    });
    Ok(client)
}

/// Reads the column named `name` of `row` (as its statement's SQL names it, so
/// reordering a SELECT cannot mix columns up); a missing column or a type
/// mismatch is a bug (500), not an outage.
pub fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    name: &str,
) -> Result<T, DbError> {
    row.try_get(name)
        .map_err(|e| DbError::Other(format!("column {name}: {e}")))
}
