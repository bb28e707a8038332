//! An HTTP/1.1 load generator that records every request: open loop (requests
//! are due at a fixed rate whatever the answers do, as independent clients
//! behind a load balancer send them) or closed loop (a fixed number of clients,
//! each sending its next request when the last is answered).
//!
//! Open-loop latency is measured from when a request was due, not from when it
//! could be sent, so a stalled server cannot hide its stall by slowing the
//! generator down (no coordinated omission).
//!
//! It shares two cores with the service and PostgreSQL, so it is lean: one task
//! per connection writing each request whole from a reused buffer and reading
//! just enough of the answer (status, `Content-Length`, `Connection: close`),
//! and samples kept per connection until the end. (A hyper client took three
//! times the CPU per request and left too little for the task under test.)

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// No answer within the client's timeout.
pub const TIMED_OUT: u16 = 0;
/// The connection failed (refused, reset, closed) before an answer.
pub const FAILED: u16 = 1;

/// One request and its outcome.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Which stream sent it.
    pub stream: usize,
    /// Its number within the stream (what the stream's body was built from).
    pub seq: u64,
    /// When it was due (open loop) or sent (closed loop), since the run began.
    pub sent: Duration,
    /// From `sent` to the last byte of the answer (or to the failure).
    pub took: Duration,
    /// The HTTP status, or [`TIMED_OUT`] or [`FAILED`].
    pub status: u16,
}

impl Sample {
    /// When the answer (or failure) came, since the run began.
    pub fn answered(&self) -> Duration {
        self.sent + self.took
    }
}

/// How a stream's requests are paced.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// This many requests a second, due at even intervals.
    Open { per_second: f64 },
    /// This many clients, each waiting for its answer before the next request.
    Closed { clients: usize },
}

/// Builds the body of request number `seq`.
pub type Body = Arc<dyn Fn(u64) -> String + Send + Sync>;
/// Whether a stream sends at this moment of the run (e.g. poison only in some windows).
pub type Active = Arc<dyn Fn(Duration) -> bool + Send + Sync>;

/// Requests of one kind to one address.
#[derive(Clone)]
pub struct Stream {
    pub addr: SocketAddr,
    pub path: &'static str,
    pub shape: Shape,
    pub body: Body,
    pub active: Option<Active>,
    /// The API key sent as `Authorization: Bearer`, if any.
    pub key: Option<Arc<str>>,
}

impl Stream {
    /// A POST stream of JSON bodies.
    pub fn post(
        addr: SocketAddr,
        path: &'static str,
        shape: Shape,
        body: impl Fn(u64) -> String + Send + Sync + 'static,
    ) -> Self {
        Stream {
            addr,
            path,
            shape,
            body: Arc::new(body),
            active: None,
            key: None,
        }
    }

    /// Sends `key` with every request (`Authorization: Bearer`).
    pub fn with_key(mut self, key: &str) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sends only while `active(time since the run began)` holds.
    pub fn when(mut self, active: impl Fn(Duration) -> bool + Send + Sync + 'static) -> Self {
        self.active = Some(Arc::new(active));
        self
    }

    fn is_active(&self, at: Duration) -> bool {
        self.active.as_ref().is_none_or(|active| active(at))
    }

    /// Writes request `seq` whole into `out`.
    fn request(&self, seq: u64, out: &mut Vec<u8>) {
        let body = (self.body)(seq);
        out.clear();
        out.extend_from_slice(b"POST ");
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: fault-suite\r\nContent-Type: application/json\r\n");
        if let Some(key) = &self.key {
            out.extend_from_slice(b"Authorization: Bearer ");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body.as_bytes());
    }
}

/// Most connections one open-loop stream opens; past it, due requests wait for
/// one (and their wait counts in their latency).
const MAX_CONNECTIONS: usize = 4000;

