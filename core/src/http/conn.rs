//! Connections: the accept loop, keep-alive and slow-client timeouts, and
//! graceful shutdown.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection sits
//! idle between requests, so it would close the ALB's idle connections after
//! 30 s and the ALB would answer 502 on them. Instead each connection has a
//! watchdog that tells idle time (`HTTP_KEEP_ALIVE_SECONDS`, longer than the
//! ALB's 60 s) from time spent receiving a request head (`HTTP_HEADER_TIMEOUT_MS`).

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
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

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

/// Resolves when the connection has been idle, or slow sending a head, for too long.
async fn watchdog(activity: Arc<Activity>, t: Timeouts) {
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

/// Accepts connections on `listener` and serves each with `handle` until
/// `shutdown` resolves; then stops accepting, lets in-flight requests finish
/// (at most `t.grace`), and returns.
pub(crate) async fn serve_connections<H, F>(
    listener: TcpListener,
    t: Timeouts,
    handle: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<http_body_util::Full<bytes::Bytes>>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.keep_alive(true);
    let slots = Arc::new(Semaphore::new(t.max_connections));
    tokio::pin!(shutdown);
    loop {
        // A slot first: at the cap, stop accepting rather than grow memory.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                log::warn!(target: "http", max_connections = t.max_connections; "connection limit reached: not accepting until a connection closes");
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    log::warn!(target: "http", error:% = e; "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
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
        let service = service_fn(move |req| {
            on_request.set(Phase::Busy);
            let on_done = on_request.clone();
            let response = handle(req);
            async move {
                let response = response.await;
                on_done.set(Phase::Idle);
                Ok::<_, Infallible>(response)
            }
        });
        let conn = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            tokio::select! {
                result = conn => if let Err(e) = result {
                    log::debug!(target: "http", error:% = e; "connection ended with an error");
                },
                () = watchdog(activity, t) => {}
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
