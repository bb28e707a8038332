//! Connections: the accept loop, keep-alive and slow-client timeouts, and
//! graceful shutdown.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection sits
//! idle between requests, so it would close the ALB's idle connections after
//! 30 s and the ALB would answer 502 on them. Instead each connection has a
//! watchdog that tells idle time (`HTTP_KEEP_ALIVE_SECONDS`, longer than the
//! ALB's 60 s) from time spent receiving a request head (`HTTP_HEADER_TIMEOUT_MS`).
//!
//! At most `MAX_CONNECTIONS` are served: past the cap one more connection is
//! accepted and waits for a slot, and the kernel's listen backlog holds the
//! rest, instead of the task's memory. Keep-alive clients would keep the slots
//! forever (a busy connection is reused at once, an idle one stays open a
//! minute), starving the waiting connections; so while one waits, the task
//! makes room, as proxies such as Envoy do under overload:
//!
//! - the next response to complete carries `Connection: close`, and its
//!   connection closes once it is written: the client knows not to reuse it,
//!   so nothing races. One response per waiting connection, not every
//!   response: closing them all would send every client back through the
//!   backlog, which under steady load never drains;
//! - connections idle for [`RECLAIM_IDLE`] or longer are closed (a client that
//!   sends on one at that very moment sees it reset; only at the cap).

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

/// At the connection cap, connections idle this long, or this long into sending
/// a request head, are closed to make room.
pub(crate) const RECLAIM_IDLE: Duration = Duration::from_secs(1);

/// Longest request head (request line and headers) a connection may send, just
/// under the ALB's own 64 KiB. A longer one gets hyper's 431 (414 for the URI
/// alone). hyper's read buffer starts at 8 KiB and grows by reserving its next
/// read size, which `Vec` rounds up by doubling: with a limit of exactly 56 KiB
/// a head that streams in grows it 8 → 24 → 56 KiB and stops, where a 64 KiB
/// limit made it double to 112 KiB on its last read (147 MB for 1,024 such
/// connections; 56 KiB keeps them near 100 MB, within a 512 MB task).
pub const HEAD_MAX_BYTES: usize = 56 * 1024;
/// How often the loop asks again while it stays at the cap.
const RECLAIM_EVERY: Duration = Duration::from_millis(250);

/// Timeouts of one connection, and how many may be open at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub header: Duration,
    pub keep_alive: Duration,
    pub grace: Duration,
    /// Past this many open connections the loop stops accepting; the kernel's
    /// listen backlog holds new ones until one closes (`MAX_CONNECTIONS`).
    pub max_connections: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of the next request.
    Idle,
    /// The first byte arrived; the head is not complete yet.
    Head,
    /// A request is being handled.
    Busy,
}

/// What a connection is doing, and since when; the watchdog is woken on every change.
struct Activity {
    state: Mutex<(Phase, Instant)>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            state: Mutex::new((Phase::Idle, Instant::now())),
            changed: Notify::new(),
        }
    }

    fn set(&self, phase: Phase) {
        if let Ok(mut state) = self.state.lock() {
            *state = (phase, Instant::now());
        }
        self.changed.notify_one();
    }

    fn read_some(&self) {
        let started_head = match self.state.lock() {
            Ok(mut state) if state.0 == Phase::Idle => {
                *state = (Phase::Head, Instant::now());
                true
            }
            _ => false,
        };
        if started_head {
            self.changed.notify_one();
        }
    }

    fn get(&self) -> (Phase, Instant) {
        self.state
            .lock()
            .map(|s| *s)
            .unwrap_or((Phase::Busy, Instant::now()))
    }
}

/// How a connection waiting for a slot makes room: by the next response
/// closing its connection, and by idle connections closing.
#[derive(Default)]
struct Pressure {
    close_next: AtomicBool,
    reclaim: Notify,
}

impl Pressure {
    /// Whether this response is the one to close its connection.
    fn take_close(&self) -> bool {
        self.close_next.load(Ordering::Relaxed) && self.close_next.swap(false, Ordering::Relaxed)
    }
}

/// At most one "connection limit reached" line per this long.
const CAP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Resolves when the connection has been idle, or slow sending a head, for too
/// long; or, when the task is at its connection cap, when it has been idle for
/// [`RECLAIM_IDLE`].
async fn watchdog(activity: Arc<Activity>, t: Timeouts, pressure: Arc<Pressure>) {
    loop {
        let (phase, since) = activity.get();
        let deadline = match phase {
            Phase::Idle => since + t.keep_alive,
            Phase::Head => since + t.header,
            // The handler bounds its own body reads; look again later.
            Phase::Busy => Instant::now() + t.header,
        };
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            () = activity.changed.notified() => continue,
            () = pressure.reclaim.notified() => {
                // A head that has taken a second is a slow client's, not a busy one's:
                // it may not hold a slot that a new connection is waiting for.
                if phase != Phase::Busy && since.elapsed() >= RECLAIM_IDLE && activity.get() == (phase, since) {
                    log::debug!(target: "http", phase:? = phase; "closing a connection to make room: at the connection cap");
                    return;
                }
                continue;
            }
        }
        if phase != Phase::Busy && activity.get() == (phase, since) {
            log::debug!(target: "http", phase:? = phase; "closing connection after timeout");
            return;
        }
    }
}

