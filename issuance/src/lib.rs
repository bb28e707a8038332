//! Issuance: `POST /issuance/credentials` stores a credential once per
//! (name, email, credentialType) and says which task issued it.
//!
//! Requests are coalesced (see `kc_core::db::batch`): those that arrive while a
//! statement is in flight go to the database together as ONE multi-row insert;
//! only when some triple was taken does a second statement find its holder.
//! Exactly one of N identical concurrent requests wins, on any number of tasks
//! and inside one batch, because the database's unique constraint decides.
//!
//! `POST /issuance/credentials/batch` issues up to `BULK_MAX` credentials in one
//! request: each item is read, checked and answered as the single route would
//! answer it alone, and the valid ones go to the same coalescer together, where
//! they count as that many requests.
//!
//! A request with an `Idempotency-Key` is answered once: see [`idempotency`].
//!
//! `POST /issuance/credentials/{id}/revoke` revokes a credential: only the
//! client that issued it may (anyone with `AUTH_MODE=off`); to any other it does
//! not exist (404). One UPDATE per revocation, through a coalescer of its own
//! with one lane, so it is admitted, shed and timed out like an issuance.

pub mod idempotency;

use bytes::Bytes;
use hyper::StatusCode;
use idempotency::{Claim, KeyOutcome, Keys, Stored};
use kc_core::auth::{Caller, Role};
use kc_core::db::batch::{Batch, Coalescer, Deadline, Limits, Source};
use kc_core::db::{self, DbError, Jsonb, Pool, Prepare, Statements, Stmt};
use kc_core::json;
use kc_core::model::{bulk, canonical_uuid, Bulk, Credential, NewCredential, RevokeRequest};
use kc_core::{ApiError, Config, Endpoint, Reply, RequestCtx};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

/// Inserts a batch; returns the rows it inserted. One round trip when every
/// triple is new, the common case.
///
/// `DO NOTHING` skips a triple that exists, and one that a concurrent insert
/// (another task, or an earlier row of this batch) holds; such an insert first
/// waits for that transaction, so by the time this statement returns the winner
/// is committed and [`EXISTING_MANY`], a new statement, can see it.
///
/// `$8` is the batch's deadline: `kc_before_deadline` (sql/002) fails the whole
/// statement if the server gets to a row after it, so a statement that reaches
/// a frozen server's socket and runs once the requests were answered 503
/// stores nothing. The returned columns are read by these names.
const ISSUE_MANY: &str = "\
INSERT INTO credentials (id, name, email, credential_type, metadata, issuer, valid_until, issued_by)
SELECT id, name, email, credential_type, metadata, issuer, valid_until, $7
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[], $9::timestamptz[])
    AS t(id, name, email, credential_type, metadata, issuer, valid_until)
 WHERE kc_before_deadline($8)
ON CONFLICT ON CONSTRAINT unique_credential DO NOTHING
RETURNING id, metadata, issued_at";

/// The credentials that hold any of the given (name, email, credentialType)
/// triples. Its columns are read by these names (a cast keeps the name).
const EXISTING_MANY: &str = "\
SELECT c.id, c.issued_by::text, c.issuer, c.issued_at, c.name::text, c.email::text, c.credential_type::text
  FROM credentials c
  JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(name, email, credential_type)
    ON c.name = k.name AND c.email = k.email AND c.credential_type = k.credential_type";

/// Revokes the credential `$1` if `$2` issued it (any credential when `$2` is
/// NULL: `AUTH_MODE=off`), with the reason `$3`; returns it, or no row when
/// there is no such credential for this caller. A second revocation keeps the
/// first one's time and reason. `$4` is the deadline, as for [`ISSUE_MANY`].
/// The issuance role may UPDATE only these two columns (sql/005).
const REVOKE: &str = "\
UPDATE credentials
   SET revoked_at = COALESCE(revoked_at, CURRENT_TIMESTAMP),
       revocation_reason = CASE WHEN revoked_at IS NULL THEN $3::text ELSE revocation_reason END
 WHERE id = $1 AND ($2::text IS NULL OR issuer = $2::text) AND kc_before_deadline($4)
RETURNING id, name, email, credential_type, metadata, issued_by, issuer, issued_at, valid_until,
          revoked_at, revocation_reason";

