//! Issuance: `POST /issuance/credentials` stores a credential once per
//! (name, email, credentialType) and says which task issued it.
//!
//! Requests are coalesced (see `kc_core::db::batch`): those that arrive while a
//! statement is in flight go to the database together as ONE multi-row insert,
//! which also reports the rows that existed already. Exactly one of N identical
//! concurrent requests wins, on any number of tasks and inside one batch,
//! because the database's unique constraint decides.

use bytes::Bytes;
use hyper::StatusCode;
use kc_core::db::batch::{Batch, Coalescer};
use kc_core::db::{self, Conn, DbError, Jsonb, Pool, Statements};
use kc_core::json;
use kc_core::model::{Credential, NewCredential};
use kc_core::{ApiError, Config, Endpoint, Reply, RequestCtx};
use std::collections::HashMap;
use std::time::SystemTime;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

/// Inserts a batch and returns, in one round trip, the rows it inserted and
/// the rows that held any of its (name, email, credential_type) triples before.
///
/// Under READ COMMITTED the second branch sees only rows committed before the
/// statement began. An insert that had to wait for a concurrent insert of the
/// same triple (another task) is skipped by `DO NOTHING` and that winner is not
/// visible either: such a request is answered from [`EXISTING`], a new
/// statement that can see it. A triple repeated inside one batch is inserted
/// once; the others are answered from that winner.
const ISSUE_MANY: &str = "\
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[])
        AS t(id, name, email, credential_type, metadata)
), ins AS (
    INSERT INTO credentials (id, name, email, credential_type, metadata, issued_by)
    SELECT id, name, email, credential_type, metadata, $6 FROM input
    ON CONFLICT ON CONSTRAINT unique_credential DO NOTHING
    RETURNING id, metadata, issued_at
)
SELECT true, id, metadata, NULL::text, issued_at, NULL::text, NULL::text, NULL::text FROM ins
UNION ALL
SELECT false, c.id, NULL::jsonb, c.issued_by::text, c.issued_at, c.name::text, c.email::text, c.credential_type::text
  FROM credentials c
  JOIN input i ON c.name = i.name AND c.email = i.email AND c.credential_type = i.credential_type";

/// The credential that holds a (name, email, credentialType) triple.
const EXISTING: &str = "\
SELECT id, issued_by, issued_at FROM credentials
 WHERE name = $1 AND email = $2 AND credential_type = $3";

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
        let text = Type::VARCHAR;
        Ok(IssueStatements {
            issue: client.prepare(ISSUE_MANY).await?,
            existing: client
                .prepare_typed(EXISTING, &[text.clone(), text.clone(), text])
                .await?,
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
    /// Skipped for a concurrent insert this statement cannot see: look again.
    Raced,
}

/// The multi-row insert behind the coalescer.
pub struct IssueBatch {
    worker_id: String,
}

type Key<'a> = (&'a str, &'a str, &'a str);

impl Batch for IssueBatch {
    type Statements = IssueStatements;
    type Item = Pending;
    type Output = Outcome;

    async fn run(
        &self,
        pool: &Pool<IssueStatements>,
        conn: &Conn<IssueStatements>,
        items: &[Pending],
    ) -> Result<Vec<Outcome>, DbError> {
        let ids: Vec<uuid::Uuid> = items.iter().map(|p| p.id).collect();
        let names: Vec<&str> = items.iter().map(|p| p.name.as_str()).collect();
        let emails: Vec<&str> = items.iter().map(|p| p.email.as_str()).collect();
        let types: Vec<&str> = items.iter().map(|p| p.credential_type.as_str()).collect();
        let metadata: Vec<Option<Jsonb<&str>>> =
            items.iter().map(|p| p.metadata.as_deref().map(Jsonb)).collect();
        let rows = pool
            .timed(conn.client.query(
                &conn.stmts.issue,
                &[&ids, &names, &emails, &types, &metadata, &self.worker_id],
            ))
            .await?;

        let mut inserted: HashMap<uuid::Uuid, (Option<&str>, SystemTime)> = HashMap::new();
        let mut existing: HashMap<Key<'_>, (uuid::Uuid, &str, SystemTime)> = HashMap::new();
        for row in &rows {
            let id: uuid::Uuid = db::column(row, 1)?;
            let issued_at: SystemTime = db::column(row, 4)?;
            if db::column::<bool>(row, 0)? {
                let metadata: Option<Jsonb<&str>> = db::column(row, 2)?;
                inserted.insert(id, (metadata.map(|m| m.0), issued_at));
            } else {
                let key = (db::column(row, 5)?, db::column(row, 6)?, db::column(row, 7)?);
                existing.insert(key, (id, db::column(row, 3)?, issued_at));
            }
        }
        // A triple repeated in this batch: the copy that got in answers for the others.
        let winners: HashMap<Key<'_>, (uuid::Uuid, SystemTime)> = items
            .iter()
            .filter_map(|p| inserted.get(&p.id).map(|(_, at)| (key(p), (p.id, *at))))
            .collect();
        Ok(items
            .iter()
            .map(|p| {
                if let Some((metadata, issued_at)) = inserted.get(&p.id) {
                    Outcome::Issued {
                        metadata: metadata.map(str::to_owned),
                        issued_at: *issued_at,
                    }
                } else if let Some((id, by, at)) = existing.get(&key(p)) {
                    Outcome::Exists {
                        id: *id,
                        issued_by: (*by).to_owned(),
                        issued_at: *at,
                    }
                } else if let Some((id, at)) = winners.get(&key(p)) {
                    Outcome::Exists {
                        id: *id,
                        issued_by: self.worker_id.clone(),
                        issued_at: *at,
                    }
                } else {
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
    pool: Pool<IssueStatements>,
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
            batches: Coalescer::new(pool.clone(), batch, config.db_batch_lanes, config.db_batch_max),
            pool,
        }
    }

    async fn handle(&self, ctx: &RequestCtx<'_>, body: Bytes) -> Result<Reply, ApiError> {
        // simd-json rewrites its input; `body` stays intact for the raw metadata.
        let mut scratch = body.to_vec();
        let credential = NewCredential::parse(&body, &mut scratch)?;
        let id = uuid::Uuid::new_v4();
        for _ in 0..ATTEMPTS {
            let pending = Pending {
                id,
                name: credential.name().to_owned(),
                email: credential.email().to_owned(),
                credential_type: credential.credential_type().to_owned(),
                metadata: credential.metadata().map(str::to_owned),
            };
            match self.batches.submit(pending).await? {
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
                Outcome::Raced => {
                    let conn = self.pool.get().await?;
                    let row = self
                        .pool
                        .timed(conn.client.query_opt(
                            &conn.stmts.existing,
                            &[
                                &credential.name(),
                                &credential.email(),
                                &credential.credential_type(),
                            ],
                        ))
                        .await?;
                    if let Some(row) = row {
                        let (id, by, at): (uuid::Uuid, &str, SystemTime) =
                            (db::column(&row, 0)?, db::column(&row, 1)?, db::column(&row, 2)?);
                        return Ok(conflict(ctx, id, by, at));
                    }
                }
            }
        }
        Err(ApiError::Unavailable(
            "the conflicting credential kept disappearing".into(),
        ))
    }
}

/// 201 with the credential as stored.
fn issued(
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
