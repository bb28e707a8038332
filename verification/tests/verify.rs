//! POST /verification/credentials against the real PostgreSQL, with credentials
//! issued by the real issuance service on the same schema.

use issuance::Issuance;
use kc_testing::fakes::TcpProxy;
use kc_testing::{spawn_app, spawn_app_with, TestApp, TestDb};
use serde_json::{json, Value};
use std::sync::Arc;
use verification::Verification;

const ISSUE: &str = "/issuance/credentials";
const VERIFY: &str = "/verification/credentials";

/// An issuance task and a verification task sharing one fresh schema.
async fn pair() -> (TestApp, TestApp) {
    let issuer = spawn_app::<Issuance>().await;
    let verifier = spawn_app_with::<Verification>(issuer.db.clone(), &[]).await;
    (issuer, verifier)
}

async fn issue(app: &TestApp, name: &str) -> Value {
    let res = app
        .post_json(
            ISSUE,
            &json!({ "name": name, "email": "Ada@Example.com", "credentialType": "Engineer",
                     "metadata": { "level": 3, "tags": ["a", "b"] } }),
        )
        .await;
    assert_eq!(res.status, 201);
    res.json()
}

#[tokio::test]
async fn a_credential_issued_earlier_verifies_with_the_same_details() {
    let (issuer, verifier) = pair().await;
    let issued = issue(&issuer, "Ada Lovelace").await;
    let id = issued["credential"]["id"].as_str().unwrap();
    let res = verifier.post_json(VERIFY, &json!({ "id": id })).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-worker-id"), Some(verifier.worker_id.as_str()));
    let body = res.json();
    assert_eq!(body["valid"], true);
    assert_eq!(body["message"], "Credential verified successfully");
    // The very same seven fields, issuedAt to the millisecond.
    assert_eq!(body["credential"], issued["credential"]);
    assert_eq!(body["verifiedBy"], verifier.worker_id.as_str());
    let verified_at = body["verifiedAt"].as_str().unwrap();
    assert_eq!(
        (
            verified_at.len(),
            verified_at.as_bytes()[19],
            verified_at.ends_with('Z')
        ),
        (24, b'.', true)
    );
    assert!(verified_at >= issued["credential"]["issuedAt"].as_str().unwrap());
    assert_eq!(body.as_object().unwrap().len(), 5);
}

