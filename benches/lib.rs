//! The benches' shared fixtures. Two kinds of bench live in `benches/`:
//! criterion (`parse`, `respond`, `endpoint`: wall-clock times, for people
//! comparing runs with `--save-baseline`/`--baseline`) and gungraun
//! (`instructions`: instruction counts under valgrind, deterministic, for the
//! CI gate `scripts/bench-gate.sh`); `allocs` counts what one request
//! allocates. See docs/PERFORMANCE.md.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use hyper::Request;
use kc_core::auth::keys::KeyHash;
use kc_core::auth::{ApiClient, Caller, Gate, Registry, Role};
use kc_core::model::Credential;
use kc_core::{App, Config, Endpoint, RequestCtx};
use kc_testing::TestDb;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, UNIX_EPOCH};

/// A typical issuance body, with white space to trim and an email to lower-case.
pub const ISSUE: &[u8] =
    br#"{"name":"  John Doe ","email":"John@Example.com","credentialType":"Developer Certificate",
"metadata":{"organization":"Tech Corp","expiryDate":"2026-12-31","level":3,"tags":["rust","postgres"]}}"#;

/// A typical verification body.
pub const VERIFY: &[u8] =
    br#"{"id":"550e8400-e29b-41d4-a716-446655440000","name":"John Doe","email":"john@example.com"}"#;

/// A stored credential, as the 201 and the 200 write it.
pub fn credential() -> Credential<'static> {
    Credential {
        id: uuid::Uuid::from_u128(0x550e8400_e29b_41d4_a716_446655440000),
        name: "John Doe",
        email: "john@example.com",
        credential_type: "Developer Certificate",
        metadata: Some(r#"{"level": 3, "expiryDate": "2026-12-31", "organization": "Tech Corp"}"#),
        issued_by: "ip-10-0-1-123.ec2.internal",
        issuer: Some("acme-issuer"),
        issued_at: UNIX_EPOCH + Duration::from_millis(1_759_833_000_123),
        valid_until: None,
    }
}

/// Who calls, in the benches: a caller as `AUTH_MODE=off` sees it.
pub static CALLER: std::sync::LazyLock<Caller> =
    std::sync::LazyLock::new(|| Caller::Open(std::net::IpAddr::from([127, 0, 0, 1])));

/// Who answers, in the benches.
pub fn ctx() -> RequestCtx<'static> {
    RequestCtx {
        request_id: "bench-request",
        worker_id: "ip-10-0-1-123.ec2.internal",
        caller: &CALLER,
        idempotency_key: &kc_core::http::KeyHeader::Absent,
    }
}

/// How many API clients the benches' tasks know, each with one key.
pub const CLIENTS: u32 = 100;

/// The key of client `n` (1 to [`CLIENTS`]): well formed, made up.
pub fn key(n: u32) -> String {
    // 43 base64url characters, as a real key has (digits are in the alphabet).
    format!("{}{n:043}", kc_core::auth::keys::PREFIX)
}

/// `Authorization: Bearer` with the key of client `n`.
pub fn bearer(n: u32) -> String {
    format!("Bearer {}", key(n))
}

/// The benches' clients as a task holds them: [`CLIENTS`] issuers of any type.
pub fn clients() -> Vec<(KeyHash, Arc<ApiClient>)> {
    (1..=CLIENTS)
        .map(|n| {
            let name: Arc<str> = format!("bench-{n}").into();
            let client = ApiClient {
                id: n.into(),
                label: name.clone(),
                name,
                role: Role::Issuer,
                credential_types: Vec::new(),
                rate_limit: None,
                limiter: Arc::default(),
            };
            (KeyHash::of(&key(n)), Arc::new(client))
        })
        .collect()
}

/// A migrated scratch schema of the test database (TEST_DATABASE_URL, else
/// DATABASE_URL, else 127.0.0.1:5432) holding the benches' [`clients`], and a
/// connection to it.
pub async fn scratch_db() -> (Arc<TestDb>, tokio_postgres::Client) {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    kc_core::migrate::run(&mut client)
        .await
        .expect("migrate the bench schema");
    client
        .execute(
            "INSERT INTO api_clients (name, role) SELECT 'bench-' || n, 'issuer' FROM generate_series(1, $1) n",
            &[&(CLIENTS as i32)],
        )
        .await
        .expect("the benches' clients");
    let hashes: Vec<Vec<u8>> = clients().iter().map(|(h, _)| h.0.to_vec()).collect();
    client
        .execute(
            "INSERT INTO api_keys (key_sha256, client_id)
             SELECT u.h, c.id FROM unnest($1::bytea[]) WITH ORDINALITY AS u(h, n)
               JOIN api_clients c ON c.name = 'bench-' || u.n",
            &[&hashes],
        )
        .await
        .expect("the benches' keys");
    (db, client)
}

