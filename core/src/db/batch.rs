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
//! - at most `DB_QUEUE_MAX` requests wait; one more is shed ([`Shed::QueueFull`]);
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

use super::{DbError, Monitor, Shed};
use crate::config::Config;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{oneshot, Notify};

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

#[derive(Default)]
struct Counters {
    statements: AtomicU64,
    items: AtomicU64,
    shed_queue_full: AtomicU64,
    shed_queue_timeout: AtomicU64,
    shed_database_down: AtomicU64,
    left_queue: AtomicU64,
    splits: AtomicU64,
    /// Sheds counted in the last "shedding" log line, and when the next may be
    /// written (milliseconds since the coalescer started).
    logged_sheds: AtomicU64,
    next_log_ms: AtomicU64,
}

type Reply<B> = oneshot::Sender<Result<<B as Batch>::Output, DbError>>;

struct Entry<B: Batch> {
    /// Increasing: the queue stays sorted by ticket, so a leaving request finds
    /// its entry by binary search.
    ticket: u64,
    item: B::Item,
    reply: Reply<B>,
    queued_at: Instant,
}

struct Queue<B: Batch> {
    entries: VecDeque<Entry<B>>,
    next_ticket: u64,
}

struct Inner<B: Batch> {
    batch: B,
    source: B::Source,
    monitor: Monitor,
    limits: Limits,
    queue: Mutex<Queue<B>>,
    wake: Notify,
    closed: AtomicBool,
    counters: Counters,
    started: Instant,
}

/// Hands requests to `lanes` workers, each running one batch at a time on a
/// connection from its [`Source`].
pub struct Coalescer<B: Batch> {
    inner: Arc<Inner<B>>,
}

impl<B: Batch> Coalescer<B> {
    /// Starts `limits.lanes` workers.
    pub fn new(source: B::Source, monitor: Monitor, batch: B, limits: Limits) -> Self {
        let limits = Limits {
            lanes: limits.lanes.max(1),
            batch_max: limits.batch_max.max(1),
            queue_max: limits.queue_max.max(1),
            ..limits
        };
        let inner = Arc::new(Inner {
            batch,
            source,
            monitor,
            limits,
            queue: Mutex::new(Queue {
                entries: VecDeque::with_capacity(limits.queue_max.min(4096)),
                next_ticket: 0,
            }),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
            started: Instant::now(),
        });
        for _ in 0..limits.lanes {
            tokio::spawn(lane(inner.clone()));
        }
        Coalescer { inner }
    }

    /// Queues `item` and waits for its result, or sheds it (see the module docs).
    pub async fn submit(&self, item: B::Item) -> Result<B::Output, DbError> {
        let inner = &*self.inner;
        if inner.monitor.is_down() {
            return Err(inner.shed(Shed::DatabaseDown));
        }
        let (reply, answer) = oneshot::channel();
        let ticket = {
            let Ok(mut queue) = inner.queue.lock() else {
                return Err(DbError::Other("batch queue poisoned".into()));
            };
            if queue.entries.len() >= inner.limits.queue_max {
                drop(queue);
                return Err(inner.shed(Shed::QueueFull));
            }
            let ticket = queue.next_ticket;
            queue.next_ticket += 1;
            queue.entries.push_back(Entry {
                ticket,
                item,
                reply,
                queued_at: Instant::now(),
            });
            ticket
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
        result.unwrap_or_else(|_| Err(DbError::Unavailable("the batch was dropped".into())))
    }

    /// What this coalescer did so far.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        Stats {
            statements: get(&c.statements),
            items: get(&c.items),
            shed_queue_full: get(&c.shed_queue_full),
            shed_queue_timeout: get(&c.shed_queue_timeout),
            shed_database_down: get(&c.shed_database_down),
            left_queue: get(&c.left_queue),
            splits: get(&c.splits),
        }
    }

    /// Requests waiting now.
    pub fn queued(&self) -> usize {
        self.inner.queue.lock().map_or(0, |q| q.entries.len())
    }
}

