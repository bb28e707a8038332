//! Configuration from the environment, read and validated once at start-up.

pub use crate::auth::AuthMode;
use crate::db::tls::{SslMode, TlsSettings};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Everything a task needs to know about its surroundings.
#[derive(Clone)]
pub struct Config {
    /// TCP port to listen on (`PORT`, default 3000; 0 picks a free one).
    pub port: u16,
    /// TCP port of `GET /metrics` (`METRICS_PORT`, default 9464; 0 picks a free one), on
    /// `BIND_ADDR` too: a port the load balancer does not forward.
    pub metrics_port: u16,
    /// `METRICS_EMF_SECONDS`: every this many seconds, one CloudWatch embedded-metric-format line
    /// on stdout (default 0: none; ECS sets 60).
    pub metrics_emf: Option<Duration>,
    /// Address to bind (`BIND_ADDR`, default `0.0.0.0`).
    pub bind_addr: std::net::IpAddr,
    /// Who answers: `WORKER_ID`, else the machine's hostname.
    pub worker_id: String,
    /// `LOG_LEVEL` filter for env_logger (default `info`).
    pub log_level: String,
    /// `LOG_FORMAT`: JSON lines (default) or text for humans.
    pub log_format: LogFormat,
    /// Where the database is and how to reach it.
    pub db: tokio_postgres::Config,
    /// `DB_SSLMODE` and `DB_SSLROOTCERT`: how connections to it are secured.
    pub db_tls: TlsSettings,
    /// The TLS connector for `db_tls`, built (and its CA bundle read) once at start-up.
    pub(crate) db_tls_connector: MakeRustlsConnect,
    /// `DB_POOL_SIZE`: connections per task (default 10).
    pub db_pool_size: u32,
    /// `DB_CONNECT_TIMEOUT_MS`: connecting, and waiting for a pooled connection (default 2000).
    pub db_connect_timeout: Duration,
    /// `DB_BATCH_LANES`: statements a coalescing endpoint keeps in flight at once (default 1: on
    /// two cores one lane gave the largest batches and the best throughput and latency).
    pub db_batch_lanes: usize,
    /// `DB_BATCH_MAX`: requests one coalesced statement may carry (default 128: a 0.25 vCPU task
    /// does not fill more, and a statement of 128 rows keeps the wait behind it short).
    pub db_batch_max: usize,
    /// `DB_STATEMENT_TIMEOUT_MS`: how long one statement may take before the request gets 503
    /// (default 5000); also set as the server's `statement_timeout`, and passed to writes as
    /// the deadline after which they store nothing.
    pub db_statement_timeout: Duration,
    /// `DB_POOLER`: what sits between the task and PostgreSQL (default `none`). `transaction`
    /// (PgBouncer in transaction mode, RDS Proxy) keeps no session state: no startup `options`,
    /// no named prepared statements; the server's `statement_timeout` is the login role's.
    pub db_pooler: DbPooler,
    /// `DATABASE_READ_URL`: a streaming replica (hot standby) that verification reads from when
    /// it has replayed everything the primary had written when the read began (default none:
    /// every read from `DATABASE_URL`). A user, password or database name the URL leaves out is
    /// the primary's; TLS, `DB_POOLER` and the pool size are the primary's too.
    pub db_read: Option<tokio_postgres::Config>,
    /// `DB_READ_MAX_LAG_MS`: past this replay lag (measured every 250 ms against the primary's
    /// WAL position) reads go straight to the primary instead of trying the replica first
    /// (default 1000).
    pub db_read_max_lag: Duration,
    /// `DB_QUEUE_MAX`: requests that may wait for a statement; one more gets 503 at once
    /// (default 256: two full statements behind the one in flight, so a burst of 256 requests on
    /// an idle task is absorbed, while under sustained overload a request waits at most about
    /// three statements).
    pub db_queue_max: usize,
    /// `DB_QUEUE_TIMEOUT_MS`: how long a request may wait for its statement to start before it
    /// gets 503 (default 250).
    pub db_queue_timeout: Duration,
    /// `MAX_CONNECTIONS`: open client connections; past it the task stops accepting and the
    /// kernel's backlog holds new ones (default 1024).
    pub max_connections: usize,
    /// `MAX_BODY_BYTES`: larger request bodies get 413 (default 65536).
    pub max_body_bytes: usize,
    /// `BULK_MAX`: requests one bulk request (`POST {route}/batch`) may carry; more get 400
    /// (default 1000).
    pub bulk_max: usize,
    /// `BULK_MAX_BODY_BYTES`: larger bulk request bodies get 413 (default 1048576: 1,000
    /// credentials of about 1 KB).
    pub bulk_max_body_bytes: usize,
    /// `SHUTDOWN_GRACE_SECONDS`: how long in-flight requests may finish after SIGTERM (default 20).
    pub shutdown_grace: Duration,
    /// `CORS_ALLOWED_ORIGINS`: a comma-separated list of origins; unset: no CORS headers. `*` is
    /// refused: verification returns personal data.
    pub cors: CorsOrigins,
    /// `AUTH_MODE`: `required` (default) or `off` (local trials: anyone may do anything).
    pub auth_mode: AuthMode,
    /// `CLIENT_RATE_LIMIT`: requests per second one client may send to one task, unless the
    /// client has a limit of its own (default 1000: about a tenth of a 0.25 vCPU task).
    pub client_rate_limit: u32,
    /// `ANONYMOUS_RATE_LIMIT`: requests per second one source address may send to one task
    /// without a key (default 20).
    pub anonymous_rate_limit: u32,
    /// `TRUSTED_PROXY_HOPS`: proxies in front of the task that append to `X-Forwarded-For`
    /// (default 0: the TCP peer is the caller; 1 behind the ALB or an ingress controller).
    pub trusted_proxy_hops: usize,
    /// `RUN_MIGRATIONS`: apply `sql/` migrations when serving (default true).
    pub run_migrations: bool,
    /// `HTTP_HEADER_TIMEOUT_MS`: once a request's first byte arrived, its head (and then its body)
    /// must arrive within this (default 10000). Guards against slow clients.
    pub header_timeout: Duration,
    /// `HTTP_KEEP_ALIVE_SECONDS`: how long an idle keep-alive connection stays open (default 75,
    /// longer than the ALB's 60 s idle timeout so the ALB, not the task, closes it).
    pub keep_alive: Duration,
    /// `CREDENTIAL_MAX_VALIDITY_DAYS`: how far in the future an issued credential's `validUntil`
    /// may be (default 3650, about ten years).
    pub credential_max_validity: Duration,
}

