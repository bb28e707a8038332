//! A service's life: the [`Endpoint`] a service crate implements, the request
//! pipeline around it, serving until SIGTERM, and the command line
//! (`serve`, `migrate`, `healthcheck`, `--version`).

use crate::config::Config;
use crate::db::{self, Pool, Statements};
use crate::error::ApiError;
pub use crate::error::Reply;
use crate::health;
use crate::http::router::{Route, Router};
use crate::http::{self, CommonHeaders};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::{Request, Response, StatusCode};
use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// What a service crate provides: its name, its one business route, and the
/// handler behind it.
pub trait Endpoint: Sized + Send + Sync + 'static {
    /// `issuance` or `verification`: in logs, health responses and `/<SERVICE>/health`.
    const SERVICE: &'static str;
    /// The business route, e.g. `/issuance/credentials` (method POST).
    const PATH: &'static str;
    /// How this service names the boolean in its validation errors (`success` or `valid`).
    const OUTCOME_KEY: &'static str;
    /// The statements prepared on each database connection.
    type Statements: Statements;

    /// Builds the endpoint's state around the pool.
    fn new(pool: Pool<Self::Statements>, config: &Config) -> Self;

    /// Handles one request whose body has been read and whose content type was checked.
    fn handle(
        &self,
        ctx: &RequestCtx<'_>,
        body: Bytes,
    ) -> impl Future<Output = Result<Reply, ApiError>> + Send;
}

/// Who is asking and who is answering.
#[derive(Debug, Clone, Copy)]
pub struct RequestCtx<'a> {
    /// The request id (also in the response's `X-Request-Id` and in every log line).
    pub request_id: &'a str,
    /// This task's worker id.
    pub worker_id: &'a str,
}

/// Everything requests of one task share.
struct Shared<E: Endpoint> {
    endpoint: E,
    pool: Pool<E::Statements>,
    config: Config,
    router: Router,
    headers: CommonHeaders,
    started: Instant,
    /// Set once the schema is migrated (or migrations are not ours to run).
    schema_ready: AtomicBool,
    /// Set when shutdown begins.
    draining: AtomicBool,
}

impl<E: Endpoint> Shared<E> {
    async fn handle<B>(self: Arc<Self>, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let request_id = http::request_id(&req);
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let origin = req.headers().get(hyper::header::ORIGIN).cloned();
        let (reply, shed) = match self.route(&request_id, req).await {
            Ok(reply) => (reply, None),
            Err(e) => {
                let shed = e.shed();
                (e.into_reply(E::OUTCOME_KEY, &request_id), shed)
            }
        };
        let status = reply.status.as_u16();
        let response = self.headers.respond(reply, &request_id, origin.as_ref());
        macro_rules! access {
            ($($extra:tt)*) => {
                log::info!(
                    target: "access",
                    request_id = request_id.as_str(),
                    method = method.as_str(),
                    path = path.as_str(),
                    status = status,
                    duration_ms = (started.elapsed().as_micros() as f64) / 1000.0
                    $($extra)*;
                    "request"
                )
            };
        }
        match shed {
            None => access!(),
            Some(why) => access!(, shed = why.as_str()),
        }
        response
    }

    async fn route<B>(&self, request_id: &str, req: Request<B>) -> Result<Reply, ApiError>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        match self.router.resolve(req.method(), req.uri().path())? {
            Route::Api => {
                if !self.schema_ready.load(Ordering::Acquire) {
                    return Err(ApiError::Unavailable(
                        "database schema is not migrated yet".into(),
                    ));
                }
                let body =
                    http::read_body(req, self.config.max_body_bytes, self.config.header_timeout).await?;
                let ctx = RequestCtx {
                    request_id,
                    worker_id: &self.config.worker_id,
                };
                self.endpoint.handle(&ctx, body).await
            }
            Route::Live => Ok(self.status(None, false).reply()),
            Route::Health => Ok(self.status(Some(self.database_up()), false).reply()),
            Route::Ready => {
                let draining = self.draining.load(Ordering::Acquire);
                let up = (!draining).then(|| self.database_up());
                Ok(self.status(up, draining).reply())
            }
            Route::Preflight(allow) => Ok(Reply {
                status: StatusCode::NO_CONTENT,
                body: Vec::new(),
                allow: Some(allow),
                retry_after: None,
            }),
        }
    }

    /// From the monitor's last probe: a health check never waits for the database.
    fn database_up(&self) -> bool {
        self.schema_ready.load(Ordering::Acquire) && self.pool.monitor().is_up()
    }

    fn status(&self, database_up: Option<bool>, draining: bool) -> health::Status<'_> {
        health::Status {
            service: E::SERVICE,
            worker_id: &self.config.worker_id,
            uptime_seconds: self.started.elapsed().as_secs(),
            database_up,
            draining,
        }
    }
}

/// One task's request pipeline without a listener: routing, limits, headers and
/// the endpoint, for calling in-process (the criterion benches).
pub struct App<E: Endpoint>(Arc<Shared<E>>);

impl<E: Endpoint> App<E> {
    /// Builds the pipeline. Migrations are not run: the schema must exist.
    pub fn new(mut config: Config) -> Self {
        config.run_migrations = false;
        App(Arc::new(Shared::new(config)))
    }

    /// Handles one request as a connection would.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        self.0.clone().handle(req).await
    }
}

