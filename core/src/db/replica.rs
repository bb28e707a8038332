//! A read replica (`DATABASE_READ_URL`, a streaming hot standby): its pool and
//! monitor, how far its replay lags behind the primary, and the rule that
//! decides, batch by batch, whether a read may be answered there.
//!
//! **The promise: a read answered from the replica sees every write the
//! primary had committed when the read's requests arrived**, so a credential
//! issued a moment ago is found and one revoked a moment ago is revoked, as on
//! the primary. For each batch ([`Replica::read`]):
//!
//! 1. the primary's WAL insert position P (`pg_current_wal_insert_lsn()`, read
//!    after every request of the batch arrived, so it is at or past the end of
//!    every commit acknowledged before) and the replica's replay position R
//!    (`pg_last_wal_replay_lsn()`) are read at the same time, one small
//!    statement each;
//! 2. if R ≥ P, the read runs on the replica in a later statement, whose
//!    snapshot therefore holds everything replayed up to R, P included;
//!    otherwise (the replica is behind) it runs on the primary.
//!
//! So the primary still answers one tiny statement per batch (no table, no
//! index), and the replica the lookups. A read also goes to the primary when
//! the replica's probe gets no answer (its own [`Monitor`]: a replica that is
//! down never makes a request fail, nor wait more than [`replica_timeout`]),
//! when reading there fails, and when the replay lag measured in the
//! background exceeds `DB_READ_MAX_LAG_MS` (so a replica far behind is not
//! asked in vain). The lag is measured every [`PROBE_INTERVAL`], not per
//! request: the primary's position is sampled, and the lag is the age of the
//! newest sample the replica has replayed (0 when it has replayed the one just
//! taken), so an idle primary does not make an idle replica look late, and a
//! replica whose WAL stopped arriving does.
//!
//! `/health` follows the primary (which every batch needs); the replica's state
//! is in `/health`'s `replica` field and in the metrics `db_replica_up`,
//! `db_replica_lag_seconds` and `db_reads_total{target,fallback}`.
//!
//! R and the lookup run on the same connection, so each connection to
//! `DATABASE_READ_URL` must reach one server (a replica's endpoint, a DNS name
//! over several, or a pooler in front of exactly one replica; not a pooler that
//! spreads statements over several servers). A server that is not a standby
//! (`pg_last_wal_replay_lsn()` is null: a primary, or an Aurora reader, whose
//! storage is shared and has no replay position) is never read from; a warning
//! says so.

use super::batch::Source;
use super::monitor::{PROBE_INTERVAL, PROBE_TIMEOUT};
use super::{Conn, DbError, DbMetrics, Fallback, Monitor, Pool, ReadTarget, Statements};
use crate::config::Config;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio_postgres::types::PgLsn;

/// How long the replica may take for its part of one read (its connection, its
/// replay position, the lookup) before the read goes to the primary and the
/// replica is reported down: half of `DB_QUEUE_TIMEOUT_MS` (125 ms by default),
/// so the requests queued behind a read that a frozen replica holds up still
/// get their statement in time, from the primary.
pub fn replica_timeout(config: &Config) -> Duration {
    (config.db_queue_timeout / 2).max(Duration::from_millis(10))
}

/// The primary's WAL insert position: at or past the end of every record
/// inserted so far, so of every commit already acknowledged (even with
/// `synchronous_commit = off`). Read as text (simple protocol: through any pooler).
const PRIMARY_LSN: &str = "SELECT pg_current_wal_insert_lsn()";
/// The replica's replay position; null on a server that is not a standby.
const REPLAY_LSN: &str = "SELECT pg_last_wal_replay_lsn()";

/// "Unknown" in [`Shared::lag_ms`].
const UNKNOWN: u64 = u64::MAX;

/// What the tracker measured, shared with requests and metrics.
struct Shared {
    /// The replay lag in milliseconds, or [`UNKNOWN`].
    lag_ms: AtomicU64,
    /// `DB_READ_MAX_LAG_MS`.
    max_lag: Duration,
    /// The replica's monitor.
    monitor: Monitor,
    /// Logged once: the server is not a standby.
    warned_not_standby: AtomicBool,
}

/// The replica's state as `/health` and the metrics show it. Cheap to clone.
#[derive(Clone)]
pub struct ReplicaState(Arc<Shared>);

impl ReplicaState {
    /// Whether the replica's probe gets answers.
    pub fn is_up(&self) -> bool {
        self.0.monitor.is_up()
    }

    /// The replay lag last measured; None when unknown (down, not a standby, not measured yet).
    pub fn lag(&self) -> Option<Duration> {
        match self.0.lag_ms.load(Ordering::Acquire) {
            UNKNOWN => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Why a read would go to the primary now, if it would.
    fn fallback(&self) -> Option<Fallback> {
        if !self.is_up() {
            Some(Fallback::ReplicaDown)
        } else if self.lag().is_none_or(|lag| lag > self.0.max_lag) {
            Some(Fallback::ReplicaLagging)
        } else {
            None
        }
    }

    /// `up` (reads may go there), `lagging` (past `DB_READ_MAX_LAG_MS`, or not a
    /// standby), or `down`, as `/health` says it.
    pub fn as_str(&self) -> &'static str {
        match self.fallback() {
            None => "up",
            Some(Fallback::ReplicaDown) => "down",
            Some(_) => "lagging",
        }
    }
}

/// One read a batch makes, runnable on the primary's connection or the replica's.
pub trait Read<S>: Sync {
    /// What it returns.
    type Output: Send;
    /// Runs it on `conn`.
    fn run<'c>(
        &'c self,
        conn: &'c Conn<S>,
    ) -> impl Future<Output = Result<Self::Output, DbError>> + Send + 'c;
}