/// What sits between a task and PostgreSQL (`DB_POOLER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbPooler {
    /// Nothing, or a pooler in session mode: a connection is a session of its own, so it
    /// sets the server's timeouts at start-up and prepares its statements once.
    None,
    /// A pooler in transaction mode (PgBouncer `pool_mode = transaction`, RDS Proxy): each
    /// transaction may run on another server connection, so nothing is kept in the session.
    Transaction,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (for CloudWatch and log pipelines).
    Json,
    /// Plain text for a human at a terminal.
    Text,
}

/// Which origins get an `Access-Control-Allow-Origin` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    /// None: no CORS headers at all (the default).
    Off,
    /// Only these exact origins; the request's `Origin` is echoed when it is one of them.
    List(Vec<String>),
}

/// A variable that is set but cannot be used; the message names it.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.variable, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads configuration through `lookup` (the environment in production, a map in tests).
    /// Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let db_connect_timeout = millis(&get, "DB_CONNECT_TIMEOUT_MS", 2000)?;
        let (db, db_tls) = database(&get, db_connect_timeout)?;
        let db_read = read_replica(&get, &db, &db_tls)?;
        Ok(Config {
            port: parse(&get, "PORT", 3000u16, 0..=65535)?,
            metrics_port: parse(&get, "METRICS_PORT", 9464u16, 0..=65535)?,
            metrics_emf: match parse(&get, "METRICS_EMF_SECONDS", 0u64, 0..=3600)? {
                0 => None,
                seconds => Some(Duration::from_secs(seconds)),
            },
            bind_addr: parse_with(
                &get,
                "BIND_ADDR",
                || [0, 0, 0, 0].into(),
                |v| {
                    v.parse()
                        .map_err(|_| "must be an IP address such as 0.0.0.0 or 127.0.0.1".into())
                },
            )?,
            worker_id: parse_with(&get, "WORKER_ID", hostname, |v| worker_id(v.trim()))?,
            log_level: get("LOG_LEVEL").unwrap_or_else(|| "info".into()),
            log_format: parse_with(
                &get,
                "LOG_FORMAT",
                || LogFormat::Json,
                |v| match v.as_str() {
                    "json" => Ok(LogFormat::Json),
                    "text" => Ok(LogFormat::Text),
                    _ => Err("must be json or text".into()),
                },
            )?,
            db,
            db_tls_connector: crate::db::tls::connector(&db_tls).map_err(|reason| ConfigError {
                variable: if db_tls.mode == SslMode::VerifyFull {
                    "DB_SSLROOTCERT"
                } else {
                    "DB_SSLMODE"
                },
                reason,
            })?,
            db_tls,
            db_pool_size: parse(&get, "DB_POOL_SIZE", 10u32, 1..=1000)?,
            db_connect_timeout,
            db_statement_timeout: millis(&get, "DB_STATEMENT_TIMEOUT_MS", 5000)?,
            db_pooler: parse_with(
                &get,
                "DB_POOLER",
                || DbPooler::None,
                |v| match v.trim().to_ascii_lowercase().as_str() {
                    "none" => Ok(DbPooler::None),
                    "transaction" => Ok(DbPooler::Transaction),
                    _ => Err("must be none or transaction".into()),
                },
            )?,
            db_read,
            db_read_max_lag: millis(&get, "DB_READ_MAX_LAG_MS", 1000)?,
            db_batch_lanes: parse(&get, "DB_BATCH_LANES", 1usize, 1..=64)?,
            db_batch_max: parse(&get, "DB_BATCH_MAX", 128usize, 1..=10_000)?,
            db_queue_max: parse(&get, "DB_QUEUE_MAX", 256usize, 1..=100_000)?,
            db_queue_timeout: millis(&get, "DB_QUEUE_TIMEOUT_MS", 250)?,
            max_connections: parse(&get, "MAX_CONNECTIONS", 1024usize, 1..=1_000_000)?,
            max_body_bytes: parse(&get, "MAX_BODY_BYTES", 65536usize, 2..=64 * 1024 * 1024)?,
            bulk_max: parse(&get, "BULK_MAX", 1000usize, 1..=100_000)?,
            bulk_max_body_bytes: parse(&get, "BULK_MAX_BODY_BYTES", 1_048_576usize, 2..=64 * 1024 * 1024)?,
            shutdown_grace: Duration::from_secs(parse(&get, "SHUTDOWN_GRACE_SECONDS", 20u64, 0..=3600)?),
            cors: parse_with(
                &get,
                "CORS_ALLOWED_ORIGINS",
                || CorsOrigins::Off,
                |v| {
                    let list: Vec<String> = v
                        .split(',')
                        .map(|o| o.trim().to_owned())
                        .filter(|o| !o.is_empty())
                        .collect();
                    if list.iter().any(|o| o == "*") {
                        Err("* is not allowed: verification returns personal data; list the origins, e.g. https://app.example.com".into())
                    } else if list.iter().any(|o| !o.bytes().all(|b| b.is_ascii_graphic())) {
                        Err("origins must be visible ASCII, e.g. https://app.example.com".into())
                    } else {
                        Ok(CorsOrigins::List(list))
                    }
                },
            )?,
            run_migrations: parse_with(&get, "RUN_MIGRATIONS", || true, parse_bool)?,
            auth_mode: parse_with(
                &get,
                "AUTH_MODE",
                || AuthMode::Required,
                |v| match v.trim().to_ascii_lowercase().as_str() {
                    "required" => Ok(AuthMode::Required),
                    "off" => Ok(AuthMode::Off),
                    _ => Err("must be required or off".into()),
                },
            )?,
            client_rate_limit: parse(&get, "CLIENT_RATE_LIMIT", 1000u32, 1..=10_000_000)?,
            anonymous_rate_limit: parse(&get, "ANONYMOUS_RATE_LIMIT", 20u32, 1..=10_000_000)?,
            trusted_proxy_hops: parse(&get, "TRUSTED_PROXY_HOPS", 0usize, 0..=8)?,
            header_timeout: millis(&get, "HTTP_HEADER_TIMEOUT_MS", 10_000)?,
            keep_alive: Duration::from_secs(parse(&get, "HTTP_KEEP_ALIVE_SECONDS", 75u64, 1..=3600)?),
            credential_max_validity: Duration::from_secs(
                86_400
                    * parse(
                        &get,
                        "CREDENTIAL_MAX_VALIDITY_DAYS",
                        crate::model::rules::MAX_VALIDITY_DAYS,
                        1..=36_500,
                    )?,
            ),
        })
    }

    /// Where the database is, without the password: safe to log.
    pub fn db_target(&self) -> String {
        let host = self
            .db
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_default();
        let port = self.db.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{}:{}/{}",
            self.db.get_user().unwrap_or("?"),
            host,
            port,
            self.db.get_dbname().unwrap_or("?")
        )
    }
}

