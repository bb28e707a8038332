//! The command line every service binary shares: `serve` (the default),
//! `migrate`, `clients` (API clients and keys, `auth::admin`), `healthcheck` (the container's health check, for an image
//! without curl), `--version` and `--help`.

use super::server::{migrate_once, serve, shutdown_signal};
use super::Endpoint;
use crate::config::Config;
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::TcpListener;

const USAGE: &str = "usage: SERVICE [serve|migrate|clients|healthcheck|--version|--help]
  serve         serve HTTP on PORT (the default)
  migrate       apply the database migrations, then exit
  clients       manage API clients and their keys (SERVICE clients --help)
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
        Some("clients") => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            return clients::<E>(&args);
        }
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
        // Metrics are not what the task is for: without their port it still serves.
        let metrics_addr = std::net::SocketAddr::new(config.bind_addr, config.metrics_port);
        let metrics = match TcpListener::bind(metrics_addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                log::error!(target: "startup", addr:% = metrics_addr, error:% = e; "cannot listen for /metrics (METRICS_PORT); serving without metrics");
                None
            }
        };
        serve::<E>(config, listener, metrics, shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// `SERVICE clients …`: manage API clients. Keys go to stdout and nowhere else;
/// everything else (and every error) to stderr.
fn clients<E: Endpoint>(args: &[String]) -> ExitCode {
    use crate::auth::admin::{self, AdminError, Command};
    let usage = admin::USAGE.replace("SERVICE", E::SERVICE);
    if args.is_empty() || matches!(args[0].as_str(), "--help" | "-h" | "help") {
        println!("{usage}");
        return if args.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let command = match admin::parse(args) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("{} clients: {why}\n{usage}", E::SERVICE);
            return ExitCode::from(2);
        }
    };
    if command == Command::Keygen {
        return match crate::auth::keys::generate() {
            Ok(key) => {
                println!(
                    "key={key}\nsha256={}",
                    crate::auth::keys::KeyHash::of(&key).to_hex()
                );
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("{} clients keygen: {why}", E::SERVICE);
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", E::SERVICE);
            return ExitCode::from(2);
        }
    };
    runtime(1).block_on(async {
        let result = async {
            let mut db = crate::db::connect_once(&config).await?;
            crate::migrate::run(&mut db).await?;
            match command {
                Command::Add(client, hash) => {
                    let given = hash.is_some();
                    let key = admin::add(&mut db, &client, hash).await?;
                    match key {
                        Some(key) => println!("{key}"),
                        None if given => eprintln!("client {:?} added with the given key", client.name),
                        None => {}
                    }
                    eprintln!(
                        "client {:?} ({}) added; every task accepts its key within 1 s",
                        client.name,
                        client.role.as_str()
                    );
                }
                Command::Revoke(name) => {
                    if !admin::revoke(&mut db, &name).await? {
                        return Err(AdminError::Invalid(format!("no live client named {name:?}")));
                    }
                    eprintln!("client {name:?} revoked; every task refuses its keys within 1 s");
                }
                Command::List => {
                    println!("name\trole\tcredential_types\trate_limit\tkeys\tcreated_at\trevoked_at");
                    for c in admin::list(&db).await? {
                        println!(
                            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                            c.name,
                            c.role,
                            if c.credential_types.is_empty() {
                                "*".into()
                            } else {
                                c.credential_types.join(",")
                            },
                            c.rate_limit.map_or("default".into(), |r| r.to_string()),
                            c.keys,
                            crate::time::rfc3339_millis(c.created_at),
                            c.revoked_at.map_or(String::new(), crate::time::rfc3339_millis),
                        );
                    }
                }
                Command::Keygen => {}
            }
            Ok::<(), AdminError>(())
        }
        .await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e @ AdminError::Invalid(_)) => {
                eprintln!("{} clients: {e}", E::SERVICE);
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("{} clients: {e}", E::SERVICE);
                ExitCode::FAILURE
            }
        }
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
