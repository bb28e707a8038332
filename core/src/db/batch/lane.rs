//! A lane: waits for work, takes a connection and then a batch, runs its
//! statement with a deadline and a timeout, and answers every request of it.

use super::queue::{Inner, Reply};
use super::{Batch, Deadline, Source};
use crate::db::{DbError, Shed};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub(super) async fn run<B: Batch>(inner: Arc<Inner<B>>) {
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
                inner.metrics.error(&e);
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
                let timed_out = DbError::Down(why);
                inner.metrics.error(&timed_out);
                items.iter().map(|_| Err(timed_out.clone())).collect()
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
        let metrics = &inner.metrics;
        metrics.statements.inc();
        metrics.items.inc_by(items.len() as u64);
        metrics.batch_size.observe(items.len() as f64);
        let started = Instant::now();
        let outcome = inner.batch.run(conn, items, deadline).await;
        metrics
            .statement_duration
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &outcome {
            metrics.error(e);
        }
        match outcome {
            Ok(outputs) if outputs.len() == items.len() => outputs.into_iter().map(Ok).collect(),
            Ok(_) => all(DbError::Other(
                "a batch returned the wrong number of results".into(),
            )),
            Err(DbError::BadValue(_)) if items.len() > 1 => {
                metrics.splits.inc();
                let (left, right) = items.split_at(items.len() / 2);
                let mut results = run_isolating(inner, conn, left, deadline).await;
                results.extend(run_isolating(inner, conn, right, deadline).await);
                results
            }
            Err(e) => all(e),
        }
    })
}
