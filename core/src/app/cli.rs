//! The command line every service binary shares: `serve` (the default),
//! `migrate`, `healthcheck` (the container's health check, for an image
//! without curl), `--version` and `--help`.

use super::server::{migrate_once, serve, shutdown_signal};
use super::Endpoint;
use crate::config::Config;
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::TcpListener;

const USAGE: &str = "usage: SERVICE [serve|migrate|healthcheck|--version|--help]
  serve         serve HTTP on PORT (the default)
  migrate       apply the database migrations, then exit
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
