//! `Idempotency-Key` on `POST /issuance/credentials` and its bulk route (the IETF httpapi draft,
//! docs/API.md "Idempotency-Key"): the key's validation, this task's keys in
//! flight (409), the statement that stores a keyed credential together with
//! its key, what a key already stored says (a replay, a 422, or run again),
//! and the purge of keys older than [`KEEP`].
//!
//! A key is scoped to the calling API client (`''`, one scope, with
//! `AUTH_MODE=off`) and fingerprinted with the SHA-256 of the body. Its row
//! (sql/006) is inserted by the statement that inserts the credential, and the
//! credential is inserted only for a key row that statement inserted: a
//! retry after a 503 finds both or neither, and the same key with another body
//! stores nothing. The 201 is not stored: it is written again from the
//! credential's row, byte for byte, since it holds everything the first one
//! said (`issued_by` names the task that answered). A batch without keys runs
//! issuance's own statement, unchanged.

use crate::{created, IssueParams, IssueStatements, Pending, ISSUE_TYPES};
use kc_core::db::batch::Deadline;
use kc_core::db::{self, Conn, DbError, Pool, Prepare, Stmt};
use kc_core::http::KeyHeader;
use kc_core::model::{Credential, FieldError, Invalid};
use kc_core::{ApiError, Reply, RequestCtx};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

/// How long a key is kept at least: a request with a key older than this is a
/// new request.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);

/// The longest key, in bytes (the draft's and Stripe's limit).
pub const KEY_MAX: usize = 255;

/// [`crate::ISSUE_MANY`] with the keys: `$10` the keys (NULL for a request
/// without one), `$11` the bodies' SHA-256, `$12` the moment before which a
/// stored key has expired. The `claimed` CTE inserts each key, or takes over an
/// expired one, and returns the ids of the credentials it may insert: a key
/// that is there already (in flight on another task: the insert waits for its
/// transaction) returns nothing, and its credential is not inserted. The
/// returned columns are read by these names.
const ISSUE_KEYED: &str = "\
WITH t AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[],
                       $9::timestamptz[], $10::text[], $11::bytea[])
    AS t(id, name, email, credential_type, metadata, issuer, valid_until, idempotency_key, fingerprint)
), claimed AS (
  INSERT INTO idempotency_keys AS k (client, idempotency_key, fingerprint, credential_id)
  SELECT COALESCE(issuer, ''), idempotency_key, fingerprint, id FROM t
   WHERE idempotency_key IS NOT NULL AND kc_before_deadline($8)
  ON CONFLICT (client, idempotency_key) DO UPDATE
     SET fingerprint = EXCLUDED.fingerprint, credential_id = EXCLUDED.credential_id,
         created_at = EXCLUDED.created_at
   WHERE k.created_at < $12
  RETURNING k.credential_id
)
INSERT INTO credentials (id, name, email, credential_type, metadata, issuer, valid_until, issued_by)
SELECT id, name, email, credential_type, metadata, issuer, valid_until, $7
  FROM t
 WHERE (idempotency_key IS NULL OR id IN (SELECT credential_id FROM claimed)) AND kc_before_deadline($8)
ON CONFLICT ON CONSTRAINT unique_credential DO NOTHING
RETURNING id, metadata, issued_at";

/// The types of [`ISSUE_KEYED`]'s parameters `$10`–`$12`; `$1`–`$9` are
/// [`crate::ISSUE_MANY`]'s.
const KEY_TYPES: [Type; 3] = [Type::TEXT_ARRAY, Type::BYTEA_ARRAY, Type::TIMESTAMPTZ];

/// The stored keys among (client `$1[n]`, key `$2[n]`), numbered `n` from 1,
/// with the credential each names when it exists. Its columns are read by
/// these names.
const STORED: &str = "\
SELECT q.n, k.fingerprint, k.credential_id,
       c.id, c.name, c.email, c.credential_type, c.metadata, c.issued_by, c.issuer, c.issued_at, c.valid_until
  FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q(client, idempotency_key, n)
  JOIN idempotency_keys k ON k.client = q.client AND k.idempotency_key = q.idempotency_key
  LEFT JOIN credentials c ON c.id = k.credential_id";

/// The types of [`STORED`]'s parameters `$1`–`$2`.
const STORED_TYPES: [Type; 2] = [Type::TEXT_ARRAY, Type::TEXT_ARRAY];

