//! What verification says of a credential's lifecycle (docs/API.md,
//! "Lifecycle"): a revoked one is a 404 with `reason: revoked` on every task at
//! once, an expired one a 404 with `reason: expired`, and an unknown id or a
//! name or email that does not match a 404 with `reason: not_found` — whatever
//! the credential's state, so a mismatch confirms nothing. The seeds' requests
//! keep their answers.

use issuance::Issuance;
use kc_testing::{spawn_app, spawn_app_with, TestApp};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};
use verification::Verification;

const ISSUE: &str = "/issuance/credentials";
const VERIFY: &str = "/verification/credentials";

/// An issuance task and two verification tasks on one schema.
async fn tasks() -> (TestApp, TestApp, TestApp) {
    let issuer = spawn_app::<Issuance>().await;
    let one = spawn_app_with::<Verification>(issuer.db.clone(), &[]).await;
    let two = spawn_app_with::<Verification>(issuer.db.clone(), &[]).await;
    (issuer, one, two)
}

async fn issue(app: &TestApp, body: Value) -> Value {
    let res = app.post_json(ISSUE, &body).await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    res.json()["credential"].clone()
}

/// The seeds' issuance body.
fn seed() -> Value {
    json!({ "name": "John Doe", "email": "john@example.com", "credentialType": "Developer Certificate",
            "metadata": { "organization": "Tech Corp", "expiryDate": "2026-12-31" } })
}

/// Asserts a 404 with `reason` and the seeds' `valid: false` body; returns the body.
async fn refused(app: &TestApp, body: &Value, key: Option<&str>, reason: &str) -> Value {
    let res = app.post_json_as(VERIFY, body, key).await;
    assert_eq!(res.status, 404, "{body}: {:?}", res.body);
    let answer = res.json();
    assert_eq!(answer["valid"], false);
    assert_eq!(answer["message"], "Credential not found or invalid");
    assert_eq!(answer["verifiedBy"], app.worker_id.as_str());
    assert!(answer["verifiedAt"].is_string());
    assert_eq!(answer["reason"], reason, "{answer}");
    assert!(answer.get("credential").is_none());
    answer
}

#[tokio::test]
async fn a_revoked_credential_is_refused_on_every_task_at_once() {
    let (issuer, one, two) = tasks().await;
    let credential = issue(&issuer, seed()).await;
    let id = credential["id"].as_str().unwrap().to_owned();
    let by_id = json!({ "id": id });
    // The seeds' verification, before: 200 with the credential as issued.
    for task in [&one, &two] {
        let res = task.post_json(VERIFY, &by_id).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.json()["credential"], credential);
    }

    let res = issuer
        .post_json(
            &format!("{ISSUE}/{id}/revoke"),
            &json!({ "reason": "superseded" }),
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let revoked_at = res.json()["revokedAt"].clone();

    // Both tasks, at once, with a key and without, with or without the holder's data.
    let matching = json!({ "id": id, "name": "John Doe", "email": "john@example.com" });
    for task in [&one, &two] {
        for (body, key) in [(&by_id, task.key.as_deref()), (&by_id, None), (&matching, None)] {
            let answer = refused(task, body, key, "revoked").await;
            assert_eq!(answer["revokedAt"], revoked_at);
            // Neither the reason nor anything of the holder.
            let text = answer.to_string();
            assert!(!text.contains("superseded") && !text.contains("John"), "{text}");
            assert_eq!(answer.as_object().unwrap().len(), 6);
        }
        // A mismatch says not_found, as for an unknown id: it confirms nothing.
        let answer = refused(task, &json!({ "id": id, "name": "Jane Doe" }), None, "not_found").await;
        assert!(answer.get("revokedAt").is_none());
    }
}

#[tokio::test]
async fn past_its_valid_until_a_credential_is_expired() {
    let (issuer, one, _two) = tasks().await;
    let soon = SystemTime::now() + Duration::from_secs(3600);
    let mut body = seed();
    body["validUntil"] = json!(kc_core::time::rfc3339_millis(soon));
    let credential = issue(&issuer, body).await;
    let id = credential["id"].as_str().unwrap().to_owned();

    // Still valid: 200, with validUntil in the whole and in the public view.
    let res = one.post_json(VERIFY, &json!({ "id": id })).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["credential"], credential);
    let public = one.post_json_as(VERIFY, &json!({ "id": id }), None).await;
    assert_eq!(
        public.json()["credential"]["validUntil"],
        credential["validUntil"]
    );

    // The API refuses a past validUntil, so the clock is moved in the row.
    issuer
        .db
        .client()
        .await
        .execute(
            "UPDATE credentials SET valid_until = now() - interval '1 second' WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    let answer = refused(&one, &json!({ "id": id }), None, "expired").await;
    assert!(answer.get("revokedAt").is_none());
    assert_eq!(answer.as_object().unwrap().len(), 5);
    refused(
        &one,
        &json!({ "id": id, "email": "jane@example.com" }),
        one.key.as_deref(),
        "not_found",
    )
    .await;

    // Revoked and expired: revoked says more.
    let res = issuer
        .post_json(&format!("{ISSUE}/{id}/revoke"), &json!({}))
        .await;
    assert_eq!(res.status, 200);
    refused(&one, &json!({ "id": id }), None, "revoked").await;
}

#[tokio::test]
async fn an_unknown_id_says_not_found_and_the_seeds_keep_their_answers() {
    let (issuer, one, _two) = tasks().await;
    let answer = refused(
        &one,
        &json!({ "id": uuid::Uuid::new_v4().to_string() }),
        None,
        "not_found",
    )
    .await;
    assert_eq!(answer.as_object().unwrap().len(), 5);

    // The seeds' request, as it was: 201, a 409 for the same triple, a 200 verifying it.
    let credential = issue(&issuer, seed()).await;
    assert_eq!(credential["validUntil"], Value::Null);
    // metadata.expiryDate stays free-form metadata: nothing expires by it.
    let mut past = seed();
    past["email"] = json!("past@example.com");
    past["metadata"]["expiryDate"] = json!("2001-01-01");
    let old = issue(&issuer, past).await;
    assert_eq!(issuer.post_json(ISSUE, &seed()).await.status, 409);
    for c in [&credential, &old] {
        let res = one.post_json(VERIFY, &json!({ "id": c["id"] })).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.json()["valid"], true);
        assert_eq!(&res.json()["credential"], c);
    }
}
