//! `Idempotency-Key` on POST /issuance/credentials (docs/API.md,
//! "Idempotency-Key"), against the real PostgreSQL: a retry gets the first 201
//! again byte for byte, on any task; another body with the key is 422 and
//! stores nothing; a key in flight is 409 and never makes two credentials;
//! keys are per client; a request refused for its own fault leaves its key
//! unused; keys expire after 24 h.

use issuance::Issuance;
use kc_testing::{spawn_app, spawn_app_with, Role, TestApp, TestDb, TestResponse};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PATH: &str = "/issuance/credentials";

fn body(name: &str) -> String {
    json!({
        "name": name,
        "email": "ada@example.com",
        "credentialType": "Engineer",
        "metadata": { "b": [1, 2.50, "x"], "a": { "z": null, "y": true } }
    })
    .to_string()
}

/// POSTs `body` with `key` (None: the app's own) and `Idempotency-Key: idem`.
async fn post(app: &TestApp, key: Option<&str>, idem: &str, body: &str) -> TestResponse {
    let key = key.or(app.key.as_deref());
    app.post_with(
        PATH,
        Some("application/json"),
        body.to_owned(),
        key,
        &[("idempotency-key", idem)],
    )
    .await
}

fn replayed(res: &TestResponse) -> bool {
    res.header("idempotent-replayed") == Some("true")
}

async fn count_named(app: &TestApp, name: &str) -> i64 {
    app.db
        .client()
        .await
        .query_one("SELECT count(*) FROM credentials WHERE name = $1", &[&name])
        .await
        .expect("count")
        .get(0)
}

async fn keys_stored(app: &TestApp) -> i64 {
    app.db
        .client()
        .await
        .query_one("SELECT count(*) FROM idempotency_keys", &[])
        .await
        .expect("count keys")
        .get(0)
}

#[tokio::test]
async fn a_retry_gets_the_first_201_byte_for_byte_on_any_task() {
    let app = spawn_app::<Issuance>().await;
    let first = post(&app, None, "order-1", &body("Ada")).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert!(!replayed(&first));

    let again = post(&app, None, "order-1", &body("Ada")).await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    assert!(replayed(&again));
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("content-type"), Some("application/json"));

    // Another task on the same database, the same client: the same bytes,
    // naming the task that issued it.
    let other = spawn_app_with::<Issuance>(app.db.clone(), &[]).await;
    let key = app.key.clone().expect("the app's key");
    other.wait_key(&key).await;
    let there = post(&other, Some(&key), "order-1", &body("Ada")).await;
    assert_eq!(there.status, 201);
    assert!(replayed(&there));
    assert_eq!(there.body, first.body);
    assert_eq!(
        there.json()["message"],
        format!("credential issued by {}", app.worker_id)
    );
    assert_eq!(app.db.count_credentials().await, 1);
    assert_eq!(keys_stored(&app).await, 1);
}

