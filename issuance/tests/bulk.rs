//! Bulk issuance, `POST /issuance/credentials/batch` (docs/API.md, "Bulk"):
//! each item answered exactly as the single route would answer it alone, in
//! request order; one bad item does not fail the others; a refused request
//! stores nothing.

use issuance::Issuance;
use kc_testing::{spawn_app, spawn_app_with, Role, TestApp, TestDb};
use serde_json::{json, Value};

const PATH: &str = "/issuance/credentials";
const BULK: &str = "/issuance/credentials/batch";

fn person(n: usize) -> Value {
    json!({ "name": format!("Person {n}"), "email": format!("p{n}@example.com"), "credentialType": "Member" })
}

/// The single route's answer for `body` with the app's key, as JSON with its status first.
async fn single(app: &TestApp, body: &Value) -> Value {
    let res = app.post_json(PATH, body).await;
    let mut answer = json!({ "status": res.status.as_u16() });
    answer
        .as_object_mut()
        .unwrap()
        .extend(res.json().as_object().unwrap().clone());
    answer
}

async fn bulk(app: &TestApp, items: Vec<Value>) -> Vec<Value> {
    let res = app.post_json(BULK, &json!({ "credentials": items })).await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let body = res.json();
    assert_eq!(body["success"], true);
    body["results"].as_array().unwrap().clone()
}

#[tokio::test]
async fn each_item_is_answered_as_the_single_route_would_answer_it() {
    let app = spawn_app::<Issuance>().await;
    let invalid = json!({ "name": "", "email": "not-an-email", "credentialType": "Member", "metadata": 3 });
    let results = bulk(
        &app,
        vec![person(1), invalid.clone(), person(1), person(2), json!([1])],
    )
    .await;
    assert_eq!(results.len(), 5);

    assert_eq!(results[0]["status"], 201);
    assert_eq!(results[0]["success"], true);
    assert_eq!(
        results[0]["message"],
        format!("credential issued by {}", app.worker_id)
    );
    assert_eq!(results[0]["credential"]["name"], "Person 1");
    assert_eq!(results[0]["credential"]["issuer"], app.worker_id);
    // Two identical items in one request: one 201, one 409 naming the first (its issuer asks).
    assert_eq!(results[2]["status"], 409);
    assert_eq!(
        results[2]["existingCredential"]["id"],
        results[0]["credential"]["id"]
    );
    assert_eq!(results[3]["status"], 201);
    // The refused items get the single route's very answers.
    assert_eq!(results[1], single(&app, &invalid).await);
    assert_eq!(results[4], single(&app, &json!([1])).await);
    assert_eq!(results[4]["status"], 400);
    // What a later single request for an item bulk issued gets.
    assert_eq!(results[2], single(&app, &person(1)).await);
    assert_eq!(app.db.count_credentials().await, 2);
}

#[tokio::test]
async fn a_full_bulk_request_issues_every_item_once() {
    let app = spawn_app::<Issuance>().await;
    let results = bulk(&app, (0..1000).map(person).collect()).await;
    assert!(
        results.iter().all(|r| r["status"] == 201),
        "{:?}",
        results.iter().find(|r| r["status"] != 201)
    );
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["credential"]["name"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..1000).map(|n| format!("Person {n}")).collect();
    assert_eq!(names, expected, "results in request order");
    assert_eq!(app.db.count_credentials().await, 1000);
    // Again: every item is a 409 now, nothing more stored.
    let again = bulk(&app, (0..1000).map(person).collect()).await;
    assert!(again.iter().all(|r| r["status"] == 409));
    assert_eq!(app.db.count_credentials().await, 1000);
}

