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
//!   which may be saturated), runs `SELECT 1` every [`PROBE_INTERVAL`] while the
//!   database is up, and reconnects with backoff (from [`RETRY_MIN`] to
//!   [`RETRY_MAX`]) while it is down; the first success brings the task back;
//! - `/health` answers from the belief ([`Monitor::is_up`]), so many
//!   load-balancer nodes checking every task cost the database nothing and
//!   never wait. Until the first probe has answered, the task claims nothing:
//!   `/health` says down, but requests are not refused on no evidence.
//!
//! Both directions flip within a second: a frozen database fails a probe after
//! [`PROBE_TIMEOUT`] at most [`PROBE_INTERVAL`] after it froze; a database that
//! comes back is found at the next retry, at most [`RETRY_MAX`] later.

use crate::config::Config;
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
        Monitor(Arc::new(State {
            belief: AtomicU8::new(UNKNOWN),
            down_since: Mutex::new(None),
            went_down: Notify::new(),
            kick: Notify::new(),
        }))
    }

    /// A monitor of the database in `config`, with its probe running; the
    /// first probe answers within [`PROBE_TIMEOUT`]. The probe stops once every
    /// other handle is dropped.
    pub fn start(config: &Config) -> Self {
        let monitor = Monitor::new();
        tokio::spawn(probe(monitor.0.clone(), config.clone()));
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
            log::warn!(target: "db", reason = why; "database down: answering 503 at once until a probe succeeds");
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
            log::info!(target: "db", down_ms = down_ms; "database answers again");
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

/// The probe: one connection of its own, `SELECT 1` on it, reconnecting with
/// backoff while the database is down. Ends when the monitor's last other
/// handle is gone.
async fn probe(state: Arc<State>, config: Config) {
    let monitor = Monitor(state);
    let mut client: Option<tokio_postgres::Client> = None;
    let mut retry = RETRY_MIN;
    while Arc::strong_count(&monitor.0) > 1 {
        let answered = match ask(&mut client, &config).await {
            Ok(()) => {
                monitor.report_up();
                retry = RETRY_MIN;
                true
            }
            Err(why) => {
                client = None;
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

/// Connects if needed, then runs `SELECT 1`, all within [`PROBE_TIMEOUT`].
async fn ask(client: &mut Option<tokio_postgres::Client>, config: &Config) -> Result<(), String> {
    let attempt = async {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            *client = Some(super::connect_once(config).await.map_err(|e| e.to_string())?);
        }
        match client.as_ref() {
            Some(c) => c
                .simple_query("SELECT 1")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => Err("no connection".to_owned()),
        }
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
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