#[tokio::test]
async fn the_key_with_another_body_is_422_and_stores_nothing() {
    let app = spawn_app::<Issuance>().await;
    assert_eq!(post(&app, None, "k", &body("Ada")).await.status, 201);
    for other in [body("Grace"), body("Ada").replace(r#""x""#, r#""x" "#)] {
        let res = post(&app, None, "k", &other).await;
        assert_eq!(res.status, 422, "{:?}", res.body);
        assert_eq!(
            res.json(),
            json!({ "success": false, "message": "Idempotency-Key was already used with a different request body" })
        );
        assert!(!replayed(&res));
    }
    assert_eq!(count_named(&app, "Grace").await, 0);
    assert_eq!(app.db.count_credentials().await, 1);
    // The first body still replays.
    assert!(replayed(&post(&app, None, "k", &body("Ada")).await));
}

/// Sends 20 keys (named after `run`) twice at once each to `a` and `b` (the same task or two);
/// every key ends with one credential, answered 201 once and then 201
/// (replayed, the same bytes) or 409 (in flight).
async fn twice_at_once(a: &TestApp, b: &TestApp, key: &str, run: &str) -> (usize, usize) {
    let (mut replays, mut in_flight) = (0, 0);
    for n in 0..20 {
        let (idem, name) = (format!("{run}-{n}"), format!("{run} {n}"));
        let sent = body(&name);
        let (x, y) = tokio::join!(post(a, Some(key), &idem, &sent), post(b, Some(key), &idem, &sent));
        let mut answers = [&x, &y];
        answers.sort_by_key(|r| (r.status, replayed(r)));
        let [first, second] = answers;
        assert_eq!(first.status, 201, "{:?}", first.body);
        assert!(!replayed(first), "one of the two issued");
        match second.status.as_u16() {
            201 => {
                assert!(replayed(second));
                assert_eq!(second.body, first.body);
                replays += 1;
            }
            409 => {
                assert_eq!(
                    second.json()["message"],
                    "A request with this Idempotency-Key is still being processed; retry later"
                );
                assert_eq!(second.header("retry-after"), Some("1"));
                in_flight += 1;
            }
            other => panic!("{other}: {:?}", second.body),
        }
        assert_eq!(count_named(a, &name).await, 1);
    }
    (replays, in_flight)
}

#[tokio::test]
async fn a_key_in_flight_is_409_or_a_replay_and_never_two_credentials() {
    let app = spawn_app::<Issuance>().await;
    let key = app.key.clone().expect("the app's key");
    let (_, in_flight) = twice_at_once(&app, &app, &key, "one").await;
    // On one task, two requests at once mostly overlap.
    assert!(in_flight > 0, "no 409 in 20 pairs");

    // On two tasks the database decides: the second waits for the first's
    // statement, then replays it (or, if it came first, the other does).
    let other = spawn_app_with::<Issuance>(app.db.clone(), &[]).await;
    other.wait_key(&key).await;
    let (replays, in_flight) = twice_at_once(&app, &other, &key, "two").await;
    assert_eq!((replays, in_flight), (20, 0));
    assert_eq!(app.db.count_credentials().await, 40);
}

#[tokio::test]
async fn keys_are_per_client() {
    let app = spawn_app::<Issuance>().await;
    let other = app.add_client("other-issuer", Role::Issuer, &[], None).await;
    app.wait_key(&other).await;
    assert_eq!(post(&app, None, "shared", &body("Ada")).await.status, 201);
    // The same key from another client is another key: its own body issues...
    let res = post(&app, Some(&other), "shared", &body("Grace")).await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    assert!(!replayed(&res));
    // ...and the first client's body is no replay for it: the triple is taken.
    let res = post(&app, Some(&other), "shared-2", &body("Ada")).await;
    assert_eq!(res.status, 409);
    assert_eq!(
        res.json(),
        json!({ "success": false, "message": "Credential already issued" })
    );
    assert_eq!(app.db.count_credentials().await, 2);
}

#[tokio::test]
async fn with_auth_mode_off_everyone_shares_one_scope() {
    let app = spawn_app_with::<Issuance>(TestDb::new().await, &[("AUTH_MODE", "off")]).await;
    let first = post(&app, None, "open", &body("Ada")).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.json()["credential"]["issuer"], Value::Null);
    let again = post(&app, None, "open", &body("Ada")).await;
    assert!(replayed(&again));
    assert_eq!(again.body, first.body);
    assert_eq!(post(&app, None, "open", &body("Grace")).await.status, 422);
}

#[tokio::test]
async fn a_409_for_a_taken_triple_is_answered_again_on_a_retry() {
    let app = spawn_app::<Issuance>().await;
    assert_eq!(post(&app, None, "first", &body("Ada")).await.status, 201);
    let conflict = post(&app, None, "second", &body("Ada")).await;
    assert_eq!(conflict.status, 409);
    let again = post(&app, None, "second", &body("Ada")).await;
    assert_eq!(again.status, 409);
    assert!(!replayed(&again));
    assert_eq!(again.body, conflict.body);
    // The key is stored with the 409 all the same: another body is 422.
    assert_eq!(post(&app, None, "second", &body("Grace")).await.status, 422);
    // If the holder is gone (deleted by hand), the retry issues under the key.
    app.db
        .client()
        .await
        .batch_execute("DELETE FROM credentials")
        .await
        .expect("delete");
    let issued = post(&app, None, "second", &body("Ada")).await;
    assert_eq!(issued.status, 201, "{:?}", issued.body);
    assert!(!replayed(&issued));
    let replay = post(&app, None, "second", &body("Ada")).await;
    assert!(replayed(&replay));
    assert_eq!(replay.body, issued.body);
}

