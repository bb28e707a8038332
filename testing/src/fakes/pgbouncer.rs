//! A PgBouncer of a test's own in transaction mode (Debian's `pgbouncer`
//! package; the system service is never touched): a config file in a
//! temporary directory, a free port, `auth_type = trust`, in front of a server
//! the test names. For the services behind a transaction-mode pooler
//! (`DB_POOLER=transaction`), and for a pooler that refuses their startup
//! `options`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the pooler stands in front of.
pub struct Upstream<'a> {
    /// The server's host (an address: PgBouncer resolves no names here).
    pub host: &'a str,
    /// Its port.
    pub port: u16,
    /// The database on it.
    pub dbname: &'a str,
    /// Who PgBouncer logs in as (the client's own name is passed through).
    pub password: Option<&'a str>,
    /// Set on every server connection PgBouncer opens (`connect_query`): a
    /// test's schema, which a client cannot send as `options` through it.
    pub search_path: Option<&'a str>,
}

/// A running PgBouncer in transaction mode, stopped and deleted on drop. Its
/// one database is called `kc`.
pub struct PgBouncer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl PgBouncer {
    /// The `pgbouncer` binary, or None when the package is not installed (tests
    /// that need it then skip, saying so).
    pub fn binary() -> Option<PathBuf> {
        [
            "/usr/sbin/pgbouncer",
            "/usr/bin/pgbouncer",
            "/usr/local/bin/pgbouncer",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    }

    /// Starts one in front of `upstream`. `ignore_options`: accept and drop the
    /// clients' `options` (`ignore_startup_parameters = options`) instead of
    /// refusing the connection. None when PgBouncer is not installed.
    pub fn start(upstream: &Upstream<'_>, ignore_options: bool) -> Option<PgBouncer> {
        let bin = Self::binary()?;
        let dir = std::env::temp_dir().join(format!("kc-pgb-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut target = format!(
            "host={} port={} dbname={} user=postgres",
            upstream.host, upstream.port, upstream.dbname
        );
        if let Some(password) = upstream.password {
            target.push_str(&format!(" password={password}"));
        }
        if let Some(schema) = upstream.search_path {
            target.push_str(&format!(" connect_query='SET search_path TO {schema}'"));
        }
        let ignore = if ignore_options {
            "ignore_startup_parameters = options\n"
        } else {
            ""
        };
        let config = format!(
            "[databases]\nkc = {target}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = trust\nauth_file = {dir}/users.txt\npool_mode = transaction\n\
             max_client_conn = 2000\ndefault_pool_size = 20\nlogfile = {dir}/log\npidfile = {dir}/pid\n{ignore}",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), config).expect("write pgbouncer.ini");
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").expect("write users.txt");
        // PgBouncer refuses to run as root.
        let mut command = if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {} failed", dir.display());
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        let child = command
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgbouncer");
        let bouncer = PgBouncer { port, dir, child };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "pgbouncer did not listen within 10 s; see {}",
                bouncer.dir.join("log").display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(bouncer)
    }

    /// A URL of its database for user postgres (no `options`: it would refuse them).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/kc", self.port)
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // runuser's child is PgBouncer itself: stop it by its pid file first.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let _ = Command::new("kill")
                .arg(pid.trim())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}