/// A gate over the benches' [`clients`], configured by [`config`]`(vars)`, and
/// a request's headers with `authorization` when given.
pub fn gate(vars: &[(&str, &str)], authorization: Option<&str>) -> (Gate, HeaderMap) {
    let registry = Registry::default();
    registry.load(clients());
    let gate = Gate::new(&config(vars), Arc::new(registry));
    let mut headers = HeaderMap::new();
    if let Some(value) = authorization {
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(value).expect("a header value"),
        );
    }
    (gate, headers)
}

/// The benches' configuration: `WORKER_ID=bench`, a database that does not
/// answer (port 1), then `vars`.
pub fn config(vars: &[(&str, &str)]) -> Config {
    let base = [
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
        ("WORKER_ID", "bench"),
        ("DB_SSLMODE", "disable"),
    ];
    Config::from_lookup(|k| {
        vars.iter()
            .chain(base.iter())
            .find(|(key, _)| *key == k)
            .map(|(_, v)| (*v).to_owned())
    })
    .expect("bench configuration")
}

/// One task's pipeline in-process, and the runtime it was built in, which
/// runs only while it is set up: a measured request is polled once with a
/// no-op waker, so it must not wait for anything.
pub struct Pipeline<E: Endpoint> {
    /// The pipeline.
    pub app: App<E>,
    /// Its runtime.
    pub runtime: tokio::runtime::Runtime,
}

impl<E: Endpoint> Pipeline<E> {
    /// A pipeline configured by [`config`]`(vars)`, knowing no clients.
    pub fn new(vars: &[(&str, &str)]) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let app = {
            let _entered = runtime.enter();
            App::new(config(vars))
        };
        Pipeline { app, runtime }
    }

    /// A pipeline that knows the benches' [`clients`], loaded as a task loads
    /// them: from a [`scratch_db`], dropped again once they are in memory.
    /// Nothing asks the database afterwards.
    pub fn with_clients(vars: &[(&str, &str)]) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (db, client) = runtime.block_on(scratch_db());
        let url = db.url();
        let vars: Vec<(&str, &str)> = vars
            .iter()
            .copied()
            .chain([("DATABASE_URL", url.as_str())])
            .collect();
        let app = {
            let _entered = runtime.enter();
            App::new(config(&vars))
        };
        runtime.block_on(async {
            app.load_clients().await.expect("the benches' clients load");
            let schema: String = client
                .query_one("SELECT current_schema()", &[])
                .await
                .expect("the scratch schema")
                .get(0);
            client
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .await
                .expect("drop the scratch schema");
        });
        // Dropped already; its own clean-up would run on a thread of its own.
        std::mem::forget(db);
        Pipeline { app, runtime }
    }

    /// Handles `req` to the end without waiting: its status, or 0 if it would wait.
    pub fn handle(&self, req: Request<Full<Bytes>>) -> u16 {
        let _entered = self.runtime.enter();
        let mut response = std::pin::pin!(self.app.handle(req));
        match response.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r.status().as_u16(),
            Poll::Pending => 0,
        }
    }
}

/// An issuance POST whose body fails validation (400 once admitted), with
/// `authorization` when given.
pub fn invalid_issuance(authorization: Option<&str>) -> Request<Full<Bytes>> {
    let body = r#"{"name":"","email":"not-an-email","credentialType":"Developer Certificate"}"#;
    let req = Request::post("/issuance/credentials")
        .header("content-type", "application/json")
        .header("x-amzn-trace-id", "Root=1-5759e988-bd862e3fe1be46a994272793");
    let req = match authorization {
        Some(value) => req.header("authorization", value),
        None => req,
    };
    req.body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("request")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benches measure an admitted key, not a refused one: a key format
    /// change must change [`key`] too.
    #[test]
    fn the_benches_keys_are_admitted() {
        let (gate, headers) = gate(&[], Some(&bearer(CLIENTS)));
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        assert!(matches!(gate.admit(&headers, peer, false), Ok(Caller::Client(_))));
    }
}
