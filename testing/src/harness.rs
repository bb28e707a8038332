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
use kc_core::auth::admin::{self, NewClient};
pub use kc_core::auth::Role;
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
    /// The API key [`TestApp::post_json`] and [`TestApp::post_raw`] send: an
    /// issuer's for issuance, a verifier's for verification, made by
    /// [`spawn_app`]; None with `AUTH_MODE=off`, or after [`start`].
    pub key: Option<String>,
    /// The serving task, aborted on drop (SIGTERM is tested on the real binary).
    task: JoinHandle<()>,
    api_path: &'static str,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Starts `E` against a fresh schema, waits until it is healthy, and gives it
/// a client of its own (see [`TestApp::key`]).
pub async fn spawn_app<E: Endpoint>() -> TestApp {
    spawn_app_with::<E>(TestDb::new().await, &[]).await
}

/// Starts `E` on `db` with extra environment `vars`, and waits until healthy.
/// Authentication is required, as in production, unless `vars` sets
/// `AUTH_MODE=off`; then the app gets a client of its own (an issuer for
/// issuance, a verifier for verification) whose key its requests carry.
pub async fn spawn_app_with<E: Endpoint>(db: Arc<TestDb>, vars: &[(&str, &str)]) -> TestApp {
    let off = vars
        .iter()
        .any(|(k, v)| *k == "AUTH_MODE" && v.eq_ignore_ascii_case("off"));
    let mut vars = vars.to_vec();
    if !off {
        vars.push(("AUTH_MODE", "required"));
    }
    let mut app = start::<E>(db, &vars).await;
    app.wait_healthy().await;
    if !off {
        let role = if E::ANONYMOUS {
            Role::Verifier
        } else {
            Role::Issuer
        };
        let key = app.add_client(&app.worker_id.clone(), role, &[], None).await;
        app.wait_key(&key).await;
        app.key = Some(key);
    }
    app
}

/// Starts `E` without waiting for it to be healthy (its database may be down),
/// with `AUTH_MODE=off` unless `vars` says otherwise: the tests that use it are
/// about the database, not about who calls.
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
        ("AUTH_MODE".into(), "off".into()),
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
        key: None,
        task,
        api_path: E::PATH,
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

    /// POSTs `body` as JSON with the app's own key ([`TestApp::key`]).
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> TestResponse {
        self.post_raw(path, Some("application/json"), body.to_string())
            .await
    }

    /// POSTs `body` as JSON with `key`, or with no `Authorization` header.
    pub async fn post_json_as(
        &self,
        path: &str,
        body: &serde_json::Value,
        key: Option<&str>,
    ) -> TestResponse {
        self.post_with(path, Some("application/json"), body.to_string(), key, &[])
            .await
    }

    /// POSTs raw bytes with an optional content type and the app's own key.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> TestResponse {
        self.post_with(path, content_type, body, self.key.as_deref(), &[])
            .await
    }

    /// POSTs raw bytes with `key` (as `Authorization: Bearer`) and extra headers.
    pub async fn post_with(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
        key: Option<&str>,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        let mut req = Request::builder().method(Method::POST).uri(path);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(req.body(Full::new(body.into())).expect("request"))
            .await
    }

    /// Creates a client on the app's database; returns its key.
    pub async fn add_client(
        &self,
        name: &str,
        role: Role,
        credential_types: &[&str],
        rate_limit: Option<u32>,
    ) -> String {
        let client = NewClient {
            name: name.into(),
            role,
            credential_types: credential_types.iter().map(|t| (*t).to_owned()).collect(),
            rate_limit,
        };
        let mut db = self.db.client().await;
        admin::add(&mut db, &client, None)
            .await
            .unwrap_or_else(|e| panic!("add client {name}: {e}"))
            .expect("a fresh key")
    }

    /// Revokes the client `name` on the app's database.
    pub async fn revoke_client(&self, name: &str) {
        let mut db = self.db.client().await;
        let revoked = admin::revoke(&mut db, name)
            .await
            .unwrap_or_else(|e| panic!("revoke client {name}: {e}"));
        assert!(revoked, "no live client {name}");
    }

    /// Waits until the app accepts `key` (its clients refresh within
    /// 250 ms): an empty body then gets 400, not 401 or 503.
    pub async fn wait_key(&self, key: &str) {
        for _ in 0..100 {
            let res = self
                .post_with(self.api_path(), Some("application/json"), "{}", Some(key), &[])
                .await;
            if res.status == StatusCode::BAD_REQUEST {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{} did not accept a new key within 2 s", self.addr);
    }

    /// The service's business route.
    pub fn api_path(&self) -> &'static str {
        self.api_path
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
