//! Verification: `POST /verification/credentials` looks a credential up by id,
//! optionally checks the name and email it was issued to, and returns its
//! issuance details with the verifying task's id; a revoked or expired
//! credential, read from its row on every request, is a 404 saying so.
//!
//! Lookups are coalesced (see `kc_core::db::batch`): the ids that arrive while a
//! statement is in flight are looked up together with `WHERE id = ANY($1)`.
//! With `DATABASE_READ_URL` a batch is looked up on the read replica when it
//! has replayed everything the primary had written when the batch's requests
//! arrived, else on the primary (`kc_core::db::replica`): an answer is the
//! primary's either way, revocations and just-issued credentials included.
//!
//! `POST /verification/credentials/batch` verifies up to `BULK_MAX` credentials
//! in one request (a key is required): each item is read and answered as the
//! single route would answer it, disclosure rules included, and the ids go to
//! the same coalescer together.

use bytes::Bytes;
use hyper::StatusCode;
use kc_core::auth::{Caller, Role};
use kc_core::db::batch::{Batch, Coalescer, Deadline, Source};
use kc_core::db::replica::Read;
use kc_core::db::{
    self, Conn, DbError, DbMetrics, Fallback, Pool, Prepare, ReadTarget, Replica, ReplicaState, Statements,
    Stmt,
};
use kc_core::json;
use kc_core::model::{bulk, Bulk, Credential, VerifyRequest, View};
use kc_core::{ApiError, Config, Endpoint, Reply, RequestCtx};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;
use tokio_postgres::types::Type;
use tokio_postgres::Row;

/// Every credential whose id is in `$1`. Its columns are read by these names.
const LOOKUP_MANY: &str = "\
SELECT id, name, email, credential_type, metadata, issued_by, issuer, issued_at, valid_until, revoked_at
  FROM credentials WHERE id = ANY($1)";

/// Verification's statements.
pub struct VerifyStatements {
    lookup: Stmt,
}

impl Statements for VerifyStatements {
    async fn prepare(db: &Prepare<'_>) -> Result<Self, tokio_postgres::Error> {
        Ok(VerifyStatements {
            lookup: db.stmt(LOOKUP_MANY, &[Type::UUID_ARRAY]).await?,
        })
    }
}

/// The lookup behind the coalescer. Each request gets its row (shared, in case
/// two requests of a batch ask for the same id) and reads the columns from it
/// without copying. On the read replica when there is one and it may answer.
pub struct LookupBatch {
    replica: Option<Replica<VerifyStatements>>,
    /// Where reads landed is counted here (`db_reads_total`).
    metrics: Arc<DbMetrics>,
}

/// One batch's lookup, on whichever connection [`Replica::read`] picks.
struct Lookup<'a>(&'a [uuid::Uuid]);

impl Read<VerifyStatements> for Lookup<'_> {
    type Output = Vec<Option<Arc<Row>>>;

    async fn run(&self, conn: &Conn<VerifyStatements>) -> Result<Self::Output, DbError> {
        let ids = self.0;
        let rows = conn.query(&conn.stmts.lookup, &[&ids]).await?;
        let mut by_id = HashMap::with_capacity(rows.len());
        for row in rows {
            by_id.insert(db::column::<uuid::Uuid>(&row, "id")?, Arc::new(row));
        }
        Ok(ids.iter().map(|id| by_id.get(id).cloned()).collect())
    }
}

impl Batch for LookupBatch {
    type Source = Pool<VerifyStatements>;
    type Item = uuid::Uuid;
    type Output = Option<Arc<Row>>;

    /// A read: nothing to undo if it runs late, so the deadline is not sent.
    async fn run(
        &self,
        conn: &<Pool<VerifyStatements> as Source>::Conn,
        ids: &[uuid::Uuid],
        _deadline: Deadline,
    ) -> Result<Vec<Option<Arc<Row>>>, DbError> {
        match &self.replica {
            Some(replica) => replica.read(conn, ids.len(), &Lookup(ids)).await,
            None => {
                let rows = Lookup(ids).run(conn).await?;
                self.metrics
                    .read(ReadTarget::Primary(Fallback::NoReplica), ids.len() as u64);
                Ok(rows)
            }
        }
    }
}

/// The verification service.
pub struct Verification {
    batches: Coalescer<LookupBatch>,
    /// The read replica's state, when `DATABASE_READ_URL` names one.
    replica: Option<ReplicaState>,
    /// `BULK_MAX`.
    bulk_max: usize,
}

impl Endpoint for Verification {
    const SERVICE: &'static str = "verification";
    const PATH: &'static str = "/verification/credentials";
    const OUTCOME_KEY: &'static str = "valid";
    const ANONYMOUS: bool = true;
    type Statements = VerifyStatements;

    fn new(pool: Pool<VerifyStatements>, config: &Config) -> Self {
        let replica = Replica::start(&pool, config);
        let state = replica.as_ref().map(Replica::state);
        Verification {
            batches: Coalescer::on_pool(
                &pool,
                LookupBatch {
                    replica,
                    metrics: pool.metrics().clone(),
                },
                config,
            ),
            replica: state,
            bulk_max: config.bulk_max,
        }
    }

    fn read_replica(&self) -> Option<ReplicaState> {
        self.replica.clone()
    }

    async fn handle(&self, ctx: &RequestCtx<'_>, body: Bytes) -> Result<Reply, ApiError> {
        let mut scratch = body.to_vec();
        let request = VerifyRequest::parse(&body, &mut scratch)?;
        let row = self.batches.submit_as(ctx.caller.owner(), request.id()).await?;
        answer(ctx, &request, row.as_deref(), SystemTime::now())
    }