#[tokio::test]
async fn name_and_email_are_normalised_and_must_match() {
    let (issuer, verifier) = pair().await;
    let id = issue(&issuer, "Ada Lovelace").await["credential"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let upper = id.to_uppercase();
    for body in [
        json!({ "id": id, "name": "Ada Lovelace" }),
        json!({ "id": id, "email": "ada@example.com" }),
        json!({ "id": upper, "name": "  Ada Lovelace ", "email": " ADA@EXAMPLE.COM" }),
    ] {
        assert_eq!(verifier.post_json(VERIFY, &body).await.status, 200, "{body}");
    }
    let unknown = verifier
        .post_json(VERIFY, &json!({ "id": uuid::Uuid::new_v4().to_string() }))
        .await;
    assert_eq!(unknown.status, 404);
    let unknown = unknown.json();
    assert_eq!(unknown["valid"], false);
    assert_eq!(unknown["message"], "Credential not found or invalid");
    assert_eq!(unknown["reason"], "not_found");
    assert_eq!(unknown["verifiedBy"], verifier.worker_id.as_str());
    assert!(unknown.get("credential").is_none());
    for body in [
        json!({ "id": id, "name": "Ada Byron" }),
        json!({ "id": id, "email": "other@example.com" }),
        json!({ "id": id, "name": "Ada Lovelace", "email": "other@example.com" }),
    ] {
        let res = verifier.post_json(VERIFY, &body).await;
        assert_eq!(res.status, 404, "{body}");
        // A mismatch looks exactly like an unknown id.
        let mut got = res.json();
        got["verifiedAt"] = unknown["verifiedAt"].clone();
        assert_eq!(got, unknown);
    }
}

#[tokio::test]
async fn malformed_requests_get_400_with_valid_false() {
    let (_issuer, verifier) = pair().await;
    for (body, field) in [
        (json!({}), "id"),
        (json!({ "id": "not-a-uuid" }), "id"),
        (json!({ "id": "550e8400e29b41d4a716446655440000" }), "id"),
        (json!({ "id": 42 }), "id"),
        (
            json!({ "id": "550e8400-e29b-41d4-a716-446655440000", "email": "nope" }),
            "email",
        ),
        (
            json!({ "id": "550e8400-e29b-41d4-a716-446655440000", "name": null }),
            "name",
        ),
        (
            json!({ "id": "550e8400-e29b-41d4-a716-446655440000", "name": "a\u{0}b" }),
            "name",
        ),
    ] {
        let res = verifier.post_json(VERIFY, &body).await;
        assert_eq!(res.status, 400, "{body}");
        let got = res.json();
        assert_eq!(got["valid"], false);
        assert_eq!(got["message"], "Validation failed");
        assert_eq!(got["errors"][0]["field"], field, "{body}");
    }
    for raw in ["", "[]", "{", "\"id\""] {
        let res = verifier.post_raw(VERIFY, Some("application/json"), raw).await;
        assert_eq!(
            (res.status.as_u16(), res.json()["errors"][0]["field"].as_str()),
            (400, Some("body")),
            "{raw:?}"
        );
    }
    assert_eq!(
        verifier.post_raw(VERIFY, Some("text/plain"), "{}").await.status,
        415
    );
    assert_eq!(
        verifier
            .post_raw(VERIFY, Some("application/json"), "x".repeat(70_000))
            .await
            .status,
        413
    );
    let res = verifier.get(VERIFY).await;
    assert_eq!(
        (res.status.as_u16(), res.header("allow")),
        (405, Some("POST, OPTIONS"))
    );
    assert_eq!(verifier.get("/issuance/credentials").await.status, 404);
    let health = verifier.get("/verification/health").await.json();
    assert_eq!(
        (health["service"].as_str(), health["database"].as_str()),
        (Some("verification"), Some("up"))
    );
}

#[tokio::test]
async fn two_hundred_concurrent_issuances_then_two_hundred_verifications() {
    let (issuer, verifier) = pair().await;
    let (issuer, verifier) = (Arc::new(issuer), Arc::new(verifier));
    let issued: Vec<_> = (0..200)
        .map(|i| {
            let issuer = issuer.clone();
            tokio::spawn(async move {
                issuer
                    .post_json(ISSUE, &json!({ "name": format!("Person {i}"), "email": format!("p{i}@example.com"), "credentialType": "Bulk" }))
                    .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in issued {
        let res = t.await.unwrap();
        assert_eq!(res.status, 201);
        ids.push(res.json()["credential"]["id"].as_str().unwrap().to_owned());
    }
    let verified: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let verifier = verifier.clone();
            tokio::spawn(async move {
                verifier
                    .post_json(VERIFY, &json!({ "id": id }))
                    .await
                    .status
                    .as_u16()
            })
        })
        .collect();
    for t in verified {
        assert_eq!(t.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn coalesced_lookups_answer_each_request_even_for_the_same_id() {
    let issuer = spawn_app::<Issuance>().await;
    let verifier =
        Arc::new(spawn_app_with::<Verification>(issuer.db.clone(), &[("DB_BATCH_LANES", "1")]).await);
    let known = issue(&issuer, "Batch Person").await["credential"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let verifier = verifier.clone();
            let id = if i % 3 == 0 {
                uuid::Uuid::new_v4().to_string()
            } else {
                known.clone()
            };
            tokio::spawn(async move { (i, verifier.post_json(VERIFY, &json!({ "id": id })).await) })
        })
        .collect();
    for t in tasks {
        let (i, res) = t.await.unwrap();
        if i % 3 == 0 {
            assert_eq!(res.status, 404, "request {i}");
        } else {
            assert_eq!(res.status, 200, "request {i}");
            assert_eq!(res.json()["credential"]["id"], known.as_str());
        }
    }
}

#[tokio::test]
async fn database_outage_gives_503_and_verification_recovers() {
    let proxy = TcpProxy::start().await;
    let db = TestDb::new().await;
    let issuer = spawn_app_with::<Issuance>(db.clone(), &[]).await;
    let id = issue(&issuer, "Grace Hopper").await["credential"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = db.url_via(proxy.addr);
    let verifier =
        spawn_app_with::<Verification>(db, &[("DATABASE_URL", &url), ("DB_CONNECT_TIMEOUT_MS", "500")]).await;
    assert_eq!(verifier.post_json(VERIFY, &json!({ "id": id })).await.status, 200);
    proxy.cut();
    let res = verifier.post_json(VERIFY, &json!({ "id": id })).await;
    assert_eq!((res.status.as_u16(), res.header("retry-after")), (503, Some("1")));
    assert_eq!(res.json()["message"], "Service temporarily unavailable");
    assert_eq!(verifier.get("/verification/health").await.status, 503);
    proxy.restore();
    let mut status = 0;
    for _ in 0..40 {
        status = verifier
            .post_json(VERIFY, &json!({ "id": id }))
            .await
            .status
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "no recovery after the database came back");
}

#[tokio::test]
async fn verification_serves_the_same_openapi_document() {
    let verifier = spawn_app::<Verification>().await;
    let res = verifier.get("/verification/openapi.json").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("application/json"));
    let spec: Value = res.json();
    assert!(spec["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")));
    assert!(spec["paths"].get("/verification/credentials").is_some());
    assert_eq!(verifier.get("/issuance/openapi.json").await.status, 404);
}
