//! What a verification discloses to whom (docs/API.md, "Access control"): a
//! verifier and the issuing client see the whole credential; an anonymous
//! caller sees its public part unless it sent the matching name and email;
//! anonymous callers are limited per source address, which a client cannot
//! forge with `X-Forwarded-For`.

use issuance::Issuance;
use kc_testing::{spawn_app, spawn_app_with, Role, TestApp, TestDb};
use serde_json::{json, Value};
use verification::Verification;

const ISSUE: &str = "/issuance/credentials";
const VERIFY: &str = "/verification/credentials";

/// An issuance task (its key: the issuer `issuer.worker_id`), a verification
/// task on the same schema with `vars`, and one credential issued.
async fn setup(vars: &[(&str, &str)]) -> (TestApp, TestApp, Value) {
    let issuer = spawn_app::<Issuance>().await;
    let verifier = spawn_app_with::<Verification>(issuer.db.clone(), vars).await;
    let res = issuer
        .post_json(
            ISSUE,
            &json!({ "name": "Ada Lovelace", "email": "ada@example.com", "credentialType": "Engineer",
                     "metadata": { "ssn": "078-05-1120" } }),
        )
        .await;
    assert_eq!(res.status, 201);
    let credential = res.json()["credential"].clone();
    (issuer, verifier, credential)
}

fn public(credential: &Value) -> Value {
    json!({
        "id": credential["id"],
        "credentialType": credential["credentialType"],
        "issuer": credential["issuer"],
        "issuedAt": credential["issuedAt"],
        "validUntil": credential["validUntil"],
    })
}

#[tokio::test]
async fn verifiers_and_the_issuing_client_see_everything_others_only_the_public_part() {
    let (issuer, verifier, credential) = setup(&[]).await;
    let id = credential["id"].as_str().unwrap().to_owned();
    let by_id = json!({ "id": id });

    // The verifier's own key (made by the harness).
    let res = verifier.post_json(VERIFY, &by_id).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["credential"], credential);
    assert_eq!(res.json()["credential"]["metadata"]["ssn"], "078-05-1120");

    // The issuer that issued it, on the verification service.
    let own = issuer.key.clone().unwrap();
    verifier.wait_key(&own).await;
    let res = verifier.post_json_as(VERIFY, &by_id, Some(&own)).await;
    assert_eq!(res.json()["credential"], credential);

    // Another issuer: the public part.
    let other = verifier.add_client("other-issuer", Role::Issuer, &[], None).await;
    verifier.wait_key(&other).await;
    let res = verifier.post_json_as(VERIFY, &by_id, Some(&other)).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["credential"], public(&credential));

    // Anonymous with the id alone, or with only one of name and email: the public part.
    for body in [
        by_id.clone(),
        json!({ "id": id, "name": "Ada Lovelace" }),
        json!({ "id": id, "email": "ada@example.com" }),
    ] {
        let res = verifier.post_json_as(VERIFY, &body, None).await;
        assert_eq!(res.status, 200, "{body}");
        let answer = res.json();
        assert_eq!(answer["valid"], true);
        assert_eq!(answer["credential"], public(&credential), "{body}");
        assert!(!String::from_utf8_lossy(&res.body).contains("078-05-1120"));
        assert_eq!(answer["verifiedBy"], verifier.worker_id.as_str());
    }

    // Anonymous with the matching name and email knows the holder already: everything.
    let res = verifier
        .post_json_as(
            VERIFY,
            &json!({ "id": id, "name": " Ada Lovelace", "email": "ADA@example.com" }),
            None,
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["credential"], credential);

    // A mismatch is a 404 to everyone, saying nothing of the holder.
    let res = verifier
        .post_json_as(
            VERIFY,
            &json!({ "id": id, "name": "Ada Lovelace", "email": "eve@example.com" }),
            None,
        )
        .await;
    assert_eq!(res.status, 404);
    assert!(res.json().get("credential").is_none());
}

