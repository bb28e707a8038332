//! Route + handle one request end to end in-process (no sockets) against the
//! real PostgreSQL (TEST_DATABASE_URL, else DATABASE_URL, else the local server),
//! in a schema of its own, as a client with an issuer's key (one of the
//! benches' 100 clients).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::Full;
use hyper::Request;
use issuance::Issuance;
use kc_benches::{bearer, scratch_db, CLIENTS};
use kc_core::{App, Config, Endpoint};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use verification::Verification;

fn app<E: Endpoint>(db: &kc_testing::TestDb) -> App<E> {
    let env: HashMap<&str, String> = HashMap::from([
        ("DATABASE_URL", db.url()),
        ("WORKER_ID", "bench".to_owned()),
        ("DB_SSLMODE", "disable".to_owned()),
        ("LOG_LEVEL", "off".to_owned()),
        // Criterion sends far more than the default 1,000 a second.
        ("CLIENT_RATE_LIMIT", "10000000".to_owned()),
    ]);
    App::new(Config::from_lookup(|k| env.get(k).cloned()).expect("bench configuration"))
}

fn post(path: &str, body: String) -> Request<Full<Bytes>> {
    static KEY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| bearer(CLIENTS / 2));
    Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", KEY.as_str())
        .body(Full::new(Bytes::from(body)))
        .expect("request")
}

fn endpoint(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (db, issuer, verifier, id) = rt.block_on(async {
        let (db, client) = scratch_db().await;
        let issuer = app::<Issuance>(&db);
        let verifier = app::<Verification>(&db);
        for loaded in [issuer.load_clients().await, verifier.load_clients().await] {
            loaded.expect("the benches' clients load");
        }
        let res = issuer
            .handle(post(
                "/issuance/credentials",
                r#"{"name":"Bench","email":"b@example.com","credentialType":"t"}"#.into(),
            ))
            .await;
        assert_eq!(res.status(), 201);
        let row = client
            .query_one("SELECT id FROM credentials", &[])
            .await
            .expect("the seeded credential");
        (db, issuer, verifier, row.get::<_, uuid::Uuid>(0))
    });

    let mut g = c.benchmark_group("endpoint");
    let n = AtomicU64::new(0);
    let run = uuid::Uuid::new_v4().simple().to_string();
    g.bench_function("POST /issuance/credentials (201)", |b| {
        b.to_async(&rt).iter(|| {
            let i = n.fetch_add(1, Ordering::Relaxed);
            let body = format!(
                r#"{{"name":"Bench {run} {i}","email":"b{i}@example.com","credentialType":"bench"}}"#
            );
            let issuer = &issuer;
            async move {
                assert_eq!(
                    issuer.handle(post("/issuance/credentials", body)).await.status(),
                    201
                )
            }
        })
    });
    g.bench_function("POST /verification/credentials (200)", |b| {
        b.to_async(&rt).iter(|| {
            let verifier = &verifier;
            let body = format!(r#"{{"id":"{id}"}}"#);
            async move {
                assert_eq!(
                    verifier
                        .handle(post("/verification/credentials", body))
                        .await
                        .status(),
                    200
                )
            }
        })
    });
    g.finish();
    // Drop the apps (and their pools) inside the runtime, then the schema.
    rt.block_on(async move {
        drop(issuer);
        drop(verifier);
    });
    drop(db);
}

criterion_group!(benches, endpoint);
criterion_main!(benches);
