//! The queue of requests waiting for a statement, and its bookkeeping: taking
//! a batch for a lane, a request leaving, shedding and counting.

use super::{Batch, Limits, Stats};
use crate::db::{DbError, DbMetrics, Monitor, Shed};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{oneshot, Notify};

/// When the "shedding" log line was last written, and the sheds it counted.
#[derive(Default)]
pub(super) struct ShedLog {
    /// Sheds counted by the last line.
    logged: AtomicU64,
    /// When the next line may be written, in milliseconds since the coalescer started.
    next_ms: AtomicU64,
}

pub(super) type Reply<B> = oneshot::Sender<Result<<B as Batch>::Output, DbError>>;

/// Why [`Inner::try_enqueue`] did not queue an item.
pub(super) enum NotQueued<B: Batch> {
    /// The queue is full, and this owner holds the largest share: the item, back.
    Full(B::Item),
    /// The queue is unusable.
    Failed(DbError),
}

pub(super) struct Entry<B: Batch> {
    /// Increasing: the queue stays sorted by ticket, so a leaving request finds
    /// its entry by binary search.
    pub(super) ticket: u64,
    /// Whose share it counts in (a client, or a source address).
    pub(super) owner: u64,
    pub(super) item: B::Item,
    pub(super) reply: Reply<B>,
    pub(super) queued_at: Instant,
}

pub(super) struct Queue<B: Batch> {
    pub(super) entries: VecDeque<Entry<B>>,
    pub(super) next_ticket: u64,
    /// Entries waiting, per owner (owners with none are removed).
    pub(super) shares: HashMap<u64, usize>,
}

impl<B: Batch> Queue<B> {
    fn count_out(&mut self, owner: u64) {
        if let Some(n) = self.shares.get_mut(&owner) {
            *n -= 1;
            if *n == 0 {
                self.shares.remove(&owner);
            }
        }
    }

    pub(super) fn pop_front(&mut self) -> Option<Entry<B>> {
        let entry = self.entries.pop_front()?;
        self.count_out(entry.owner);
        Some(entry)
    }

    pub(super) fn remove(&mut self, at: usize) -> Option<Entry<B>> {
        let entry = self.entries.remove(at)?;
        self.count_out(entry.owner);
        Some(entry)
    }

    /// The owner holding the largest share, and its share.
    fn largest(&self) -> Option<(u64, usize)> {
        self.shares.iter().map(|(o, n)| (*o, *n)).max_by_key(|(_, n)| *n)
    }
}

pub(super) struct Inner<B: Batch> {
    pub(super) batch: B,
    pub(super) source: B::Source,
    pub(super) monitor: Monitor,
    pub(super) limits: Limits,
    pub(super) queue: Mutex<Queue<B>>,
    pub(super) wake: Notify,
    /// Notified when a lane takes entries out of the queue: there is room.
    pub(super) room: Notify,
    pub(super) closed: AtomicBool,
    pub(super) metrics: Arc<DbMetrics>,
    pub(super) shed_log: ShedLog,
    pub(super) started: Instant,
}

impl<B: Batch> Inner<B> {
    pub(super) fn new(
        batch: B,
        source: B::Source,
        monitor: Monitor,
        metrics: Arc<DbMetrics>,
        limits: Limits,
    ) -> Self {
        Inner {
            batch,
            source,
            monitor,
            limits,
            queue: Mutex::new(Queue {
                entries: VecDeque::with_capacity(limits.queue_max.min(4096)),
                next_ticket: 0,
                shares: HashMap::new(),
            }),
            wake: Notify::new(),
            room: Notify::new(),
            closed: AtomicBool::new(false),
            metrics,
            shed_log: ShedLog::default(),
            started: Instant::now(),
        }
    }

    /// Queues `item` of `owner`, whose answer goes to `reply`; its ticket, or the
    /// error to answer at once.
    ///
    /// When the queue is full, the owner holding the largest share of it pays:
    /// if that is not this request's owner, its newest waiting request is shed
    /// to make room; otherwise this one is. So a client flooding the queue
    /// sheds its own requests, never another client's.
    pub(super) fn enqueue(&self, owner: u64, item: B::Item, reply: Reply<B>) -> Result<u64, DbError> {
        self.try_enqueue(owner, item, reply).map_err(|e| match e {
            NotQueued::Full(_) => self.shed(Shed::QueueFull),
            NotQueued::Failed(e) => e,
        })
    }

