//! Bulk verification, `POST /verification/credentials/batch` (docs/API.md,
//! "Bulk"): each item answered exactly as the single route would answer it for
//! the same caller, disclosure rules included; a key is required.

use issuance::Issuance;
use kc_testing::{spawn_app, spawn_app_with, Role, TestApp};
use serde_json::{json, Value};
use verification::Verification;

const ISSUE: &str = "/issuance/credentials";
const VERIFY: &str = "/verification/credentials";
const BULK: &str = "/verification/credentials/batch";

/// The single route's answer to `body` for `key`, with its status first and
/// the per-request `verifiedAt` left out.
async fn single(app: &TestApp, body: &Value, key: Option<&str>) -> Value {
    let res = app.post_json_as(VERIFY, body, key).await;
    let mut answer = json!({ "status": res.status.as_u16() });
    answer
        .as_object_mut()
        .unwrap()
        .extend(res.json().as_object().unwrap().clone());
    without_time(answer)
}

fn without_time(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("verifiedAt");
    }
    v
}

async fn bulk(app: &TestApp, items: &[Value], key: Option<&str>) -> Vec<Value> {
    let res = app
        .post_json_as(BULK, &json!({ "credentials": items }), key)
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let results = res.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), items.len());
    results.into_iter().map(without_time).collect()
}

async fn issue(issuer: &TestApp, n: usize) -> String {
    let res = issuer
        .post_json(
            ISSUE,
            &json!({ "name": format!("Person {n}"), "email": format!("p{n}@example.com"),
                     "credentialType": "Member", "metadata": { "n": n } }),
        )
        .await;
    assert_eq!(res.status, 201);
    res.json()["credential"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn each_item_is_answered_as_the_single_route_would_answer_it() {
    let issuer = spawn_app::<Issuance>().await;
    let verifier = spawn_app_with::<Verification>(issuer.db.clone(), &[]).await;
    let a = issue(&issuer, 1).await;
    let revoked = issue(&issuer, 2).await;
    let res = issuer
        .post_json(&format!("{ISSUE}/{revoked}/revoke"), &json!({}))
        .await;
    assert_eq!(res.status, 200);
    let items = [
        json!({ "id": a }),
        json!({ "id": "00000000-0000-4000-8000-000000000000" }),
        json!({ "id": "not-a-uuid" }),
        json!({ "id": revoked }),
        json!({ "id": a, "name": "Someone Else" }),
        json!({ "id": a, "name": " Person 1 ", "email": "P1@example.com" }),
        json!([]),
    ];
    let key = verifier.key.clone();
    let results = bulk(&verifier, &items, key.as_deref()).await;
    assert_eq!(results[0]["status"], 200);
    assert_eq!(results[0]["credential"]["metadata"], json!({ "n": 1 }));
    assert_eq!(results[1]["reason"], "not_found");
    assert_eq!(results[2]["status"], 400);
    assert_eq!(results[3]["reason"], "revoked");
    assert_eq!(results[4]["reason"], "not_found");
    assert_eq!(results[5]["status"], 200);
    assert_eq!(results[6]["status"], 400);
    for (item, result) in items.iter().zip(&results) {
        assert_eq!(result, &single(&verifier, item, key.as_deref()).await, "{item}");
    }
}

#[tokio::test]
async fn another_issuer_sees_only_the_public_part_as_it_would_alone() {
    let issuer = spawn_app::<Issuance>().await;
    let verifier = spawn_app_with::<Verification>(issuer.db.clone(), &[]).await;
    let id = issue(&issuer, 1).await;
    let other = verifier.add_client("other-issuer", Role::Issuer, &[], None).await;
    verifier.wait_key(&other).await;
    let items = [json!({ "id": id })];
    let results = bulk(&verifier, &items, Some(&other)).await;
    assert_eq!(results[0]["status"], 200);
    assert!(results[0]["credential"].get("name").is_none(), "{}", results[0]);
    assert_eq!(results[0], single(&verifier, &items[0], Some(&other)).await);
}

#[tokio::test]
async fn a_bulk_verification_needs_a_key() {
    let issuer = spawn_app::<Issuance>().await;
    let verifier = spawn_app_with::<Verification>(issuer.db.clone(), &[]).await;
    let id = issue(&issuer, 1).await;
    let body = json!({ "credentials": [{ "id": id }] });
    let res = verifier.post_json_as(BULK, &body, None).await;
    assert_eq!(res.status, 401, "{:?}", res.body);
    assert_eq!(res.header("www-authenticate"), Some("Bearer"));
    // The single route still serves anonymous callers.
    assert_eq!(
        verifier
            .post_json_as(VERIFY, &json!({ "id": id }), None)
            .await
            .status,
        200
    );
    let res = verifier
        .post_json_as(BULK, &json!({ "credentials": [] }), verifier.key.as_deref())
        .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["errors"][0]["field"], "credentials");
    assert_eq!(res.json()["valid"], false);
}
