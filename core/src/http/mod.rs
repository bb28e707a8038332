//! The HTTP plumbing: accepting connections, turning each request into a call
//! of a route, and adding the headers every response carries.

mod conn;
mod request;
mod response;
pub mod router;

pub use request::{
    content_length, discard_body, idempotency_key, read_body, request_id, trace_id, KeyHeader,
};
pub use response::{CommonHeaders, Reply};

pub(crate) use conn::{serve_connections, Timeouts};

/// The HTTP contract of both services as one OpenAPI 3.1 document
/// (`core/openapi.json`), served by each at `GET /<service>/openapi.json`.
pub const OPENAPI: &str = include_str!("../../openapi.json");
