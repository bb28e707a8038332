//! One request through a task: route it, check the limits and the schema,
//! find out who is calling (`auth`), read its body, hand it to the endpoint
//! (its business route, or an action on one credential), or answer health from
//! the database monitor, or serve the OpenAPI document; map errors to replies,
//! add the common headers, and write its access log line.

use super::{Endpoint, RequestCtx};
use crate::auth::{Caller, Gate, Refusal, Registry};
use crate::config::Config;
use crate::db::Pool;
use crate::error::ApiError;
use crate::health;
use crate::http::router::{Entry, Route, Router};
use crate::http::{self, CommonHeaders, Reply};
use crate::logging::{self, Access};
use crate::metrics::{method_label, HttpLabels, Metrics, SharedLabel};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::{Request, Response, StatusCode};
use prometheus_client::metrics::gauge::Gauge;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The bulk request bodies a task holds at once, in bytes: each is held about
/// four times (as received, the parser's copy, the items' fields, the answer),
/// so 16 MiB of bodies is at most about 64 MiB.
pub const BULK_MEMORY_BYTES: usize = 16 * 1024 * 1024;

/// The unit of [`BULK_MEMORY_BYTES`] a bulk request reserves.
const BULK_PERMIT_BYTES: usize = 1024;

/// Everything requests of one task share.
pub(super) struct Shared<E: Endpoint> {
    pub(super) endpoint: E,
    pub(super) pool: Pool<E::Statements>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) config: Config,
    pub(super) router: Router,
    pub(super) headers: CommonHeaders,
    /// Who may call: keys, clients, rate limits.
    pub(super) gate: Gate,
    /// The bulk bodies held at once, in KiB: a bulk reserves its declared
    /// length (`BULK_MAX_BODY_BYTES` when it declares none) before its body is
    /// read, and gets 503 if [`BULK_MEMORY_BYTES`] would be exceeded.
    pub(super) bulk_permits: tokio::sync::Semaphore,
    pub(super) started: Instant,
    /// Set once the schema is migrated (or migrations are not ours to run).
    pub(super) schema_ready: AtomicBool,
    /// Set when shutdown begins.
    pub(super) draining: AtomicBool,
}

