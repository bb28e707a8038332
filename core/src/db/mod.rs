//! The database: a bb8 pool of tokio-postgres connections, each with its
//! service's statements prepared once when it connects and the server's own
//! timeouts set; the task's belief whether the database answers
//! ([`monitor`]); and the database error type that the HTTP layer maps to
//! 503, 400 or 500.

pub mod batch;
pub mod metrics;
pub mod monitor;
pub mod tls;
mod types;

pub use metrics::DbMetrics;
pub use monitor::Monitor;
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
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::Config;

/// The statements a service prepares on every new connection, so requests never
/// pay for parsing and planning.
pub trait Statements: Sized + Send + Sync + 'static {
    /// Prepares this service's statements on a fresh connection.
    fn prepare(client: &Client) -> impl Future<Output = Result<Self, tokio_postgres::Error>> + Send;
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

/// Opens connections through bb8-postgres and prepares `S` on each.
pub struct Manager<S> {
    inner: PostgresConnectionManager<MakeRustlsConnect>,
    _statements: PhantomData<fn() -> S>,
}

impl<S: Statements> ManageConnection for Manager<S> {
    type Connection = Conn<S>;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let client = self.inner.connect().await?;
        let stmts = S::prepare(&client).await?;
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

impl ErrorSink<tokio_postgres::Error> for Sink {
    fn sink(&self, error: tokio_postgres::Error) {
        // tokio-postgres' Display says only "db error" for server errors; show the server's words.
        let why = match error.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => error.to_string(),
        };
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
/// a request was answered 503 for does not go on without it.
fn with_server_timeouts(config: &Config) -> tokio_postgres::Config {
    let mut db = config.db.clone();
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
        let monitor = Monitor::start(config);
        let manager = Manager {
            inner: PostgresConnectionManager::new(
                with_server_timeouts(config),
                config.db_tls_connector.clone(),
            ),
            _statements: PhantomData,
        };
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
