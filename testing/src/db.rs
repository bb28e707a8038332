//! The test database: a fresh schema per test on the real PostgreSQL, dropped
//! when the test is done, and connections made the way the services make them.
//!
//! The server is `TEST_DATABASE_URL`, else `DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`.

use kc_core::Config;
use std::net::SocketAddr;
use std::sync::Arc;

/// The database the tests use.
pub fn base_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema of its own for one test, dropped when the last handle goes.
pub struct TestDb {
    base: String,
    schema: String,
}

impl TestDb {
    /// Creates a fresh, empty schema on the test database.
    pub async fn new() -> Arc<TestDb> {
        Self::new_on(&base_database_url()).await
    }

    /// Creates a fresh, empty schema on the server and database of `base` (a URL).
    pub async fn new_on(base: &str) -> Arc<TestDb> {
        let base = base.to_owned();
        let schema = format!("kc_test_{}", uuid::Uuid::new_v4().simple());
        let client = connect(&base).await;
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("cannot create a test schema");
        Arc::new(TestDb { base, schema })
    }

    /// A URL whose connections see only this schema.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-csearch_path%3D{}", self.base, self.schema)
    }

    /// [`TestDb::url`] with the server's address replaced by `addr` (a proxy).
    pub fn url_via(&self, addr: SocketAddr) -> String {
        let config: tokio_postgres::Config = self.base.parse().expect("test database URL");
        let user = config.get_user().unwrap_or("postgres");
        let db = config.get_dbname().unwrap_or("test");
        let password = config
            .get_password()
            .map(|p| format!(":{}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        format!(
            "postgres://{user}{password}@{addr}/{db}?options=-csearch_path%3D{}",
            self.schema
        )
    }

    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// How many credentials are stored.
    pub async fn count_credentials(&self) -> i64 {
        let row = self
            .client()
            .await
            .query_one("SELECT count(*) FROM credentials", &[])
            .await;
        row.expect("count credentials").get(0)
    }

    /// A client on this schema, for checking what the service stored.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url()).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (base, schema) = (self.base.clone(), self.schema.clone());
        // Drop runs inside the test's runtime; clean up on a thread of our own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                // Over TLS when the URL asks for it, as the schema was made.
                if let Ok(client) = try_connect(&base).await {
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Connects like the services do (so TLS modes in the URL work).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    try_connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test database (set TEST_DATABASE_URL): {e}"))
}

async fn try_connect(url: &str) -> Result<tokio_postgres::Client, kc_core::db::DbError> {
    let config =
        Config::from_lookup(|k| (k == "DATABASE_URL").then(|| url.to_owned())).expect("test database URL");
    kc_core::db::connect_once(&config).await
}
