//! Whether the database answers, as this task believes it right now, and the
//! one background probe that keeps the belief fresh.
//!
//! Requests read the belief (an atomic load) instead of finding out for
//! themselves: while the database is down or frozen every request would
//! otherwise wait out a connect or statement timeout before its 503. So:
//!
//! - a lane that fails to connect, loses its connection, or sees a statement
//!   time out reports the database down at once, and requests get 503 in
//!   microseconds from then on ([`Monitor::is_down`]);
//! - one probe per task, on a connection of its own (not the request pool,
//!   which may be saturated) made exactly as the pool makes its connections
//!   (the same startup parameters, the service's statements prepared the same
//!   way), runs `SELECT 1` as requests run theirs every [`PROBE_INTERVAL`]
//!   while the database is up, and reconnects with backoff (from [`RETRY_MIN`]
//!   to [`RETRY_MAX`]) while it is down; the first success brings the task
//!   back. So a database that answers a plain connection but refuses the
//!   pool's (a pooler refusing `options`) is down, not up; and so is one that
//!   silently dropped the pool's `statement_timeout` (a pooler told to ignore
//!   `options`, which then loses named statements too) unless `DB_POOLER` says
//!   a pooler is there;
//! - `/health` answers from the belief ([`Monitor::is_up`]), so many
//!   load-balancer nodes checking every task cost the database nothing and
//!   never wait. Until the first probe has answered, the task claims nothing:
//!   `/health` says down, but requests are not refused on no evidence.
//!
//! Both directions flip within a second: a frozen database fails a probe after
//! [`PROBE_TIMEOUT`] at most [`PROBE_INTERVAL`] after it froze; a database that
//! comes back is found at the next retry, at most [`RETRY_MAX`] later.

use super::{Conn, Manager, Statements, Stmt};
use crate::config::DbPooler;
use bb8::ManageConnection;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often the probe asks a database that is up.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// How long a probe (connecting, or `SELECT 1`) may take before the database counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// First wait between probes of a database that is down; doubled up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_millis(50);
/// Longest wait between probes of a database that is down.
pub const RETRY_MAX: Duration = Duration::from_millis(500);

/// Not known yet: no probe has answered and nothing failed.
const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

struct State {
    /// Which database this is, in log lines: `primary`, or `replica` (`DATABASE_READ_URL`).
    name: &'static str,
    /// UNKNOWN, UP or DOWN.
    belief: AtomicU8,
    /// When the database was last reported down, for the log line when it is back.
    down_since: Mutex<Option<Instant>>,
    /// Wakes whoever waits for the database to go down (a lane waiting for a connection).
    went_down: Notify,
    /// Wakes the probe: a request saw a failure, look now.
    kick: Notify,
}

/// The task's belief about the database. Cheap to clone and to ask.
#[derive(Clone)]
pub struct Monitor(Arc<State>);

impl Default for Monitor {
    fn default() -> Self {
        Monitor::new()
    }
}

impl Monitor {
    /// A monitor without a probe, believing nothing until told (for tests of
    /// the coalescer, which report and read but need no database).
    pub fn new() -> Self {
        Monitor::named("primary")
    }

    /// A monitor without a probe, of the database called `name` in its log lines.
    fn named(name: &'static str) -> Self {
        Monitor(Arc::new(State {
            name,
            belief: AtomicU8::new(UNKNOWN),
            down_since: Mutex::new(None),
            went_down: Notify::new(),
            kick: Notify::new(),
        }))
    }

    /// A monitor of the database the pool of `manager` connects to, with its
    /// probe running on a connection `manager` makes; the first probe answers
    /// within [`PROBE_TIMEOUT`]. The probe stops once every other handle is dropped.
    /// `name` says which database it is in the log (`primary`, `replica`).
    pub(crate) fn start<S: Statements>(manager: Manager<S>, name: &'static str) -> Self {
        let monitor = Monitor::named(name);
        tokio::spawn(probe(monitor.0.clone(), manager));
        monitor
    }

    /// Whether the last probe got an answer and nothing failed since.
    pub fn is_up(&self) -> bool {
        self.0.belief.load(Ordering::Acquire) == UP
    }

    /// Whether the database is believed down: requests are refused at once.
    pub fn is_down(&self) -> bool {
        self.0.belief.load(Ordering::Acquire) == DOWN
    }

    /// Believes the database down (logged once per outage, with `why`) and asks
    /// the probe to look now.
    pub fn report_down(&self, why: &str) {
        if self.0.belief.swap(DOWN, Ordering::AcqRel) != DOWN {
            if let Ok(mut since) = self.0.down_since.lock() {
                *since = Some(Instant::now());
            }
            log::warn!(target: "db", database = self.0.name, reason = why; "database down: answering 503 at once until a probe succeeds");
            self.0.went_down.notify_waiters();
        }
        self.0.kick.notify_one();
    }