/// The types of [`REVOKE`]'s parameters `$1`–`$4`.
const REVOKE_TYPES: [Type; 4] = [Type::UUID, Type::TEXT, Type::TEXT, Type::TIMESTAMPTZ];

/// How often a request tries again when the row it conflicted with is gone by
/// the time it looks (only if credentials are being deleted concurrently).
const ATTEMPTS: usize = 3;

/// The types of [`ISSUE_MANY`]'s parameters `$1`–`$9`.
const ISSUE_TYPES: [Type; 9] = [
    Type::UUID_ARRAY,
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::JSONB_ARRAY,
    Type::TEXT_ARRAY,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ_ARRAY,
];

/// The types of [`EXISTING_MANY`]'s parameters `$1`–`$3`.
const EXISTING_TYPES: [Type; 3] = [Type::TEXT_ARRAY, Type::TEXT_ARRAY, Type::TEXT_ARRAY];

/// Issuance's statements.
pub struct IssueStatements {
    issue: Stmt,
    existing: Stmt,
    revoke: Stmt,
    keys: idempotency::KeyStatements,
}

impl Statements for IssueStatements {
    async fn prepare(db: &Prepare<'_>) -> Result<Self, tokio_postgres::Error> {
        Ok(IssueStatements {
            issue: db.stmt(ISSUE_MANY, &ISSUE_TYPES).await?,
            existing: db.stmt(EXISTING_MANY, &EXISTING_TYPES).await?,
            revoke: db.stmt(REVOKE, &REVOKE_TYPES).await?,
            keys: idempotency::KeyStatements::prepare(db).await?,
        })
    }
}

/// One request's share of a batch: its credential, owned so the lane running
/// the statement can bind it.
pub struct Pending {
    id: uuid::Uuid,
    name: String,
    email: String,
    credential_type: String,
    metadata: Option<String>,
    issuer: Option<Arc<str>>,
    valid_until: Option<SystemTime>,
    /// Its `Idempotency-Key`, if it came with one.
    claim: Option<Claim>,
}

impl Pending {
    /// The credential `c`, to be stored under `id` as issued by the client `issuer`.
    pub fn new(id: uuid::Uuid, c: &NewCredential<'_>, issuer: Option<Arc<str>>) -> Self {
        Pending {
            id,
            name: c.name().to_owned(),
            email: c.email().to_owned(),
            credential_type: c.credential_type().to_owned(),
            metadata: c.metadata().map(str::to_owned),
            issuer,
            valid_until: c.valid_until(),
            claim: None,
        }
    }

    /// The same, stored with its `Idempotency-Key` (see [`idempotency`]).
    pub fn keyed(self, claim: Option<Claim>) -> Self {
        Pending { claim, ..self }
    }
}

/// The column arrays [`ISSUE_MANY`] binds as `$1`–`$6` and `$9`: one element per request.
pub struct IssueParams<'a> {
    /// `$1`, the ids.
    pub ids: Vec<uuid::Uuid>,
    /// `$2`, the names.
    pub names: Vec<&'a str>,
    /// `$3`, the emails.
    pub emails: Vec<&'a str>,
    /// `$4`, the credential types.
    pub types: Vec<&'a str>,
    /// `$5`, the metadata as JSON text.
    pub metadata: Vec<Option<Jsonb<&'a str>>>,
    /// `$6`, the issuing clients' names.
    pub issuers: Vec<Option<&'a str>>,
    /// `$9`, the ends of validity.
    pub valid_until: Vec<Option<SystemTime>>,
}

impl<'a> IssueParams<'a> {
    /// The arrays for `items`, borrowing their strings.
    pub fn new(items: &'a [Pending]) -> Self {
        IssueParams {
            ids: items.iter().map(|p| p.id).collect(),
            names: items.iter().map(|p| p.name.as_str()).collect(),
            emails: items.iter().map(|p| p.email.as_str()).collect(),
            types: items.iter().map(|p| p.credential_type.as_str()).collect(),
            metadata: items.iter().map(|p| p.metadata.as_deref().map(Jsonb)).collect(),
            issuers: items.iter().map(|p| p.issuer.as_deref()).collect(),
            valid_until: items.iter().map(|p| p.valid_until).collect(),
        }
    }

