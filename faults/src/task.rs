//! One service task: the release binary in a process of its own, as ECS runs
//! it, so its memory can be read and its survival checked.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// A running service binary.
pub struct Task {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Task {
    /// Starts `bin` (a service binary) against `database_url` with extra
    /// environment `vars`, its output in `log`, and waits until its `/health`
    /// answers 200.
    pub async fn start(bin: &Path, database_url: &str, vars: &[(&str, &str)], log: &Path) -> Task {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let out = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let name = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut command = Command::new(bin);
        command
            .env_clear()
            .env("DATABASE_URL", database_url)
            .env("PORT", port.to_string())
            .env("BIND_ADDR", "127.0.0.1")
            .env("WORKER_ID", format!("fault-{name}"))
            .env("DB_SSLMODE", "disable")
            .env("METRICS_PORT", "0")
            .env("LOG_FORMAT", "json")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (build it first)", bin.display()));
        let task = Task {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if task.get("/health").await == Some(200) {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name} did not become healthy within 15 s; see {}", log.display());
    }

    /// GETs `path`; the status, or None without an answer within a second.
    pub async fn get(&self, path: &str) -> Option<u16> {
        self.status_of(format!(
            "GET {path} HTTP/1.1\r\nHost: fault-suite\r\nConnection: close\r\n\r\n"
        ))
        .await
    }

    /// POSTs the JSON `body` to `path` with `key` (`Authorization: Bearer`);
    /// the status, or None without an answer within a second.
    pub async fn post(&self, path: &str, body: &str, key: &str) -> Option<u16> {
        self.status_of(format!(
            "POST {path} HTTP/1.1\r\nHost: fault-suite\r\nConnection: close\r\n\
             Authorization: Bearer {key}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
        .await
    }

    /// Waits until the task accepts `key` on `path` (it loads new clients
    /// within 250 ms): an empty body then gets 400, not 401 or 503.
    pub async fn wait_key(&self, path: &str, key: &str) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if self.post(path, "{}", key).await == Some(400) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the task at {} did not accept a new key within 5 s", self.addr);
    }

    /// Sends `request` on a connection of its own; the answer's status.
    async fn status_of(&self, request: String) -> Option<u16> {
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(self.addr).await.ok()?;
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).await.ok()?;
            std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
        };
        tokio::time::timeout(Duration::from_secs(1), exchange)
            .await
            .ok()
            .flatten()
    }

    /// The process's peak resident memory so far (VmHWM), in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        self.status_kb("VmHWM:") / 1024.0
    }

    fn status_kb(&self, field: &str) -> f64 {
        let Some(pid) = self.child.id() else {
            return 0.0;
        };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
            .unwrap_or(0.0)
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then waits for the exit (the task drains first).
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(25), self.child.wait()).await;
    }
}
