//! Issuance: `POST /issuance/credentials` stores a credential once per
//! (name, email, credentialType) and says which task issued it.
//!
//! The common case is one round trip: a single statement inserts the row or,
//! when the triple exists already, returns the existing row for the 409. Exactly
//! one of N identical concurrent requests wins, on any number of tasks, because
//! the database's unique constraint decides.

use bytes::Bytes;
use hyper::StatusCode;
use kc_core::db::{self, Conn, Jsonb, Pool, Statements};
use kc_core::json;
use kc_core::model::{Credential, NewCredential};
use kc_core::{ApiError, Endpoint, Reply, RequestCtx};
use std::time::SystemTime;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row, Statement};

/// Inserts, or finds the row that is already there.
///
/// Under READ COMMITTED the second branch sees only rows committed before the
/// statement began. If this insert had to wait for a concurrent insert of the
/// same triple, `DO NOTHING` returns no row and the second branch cannot see
/// the winner either: the statement returns nothing, and [`EXISTING`] is asked
/// in a new statement, which can.
const ISSUE: &str = "\
WITH ins AS (
    INSERT INTO credentials (id, name, email, credential_type, metadata, issued_by)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT ON CONSTRAINT unique_credential DO NOTHING
    RETURNING id, metadata, issued_by, issued_at
)
SELECT true, id, metadata, issued_by, issued_at FROM ins
UNION ALL
SELECT false, id, NULL::jsonb, issued_by, issued_at FROM credentials
 WHERE name = $2 AND email = $3 AND credential_type = $4
   AND NOT EXISTS (SELECT 1 FROM ins)";

/// The credential that holds a (name, email, credentialType) triple.
const EXISTING: &str = "\
SELECT false, id, NULL::jsonb, issued_by, issued_at FROM credentials
 WHERE name = $1 AND email = $2 AND credential_type = $3";

/// How often a request re-runs the insert when the row it conflicted with is gone
/// by the time it looks (only if credentials are being deleted concurrently).
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
            issue: client
                .prepare_typed(
                    ISSUE,
                    &[
                        Type::UUID,
                        text.clone(),
                        text.clone(),
                        text.clone(),
                        Type::JSONB,
                        text.clone(),
                    ],
                )
                .await?,
            existing: client
                .prepare_typed(EXISTING, &[text.clone(), text.clone(), text])
                .await?,
        })
    }
}

/// The issuance service.
pub struct Issuance {
    pool: Pool<IssueStatements>,
}

impl Endpoint for Issuance {
    const SERVICE: &'static str = "issuance";
    const PATH: &'static str = "/issuance/credentials";
    const OUTCOME_KEY: &'static str = "success";
    type Statements = IssueStatements;

    fn new(pool: Pool<IssueStatements>) -> Self {
        Issuance { pool }
    }

    async fn handle(&self, ctx: &RequestCtx<'_>, body: Bytes) -> Result<Reply, ApiError> {
        // simd-json rewrites its input; `body` stays intact for the raw metadata.
        let mut scratch = body.to_vec();
        let credential = NewCredential::parse(&body, &mut scratch)?;
        let conn = self.pool.get().await?;
        let id = uuid::Uuid::new_v4();
        for _ in 0..ATTEMPTS {
            if let Some(row) = self.insert(&conn, &credential, id, ctx.worker_id).await? {
                return outcome(ctx, &credential, &row);
            }
            let existing = self
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
            if let Some(row) = existing {
                return outcome(ctx, &credential, &row);
            }
        }
        Err(ApiError::Unavailable(
            "the conflicting credential kept disappearing".into(),
        ))
    }
}

impl Issuance {
    async fn insert(
        &self,
        conn: &Conn<IssueStatements>,
        c: &NewCredential<'_>,
        id: uuid::Uuid,
        worker_id: &str,
    ) -> Result<Option<Row>, db::DbError> {
        let metadata = c.metadata().map(Jsonb);
        self.pool
            .timed(conn.client.query_opt(
                &conn.stmts.issue,
                &[
                    &id,
                    &c.name(),
                    &c.email(),
                    &c.credential_type(),
                    &metadata,
                    &worker_id,
                ],
            ))
            .await
    }
}

/// 201 for a row this request inserted, 409 for one that was there already.
fn outcome(ctx: &RequestCtx<'_>, c: &NewCredential<'_>, row: &Row) -> Result<Reply, ApiError> {
    let inserted: bool = db::column(row, 0)?;
    let id: uuid::Uuid = db::column(row, 1)?;
    let issued_by: &str = db::column(row, 3)?;
    let issued_at: SystemTime = db::column(row, 4)?;
    if !inserted {
        log::info!(request_id = ctx.request_id, existing_id:% = id; "credential already issued");
        return Ok(Reply::json(
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
        ));
    }
    let metadata: Option<Jsonb<&str>> = db::column(row, 2)?;
    let credential = Credential {
        id,
        name: c.name(),
        email: c.email(),
        credential_type: c.credential_type(),
        metadata: metadata.map(|m| m.0),
        issued_by,
        issued_at,
    };
    log::info!(request_id = ctx.request_id, id:% = id; "credential issued");
    Ok(Reply::json(
        StatusCode::CREATED,
        json::object(|o| {
            o.bool("success", true)
                .str("message", &format!("credential issued by {}", ctx.worker_id));
            credential.write(o, "credential");
        }),
    ))
}