/// Deletes at most `$2` keys created before `$1`, oldest first, passing over
/// rows another task is deleting; returns how many it deleted.
const PURGE: &str = "\
WITH gone AS (
  DELETE FROM idempotency_keys
   WHERE (client, idempotency_key) IN (
         SELECT client, idempotency_key FROM idempotency_keys
          WHERE created_at < $1 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
  RETURNING 1
)
SELECT count(*) AS deleted FROM gone";

/// How often a task deletes expired keys.
const PURGE_EVERY: Duration = Duration::from_secs(300);
/// After a purge that failed (the database down, the schema not migrated yet).
const PURGE_RETRY: Duration = Duration::from_secs(30);
/// Keys one purge statement deletes at most.
const PURGE_BATCH: i64 = 1000;
/// Statements one purge runs at most: a task deletes at most 60,000 keys per
/// [`PURGE_EVERY`] (200 a second, more than one task issues with keys).
const PURGE_STATEMENTS: usize = 60;

/// The statements of the keyed path, prepared with issuance's own.
pub struct KeyStatements {
    issue: Stmt,
    stored: Stmt,
}

impl KeyStatements {
    /// Prepares them on a fresh connection.
    pub async fn prepare(db: &Prepare<'_>) -> Result<Self, tokio_postgres::Error> {
        Ok(KeyStatements {
            issue: db
                .stmt(ISSUE_KEYED, &[&ISSUE_TYPES[..], &KEY_TYPES[..]].concat())
                .await?,
            stored: db.stmt(STORED, &STORED_TYPES).await?,
        })
    }
}

/// A valid `Idempotency-Key` and the fingerprint of the body it came with.
#[derive(Debug, Clone)]
pub struct Claim {
    key: Arc<str>,
    fingerprint: [u8; 32],
}

impl Claim {
    /// The request's key, if it sent one: 1 to [`KEY_MAX`] printable ASCII
    /// characters (space included), on one header line; else 400.
    pub fn parse(header: &KeyHeader, body: &[u8]) -> Result<Option<Claim>, ApiError> {
        let value = match header {
            KeyHeader::Absent => return Ok(None),
            KeyHeader::One(value) => value.as_bytes(),
            KeyHeader::Repeated => &[][..],
        };
        let printable = |b: &u8| b.is_ascii_graphic() || *b == b' ';
        let key = Some(value)
            .filter(|v| (1..=KEY_MAX).contains(&v.len()) && v.iter().all(printable))
            // Printable ASCII is valid UTF-8.
            .and_then(|v| std::str::from_utf8(v).ok())
            .ok_or_else(|| {
                ApiError::Invalid(Invalid(vec![FieldError::new(
                    "Idempotency-Key",
                    format!("must be sent once, as 1 to {KEY_MAX} printable ASCII characters"),
                )]))
            })?;
        let digest = ring::digest::digest(&ring::digest::SHA256, body);
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(digest.as_ref());
        Ok(Some(Claim {
            key: Arc::from(key),
            fingerprint,
        }))
    }
}

impl Claim {
    /// The keys of a bulk request's items, derived from this one (see [`ItemKeys`]).
    pub fn items(&self) -> ItemKeys {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.key.as_bytes());
        let hex: String = digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
        ItemKeys {
            prefix: format!("\u{1}{hex}:"),
            fingerprint: self.fingerprint,
        }
    }
}

/// The keys of a bulk request's items: item `n` of a request sent with key K
/// is stored under its own row, `\x01` + the first 16 bytes of SHA-256(K) in
/// hex + `:n`, with the whole body's fingerprint. Each item's row is written
/// with its credential, so a retry replays exactly the items that were
/// stored and runs the others; the control character, which no header can
/// carry, keeps them apart from single requests' keys, and the column's 255
/// bytes hold them whatever K's length.
pub struct ItemKeys {
    prefix: String,
    fingerprint: [u8; 32],
}

impl ItemKeys {
    /// Item `at`'s key.
    pub fn item(&self, at: usize) -> Claim {
        Claim {
            key: Arc::from(format!("{}{at}", self.prefix)),
            fingerprint: self.fingerprint,
        }
    }
}