impl<E: Endpoint> Shared<E> {
    pub(super) async fn handle<B>(self: Arc<Self>, req: Request<B>, peer: SocketAddr) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let _active = Active::new(&self.metrics.active);
        let request_id = http::request_id(&req);
        let trace_id = http::trace_id(&req);
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let origin = req.headers().get(hyper::header::ORIGIN).cloned();
        let entry = self.router.lookup(&path);
        let mut caller = None;
        let (reply, shed) = match self
            .route(entry, &path, &request_id, req, peer, &mut caller)
            .await
        {
            Ok(reply) => (reply, None),
            Err(e) => {
                let shed = e.shed();
                (e.into_reply(E::OUTCOME_KEY, &request_id), shed)
            }
        };
        let status = reply.status.as_u16();
        if matches!(status, 401 | 403 | 429) {
            static UNKNOWN: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("unknown"));
            let label = caller.as_ref().map_or_else(|| UNKNOWN.clone(), Caller::label);
            self.metrics.refused(label, status);
        }
        let response = self.headers.respond(reply, &request_id, origin.as_ref());
        let elapsed = started.elapsed();
        self.metrics.observe(
            &HttpLabels {
                http_route: SharedLabel(entry.map_or_else(|| Arc::from(""), |e| e.template().clone())),
                http_request_method: method_label(&method),
                http_response_status_code: status,
            },
            elapsed.as_secs_f64(),
        );
        logging::access(&Access {
            request_id: &request_id,
            trace_id: trace_id.as_deref(),
            method: method.as_str(),
            path: &path,
            status,
            duration_ms: elapsed.as_micros() as f64 / 1000.0,
            shed: shed.map(|s| s.as_str()),
            client: caller.as_ref().map(Caller::name),
        });
        response
    }

    async fn route<B>(
        &self,
        entry: Option<&Entry>,
        path: &str,
        request_id: &str,
        req: Request<B>,
        peer: SocketAddr,
        caller: &mut Option<Caller>,
    ) -> Result<Reply, ApiError>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let entry = entry.ok_or(ApiError::NotFound)?;
        let route = entry.route(req.method())?;
        match route {
            Route::Api | Route::Action(_) | Route::Bulk => {
                if !self.schema_ready.load(Ordering::Acquire) {
                    return Err(ApiError::Unavailable(
                        "database schema is not migrated yet".into(),
                    ));
                }
                // Checked before the body is read, refused after: a refusal
                // that left the body unread would reset the connection, and a
                // balancer still sending it would answer 502 instead.
                // A bulk request needs a key: without one it would multiply an
                // anonymous caller's per-address limit by `BULK_MAX`.
                let anonymous = E::ANONYMOUS && route != Route::Bulk;
                let mut admitted = self.gate.admit(req.headers(), peer, anonymous);
                if let Err((Refusal::NotReady, _)) = admitted {
                    // Just started: the clients load within milliseconds.
                    if self
                        .gate
                        .registry()
                        .wait_loaded(self.config.db_connect_timeout)
                        .await
                    {
                        admitted = self.gate.admit(req.headers(), peer, anonymous);
                    }
                }
                let admitted = admitted.map_err(|(refusal, who)| {
                    *caller = who;
                    refusal
                });
                let idempotency_key = http::idempotency_key(&req);
                let mut limit = self.config.max_body_bytes;
                let _bulk_permit = if route == Route::Bulk {
                    // A bulk body is large: a refused caller's is thrown away
                    // unread, and only so many are held at once (see `bulk_permits`).
                    let timeout = self.config.header_timeout;
                    if let Err(refusal) = admitted {
                        http::discard_body(req, timeout).await;
                        return Err(refusal.into());
                    }
                    let max = self.config.bulk_max_body_bytes;
                    let bytes = http::content_length(&req).map_or(max, |n| n.min(max as u64) as usize);
                    let kib = bytes.div_ceil(BULK_PERMIT_BYTES).max(1) as u32;
                    let Ok(permit) = self.bulk_permits.try_acquire_many(kib) else {
                        http::discard_body(req, timeout).await;
                        return Err(ApiError::Unavailable("too many bulk requests in flight".into()));
                    };
                    limit = self.config.bulk_max_body_bytes;
                    Some(permit)
                } else {
                    None
                };
                let body = http::read_body(req, limit, self.config.header_timeout).await?;
                let who = caller.insert(admitted?);
                let ctx = RequestCtx {
                    request_id,
                    worker_id: &self.config.worker_id,
                    caller: who,
                    idempotency_key: &idempotency_key,
                };
                match route {
                    // The router matched the path, so it holds the parameter.
                    Route::Action(action) => {
                        let id = entry.param(path).unwrap_or_default();
                        self.endpoint.handle_action(&ctx, action, id, body).await
                    }
                    Route::Bulk => self.endpoint.handle_bulk(&ctx, body).await,
                    _ => self.endpoint.handle(&ctx, body).await,
                }
            }
            Route::Live => Ok(self.status(None, false).reply()),
            Route::Health => Ok(self.status(Some(self.database_up()), false).reply()),
            Route::Ready => {
                let draining = self.draining.load(Ordering::Acquire);
                let up = (!draining).then(|| self.database_up());
                Ok(self.status(up, draining).reply())
            }
            Route::Spec => Ok(Reply::json(StatusCode::OK, http::OPENAPI.as_bytes().to_vec())),
            Route::Preflight(allow) => Ok(Reply {
                status: StatusCode::NO_CONTENT,
                body: Vec::new(),
                allow: Some(allow),
                retry_after: None,
                challenge: false,
                replayed: false,
            }),
        }
    }

    /// From the monitor's last probe (and, with access control on, whether the
    /// API clients are loaded: until then keyed requests cannot be served): a
    /// health check never waits for the database.
    fn database_up(&self) -> bool {
        self.schema_ready.load(Ordering::Acquire)
            && self.pool.monitor().is_up()
            && (self.config.auth_mode == crate::auth::AuthMode::Off || self.gate.registry().is_loaded())
    }

    fn status(&self, database_up: Option<bool>, draining: bool) -> health::Status<'_> {
        health::Status {
            service: E::SERVICE,
            worker_id: &self.config.worker_id,
            uptime_seconds: self.started.elapsed().as_secs(),
            database_up,
            replica: database_up.and(self.endpoint.read_replica()).map(|r| r.as_str()),
            draining,
            auth_off: self.config.auth_mode == crate::auth::AuthMode::Off,
        }
    }
}

impl<E: Endpoint> Shared<E> {
    pub(super) fn new(config: Config) -> Self {
        let mut metrics = Metrics::new();
        let pool = Pool::<E::Statements>::new(&config, metrics.db.clone());
        metrics.watch_database(pool.monitor().clone(), config.db_pool_size, {
            let pool = pool.clone();
            move || pool.connections()
        });
        let endpoint = E::new(pool.clone(), &config);
        if let Some(replica) = endpoint.read_replica() {
            metrics.watch_replica(replica);
        }
        Shared {
            endpoint,
            pool,
            metrics: Arc::new(metrics),
            router: Router::new(E::SERVICE, E::PATH, E::ACTIONS),
            headers: CommonHeaders::new(&config.worker_id, config.cors.clone()),
            gate: Gate::new(&config, Arc::new(Registry::default())),
            bulk_permits: tokio::sync::Semaphore::new(
                (BULK_MEMORY_BYTES.max(config.bulk_max_body_bytes)).div_ceil(BULK_PERMIT_BYTES),
            ),
            started: Instant::now(),
            schema_ready: AtomicBool::new(!config.run_migrations),
            draining: AtomicBool::new(false),
            config,
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

    /// Handles one request as a connection from 127.0.0.1 would.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        self.0
            .clone()
            .handle(req, SocketAddr::from(([127, 0, 0, 1], 40000)))
            .await
    }

    /// Loads the API clients from the database (a task's background refresh
    /// does this; an in-process caller asks once).
    pub async fn load_clients(&self) -> Result<(), crate::db::DbError> {
        let client = self.0.pool.client().await?;
        self.0.gate.registry().refresh(&client).await.map(|_| ())
    }
}

/// Counts a request as in flight for as long as it lives, however it ends
/// (a dropped future included).
struct Active<'a>(&'a Gauge);

impl<'a> Active<'a> {
    fn new(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Active(gauge)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