impl<B: Batch> Drop for Coalescer<B> {
    fn drop(&mut self) {
        // Lanes hold the source; let them go so its connections close.
        self.inner.closed.store(true, Ordering::Release);
        self.inner.wake.notify_waiters();
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
                self.inner.counters.left_queue.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<B: Batch> Inner<B> {
    /// Takes the entry with `ticket` out of the queue; false when a lane took it first.
    fn leave(&self, ticket: u64) -> bool {
        let Ok(mut queue) = self.queue.lock() else {
            return false;
        };
        match queue.entries.binary_search_by_key(&ticket, |e| e.ticket) {
            Ok(at) => queue.entries.remove(at).is_some(),
            Err(_) => false,
        }
    }

    fn is_queue_empty(&self) -> bool {
        self.queue.lock().map_or(true, |q| q.entries.is_empty())
    }

    /// Counts a shed request and, at most once a second, logs how many there were.
    fn shed(&self, why: Shed) -> DbError {
        let c = &self.counters;
        match why {
            Shed::QueueFull => &c.shed_queue_full,
            Shed::QueueTimeout => &c.shed_queue_timeout,
            Shed::DatabaseDown => &c.shed_database_down,
        }
        .fetch_add(1, Ordering::Relaxed);
        let now_ms = self.started.elapsed().as_millis() as u64;
        let next = c.next_log_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && c.next_log_ms
                .compare_exchange(next, now_ms + 1000, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let total = c.shed_queue_full.load(Ordering::Relaxed)
                + c.shed_queue_timeout.load(Ordering::Relaxed)
                + c.shed_database_down.load(Ordering::Relaxed);
            let since = total - c.logged_sheds.swap(total, Ordering::Relaxed);
            log::warn!(
                target: "db",
                shed = since,
                reason = why.as_str(),
                queue_full_total = c.shed_queue_full.load(Ordering::Relaxed),
                queue_timeout_total = c.shed_queue_timeout.load(Ordering::Relaxed),
                database_down_total = c.shed_database_down.load(Ordering::Relaxed);
                "shedding requests: answered 503 without sending them to the database"
            );
        }
        DbError::Shed(why)
    }

    /// Takes up to `batch_max` entries for a statement that starts now. Those
    /// that waited too long are shed instead; those whose client left are dropped.
    fn take_batch(&self) -> Vec<Entry<B>> {
        let Ok(mut queue) = self.queue.lock() else {
            return Vec::new();
        };
        let mut batch = Vec::with_capacity(queue.entries.len().min(self.limits.batch_max));
        let mut late = Vec::new();
        while batch.len() < self.limits.batch_max {
            let Some(entry) = queue.entries.pop_front() else {
                break;
            };
            if entry.reply.is_closed() {
                self.counters.left_queue.fetch_add(1, Ordering::Relaxed);
            } else if entry.queued_at.elapsed() > self.limits.queue_timeout {
                late.push(entry);
            } else {
                batch.push(entry);
            }
        }
        let more = !queue.entries.is_empty();
        drop(queue);
        for entry in late {
            let _ = entry.reply.send(Err(self.shed(Shed::QueueTimeout)));
        }
        // More than one statement's worth is waiting: wake another lane.
        if more {
            self.wake.notify_one();
        }
        batch
    }

    /// Answers every queued request with `error` (the database is down).
    fn fail_queued(&self, error: &DbError) {
        let entries: Vec<Entry<B>> = match self.queue.lock() {
            Ok(mut queue) => queue.entries.drain(..).collect(),
            Err(_) => return,
        };
        for entry in entries {
            let result = match error {
                DbError::Shed(why) => Err(self.shed(*why)),
                other => Err(other.clone()),
            };
            let _ = entry.reply.send(result);
        }
    }
}

async fn lane<B: Batch>(inner: Arc<Inner<B>>) {
    loop {
        // Wait for work. The wake-up is registered before the checks, so a
        // notify between them (new work, or the coalescer dropped) is not lost.
        {
            let woken = inner.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if inner.closed.load(Ordering::Acquire) {
                return;
            }
            if inner.is_queue_empty() {
                woken.await;
                continue;
            }
        }
        if inner.monitor.is_down() {
            inner.fail_queued(&DbError::Shed(Shed::DatabaseDown));
            continue;
        }
        // A connection first, so the batch is taken when its statement can
        // start; given up on when the database is found down meanwhile.
        let conn = tokio::select! {
            conn = inner.source.get() => conn,
            () = inner.monitor.wait_down() => Err(DbError::Shed(Shed::DatabaseDown)),
        };
        let conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                if let DbError::Down(why) = &e {
                    inner.monitor.report_down(why);
                }
                inner.fail_queued(&e);
                continue;
            }
        };
        let batch = inner.take_batch();
        if batch.is_empty() {
            continue;
        }
        let (items, replies): (Vec<B::Item>, Vec<Reply<B>>) =
            batch.into_iter().map(|e| (e.item, e.reply)).unzip();
        let deadline = Deadline(SystemTime::now() + inner.limits.statement_timeout);
        let results = match tokio::time::timeout(
            inner.limits.answer_timeout(),
            run_isolating(&inner, &conn, &items, deadline),
        )
        .await
        {
            Ok(results) => {
                if let Some(Err(DbError::Down(why))) =
                    results.iter().find(|r| matches!(r, Err(DbError::Down(_))))
                {
                    inner.monitor.report_down(why);
                }
                results
            }
            Err(_) => {
                // The server may be frozen with the statement in its socket:
                // never reuse this connection.
                inner.source.discard(conn);
                let why = format!(
                    "no answer within {} ms (statement timeout and grace)",
                    inner.limits.answer_timeout().as_millis()
                );
                inner.monitor.report_down(&why);
                items.iter().map(|_| Err(DbError::Down(why.clone()))).collect()
            }
        };
        for (reply, result) in replies.into_iter().zip(results) {
            // The request may have gone (client disconnected): nothing to do.
            let _ = reply.send(result);
        }
    }
}