/// Whether any of the `n` items of a bulk request sent with `key` by the
/// client `scope` (None: `AUTH_MODE=off`) is stored with another body's
/// fingerprint: then the key was used for another request (422), and nothing
/// of this one may run. One lookup of [`STORED`] before the items go.
pub async fn reused(
    pool: &Pool<IssueStatements>,
    scope: Option<&str>,
    key: &Claim,
    n: usize,
) -> Result<bool, DbError> {
    use kc_core::db::batch::Source;
    let items = key.items();
    let clients: Vec<&str> = vec![scope.unwrap_or(""); n];
    let keys: Vec<Arc<str>> = (0..n).map(|at| items.item(at).key).collect();
    let keys: Vec<&str> = keys.iter().map(|k| &**k).collect();
    let conn = pool.get().await?;
    let rows = conn.query(&conn.stmts.keys.stored, &[&clients, &keys]).await?;
    for row in &rows {
        let fingerprint: &[u8] = db::column(row, "fingerprint")?;
        if fingerprint != key.fingerprint {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What a stored key says about a keyed request that inserted nothing.
pub enum KeyOutcome {
    /// The key and this body issued this credential (the row): answer its 201 again.
    Replay(Row),
    /// The key came with another body (422).
    Reused,
    /// The key and this body were answered 409, and the credential that held
    /// the triple is gone: run again as a request without a key, under the
    /// key's credential id, so that the key names what it issues.
    Rerun(uuid::Uuid),
}

/// A key in its client's scope (None: `AUTH_MODE=off`).
type Scoped = (Option<Arc<str>>, Arc<str>);

/// This task's keys in flight, and the purge of expired keys.
pub struct Keys {
    in_flight: Mutex<HashSet<Scoped>>,
    purge: tokio::task::JoinHandle<()>,
}

impl Keys {
    /// Starts deleting expired keys on `pool` in the background.
    pub fn new(pool: &Pool<IssueStatements>) -> Self {
        Keys {
            in_flight: Mutex::new(HashSet::new()),
            purge: tokio::spawn(purge_forever(pool.clone())),
        }
    }

    /// Marks `claim` of the client `scope` (None: `AUTH_MODE=off`) in flight on
    /// this task until the returned guard goes; 409 if it is already. One
    /// request per key in flight per task is also what keeps a batch from
    /// holding a key twice, which [`ISSUE_KEYED`]'s `DO UPDATE` could not take.
    pub fn enter(&self, scope: Option<Arc<str>>, claim: &Claim) -> Result<InFlight<'_>, ApiError> {
        let entry = (scope, claim.key.clone());
        let Ok(mut in_flight) = self.in_flight.lock() else {
            return Err(ApiError::Internal("the keys in flight are poisoned".into()));
        };
        if !in_flight.insert(entry.clone()) {
            return Err(ApiError::KeyInFlight);
        }
        Ok(InFlight { keys: self, entry })
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.purge.abort();
    }
}

/// A key in flight on this task; leaves the set when dropped (answered, or
/// its client gone).
pub struct InFlight<'a> {
    keys: &'a Keys,
    entry: Scoped,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut in_flight) = self.keys.in_flight.lock() {
            in_flight.remove(&self.entry);
        }
    }
}

/// Runs [`ISSUE_KEYED`] for a batch in which some request carries a key; the
/// rows it inserted.
pub async fn issue(
    conn: &Conn<IssueStatements>,
    p: &IssueParams<'_>,
    items: &[Pending],
    worker_id: &str,
    deadline: Deadline,
) -> Result<Vec<Row>, DbError> {
    let keys: Vec<Option<&str>> = items.iter().map(|i| i.claim.as_ref().map(|c| &*c.key)).collect();
    let fingerprints: Vec<Option<&[u8]>> = items
        .iter()
        .map(|i| i.claim.as_ref().map(|c| &c.fingerprint[..]))
        .collect();
    let expired = SystemTime::now() - KEEP;
    let keyed: [&(dyn ToSql + Sync); 3] = [&keys, &fingerprints, &expired];
    let params: Vec<&(dyn ToSql + Sync)> = p.bind(&worker_id, &deadline.0).into_iter().chain(keyed).collect();
    conn.query(&conn.stmts.keys.issue, &params).await
}

