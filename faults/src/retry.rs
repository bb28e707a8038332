//! Clients that retry as the contract tells them to: each issues credentials
//! one after another, every one with an `Idempotency-Key` of its own, and
//! sends it again with the same key and body after a 503 (waiting its
//! `Retry-After`) or no answer at all, until another answer comes. What each
//! credential was answered, attempt by attempt, is kept for the figures.

use crate::load::{FAILED, TIMED_OUT};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One answer: its status (or [`TIMED_OUT`], [`FAILED`]) and whether it said
/// `Idempotent-Replayed: true`.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub status: u16,
    pub replayed: bool,
}

/// One credential a client issued, and every answer it got for it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub seq: u64,
    pub answers: Vec<Answer>,
}

impl Issued {
    /// Answered 201 exactly once, and that was the last answer.
    pub fn one_201(&self) -> bool {
        self.answers.iter().filter(|a| a.status == 201).count() == 1
            && self.answers.last().is_some_and(|a| a.status == 201)
    }
}

/// How the clients send.
pub struct Retrying {
    pub addr: SocketAddr,
    pub path: &'static str,
    /// The API key (`Authorization: Bearer`).
    pub key: String,
    /// The body of credential `seq`.
    pub body: Arc<dyn Fn(u64) -> String + Send + Sync>,
    /// How many clients.
    pub clients: usize,
    /// A client starts its next credential this long after the last one started.
    pub every: Duration,
    /// A client stops retrying a credential this long after its first attempt.
    pub give_up: Duration,
    /// One attempt's own limit.
    pub timeout: Duration,
}

/// Runs the clients from `start`; none starts a credential after `duration`,
/// each finishes (or gives up) the one it has. Every credential, in no order.
pub async fn run(r: Arc<Retrying>, start: Instant, duration: Duration) -> Vec<Issued> {
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..r.clients {
        tasks.spawn(client_loop(r.clone(), client, start, duration));
    }
    let mut all = Vec::new();
    while let Some(issued) = tasks.join_next().await {
        all.extend(issued.unwrap_or_default());
    }
    all
}

async fn client_loop(r: Arc<Retrying>, client: usize, start: Instant, duration: Duration) -> Vec<Issued> {
    let mut issued = Vec::new();
    // Client c issues c, c + clients, c + 2·clients, ...: numbers never repeat.
    let mut seq = client as u64;
    // Spread the clients' first requests over one period.
    let mut next = start + r.every.mul_f64(client as f64 / r.clients as f64);
    while next.duration_since(start) < duration {
        tokio::time::sleep_until(next.into()).await;
        issued.push(one(&r, seq).await);
        seq += r.clients as u64;
        next = (next + r.every).max(Instant::now());
    }
    issued
}

/// Issues credential `seq`, retrying with the same key until an answer that is
/// neither a 503 nor a failure, or until [`Retrying::give_up`].
async fn one(r: &Retrying, seq: u64) -> Issued {
    let body = (r.body)(seq);
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: fault-suite\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Idempotency-Key: retry-{seq}\r\nContent-Length: {}\r\n\r\n{body}",
        r.path,
        r.key,
        body.len()
    );
    let first = Instant::now();
    let mut answers = Vec::new();
    loop {
        let answer = exchange(r.addr, &request, r.timeout).await;
        answers.push(answer);
        let again = matches!(answer.status, 503 | TIMED_OUT | FAILED);
        if !again || first.elapsed() >= r.give_up {
            return Issued { seq, answers };
        }
        // The 503's Retry-After is 1 s; a failure waits as long.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Sends `request` on a connection of its own and reads the answer's head.
async fn exchange(addr: SocketAddr, request: &str, timeout: Duration) -> Answer {
    let attempt = async {
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            return Answer {
                status: FAILED,
                replayed: false,
            };
        };
        if stream.write_all(request.as_bytes()).await.is_err() {
            return Answer {
                status: FAILED,
                replayed: false,
            };
        }
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(FAILED);
        Answer {
            status,
            replayed: text.contains("\r\nidempotent-replayed: true\r\n"),
        }
    };
    tokio::time::timeout(timeout, attempt).await.unwrap_or(Answer {
        status: TIMED_OUT,
        replayed: false,
    })
}