    async fn handle_bulk(&self, ctx: &RequestCtx<'_>, body: Bytes) -> Result<Reply, ApiError> {
        let bulk = Bulk::parse(&body, self.bulk_max)?;
        let mut scratch = body.to_vec();
        let requests: Vec<Result<VerifyRequest<'_>, ApiError>> = bulk
            .split(&body, &mut scratch)
            .into_iter()
            .map(|(raw, scratch)| VerifyRequest::parse(raw, scratch).map_err(ApiError::from))
            .collect();
        let ids = requests.iter().flatten().map(VerifyRequest::id).collect();
        let mut rows = self
            .batches
            .submit_many(ctx.caller.owner(), ids)
            .await
            .into_iter();
        let now = SystemTime::now();
        let refused = |e: ApiError| e.into_reply(Self::OUTCOME_KEY, ctx.request_id);
        let replies: Vec<Reply> = requests
            .into_iter()
            .map(|request| match request {
                Err(e) => refused(e),
                Ok(request) => match rows.next() {
                    Some(Ok(row)) => answer(ctx, &request, row.as_deref(), now).unwrap_or_else(refused),
                    Some(Err(e)) => refused(e.into()),
                    None => refused(ApiError::Unavailable("no answer for a bulk item".into())),
                },
            })
            .collect();
        bulk::answer(|_| {}, &replies)
    }
}

/// The answer to one verification whose row (if any) was read at `now`: 200
/// with as much of the credential as the caller may see, or 404 saying why not.
fn answer(
    ctx: &RequestCtx<'_>,
    request: &VerifyRequest<'_>,
    row: Option<&Row>,
    now: SystemTime,
) -> Result<Reply, ApiError> {
    let verified_at = kc_core::time::rfc3339_millis(now);
    let found = match row {
        Some(row) => Some((Credential::from_row(row)?, db::column(row, "revoked_at")?)),
        None => None,
    };
    // A name or email that does not match is answered like an unknown id, so
    // the response never tells which part was wrong, nor that the id exists.
    let matches = |(c, _): &(Credential<'_>, Option<SystemTime>)| {
        request.name().is_none_or(|n| n == c.name) && request.email().is_none_or(|e| e == c.email)
    };
    let refused = match found.filter(matches) {
        None => Refused::NotFound,
        Some((_, Some(revoked_at))) => Refused::Revoked(revoked_at),
        Some((credential, None)) if credential.valid_until.is_some_and(|until| until <= now) => {
            Refused::Expired
        }
        Some((credential, None)) => {
            let whole = entitled(ctx.caller, &credential, request);
            log::info!(request_id = ctx.request_id, id:% = request.id(), client = ctx.caller.name(), whole; "credential verified");
            let view = if whole { View::Whole } else { View::Public };
            return Ok(verified_view(ctx, &credential, &verified_at, view));
        }
    };
    log::info!(request_id = ctx.request_id, id:% = request.id(), reason = refused.as_str(); "credential not valid");
    Ok(Reply::json(
        StatusCode::NOT_FOUND,
        json::object(|o| {
            o.bool("valid", false)
                .str("message", "Credential not found or invalid")
                .str("verifiedBy", ctx.worker_id)
                .str("verifiedAt", &verified_at)
                .str("reason", refused.as_str());
            if let Refused::Revoked(at) = refused {
                o.str("revokedAt", &kc_core::time::rfc3339_millis(at));
            }
        }),
    ))
}

/// Why a verification answers 404.
#[derive(Debug, Clone, Copy)]
enum Refused {
    /// No such id, or a name or email that does not match it: one reason for
    /// both, so a mismatch does not confirm the id exists.
    NotFound,
    /// Revoked by its issuer, at this time.
    Revoked(SystemTime),
    /// Past its `validUntil`.
    Expired,
}

impl Refused {
    /// As the 404's `reason` says it.
    fn as_str(self) -> &'static str {
        match self {
            Refused::NotFound => "not_found",
            Refused::Revoked(_) => "revoked",
            Refused::Expired => "expired",
        }
    }
}

/// Whether `caller` may see the holder's name, email and metadata: a verifier,
/// the issuer that issued it, anyone when access control is off, and an
/// anonymous caller who sent the matching name and email (they know who the
/// holder is already). Everyone else sees only the public part.
fn entitled(caller: &Caller, credential: &Credential<'_>, request: &VerifyRequest<'_>) -> bool {
    match caller {
        Caller::Open(_) => true,
        Caller::Client(c) => c.role == Role::Verifier || credential.issuer.is_some_and(|i| i == &*c.name),
        // `found.filter(matches)` checked that what was sent matches.
        Caller::Anonymous(_) => request.name().is_some() && request.email().is_some(),
    }
}

/// 200 with the credential as issued, and who verified it when (public for the benches).
pub fn verified(ctx: &RequestCtx<'_>, credential: &Credential<'_>, verified_at: &str) -> Reply {
    verified_view(ctx, credential, verified_at, View::Whole)
}

/// 200 with as much of the credential as `view` allows.
pub fn verified_view(
    ctx: &RequestCtx<'_>,
    credential: &Credential<'_>,
    verified_at: &str,
    view: View,
) -> Reply {
    Reply::json(
        StatusCode::OK,
        json::object(|o| {
            o.bool("valid", true)
                .str("message", "Credential verified successfully");
            credential.write_view(o, "credential", view);
            o.str("verifiedBy", ctx.worker_id).str("verifiedAt", verified_at);
        }),
    )
}
