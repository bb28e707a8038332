//! The database: a bb8 pool of tokio-postgres connections, each with its
//! service's statements prepared once when it connects, and the database error
//! type that the HTTP layer maps to 503 or 500.

pub mod batch;
pub mod tls;
mod types;

pub use tls::{SslMode, TlsSettings};
pub use types::Jsonb;

use bb8::{ErrorSink, ManageConnection, PooledConnection};
use bb8_postgres::PostgresConnectionManager;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
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
        Ok(Conn { client, stmts })
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        conn.client.simple_query("").await.map(|_| ())
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        // A connection whose socket died (e.g. the database restarted) is closed;
        // bb8 drops it and opens a new one on the next checkout.
        conn.client.is_closed()
    }
}

/// bb8 only tells a waiting caller "timed out"; the real reason a connection
/// could not be made goes to the log here.
#[derive(Debug, Clone, Copy)]
struct LogSink;

impl ErrorSink<tokio_postgres::Error> for LogSink {
    fn sink(&self, error: tokio_postgres::Error) {
        // tokio-postgres' Display says only "db error" for server errors; show the server's words.
        match error.as_db_error() {
            Some(db) => {
                log::error!(target: "db", code = db.code().code(), error = db.message(); "database connection failed")
            }
            None => log::error!(target: "db", error:% = error; "database connection failed"),
        }
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<tokio_postgres::Error>> {
        Box::new(*self)
    }
}

/// A connection pool whose connections have `S` prepared.
pub struct Pool<S: Statements> {
    inner: bb8::Pool<Manager<S>>,
    statement_timeout: Duration,
}

impl<S: Statements> Clone for Pool<S> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
            statement_timeout: self.statement_timeout,
        }
    }
}

impl<S: Statements> Pool<S> {
    /// Builds the pool without connecting: a task starts, and serves health
    /// checks, even while the database is down.
    pub fn new(config: &Config) -> Self {
        let manager = Manager {
            inner: PostgresConnectionManager::new(config.db.clone(), config.db_tls_connector.clone()),
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
            .error_sink(Box::new(LogSink))
            .build_unchecked(manager);
        Pool {
            inner,
            statement_timeout: config.db_statement_timeout,
        }
    }

    /// Checks out a connection, waiting at most `DB_CONNECT_TIMEOUT_MS`.
    pub async fn get(&self) -> Result<PooledConnection<'_, Manager<S>>, DbError> {
        self.inner.get().await.map_err(|e| match e {
            bb8::RunError::User(e) => DbError::from(e),
            bb8::RunError::TimedOut => {
                DbError::Unavailable("no database connection within the connect timeout".into())
            }
        })
    }

    /// Runs `query` bounded by `DB_STATEMENT_TIMEOUT_MS`.
    pub async fn timed<T>(
        &self,
        query: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, DbError> {
        match tokio::time::timeout(self.statement_timeout, query).await {
            Ok(result) => result.map_err(DbError::from),
            Err(_) => Err(DbError::Unavailable("statement timed out".into())),
        }
    }

    /// Answers within `budget` whether the database runs a trivial query.
    pub async fn ping(&self, budget: Duration) -> bool {
        let check = async {
            let conn = self.inner.get().await.ok()?;
            conn.client.simple_query("SELECT 1").await.ok()
        };
        matches!(tokio::time::timeout(budget, check).await, Ok(Some(_)))
    }
}

/// What went wrong talking to the database. Plain text inside, so one error can
/// be handed to every request of a coalesced batch.
#[derive(Debug, Clone)]
pub enum DbError {
    /// The database cannot be reached or is not accepting work right now; worth retrying (503).
    Unavailable(String),
    /// A `data_exception` (class 22): the database refused a value (400).
    BadValue(String),
    /// Anything else: a bug or a schema mismatch (500).
    Other(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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
            return DbError::Unavailable(e.to_string());
        };
        let code = db.code();
        let transient = code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::QUERY_CANCELED,
                SqlState::READ_ONLY_SQL_TRANSACTION,
            ]
            .contains(code);
        // tokio-postgres' Display says only "db error" here; keep the server's words.
        let why = format!("{} ({})", db.message(), code.code());
        if transient {
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

/// Reads column `idx` of `row`; a type mismatch is a bug (500), not an outage.
pub fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    idx: usize,
) -> Result<T, DbError> {
    row.try_get(idx).map_err(|e| DbError::Other(e.to_string()))
}