impl<E: Endpoint> Shared<E> {
    fn new(config: Config) -> Self {
        let pool = Pool::<E::Statements>::new(&config);
        Shared {
            endpoint: E::new(pool.clone(), &config),
            pool,
            router: Router::new(E::SERVICE, E::PATH),
            headers: CommonHeaders::new(&config.worker_id, config.cors.clone()),
            started: Instant::now(),
            schema_ready: AtomicBool::new(!config.run_migrations),
            draining: AtomicBool::new(false),
            config,
        }
    }
}

/// Serves `E` on `listener` until `shutdown` resolves, then drains: readiness
/// turns to 503, no new connections are accepted, in-flight requests finish
/// (within `SHUTDOWN_GRACE_SECONDS`), and the pool is closed.
pub async fn serve<E: Endpoint>(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let shared = Arc::new(Shared::<E>::new(config));
    let migrations = shared.config.run_migrations.then(|| {
        let shared = shared.clone();
        tokio::spawn(async move {
            migrate_until_done(&shared.config).await;
            shared.schema_ready.store(true, Ordering::Release);
        })
    });
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    log::info!(
        target: "startup",
        addr = addr.as_str(),
        database = shared.config.db_target().as_str(),
        pool_size = shared.config.db_pool_size,
        version = env!("CARGO_PKG_VERSION");
        "listening"
    );
    let timeouts = http::Timeouts {
        header: shared.config.header_timeout,
        keep_alive: shared.config.keep_alive,
        grace: shared.config.shutdown_grace,
        max_connections: shared.config.max_connections,
    };
    let on_shutdown = {
        let shared = shared.clone();
        async move {
            shutdown.await;
            shared.draining.store(true, Ordering::Release);
            log::info!(target: "shutdown", "shutdown started: draining");
        }
    };
    let handler = {
        let shared = shared.clone();
        move |req| shared.clone().handle(req)
    };
    http::serve_connections(listener, timeouts, handler, on_shutdown).await;
    if let Some(task) = migrations {
        task.abort();
    }
    // Dropping the last handles closes the pool's connections.
    drop(shared);
    log::info!(target: "shutdown", "shutdown complete");
}

/// Applies migrations, retrying while the database is unreachable: a task
/// that starts before its database must not crash-loop.
async fn migrate_until_done(config: &Config) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match migrate_once(config).await {
            Ok(applied) => {
                log::info!(target: "migrate", applied = applied.join(",").as_str(); "schema is up to date");
                return;
            }
            Err(e) => {
                log::warn!(target: "migrate", error:% = e, retry_in_ms = backoff.as_millis() as u64; "migration failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn migrate_once(config: &Config) -> Result<Vec<&'static str>, db::DbError> {
    let mut client = db::connect_once(config).await?;
    crate::migrate::run(&mut client).await
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

const USAGE: &str = "usage: SERVICE [serve|migrate|healthcheck|--version|--help]
  serve         serve HTTP on PORT (the default)
  migrate       apply the database migrations, then exit
  healthcheck   GET this task's /health/live on 127.0.0.1:PORT; exit 0 if it answers 200
  --version     print the version
Configuration comes from the environment; see .env.example.";

/// The whole `main` of a service binary.
pub fn main<E: Endpoint>() -> ExitCode {
    let command = std::env::args().nth(1);
    match command.as_deref() {
        Some("--version" | "-V" | "version") => {
            println!("{} {}", E::SERVICE, env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("--help" | "-h" | "help") => {
            println!("{}", USAGE.replace("SERVICE", E::SERVICE));
            return ExitCode::SUCCESS;
        }
        Some("healthcheck") => return runtime(1).block_on(healthcheck()),
        None | Some("serve" | "migrate") => {}
        Some(other) => {
            eprintln!(
                "{}: unknown command {other:?}\n{}",
                E::SERVICE,
                USAGE.replace("SERVICE", E::SERVICE)
            );
            return ExitCode::from(2);
        }
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", E::SERVICE);
            return ExitCode::from(2);
        }
    };
    crate::logging::init(&config, E::SERVICE);
    if command.as_deref() == Some("migrate") {
        return runtime(1).block_on(async {
            match migrate_once(&config).await {
                Ok(applied) => {
                    log::info!(target: "migrate", applied = applied.join(",").as_str(), database = config.db_target().as_str(); "schema is up to date");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    log::error!(target: "migrate", error:% = e, database = config.db_target().as_str(); "migration failed");
                    ExitCode::FAILURE
                }
            }
        });
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    runtime(threads).block_on(async {
        let addr = std::net::SocketAddr::new(config.bind_addr, config.port);
        let listener = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                log::error!(target: "startup", addr:% = addr, error:% = e; "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        serve::<E>(config, listener, shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}

/// `SERVICE healthcheck`: a Docker HEALTHCHECK for an image without curl.
async fn healthcheck() -> ExitCode {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok())
        .unwrap_or(3000);
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(head.starts_with(b"HTTP/1.1 200"))
    };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) => {
            eprintln!("healthcheck: 127.0.0.1:{port}/health/live did not answer 200");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("healthcheck: 127.0.0.1:{port}: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("healthcheck: 127.0.0.1:{port}: no answer within 3 s");
            ExitCode::FAILURE
        }
    }
}
