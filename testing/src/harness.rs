//! The harness: the real service on an ephemeral port against a fresh schema,
//! started in-process (`spawn_app`), and an HTTP client to speak to it.

use crate::db::TestDb;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kc_core::app::serve;
use kc_core::{Config, Endpoint};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

static WORKERS: AtomicUsize = AtomicUsize::new(1);

/// One running service.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it serves `GET /metrics`.
    pub metrics_addr: SocketAddr,
    /// Its database schema.
    pub db: Arc<TestDb>,
    /// Its `WORKER_ID`.
    pub worker_id: String,
    /// The serving task, aborted on drop (SIGTERM is tested on the real binary).
    task: JoinHandle<()>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Starts `E` against a fresh schema and waits until it is healthy.
pub async fn spawn_app<E: Endpoint>() -> TestApp {
    spawn_app_with::<E>(TestDb::new().await, &[]).await
}

/// Starts `E` on `db` with extra environment `vars`, and waits until healthy.
pub async fn spawn_app_with<E: Endpoint>(db: Arc<TestDb>, vars: &[(&str, &str)]) -> TestApp {
    let app = start::<E>(db, vars).await;
    app.wait_healthy().await;
    app
}

/// Starts `E` without waiting for it to be healthy (its database may be down).
pub async fn start<E: Endpoint>(db: Arc<TestDb>, vars: &[(&str, &str)]) -> TestApp {
    init_logging();
    let worker_id = format!("{}-test-{}", E::SERVICE, WORKERS.fetch_add(1, Ordering::Relaxed));
    let mut env: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), db.url()),
        ("WORKER_ID".into(), worker_id.clone()),
        ("DB_CONNECT_TIMEOUT_MS".into(), "1000".into()),
        ("DB_POOL_SIZE".into(), "8".into()),
        // Loopback needs no TLS; tests/tls.rs covers the other modes.
        ("DB_SSLMODE".into(), "disable".into()),
    ]);
    for (k, v) in vars {
        env.insert((*k).into(), (*v).into());
    }
    let config = Config::from_lookup(|k| env.get(k).cloned()).expect("test configuration");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port");
    let addr = listener.local_addr().expect("local address");
    let metrics = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port for /metrics");
    let metrics_addr = metrics.local_addr().expect("local address");
    let task = tokio::spawn(serve::<E>(
        config,
        listener,
        Some(metrics),
        std::future::pending(),
    ));
    TestApp {
        addr,
        metrics_addr,
        db,
        worker_id,
        task,
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

fn init_logging() {
    // TEST_LOG=debug shows the services' logs; silent by default.
    let level = std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into());
    let config = Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some("postgres://localhost/test".into()),
        "LOG_LEVEL" => Some(level.clone()),
        "LOG_FORMAT" => Some("text".into()),
        "WORKER_ID" => Some("test".into()),
        _ => None,
    });
    if let Ok(config) = config {
        kc_core::logging::init(&config, "test");
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct TestResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl TestResponse {
    /// The body as JSON; panics with the body text if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestApp {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends `req` (its URI a path) and reads the whole response.
    pub async fn send(&self, mut req: Request<Full<Bytes>>) -> TestResponse {
        let uri = format!("{}{}", self.base_url(), req.uri());
        *req.uri_mut() = uri.parse().expect("request URI");
        let response = self.client.request(req).await.expect("request failed");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("read response body").to_bytes();
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// The task's `GET /metrics`, as text.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr);
        let req = Request::get(url).body(Full::default()).expect("request");
        let response = self.client.request(req).await.expect("scrape /metrics");
        assert_eq!(response.status(), StatusCode::OK, "GET /metrics");
        let body = response
            .into_body()
            .collect()
            .await
            .expect("read /metrics")
            .to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    /// POSTs `body` as JSON.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> TestResponse {
        self.post_raw(path, Some("application/json"), body.to_string())
            .await
    }

    /// POSTs raw bytes with an optional content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> TestResponse {
        let mut req = Request::builder().method(Method::POST).uri(path);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        self.send(req.body(Full::new(body.into())).expect("request"))
            .await
    }

    /// GETs `path`.
    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(Request::get(path).body(Full::default()).expect("request"))
            .await
    }

    /// Polls `/health` until it answers 200 (migrations done, database up).
    pub async fn wait_healthy(&self) {
        for _ in 0..200 {
            if self.get("/health").await.status == StatusCode::OK {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("service at {} did not become healthy", self.addr);
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}
