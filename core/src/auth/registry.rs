//! The clients a task knows: every live key's hash and its client, kept in
//! memory so checking a key is a hash and a map lookup, never a database round
//! trip. A background task asks the database every [`POLL_INTERVAL`] whether
//! anything changed (`api_clients_version`, bumped by triggers in the same
//! transaction as the change) and reloads only then, so an added or revoked
//! key counts on every task within half a second.
//!
//! While the database cannot be asked, the task keeps what it last loaded
//! (a revocation then waits for the database); until the first load, keys
//! cannot be checked and authenticated requests get 503.

use super::keys::KeyHash;
use super::limit::Limiter;
use crate::db::{self, DbError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// How often a task asks whether the clients changed.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Clients whose names label the metrics; the rest share the label `other`,
/// so the label set stays bounded however many clients there are.
pub const LABELLED_CLIENTS: usize = 100;

/// What a client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Issues credentials (of its credential types) and verifies those it issued.
    Issuer,
    /// Verifies any credential and sees it whole.
    Verifier,
}

impl Role {
    /// As the database and the command line write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Issuer => "issuer",
            Role::Verifier => "verifier",
        }
    }

    /// From its name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "issuer" => Some(Role::Issuer),
            "verifier" => Some(Role::Verifier),
            _ => None,
        }
    }
}

/// One API client as a task knows it.
#[derive(Debug)]
pub struct ApiClient {
    /// Its row id.
    pub id: i64,
    /// Its name: in `issuer`, the access log and the metrics.
    pub name: Arc<str>,
    /// What it may do.
    pub role: Role,
    /// The credential types it may issue; empty: all.
    pub credential_types: Vec<String>,
    /// Its own limit (requests per second per task), if it has one.
    pub rate_limit: Option<u32>,
    /// Its name, or `other` past [`LABELLED_CLIENTS`]: the metrics' label.
    pub label: Arc<str>,
    /// Its rate limiter on this task, kept across reloads.
    pub limiter: Arc<Limiter>,
}

impl ApiClient {
    /// Whether it may issue credentials of `credential_type`.
    pub fn may_issue(&self, credential_type: &str) -> bool {
        self.role == Role::Issuer
            && (self.credential_types.is_empty()
                || self.credential_types.iter().any(|t| t == credential_type))
    }
}

struct Key {
    hash: KeyHash,
    client: Arc<ApiClient>,
}

#[derive(Default)]
struct Snapshot {
    /// Keyed on the first half of the hash; the whole is compared in constant time.
    keys: HashMap<u128, Key>,
}

/// The clients this task knows.
#[derive(Default)]
pub struct Registry {
    snapshot: RwLock<Arc<Snapshot>>,
    loaded: AtomicBool,
    version: AtomicI64,
    /// Wakes the requests that arrived before the first load.
    first_load: tokio::sync::Notify,
}

/// What checking a key found.
#[derive(Debug)]
pub enum Lookup {
    /// A live key of this client.
    Client(Arc<ApiClient>),
    /// No live key has this hash.
    Unknown,
    /// Nothing is loaded yet.
    NotLoaded,
}

/// Every live key with its client. Columns are read by these names.
const LIVE_KEYS: &str = "\
SELECT k.key_sha256, c.id, c.name, c.role, c.credential_types, c.rate_limit
  FROM api_keys k JOIN api_clients c ON c.id = k.client_id
 WHERE k.revoked_at IS NULL AND c.revoked_at IS NULL
 ORDER BY c.id";

const VERSION: &str = "SELECT v FROM api_clients_version";

impl Registry {
    /// Finds the client of the key whose hash is `hash`.
    pub fn lookup(&self, hash: &KeyHash) -> Lookup {
        if !self.loaded.load(Ordering::Acquire) {
            return Lookup::NotLoaded;
        }
        let Ok(snapshot) = self.snapshot.read() else {
            return Lookup::NotLoaded;
        };
        match snapshot.keys.get(&hash.slot()) {
            Some(key) if key.hash.matches(hash) => Lookup::Client(key.client.clone()),
            _ => Lookup::Unknown,
        }
    }

    /// Whether the clients have been loaded once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Waits at most `limit` for the first load; whether it happened. A task
    /// takes requests as soon as it listens, and the first load follows within
    /// milliseconds when the database answers: a request that comes in between
    /// waits for it instead of getting a 503.
    pub async fn wait_loaded(&self, limit: Duration) -> bool {
        let notified = self.first_load.notified();
        if self.is_loaded() {
            return true;
        }
        let _ = tokio::time::timeout(limit, notified).await;
        self.is_loaded()
    }

