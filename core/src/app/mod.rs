//! A service's life, one file per concern:
//!
//! - here: the [`Endpoint`] a service crate implements, and [`RequestCtx`];
//! - `pipeline.rs`: what happens to one request (routing, limits, health, the
//!   endpoint, the common headers, the access log line), and [`App`], the same
//!   pipeline without a listener for in-process callers;
//! - `server.rs`: serving on a listener until shutdown, migrations in the
//!   background, SIGTERM;
//! - `cli.rs`: the command line (`serve`, `migrate`, `healthcheck`, `--version`).

mod cli;
mod pipeline;
mod server;

pub use cli::main;
pub use pipeline::App;
pub use server::{serve, shutdown_signal};

use crate::auth::Caller;
use crate::config::Config;
use crate::db::{Pool, ReplicaState, Statements};
use crate::error::ApiError;
use crate::http::{KeyHeader, Reply};
use bytes::Bytes;
use std::future::Future;

/// What a service crate provides: its name, its business route and the handler
/// behind it, and the actions on one credential it serves, if any.
pub trait Endpoint: Sized + Send + Sync + 'static {
    /// `issuance` or `verification`: in logs, health responses and `/<SERVICE>/health`.
    const SERVICE: &'static str;
    /// The business route, e.g. `/issuance/credentials` (method POST).
    const PATH: &'static str;
    /// How this service names the boolean in its validation errors (`success` or `valid`).
    const OUTCOME_KEY: &'static str;
    /// Whether callers without an API key may use the business route (they
    /// are then limited per source address); if not, they get 401.
    const ANONYMOUS: bool;
    /// The statements prepared on each database connection.
    type Statements: Statements;

    /// Builds the endpoint's state around the pool.
    fn new(pool: Pool<Self::Statements>, config: &Config) -> Self;

    /// Its read replica (`DATABASE_READ_URL`), if it reads from one: its state
    /// goes into `/health`'s `replica` field and the metrics. None unless it says so.
    fn read_replica(&self) -> Option<ReplicaState> {
        None
    }

    /// The actions on one credential it serves, each as `POST {PATH}/{id}/{action}`
    /// (issuance: `revoke`); none unless it says so. Callers are admitted as for
    /// the business route ([`Endpoint::ANONYMOUS`]).
    const ACTIONS: &'static [&'static str] = &[];

    /// Handles one request whose body has been read and whose content type was checked.
    fn handle(
        &self,
        ctx: &RequestCtx<'_>,
        body: Bytes,
    ) -> impl Future<Output = Result<Reply, ApiError>> + Send;

    /// Handles `POST {PATH}/batch`, many of [`Endpoint::handle`]'s requests in
    /// one body (`{"credentials": [...]}`, at most `BULK_MAX`), each answered as
    /// the single route would have answered it. Without it, 404.
    fn handle_bulk(
        &self,
        ctx: &RequestCtx<'_>,
        body: Bytes,
    ) -> impl Future<Output = Result<Reply, ApiError>> + Send {
        let _ = (ctx, body);
        async { Err(ApiError::NotFound) }
    }

    /// Handles `POST {PATH}/{id}/{action}` for one of [`Endpoint::ACTIONS`], its
    /// body read and its content type checked as for the business route; `id` is
    /// the path segment as sent, for the handler to validate. Without actions, 404.
    fn handle_action(
        &self,
        ctx: &RequestCtx<'_>,
        action: &'static str,
        id: &str,
        body: Bytes,
    ) -> impl Future<Output = Result<Reply, ApiError>> + Send {
        let _ = (ctx, action, id, body);
        async { Err(ApiError::NotFound) }
    }
}

/// Who is asking and who is answering.
#[derive(Debug, Clone, Copy)]
pub struct RequestCtx<'a> {
    /// The request id (also in the response's `X-Request-Id` and in every log line).
    pub request_id: &'a str,
    /// This task's worker id.
    pub worker_id: &'a str,
    /// Who sent it (admitted: its key is live and it is within its rate limit).
    pub caller: &'a Caller,
    /// Its `Idempotency-Key` header as sent, for the handler that honours it to check.
    pub idempotency_key: &'a KeyHeader,
}
