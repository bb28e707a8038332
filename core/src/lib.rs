//! Everything the issuance and verification services share: configuration, the
//! database pool and migrations, the credential model and its validation, JSON in
//! and out, and the HTTP plumbing (router, request ids, headers, limits, health,
//! graceful shutdown, logging).
//!
//! A service crate implements [`Endpoint`] for its one business route and calls
//! [`app::main`]; everything else is here.

pub mod app;
pub mod config;
pub mod db;
pub mod error;
pub mod health;
pub mod http;
pub mod json;
pub mod logging;
pub mod migrate;
pub mod model;
pub mod time;

pub use app::{App, Endpoint, RequestCtx};
pub use config::Config;
pub use error::ApiError;
pub use http::Reply;