/// `DATABASE_URL` wins; else the seed's `RDS_CLUSTER_*`/`DB_*` variables.
fn database(
    get: &impl Fn(&str) -> Option<String>,
    connect_timeout: Duration,
) -> Result<(tokio_postgres::Config, TlsSettings), ConfigError> {
    let mut cfg = if let Some(url) = get("DATABASE_URL") {
        tokio_postgres::Config::from_str(url.trim()).map_err(|e| ConfigError {
            variable: "DATABASE_URL",
            // The parser's message never echoes the URL, so no password leaks here.
            reason: format!("not a valid PostgreSQL URL ({e})"),
        })?
    } else {
        let host = get("RDS_CLUSTER_HOST").ok_or(ConfigError {
            variable: "DATABASE_URL",
            reason: "set DATABASE_URL, or RDS_CLUSTER_HOST with DB_NAME, RDS_CLUSTER_USERNAME and RDS_CLUSTER_PASSWORD".into(),
        })?;
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(host.trim())
            .port(parse(get, "DB_PORT", 5432u16, 1..=65535)?)
            .dbname(get("DB_NAME").as_deref().unwrap_or("postgres"))
            .user(get("RDS_CLUSTER_USERNAME").as_deref().unwrap_or("postgres"));
        if let Some(password) = get("RDS_CLUSTER_PASSWORD") {
            cfg.password(password);
        }
        cfg
    };
    if cfg.get_hosts().is_empty() {
        cfg.host("localhost");
    }
    if cfg.get_user().is_none() {
        cfg.user("postgres");
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("kube-credential");
    }
    // DB_SSLMODE wins; else the URL's sslmode; else libpq's default, prefer.
    let mode = match get("DB_SSLMODE") {
        Some(v) => SslMode::parse(&v).map_err(|reason| ConfigError {
            variable: "DB_SSLMODE",
            reason,
        })?,
        None => match cfg.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        },
    };
    let root_cert = get("DB_SSLROOTCERT").map(|p| PathBuf::from(p.trim()));
    if mode == SslMode::VerifyFull && root_cert.is_none() {
        return Err(ConfigError {
            variable: "DB_SSLROOTCERT",
            reason: "DB_SSLMODE=verify-full needs the CA bundle to trust (e.g. the RDS global bundle)".into(),
        });
    }
    cfg.ssl_mode(mode.pg())
        .connect_timeout(connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    Ok((cfg, TlsSettings { mode, root_cert }))
}

