//! Who is calling, and whether they may: API keys, the clients they belong to,
//! and rate limits. The rules (docs/API.md, "Access control"):
//!
//! - a business request may carry `Authorization: Bearer <key>`; a key that is
//!   malformed, unknown or revoked gets 401, and so does a request without a key
//!   where the route needs one (issuance);
//! - anonymous callers (verification only) are limited per source address,
//!   taken from the TCP peer or, behind `TRUSTED_PROXY_HOPS` proxies, from the
//!   `X-Forwarded-For` entry the nearest of them appended: never from a value
//!   the client wrote;
//! - every client is limited by its own rate, else `CLIENT_RATE_LIMIT`; past it,
//!   429 with `Retry-After` at once;
//! - what a client may do with a route (issue which credential types, see
//!   which fields) is the service's handler's to decide, from [`Caller`].
//!
//! Files: `keys.rs` the keys and their hashes; `registry.rs` the clients in
//! memory and their refresh; `limit.rs` the rate limiters; `admin.rs` the
//! `clients` command. Checking a key is a SHA-256, a map lookup and a
//! constant-time comparison; nothing is allocated and the database is not asked.

pub mod admin;
pub mod keys;
pub mod limit;
pub mod registry;

pub use registry::{ApiClient, Registry, Role};

use crate::config::Config;
use hyper::header::{HeaderMap, AUTHORIZATION};
use keys::KeyHash;
use registry::Lookup;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// `AUTH_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// The default: keys are checked, anonymous callers see only what is public.
    Required,
    /// No checks at all, as before access control existed: for local trials only.
    Off,
}

/// Who sent a business request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// `AUTH_MODE=off`: anyone may do anything; the source address.
    Open(IpAddr),
    /// No key (verification only); the source address.
    Anonymous(IpAddr),
    /// A client with a live key.
    Client(Arc<ApiClient>),
}

impl Caller {
    /// The client, if the caller presented a key.
    pub fn client(&self) -> Option<&ApiClient> {
        match self {
            Caller::Client(c) => Some(c),
            _ => None,
        }
    }

    /// Whether access control is off.
    pub fn is_open(&self) -> bool {
        matches!(self, Caller::Open(_))
    }

    /// For the access log: the client's name, `anonymous` or `open`.
    pub fn name(&self) -> &str {
        match self {
            Caller::Open(_) => "open",
            Caller::Anonymous(_) => "anonymous",
            Caller::Client(c) => &c.name,
        }
    }

    /// For the metrics: a bounded label, shared (cloning it allocates nothing).
    pub fn label(&self) -> Arc<str> {
        static OPEN: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("open"));
        static ANONYMOUS: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("anonymous"));
        match self {
            Caller::Client(c) => c.label.clone(),
            Caller::Open(_) => OPEN.clone(),
            Caller::Anonymous(_) => ANONYMOUS.clone(),
        }
    }

    /// Whose share of the database queue a request counts in (see
    /// `db::batch`): the client, else the source address.
    pub fn owner(&self) -> u64 {
        match self {
            Caller::Client(c) => c.id as u64,
            // Addresses are told apart from client ids by the top bit.
            Caller::Open(addr) | Caller::Anonymous(addr) => {
                let bits = match addr {
                    IpAddr::V4(a) => u64::from(u32::from(*a)),
                    IpAddr::V6(a) => {
                        let n = u128::from(*a);
                        (n >> 64) as u64 ^ n as u64
                    }
                };
                bits | (1 << 63)
            }
        }
    }
}

/// Why a request is refused before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No key where one is needed (401).
    Missing,
    /// A key that is malformed, unknown or revoked (401).
    Unknown,
    /// Past the caller's rate limit (429); `Retry-After` seconds.
    RateLimited(u32),
    /// The clients are not loaded yet (503).
    NotReady,
}

/// The check every business request passes before its body is read.
pub struct Gate {
    mode: AuthMode,
    registry: Arc<Registry>,
    addresses: limit::Addresses,
    clock: limit::Clock,
    client_rate: u32,
    anonymous_rate: u32,
    trusted_hops: usize,
}

impl Gate {
    /// The gate `config` describes, over `registry`.
    pub fn new(config: &Config, registry: Arc<Registry>) -> Self {
        Gate {
            mode: config.auth_mode,
            registry,
            addresses: limit::Addresses::default(),
            clock: limit::Clock::new(),
            client_rate: config.client_rate_limit,
            anonymous_rate: config.anonymous_rate_limit,
            trusted_hops: config.trusted_proxy_hops,
        }
    }

    /// The registry behind it.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Who is calling, or why they may not: `anonymous` says whether the route
    /// serves callers without a key.
    pub fn admit(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        anonymous: bool,
    ) -> Result<Caller, (Refusal, Option<Caller>)> {
        if self.mode == AuthMode::Off {
            return Ok(Caller::Open(self.source(headers, peer)));
        }
        let Some(header) = headers.get(AUTHORIZATION) else {
            if !anonymous {
                return Err((Refusal::Missing, None));
            }
            let addr = self.source(headers, peer);
            let caller = Caller::Anonymous(addr);
            return match self.addresses.check(addr, self.clock.now(), self.anonymous_rate) {
                Ok(()) => Ok(caller),
                Err(wait) => Err((Refusal::RateLimited(limit::retry_after(wait)), Some(caller))),
            };
        };
        let token = keys::bearer(header.as_bytes()).filter(|t| keys::well_formed(t));
        let Some(token) = token else {
            return Err((Refusal::Unknown, None));
        };
        match self.registry.lookup(&KeyHash::of(token)) {
            Lookup::NotLoaded => Err((Refusal::NotReady, None)),
            Lookup::Unknown => Err((Refusal::Unknown, None)),
            Lookup::Client(client) => {
                let rate = client.rate_limit.unwrap_or(self.client_rate);
                match client.limiter.check(self.clock.now(), rate) {
                    Ok(()) => Ok(Caller::Client(client)),
                    Err(wait) => Err((
                        Refusal::RateLimited(limit::retry_after(wait)),
                        Some(Caller::Client(client)),
                    )),
                }
            }
        }
    }

    /// The caller's address: the peer, or behind `trusted_hops` proxies the
    /// `X-Forwarded-For` entry that many from the end (the one the nearest
    /// trusted proxy appended). A header with fewer entries, or an entry that
    /// is not an address, falls back to the peer.
    pub fn source(&self, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
        if self.trusted_hops == 0 {
            return peer.ip();
        }
        // Proxies may add several headers: they read as one list, in order.
        let mut seen = 0;
        for value in headers.get_all("x-forwarded-for").iter().rev() {
            let Ok(text) = value.to_str() else {
                return peer.ip();
            };
            for entry in text.rsplit(',') {
                seen += 1;
                if seen == self.trusted_hops {
                    return entry.trim().parse().unwrap_or(peer.ip());
                }
            }
        }
        peer.ip()
    }
}
