//! A PostgreSQL server of a test's own, for what the shared server must not be
//! changed for: TLS settings, stops and stalls, and a streaming replica of it.

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
        let port = free_port();
        if as_postgres {
            // The server refuses to run as root.
            run(std::process::Command::new("chown").arg("postgres").arg(&dir));
        }
        let cmd = |program: &std::path::Path| tool(program, as_postgres);
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

    /// A streaming replica of this server (a hot standby): `pg_basebackup -R`
    /// into a temporary directory, started on a free port; stopped and deleted
    /// on drop. This server's pg_hba.conf must admit `replication` connections
    /// from 127.0.0.1 for user postgres.
    pub fn replica(&self) -> PrivatePostgres {
        let bin = self
            .pg_ctl
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(postgres_bin_dir);
        let dir = std::env::temp_dir().join(format!("kc-pg-{}", uuid::Uuid::new_v4().simple()));
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).expect("temp dir");
        if self.as_postgres {
            run(std::process::Command::new("chown").arg("postgres").arg(&dir));
        }
        let port = free_port();
        run(tool(&bin.join("pg_basebackup"), self.as_postgres)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-D",
            ])
            .arg(&data)
            .args(["-R", "-X", "stream", "-c", "fast"]));
        // The copied postgresql.conf names the primary's port and socket directory: later lines win.
        append(
            &data.join("postgresql.conf"),
            &format!(
                "port = {port}\nunix_socket_directories = '{}'\nhot_standby = on\n",
                dir.display()
            ),
        );
        let replica = PrivatePostgres {
            port,
            dir,
            pg_ctl: self.pg_ctl.clone(),
            as_postgres: self.as_postgres,
        };
        replica.restart();
        replica
    }

    /// A URL for user postgres, database postgres.
    pub fn url(&self) -> String {
        format!("postgres://postgres@localhost:{}/postgres", self.port)
    }

    fn pg_ctl(&self) -> std::process::Command {
        let mut c = tool(&self.pg_ctl, self.as_postgres);
        c.arg("-D").arg(self.dir.join("data"));
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `program`, as the postgres user when the tests run as root (the server
/// refuses to run as root), its output discarded.
fn tool(program: &std::path::Path, as_postgres: bool) -> std::process::Command {
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