/// A TCP stream that reports reads to its connection's [`Activity`].
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read_some();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Why hyper refused a request head it could not parse (and answered 400, 414
/// or 431 itself, with an empty body): a bounded set of reasons for the
/// metrics, or None for an error that is not the head's (the client left).
pub fn framing_error(e: &hyper::Error) -> Option<&'static str> {
    if e.is_parse_too_large() {
        return Some("too_large");
    }
    if e.is_parse_version_h2() {
        return Some("http2_preface");
    }
    if !e.is_parse() && !e.is_user() {
        return None;
    }
    // hyper tells the kinds apart only in its message.
    let text = e.to_string();
    Some(
        [
            ("header", "header"),
            ("content-length", "content_length"),
            ("transfer-encoding", "transfer_encoding"),
            ("uri", "uri"),
            ("version", "version"),
            ("method", "method"),
        ]
        .iter()
        .find(|(needle, _)| text.to_ascii_lowercase().contains(needle))
        .map_or("malformed", |(_, label)| label),
    )
}

/// Accepts connections on `listener` and serves each with `handle` (given the
/// request and the connection's peer address) until
/// `shutdown` resolves; then stops accepting, lets in-flight requests finish
/// (at most `t.grace`), and returns.
pub(crate) async fn serve_connections<H, F, R>(
    listener: TcpListener,
    t: Timeouts,
    handle: H,
    rejected: R,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, std::net::SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<http_body_util::Full<bytes::Bytes>>> + Send + 'static,
    R: Fn(&'static str) + Clone + Send + Sync + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.keep_alive(true)
        .max_header_size(HEAD_MAX_BYTES)
        // Exactly the head limit: any more would let the buffer double past it.
        .max_buf_size(HEAD_MAX_BYTES);
    let slots = Arc::new(Semaphore::new(t.max_connections));
    let pressure = Arc::new(Pressure::default());
    tokio::pin!(shutdown);
    let mut cap_logged: Option<Instant> = None;
    'accept: loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    log::warn!(target: "http", error:% = e; "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break 'accept,
        };
        // Then a slot. At the cap this connection waits for one (the kernel's
        // backlog holds any others), and the task makes room (see the module
        // docs) until a slot frees.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if cap_logged.is_none_or(|at| at.elapsed() >= CAP_LOG_EVERY) {
                    cap_logged = Some(Instant::now());
                    log::warn!(target: "http", max_connections = t.max_connections; "connection limit reached: a connection waits; closing one after its response, and idle ones");
                }
                let slot = loop {
                    pressure.close_next.store(true, Ordering::Relaxed);
                    pressure.reclaim.notify_waiters();
                    tokio::select! {
                        slot = slots.clone().acquire_owned() => match slot {
                            Ok(slot) => break slot,
                            Err(_) => break 'accept,
                        },
                        () = tokio::time::sleep(RECLAIM_EVERY) => {}
                        () = &mut shutdown => break 'accept,
                    }
                };
                // A connection that ended on its own may have made the room.
                pressure.close_next.store(false, Ordering::Relaxed);
                slot
            }
        };
        // Responses are small and written whole: send them without Nagle's delay.
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            stream,
            activity: activity.clone(),
        });
        let handle = handle.clone();
        let on_request = activity.clone();
        let room = pressure.clone();
        let service = service_fn(move |req| {
            on_request.set(Phase::Busy);
            let on_done = on_request.clone();
            let room = room.clone();
            let response = handle(req, peer);
            async move {
                let mut response = response.await;
                if room.take_close() {
                    response.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                }
                on_done.set(Phase::Idle);
                Ok::<_, Infallible>(response)
            }
        });
        let conn = graceful.watch(http.serve_connection(io, service));
        let pressure = pressure.clone();
        let rejected = rejected.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = conn => if let Err(e) = result {
                    match framing_error(&e) {
                        Some(reason) => {
                            rejected(reason);
                            log::info!(target: "http", peer:% = peer, reason, error:% = e; "malformed request head refused");
                        }
                        None => log::debug!(target: "http", error:% = e; "connection ended with an error"),
                    }
                },
                () = watchdog(activity, t, pressure) => {}
            }
            drop(slot);
        });
    }
    drop(listener);
    let open = graceful.count();
    log::info!(target: "http", open_connections = open; "stopped accepting; finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => log::info!(target: "http", "all connections closed"),
        () = tokio::time::sleep(t.grace) => log::warn!(target: "http", "shutdown grace period over; closing remaining connections"),
    }
}