    /// Reloads if the clients changed since the last load; true if it reloaded.
    pub async fn refresh(&self, client: &Client) -> Result<bool, DbError> {
        // The simple protocol: one round trip, no statement to prepare and close
        // (this runs four times a second on every task).
        let version = client
            .simple_query(VERSION)
            .await?
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    row.get("v").and_then(|v| v.parse::<i64>().ok())
                }
                _ => None,
            })
            .ok_or_else(|| DbError::Other("api_clients_version has no row".into()))?;
        if self.is_loaded() && version == self.version.load(Ordering::Acquire) {
            return Ok(false);
        }
        // Read after the version: what it loads is at least that new. Unnamed, in
        // one round trip: nothing left in the session (a transaction-mode pooler
        // may run the next statement on another server connection).
        let rows = client.query_typed(LIVE_KEYS, &[]).await?;
        let old = self.snapshot.read().map(|s| s.clone()).unwrap_or_default();
        let limiters: HashMap<i64, Arc<Limiter>> = old
            .keys
            .values()
            .map(|k| (k.client.id, k.client.limiter.clone()))
            .collect();
        let mut clients: HashMap<i64, Arc<ApiClient>> = HashMap::new();
        let mut keys = HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = db::column(row, "id")?;
            let client = match clients.get(&id) {
                Some(c) => c.clone(),
                None => {
                    let name: String = db::column(row, "name")?;
                    let role: String = db::column(row, "role")?;
                    let rate: Option<i32> = db::column(row, "rate_limit")?;
                    let name: Arc<str> = name.into();
                    let c = Arc::new(ApiClient {
                        id,
                        label: if clients.len() < LABELLED_CLIENTS {
                            name.clone()
                        } else {
                            Arc::from("other")
                        },
                        name,
                        role: Role::parse(&role)
                            .ok_or_else(|| DbError::Other(format!("unknown role {role:?}")))?,
                        credential_types: db::column(row, "credential_types")?,
                        rate_limit: rate.and_then(|r| u32::try_from(r).ok()),
                        limiter: limiters.get(&id).cloned().unwrap_or_default(),
                    });
                    clients.insert(id, c.clone());
                    c
                }
            };
            let bytes: &[u8] = db::column(row, "key_sha256")?;
            let hash = KeyHash(
                bytes
                    .try_into()
                    .map_err(|_| DbError::Other("a key hash is not 32 bytes".into()))?,
            );
            keys.insert(hash.slot(), Key { hash, client });
        }
        let count = clients.len();
        if let Ok(mut snapshot) = self.snapshot.write() {
            *snapshot = Arc::new(Snapshot { keys });
        }
        self.version.store(version, Ordering::Release);
        if !self.loaded.swap(true, Ordering::AcqRel) {
            self.first_load.notify_waiters();
            log::info!(target: "auth", clients = count; "API clients loaded");
        } else {
            log::info!(target: "auth", clients = count, version; "API clients reloaded");
        }
        Ok(true)
    }

    /// Replaces the clients with `keys` (each key's hash and its client) and
    /// counts as loaded, without a database: for the benches, which measure a
    /// key check under valgrind where no database round trip belongs.
    #[doc(hidden)]
    pub fn load(&self, keys: impl IntoIterator<Item = (KeyHash, Arc<ApiClient>)>) {
        let keys = keys
            .into_iter()
            .map(|(hash, client)| (hash.slot(), Key { hash, client }))
            .collect();
        if let Ok(mut snapshot) = self.snapshot.write() {
            *snapshot = Arc::new(Snapshot { keys });
        }
        self.loaded.store(true, Ordering::Release);
        self.first_load.notify_waiters();
    }
}

/// Keeps `registry` current through connections from `connect`, until the task
/// is aborted. Failures are logged at most once every ten seconds.
pub async fn watch<F, Fut, C>(registry: Arc<Registry>, connect: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<C, DbError>>,
    C: std::ops::Deref<Target = Client>,
{
    let mut last_warning: Option<Instant> = None;
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = match connect().await {
            Ok(client) => registry.refresh(&client).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                last_warning = Some(Instant::now());
                log::warn!(target: "auth", error:% = e, loaded = registry.is_loaded(); "cannot refresh the API clients; keeping what was loaded");
            }
        }
    }
}