/// `DATABASE_READ_URL`, completed from the primary's settings: the user, password and
/// database name it leaves out, and the primary's TLS mode, timeouts and application name.
fn read_replica(
    get: &impl Fn(&str) -> Option<String>,
    primary: &tokio_postgres::Config,
    tls: &TlsSettings,
) -> Result<Option<tokio_postgres::Config>, ConfigError> {
    let Some(url) = get("DATABASE_READ_URL") else {
        return Ok(None);
    };
    let mut cfg = tokio_postgres::Config::from_str(url.trim()).map_err(|e| ConfigError {
        variable: "DATABASE_READ_URL",
        reason: format!("not a valid PostgreSQL URL ({e})"),
    })?;
    if cfg.get_hosts().is_empty() {
        return Err(ConfigError {
            variable: "DATABASE_READ_URL",
            reason:
                "names no host: give the replica's address, e.g. postgres://replica.example:5432/credentials"
                    .into(),
        });
    }
    if cfg.get_user().is_none() {
        if let Some(user) = primary.get_user() {
            cfg.user(user);
        }
    }
    if cfg.get_password().is_none() {
        if let Some(password) = primary.get_password() {
            cfg.password(password);
        }
    }
    if cfg.get_dbname().is_none() {
        if let Some(dbname) = primary.get_dbname() {
            cfg.dbname(dbname);
        }
    }
    if cfg.get_options().is_none() {
        if let Some(options) = primary.get_options() {
            cfg.options(options);
        }
    }
    cfg.application_name(primary.get_application_name().unwrap_or("kube-credential"))
        .ssl_mode(tls.mode.pg())
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    if let Some(timeout) = primary.get_connect_timeout() {
        cfg.connect_timeout(*timeout);
    }
    Ok(Some(cfg))
}

