//! Coalescing with admission control: requests that arrive while a statement
//! is in flight wait in a bounded queue and go to the database together, as ONE
//! statement, when a lane is free. There is no timer: a lone request finds an
//! idle lane and goes at once.
//!
//! One statement for N requests saves N-1 round trips, parses, executor starts
//! and, for inserts, commits (WAL flushes), which is how a task can serve more
//! credentials per second than PostgreSQL runs single statements.
//!
//! What a task takes on is bounded, and a request that cannot be served is told
//! so at once (503, `Retry-After`) instead of waiting:
//!
//! - at most `DB_QUEUE_MAX` requests wait; one more is shed ([`Shed::QueueFull`]),
//!   or, if another owner (client or address) holds a larger share of the
//!   queue, that owner's newest request is shed in its place: one client's
//!   flood cannot make another client's requests fail;
//! - a request whose statement has not started within `DB_QUEUE_TIMEOUT_MS` is
//!   shed ([`Shed::QueueTimeout`]); so is every request while the database is
//!   believed down ([`Shed::DatabaseDown`], see [`super::monitor`]);
//! - a request whose client disconnected leaves the queue at once: its item is
//!   never put into a statement;
//! - a statement carries a deadline ([`Deadline`]), `DB_STATEMENT_TIMEOUT_MS`
//!   after it starts; a lane waits for its answer until [`DEADLINE_GRACE`]
//!   after that, then answers 503, reports the database down and drops the
//!   connection. Writes pass the deadline to the server, which refuses to
//!   store anything once it has passed, so such a 503 means "not stored".
//!
//! A shed request was never sent; only a request in a statement can have been
//! stored, and then its answer is the statement's.
//!
//! A value the database refuses (a data exception) fails the statement it is
//! in; the batch is split in halves until the refused item is alone, so k bad
//! items in a batch of n cost at most about 2·k·log2(n) statements.

//!
//! Files: this one holds the coalescer's interface (the [`Batch`] and
//! [`Source`] traits, [`Limits`], [`Coalescer::submit`] and its admission
//! checks); `queue.rs` the queue and its bookkeeping (taking a batch,
//! leaving, shedding and counting); `lane.rs` the lanes that run the
//! statements (deadline, timeout, splitting on a refused value); `tests.rs`
//! the tests, with a stand-in batch and no database.

mod lane;
mod queue;
#[cfg(test)]
mod tests;

use super::{DbError, DbMetrics, Monitor, Pool, Shed, Statements};
use crate::config::Config;
use queue::Inner;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;

/// How long after its [`Deadline`] a lane still waits for a statement's answer
/// (capped at the statement timeout itself). It covers the commit that follows
/// the server's last deadline check and a clock difference between task and
/// server; a 503 after it means the statement did not store anything, unless
/// the server stalled for longer than this in the middle of its commit.
pub const DEADLINE_GRACE: Duration = Duration::from_millis(500);

/// The moment, on the wall clock, after which a statement must not store
/// anything: its client stops waiting soon after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub SystemTime);

/// Where a lane gets the connection its statement runs on: the pool in
/// production, a stand-in in the coalescer's own tests.
pub trait Source: Send + Sync + 'static {
    /// A checked-out connection; dropping it gives it back.
    type Conn: Send + Sync;
    /// Checks a connection out.
    fn get(&self) -> impl Future<Output = Result<Self::Conn, DbError>> + Send;
    /// Gives back a connection that must not be reused (a statement on it timed out).
    fn discard(&self, conn: Self::Conn);
}

/// One kind of statement that can serve many requests at once.
pub trait Batch: Send + Sync + 'static {
    /// Where its connections come from.
    type Source: Source;
    /// What one request contributes.
    type Item: Send + Sync + 'static;
    /// What one request gets back.
    type Output: Send + 'static;

    /// Runs one statement (or as few as possible) for `items` on `conn`; returns
    /// one output per item, in the same order. A statement that writes must not
    /// store anything once `deadline` has passed.
    fn run(
        &self,
        conn: &<Self::Source as Source>::Conn,
        items: &[Self::Item],
        deadline: Deadline,
    ) -> impl Future<Output = Result<Vec<Self::Output>, DbError>> + Send;
}

/// How much a coalescer takes on, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Statements in flight at once (`DB_BATCH_LANES`).
    pub lanes: usize,
    /// Requests one statement may carry (`DB_BATCH_MAX`).
    pub batch_max: usize,
    /// Requests that may wait for a statement (`DB_QUEUE_MAX`).
    pub queue_max: usize,
    /// How long a request may wait before its statement starts (`DB_QUEUE_TIMEOUT_MS`).
    pub queue_timeout: Duration,
    /// How long a statement may take (`DB_STATEMENT_TIMEOUT_MS`): its [`Deadline`].
    pub statement_timeout: Duration,
}

