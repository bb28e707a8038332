//! Test support for the services' integration tests, the benches and the fault
//! suite; never part of a service binary (a dev-dependency, or a dependency of
//! the dev-only `kc-faults`).
//!
//! - [`harness`]: the real service in-process on an ephemeral port against a
//!   fresh schema ([`spawn_app`]), and an HTTP client to speak to it;
//! - [`db`]: the per-test schema ([`TestDb`]) and connections made as the
//!   services make them;
//! - [`fakes`]: what a test puts in the database's place to make it fail: a
//!   TCP proxy that cuts or freezes, and a PostgreSQL server of its own.

pub mod db;
pub mod fakes;
pub mod harness;

pub use db::{base_database_url, connect, TestDb};
pub use harness::{spawn_app, spawn_app_with, start, Role, TestApp, TestResponse};