/// What the stored keys say about the keyed requests among `skipped` (those
/// the batch did not insert), by their credential ids: a replay, a 422, or,
/// for a key answered 409 before, its credential id (the request looks for
/// the triple's holder again, and runs again if there is none).
pub struct Stored {
    /// Replays and 422s.
    pub outcomes: HashMap<uuid::Uuid, KeyOutcome>,
    /// Keys that were answered 409: the request's id → the key's credential id.
    pub answered_409: HashMap<uuid::Uuid, uuid::Uuid>,
}

impl Stored {
    /// Looks the keys of the keyed requests among `skipped` up.
    pub async fn lookup(conn: &Conn<IssueStatements>, skipped: &[&Pending]) -> Result<Stored, DbError> {
        let keyed: Vec<(&Pending, &Claim)> = skipped
            .iter()
            .filter_map(|p| p.claim.as_ref().map(|c| (*p, c)))
            .collect();
        let mut stored = Stored {
            outcomes: HashMap::new(),
            answered_409: HashMap::new(),
        };
        if keyed.is_empty() {
            return Ok(stored);
        }
        let clients: Vec<&str> = keyed
            .iter()
            .map(|(p, _)| p.issuer.as_deref().unwrap_or(""))
            .collect();
        let keys: Vec<&str> = keyed.iter().map(|(_, c)| &*c.key).collect();
        let rows = conn.query(&conn.stmts.keys.stored, &[&clients, &keys]).await?;
        for row in rows {
            let n: i64 = db::column(&row, "n")?;
            let Some((pending, claim)) = usize::try_from(n - 1).ok().and_then(|i| keyed.get(i)) else {
                return Err(DbError::Other(format!("stored key number {n} out of range")));
            };
            let fingerprint: &[u8] = db::column(&row, "fingerprint")?;
            let credential: Option<uuid::Uuid> = db::column(&row, "id")?;
            let outcome = if fingerprint != claim.fingerprint {
                KeyOutcome::Reused
            } else if credential.is_some() {
                KeyOutcome::Replay(row)
            } else {
                let answered: uuid::Uuid = db::column(&row, "credential_id")?;
                stored.answered_409.insert(pending.id, answered);
                continue;
            };
            stored.outcomes.insert(pending.id, outcome);
        }
        Ok(stored)
    }
}

/// The first answer to the key, again: the 201 written from the credential's
/// row (`row` as [`STORED`] returns it), with `Idempotent-Replayed: true`.
pub fn replay(ctx: &RequestCtx<'_>, row: &Row) -> Result<Reply, ApiError> {
    let credential = Credential::from_row(row)?;
    log::info!(request_id = ctx.request_id, id:% = credential.id, client = ctx.caller.name(); "idempotent request replayed");
    let mut reply = created(&credential);
    reply.replayed = true;
    Ok(reply)
}

/// Deletes expired keys every [`PURGE_EVERY`], the first time a second after
/// start, while the database is up.
async fn purge_forever(pool: Pool<IssueStatements>) {
    let mut wait = Duration::from_secs(1);
    loop {
        tokio::time::sleep(wait).await;
        if pool.monitor().is_down() {
            wait = PURGE_RETRY;
            continue;
        }
        wait = match purge(&pool, SystemTime::now() - KEEP).await {
            Ok(0) => PURGE_EVERY,
            Ok(deleted) => {
                log::info!(target: "db", deleted; "expired idempotency keys deleted");
                PURGE_EVERY
            }
            Err(e) => {
                log::warn!(target: "db", error:% = e; "cannot delete expired idempotency keys");
                PURGE_RETRY
            }
        };
    }
}

/// Deletes keys created before `expired`, [`PURGE_BATCH`] per statement, at
/// most [`PURGE_STATEMENTS`] statements; how many it deleted.
async fn purge(pool: &Pool<IssueStatements>, expired: SystemTime) -> Result<i64, DbError> {
    let client = pool.client().await?;
    let mut total = 0;
    for _ in 0..PURGE_STATEMENTS {
        let rows = client
            .query_typed(
                PURGE,
                &[(&expired, Type::TIMESTAMPTZ), (&PURGE_BATCH, Type::INT8)],
            )
            .await?;
        let deleted: i64 = match rows.first() {
            Some(row) => db::column(row, "deleted")?,
            None => 0,
        };
        total += deleted;
        if deleted < PURGE_BATCH {
            break;
        }
    }
    Ok(total)
}
