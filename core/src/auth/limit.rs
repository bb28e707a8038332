//! Rate limits: a per-client limiter, and one per source address for anonymous
//! callers. Both are GCRA (the generic cell rate algorithm, a token bucket kept
//! as one timestamp): a limit of N per second allows a burst of N, then one
//! request every 1/N s. Each task limits on its own; with T tasks behind the
//! balancer a client gets up to T times its limit in all.
//!
//! Checking costs a clock read and one atomic compare-and-swap (a mutex and a
//! map lookup for addresses); nothing is allocated.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses the anonymous limiter remembers at most; past it, addresses that
/// are idle are forgotten, and if none is, new addresses are refused (a flood
/// from that many addresses a second is the WAF's to stop).
pub const ADDRESSES_MAX: usize = 100_000;

/// Nanoseconds since a fixed start, the limiters' clock.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Clock(Instant::now())
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// How long to wait before asking again: whole seconds, at least 1 (`Retry-After`).
pub fn retry_after(wait_ns: u64) -> u32 {
    Duration::from_nanos(wait_ns).as_secs_f64().ceil().max(1.0) as u32
}

/// One GCRA step: with the theoretical arrival time `tat`, may a request come
/// at `now`? Ok(new tat), or Err(nanoseconds until it may).
fn step(tat: u64, now: u64, per_second: u32) -> Result<u64, u64> {
    let n = u64::from(per_second.max(1));
    let interval = 1_000_000_000 / n;
    // A burst of n: the n-th request of a burst may come (n - 1) intervals early.
    let tolerance = interval * (n - 1);
    let tat = tat.max(now);
    if tat > now + tolerance {
        Err(tat - now - tolerance)
    } else {
        Ok(tat + interval)
    }
}

/// The limiter of one client, shared by all its requests on this task.
#[derive(Debug, Default)]
pub struct Limiter {
    tat: AtomicU64,
}

impl Limiter {
    /// Takes one request at `now` under a limit of `per_second`: Ok, or Err with
    /// the nanoseconds until one more is allowed.
    pub fn check(&self, now: u64, per_second: u32) -> Result<(), u64> {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = step(tat, now, per_second)?;
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }
}

/// Limiters of anonymous callers, one per source address, bounded in number.
#[derive(Debug, Default)]
pub struct Addresses {
    tats: Mutex<HashMap<IpAddr, u64>>,
}

impl Addresses {
    /// Takes one request from `addr` at `now` under `per_second`.
    pub fn check(&self, addr: IpAddr, now: u64, per_second: u32) -> Result<(), u64> {
        let Ok(mut tats) = self.tats.lock() else {
            return Err(1_000_000_000);
        };
        if tats.len() >= ADDRESSES_MAX && !tats.contains_key(&addr) {
            // An address whose tat has passed is as good as new: forget it.
            tats.retain(|_, tat| *tat > now);
            if tats.len() >= ADDRESSES_MAX {
                return Err(1_000_000_000);
            }
        }
        let tat = tats.entry(addr).or_insert(0);
        *tat = step(*tat, now, per_second)?;
        Ok(())
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        self.tats.lock().map_or(0, |t| t.len())
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_limit_allows_its_burst_then_its_rate() {
        let l = Limiter::default();
        let t0 = 10 * SECOND;
        let allowed = (0..20).filter(|_| l.check(t0, 10).is_ok()).count();
        assert_eq!(allowed, 10, "a burst of one second's worth");
        let wait = l.check(t0, 10).unwrap_err();
        assert!(wait > 0 && wait <= SECOND / 10, "{wait}");
        assert_eq!(retry_after(wait), 1);
        // A tenth of a second later, one more.
        assert!(l.check(t0 + SECOND / 10, 10).is_ok());
        assert!(l.check(t0 + SECOND / 10, 10).is_err());
        // Idle for a while: the whole burst again, no more.
        let later = t0 + 5 * SECOND;
        assert_eq!((0..30).filter(|_| l.check(later, 10).is_ok()).count(), 10);
    }

    #[test]
    fn addresses_are_limited_each_on_its_own_and_bounded() {
        let a = Addresses::default();
        let one: IpAddr = [10, 0, 0, 1].into();
        let two: IpAddr = [10, 0, 0, 2].into();
        let t0 = SECOND;
        assert_eq!((0..10).filter(|_| a.check(one, t0, 3).is_ok()).count(), 3);
        assert!(a.check(two, t0, 3).is_ok());
        assert_eq!(a.len(), 2);
        // Past the bound, idle addresses are forgotten to make room.
        let t1 = t0 + 10 * SECOND;
        for i in 0..ADDRESSES_MAX as u32 {
            let _ = a.check(IpAddr::from(i.to_be_bytes()), t1, 1000);
        }
        assert!(a.len() <= ADDRESSES_MAX);
        assert!(a.check(one, t1 + 10 * SECOND, 3).is_ok());
    }
}