/// The read replica of one task: its pool, its monitor and the lag tracker.
pub struct Replica<S: Statements> {
    pool: Pool<S>,
    state: ReplicaState,
    metrics: Arc<DbMetrics>,
    /// See [`replica_timeout`].
    timeout: Duration,
}

impl<S: Statements> Replica<S> {
    /// The replica `DATABASE_READ_URL` names, if any: a pool to it (as large as
    /// the primary's, made the same way), its monitor, and the lag tracker, which
    /// samples `primary`'s position. The tracker stops when the replica is dropped.
    pub fn start(primary: &Pool<S>, config: &Config) -> Option<Self> {
        let read = config.db_read.as_ref()?;
        let metrics = primary.metrics().clone();
        let pool = Pool::to(config, read, "replica", metrics.clone());
        let state = ReplicaState(Arc::new(Shared {
            lag_ms: AtomicU64::new(UNKNOWN),
            max_lag: config.db_read_max_lag,
            monitor: pool.monitor().clone(),
            warned_not_standby: AtomicBool::new(false),
        }));
        tokio::spawn(track(Arc::downgrade(&state.0), primary.clone(), pool.clone()));
        Some(Replica {
            pool,
            state,
            metrics,
            timeout: replica_timeout(config),
        })
    }

    /// Its state, for `/health` and the metrics.
    pub fn state(&self) -> ReplicaState {
        self.state.clone()
    }

    /// Runs `read` for `items` requests on the replica when it may answer (see
    /// the module docs), else on `primary`, the connection the batch holds, and
    /// counts where it ran. An error is the primary's: the replica's own are
    /// answered by the primary.
    pub async fn read<R: Read<S>>(
        &self,
        primary: &Conn<S>,
        items: usize,
        read: &R,
    ) -> Result<R::Output, DbError> {
        let fallback = match self.state.fallback() {
            Some(why) => why,
            None => match self.try_replica(primary, read).await? {
                Ok(output) => {
                    self.metrics.read(ReadTarget::Replica, items as u64);
                    return Ok(output);
                }
                Err(why) => why,
            },
        };
        let output = read.run(primary).await?;
        self.metrics.read(ReadTarget::Primary(fallback), items as u64);
        Ok(output)
    }

    /// The read on the replica if it has replayed the primary's position now;
    /// else why not. Err: reading the primary's position failed.
    async fn try_replica<R: Read<S>>(
        &self,
        primary: &Conn<S>,
        read: &R,
    ) -> Result<Result<R::Output, Fallback>, DbError> {
        let started = Instant::now();
        let replica_side = async {
            // A connection that cannot be made is reported by the pool at once:
            // not waited for until the timeout.
            let conn = tokio::select! {
                conn = tokio::time::timeout(self.timeout, self.pool.get()) => {
                    conn.map_err(|_| DbError::Down("no replica connection in time".into()))??
                }
                () = self.pool.monitor().wait_down() => {
                    return Err(DbError::Down("cannot connect to the replica".into()));
                }
            };
            let left = self.timeout.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, lsn(&conn, REPLAY_LSN)).await {
                Ok(Ok(replayed)) => Ok((conn, replayed)),
                Ok(Err(e)) => Err(e),
                Err(_) => {
                    self.pool.discard(conn);
                    Err(DbError::Down(
                        "the replica's replay position did not come in time".into(),
                    ))
                }
            }
        };
        let (position, replica_side) = tokio::join!(lsn(primary, PRIMARY_LSN), replica_side);
        let position = match position {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(Err(Fallback::ReplicaError)),
            Err(e @ DbError::Down(_)) => return Err(e),
            Err(e) => {
                log::warn!(target: "db", error:% = e; "cannot read the primary's WAL position: reading from the primary");
                return Ok(Err(Fallback::ReplicaError));
            }
        };
        let (conn, replayed) = match replica_side {
            Ok(answer) => answer,
            Err(e) => {
                self.failed(&e);
                return Ok(Err(Fallback::ReplicaError));
            }
        };
        match replayed {
            None => {
                self.not_standby();
                return Ok(Err(Fallback::ReplicaLagging));
            }
            Some(replayed) if replayed < position => return Ok(Err(Fallback::ReplicaBehind)),
            Some(_) => {}
        }
        let left = self.timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, read.run(&conn)).await {
            Ok(Ok(output)) => Ok(Ok(output)),
            Ok(Err(e)) => {
                self.failed(&e);
                Ok(Err(Fallback::ReplicaError))
            }
            Err(_) => {
                self.pool.discard(conn);
                self.failed(&DbError::Down(format!(
                    "no answer from the replica within {} ms",
                    self.timeout.as_millis()
                )));
                Ok(Err(Fallback::ReplicaError))
            }
        }
    }

    /// A read on the replica failed: the replica is believed down if it was an
    /// outage (its probe brings it back), logged either way.
    fn failed(&self, e: &DbError) {
        match e {
            DbError::Down(why) => self.pool.monitor().report_down(why),
            other => {
                log::warn!(target: "db", error:% = other; "a read on the replica failed: the primary answered it")
            }
        }
    }

    fn not_standby(&self) {
        self.state.0.lag_ms.store(UNKNOWN, Ordering::Release);
        not_standby(&self.state.0);
    }
}

