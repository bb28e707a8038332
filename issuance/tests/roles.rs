//! The least-privilege database roles of sql/004_roles.sql, on the real
//! PostgreSQL (docs/DEPLOYMENT.md, "Database roles"): a login user in
//! kc_verification may read and never write; one in kc_issuance may insert and
//! read (and keep its idempotency keys), nothing else, and the issuance service
//! runs as it; kc_migrator owns
//! the schema and registers API clients. Each test logs in as users of its own
//! (random names, dropped at the end), so the tests run in parallel and again.

use issuance::Issuance;
use kc_core::auth::admin::{self, NewClient};
use kc_testing::{connect, spawn_app_with, Role, TestDb};
use serde_json::json;
use std::sync::Arc;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// A login user, member of `group`, dropped when this goes.
struct LoginUser {
    name: String,
    url: String,
}

impl LoginUser {
    async fn new(db: &TestDb, group: &str) -> LoginUser {
        let name = format!("kc_t_{}", uuid::Uuid::new_v4().simple());
        let password = uuid::Uuid::new_v4().simple().to_string();
        db.client()
            .await
            .batch_execute(&format!(
                "CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE {group}"
            ))
            .await
            .unwrap_or_else(|e| {
                panic!("cannot create a login user in {group} (the test user needs CREATEROLE): {e}")
            });
        let url = db.url();
        let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
        let host = rest.split_once('@').map_or(rest, |(_, host)| host);
        let url = format!("{scheme}://{name}:{password}@{host}");
        LoginUser { name, url }
    }

    async fn client(&self) -> Client {
        connect(&self.url).await
    }
}

impl Drop for LoginUser {
    fn drop(&mut self) {
        let (base, name) = (kc_testing::base_database_url(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let _ = connect(&base)
                    .await
                    .batch_execute(&format!("DROP ROLE IF EXISTS {name}"))
                    .await;
            });
        })
        .join();
    }
}

/// A fresh schema, migrated by the test's (superuser) connection like the
/// migration task, holding one credential.
async fn migrated() -> Arc<TestDb> {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    kc_core::migrate::run(&mut client).await.expect("migrations");
    client
        .batch_execute(
            "INSERT INTO credentials (id, name, email, credential_type, issued_by)
             VALUES ('00000000-0000-4000-8000-000000000001', 'Ada', 'ada@example.com', 'Degree', 'seed')",
        )
        .await
        .unwrap();
    db
}

/// A migrated schema, a login user in `group`, and a connection as that user.
async fn member_of(group: &str) -> (Arc<TestDb>, LoginUser, Client) {
    let db = migrated().await;
    let user = LoginUser::new(&db, group).await;
    let client = user.client().await;
    (db, user, client)
}

/// Runs `sql` and asserts PostgreSQL refused it for lack of privilege.
async fn refused(client: &Client, sql: &str) {
    let err = client
        .batch_execute(sql)
        .await
        .expect_err(&format!("allowed: {sql}"));
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{sql}: {err}"
    );
}

async fn count(client: &Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap_or_else(|e| panic!("SELECT on {table}: {e}"))
        .get(0)
}

/// Reads every table a service reads, and is refused every write but INSERT
/// (and, for issuance, the revocation columns' UPDATE).
async fn reads_only(client: &Client) {
    for table in ["credentials", "api_clients", "api_keys", "api_clients_version"] {
        count(client, table).await;
    }
    for sql in [
        "UPDATE credentials SET name = 'Eve'",
        "DELETE FROM credentials",
        "TRUNCATE credentials",
        "DROP TABLE credentials",
        "ALTER TABLE credentials ADD COLUMN x int",
        "INSERT INTO api_clients (name, role) VALUES ('eve', 'issuer')",
        "UPDATE api_keys SET revoked_at = NULL",
        "DELETE FROM schema_migrations",
        "CREATE TABLE stolen (x int)",
    ] {
        refused(client, sql).await;
    }
}

const INSERT: &str = "INSERT INTO credentials (id, name, email, credential_type, issued_by)
    VALUES (gen_random_uuid(), 'Bob', 'bob@example.com', 'Degree', 'test')";

#[tokio::test]
async fn the_verification_role_reads_and_cannot_write() {
    let (db, _user, client) = member_of("kc_verification").await;
    assert_eq!(count(&client, "credentials").await, 1);
    for sql in [
        INSERT,
        "UPDATE api_clients_version SET v = v + 1",
        "SELECT kc_before_deadline(now())",
        // Idempotency keys are issuance's alone (sql/006).
        "SELECT count(*) FROM idempotency_keys",
    ] {
        refused(&client, sql).await;
    }
    reads_only(&client).await;
    assert_eq!(db.count_credentials().await, 1);
}

