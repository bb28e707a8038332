//! Stored and returned values round-trip (issue 21, item 6), against the real
//! PostgreSQL: a few hundred generated bodies (core/tests/bodies, included by
//! path) are sent to issuance; for every 201 the credential it returned is the
//! row PostgreSQL stored, and verification, asked with the holder's name and
//! email as returned, answers 200 with the same credential. core/tests/roundtrip.rs
//! holds the parser and the writer to the same property without a database.

#[path = "../../core/tests/bodies/mod.rs"]
mod bodies;

use issuance::Issuance;
use kc_testing::{spawn_app, spawn_app_with};
use serde_json::{json, Value};
use verification::Verification;

const ISSUE: &str = "/issuance/credentials";
const VERIFY: &str = "/verification/credentials";
const SEED: u64 = 2106;
const CASES: usize = 300;

/// Equal as JSON, numbers as doubles: PostgreSQL's jsonb writes a number its own
/// way (`-0` as `0`, `1e-16383` in full), and issuance returns it as sent.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[tokio::test]
async fn what_issuance_returns_is_what_postgresql_stored_and_what_verification_returns() {
    let issuer = spawn_app::<Issuance>().await;
    let verifier = spawn_app_with::<Verification>(issuer.db.clone(), &[]).await;
    let db = issuer.db.client().await;
    let mut rng = bodies::Rng::new(SEED);
    let (mut issued, mut refused) = (0, 0);
    for case in 0..CASES {
        // The case number keeps the names apart, so no body is a duplicate (409).
        let body = bodies::issuance(&mut rng, &format!(" {case}"));
        let at = format!("case {case} of seed {SEED}: {body}");
        let res = issuer
            .post_raw(ISSUE, Some("application/json"), body.clone())
            .await;
        match res.status.as_u16() {
            201 => issued += 1,
            400 => {
                refused += 1;
                continue;
            }
            status => panic!("{status} for {at}: {:?}", res.body),
        }
        let returned = res.json()["credential"].take();
        let id: uuid::Uuid = returned["id"].as_str().unwrap().parse().unwrap();

        let row = db
            .query_one(
                "SELECT name, email, credential_type, metadata::text FROM credentials WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
        let stored = json!({
            "name": row.get::<_, &str>(0),
            "email": row.get::<_, &str>(1),
            "credentialType": row.get::<_, &str>(2),
            "metadata": row
                .get::<_, Option<&str>>(3)
                .map_or(Value::Null, |m| serde_json::from_str(m).unwrap()),
        });
        for field in ["name", "email", "credentialType", "metadata"] {
            assert!(
                same(&returned[field], &stored[field]),
                "{field}: returned {} stored {} for {at}",
                returned[field],
                stored[field]
            );
        }

        let verified = verifier
            .post_json(
                VERIFY,
                &json!({ "id": returned["id"], "name": returned["name"], "email": returned["email"] }),
            )
            .await;
        assert_eq!(verified.status, 200, "{at}: {:?}", verified.body);
        let verified = verified.json()["credential"].take();
        assert!(
            same(&verified, &returned),
            "verified {verified} issued {returned} for {at}"
        );
    }
    eprintln!("{issued} issued and verified, {refused} refused, of {CASES}");
    // Neither vacuous nor blind: both kinds of body were sent.
    assert!(
        issued >= CASES / 2 && refused > 0,
        "{issued} issued, {refused} refused"
    );
}