type Results<B> = Vec<Result<<B as Batch>::Output, DbError>>;

/// One result per item. A value the database refuses (a data exception) fails
/// the whole statement; then the batch is halved, recursively, until each
/// refused item is alone and only its owner gets the 400.
fn run_isolating<'a, B: Batch>(
    inner: &'a Inner<B>,
    conn: &'a <B::Source as Source>::Conn,
    items: &'a [B::Item],
    deadline: Deadline,
) -> Pin<Box<dyn Future<Output = Results<B>> + Send + 'a>> {
    Box::pin(async move {
        let all = |e: DbError| items.iter().map(|_| Err(e.clone())).collect();
        inner.counters.statements.fetch_add(1, Ordering::Relaxed);
        inner
            .counters
            .items
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        match inner.batch.run(conn, items, deadline).await {
            Ok(outputs) if outputs.len() == items.len() => outputs.into_iter().map(Ok).collect(),
            Ok(_) => all(DbError::Other(
                "a batch returned the wrong number of results".into(),
            )),
            Err(DbError::BadValue(_)) if items.len() > 1 => {
                inner.counters.splits.fetch_add(1, Ordering::Relaxed);
                let (left, right) = items.split_at(items.len() / 2);
                let mut results = run_isolating(inner, conn, left, deadline).await;
                results.extend(run_isolating(inner, conn, right, deadline).await);
                results
            }
            Err(e) => all(e),
        }
    })
}

#[cfg(test)]
mod tests {
    //! The coalescer's own logic with a stand-in batch: numbers in, doubles
    //! out, negative numbers refused as a database would refuse a bad value.
    //! The real statements are tested against PostgreSQL in the service crates.

    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::watch;

