//! Serving a task: the pipeline on a listener until shutdown (then draining),
//! migrations retried in the background, and the signals that stop it.

use super::pipeline::Shared;
use super::Endpoint;
use crate::config::Config;
use crate::db;
use crate::http;
use crate::metrics::Metrics;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::Response;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves `E` on `listener` until `shutdown` resolves, then drains: readiness
/// turns to 503, no new connections are accepted, in-flight requests finish
/// (within `SHUTDOWN_GRACE_SECONDS`), and the pool is closed. `GET /metrics` is
/// served on `metrics` (when given) until the draining is over.
pub async fn serve<E: Endpoint>(
    config: Config,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let shared = Arc::new(Shared::<E>::new(config));
    let migrations = shared.config.run_migrations.then(|| {
        let shared = shared.clone();
        tokio::spawn(async move {
            migrate_until_done(&shared.config).await;
            shared.schema_ready.store(true, Ordering::Release);
        })
    });
    let emf = shared.config.metrics_emf.map(|every| {
        tokio::spawn(crate::metrics::emf::run(
            shared.metrics.clone(),
            every,
            E::SERVICE,
            shared.config.worker_id.clone(),
        ))
    });
    let clients = tokio::spawn(crate::auth::registry::watch(shared.gate.registry().clone(), {
        let pool = shared.pool.clone();
        move || {
            let pool = pool.clone();
            async move { pool.client().await }
        }
    }));
    if shared.config.auth_mode == crate::auth::AuthMode::Off {
        log::warn!(target: "startup", "AUTH_MODE=off: anyone may issue and read every credential; for local trials only");
    }
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
        move |req, peer| shared.clone().handle(req, peer)
    };
    let (drained, stop_metrics) = tokio::sync::watch::channel(false);
    let api = async {
        let rejected = {
            let metrics = shared.metrics.clone();
            move |reason| metrics.rejected(reason)
        };
        http::serve_connections(listener, timeouts, handler, rejected, on_shutdown).await;
        drained.send_replace(true);
    };
    let scrape = async {
        if let Some(metrics) = metrics {
            serve_metrics(metrics, shared.metrics.clone(), stop_metrics).await;
        }
    };
    tokio::join!(api, scrape);
    clients.abort();
    for task in [migrations, emf].into_iter().flatten() {
        task.abort();
    }
    // Dropping the last handles closes the pool's connections.
    drop(shared);
    log::info!(target: "shutdown", "shutdown complete");
}

/// `GET /metrics` (the Prometheus text format) on its own listener until `stop`
/// turns true; any other path is a 404.
async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    log::info!(target: "startup", addr = addr.as_str(); "serving /metrics");
    let timeouts = http::Timeouts {
        header: Duration::from_secs(10),
        keep_alive: Duration::from_secs(75),
        grace: Duration::from_secs(1),
        // Scrapers, not clients: a few connections are plenty.
        max_connections: 16,
    };
    let handler = move |req: hyper::Request<hyper::body::Incoming>, _peer| {
        let metrics = metrics.clone();
        async move {
            if req.uri().path() != "/metrics" {
                let mut r = Response::new(Full::new(Bytes::from_static(b"not found: try /metrics\n")));
                *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                return r;
            }
            let mut r = Response::new(Full::new(Bytes::from(metrics.encode())));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            r
        }
    };
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    http::serve_connections(listener, timeouts, handler, |_| {}, stopped).await;
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

pub(super) async fn migrate_once(config: &Config) -> Result<Vec<&'static str>, db::DbError> {
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