impl Limits {
    /// The limits `config` sets.
    pub fn new(config: &Config) -> Self {
        Limits {
            lanes: config.db_batch_lanes,
            batch_max: config.db_batch_max,
            queue_max: config.db_queue_max,
            queue_timeout: config.db_queue_timeout,
            statement_timeout: config.db_statement_timeout,
        }
    }

    /// How long a lane waits for a statement's answer.
    fn answer_timeout(&self) -> Duration {
        self.statement_timeout + DEADLINE_GRACE.min(self.statement_timeout)
    }
}

/// Counters of what a coalescer did since it started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Statements run (each half of a split batch counts).
    pub statements: u64,
    /// Requests put into statements (a request in a split batch counts once per statement).
    pub items: u64,
    /// Requests shed because the queue was full.
    pub shed_queue_full: u64,
    /// Requests shed because their statement did not start in time.
    pub shed_queue_timeout: u64,
    /// Requests shed because the database was believed down.
    pub shed_database_down: u64,
    /// Requests whose client left while they waited; never sent.
    pub left_queue: u64,
    /// Batches split because the database refused a value in them.
    pub splits: u64,
}

/// Hands requests to `lanes` workers, each running one batch at a time on a
/// connection from its [`Source`].
pub struct Coalescer<B: Batch> {
    inner: Arc<Inner<B>>,
}

impl<B: Batch> Coalescer<B> {
    /// Starts `limits.lanes` workers.
    pub fn new(
        source: B::Source,
        monitor: Monitor,
        metrics: Arc<DbMetrics>,
        batch: B,
        limits: Limits,
    ) -> Self {
        let limits = Limits {
            lanes: limits.lanes.max(1),
            batch_max: limits.batch_max.max(1),
            queue_max: limits.queue_max.max(1),
            ..limits
        };
        let inner = Arc::new(Inner::new(batch, source, monitor, metrics, limits));
        for _ in 0..limits.lanes {
            tokio::spawn(lane::run(inner.clone()));
        }
        Coalescer { inner }
    }

    /// Queues `item` and waits for its result, or sheds it (see the module
    /// docs); all such items count as one owner's.
    pub async fn submit(&self, item: B::Item) -> Result<B::Output, DbError> {
        self.submit_as(0, item).await
    }

    /// Queues `item` of `owner` (a client, or a source address) and waits for
    /// its result, or sheds it. When the queue is full, the owner with the
    /// largest share of it is shed first (see `queue.rs`).
    pub async fn submit_as(&self, owner: u64, item: B::Item) -> Result<B::Output, DbError> {
        let inner = &*self.inner;
        if inner.monitor.is_down() {
            return Err(inner.shed(Shed::DatabaseDown));
        }
        let (reply, answer) = oneshot::channel();
        let ticket = match inner.enqueue(owner, item, reply) {
            Ok(ticket) => ticket,
            Err(e) => return Err(e),
        };
        inner.wake.notify_one();
        // If this future is dropped (the client disconnected), the guard takes
        // the entry out of the queue.
        let mut waiting = Waiting {
            inner,
            ticket: Some(ticket),
        };
        let mut answer = answer;
        let result = match tokio::time::timeout(inner.limits.queue_timeout, &mut answer).await {
            Ok(result) => result,
            Err(_) if inner.leave(ticket) => {
                waiting.ticket = None;
                return Err(inner.shed(Shed::QueueTimeout));
            }
            // A lane took it just in time: its statement started, and the lane
            // answers within the statement timeout and grace.
            Err(_) => answer.await,
        };
        waiting.ticket = None;
        result.unwrap_or_else(|_| Err(dropped()))
    }