    /// Hands out `()` as a connection, or an error once told to.
    #[derive(Default)]
    struct Conns {
        discarded: AtomicUsize,
        refuse: Mutex<Option<DbError>>,
    }

    impl Source for Arc<Conns> {
        type Conn = ();
        async fn get(&self) -> Result<(), DbError> {
            match self.refuse.lock().ok().and_then(|r| r.clone()) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
        fn discard(&self, _conn: ()) {
            self.discarded.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Doubler {
        conns: Arc<Conns>,
        /// Every statement's items, recorded as it starts.
        runs: Arc<Mutex<Vec<Vec<i64>>>>,
        /// Statements wait while this is false.
        open: watch::Receiver<bool>,
        /// Returns one output too few.
        short: bool,
        /// Held by the lanes (through the coalescer's inner state), to see them end.
        _alive: Arc<()>,
    }

    impl Batch for Doubler {
        type Source = Arc<Conns>;
        type Item = i64;
        type Output = i64;

        async fn run(&self, _conn: &(), items: &[i64], _deadline: Deadline) -> Result<Vec<i64>, DbError> {
            if let Ok(mut runs) = self.runs.lock() {
                runs.push(items.to_vec());
            }
            let mut open = self.open.clone();
            let _ = open.wait_for(|open| *open).await;
            if items.iter().any(|n| *n < 0) {
                return Err(DbError::BadValue("negative".into()));
            }
            let skip = usize::from(self.short);
            Ok(items.iter().skip(skip).map(|n| n * 2).collect())
        }
    }

    struct Harness {
        coalescer: Arc<Coalescer<Doubler>>,
        monitor: Monitor,
        conns: Arc<Conns>,
        runs: Arc<Mutex<Vec<Vec<i64>>>>,
        gate: watch::Sender<bool>,
        alive: Arc<()>,
    }

    const LONG: Duration = Duration::from_secs(30);

    fn limits() -> Limits {
        Limits {
            lanes: 1,
            batch_max: 256,
            queue_max: 256,
            queue_timeout: LONG,
            statement_timeout: LONG,
        }
    }

    fn harness(limits: Limits, open: bool, short: bool) -> Harness {
        let (gate, open_rx) = watch::channel(open);
        let conns = Arc::new(Conns::default());
        let runs = Arc::new(Mutex::new(Vec::new()));
        let alive = Arc::new(());
        let monitor = Monitor::new();
        let batch = Doubler {
            conns: conns.clone(),
            runs: runs.clone(),
            open: open_rx,
            short,
            _alive: alive.clone(),
        };
        let coalescer = Arc::new(Coalescer::new(
            batch.conns.clone(),
            monitor.clone(),
            batch,
            limits,
        ));
        Harness {
            coalescer,
            monitor,
            conns,
            runs,
            gate,
            alive,
        }
    }

    impl Harness {
        fn submit(&self, n: i64) -> tokio::task::JoinHandle<Result<i64, DbError>> {
            let coalescer = self.coalescer.clone();
            tokio::spawn(async move { coalescer.submit(n).await })
        }

        fn runs(&self) -> Vec<Vec<i64>> {
            self.runs.lock().map(|r| r.clone()).unwrap_or_default()
        }

        /// Waits until `statements` statements have started and `queued` requests wait.
        async fn settle(&self, statements: usize, queued: usize) {
            for _ in 0..1000 {
                if self.runs().len() == statements && self.coalescer.queued() == queued {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            panic!(
                "expected {statements} statements and {queued} queued, got {:?} and {}",
                self.runs(),
                self.coalescer.queued()
            );
        }

        /// Starts a statement for one request and holds it there: the lane is busy.
        async fn plug(&self) -> tokio::task::JoinHandle<Result<i64, DbError>> {
            let plug = self.submit(1000);
            self.settle(1, 0).await;
            plug
        }
    }

    fn shed(result: Result<i64, DbError>) -> Option<Shed> {
        match result {
            Err(DbError::Shed(why)) => Some(why),
            _ => None,
        }
    }

    #[tokio::test]
    async fn requests_that_arrive_during_a_statement_share_the_next_one() {
        let h = harness(limits(), false, false);
        let plug = h.plug().await;
        let waiting: Vec<_> = (0..100).map(|n| h.submit(n)).collect();
        h.settle(1, 100).await;
        h.gate.send_replace(true);
        assert_eq!(plug.await.unwrap().unwrap(), 2000);
        for (n, w) in waiting.into_iter().enumerate() {
            assert_eq!(w.await.unwrap().unwrap(), 2 * n as i64);
        }
        let runs = h.runs();
        assert_eq!(runs.len(), 2, "one statement for the plug, one for the hundred");
        assert_eq!(runs[1], (0..100).collect::<Vec<i64>>());
        assert_eq!(h.coalescer.stats().statements, 2);
    }

    #[tokio::test]
    async fn a_full_queue_sheds_the_next_request_at_once() {
        let h = harness(
            Limits {
                queue_max: 3,
                ..limits()
            },
            false,
            false,
        );
        let plug = h.plug().await;
        let waiting: Vec<_> = (0..3).map(|n| h.submit(n)).collect();
        h.settle(1, 3).await;
        let started = Instant::now();
        assert_eq!(shed(h.coalescer.submit(99).await), Some(Shed::QueueFull));
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );
        h.gate.send_replace(true);
        plug.await.unwrap().unwrap();
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        assert!(
            !h.runs().concat().contains(&99),
            "a shed request reached a statement"
        );
        assert_eq!(h.coalescer.stats().shed_queue_full, 1);
    }

    #[tokio::test]
    async fn a_request_whose_statement_does_not_start_in_time_is_shed_and_never_run() {
        let timeout = Duration::from_millis(60);
        let h = harness(
            Limits {
                queue_timeout: timeout,
                ..limits()
            },
            false,
            false,
        );
        let plug = h.plug().await;
        let started = Instant::now();
        assert_eq!(shed(h.coalescer.submit(7).await), Some(Shed::QueueTimeout));
        let waited = started.elapsed();
        assert!(waited >= timeout && waited < timeout * 5, "{waited:?}");
        assert_eq!(h.coalescer.queued(), 0, "it left the queue");
        h.gate.send_replace(true);
        plug.await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(h.runs(), [vec![1000]]);
        assert_eq!(h.coalescer.stats().shed_queue_timeout, 1);
    }

    #[tokio::test]
    async fn a_request_whose_client_left_leaves_the_queue_and_is_never_run() {
        let h = harness(limits(), false, false);
        let plug = h.plug().await;
        let gone = h.submit(7);
        let stays = h.submit(8);
        h.settle(1, 2).await;
        gone.abort();
        let _ = gone.await;
        assert_eq!(h.coalescer.queued(), 1, "the aborted request left at once");
        h.gate.send_replace(true);
        plug.await.unwrap().unwrap();
        assert_eq!(stays.await.unwrap().unwrap(), 16);
        assert_eq!(h.runs(), [vec![1000], vec![8]]);
        assert_eq!(h.coalescer.stats().left_queue, 1);
    }

    #[tokio::test]
    async fn while_the_database_is_down_requests_are_shed_and_queued_ones_answered() {
        let h = harness(limits(), false, false);
        let plug = h.plug().await;
        let queued = h.submit(5);
        h.settle(1, 1).await;
        h.monitor.report_down("test");
        let started = Instant::now();
        assert_eq!(shed(h.coalescer.submit(6).await), Some(Shed::DatabaseDown));
        assert!(started.elapsed() < Duration::from_millis(50));
        // The plug's statement finishes; the lane then answers the queue instead of running it.
        h.gate.send_replace(true);
        plug.await.unwrap().unwrap();
        assert_eq!(shed(queued.await.unwrap()), Some(Shed::DatabaseDown));
        assert_eq!(h.runs(), [vec![1000]]);
        // Back up: served again.
        h.monitor.report_up();
        assert_eq!(h.coalescer.submit(4).await.unwrap(), 8);
    }

    #[tokio::test]
    async fn a_lane_waiting_for_a_connection_gives_up_when_the_database_goes_down() {
        let h = harness(limits(), true, false);
        *h.conns.refuse.lock().unwrap() = Some(DbError::Down("refused".into()));
        let started = Instant::now();
        assert!(matches!(h.coalescer.submit(1).await, Err(DbError::Down(_))));
        assert!(started.elapsed() < Duration::from_millis(50));
        assert!(h.monitor.is_down(), "a failed connect is reported");
        assert!(h.runs().is_empty());
    }

    #[tokio::test]
    async fn a_statement_without_an_answer_times_out_and_its_connection_is_not_reused() {
        let timeout = Duration::from_millis(80);
        let h = harness(
            Limits {
                statement_timeout: timeout,
                ..limits()
            },
            false,
            false,
        );
        let started = Instant::now();
        let result = h.coalescer.submit(3).await;
        let waited = started.elapsed();
        assert!(matches!(result, Err(DbError::Down(_))), "{result:?}");
        // The statement timeout, plus the grace (capped at the timeout itself).
        assert!(
            waited >= timeout * 2 && waited < timeout * 2 + Duration::from_millis(200),
            "{waited:?}"
        );
        assert_eq!(h.conns.discarded.load(Ordering::SeqCst), 1);
        assert!(h.monitor.is_down());
    }

    #[tokio::test]
    async fn a_refused_value_is_isolated_by_halving_in_a_few_statements() {
        let h = harness(limits(), false, false);
        let plug = h.plug().await;
        let bad = [3i64, 40, 41];
        let waiting: Vec<_> = (0..64)
            .map(|n| h.submit(if bad.contains(&n) { -n } else { n }))
            .collect();
        h.settle(1, 64).await;
        h.gate.send_replace(true);
        plug.await.unwrap().unwrap();
        for (n, w) in waiting.into_iter().enumerate() {
            let n = n as i64;
            match w.await.unwrap() {
                Ok(out) => assert_eq!(out, 2 * n),
                Err(DbError::BadValue(_)) => assert!(bad.contains(&n), "{n} refused"),
                Err(e) => panic!("{n}: {e}"),
            }
        }
        let statements = h.runs().len() - 1;
        // log2(64) = 6 levels; at most two statements per level per bad value.
        assert!(
            statements <= 2 * 3 * 6 + 1,
            "{statements} statements for 64 items"
        );
        assert!(statements < 64, "no better than one at a time");
        assert!(h.coalescer.stats().splits > 0);
    }

    #[tokio::test]
    async fn a_batch_that_returns_the_wrong_number_of_results_fails_every_request() {
        let h = harness(limits(), true, true);
        assert!(matches!(h.coalescer.submit(1).await, Err(DbError::Other(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lanes_end_when_the_coalescer_is_dropped_even_right_after_a_batch() {
        // Dropping races the lane going back to sleep after answering; a
        // wake-up lost there would leave the lane (and its pool) alive forever.
        for round in 0..2000 {
            let h = harness(Limits { lanes: 2, ..limits() }, true, false);
            assert_eq!(h.coalescer.submit(round).await.unwrap(), 2 * round);
            let Harness { coalescer, alive, .. } = h;
            drop(coalescer);
            let mut ended = false;
            for _ in 0..500 {
                if Arc::strong_count(&alive) == 1 {
                    ended = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert!(ended, "round {round}: a lane outlived its coalescer");
        }
    }
}