    /// [`ISSUE_MANY`]'s parameters `$1`–`$9`: these arrays, the task's
    /// `worker_id` and the batch's `deadline`.
    pub fn bind<'s>(
        &'s self,
        worker_id: &'s (dyn ToSql + Sync),
        deadline: &'s SystemTime,
    ) -> [&'s (dyn ToSql + Sync); 9] {
        [
            &self.ids,
            &self.names,
            &self.emails,
            &self.types,
            &self.metadata,
            &self.issuers,
            worker_id,
            deadline,
            &self.valid_until,
        ]
    }
}

/// What the batch says about one request.
pub enum Outcome {
    /// Inserted: the stored metadata (PostgreSQL's text) and the issue time.
    Issued {
        metadata: Option<String>,
        issued_at: SystemTime,
    },
    /// The triple was issued before (by this batch or earlier).
    Exists {
        id: uuid::Uuid,
        issued_by: String,
        issuer: Option<String>,
        issued_at: SystemTime,
    },
    /// Skipped, and its holder gone by the time the batch looked: try again.
    Raced,
    /// Not inserted: its `Idempotency-Key` was stored before.
    Key(KeyOutcome),
}

/// The multi-row insert behind the coalescer.
pub struct IssueBatch {
    worker_id: String,
}

type Key<'a> = (&'a str, &'a str, &'a str);

impl Batch for IssueBatch {
    type Source = Pool<IssueStatements>;
    type Item = Pending;
    type Output = Outcome;

    async fn run(
        &self,
        conn: &<Pool<IssueStatements> as Source>::Conn,
        items: &[Pending],
        deadline: Deadline,
    ) -> Result<Vec<Outcome>, DbError> {
        let p = IssueParams::new(items);
        // Issuance's own statement unless some request carries an Idempotency-Key.
        let rows = if items.iter().any(|p| p.claim.is_some()) {
            idempotency::issue(conn, &p, items, &self.worker_id, deadline).await?
        } else {
            conn.query(&conn.stmts.issue, &p.bind(&self.worker_id, &deadline.0))
                .await?
        };
        let mut inserted: HashMap<uuid::Uuid, (Option<&str>, SystemTime)> =
            HashMap::with_capacity(rows.len());
        for row in &rows {
            let metadata: Option<Jsonb<&str>> = db::column(row, "metadata")?;
            inserted.insert(
                db::column(row, "id")?,
                (metadata.map(|m| m.0), db::column(row, "issued_at")?),
            );
        }

        // Keys stored before, then triples that were taken: in new statements.
        let skipped: Vec<&Pending> = items.iter().filter(|p| !inserted.contains_key(&p.id)).collect();
        let Stored {
            mut outcomes,
            answered_409,
        } = Stored::lookup(conn, &skipped).await?;
        let skipped: Vec<&Pending> = skipped
            .into_iter()
            .filter(|p| !outcomes.contains_key(&p.id))
            .collect();
        let holders = if skipped.is_empty() {
            Vec::new()
        } else {
            let names: Vec<&str> = skipped.iter().map(|p| p.name.as_str()).collect();
            let emails: Vec<&str> = skipped.iter().map(|p| p.email.as_str()).collect();
            let types: Vec<&str> = skipped.iter().map(|p| p.credential_type.as_str()).collect();
            conn.query(&conn.stmts.existing, &[&names, &emails, &types])
                .await?
        };
        let mut existing: HashMap<Key<'_>, (uuid::Uuid, &str, Option<&str>, SystemTime)> =
            HashMap::with_capacity(holders.len());
        for row in &holders {
            let key = (
                db::column(row, "name")?,
                db::column(row, "email")?,
                db::column(row, "credential_type")?,
            );
            existing.insert(
                key,
                (
                    db::column(row, "id")?,
                    db::column(row, "issued_by")?,
                    db::column(row, "issuer")?,
                    db::column(row, "issued_at")?,
                ),
            );
        }
        Ok(items
            .iter()
            .map(|p| {
                if let Some((metadata, at)) = inserted.get(&p.id) {
                    Outcome::Issued {
                        metadata: metadata.map(str::to_owned),
                        issued_at: *at,
                    }
                } else if let Some(outcome) = outcomes.remove(&p.id) {
                    Outcome::Key(outcome)
                } else if let Some((id, by, issuer, at)) = existing.get(&key(p)) {
                    Outcome::Exists {
                        id: *id,
                        issued_by: (*by).to_owned(),
                        issuer: issuer.map(str::to_owned),
                        issued_at: *at,
                    }
                } else if let Some(id) = answered_409.get(&p.id) {
                    // Answered 409 before, and the holder is gone: issue it now.
                    Outcome::Key(KeyOutcome::Rerun(*id))
                } else {
                    // Its holder was deleted in between: the request tries again.
                    Outcome::Raced
                }
            })
            .collect())
    }
}

