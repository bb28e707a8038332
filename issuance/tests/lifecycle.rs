//! A credential's lifecycle at issuance (docs/API.md, "Lifecycle"): revoking
//! (`POST /issuance/credentials/{id}/revoke`) only by the client that issued it,
//! once for all; and `validUntil`, checked, stored and returned. What
//! verification says of revoked and expired credentials is in
//! verification/tests/lifecycle.rs.

use issuance::Issuance;
use kc_testing::{spawn_app, spawn_app_with, Role, TestApp, TestDb};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

const PATH: &str = "/issuance/credentials";
const NOT_A_TIME: &str =
    "must be an RFC 3339 time in UTC such as 2030-12-31T23:59:59Z, with at most three fractional digits";

fn revoke_path(id: &str) -> String {
    format!("{PATH}/{id}/revoke")
}

/// Issues a credential with the app's own key; returns it as the 201 wrote it.
async fn issue(app: &TestApp, body: Value) -> Value {
    let res = app.post_json(PATH, &body).await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    res.json()["credential"].clone()
}

fn ada() -> Value {
    json!({ "name": "Ada Lovelace", "email": "ada@example.com", "credentialType": "Engineer" })
}

/// The row's (revoked_at, revocation_reason), as text.
async fn revocation(app: &TestApp, id: &str) -> (Option<String>, Option<String>) {
    let row = app
        .db
        .client()
        .await
        .query_one(
            "SELECT revoked_at::text, revocation_reason FROM credentials WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .expect("the credential's row");
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn the_issuer_revokes_once_and_a_second_revocation_keeps_the_first() {
    let app = spawn_app::<Issuance>().await;
    let credential = issue(&app, ada()).await;
    let id = credential["id"].as_str().unwrap().to_owned();

    let res = app
        .post_json(&revoke_path(&id), &json!({ "reason": " key compromised " }))
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let first = res.json();
    assert_eq!(first["success"], true);
    assert_eq!(first["message"], "Credential revoked");
    // The credential as its 201 wrote it, and when and why it was revoked.
    assert_eq!(first["credential"], credential);
    assert_eq!(first["revocationReason"], "key compromised");
    let revoked_at = first["revokedAt"].as_str().unwrap().to_owned();
    assert_eq!(revoked_at.len(), 24, "{revoked_at}");
    assert!(revoked_at.ends_with('Z'));
    assert!(revocation(&app, &id).await.0.is_some());

    // Again, with another reason or none (an empty body): the first revocation stands.
    tokio::time::sleep(Duration::from_millis(5)).await;
    for body in [json!({ "reason": "again" }), json!({})] {
        let again = app.post_json(&revoke_path(&id), &body).await;
        assert_eq!(again.status, 200);
        assert_eq!(again.json()["revokedAt"], revoked_at.as_str());
        assert_eq!(again.json()["revocationReason"], "key compromised");
    }
    let empty = app.post_raw(&revoke_path(&id.to_uppercase()), None, "").await;
    assert_eq!(empty.status, 200, "{:?}", empty.body);
    assert_eq!(empty.json()["revokedAt"], revoked_at.as_str());
    assert_eq!(revocation(&app, &id).await.1.as_deref(), Some("key compromised"));

    // A revoked credential still holds its (name, email, credentialType).
    assert_eq!(app.post_json(PATH, &ada()).await.status, 409);

    // The route is labelled by its template, whatever the id.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"http_route="/issuance/credentials/{id}/revoke""#),
        "{metrics}"
    );
    assert!(!metrics.contains(&id));
}

#[tokio::test]
async fn another_issuer_gets_404_and_no_key_401_and_the_row_is_unchanged() {
    let app = spawn_app::<Issuance>().await;
    let credential = issue(&app, ada()).await;
    let id = credential["id"].as_str().unwrap().to_owned();
    let path = revoke_path(&id);

    // Another issuer: as if the credential did not exist.
    let other = app.add_client("other-issuer", Role::Issuer, &[], None).await;
    app.wait_key(&other).await;
    let res = app.post_json_as(&path, &json!({}), Some(&other)).await;
    assert_eq!(res.status, 404, "{:?}", res.body);
    let unknown = app
        .post_json_as(
            &revoke_path(&uuid::Uuid::new_v4().to_string()),
            &json!({}),
            Some(&other),
        )
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(res.json(), unknown.json());
    assert_eq!(
        res.json(),
        json!({ "success": false, "message": "Credential not found" })
    );

    // Without a key: 401, as for issuing.
    let res = app.post_json_as(&path, &json!({}), None).await;
    assert_eq!(res.status, 401);
    assert_eq!(res.header("www-authenticate"), Some("Bearer"));
    // A verifier's key may not revoke at all.
    let verifier = app.add_client("a-verifier", Role::Verifier, &[], None).await;
    let mut res = app.post_json_as(&path, &json!({}), Some(&verifier)).await;
    for _ in 0..100 {
        if res.status != 401 {
            break;
        }
        // Not loaded yet: the clients refresh within 250 ms.
        tokio::time::sleep(Duration::from_millis(20)).await;
        res = app.post_json_as(&path, &json!({}), Some(&verifier)).await;
    }
    assert_eq!(res.status, 403);
    assert_eq!(res.json()["message"], "This API key may not revoke credentials");

    assert_eq!(revocation(&app, &id).await, (None, None));

    // Not an id, or not a known one: 404 as well; a bad body: 400 on its field.
    for bad in ["nope", "550e8400e29b41d4a716446655440000"] {
        let res = app.post_json(&revoke_path(bad), &json!({})).await;
        assert_eq!(res.status, 404, "{bad}");
    }
    let res = app.post_json(&path, &json!({ "reason": 7 })).await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["errors"][0]["field"], "reason");
    let res = app.post_raw(&path, Some("application/json"), "[1]").await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["errors"][0]["field"], "body");
    // Only POST: another method is a 405 naming it.
    let res = app.get(&path).await;
    assert_eq!(res.status, 405);
    assert_eq!(res.header("allow"), Some("POST, OPTIONS"));
    assert_eq!(revocation(&app, &id).await, (None, None));
}

