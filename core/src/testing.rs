//! Test support for the services' integration tests: a fresh schema per test in
//! the real PostgreSQL, the real service on an ephemeral port, an HTTP client,
//! and a TCP proxy that can cut the service off from its database.
//!
//! The database is `TEST_DATABASE_URL`, else `DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`.

use crate::app::{serve, Endpoint};
use crate::config::Config;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The database the tests use.
pub fn base_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema of its own for one test, dropped when the last handle goes.
pub struct TestDb {
    base: String,
    schema: String,
}

impl TestDb {
    /// Creates a fresh, empty schema on the test database.
    pub async fn new() -> Arc<TestDb> {
        Self::new_on(&base_database_url()).await
    }

    /// Creates a fresh, empty schema on the server and database of `base` (a URL).
    pub async fn new_on(base: &str) -> Arc<TestDb> {
        let base = base.to_owned();
        let schema = format!("kc_test_{}", uuid::Uuid::new_v4().simple());
        let client = connect(&base).await;
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("cannot create a test schema");
        Arc::new(TestDb { base, schema })
    }

    /// A URL whose connections see only this schema.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-csearch_path%3D{}", self.base, self.schema)
    }

    /// [`TestDb::url`] with the server's address replaced by `addr` (a proxy).
    pub fn url_via(&self, addr: SocketAddr) -> String {
        let config: tokio_postgres::Config = self.base.parse().expect("test database URL");
        let user = config.get_user().unwrap_or("postgres");
        let db = config.get_dbname().unwrap_or("test");
        let password = config
            .get_password()
            .map(|p| format!(":{}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        format!(
            "postgres://{user}{password}@{addr}/{db}?options=-csearch_path%3D{}",
            self.schema
        )
    }

    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// How many credentials are stored.
    pub async fn count_credentials(&self) -> i64 {
        let row = self
            .client()
            .await
            .query_one("SELECT count(*) FROM credentials", &[])
            .await;
        row.expect("count credentials").get(0)
    }

    /// A client on this schema, for checking what the service stored.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url()).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (base, schema) = (self.base.clone(), self.schema.clone());
        // Drop runs inside the test's runtime; clean up on a thread of our own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                // Over TLS when the URL asks for it, as the schema was made.
                if let Ok(client) = try_connect(&base).await {
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Connects like the services do (so TLS modes in the URL work).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    try_connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test database (set TEST_DATABASE_URL): {e}"))
}

async fn try_connect(url: &str) -> Result<tokio_postgres::Client, crate::db::DbError> {
    let config =
        Config::from_lookup(|k| (k == "DATABASE_URL").then(|| url.to_owned())).expect("test database URL");
    crate::db::connect_once(&config).await
}

static WORKERS: AtomicUsize = AtomicUsize::new(1);

/// One running service.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
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
    let task = tokio::spawn(serve::<E>(config, listener, std::future::pending()));
    TestApp {
        addr,
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
        crate::logging::init(&config, "test");
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

/// A TCP proxy in front of the database that a test can cut and restore, or
/// freeze and thaw, to simulate an outage without touching the shared server.
///
/// Frozen, it behaves like a server stopped with SIGSTOP: connections stay
/// open and new ones are accepted, but no byte moves in either direction until
/// it thaws; what was sent meanwhile arrives then.
pub struct TcpProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    frozen: tokio::sync::watch::Sender<bool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

/// Waits while the proxy is frozen.
async fn thawed(frozen: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = frozen.wait_for(|frozen| !frozen).await;
}

/// Copies `from` to `to`, holding everything while frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        thawed(&mut frozen).await;
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Read just as the freeze began: held too.
        thawed(&mut frozen).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl TcpProxy {
    /// Starts forwarding to the test database's server.
    pub async fn start() -> TcpProxy {
        let config: tokio_postgres::Config = base_database_url().parse().expect("test database URL");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let target = format!("{host}:{port}");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let up = Arc::new(AtomicBool::new(true));
        let (frozen, _) = tokio::sync::watch::channel(false);
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (up, links, frozen) = (up.clone(), links.clone(), frozen.clone());
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees the connection close
                    }
                    let target = target.clone();
                    let mut gate = frozen.subscribe();
                    let link = tokio::spawn(async move {
                        // A frozen server accepts (the kernel does) but answers nothing.
                        thawed(&mut gate).await;
                        let Ok(outbound) = TcpStream::connect(&target).await else {
                            return;
                        };
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        tokio::join!(
                            pump(in_read, out_write, gate.clone()),
                            pump(out_read, in_write, gate)
                        );
                    });
                    if let Ok(mut links) = links.lock() {
                        links.retain(|l| !l.is_finished());
                        links.push(link);
                    }
                }
            }
        });
        TcpProxy {
            addr,
            up,
            frozen,
            links,
            accept,
        }
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        if let Ok(mut links) = self.links.lock() {
            for link in links.drain(..) {
                link.abort();
            }
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Holds every byte in both directions, on open and new connections alike.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Delivers what was held and lets traffic flow again.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A PostgreSQL server of a test's own (initdb into a temporary directory, a
/// free port), for what the shared server must not be changed for: TLS
/// settings, outages. It listens on 127.0.0.1 and 127.0.0.2 (a second name for
/// certificate checks). Stopped and deleted on drop.
pub struct PrivatePostgres {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: std::path::PathBuf,
    pg_ctl: std::path::PathBuf,
    as_postgres: bool,
}

impl PrivatePostgres {
    /// Starts a server. `ssl` is (certificate PEM, key PEM) to serve TLS with;
    /// `hba` is the whole pg_hba.conf.
    pub fn start(ssl: Option<(&str, &str)>, hba: &str) -> PrivatePostgres {
        let bin = postgres_bin_dir();
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!("kc-pg-{}", uuid::Uuid::new_v4().simple()));
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        if as_postgres {
            // The server refuses to run as root.
            run(std::process::Command::new("chown").arg("postgres").arg(&dir));
        }
        let cmd = |program: &std::path::Path| {
            let mut c = if as_postgres {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                std::process::Command::new(program)
            };
            c.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            c
        };
        run(cmd(&bin.join("initdb")).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ]));
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1,127.0.0.2'\nunix_socket_directories = '{}'\nfsync = off\n",
            dir.display()
        );
        if let Some((cert, key)) = ssl {
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = data.join(name);
                std::fs::write(&path, pem).expect("write TLS file");
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
                if as_postgres {
                    run(std::process::Command::new("chown").arg("postgres").arg(&path));
                }
            }
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        append(&data.join("postgresql.conf"), &conf);
        std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
        let pg_ctl = bin.join("pg_ctl");
        run(cmd(&pg_ctl)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-t", "30", "start"]));
        PrivatePostgres {
            port,
            dir,
            pg_ctl,
            as_postgres,
        }
    }

    /// A URL for user postgres, database postgres.
    pub fn url(&self) -> String {
        format!("postgres://postgres@localhost:{}/postgres", self.port)
    }

    fn pg_ctl(&self) -> std::process::Command {
        let mut c = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&self.pg_ctl);
            c
        } else {
            std::process::Command::new(&self.pg_ctl)
        };
        c.arg("-D")
            .arg(self.dir.join("data"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    }

    /// Stops the server at once, as a crash would (connections are cut;
    /// committed work survives). [`PrivatePostgres::restart`] brings it back.
    pub fn stop(&self) {
        run(self.pg_ctl().args(["-m", "immediate", "-w", "stop"]));
    }

    /// Starts a stopped server again on the same port; returns once it accepts connections.
    pub fn restart(&self) {
        run(self
            .pg_ctl()
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "30", "start"]));
    }

    /// Stops every process of the server with SIGSTOP: connections stay open and
    /// new ones complete their handshake in the kernel, but nothing answers.
    pub fn freeze(&self) {
        assert!(
            self.signal("STOP"),
            "cannot freeze the server in {}",
            self.dir.display()
        );
    }

    /// Resumes a frozen server: what was sent meanwhile is read and run now.
    pub fn thaw(&self) {
        assert!(
            self.signal("CONT"),
            "cannot thaw the server in {}",
            self.dir.display()
        );
    }

    /// Sends `signal` to the postmaster first (it forks no new backend while
    /// stopped), then to its children. False when no server runs.
    fn signal(&self, signal: &str) -> bool {
        let pid_file =
            std::fs::read_to_string(self.dir.join("data").join("postmaster.pid")).unwrap_or_default();
        let Some(postmaster) = pid_file.lines().next().map(str::trim).filter(|p| !p.is_empty()) else {
            return false;
        };
        let mut pids = vec![postmaster.to_owned()];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if ppid == Some(postmaster) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .args(&pids)
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // A frozen server would not act on the stop signal.
        self.signal("CONT");
        let _ = self.pg_ctl().args(["-m", "immediate", "-w", "stop"]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn postgres_bin_dir() -> std::path::PathBuf {
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    found
        .pop()
        .expect("no initdb under /usr/lib/postgresql: install the postgresql package")
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn run(cmd: &mut std::process::Command) {
    let status = cmd.status().expect("run a PostgreSQL tool");
    assert!(status.success(), "{cmd:?} failed");
}

fn append(path: &std::path::Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open postgresql.conf");
    f.write_all(text.as_bytes()).expect("append postgresql.conf");
}