fn parse<T>(
    get: &impl Fn(&str) -> Option<String>,
    key: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
{
    parse_with(
        get,
        key,
        || default,
        |v| match v.trim().parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(format!(
                "must be a whole number from {} to {}",
                range.start(),
                range.end()
            )),
        },
    )
}

/// A duration in milliseconds, from 1 ms to 10 minutes.
fn millis(
    get: &impl Fn(&str) -> Option<String>,
    key: &'static str,
    default: u64,
) -> Result<Duration, ConfigError> {
    parse(get, key, default, 1..=600_000).map(Duration::from_millis)
}

fn parse_with<T>(
    get: &impl Fn(&str) -> Option<String>,
    key: &'static str,
    default: impl FnOnce() -> T,
    parse: impl FnOnce(String) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match get(key) {
        None => Ok(default()),
        Some(v) => parse(v).map_err(|reason| ConfigError {
            variable: key,
            reason,
        }),
    }
}

fn parse_bool(v: String) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("must be true or false".into()),
    }
}

/// Longest worker id: the `issued_by` column is `VARCHAR(255)`.
pub const WORKER_ID_MAX: usize = 255;

/// A worker id goes into the `X-Worker-Id` header and the `issued_by` column:
/// refuse at start-up what either cannot hold, or every issuance would fail later.
fn worker_id(v: &str) -> Result<String, String> {
    if v.len() > WORKER_ID_MAX || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "must be 1 to {WORKER_ID_MAX} visible ASCII characters (it is sent in the X-Worker-Id header and stored in issued_by, VARCHAR({WORKER_ID_MAX}))"
        ));
    }
    Ok(v.to_owned())
}