/// One keep-alive connection and its buffers.
struct Client {
    conn: Option<TcpStream>,
    addr: SocketAddr,
    request: Vec<u8>,
    answer: Vec<u8>,
}

impl Client {
    fn new(addr: SocketAddr) -> Self {
        Client {
            conn: None,
            addr,
            request: Vec::with_capacity(512),
            answer: Vec::with_capacity(2048),
        }
    }

    /// Sends request `seq` of `stream` (stream number `index`), due at `sent`
    /// since `start`, and waits for its answer at most `limit`.
    async fn sample(
        &mut self,
        index: usize,
        stream: &Stream,
        seq: u64,
        sent: Duration,
        start: Instant,
        limit: Duration,
    ) -> Sample {
        stream.request(seq, &mut self.request);
        let status = match tokio::time::timeout(limit, self.exchange()).await {
            Ok(status) => status,
            Err(_) => {
                self.conn = None;
                TIMED_OUT
            }
        };
        Sample {
            stream: index,
            seq,
            sent,
            took: start.elapsed().saturating_sub(sent),
            status,
        }
    }

    /// Sends the request in `self.request` and reads its answer: the status,
    /// or [`FAILED`]. The connection is dropped after a failure or a
    /// `Connection: close`, and opened again for the next request.
    async fn exchange(&mut self) -> u16 {
        if self.conn.is_none() {
            match TcpStream::connect(self.addr).await {
                Ok(conn) => {
                    let _ = conn.set_nodelay(true);
                    self.conn = Some(conn);
                }
                Err(_) => return FAILED,
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return FAILED;
        };
        if conn.write_all(&self.request).await.is_err() {
            self.conn = None;
            return FAILED;
        }
        self.answer.clear();
        let mut head_end = None;
        loop {
            if let Some((end, status, length, close)) = head_end {
                if self.answer.len() >= end + length {
                    if close {
                        self.conn = None;
                    }
                    return status;
                }
            }
            if self.answer.len() == self.answer.capacity() {
                self.answer.reserve(self.answer.len());
            }
            let spare = self.answer.len();
            // Read into the spare capacity.
            self.answer.resize(self.answer.capacity(), 0);
            let read = conn.read(&mut self.answer[spare..]).await;
            let n = match read {
                Ok(n) if n > 0 => n,
                _ => {
                    self.conn = None;
                    return FAILED;
                }
            };
            self.answer.truncate(spare + n);
            if head_end.is_none() {
                head_end = parse_head(&self.answer);
            }
        }
    }
}

/// (end of head, status, Content-Length, Connection: close) once the head is complete.
fn parse_head(buf: &[u8]) -> Option<(usize, u16, usize, bool)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let status = head.get(9..12)?.parse().ok()?;
    let mut length = 0;
    let mut close = false;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok()?;
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.trim().eq_ignore_ascii_case("close");
        }
    }
    Some((end, status, length, close))
}

/// Runs `streams` for `duration` from `start`, each request bounded by
/// `timeout`, and returns every sample once the last answer is in.
pub async fn run(streams: Vec<Stream>, start: Instant, duration: Duration, timeout: Duration) -> Vec<Sample> {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, stream) in streams.into_iter().enumerate() {
        match stream.shape {
            Shape::Open { per_second } => {
                tasks.spawn(open_loop(index, stream, per_second, start, duration, timeout));
            }
            Shape::Closed { clients } => {
                for client in 0..clients {
                    tasks.spawn(closed_loop(
                        index,
                        stream.clone(),
                        (client, clients),
                        start,
                        duration,
                        timeout,
                    ));
                }
            }
        }
    }
    let mut all = Vec::new();
    while let Some(samples) = tasks.join_next().await {
        all.extend(samples.unwrap_or_default());
    }
    all.sort_by_key(|s| (s.sent, s.stream, s.seq));
    all
}

/// One request due at `sent`, and the way back to the idle stack for the
/// connection that runs it.
struct Job {
    seq: u64,
    sent: Duration,
    back: mpsc::Sender<Job>,
}