#[tokio::test]
async fn a_request_refused_for_its_own_fault_leaves_its_key_unused() {
    let app = spawn_app::<Issuance>().await;
    let narrow = app.add_client("narrow", Role::Issuer, &["Degree"], None).await;
    app.wait_key(&narrow).await;
    let headers = [("idempotency-key", "k1")];
    let refusals = [
        // 400: the body breaks the contract.
        post(&app, None, "k1", r#"{"name":"Ada"}"#).await,
        // 415
        app.post_with(
            PATH,
            Some("text/plain"),
            body("Ada"),
            app.key.as_deref(),
            &headers,
        )
        .await,
        // 413
        app.post_with(
            PATH,
            Some("application/json"),
            "x".repeat(70_000),
            app.key.as_deref(),
            &headers,
        )
        .await,
    ];
    for (res, status) in refusals.iter().zip([400, 415, 413]) {
        assert_eq!(res.status, status, "{:?}", res.body);
    }
    // 403: a type this client may not issue; then one it may, with the key.
    assert_eq!(post(&app, Some(&narrow), "k1", &body("Ada")).await.status, 403);
    let degree = body("Ada").replace("Engineer", "Degree");
    assert_eq!(post(&app, Some(&narrow), "k1", &degree).await.status, 201);
    assert_eq!(keys_stored(&app).await, 1);
    // The app's own client never used k1.
    let res = post(&app, None, "k1", &body("Ada")).await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    assert!(!replayed(&res));
}

#[tokio::test]
async fn a_malformed_key_is_400_and_no_key_at_all_issues_as_before() {
    let app = spawn_app::<Issuance>().await;
    let longest = "k".repeat(255);
    assert_eq!(post(&app, None, &longest, &body("Ada")).await.status, 201);
    for bad in ["k".repeat(256), String::new(), "tab\there".into()] {
        let res = post(&app, None, &bad, &body("Grace")).await;
        assert_eq!(res.status, 400, "{bad:?}");
        assert_eq!(
            res.json(),
            json!({ "success": false, "message": "Validation failed", "errors": [{
                "field": "Idempotency-Key",
                "message": "must be sent once, as 1 to 255 printable ASCII characters" }] })
        );
    }
    let twice = app
        .post_with(
            PATH,
            Some("application/json"),
            body("Grace"),
            app.key.as_deref(),
            &[("idempotency-key", "a"), ("idempotency-key", "a")],
        )
        .await;
    assert_eq!(twice.status, 400);
    assert_eq!(count_named(&app, "Grace").await, 0);
    let plain = app.post_raw(PATH, Some("application/json"), body("Grace")).await;
    assert_eq!(plain.status, 201);
    assert!(plain.header("idempotent-replayed").is_none());
    assert_eq!(keys_stored(&app).await, 1);
}

#[tokio::test]
async fn a_retry_finds_what_a_statement_answered_503_committed() {
    // What a statement that committed after its client got a 503 leaves: the
    // credential and its key, written together (a task answered by no one).
    let app = spawn_app::<Issuance>().await;
    let sent = body("Ada");
    let client = app.db.client().await;
    client
        .execute(
            "WITH c AS (
               INSERT INTO credentials (id, name, email, credential_type, metadata, issuer, issued_by)
               VALUES (gen_random_uuid(), 'Ada', 'ada@example.com', 'Engineer', $2::text::jsonb, $1, 'lost-task')
               RETURNING id)
             INSERT INTO idempotency_keys (client, idempotency_key, fingerprint, credential_id)
             SELECT $1, 'after-503', sha256(convert_to($3, 'UTF8')), id FROM c",
            &[&app.worker_id, &json!({"b": [1, 2.50, "x"], "a": {"z": null, "y": true}}).to_string(), &sent],
        )
        .await
        .expect("a committed keyed statement");
    let res = post(&app, None, "after-503", &sent).await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    assert!(replayed(&res));
    assert_eq!(res.json()["message"], "credential issued by lost-task");
    assert_eq!(
        res.json()["credential"]["metadata"],
        json!({"a": {"y": true, "z": null}, "b": [1, 2.50, "x"]})
    );
    assert_eq!(app.db.count_credentials().await, 1);
}

#[tokio::test]
async fn keys_expire_after_24_hours() {
    let app = spawn_app::<Issuance>().await;
    assert_eq!(post(&app, None, "old", &body("Ada")).await.status, 201);
    assert_eq!(post(&app, None, "recent", &body("Grace")).await.status, 201);
    let client = app.db.client().await;
    let backdate = "UPDATE idempotency_keys SET created_at = now() - interval '24 hours 1 minute'
                     WHERE idempotency_key = $1";
    client.execute(backdate, &[&"old"]).await.expect("backdate");
    // Just under 24 h is kept: another body is still 422.
    client
        .execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '23 hours 59 minutes'
              WHERE idempotency_key = 'recent'",
            &[],
        )
        .await
        .expect("age");
    assert_eq!(post(&app, None, "recent", &body("Linus")).await.status, 422);
    // Past 24 h the key is a new key: another body issues.
    let res = post(&app, None, "old", &body("Linus")).await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    assert!(!replayed(&res));
    assert_eq!(app.db.count_credentials().await, 3);

    // A task deletes expired keys: a second after it starts, then every 5 minutes.
    client.execute(backdate, &[&"old"]).await.expect("backdate");
    let _purger = spawn_app_with::<Issuance>(app.db.clone(), &[]).await;
    let started = Instant::now();
    loop {
        let left: Vec<String> = client
            .query("SELECT idempotency_key FROM idempotency_keys ORDER BY 1", &[])
            .await
            .expect("keys")
            .iter()
            .map(|r| r.get(0))
            .collect();
        if left == ["recent"] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not purged: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