/// The machine's hostname; on ECS/Fargate e.g. `ip-10-0-1-123.ec2.internal`.
fn hostname() -> String {
    let name = gethostname::gethostname().to_string_lossy().trim().to_owned();
    if name.is_empty() {
        "unknown-worker".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_only_the_database_is_given() {
        let c = config(&[("DATABASE_URL", "postgres://u:secret@db.example:6543/creds")]).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.max_body_bytes, 65536);
        assert_eq!((c.bulk_max, c.bulk_max_body_bytes), (1000, 1_048_576));
        assert_eq!(c.shutdown_grace, Duration::from_secs(20));
        assert_eq!(c.cors, CorsOrigins::Off);
        assert_eq!(c.auth_mode, AuthMode::Required);
        assert_eq!(
            (c.client_rate_limit, c.anonymous_rate_limit, c.trusted_proxy_hops),
            (1000, 20, 0)
        );
        assert!(c.run_migrations);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.db_target(), "u@db.example:6543/creds");
        assert!(!c.worker_id.is_empty());
        assert_eq!(c.metrics_port, 9464);
        assert_eq!(c.metrics_emf, None);
        assert_eq!(c.db_pooler, DbPooler::None);
        assert!(c.db_read.is_none());
        assert_eq!(c.db_read_max_lag, Duration::from_millis(1000));
    }

    #[test]
    fn the_read_url_takes_what_it_leaves_out_from_the_primary() {
        let c = config(&[
            (
                "DATABASE_URL",
                "postgres://app:pw@primary.example:5432/creds?options=-csearch_path%3Dkc",
            ),
            ("DATABASE_READ_URL", "postgres://replica.example:5433"),
            ("DB_READ_MAX_LAG_MS", "250"),
            ("DB_SSLMODE", "require"),
        ])
        .unwrap();
        let read = c.db_read.expect("a read replica");
        assert_eq!(
            read.get_hosts(),
            &[tokio_postgres::config::Host::Tcp("replica.example".into())]
        );
        assert_eq!(read.get_ports(), &[5433]);
        assert_eq!(
            (read.get_user(), read.get_password(), read.get_dbname()),
            (Some("app"), Some(&b"pw"[..]), Some("creds"))
        );
        assert_eq!(read.get_options(), Some("-csearch_path=kc"));
        assert_eq!(read.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(c.db_read_max_lag, Duration::from_millis(250));
        // Its own user, password and database win.
        let c = config(&[
            ("DATABASE_URL", "postgres://app:pw@primary.example/creds"),
            ("DATABASE_READ_URL", "postgres://reader:rpw@replica.example/other"),
        ])
        .unwrap();
        let read = c.db_read.expect("a read replica");
        assert_eq!(
            (read.get_user(), read.get_password(), read.get_dbname()),
            (Some("reader"), Some(&b"rpw"[..]), Some("other"))
        );
        // The RDS variables give the user and password to a URL without them.
        let c = config(&[
            ("RDS_CLUSTER_HOST", "primary.example"),
            ("RDS_CLUSTER_USERNAME", "kc_verification_app"),
            ("RDS_CLUSTER_PASSWORD", "secret"),
            ("DB_NAME", "credentials"),
            ("DATABASE_READ_URL", "postgres://replica.example:5432/credentials"),
        ])
        .unwrap();
        let read = c.db_read.expect("a read replica");
        assert_eq!(read.get_user(), Some("kc_verification_app"));
        assert_eq!(read.get_password(), Some(&b"secret"[..]));
    }

    #[test]
    fn a_read_url_without_a_host_or_a_bad_lag_bound_is_refused() {
        let url = ("DATABASE_URL", "postgres://a@one/x");
        for (var, value) in [
            ("DATABASE_READ_URL", "postgres:///x"),
            ("DATABASE_READ_URL", "postgres://u:hunter2@host:notaport/db"),
            ("DB_READ_MAX_LAG_MS", "0"),
            ("DB_READ_MAX_LAG_MS", "soon"),
        ] {
            let err = config(&[url, (var, value)])
                .err()
                .unwrap_or_else(|| panic!("{var}={value} accepted"));
            assert_eq!(err.variable, var);
            assert!(!err.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn db_pooler_is_none_or_transaction() {
        let url = ("DATABASE_URL", "postgres://a@one/x");
        assert_eq!(
            config(&[url, ("DB_POOLER", "Transaction")]).unwrap().db_pooler,
            DbPooler::Transaction
        );
        assert_eq!(
            config(&[url, ("DB_POOLER", "none")]).unwrap().db_pooler,
            DbPooler::None
        );
        assert_eq!(
            config(&[url, ("DB_POOLER", "session")]).err().unwrap().variable,
            "DB_POOLER"
        );
    }

    #[test]
    fn database_url_wins_over_rds_variables() {
        let c = config(&[
            ("DATABASE_URL", "postgres://a@one/x"),
            ("RDS_CLUSTER_HOST", "two"),
            ("DB_NAME", "y"),
        ])
        .unwrap();
        assert_eq!(c.db_target(), "a@one:5432/x");
    }

    #[test]
    fn rds_variables_build_the_connection() {
        let c = config(&[
            ("RDS_CLUSTER_HOST", "mydb.rds.amazonaws.com"),
            ("DB_PORT", "5433"),
            ("DB_NAME", "credentials"),
            ("RDS_CLUSTER_USERNAME", "app"),
            ("RDS_CLUSTER_PASSWORD", "pw"),
        ])
        .unwrap();
        assert_eq!(c.db_target(), "app@mydb.rds.amazonaws.com:5433/credentials");
        assert_eq!(c.db.get_password(), Some(&b"pw"[..]));
    }

    #[test]
    fn missing_database_names_the_variables() {
        let err = config(&[]).err().unwrap();
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(err.reason.contains("RDS_CLUSTER_HOST"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let base = ("DATABASE_URL", "postgres://localhost/test");
        for (var, value) in [
            ("PORT", "http"),
            ("PORT", "70000"),
            ("DB_POOL_SIZE", "0"),
            ("MAX_BODY_BYTES", "-1"),
            ("BULK_MAX", "0"),
            ("BULK_MAX_BODY_BYTES", "1"),
            ("LOG_FORMAT", "xml"),
            ("RUN_MIGRATIONS", "maybe"),
            ("BIND_ADDR", "everywhere"),
            ("SHUTDOWN_GRACE_SECONDS", "soon"),
            ("DB_QUEUE_MAX", "0"),
            ("DB_QUEUE_TIMEOUT_MS", "0"),
            ("MAX_CONNECTIONS", "none"),
            ("METRICS_PORT", "-1"),
            ("METRICS_EMF_SECONDS", "3601"),
            ("AUTH_MODE", "optional"),
            ("CLIENT_RATE_LIMIT", "0"),
            ("ANONYMOUS_RATE_LIMIT", "-5"),
            ("TRUSTED_PROXY_HOPS", "9"),
            ("CORS_ALLOWED_ORIGINS", "*"),
            ("CORS_ALLOWED_ORIGINS", "https://a.example, *"),
        ] {
            let err = config(&[base, (var, value)])
                .err()
                .unwrap_or_else(|| panic!("{var}={value} accepted"));
            assert_eq!(err.variable, var);
            assert!(err.to_string().contains(var));
        }
        let err = config(&[("DATABASE_URL", "postgres://u:hunter2@host:notaport/db")])
            .err()
            .unwrap();
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn worker_id_comes_from_the_environment_when_set() {
        let c = config(&[
            ("DATABASE_URL", "postgres://localhost/test"),
            ("WORKER_ID", " issuance-1 "),
        ])
        .unwrap();
        assert_eq!(c.worker_id, "issuance-1");
        let c = config(&[("DATABASE_URL", "postgres://localhost/test"), ("WORKER_ID", "")]).unwrap();
        assert_eq!(c.worker_id, hostname());
    }

    #[test]
    fn a_worker_id_the_issued_by_column_or_a_header_cannot_hold_is_refused() {
        let url = ("DATABASE_URL", "postgres://localhost/test");
        let longest = "w".repeat(WORKER_ID_MAX);
        assert_eq!(
            config(&[url, ("WORKER_ID", &longest)]).unwrap().worker_id,
            longest
        );
        for bad in [
            "w".repeat(WORKER_ID_MAX + 1),
            "issuance 1".into(),
            "tâche-1".into(),
        ] {
            let err = config(&[url, ("WORKER_ID", &bad)])
                .err()
                .unwrap_or_else(|| panic!("WORKER_ID={bad:?} accepted"));
            assert_eq!(err.variable, "WORKER_ID");
            assert!(err.reason.contains("255"), "{err}");
        }
    }

    #[test]
    fn tls_mode_comes_from_db_sslmode_then_the_url() {
        let url = ("DATABASE_URL", "postgres://localhost/test");
        assert_eq!(config(&[url]).unwrap().db_tls.mode, SslMode::Prefer);
        assert_eq!(
            config(&[url, ("DB_SSLMODE", "disable")]).unwrap().db_tls.mode,
            SslMode::Disable
        );
        assert_eq!(
            config(&[url, ("DB_SSLMODE", "REQUIRE")]).unwrap().db_tls.mode,
            SslMode::Require
        );
        let c = config(&[("DATABASE_URL", "postgres://localhost/test?sslmode=require")]).unwrap();
        assert_eq!(c.db_tls.mode, SslMode::Require);
        assert_eq!(
            config(&[url, ("DB_SSLMODE", "allow")]).err().unwrap().variable,
            "DB_SSLMODE"
        );
        let err = config(&[url, ("DB_SSLMODE", "verify-full")]).err().unwrap();
        assert_eq!(err.variable, "DB_SSLROOTCERT");
        let err = config(&[
            url,
            ("DB_SSLMODE", "verify-full"),
            ("DB_SSLROOTCERT", "/nonexistent/ca.pem"),
        ])
        .err()
        .unwrap();
        assert_eq!(err.variable, "DB_SSLROOTCERT");
        assert!(err.reason.contains("/nonexistent/ca.pem"));
    }

    #[test]
    fn cors_list_is_split_and_trimmed() {
        let c = config(&[
            ("DATABASE_URL", "postgres://localhost/test"),
            ("CORS_ALLOWED_ORIGINS", "https://a.example, https://b.example"),
        ])
        .unwrap();
        assert_eq!(
            c.cors,
            CorsOrigins::List(vec!["https://a.example".into(), "https://b.example".into()])
        );
    }
}
