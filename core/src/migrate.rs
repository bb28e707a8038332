//! Schema migrations from `sql/`, compiled into the binaries and applied under a
//! PostgreSQL advisory lock so that many tasks starting at once are safe.

use crate::db::DbError;
use tokio_postgres::Client;

/// Every migration, in order: (version, SQL). Versions are never renamed or reused.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "001_create_credentials_table",
        include_str!("../../sql/001_create_credentials_table.sql"),
    ),
    (
        "002_statement_deadline",
        include_str!("../../sql/002_statement_deadline.sql"),
    ),
    ("003_api_clients", include_str!("../../sql/003_api_clients.sql")),
    ("004_roles", include_str!("../../sql/004_roles.sql")),
    ("005_lifecycle", include_str!("../../sql/005_lifecycle.sql")),
    ("006_idempotency", include_str!("../../sql/006_idempotency.sql")),
];

/// First key of the advisory lock (an arbitrary constant: "kc" + "migr").
const LOCK_KEY: i32 = 0x6b63_6d67;

/// Applies the migrations not yet recorded in `schema_migrations`, each in the
/// same transaction as its record. Returns the versions it applied.
///
/// The transaction-level advisory lock is keyed on the current schema too, so
/// tasks sharing a schema take turns while separate schemas (tests) do not wait
/// for each other. It is released at commit or rollback, even if the task dies.
pub async fn run(client: &mut Client) -> Result<Vec<&'static str>, DbError> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
        &[&LOCK_KEY],
    )
    .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version TEXT PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP
        )",
    )
    .await?;
    let applied: Vec<String> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut done = Vec::new();
    for (version, sql) in MIGRATIONS {
        if applied.iter().any(|v| v == version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[version])
            .await?;
        done.push(*version);
    }
    tx.commit().await?;
    Ok(done)
}