fn key(p: &Pending) -> Key<'_> {
    (&p.name, &p.email, &p.credential_type)
}

/// One revocation: the credential, the client that must have issued it (None
/// with `AUTH_MODE=off`: any), and the reason given.
pub struct Revocation {
    id: uuid::Uuid,
    issuer: Option<Arc<str>>,
    reason: Option<String>,
}

/// Runs [`REVOKE`] once per revocation of a batch (revocations are rare: the
/// coalescer is for its admission control, deadline and timeout, not its
/// batching). The row is the revoked credential; None when this caller has no
/// such credential.
pub struct RevokeBatch;

impl Batch for RevokeBatch {
    type Source = Pool<IssueStatements>;
    type Item = Revocation;
    type Output = Option<Row>;

    async fn run(
        &self,
        conn: &<Pool<IssueStatements> as Source>::Conn,
        items: &[Revocation],
        deadline: Deadline,
    ) -> Result<Vec<Option<Row>>, DbError> {
        let mut revoked = Vec::with_capacity(items.len());
        for r in items {
            let rows = conn
                .query(
                    &conn.stmts.revoke,
                    &[&r.id, &r.issuer.as_deref(), &r.reason, &deadline.0],
                )
                .await?;
            revoked.push(rows.into_iter().next());
        }
        Ok(revoked)
    }
}

/// The issuance service.
pub struct Issuance {
    batches: Coalescer<IssueBatch>,
    revocations: Coalescer<RevokeBatch>,
    /// `CREDENTIAL_MAX_VALIDITY_DAYS`.
    max_validity: Duration,
    /// `BULK_MAX`.
    bulk_max: usize,
    /// Idempotency keys in flight on this task; the purge of expired ones.
    keys: Keys,
    /// For a keyed bulk request's check of its key before it runs.
    pool: Pool<IssueStatements>,
}