    /// Queues `items` of `owner` (a bulk request's) and waits for their results,
    /// in order. Each item counts in its owner's share of the queue and, once
    /// queued, is timed out as if it had come alone. At most a window of them
    /// waits at once (two statements' worth, never more than half the queue),
    /// which keeps the next statement ready while one runs and leaves room for
    /// everyone else.
    ///
    /// A full queue holds the rest back instead of shedding them: the bulk waits
    /// for its own items' answers, or, with none queued, for a lane to make
    /// room, up to `DB_QUEUE_TIMEOUT_MS`; only then is an item shed. So many
    /// concurrent bulk requests are served in turn, while another owner's
    /// requests still get in (and, queued, may push a flooding owner's newest
    /// out, as for single requests). While the database is believed down, every
    /// item not yet queued is shed at once. Dropping the future takes its
    /// waiting items out of the queue.
    pub async fn submit_many(&self, owner: u64, items: Vec<B::Item>) -> Vec<Result<B::Output, DbError>> {
        let inner = &*self.inner;
        let limits = &inner.limits;
        let window = (limits.queue_max / 2).clamp(1, 2 * limits.batch_max);
        let mut results = Vec::with_capacity(items.len());
        let mut items = items.into_iter();
        // An item the full queue gave back, and since when it waits for room.
        let mut held: Option<(B::Item, tokio::time::Instant)> = None;
        let mut waiting = WaitingMany {
            inner,
            entries: VecDeque::with_capacity(window),
        };
        loop {
            let room = inner.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            // Top the window up; the lanes start on the first items at once.
            let before = waiting.entries.len();
            while waiting.entries.len() < window {
                let Some((item, since)) = held
                    .take()
                    .or_else(|| items.next().map(|i| (i, tokio::time::Instant::now())))
                else {
                    break;
                };
                if inner.monitor.is_down() {
                    // In the window, so the answers stay in order.
                    waiting
                        .entries
                        .push_back((None, Err(inner.shed(Shed::DatabaseDown)), since));
                    continue;
                }
                let (reply, answer) = oneshot::channel();
                match inner.try_enqueue(owner, item, reply) {
                    Ok(ticket) => {
                        let deadline = tokio::time::Instant::now() + limits.queue_timeout;
                        waiting.entries.push_back((Some(ticket), Ok(answer), deadline));
                    }
                    Err(queue::NotQueued::Full(item)) => {
                        held = Some((item, since));
                        break;
                    }
                    Err(queue::NotQueued::Failed(e)) => waiting.entries.push_back((None, Err(e), since)),
                }
            }
            if waiting.entries.len() > before {
                inner.wake.notify_one();
            }
            let Some((ticket, answer, deadline)) = waiting.entries.front_mut() else {
                let Some((item, since)) = held.take() else {
                    return results;
                };
                // The queue is full of others' requests: wait for room, or shed.
                if tokio::time::timeout_at(since + limits.queue_timeout, room)
                    .await
                    .is_ok()
                {
                    held = Some((item, since));
                } else {
                    results.push(Err(inner.shed(Shed::QueueFull)));
                }
                continue;
            };
            let result = match answer {
                Err(e) => Err(e.clone()),
                Ok(answer) => match tokio::time::timeout_at(*deadline, &mut *answer).await {
                    Ok(result) => result.unwrap_or_else(|_| Err(dropped())),
                    Err(_) if ticket.is_some_and(|t| inner.leave(t)) => Err(inner.shed(Shed::QueueTimeout)),
                    Err(_) => answer.await.unwrap_or_else(|_| Err(dropped())),
                },
            };
            waiting.entries.pop_front();
            results.push(result);
        }
    }

    /// What this coalescer did so far.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Requests waiting now.
    pub fn queued(&self) -> usize {
        self.inner.queued()
    }
}

impl<S: Statements, B: Batch<Source = Pool<S>>> Coalescer<B> {
    /// A coalescer over `pool`, reporting to its monitor and its metrics, with
    /// the limits `config` sets.
    pub fn on_pool(pool: &Pool<S>, batch: B, config: &Config) -> Self {
        Coalescer::new(
            pool.clone(),
            pool.monitor().clone(),
            pool.metrics().clone(),
            batch,
            Limits::new(config),
        )
    }
}

impl<B: Batch> Drop for Coalescer<B> {
    fn drop(&mut self) {
        // Lanes hold the source; let them go so its connections close.
        self.inner.closed.store(true, Ordering::Release);
        self.inner.wake.notify_waiters();
    }
}

/// The answer to a request whose lane went away without answering it.
fn dropped() -> DbError {
    DbError::Unavailable("the batch was dropped".into())
}

/// A bulk request's items in its window: ticket (None once answered or never
/// queued), the answer to wait for (or the error it was refused with at once),
/// and when it stops waiting.
type Windowed<B> = (
    Option<u64>,
    Result<oneshot::Receiver<Result<<B as Batch>::Output, DbError>>, DbError>,
    tokio::time::Instant,
);

/// Takes a bulk request's waiting entries out of the queue when its future is
/// dropped before their answers (its client disconnected).
struct WaitingMany<'a, B: Batch> {
    inner: &'a Inner<B>,
    entries: VecDeque<Windowed<B>>,
}

impl<B: Batch> Drop for WaitingMany<'_, B> {
    fn drop(&mut self) {
        for (ticket, ..) in &self.entries {
            if ticket.is_some_and(|t| self.inner.leave(t)) {
                self.inner.metrics.left_queue.inc();
            }
        }
    }
}

/// Takes a waiting request's entry out of the queue when its future is
/// dropped before an answer (its client disconnected).
struct Waiting<'a, B: Batch> {
    inner: &'a Inner<B>,
    ticket: Option<u64>,
}

impl<B: Batch> Drop for Waiting<'_, B> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket {
            if self.inner.leave(ticket) {
                self.inner.metrics.left_queue.inc();
            }
        }
    }
}
