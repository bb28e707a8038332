//! Everything the issuance and verification services share. A service crate
//! implements [`Endpoint`] for its business route (its handler and its
//! statements, and the actions on one credential it serves, such as issuance's
//! revoke) and calls [`app::main`]; everything else is here.
//!
//! ## The map
//!
//! | file | what it owns |
//! | --- | --- |
//! | `app/mod.rs` | the [`Endpoint`] trait a service implements, [`RequestCtx`] |
//! | `app/cli.rs` | the command line: `serve`, `migrate`, `healthcheck`, `--version` |
//! | `app/server.rs` | serving on a listener until SIGTERM, then draining; migrations in the background |
//! | `app/pipeline.rs` | one request's way through the task (below), and [`App`] for in-process callers |
//! | `auth/` | who is calling: API keys and their hashes, the clients in memory, rate limits, the `clients` command |
//! | `config.rs` | every environment variable, parsed and checked once at start-up |
//! | `http/conn.rs` | accepting connections, the connection cap, keep-alive and slow-client timeouts, graceful shutdown |
//! | `http/router.rs` | path and method to route (404, 405); `{api}/{id}/{action}` routes by their template |
//! | `http/request.rs` | the request id, the `Idempotency-Key` lines as sent, the content type, reading a bounded body (413, 415, 408) |
//! | `http/response.rs` | [`Reply`], and the headers every response carries (ids, security, CORS) |
//! | `../openapi.json` | the HTTP contract of both services (OpenAPI 3.1), embedded and served at `/<service>/openapi.json` |
//! | `error.rs` | [`ApiError`], and the one place errors become HTTP statuses and bodies |
//! | `health.rs` | the health endpoints' answers |
//! | `json/read.rs`, `json/write.rs` | parsing bodies in place (simd-json); writing bodies into a buffer |
//! | `model/request.rs` | the request bodies (issuance, verification, revocation), read and normalised |
//! | `model/rules.rs` | the validation rules, their limits and messages |
//! | `model/credential.rs` | a stored credential as both services return it |
//! | `model/bulk.rs` | a bulk request's items (`{api}/batch`), each read as a single request, and its answer |
//! | `db/mod.rs` | the pool (statements prepared per connection, server-side timeouts), [`db::DbError`] |
//! | `db/batch/` | coalescing: many requests, one statement; admission control (queue bound, waits, shedding) |
//! | `db/monitor.rs` | whether the database answers: one probe per task, fail-fast while it is down |
//! | `db/replica.rs` | a read replica (`DATABASE_READ_URL`): its lag, and whether a batch's read may be answered there |
//! | `db/tls.rs`, `db/types.rs` | TLS to the database; JSONB as text |
//! | `migrate.rs` | the migrations in `sql/`, applied under an advisory lock |
//! | `metrics/mod.rs` | what a task counts (`db/metrics.rs` for the database layer), exposed on `METRICS_PORT` |
//! | `metrics/process.rs`, `metrics/emf.rs` | the process's CPU, memory and descriptors; CloudWatch EMF lines (`METRICS_EMF_SECONDS`) |
//! | `logging.rs`, `time.rs` | JSON log lines; RFC 3339 timestamps, written and strictly read |
//!
//! ## One request
//!
//! `http/conn.rs` accepts the connection (or makes room at the cap) and hands
//! each request to `app/pipeline.rs`, which gives it an id (`http/request.rs`),
//! routes it (`http/router.rs`), and for the business route reads its body
//! within the limits and calls the service's [`Endpoint::handle`]. The handler
//! parses and validates the body (`model/request.rs`, `model/rules.rs`, on
//! `json/read.rs`) and submits its work to a coalescer (`db/batch/`), which
//! admits or sheds it, puts it into the next statement on a pooled connection
//! (`db/mod.rs`), and answers it. The handler writes its reply
//! (`model/credential.rs`, `json/write.rs`); an error becomes its reply in
//! `error.rs`; the pipeline adds the common headers (`http/response.rs`) and
//! writes the access log line (`logging.rs`). Health checks answer from the
//! monitor (`db/monitor.rs`, `health.rs`) without touching the database.

pub mod app;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod health;
pub mod http;
pub mod json;
pub mod logging;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod time;

pub use app::{App, Endpoint, RequestCtx};
pub use config::Config;
pub use error::ApiError;
pub use http::Reply;