impl Endpoint for Issuance {
    const SERVICE: &'static str = "issuance";
    const PATH: &'static str = "/issuance/credentials";
    const OUTCOME_KEY: &'static str = "success";
    const ANONYMOUS: bool = false;
    const ACTIONS: &'static [&'static str] = &["revoke"];
    type Statements = IssueStatements;

    fn new(pool: Pool<IssueStatements>, config: &Config) -> Self {
        let batch = IssueBatch {
            worker_id: config.worker_id.clone(),
        };
        // One lane (one pooled connection at most), and few revocations per
        // batch, since each is a statement of its own.
        let limits = Limits {
            lanes: 1,
            batch_max: REVOKE_BATCH_MAX,
            ..Limits::new(config)
        };
        Issuance {
            batches: Coalescer::on_pool(&pool, batch, config),
            revocations: Coalescer::new(
                pool.clone(),
                pool.monitor().clone(),
                pool.metrics().clone(),
                RevokeBatch,
                limits,
            ),
            max_validity: config.credential_max_validity,
            bulk_max: config.bulk_max,
            keys: Keys::new(&pool),
            pool: pool.clone(),
        }
    }

    async fn handle(&self, ctx: &RequestCtx<'_>, body: Bytes) -> Result<Reply, ApiError> {
        // A key that may not issue at all is refused before its body is looked at.
        if ctx.caller.client().is_some_and(|c| c.role != Role::Issuer) {
            return Err(ApiError::Forbidden(NOT_AN_ISSUER));
        }
        let key = Claim::parse(ctx.idempotency_key, &body)?;
        // simd-json rewrites its input; `body` stays intact for the raw metadata.
        let mut scratch = body.to_vec();
        let credential = NewCredential::parse_within(&body, &mut scratch, self.max_validity)?;
        let issuer = permitted(ctx.caller, credential.credential_type())?;
        let _in_flight = key
            .as_ref()
            .map(|k| self.keys.enter(issuer.clone(), k))
            .transpose()?;
        let mut id = uuid::Uuid::new_v4();
        // The key the next attempt carries: none while it runs again under the key's id.
        let mut claim = key.clone();
        let owner = ctx.caller.owner();
        for _ in 0..ATTEMPTS {
            let pending = Pending::new(id, &credential, issuer.clone()).keyed(claim.clone());
            match self.batches.submit_as(owner, pending).await? {
                Outcome::Key(KeyOutcome::Replay(row)) => return idempotency::replay(ctx, &row),
                Outcome::Key(KeyOutcome::Reused) => return Err(ApiError::KeyReused),
                Outcome::Key(KeyOutcome::Rerun(stored)) => {
                    // Under the key's credential id, without the key, which is stored.
                    (id, claim) = (stored, None);
                    continue;
                }
                Outcome::Exists { id: holder, .. } if key.is_some() && claim.is_none() && holder == id => {
                    // Another retry issued the key's credential first: replay it.
                    claim = key.clone();
                    continue;
                }
                outcome => {
                    if let Some(reply) = answer(ctx, &credential, id, outcome) {
                        return Ok(reply);
                    }
                }
            }
        }
        Err(kept_disappearing())
    }

    async fn handle_bulk(&self, ctx: &RequestCtx<'_>, body: Bytes) -> Result<Reply, ApiError> {
        if ctx.caller.client().is_some_and(|c| c.role != Role::Issuer) {
            return Err(ApiError::Forbidden(NOT_AN_ISSUER));
        }
        let key = Claim::parse(ctx.idempotency_key, &body)?;
        let bulk = Bulk::parse(&body, self.bulk_max)?;
        let scope = ctx.caller.client().map(|c| c.name.clone());
        let item_keys = key.as_ref().map(Claim::items);
        let _in_flight = key
            .as_ref()
            .map(|k| self.keys.enter(scope.clone(), k))
            .transpose()?;
        if let Some(key) = &key {
            // The same key with another body stores nothing: checked before any item runs.
            if idempotency::reused(&self.pool, scope.as_deref(), key, bulk.len()).await? {
                return Err(ApiError::KeyReused);
            }
        }
        let mut scratch = body.to_vec();
        // Each item as the single route reads a body: refused ones are answered now.
        let mut replies: Vec<Option<Reply>> = Vec::with_capacity(bulk.len());
        let mut valid = Vec::with_capacity(bulk.len());
        let mut ids = bulk::random_ids(bulk.len()).into_iter();
        for (at, (raw, scratch)) in bulk.split(&body, &mut scratch).into_iter().enumerate() {
            let checked = NewCredential::parse_within(raw, scratch, self.max_validity)
                .map_err(ApiError::from)
                .and_then(|c| Ok((permitted(ctx.caller, c.credential_type())?, c)));
            match checked {
                Ok((issuer, credential)) => {
                    let id = ids.next().unwrap_or_else(uuid::Uuid::new_v4);
                    // With a key, each item is stored with a key of its own (see `Claim::item`).
                    let claim = item_keys.as_ref().map(|k| k.item(at));
                    valid.push(BulkItem {
                        at,
                        id,
                        credential,
                        issuer,
                        claim: claim.clone(),
                        own: claim,
                    });
                    replies.push(None);
                }
                Err(e) => replies.push(Some(self.refused(ctx, e))),
            }
        }
        // The valid ones go to the coalescer together; a raced one goes again.
        let mut replayed = false;
        for _ in 0..ATTEMPTS {
            if valid.is_empty() {
                break;
            }
            let items = valid
                .iter()
                .map(|i| Pending::new(i.id, &i.credential, i.issuer.clone()).keyed(i.claim.clone()))
                .collect();
            let outcomes = self.batches.submit_many(ctx.caller.owner(), items).await;
            let mut again = Vec::new();
            for (mut item, outcome) in valid.into_iter().zip(outcomes) {
                let reply = match outcome {
                    Err(e) => Err(e.into()),
                    Ok(Outcome::Key(KeyOutcome::Replay(row))) => {
                        replayed = true;
                        idempotency::replay(ctx, &row)
                    }
                    Ok(Outcome::Key(KeyOutcome::Reused)) => Err(ApiError::KeyReused),
                    Ok(Outcome::Key(KeyOutcome::Rerun(stored))) => {
                        // As at the single route: under the key's id, without the key.
                        (item.id, item.claim) = (stored, None);
                        again.push(item);
                        continue;
                    }
                    Ok(Outcome::Exists { id: holder, .. })
                        if item.own.is_some() && item.claim.is_none() && holder == item.id =>
                    {
                        item.claim = item.own.clone();
                        again.push(item);
                        continue;
                    }
                    Ok(outcome) => match answer(ctx, &item.credential, item.id, outcome) {
                        Some(reply) => Ok(reply),
                        None => {
                            again.push(item);
                            continue;
                        }
                    },
                };
                replies[item.at] = Some(reply.unwrap_or_else(|e| self.refused(ctx, e)));
            }
            valid = again;
        }
        for BulkItem { at, .. } in valid {
            replies[at] = Some(self.refused(ctx, kept_disappearing()));
        }
        let replies: Vec<Reply> = replies.into_iter().flatten().collect();
        let mut reply = bulk::answer(
            |o| {
                o.bool("success", true);
            },
            &replies,
        )?;
        reply.replayed = replayed;
        Ok(reply)
    }

    async fn handle_action(
        &self,
        ctx: &RequestCtx<'_>,
        action: &'static str,
        id: &str,
        body: Bytes,
    ) -> Result<Reply, ApiError> {
        match action {
            "revoke" => self.revoke(ctx, id, body).await,
            _ => Err(ApiError::NotFound),
        }
    }
}

