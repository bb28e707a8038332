//! Coalescing: requests that arrive while a statement is in flight wait in a
//! queue and go to the database together, as ONE statement, when a lane is
//! free. There is no timer: a lone request finds an idle lane and goes at once.
//!
//! One statement for N requests saves N-1 round trips, parses, executor starts
//! and, for inserts, commits (WAL flushes), which is how a task can serve more
//! credentials per second than PostgreSQL runs single statements.

use super::{Conn, DbError, Pool, Statements};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Notify};

/// One kind of statement that can serve many requests at once.
pub trait Batch: Send + Sync + 'static {
    /// The statements prepared on the connections it runs on.
    type Statements: Statements;
    /// What one request contributes.
    type Item: Send + Sync + 'static;
    /// What one request gets back.
    type Output: Send + 'static;

    /// Runs one statement (or as few as possible) for `items`; returns one output
    /// per item, in the same order.
    fn run(
        &self,
        pool: &Pool<Self::Statements>,
        conn: &Conn<Self::Statements>,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Output>, DbError>> + Send;
}

type Waiting<B> = (
    <B as Batch>::Item,
    oneshot::Sender<Result<<B as Batch>::Output, DbError>>,
);

struct Inner<B: Batch> {
    batch: B,
    pool: Pool<B::Statements>,
    queue: Mutex<Vec<Waiting<B>>>,
    wake: Notify,
    closed: AtomicBool,
    max: usize,
}

/// Hands requests to `lanes` workers, each running one batch at a time on a
/// pooled connection.
pub struct Coalescer<B: Batch> {
    inner: Arc<Inner<B>>,
}

impl<B: Batch> Coalescer<B> {
    /// Starts `lanes` workers (statements in flight at once) taking at most
    /// `max` requests per statement.
    pub fn new(pool: Pool<B::Statements>, batch: B, lanes: usize, max: usize) -> Self {
        let inner = Arc::new(Inner {
            batch,
            pool,
            queue: Mutex::new(Vec::with_capacity(max)),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            max: max.max(1),
        });
        for _ in 0..lanes.max(1) {
            tokio::spawn(lane(inner.clone()));
        }
        Coalescer { inner }
    }

    /// Queues `item` and waits for its result.
    pub async fn submit(&self, item: B::Item) -> Result<B::Output, DbError> {
        let (tx, rx) = oneshot::channel();
        match self.inner.queue.lock() {
            Ok(mut queue) => queue.push((item, tx)),
            Err(_) => return Err(DbError::Other("batch queue poisoned".into())),
        }
        self.inner.wake.notify_one();
        rx.await
            .unwrap_or_else(|_| Err(DbError::Unavailable("the batch was dropped".into())))
    }
}

impl<B: Batch> Drop for Coalescer<B> {
    fn drop(&mut self) {
        // Lanes hold the pool; let them go so its connections close.
        self.inner.closed.store(true, Ordering::Release);
        self.inner.wake.notify_waiters();
    }
}

async fn lane<B: Batch>(inner: Arc<Inner<B>>) {
    loop {
        let taken: Vec<Waiting<B>> = match inner.queue.lock() {
            Ok(mut queue) => {
                let n = queue.len().min(inner.max);
                queue.drain(..n).collect()
            }
            Err(_) => return,
        };
        if taken.is_empty() {
            if inner.closed.load(Ordering::Acquire) {
                return;
            }
            inner.wake.notified().await;
            continue;
        }
        // More may be waiting than one statement takes: wake another lane.
        if inner.queue.lock().map(|q| !q.is_empty()).unwrap_or(false) {
            inner.wake.notify_one();
        }
        let (items, replies): (Vec<_>, Vec<_>) = taken.into_iter().unzip();
        let results = run(&inner, &items).await;
        for (reply, result) in replies.into_iter().zip(results) {
            // The request may have gone (client disconnected): nothing to do.
            let _ = reply.send(result);
        }
    }
}

/// One result per item. A value the database refuses (a data exception) fails
/// the whole statement; then each item runs alone so only its owner gets the 400.
async fn run<B: Batch>(inner: &Inner<B>, items: &[B::Item]) -> Vec<Result<B::Output, DbError>> {
    let all = |e: DbError| items.iter().map(|_| Err(e.clone())).collect();
    let conn = match inner.pool.get().await {
        Ok(conn) => conn,
        Err(e) => return all(e),
    };
    match inner.batch.run(&inner.pool, &conn, items).await {
        Ok(outputs) if outputs.len() == items.len() => outputs.into_iter().map(Ok).collect(),
        Ok(_) => all(DbError::Other(
            "a batch returned the wrong number of results".into(),
        )),
        Err(DbError::BadValue(_)) if items.len() > 1 => {
            let mut results = Vec::with_capacity(items.len());
            for item in items.chunks(1) {
                results.push(match inner.batch.run(&inner.pool, &conn, item).await {
                    Ok(mut one) if one.len() == 1 => Ok(one.remove(0)),
                    Ok(_) => Err(DbError::Other(
                        "a batch returned the wrong number of results".into(),
                    )),
                    Err(e) => Err(e),
                });
            }
            results
        }
        Err(e) => all(e),
    }
}
