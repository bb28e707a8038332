//! Verification: `POST /verification/credentials` looks a credential up by id,
//! optionally checks the name and email it was issued to, and returns its
//! issuance details with the verifying task's id.

use bytes::Bytes;
use hyper::StatusCode;
use kc_core::db::{self, Jsonb, Pool, Statements};
use kc_core::json;
use kc_core::model::{Credential, VerifyRequest};
use kc_core::{ApiError, Endpoint, Reply, RequestCtx};
use std::time::SystemTime;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

const LOOKUP: &str = "\
SELECT name, email, credential_type, metadata, issued_by, issued_at
  FROM credentials WHERE id = $1";

/// Verification's prepared statements.
pub struct VerifyStatements {
    lookup: Statement,
}

impl Statements for VerifyStatements {
    async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(VerifyStatements {
            lookup: client.prepare_typed(LOOKUP, &[Type::UUID]).await?,
        })
    }
}

/// The verification service.
pub struct Verification {
    pool: Pool<VerifyStatements>,
}

impl Endpoint for Verification {
    const SERVICE: &'static str = "verification";
    const PATH: &'static str = "/verification/credentials";
    const OUTCOME_KEY: &'static str = "valid";
    type Statements = VerifyStatements;

    fn new(pool: Pool<VerifyStatements>) -> Self {
        Verification { pool }
    }

    async fn handle(&self, ctx: &RequestCtx<'_>, body: Bytes) -> Result<Reply, ApiError> {
        let mut scratch = body.to_vec();
        let request = VerifyRequest::parse(&mut scratch)?;
        let conn = self.pool.get().await?;
        let row = self
            .pool
            .timed(conn.client.query_opt(&conn.stmts.lookup, &[&request.id()]))
            .await?;
        let verified_at = kc_core::time::rfc3339_millis(SystemTime::now());
        let found = match &row {
            Some(row) => {
                let metadata: Option<Jsonb<&str>> = db::column(row, 3)?;
                Some(Credential {
                    id: request.id(),
                    name: db::column(row, 0)?,
                    email: db::column(row, 1)?,
                    credential_type: db::column(row, 2)?,
                    metadata: metadata.map(|m| m.0),
                    issued_by: db::column(row, 4)?,
                    issued_at: db::column(row, 5)?,
                })
            }
            None => None,
        };
        // A name or email that does not match is answered like an unknown id, so
        // the response never tells which part was wrong.
        let matches = |c: &Credential<'_>| {
            request.name().is_none_or(|n| n == c.name) && request.email().is_none_or(|e| e == c.email)
        };
        match found.filter(matches) {
            Some(credential) => {
                log::info!(request_id = ctx.request_id, id:% = request.id(); "credential verified");
                Ok(Reply::json(
                    StatusCode::OK,
                    json::object(|o| {
                        o.bool("valid", true)
                            .str("message", "Credential verified successfully");
                        credential.write(o, "credential");
                        o.str("verifiedBy", ctx.worker_id).str("verifiedAt", &verified_at);
                    }),
                ))
            }
            None => {
                log::info!(request_id = ctx.request_id, id:% = request.id(); "credential not found or not matching");
                Ok(Reply::json(
                    StatusCode::NOT_FOUND,
                    json::object(|o| {
                        o.bool("valid", false)
                            .str("message", "Credential not found or invalid")
                            .str("verifiedBy", ctx.worker_id)
                            .str("verifiedAt", &verified_at);
                    }),
                ))
            }
        }
    }
}