#[tokio::test]
async fn a_wrapper_that_is_not_one_array_of_1_to_bulk_max_items_is_a_400() {
    let app = spawn_app_with::<Issuance>(TestDb::new().await, &[("BULK_MAX", "3")]).await;
    for (body, field, message) in [
        (json!({ "credentials": [] }), "credentials", "must not be empty"),
        (json!({ "credentials": {} }), "credentials", "must be an array"),
        (json!({ "items": [person(1)] }), "credentials", "is required"),
        (
            json!({ "credentials": (0..4).map(person).collect::<Vec<_>>() }),
            "credentials",
            "must hold at most 3 items",
        ),
        (json!([person(1)]), "body", "request body must be a JSON object"),
    ] {
        let res = app.post_json(BULK, &body).await;
        assert_eq!(res.status, 400, "{body}");
        assert_eq!(
            res.json(),
            json!({ "success": false, "message": "Validation failed",
                    "errors": [{ "field": field, "message": message }] }),
            "{body}"
        );
    }
    let res = app
        .post_raw(
            BULK,
            Some("application/json"),
            r#"{"credentials": [{"name": "a"},]}"#,
        )
        .await;
    assert_eq!(res.status, 400);
    assert_eq!(app.db.count_credentials().await, 0);
}

#[tokio::test]
async fn a_body_over_bulk_max_body_bytes_is_a_413_and_stores_nothing() {
    let app = spawn_app_with::<Issuance>(TestDb::new().await, &[("BULK_MAX_BODY_BYTES", "4096")]).await;
    let big = json!({ "credentials": (0..100).map(person).collect::<Vec<_>>() });
    let res = app.post_json(BULK, &big).await;
    assert_eq!(res.status, 413, "{:?}", res.body);
    assert_eq!(
        res.json()["message"],
        "Request body exceeds the limit of 4096 bytes"
    );
    // The single route's limit is its own.
    let fits = json!({ "credentials": (0..10).map(person).collect::<Vec<_>>() });
    assert_eq!(app.post_json(BULK, &fits).await.status, 200);
    assert_eq!(app.db.count_credentials().await, 10);
}

#[tokio::test]
async fn refusals_store_nothing() {
    let app = spawn_app::<Issuance>().await;
    let verifier = app.add_client("border", Role::Verifier, &[], None).await;
    let diplomas = app
        .add_client("university", Role::Issuer, &["Diploma"], None)
        .await;
    app.wait_key(&diplomas).await;
    let body = json!({ "credentials": [person(1), person(2)] });

    let res = app.post_json_as(BULK, &body, None).await;
    assert_eq!(res.status, 401);
    assert_eq!(res.header("www-authenticate"), Some("Bearer"));
    let res = app.post_json_as(BULK, &body, Some(&verifier)).await;
    assert_eq!(res.status, 403);
    assert_eq!(res.json()["message"], "This API key may not issue credentials");
    let res = app.post_json_as(BULK, &body, Some("kc_not-a-key")).await;
    assert_eq!(res.status, 401);
    assert_eq!(app.db.count_credentials().await, 0);

    // An issuer limited to some types: the others are 403 items, the rest issued.
    let diploma = json!({ "name": "Ada", "email": "ada@example.com", "credentialType": "Diploma" });
    let res = app
        .post_json_as(
            BULK,
            &json!({ "credentials": [person(1), diploma] }),
            Some(&diplomas),
        )
        .await;
    assert_eq!(res.status, 200);
    let results = res.json()["results"].clone();
    assert_eq!(
        results[0],
        json!({ "status": 403, "success": false,
                "message": "This API key may not issue credentials of this credentialType" })
    );
    assert_eq!(results[1]["status"], 201);
    assert_eq!(results[1]["credential"]["issuer"], "university");
    assert_eq!(app.db.count_credentials().await, 1);
}

#[tokio::test]
async fn another_issuers_conflict_does_not_name_the_holder() {
    let app = spawn_app::<Issuance>().await;
    assert_eq!(app.post_json(PATH, &person(1)).await.status, 201);
    let other = app.add_client("other", Role::Issuer, &[], None).await;
    app.wait_key(&other).await;
    let res = app
        .post_json_as(BULK, &json!({ "credentials": [person(1)] }), Some(&other))
        .await;
    assert_eq!(
        res.json()["results"],
        json!([{ "status": 409, "success": false, "message": "Credential already issued" }])
    );
}