    /// Believes the database up (again).
    pub fn report_up(&self) {
        if self.0.belief.swap(UP, Ordering::AcqRel) == DOWN {
            let down_ms = self
                .0
                .down_since
                .lock()
                .ok()
                .and_then(|mut since| since.take())
                .map_or(0, |t| t.elapsed().as_millis() as u64);
            log::info!(target: "db", database = self.0.name, down_ms = down_ms; "database answers again");
        }
    }

    /// Resolves once the database is believed down (at once if it is).
    pub async fn wait_down(&self) {
        loop {
            let went_down = self.0.went_down.notified();
            tokio::pin!(went_down);
            // Registered before the check, so a report in between is not lost.
            went_down.as_mut().enable();
            if self.is_down() {
                return;
            }
            went_down.await;
        }
    }
}

/// The probe: one connection of its own, made as the pool makes them,
/// `SELECT 1` on it, reconnecting with backoff while the database is down.
/// Ends when the monitor's last other handle is gone.
async fn probe<S: Statements>(state: Arc<State>, manager: Manager<S>) {
    let monitor = Monitor(state);
    let mut conn: Option<(Conn<S>, Stmt)> = None;
    let mut retry = RETRY_MIN;
    let mut warned = false;
    while Arc::strong_count(&monitor.0) > 1 {
        let answered = match ask(&mut conn, &manager, &mut warned).await {
            Ok(()) => {
                monitor.report_up();
                retry = RETRY_MIN;
                true
            }
            Err(why) => {
                conn = None;
                monitor.report_down(&why);
                false
            }
        };
        let wait = if answered {
            PROBE_INTERVAL
        } else {
            let wait = retry;
            retry = (retry * 2).min(RETRY_MAX);
            wait
        };
        let kicked = monitor.0.kick.notified();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            // A request saw a failure: look again now, but never more often than RETRY_MIN.
            () = kicked => tokio::time::sleep(RETRY_MIN).await,
        }
    }
}

/// Connects if needed (as the pool does, then checks the session: see
/// [`check_session`]), then runs `SELECT 1` as requests run their statements,
/// all within [`PROBE_TIMEOUT`].
async fn ask<S: Statements>(
    conn: &mut Option<(Conn<S>, Stmt)>,
    manager: &Manager<S>,
    warned: &mut bool,
) -> Result<(), String> {
    let attempt = async {
        if conn.as_ref().is_none_or(|(c, _)| c.client.is_closed()) {
            let fresh = manager.connect().await.map_err(|e| super::describe(&e))?;
            check_session(&fresh.client, manager, warned).await?;
            let select = manager
                .prepare(&fresh.client)
                .stmt("SELECT 1", &[])
                .await
                .map_err(|e| super::describe(&e))?;
            *conn = Some((fresh, select));
        }
        match conn.as_ref() {
            Some((c, select)) => c.query(select, &[]).await.map(|_| ()).map_err(|e| e.to_string()),
            None => Err("no connection".to_owned()),
        }
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
    }
}

/// Whether the server applies the limits the pool counts on. Without a pooler
/// setting the session's `statement_timeout` must be the one sent at start-up:
/// if it is not, something between (a pooler told to ignore `options`) dropped
/// it, and would lend other server connections without the pool's prepared
/// statements too, so the database counts as down, with the reason. Behind a
/// transaction-mode pooler the limit is the login role's: its absence is
/// logged once, not fatal (a write's deadline still keeps a late one from storing).
async fn check_session<S>(
    client: &tokio_postgres::Client,
    manager: &Manager<S>,
    warned: &mut bool,
) -> Result<(), String> {
    let rows = client
        .simple_query("SELECT setting FROM pg_settings WHERE name = 'statement_timeout'")
        .await
        .map_err(|e| super::describe(&e))?;
    let setting = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default();
    let expected = manager.statement_timeout_ms.to_string();
    match manager.pooler {
        DbPooler::None if setting != expected => Err(format!(
            "the server's statement_timeout is {setting} ms, not the {expected} ms this task sent at start-up: \
             something between dropped its startup options (a transaction-mode pooler? set DB_POOLER=transaction)"
        )),
        DbPooler::Transaction if setting == "0" && !*warned => {
            *warned = true;
            log::warn!(target: "db", expected_ms = expected.as_str();
                "no server-side statement_timeout behind the pooler: set it on the login role (docs/DEPLOYMENT.md)");
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_report_is_seen_at_once_and_wakes_waiters_registered_before_it() {
        let monitor = Monitor::new();
        assert!(
            !monitor.is_up() && !monitor.is_down(),
            "believes nothing at first"
        );
        let waiter = tokio::spawn({
            let monitor = monitor.clone();
            async move { monitor.wait_down().await }
        });
        tokio::task::yield_now().await;
        monitor.report_down("test");
        assert!(monitor.is_down() && !monitor.is_up());
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the waiter woke")
            .expect("the waiter finished");
        // Already down: returns at once.
        tokio::time::timeout(Duration::from_millis(100), monitor.wait_down())
            .await
            .expect("wait_down on a down database returns at once");
        monitor.report_up();
        assert!(monitor.is_up() && !monitor.is_down());
    }
}