    /// Like [`Inner::enqueue`], but a full queue gives the item back, neither
    /// shed nor counted: a bulk request waits for room instead.
    pub(super) fn try_enqueue(
        &self,
        owner: u64,
        item: B::Item,
        reply: Reply<B>,
    ) -> Result<u64, NotQueued<B>> {
        let Ok(mut queue) = self.queue.lock() else {
            return Err(NotQueued::Failed(DbError::Other("batch queue poisoned".into())));
        };
        let mut evicted = None;
        if queue.entries.len() >= self.limits.queue_max {
            let mine = queue.shares.get(&owner).copied().unwrap_or(0);
            match queue.largest() {
                Some((largest, share)) if largest != owner && share > mine + 1 => {
                    let at = queue.entries.iter().rposition(|e| e.owner == largest);
                    evicted = at.and_then(|at| queue.remove(at));
                }
                _ => {}
            }
            if evicted.is_none() {
                return Err(NotQueued::Full(item));
            }
        }
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.entries.push_back(Entry {
            ticket,
            owner,
            item,
            reply,
            queued_at: Instant::now(),
        });
        *queue.shares.entry(owner).or_insert(0) += 1;
        self.metrics.queue_depth.set(queue.entries.len() as i64);
        drop(queue);
        if let Some(entry) = evicted {
            let _ = entry.reply.send(Err(self.shed(Shed::QueueFull)));
        }
        Ok(ticket)
    }

    pub(super) fn stats(&self) -> Stats {
        let m = &self.metrics;
        Stats {
            statements: m.statements.get(),
            items: m.items.get(),
            shed_queue_full: m.shed_queue_full.get(),
            shed_queue_timeout: m.shed_queue_timeout.get(),
            shed_database_down: m.shed_database_down.get(),
            left_queue: m.left_queue.get(),
            splits: m.splits.get(),
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
        let Ok(at) = queue.entries.binary_search_by_key(&ticket, |e| e.ticket) else {
            return false;
        };
        queue.remove(at);
        self.metrics.queue_depth.set(queue.entries.len() as i64);
        true
    }

    pub(super) fn is_queue_empty(&self) -> bool {
        self.queue.lock().map_or(true, |q| q.entries.is_empty())
    }

    /// Counts a shed request and, at most once a second, logs how many there were.
    pub(super) fn shed(&self, why: Shed) -> DbError {
        let m = &self.metrics;
        match why {
            Shed::QueueFull => &m.shed_queue_full,
            Shed::QueueTimeout => &m.shed_queue_timeout,
            Shed::DatabaseDown => &m.shed_database_down,
        }
        .inc();
        let log = &self.shed_log;
        let now_ms = self.started.elapsed().as_millis() as u64;
        let next = log.next_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && log
                .next_ms
                .compare_exchange(next, now_ms + 1000, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let (full, late, down) = (
                m.shed_queue_full.get(),
                m.shed_queue_timeout.get(),
                m.shed_database_down.get(),
            );
            let total = full + late + down;
            let since = total - log.logged.swap(total, Ordering::Relaxed);
            log::warn!(
                target: "db",
                shed = since,
                reason = why.as_str(),
                queue_full_total = full,
                queue_timeout_total = late,
                database_down_total = down;
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
            let Some(entry) = queue.pop_front() else {
                break;
            };
            let waited = entry.queued_at.elapsed();
            if entry.reply.is_closed() {
                self.metrics.left_queue.inc();
            } else if waited > self.limits.queue_timeout {
                late.push(entry);
            } else {
                self.metrics.queue_wait.observe(waited.as_secs_f64());
                batch.push(entry);
            }
        }
        self.metrics.queue_depth.set(queue.entries.len() as i64);
        let more = !queue.entries.is_empty();
        drop(queue);
        self.room.notify_waiters();
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
            Ok(mut queue) => {
                queue.shares.clear();
                queue.entries.drain(..).collect()
            }
            Err(_) => return,
        };
        self.metrics.queue_depth.set(0);
        self.room.notify_waiters();
        for entry in entries {
            let result = match error {
                DbError::Shed(why) => Err(self.shed(*why)),
                other => Err(other.clone()),
            };
            let _ = entry.reply.send(result);
        }
    }
}
