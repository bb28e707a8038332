//! Poison values: what PostgreSQL would refuse must be refused at validation,
//! before it can fail the coalesced statement it would share with other
//! requests; and what the database still refuses fails only its own request.

use issuance::Issuance;
use kc_testing::{spawn_app, spawn_app_with, TestApp, TestDb};
use serde_json::{json, Value};
use std::sync::Arc;

const PATH: &str = "/issuance/credentials";

fn with_metadata(n: usize, metadata: &str) -> String {
    format!(r#"{{"name":"poison {n}","email":"p@example.com","credentialType":"t","metadata":{metadata}}}"#)
}

/// The (field, message) pairs of a 400.
fn errors(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap_or("").to_owned(),
                        e["message"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn numbers_jsonb_cannot_store_get_a_field_level_400_and_nothing_is_stored() {
    let app = spawn_app::<Issuance>().await;
    for (n, number) in ["0.1e-400000", "1.0e-16383", "0e-16384"].into_iter().enumerate() {
        let res = app
            .post_raw(
                PATH,
                Some("application/json"),
                with_metadata(n, &format!(r#"{{"deep":[{{"x":{number}}}]}}"#)),
            )
            .await;
        assert_eq!(res.status, 400, "{number}");
        let body = res.json();
        assert_eq!(body["success"], false);
        let errors = errors(&body);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "metadata");
        assert!(errors[0].1.contains("PostgreSQL cannot store"), "{errors:?}");
    }
    assert_eq!(app.db.count_credentials().await, 0);
    // The task carries on.
    assert_eq!(
        app.post_raw(
            PATH,
            Some("application/json"),
            with_metadata(9, r#"{"x":1e-16383}"#)
        )
        .await
        .status,
        201
    );
}

/// A small deterministic generator, so a failure names a literal that can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// Number literals around every limit of PostgreSQL's numeric and of a double.
fn literals() -> Vec<String> {
    let ints = ["0", "1", "9", "10", "123"];
    let fracs = ["", ".0", ".5", ".000", ".001", ".120"];
    let exponents: Vec<i64> = vec![
        0,
        1,
        -1,
        300,
        308,
        309,
        -300,
        -400,
        -16380,
        -16381,
        -16382,
        -16383,
        -16384,
        -16385,
        131_069,
        131_070,
        131_071,
        131_072,
        1_073_741_822,
        1_073_741_823,
        -1_073_741_822,
        -1_073_741_823,
    ];
    let mut out = Vec::new();
    for int in ints {
        for frac in fracs {
            for e in &exponents {
                out.push(format!("{int}{frac}e{e}"));
            }
        }
    }
    let mut rng = Lcg(0x6b63);
    for _ in 0..200 {
        let int = ints[rng.next(ints.len() as u64) as usize];
        let zeros = "0".repeat(rng.next(20_000) as usize);
        let e = rng.next(40_000) as i64 - 20_000;
        out.push(format!("-{int}.{zeros}7e{e}"));
    }
    out
}

#[tokio::test]
async fn every_metadata_number_is_either_refused_at_validation_or_stored() {
    let app = spawn_app::<Issuance>().await;
    let db = app.db.client().await;
    let mut refused_by_the_rule = 0;
    for (n, literal) in literals().into_iter().enumerate() {
        let res = app
            .post_raw(
                PATH,
                Some("application/json"),
                with_metadata(n, &format!(r#"{{"x":{literal}}}"#)),
            )
            .await;
        let postgres_takes_it = db
            .query_one("SELECT $1::text::jsonb", &[&format!(r#"{{"x":{literal}}}"#)])
            .await
            .is_ok();
        match res.status.as_u16() {
            201 => assert!(postgres_takes_it, "{literal}: 201, yet PostgreSQL refuses it"),
            400 => {
                let errors = errors(&res.json());
                let field = errors.first().map(|e| e.0.as_str());
                // Never the database's refusal: that would have failed a whole batch.
                assert!(
                    !errors.iter().any(|e| e.1.contains("database cannot store")),
                    "{literal}: reached the database: {errors:?}"
                );
                if field == Some("metadata") {
                    refused_by_the_rule += 1;
                    assert!(!postgres_takes_it, "{literal}: refused, yet PostgreSQL stores it");
                } else {
                    // Beyond a double: the parser's limit, documented in API.md.
                    assert_eq!(
                        errors[0].1, "request body has a number beyond ±1.7976931348623157e308",
                        "{literal}"
                    );
                }
            }
            other => panic!("{literal}: {other}"),
        }
    }
    assert!(
        refused_by_the_rule > 50,
        "the generator no longer reaches the limits"
    );
}

/// Narrows `credential_type` in the test's schema, so that a value validation
/// accepts (up to 100 characters) is refused by the database (over 20): a poison
/// validation cannot know about, as a schema change could make.
async fn narrowed(app: &TestApp) {
    app.db
        .client()
        .await
        .batch_execute("ALTER TABLE credentials ALTER COLUMN credential_type TYPE varchar(20)")
        .await
        .expect("narrow the column");
}

#[tokio::test]
async fn a_value_the_database_refuses_fails_only_its_own_request_in_a_batch() {
    // One lane: everything that arrives while a statement runs shares the next one.
    let app = Arc::new(spawn_app_with::<Issuance>(TestDb::new().await, &[("DB_BATCH_LANES", "1")]).await);
    narrowed(&app).await;
    let poison = [5usize, 17, 18, 33];
    let mut tasks = Vec::new();
    for i in 0..48 {
        let app = app.clone();
        let credential_type = if poison.contains(&i) {
            "x".repeat(30)
        } else {
            "t".into()
        };
        tasks.push(tokio::spawn(async move {
            let body = json!({ "name": format!("member {i}"), "email": "a@b.co", "credentialType": credential_type });
            let res = app.post_json(PATH, &body).await;
            (i, res.status.as_u16(), res.json())
        }));
    }
    for t in tasks {
        let (i, status, body) = t.await.unwrap();
        if poison.contains(&i) {
            assert_eq!(status, 400, "request {i}");
            assert_eq!(
                errors(&body),
                [(
                    "body".to_owned(),
                    "contains a value the database cannot store".to_owned()
                )]
            );
        } else {
            assert_eq!(status, 201, "request {i}: {body}");
        }
    }
    assert_eq!(app.db.count_credentials().await, 48 - poison.len() as i64);
    // And alone, outside any batch, too.
    let res = app
        .post_json(
            PATH,
            &json!({ "name": "alone", "email": "a@b.co", "credentialType": "y".repeat(21) }),
        )
        .await;
    assert_eq!(res.status, 400);
}
