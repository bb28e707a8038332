//! API clients on the suite's servers. The tasks run as in production, with
//! `AUTH_MODE=required` (the default): every scenario makes its own clients
//! and sends their keys.

use crate::task::Task;
use kc_core::auth::admin::{self, NewClient};
use kc_core::auth::Role;

/// A rate limit (requests/s per task) no scenario reaches: the per-client
/// limiter never answers 429, so what protects a task is what is measured.
pub const UNLIMITED: u32 = 1_000_000;

/// Creates the client `name` with `role` (every credential type) and its own
/// `rate_limit` on the server at `url`, waits until `task` accepts its key on
/// `path`, and returns the key.
pub async fn add(url: &str, task: &Task, path: &str, name: &str, role: Role, rate_limit: u32) -> String {
    let client = NewClient {
        name: name.into(),
        role,
        credential_types: vec![],
        rate_limit: Some(rate_limit),
    };
    let mut db = kc_testing::connect(url).await;
    let key = admin::add(&mut db, &client, None)
        .await
        .unwrap_or_else(|e| panic!("add client {name}: {e}"))
        .expect("a fresh key");
    task.wait_key(path, &key).await;
    key
}