#[tokio::test]
async fn a_bad_key_on_verification_is_401_not_anonymous() {
    let (_issuer, verifier, credential) = setup(&[]).await;
    let res = verifier
        .post_json_as(VERIFY, &json!({ "id": credential["id"] }), Some("kc_nope"))
        .await;
    assert_eq!(res.status, 401);
    assert_eq!(res.header("www-authenticate"), Some("Bearer"));
    assert!(res.json().get("credential").is_none());
}

/// Sends `n` anonymous guesses with `headers`; how many got 429.
async fn guesses(app: &TestApp, n: usize, headers: &[(&str, &str)]) -> usize {
    let mut limited = 0;
    for _ in 0..n {
        let body = json!({ "id": uuid::Uuid::new_v4().to_string() }).to_string();
        let res = app
            .post_with(VERIFY, Some("application/json"), body, None, headers)
            .await;
        match res.status.as_u16() {
            404 => {}
            429 => {
                assert!(res.header("retry-after").is_some());
                limited += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    limited
}

#[tokio::test]
async fn anonymous_guesses_are_limited_per_address_and_x_forwarded_for_cannot_dodge_it() {
    let (_issuer, verifier, _) = setup(&[("ANONYMOUS_RATE_LIMIT", "5")]).await;
    // Reached directly (no trusted proxy), every guess counts against the peer,
    // whatever X-Forwarded-For claims.
    let limited = guesses(&verifier, 60, &[("x-forwarded-for", "203.0.113.9")]).await;
    // A burst of 5, then 5 a second: however slow the machine, most are refused.
    assert!(limited >= 40, "{limited} of 60 limited");
    let mut forged = 0;
    for i in 0..20 {
        let ip = format!("198.51.100.{i}");
        forged += guesses(&verifier, 1, &[("x-forwarded-for", ip.as_str())]).await;
    }
    assert!(
        forged >= 19,
        "a forged X-Forwarded-For escaped the limit: {forged} of 20 limited"
    );
    // A key is not limited by the anonymous budget.
    let res = verifier
        .post_json(VERIFY, &json!({ "id": uuid::Uuid::new_v4().to_string() }))
        .await;
    assert_eq!(res.status, 404);
    let metrics = verifier.metrics().await;
    assert!(
        metrics.contains(r#"kc_refused_requests_total{client="anonymous",http_response_status_code="429"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn behind_one_trusted_proxy_the_address_it_appended_is_the_caller() {
    let (_issuer, verifier, _) = setup(&[("ANONYMOUS_RATE_LIMIT", "5"), ("TRUSTED_PROXY_HOPS", "1")]).await;
    // The balancer appends the address it saw; what the client wrote before it is ignored.
    let limited = guesses(&verifier, 15, &[("x-forwarded-for", "1.1.1.1, 203.0.113.1")]).await;
    assert!(limited >= 9, "{limited} of 15");
    let limited = guesses(&verifier, 15, &[("x-forwarded-for", "2.2.2.2, 203.0.113.1")]).await;
    assert!(
        limited >= 13,
        "the same last hop is the same caller: {limited} of 15"
    );
    // Another address the balancer saw has a budget of its own.
    let limited = guesses(&verifier, 5, &[("x-forwarded-for", "203.0.113.2")]).await;
    assert_eq!(limited, 0);
}

#[tokio::test]
async fn with_auth_mode_off_anyone_sees_everything() {
    let db = TestDb::new().await;
    let issuer = spawn_app_with::<Issuance>(db.clone(), &[("AUTH_MODE", "off")]).await;
    let verifier = spawn_app_with::<Verification>(db, &[("AUTH_MODE", "off")]).await;
    let res = issuer
        .post_json(
            ISSUE,
            &json!({ "name": "Open", "email": "open@example.com", "credentialType": "Trial" }),
        )
        .await;
    let credential = res.json()["credential"].clone();
    let res = verifier
        .post_json(VERIFY, &json!({ "id": credential["id"] }))
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["credential"], credential);
    assert_eq!(credential["issuer"], Value::Null);
}