impl Issuance {
    /// A bulk item's answer for an error, as the single route would have given it.
    fn refused(&self, ctx: &RequestCtx<'_>, e: ApiError) -> Reply {
        e.into_reply(Self::OUTCOME_KEY, ctx.request_id)
    }

    /// `POST /issuance/credentials/{id}/revoke`: 200 with the credential and
    /// when it was revoked (the first time); 404 when the caller did not issue
    /// it, as when it does not exist.
    async fn revoke(&self, ctx: &RequestCtx<'_>, id: &str, body: Bytes) -> Result<Reply, ApiError> {
        let issuer = match ctx.caller {
            Caller::Open(_) => None,
            Caller::Client(c) if c.role == Role::Issuer => Some(c.name.clone()),
            _ => return Err(ApiError::Forbidden("This API key may not revoke credentials")),
        };
        let mut scratch = body.to_vec();
        let request = RevokeRequest::parse(&body, &mut scratch)?;
        let Some(id) = canonical_uuid(id) else {
            return Ok(unknown(ctx));
        };
        let revocation = Revocation {
            id,
            issuer,
            reason: request.reason().map(str::to_owned),
        };
        match self.revocations.submit_as(ctx.caller.owner(), revocation).await? {
            Some(row) => revoked(ctx, &row),
            None => Ok(unknown(ctx)),
        }
    }
}

/// One valid item of a bulk request on its way through the batches.
struct BulkItem<'a> {
    /// Its place in the request.
    at: usize,
    /// The id it is stored under.
    id: uuid::Uuid,
    credential: NewCredential<'a>,
    issuer: Option<Arc<str>>,
    /// The key the next attempt carries (none while it runs again under the key's id).
    claim: Option<Claim>,
    /// Its own key, derived from the request's `Idempotency-Key`, if it came with one.
    own: Option<Claim>,
}

/// Revocations one batch may carry: each is a statement of its own.
const REVOKE_BATCH_MAX: usize = 16;

const NOT_AN_ISSUER: &str = "This API key may not issue credentials";

/// The issuer to record for `caller` issuing `credential_type`, or 403: only an
/// issuer's key may issue, and only the types it was given (all when none).
fn permitted(caller: &Caller, credential_type: &str) -> Result<Option<Arc<str>>, ApiError> {
    match caller {
        Caller::Open(_) => Ok(None),
        Caller::Client(c) if c.may_issue(credential_type) => Ok(Some(c.name.clone())),
        Caller::Client(c) if c.role == Role::Issuer => Err(ApiError::Forbidden(
            "This API key may not issue credentials of this credentialType",
        )),
        _ => Err(ApiError::Forbidden(NOT_AN_ISSUER)),
    }
}