#[tokio::test]
async fn with_auth_off_anyone_revokes() {
    let app = spawn_app_with::<Issuance>(TestDb::new().await, &[("AUTH_MODE", "off")]).await;
    let credential = issue(&app, ada()).await;
    let id = credential["id"].as_str().unwrap();
    let res = app.post_raw(&revoke_path(id), Some("application/json"), "").await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    assert_eq!(res.json()["credential"]["issuer"], Value::Null);
    assert_eq!(res.json()["revocationReason"], Value::Null);
}

#[tokio::test]
async fn valid_until_is_stored_and_returned_and_checked() {
    let app =
        spawn_app_with::<Issuance>(TestDb::new().await, &[("CREDENTIAL_MAX_VALIDITY_DAYS", "30")]).await;
    let in_a_week = kc_core::time::rfc3339_millis(SystemTime::now() + Duration::from_secs(7 * 86_400));
    let mut body = ada();
    body["validUntil"] = json!(in_a_week);
    let credential = issue(&app, body).await;
    assert_eq!(credential["validUntil"], in_a_week.as_str());
    assert_eq!(credential.as_object().unwrap().len(), 9);
    let stored: String = app
        .db
        .client()
        .await
        .query_one(
            "SELECT to_char(valid_until AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM credentials",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, in_a_week);

    // Without one: null.
    let none = issue(
        &app,
        json!({ "name": "Grace Hopper", "email": "grace@example.com", "credentialType": "Engineer" }),
    )
    .await;
    assert_eq!(none["validUntil"], Value::Null);

    // Refused, with nothing stored: not RFC 3339 UTC, past, or beyond the horizon.
    let too_far = kc_core::time::rfc3339_millis(SystemTime::now() + Duration::from_secs(31 * 86_400));
    for (value, message) in [
        (json!("2030-01-01T00:00:00+01:00"), NOT_A_TIME),
        (json!("2030-01-01"), NOT_A_TIME),
        (json!(null), "must be a string"),
        (json!("2020-01-01T00:00:00Z"), "must be in the future"),
        (json!(too_far), "must be at most 30 days from now"),
    ] {
        let mut body = json!({ "name": "Eve", "email": "eve@example.com", "credentialType": "Engineer" });
        body["validUntil"] = value.clone();
        let res = app.post_json(PATH, &body).await;
        assert_eq!(res.status, 400, "{value}");
        assert_eq!(
            res.json()["errors"],
            json!([{ "field": "validUntil", "message": message }]),
            "{value}"
        );
    }
    assert_eq!(app.db.count_credentials().await, 2);
}