/// The senders of idle connections; None once the run is over.
type Idle = Arc<Mutex<Option<Vec<mpsc::Sender<Job>>>>>;

async fn open_loop(
    index: usize,
    stream: Stream,
    per_second: f64,
    start: Instant,
    duration: Duration,
    timeout: Duration,
) -> Vec<Sample> {
    let stream = Arc::new(stream);
    let idle: Idle = Arc::new(Mutex::new(Some(Vec::new())));
    let mut connections = tokio::task::JoinSet::new();
    // Due requests that found no idle connection at the cap: (seq, sent).
    let mut backlog = std::collections::VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut launched: u64 = 0;
    loop {
        tick.tick().await;
        let now = start.elapsed();
        let due = (now.min(duration).as_secs_f64() * per_second) as u64;
        while launched < due {
            let seq = launched;
            launched += 1;
            let sent = Duration::from_secs_f64(seq as f64 / per_second);
            if stream.is_active(sent) {
                backlog.push_back((seq, sent));
            }
        }
        while let Some((seq, sent)) = backlog.pop_front() {
            let popped = idle
                .lock()
                .ok()
                .and_then(|mut idle| idle.as_mut().and_then(Vec::pop));
            let back = match popped {
                Some(back) => back,
                None if connections.len() < MAX_CONNECTIONS => {
                    let (back, jobs) = mpsc::channel(1);
                    connections.spawn(connection(
                        index,
                        stream.clone(),
                        jobs,
                        idle.clone(),
                        start,
                        timeout,
                    ));
                    back
                }
                None => {
                    backlog.push_front((seq, sent));
                    break;
                }
            };
            // An idle connection waits for exactly this: the send succeeds.
            let _ = back.clone().try_send(Job { seq, sent, back });
        }
        if now >= duration && backlog.is_empty() {
            break;
        }
    }
    // Dropping the idle senders ends the idle connections; busy ones end after
    // their job, as they find the stack gone.
    if let Ok(mut idle) = idle.lock() {
        *idle = None;
    }
    let mut all = Vec::new();
    while let Some(samples) = connections.join_next().await {
        all.extend(samples.unwrap_or_default());
    }
    all
}

/// One open-loop connection: runs the jobs it is handed and, after each, puts
/// its sender back on the idle stack.
async fn connection(
    index: usize,
    stream: Arc<Stream>,
    mut jobs: mpsc::Receiver<Job>,
    idle: Idle,
    start: Instant,
    timeout: Duration,
) -> Vec<Sample> {
    let mut client = Client::new(stream.addr);
    let mut samples = Vec::new();
    while let Some(Job { seq, sent, back }) = jobs.recv().await {
        // Bounded from when it was due: a request sent late has less time.
        let left = timeout.saturating_sub(start.elapsed().saturating_sub(sent));
        samples.push(client.sample(index, &stream, seq, sent, start, left).await);
        match idle.lock() {
            Ok(mut stack) => match stack.as_mut() {
                Some(stack) => stack.push(back),
                None => break,
            },
            Err(_) => break,
        }
    }
    samples
}

async fn closed_loop(
    index: usize,
    stream: Stream,
    (client, clients): (usize, usize),
    start: Instant,
    duration: Duration,
    timeout: Duration,
) -> Vec<Sample> {
    let mut conn = Client::new(stream.addr);
    let mut samples = Vec::new();
    // Client c sends requests c, c + clients, c + 2·clients, ...: numbers never repeat.
    let mut seq = client as u64;
    loop {
        let sent = start.elapsed();
        if sent >= duration {
            return samples;
        }
        if !stream.is_active(sent) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let sample = conn.sample(index, &stream, seq, sent, start, timeout).await;
        samples.push(sample);
        if sample.status == FAILED {
            // A refused connection fails at once: do not spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seq += clients as u64;
    }
}
