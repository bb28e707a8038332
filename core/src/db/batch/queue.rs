//! The queue of requests waiting for a statement, and its bookkeeping: taking
//! a batch for a lane, a request leaving, shedding and counting.

use super::{Batch, Limits, Stats};
use crate::db::{DbError, Monitor, Shed};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::{oneshot, Notify};

#[derive(Default)]
pub(super) struct Counters {
    pub(super) statements: AtomicU64,
    pub(super) items: AtomicU64,
    pub(super) shed_queue_full: AtomicU64,
    pub(super) shed_queue_timeout: AtomicU64,
    pub(super) shed_database_down: AtomicU64,
    pub(super) left_queue: AtomicU64,
    pub(super) splits: AtomicU64,
    /// Sheds counted in the last "shedding" log line, and when the next may be
    /// written (milliseconds since the coalescer started).
    pub(super) logged_sheds: AtomicU64,
    pub(super) next_log_ms: AtomicU64,
}

pub(super) type Reply<B> = oneshot::Sender<Result<<B as Batch>::Output, DbError>>;

pub(super) struct Entry<B: Batch> {
    /// Increasing: the queue stays sorted by ticket, so a leaving request finds
    /// its entry by binary search.
    pub(super) ticket: u64,
    pub(super) item: B::Item,
    pub(super) reply: Reply<B>,
    pub(super) queued_at: Instant,
}

pub(super) struct Queue<B: Batch> {
    pub(super) entries: VecDeque<Entry<B>>,
    pub(super) next_ticket: u64,
}

pub(super) struct Inner<B: Batch> {
    pub(super) batch: B,
    pub(super) source: B::Source,
    pub(super) monitor: Monitor,
    pub(super) limits: Limits,
    pub(super) queue: Mutex<Queue<B>>,
    pub(super) wake: Notify,
    pub(super) closed: AtomicBool,
    pub(super) counters: Counters,
    pub(super) started: Instant,
}

impl<B: Batch> Inner<B> {
    pub(super) fn new(batch: B, source: B::Source, monitor: Monitor, limits: Limits) -> Self {
        Inner {
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
        }
    }

    /// Queues `item`, whose answer goes to `reply`; its ticket, or the error to
    /// answer at once (the queue is full: shed).
    pub(super) fn enqueue(&self, item: B::Item, reply: Reply<B>) -> Result<u64, DbError> {
        let Ok(mut queue) = self.queue.lock() else {
            return Err(DbError::Other("batch queue poisoned".into()));
        };
        if queue.entries.len() >= self.limits.queue_max {
            drop(queue);
            return Err(self.shed(Shed::QueueFull));
        }
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.entries.push_back(Entry {
            ticket,
            item,
            reply,
            queued_at: Instant::now(),
        });
        Ok(ticket)
    }

    pub(super) fn stats(&self) -> Stats {
        let c = &self.counters;
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

    pub(super) fn queued(&self) -> usize {
        self.queue.lock().map_or(0, |q| q.entries.len())
    }

    /// Takes the entry with `ticket` out of the queue; false when a lane took it first.
    pub(super) fn leave(&self, ticket: u64) -> bool {
        let Ok(mut queue) = self.queue.lock() else {
            return false;
        };
        match queue.entries.binary_search_by_key(&ticket, |e| e.ticket) {
            Ok(at) => queue.entries.remove(at).is_some(),
            Err(_) => false,
        }
    }

    pub(super) fn is_queue_empty(&self) -> bool {
        self.queue.lock().map_or(true, |q| q.entries.is_empty())
    }

    /// Counts a shed request and, at most once a second, logs how many there were.
    pub(super) fn shed(&self, why: Shed) -> DbError {
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
    pub(super) fn take_batch(&self) -> Vec<Entry<B>> {
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
    pub(super) fn fail_queued(&self, error: &DbError) {
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