#[tokio::test]
async fn the_issuance_role_inserts_reads_and_revokes_and_nothing_else() {
    let (db, _user, client) = member_of("kc_issuance").await;
    // The service's own statement shape: a deadline and ON CONFLICT ... RETURNING.
    let row = client
        .query_one(
            "INSERT INTO credentials (id, name, email, credential_type, issued_by)
             SELECT gen_random_uuid(), 'Bob', 'bob@example.com', 'Degree', 'test'
              WHERE kc_before_deadline(now() + interval '1 minute')
             ON CONFLICT ON CONSTRAINT unique_credential DO NOTHING RETURNING id, issued_at",
            &[],
        )
        .await
        .expect("the issuance role inserts");
    let _: uuid::Uuid = row.get(0);
    assert_eq!(count(&client, "credentials").await, 2);
    // It revokes: it may UPDATE the two revocation columns (sql/005), and no other.
    client
        .batch_execute(
            "UPDATE credentials SET revoked_at = now(), revocation_reason = 'r' WHERE name = 'Bob'",
        )
        .await
        .expect("the issuance role revokes");
    // It keeps idempotency keys: inserts, takes over, deletes (sql/006)...
    client
        .batch_execute(
            "INSERT INTO idempotency_keys (client, idempotency_key, fingerprint, credential_id)
             VALUES ('c', 'k', sha256('b'), gen_random_uuid())
             ON CONFLICT (client, idempotency_key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,
                credential_id = EXCLUDED.credential_id, created_at = EXCLUDED.created_at;
             DELETE FROM idempotency_keys WHERE (client, idempotency_key) IN (
               SELECT client, idempotency_key FROM idempotency_keys WHERE created_at < now()
                ORDER BY created_at LIMIT 10 FOR UPDATE SKIP LOCKED)",
        )
        .await
        .expect("the issuance role keeps idempotency keys");
    for sql in [
        "UPDATE credentials SET valid_until = now()",
        "UPDATE credentials SET revoked_at = now(), issuer = 'eve'",
        "UPDATE credentials SET issued_at = now()",
        // ...and may not move a key to another client.
        "UPDATE idempotency_keys SET client = 'eve'",
        "TRUNCATE idempotency_keys",
    ] {
        refused(&client, sql).await;
    }
    reads_only(&client).await;
    assert_eq!(db.count_credentials().await, 2);
}

#[tokio::test]
async fn the_issuance_service_runs_as_the_issuance_role() {
    let db = migrated().await;
    let user = LoginUser::new(&db, "kc_issuance").await;
    // As in the templates: the service does not migrate, and logs in as its role.
    let app = spawn_app_with::<Issuance>(
        db.clone(),
        &[("DATABASE_URL", &user.url), ("RUN_MIGRATIONS", "false")],
    )
    .await;
    let body = json!({ "name": "Cy", "email": "cy@example.com", "credentialType": "Degree" });
    let res = app.post_json("/issuance/credentials", &body).await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    let again = app.post_json("/issuance/credentials", &body).await;
    // The existing credential is read back as the same role.
    assert_eq!(again.status, 409, "{:?}", again.body);
    // With an Idempotency-Key: issued, then replayed, as that role.
    let keyed = json!({ "name": "Di", "email": "di@example.com", "credentialType": "Degree" });
    let mut answers = Vec::new();
    for _ in 0..2 {
        let res = app
            .post_with(
                "/issuance/credentials",
                Some("application/json"),
                keyed.to_string(),
                app.key.as_deref(),
                &[("idempotency-key", "role-key")],
            )
            .await;
        assert_eq!(res.status, 201, "{:?}", res.body);
        answers.push(res);
    }
    assert_eq!(answers[1].header("idempotent-replayed"), Some("true"));
    assert_eq!(answers[1].body, answers[0].body);
    // And revoked as that role.
    let id = res.json()["credential"]["id"].as_str().unwrap().to_owned();
    let revoked = app
        .post_json(
            &format!("/issuance/credentials/{id}/revoke"),
            &json!({ "reason": "r" }),
        )
        .await;
    assert_eq!(revoked.status, 200, "{:?}", revoked.body);
    assert_eq!(db.count_credentials().await, 3);
}

#[tokio::test]
async fn the_migration_role_owns_the_schema_and_manages_api_clients() {
    let db = migrated().await;
    let client = db.client().await;
    let owner: String = client
        .query_one(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = current_schema()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "kc_migrator");
    let owners: Vec<(String, String)> = client
        .query(
            "SELECT c.relname::text, c.relowner::regrole::text FROM pg_class c
              WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'S')
              ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(owners.len() >= 6, "{owners:?}");
    for (relation, owner) in &owners {
        assert_eq!(owner, "kc_migrator", "{relation}");
    }

    // What the `clients` one-off and a later migration do, as a member of kc_migrator.
    let user = LoginUser::new(&db, "kc_migrator").await;
    let mut migrator = user.client().await;
    assert_eq!(
        kc_core::migrate::run(&mut migrator).await.expect("migrate again"),
        Vec::<&str>::new()
    );
    let client = NewClient {
        name: "acme".into(),
        role: Role::Issuer,
        credential_types: vec![],
        rate_limit: None,
    };
    let key = admin::add(&mut migrator, &client, None)
        .await
        .expect("clients add");
    assert!(key.is_some());
    assert!(admin::revoke(&mut migrator, "acme")
        .await
        .expect("clients revoke"));
    migrator
        .batch_execute("CREATE TABLE later (x int); DROP TABLE later")
        .await
        .expect("the migration role creates and drops tables");
}

#[tokio::test]
async fn migrating_again_in_many_schemas_at_once_agrees_on_the_roles() {
    // Roles are cluster-wide: parallel migrations of fresh schemas must all succeed.
    let dbs = futures_join(8).await;
    for db in &dbs {
        let granted: bool = db
            .client()
            .await
            .query_one(
                "SELECT has_table_privilege('kc_verification', 'credentials', 'SELECT')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(granted);
    }
}

async fn futures_join(n: usize) -> Vec<Arc<TestDb>> {
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(migrated())).collect();
    let mut dbs = Vec::new();
    for task in tasks {
        dbs.push(task.await.expect("a migration failed"));
    }
    dbs
}