fn not_standby(shared: &Shared) {
    if !shared.warned_not_standby.swap(true, Ordering::AcqRel) {
        log::warn!(target: "db", "DATABASE_READ_URL is not a streaming standby (pg_last_wal_replay_lsn() is null): every read goes to the primary");
    }
}

/// One WAL position, read with the simple protocol on `conn`; None when null.
async fn lsn<S>(conn: &Conn<S>, sql: &'static str) -> Result<Option<u64>, DbError> {
    let rows = conn.client.simple_query(sql).await?;
    let text = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0)),
        _ => None,
    });
    match text {
        Some(Some(text)) => text
            .parse::<PgLsn>()
            .map(|lsn| Some(u64::from(lsn)))
            .map_err(|_| DbError::Other(format!("{sql}: not a WAL position: {text}"))),
        Some(None) => Ok(None),
        None => Err(DbError::Other(format!("{sql}: no row"))),
    }
}

/// The lag tracker: every [`PROBE_INTERVAL`], the primary's position, then the
/// replica's replay position, each on a pooled connection, within
/// [`PROBE_TIMEOUT`]; ends when the replica is dropped.
async fn track<S: Statements>(shared: Weak<Shared>, primary: Pool<S>, replica: Pool<S>) {
    let mut samples = Samples::default();
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let measured = tokio::time::timeout(PROBE_TIMEOUT, async {
            let position = lsn(&*primary.get().await?, PRIMARY_LSN).await?;
            let replayed = lsn(&*replica.get().await?, REPLAY_LSN).await?;
            Ok::<_, DbError>((position, replayed))
        })
        .await;
        let lag = match measured {
            Ok(Ok((Some(position), Some(replayed)))) => {
                let window = shared.max_lag + 4 * PROBE_INTERVAL;
                Some(samples.lag(Instant::now(), position, replayed, window))
            }
            Ok(Ok((_, None))) => {
                not_standby(&shared);
                None
            }
            // Nothing measured: the replica's monitor tells whether it is down.
            _ => None,
        };
        let ms = lag.map_or(UNKNOWN, |lag| lag.as_millis().min(u128::from(UNKNOWN - 1)) as u64);
        shared.lag_ms.store(ms, Ordering::Release);
    }
}

/// The primary's positions of the last few probes, oldest first.
#[derive(Default)]
struct Samples(VecDeque<(Instant, u64)>);

impl Samples {
    /// Records the primary's `position` at `now` and returns the replica's lag
    /// given its `replayed` position: 0 if it has replayed `position`, else the
    /// age of the newest sample it has replayed, else (none within `window`)
    /// the age of the oldest one kept, which is at least `window` once the
    /// tracker has run that long. Samples older than `window` are dropped.
    fn lag(&mut self, now: Instant, position: u64, replayed: u64, window: Duration) -> Duration {
        self.0.push_back((now, position));
        while self
            .0
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > window)
        {
            self.0.pop_front();
        }
        let newest_replayed = self.0.iter().rev().find(|(_, p)| *p <= replayed);
        match (newest_replayed, self.0.front()) {
            (Some((at, _)), _) => now.duration_since(*at),
            (None, Some((oldest, _))) => now.duration_since(*oldest).max(window),
            (None, None) => window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_age_of_the_newest_primary_position_the_replica_has_replayed() {
        let window = Duration::from_secs(2);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut s = Samples::default();
        // Caught up: 0.
        assert_eq!(s.lag(at(0), 100, 100, window), Duration::ZERO);
        // An idle primary: the position does not move, nor does the lag.
        assert_eq!(s.lag(at(250), 100, 100, window), Duration::ZERO);
        // The primary wrote, the replica has replayed up to the sample of 250 ms.
        assert_eq!(s.lag(at(500), 200, 150, window), Duration::from_millis(250));
        assert_eq!(s.lag(at(750), 300, 150, window), Duration::from_millis(500));
        // Replay stopped: the lag grows with the samples it has not replayed.
        assert_eq!(s.lag(at(1750), 400, 150, window), Duration::from_millis(1500));
        // Past the window no replayed sample is left: at least the window.
        assert_eq!(s.lag(at(3000), 500, 150, window), window);
        // Caught up again.
        assert_eq!(s.lag(at(3250), 500, 500, window), Duration::ZERO);
    }
}