/// The reply for one credential's outcome in a batch: 201 or 409; None when its
/// conflicting credential was gone by the time the batch looked (try again).
fn answer(
    ctx: &RequestCtx<'_>,
    credential: &NewCredential<'_>,
    id: uuid::Uuid,
    outcome: Outcome,
) -> Option<Reply> {
    match outcome {
        Outcome::Issued { metadata, issued_at } => {
            Some(issued(ctx, credential, id, metadata.as_deref(), issued_at))
        }
        Outcome::Exists {
            id,
            issued_by,
            issuer: holder,
            issued_at,
        } => {
            // The holder's id and issue details go only to the client that
            // issued it: to anyone else they would confirm who holds what.
            let disclose = ctx.caller.is_open()
                || ctx
                    .caller
                    .client()
                    .is_some_and(|c| Some(&*c.name) == holder.as_deref());
            let existing = disclose.then_some((id, issued_by.as_str(), issued_at));
            Some(conflict(ctx, existing))
        }
        // Key outcomes come only to keyed requests, which `handle` answers itself;
        // a bulk item carries no key.
        Outcome::Raced | Outcome::Key(_) => None,
    }
}

fn kept_disappearing() -> ApiError {
    ApiError::Unavailable("the conflicting credential kept disappearing".into())
}

/// 201 with the credential as stored (public for the benches).
pub fn issued(
    ctx: &RequestCtx<'_>,
    c: &NewCredential<'_>,
    id: uuid::Uuid,
    metadata: Option<&str>,
    issued_at: SystemTime,
) -> Reply {
    let credential = Credential {
        id,
        name: c.name(),
        email: c.email(),
        credential_type: c.credential_type(),
        metadata,
        issued_by: ctx.worker_id,
        issuer: ctx.caller.client().map(|c| &*c.name),
        issued_at,
        valid_until: c.valid_until(),
    };
    log::info!(request_id = ctx.request_id, id:% = id, client = ctx.caller.name(); "credential issued");
    created(&credential)
}

/// The 201's body for `credential`: what the task that issued it answered,
/// byte for byte, whoever writes it again.
fn created(credential: &Credential<'_>) -> Reply {
    Reply::json(
        StatusCode::CREATED,
        json::object(|o| {
            o.bool("success", true).str(
                "message",
                &format!("credential issued by {}", credential.issued_by),
            );
            credential.write(o, "credential");
        }),
    )
}

/// 409, naming the credential that holds the triple when `existing` is given.
fn conflict(ctx: &RequestCtx<'_>, existing: Option<(uuid::Uuid, &str, SystemTime)>) -> Reply {
    log::info!(request_id = ctx.request_id, existing_id:? = existing.map(|e| e.0), client = ctx.caller.name(); "credential already issued");
    Reply::json(
        StatusCode::CONFLICT,
        json::object(|o| {
            o.bool("success", false)
                .str("message", "Credential already issued");
            if let Some((id, issued_by, issued_at)) = existing {
                o.object("existingCredential", |e| {
                    e.str("id", &id.to_string())
                        .str("issuedBy", issued_by)
                        .str("issuedAt", &kc_core::time::rfc3339_millis(issued_at));
                });
            }
        }),
    )
}

/// 200 with the revoked credential, whole (only its issuer gets here), when it
/// was revoked and why: the first revocation's, however often it is revoked.
fn revoked(ctx: &RequestCtx<'_>, row: &Row) -> Result<Reply, ApiError> {
    let credential = Credential::from_row(row)?;
    let revoked_at: SystemTime = db::column(row, "revoked_at")?;
    let reason: Option<&str> = db::column(row, "revocation_reason")?;
    log::info!(request_id = ctx.request_id, id:% = credential.id, client = ctx.caller.name(); "credential revoked");
    Ok(Reply::json(
        StatusCode::OK,
        json::object(|o| {
            o.bool("success", true).str("message", "Credential revoked");
            credential.write(o, "credential");
            o.str("revokedAt", &kc_core::time::rfc3339_millis(revoked_at))
                .str_or_null("revocationReason", reason);
        }),
    ))
}

/// 404 for a revocation of a credential that does not exist, or that the
/// caller did not issue: the two look the same.
fn unknown(ctx: &RequestCtx<'_>) -> Reply {
    log::info!(request_id = ctx.request_id, client = ctx.caller.name(); "no such credential to revoke");
    Reply::json(
        StatusCode::NOT_FOUND,
        json::object(|o| {
            o.bool("success", false).str("message", "Credential not found");
        }),
    )
}
