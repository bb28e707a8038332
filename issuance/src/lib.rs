//! Issuance: `POST /issuance/credentials` stores a credential once per
//! (name, email, credentialType) and says which task issued it.
//!
//! Requests are coalesced (see `kc_core::db::batch`): those that arrive while a
//! statement is in flight go to the database together as ONE multi-row insert;
//! only when some triple was taken does a second statement find its holder.
//! Exactly one of N identical concurrent requests wins, on any number of tasks
//! and inside one batch, because the database's unique constraint decides.

use bytes::Bytes;
use hyper::StatusCode;
use kc_core::db::batch::{Batch, Coalescer, Deadline, Source};
use kc_core::db::{self, DbError, Jsonb, Pool, Statements};
use kc_core::json;
use kc_core::model::{Credential, NewCredential};
use kc_core::{ApiError, Config, Endpoint, Reply, RequestCtx};
use std::collections::HashMap;
use std::time::SystemTime;
use tokio_postgres::{Client, Statement};

/// Inserts a batch; returns the rows it inserted. One round trip when every
/// triple is new, the common case.
///
/// `DO NOTHING` skips a triple that exists, and one that a concurrent insert
/// (another task, or an earlier row of this batch) holds; such an insert first
/// waits for that transaction, so by the time this statement returns the winner
/// is committed and [`EXISTING_MANY`], a new statement, can see it.
///
/// `$7` is the batch's deadline: `kc_before_deadline` (sql/002) fails the whole
/// statement if the server gets to a row after it, so a statement that reaches
/// a frozen server's socket and runs once the requests were answered 503
/// stores nothing. The returned columns are read by these names.
const ISSUE_MANY: &str = "\
INSERT INTO credentials (id, name, email, credential_type, metadata, issued_by)
SELECT id, name, email, credential_type, metadata, $6
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[])
    AS t(id, name, email, credential_type, metadata)
 WHERE kc_before_deadline($7)
ON CONFLICT ON CONSTRAINT unique_credential DO NOTHING
RETURNING id, metadata, issued_at";

/// The credentials that hold any of the given (name, email, credentialType)
/// triples. Its columns are read by these names (a cast keeps the name).
const EXISTING_MANY: &str = "\
SELECT c.id, c.issued_by::text, c.issued_at, c.name::text, c.email::text, c.credential_type::text
  FROM credentials c
  JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(name, email, credential_type)
    ON c.name = k.name AND c.email = k.email AND c.credential_type = k.credential_type";

/// How often a request tries again when the row it conflicted with is gone by
/// the time it looks (only if credentials are being deleted concurrently).
const ATTEMPTS: usize = 3;

/// Issuance's prepared statements.
pub struct IssueStatements {
    issue: Statement,
    existing: Statement,
}

