//! The `heads` scenario: clients that open connections and send request heads
//! slowly or never finish them (a slowloris), against the release binary with
//! no load balancer in front (as any pod can reach a task in Kubernetes).
//!
//! - At `MAX_CONNECTIONS=20`, twenty connections that each sent one byte of a
//!   head and stopped must not delay a fresh request past a second: at the cap,
//!   heads a second old are reclaimed like idle connections.
//! - At the default cap (1,024), 1,024 connections each holding a head just
//!   under the 56 KiB limit, unfinished, must keep the task under 128 MB of
//!   resident memory: the head buffer is bounded (it was hyper's ~400 KB default,
//!   0.53 MB per connection measured, 550 MB at the cap).

use crate::task::Task;
use crate::Suite;
use kc_testing::fakes::PrivatePostgres;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const HBA: &str = "local all all trust\nhost all all 127.0.0.1/32 trust\n";
const SCENARIO: &str = "heads";
/// The longest head a task takes (`HEAD_MAX_BYTES`, just under the ALB's 64 KiB).
const HEAD_MAX: usize = 56 * 1024;
/// Connections at the default `MAX_CONNECTIONS`.
const CAP: usize = 1024;

/// Opens `n` connections to `task` and sends `head` on each, keeping them open.
async fn hold(task: &Task, n: usize, head: &[u8]) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let Ok(mut c) = TcpStream::connect(task.addr).await else {
            break;
        };
        if c.write_all(head).await.is_err() {
            break;
        }
        held.push(c);
    }
    held
}

pub async fn heads(suite: &mut Suite) {
    let server = tokio::task::block_in_place(|| PrivatePostgres::start(None, HBA));
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port);

    // Twenty one-byte heads at a cap of twenty.
    let task = Task::start(
        &suite.bin("issuance"),
        &url,
        &[("MAX_CONNECTIONS", "20"), ("LOG_LEVEL", "warn")],
        &suite.log("heads-cap-20"),
    )
    .await;
    let held = hold(&task, 20, b"G").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let started = Instant::now();
    let status = task.get("/health/live").await;
    let waited = started.elapsed();
    suite.report.check(
        SCENARIO,
        "MAX_CONNECTIONS=20, 20 one-byte heads held: a fresh GET /health/live answered in",
        format!("{:.1} ms ({status:?})", waited.as_secs_f64() * 1000.0),
        "≤ 1,000 ms, 200",
        status == Some(200) && waited <= Duration::from_secs(1),
    );
    drop(held);
    task.stop().await;

    // 1,024 heads of just under 64 KiB, never finished, at the default cap.
    let mut task = Task::start(
        &suite.bin("issuance"),
        &url,
        &[("LOG_LEVEL", "warn")],
        &suite.log("heads-cap-1024"),
    )
    .await;
    let base = task.peak_rss_mb();
    let mut head = b"GET /health/live HTTP/1.1\r\nHost: fault-suite\r\nX-Pad: ".to_vec();
    head.resize(HEAD_MAX - 64, b'a');
    let held = hold(&task, CAP, &head).await;
    // Let the task read what was sent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak = task.peak_rss_mb();
    suite.report.note(
        SCENARIO,
        "connections holding an unfinished 56 KiB head",
        held.len(),
    );
    suite.report.check(
        SCENARIO,
        "1,024 unfinished 56 KiB heads: peak RSS",
        format!("{peak:.1} MB (from {base:.1} MB)"),
        "≤ 128 MB",
        held.len() == CAP && peak <= 128.0,
    );
    drop(held);
    let alive = task.alive();
    suite
        .report
        .check(SCENARIO, "task still running", alive, "true", alive);
    task.stop().await;
    drop(server);
}