#[tokio::test]
async fn past_the_bulk_memory_budget_a_bulk_request_gets_a_fast_503() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A 16 MiB limit: a chunked bulk, whose length is unknown, reserves all of the budget.
    let app = spawn_app_with::<Issuance>(TestDb::new().await, &[("BULK_MAX_BODY_BYTES", "16777216")]).await;
    let key = app.key.clone().unwrap();
    let mut held = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    held.write_all(
        format!(
            "POST {BULK} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{\"\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let body = json!({ "credentials": [person(1)] });
    let mut refused = None;
    for _ in 0..100 {
        let res = app.post_json(BULK, &body).await;
        if res.status == 503 {
            refused = Some(res);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let refused = refused.expect("a second bulk is refused while the first holds the budget");
    assert_eq!(refused.header("retry-after"), Some("1"));
    // The held one goes on and is answered; the budget is free again.
    held.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = vec![0; 12];
    held.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 400");
    drop(held);
    assert_eq!(app.post_json(BULK, &body).await.status, 200);
    assert_eq!(app.db.count_credentials().await, 1);
}

/// POSTs a bulk `body` with the app's key and `Idempotency-Key: key`.
async fn bulk_keyed(app: &TestApp, body: &str, key: &str) -> kc_testing::TestResponse {
    app.post_with(
        BULK,
        Some("application/json"),
        body.to_owned(),
        app.key.as_deref(),
        &[("idempotency-key", key)],
    )
    .await
}

#[tokio::test]
async fn a_bulk_retry_with_its_idempotency_key_replays_the_first_answer_byte_for_byte() {
    let app = spawn_app::<Issuance>().await;
    let invalid = json!({ "name": "", "email": "x@example.com", "credentialType": "Member" });
    let body = json!({ "credentials": [person(1), invalid, person(1), person(2)] }).to_string();
    let first = bulk_keyed(&app, &body, "bulk-1").await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    let statuses: Vec<Value> = first.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(201), json!(400), json!(409), json!(201)]);

    let again = bulk_keyed(&app, &body, "bulk-1").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body, "the same bytes");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.db.count_credentials().await, 2);

    // Without the key, the same body is a new request: 409s for what exists.
    let fresh = app.post_raw(BULK, Some("application/json"), body.clone()).await;
    assert_eq!(fresh.json()["results"][0]["status"], 409);
}

#[tokio::test]
async fn a_bulk_idempotency_key_with_another_body_is_a_422_and_stores_nothing() {
    let app = spawn_app::<Issuance>().await;
    let body = json!({ "credentials": [person(1)] }).to_string();
    assert_eq!(bulk_keyed(&app, &body, "bulk-2").await.status, 200);
    let other = json!({ "credentials": [person(2), person(3)] }).to_string();
    let res = bulk_keyed(&app, &other, "bulk-2").await;
    assert_eq!(res.status, 422, "{:?}", res.body);
    assert_eq!(app.db.count_credentials().await, 1);
    // A single request's key and a bulk request's are apart: the same key is free there.
    let res = app
        .post_with(
            PATH,
            Some("application/json"),
            person(4).to_string(),
            app.key.as_deref(),
            &[("idempotency-key", "bulk-2")],
        )
        .await;
    assert_eq!(res.status, 201);
    // A malformed key is a 400, before anything runs.
    assert_eq!(bulk_keyed(&app, &other, &"k".repeat(256)).await.status, 400);
    assert_eq!(app.db.count_credentials().await, 2);
}

#[tokio::test]
async fn a_bulk_retry_runs_the_items_the_first_attempt_did_not_store() {
    let app = spawn_app::<Issuance>().await;
    let body = json!({ "credentials": [person(1), person(2)] }).to_string();
    let first = bulk_keyed(&app, &body, "bulk-3").await;
    // Its second item as if its statement had not committed (answered 503): no credential, no key.
    let db = app.db.client().await;
    let second = first.json()["results"][1]["credential"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    db.execute("DELETE FROM credentials WHERE id = $1::text::uuid", &[&second])
        .await
        .unwrap();
    db.execute(
        "DELETE FROM idempotency_keys WHERE credential_id = $1::text::uuid",
        &[&second],
    )
    .await
    .unwrap();
    let again = bulk_keyed(&app, &body, "bulk-3").await;
    let results = again.json()["results"].clone();
    assert_eq!(results[0], first.json()["results"][0], "replayed");
    assert_eq!(results[1]["status"], 201, "run again: {}", results[1]);
    assert_ne!(results[1]["credential"]["id"], second.as_str());
    assert_eq!(app.db.count_credentials().await, 2);
}