impl Statements for IssueStatements {
    async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(IssueStatements {
            issue: client.prepare(ISSUE_MANY).await?,
            existing: client.prepare(EXISTING_MANY).await?,
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
}

impl Pending {
    /// The credential `c`, to be stored under `id`.
    pub fn new(id: uuid::Uuid, c: &NewCredential<'_>) -> Self {
        Pending {
            id,
            name: c.name().to_owned(),
            email: c.email().to_owned(),
            credential_type: c.credential_type().to_owned(),
            metadata: c.metadata().map(str::to_owned),
        }
    }
}

/// The column arrays [`ISSUE_MANY`] binds as `$1`–`$5`: one element per request.
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
        }
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
        issued_at: SystemTime,
    },
    /// Skipped, and its holder gone by the time the batch looked: try again.
    Raced,
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
        let rows = conn
            .client
            .query(
                &conn.stmts.issue,
                &[
                    &p.ids,
                    &p.names,
                    &p.emails,
                    &p.types,
                    &p.metadata,
                    &self.worker_id,
                    &deadline.0,
                ],
            )
            .await?;
        let mut inserted: HashMap<uuid::Uuid, (Option<&str>, SystemTime)> =
            HashMap::with_capacity(rows.len());
        for row in &rows {
            let metadata: Option<Jsonb<&str>> = db::column(row, "metadata")?;
            inserted.insert(
                db::column(row, "id")?,
                (metadata.map(|m| m.0), db::column(row, "issued_at")?),
            );
        }

        // Triples that were taken: find their holders in a new statement.
        let skipped: Vec<&Pending> = items.iter().filter(|p| !inserted.contains_key(&p.id)).collect();
        let holders = if skipped.is_empty() {
            Vec::new()
        } else {
            let names: Vec<&str> = skipped.iter().map(|p| p.name.as_str()).collect();
            let emails: Vec<&str> = skipped.iter().map(|p| p.email.as_str()).collect();
            let types: Vec<&str> = skipped.iter().map(|p| p.credential_type.as_str()).collect();
            conn.client
                .query(&conn.stmts.existing, &[&names, &emails, &types])
                .await?
        };
        let mut existing: HashMap<Key<'_>, (uuid::Uuid, &str, SystemTime)> =
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
                } else if let Some((id, by, at)) = existing.get(&key(p)) {
                    Outcome::Exists {
                        id: *id,
                        issued_by: (*by).to_owned(),
                        issued_at: *at,
                    }
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

/// The issuance service.
pub struct Issuance {
    batches: Coalescer<IssueBatch>,
}

impl Endpoint for Issuance {
    const SERVICE: &'static str = "issuance";
    const PATH: &'static str = "/issuance/credentials";
    const OUTCOME_KEY: &'static str = "success";
    type Statements = IssueStatements;

    fn new(pool: Pool<IssueStatements>, config: &Config) -> Self {
        let batch = IssueBatch {
            worker_id: config.worker_id.clone(),
        };
        Issuance {
            batches: Coalescer::on_pool(&pool, batch, config),
        }
    }

    async fn handle(&self, ctx: &RequestCtx<'_>, body: Bytes) -> Result<Reply, ApiError> {
        // simd-json rewrites its input; `body` stays intact for the raw metadata.
        let mut scratch = body.to_vec();
        let credential = NewCredential::parse(&body, &mut scratch)?;
        let id = uuid::Uuid::new_v4();
        for _ in 0..ATTEMPTS {
            match self.batches.submit(Pending::new(id, &credential)).await? {
                Outcome::Issued { metadata, issued_at } => {
                    return Ok(issued(ctx, &credential, id, metadata.as_deref(), issued_at));
                }
                Outcome::Exists {
                    id,
                    issued_by,
                    issued_at,
                } => {
                    return Ok(conflict(ctx, id, &issued_by, issued_at));
                }
                Outcome::Raced => continue,
            }
        }
        Err(ApiError::Unavailable(
            "the conflicting credential kept disappearing".into(),
        ))
    }
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
        issued_at,
    };
    log::info!(request_id = ctx.request_id, id:% = id; "credential issued");
    Reply::json(
        StatusCode::CREATED,
        json::object(|o| {
            o.bool("success", true)
                .str("message", &format!("credential issued by {}", ctx.worker_id));
            credential.write(o, "credential");
        }),
    )
}

/// 409 naming the credential that holds the triple.
fn conflict(ctx: &RequestCtx<'_>, id: uuid::Uuid, issued_by: &str, issued_at: SystemTime) -> Reply {
    log::info!(request_id = ctx.request_id, existing_id:% = id; "credential already issued");
    Reply::json(
        StatusCode::CONFLICT,
        json::object(|o| {
            o.bool("success", false)
                .str("message", "Credential already issued")
                .object("existingCredential", |e| {
                    e.str("id", &id.to_string())
                        .str("issuedBy", issued_by)
                        .str("issuedAt", &kc_core::time::rfc3339_millis(issued_at));
                });
        }),
    )
}
