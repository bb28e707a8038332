//! Who may issue (docs/API.md, "Access control"): every refusal of
//! `POST /issuance/credentials` — 401, 403, 429 — with the status, the body and
//! the headers the contract gives it, and nothing stored; what a 409 tells an
//! issuer that does not hold the credential; keys added and revoked while
//! tasks run; and the `clients` command of the real binary.

use issuance::Issuance;
use kc_testing::{spawn_app, spawn_app_with, Role, TestApp, TestDb, TestResponse};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::process::Command;

const PATH: &str = "/issuance/credentials";
const BIN: &str = env!("CARGO_BIN_EXE_issuance");

fn credential(name: &str, credential_type: &str) -> Value {
    json!({ "name": name, "email": "holder@example.com", "credentialType": credential_type,
            "metadata": { "ssn": "078-05-1120" } })
}

fn assert_refused(res: &TestResponse, status: u16, message: &str) {
    assert_eq!(res.status, status, "{:?}", res.body);
    let body = res.json();
    assert_eq!(body["success"], false);
    assert_eq!(body["message"], message);
    assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{body}");
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert!(res.header("x-request-id").is_some());
}

const MISSING: &str = "Authentication required: send Authorization: Bearer <API key>";
const INVALID: &str = "Invalid or revoked API key";

#[tokio::test]
async fn without_a_live_key_issuance_is_401_and_stores_nothing() {
    let app = spawn_app::<Issuance>().await;
    // The harness's wait for its own key may have met a 401 or two.
    let before = refused_401(&app.metrics().await);
    let body = credential("Nobody", "Degree");
    let missing = app.post_json_as(PATH, &body, None).await;
    assert_refused(&missing, 401, MISSING);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));

    let unknown = format!("kc_{}", "A".repeat(43));
    for key in [unknown.as_str(), "kc_short", "not-a-key", ""] {
        let res = app.post_json_as(PATH, &body, Some(key)).await;
        assert_refused(&res, 401, INVALID);
        assert_eq!(res.header("www-authenticate"), Some("Bearer"));
    }
    // Another scheme is no key at all.
    let basic = app
        .post_with(
            PATH,
            Some("application/json"),
            body.to_string(),
            None,
            &[("authorization", "Basic dXNlcjpwYXNz")],
        )
        .await;
    assert_refused(&basic, 401, INVALID);
    assert_eq!(app.db.count_credentials().await, 0);
    // The refusals are counted, with a bounded label for callers without a client.
    assert_eq!(refused_401(&app.metrics().await) - before, 6.0);
}

/// `kc_refused_requests_total` for 401s of callers without a client.
fn refused_401(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"kc_refused_requests_total{client="unknown",http_response_status_code="401"} "#)
        })
        .map_or(0.0, |v| v.trim().parse().unwrap_or(0.0))
}

#[tokio::test]
async fn a_verifier_key_or_a_type_not_granted_is_403_and_stores_nothing() {
    let app = spawn_app::<Issuance>().await;
    let verifier = app.add_client("a-verifier", Role::Verifier, &[], None).await;
    let diplomas = app
        .add_client("diplomas-only", Role::Issuer, &["Diploma", "Transcript"], None)
        .await;
    app.wait_key(&diplomas).await;

    let res = app
        .post_json_as(PATH, &credential("Ada", "Diploma"), Some(&verifier))
        .await;
    assert_refused(&res, 403, "This API key may not issue credentials");
    // Even a body that is not valid: the key is refused before the body is read.
    let res = app.post_json_as(PATH, &json!({}), Some(&verifier)).await;
    assert_eq!(res.status, 403);
    let res = app
        .post_json_as(PATH, &credential("Ada", "Pilot Licence"), Some(&diplomas))
        .await;
    assert_refused(
        &res,
        403,
        "This API key may not issue credentials of this credentialType",
    );
    assert_eq!(app.db.count_credentials().await, 0);

    // The types it was given, compared after trimming as requests are.
    let res = app
        .post_json_as(PATH, &credential("Ada", "  Diploma "), Some(&diplomas))
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    assert_eq!(res.json()["credential"]["issuer"], "diplomas-only");
    assert_eq!(app.db.count_credentials().await, 1);
    let row = app
        .db
        .client()
        .await
        .query_one("SELECT issuer FROM credentials", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>("issuer").as_deref(),
        Some("diplomas-only")
    );
}

#[tokio::test]
async fn a_409_names_the_holder_only_to_the_issuer_that_holds_it() {
    let app = spawn_app::<Issuance>().await;
    let rival = app.add_client("rival", Role::Issuer, &[], None).await;
    app.wait_key(&rival).await;
    let body = credential("Grace Hopper", "Admiral");
    let first = app.post_json(PATH, &body).await;
    assert_eq!(first.status, 201);
    let id = first.json()["credential"]["id"].clone();

    let own = app.post_json(PATH, &body).await;
    assert_eq!(own.status, 409);
    assert_eq!(own.json()["existingCredential"]["id"], id);

    let other = app.post_json_as(PATH, &body, Some(&rival)).await;
    assert_eq!(other.status, 409);
    let other = other.json();
    assert_eq!(
        other,
        json!({ "success": false, "message": "Credential already issued" })
    );
    assert_eq!(app.db.count_credentials().await, 1);
}

/// Polls `app` with `key` until it answers `status`; how long that took.
async fn until_status(app: &TestApp, key: &str, status: u16) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let res = app.post_json_as(PATH, &json!({}), Some(key)).await;
        if res.status == status {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never answered {status}", app.addr);
}

#[tokio::test]
async fn a_key_added_or_revoked_on_one_task_counts_on_another_within_1_s() {
    let one = spawn_app::<Issuance>().await;
    let two = spawn_app_with::<Issuance>(one.db.clone(), &[]).await;
    // Added through the first task's database, seen by the second.
    let key = one.add_client("rotating", Role::Issuer, &[], None).await;
    let added = until_status(&two, &key, 400).await;
    assert!(added < Duration::from_secs(1), "added after {added:?}");
    assert_eq!(
        two.post_json_as(PATH, &credential("Before", "Revocation"), Some(&key))
            .await
            .status,
        201
    );

    one.revoke_client("rotating").await;
    let revoked = until_status(&two, &key, 401).await;
    assert!(revoked < Duration::from_secs(1), "revoked after {revoked:?}");
    until_status(&one, &key, 401).await;
    let res = two
        .post_json_as(PATH, &credential("After", "Revocation"), Some(&key))
        .await;
    assert_refused(&res, 401, INVALID);
    assert_eq!(one.db.count_credentials().await, 1);
}

#[tokio::test]
async fn past_its_rate_limit_a_client_gets_429_at_once_and_nothing_is_stored() {
    let app = spawn_app_with::<Issuance>(TestDb::new().await, &[("CLIENT_RATE_LIMIT", "1000")]).await;
    let slow = app.add_client("slow", Role::Issuer, &[], Some(5)).await;
    app.wait_key(&slow).await;
    // wait_key used some of the burst; let the bucket refill.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut statuses = Vec::new();
    for i in 0..12 {
        let started = Instant::now();
        let res = app
            .post_json_as(PATH, &credential(&format!("Holder {i}"), "Limited"), Some(&slow))
            .await;
        if res.status == 429 {
            assert!(
                started.elapsed() < Duration::from_millis(100),
                "a 429 is answered at once"
            );
            assert_eq!(res.header("retry-after"), Some("1"));
            assert_refused(&res, 429, "Rate limit exceeded; retry later");
        }
        statuses.push(res.status.as_u16());
    }
    let created = statuses.iter().filter(|s| **s == 201).count();
    assert_eq!(created, 5, "a burst of its limit, then 429: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 7);
    assert_eq!(app.db.count_credentials().await, 5);
    // Another client is not limited by this one.
    assert_eq!(
        app.post_json(PATH, &credential("Other", "Limited")).await.status,
        201
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"kc_refused_requests_total{client="slow",http_response_status_code="429"} 7"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn health_and_metrics_need_no_key() {
    let app = spawn_app::<Issuance>().await;
    for path in ["/health", "/health/live", "/health/ready", "/issuance/health"] {
        let res = app.get(path).await;
        assert_eq!(res.status, 200, "{path}");
        let body = res.json();
        assert!(body.get("auth").is_none(), "{body}");
    }
    assert!(app
        .metrics()
        .await
        .contains("http_server_request_duration_seconds"));
}

#[tokio::test]
async fn with_auth_mode_off_anyone_issues_and_health_says_so() {
    let app = spawn_app_with::<Issuance>(TestDb::new().await, &[("AUTH_MODE", "off")]).await;
    let res = app.post_json_as(PATH, &credential("Open", "Trial"), None).await;
    assert_eq!(res.status, 201);
    assert_eq!(res.json()["credential"]["issuer"], Value::Null);
    let dup = app.post_json_as(PATH, &credential("Open", "Trial"), None).await;
    assert_eq!(dup.status, 409);
    assert!(dup.json()["existingCredential"]["id"].is_string());
    let health = app.get("/health").await.json();
    assert_eq!(health["auth"], "off");
    assert!(health["warning"]
        .as_str()
        .is_some_and(|w| w.contains("AUTH_MODE=off")));
}

fn clients_command(db: &TestDb, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear();
    if let Ok(profile) = std::env::var("LLVM_PROFILE_FILE") {
        cmd.env("LLVM_PROFILE_FILE", profile);
    }
    cmd.env("DATABASE_URL", db.url())
        .env("DB_SSLMODE", "disable")
        .arg("clients")
        .args(args);
    cmd
}

#[tokio::test]
async fn the_clients_command_prints_a_key_once_and_never_lists_it() {
    let db = TestDb::new().await;
    let out = clients_command(
        &db,
        &[
            "add",
            "acme",
            "--role",
            "issuer",
            "--credential-types",
            "A, B",
            "--rate-limit",
            "50",
        ],
    )
    .output()
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let key = stdout.trim_end();
    assert_eq!(stdout, format!("{key}\n"), "the key alone on stdout");
    assert!(key.starts_with("kc_") && key.len() == 46, "{key}");

    let again = clients_command(&db, &["add", "acme", "--role", "verifier"])
        .output()
        .await
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(again.stdout.is_empty());

    let list = clients_command(&db, &["list"]).output().await.unwrap();
    let listed = String::from_utf8(list.stdout).unwrap();
    assert!(list.status.success());
    assert!(listed.contains("acme\tissuer\tA,B\t50\t1\t"), "{listed}");
    assert!(!listed.contains(&key[3..]), "list printed the key");

    // Only the hash is stored.
    let client = db.client().await;
    let row = client
        .query_one("SELECT key_sha256 FROM api_keys", &[])
        .await
        .unwrap();
    let stored: Vec<u8> = row.get("key_sha256");
    assert_eq!(stored, kc_core::auth::keys::KeyHash::of(key).0.to_vec());

    // A key made elsewhere, registered by its hash: nothing secret is printed.
    let keygen = clients_command(&db, &["keygen"]).output().await.unwrap();
    let made = String::from_utf8(keygen.stdout).unwrap();
    let (made_key, hash) =
        made.lines()
            .filter_map(|l| l.split_once('='))
            .fold((None, None), |(k, h), (name, v)| match name {
                "key" => (Some(v.to_owned()), h),
                "sha256" => (k, Some(v.to_owned())),
                _ => (k, h),
            });
    let (made_key, hash) = (made_key.unwrap(), hash.unwrap());
    let out = clients_command(
        &db,
        &["add", "verifier-1", "--role", "verifier", "--key-sha256", &hash],
    )
    .output()
    .await
    .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&made_key));

    let revoke = clients_command(&db, &["revoke", "acme"]).output().await.unwrap();
    assert!(revoke.status.success());
    let revoke = clients_command(&db, &["revoke", "acme"]).output().await.unwrap();
    assert_eq!(revoke.status.code(), Some(2), "no live client of that name");
    let bad = clients_command(&db, &["add", "x", "--role", "admin"])
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let live: i64 = client
        .query_one("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(live, 1);
}

#[tokio::test]
async fn a_keyed_request_before_the_first_load_of_the_clients_waits_for_it() {
    // In process, so the clients load exactly when the test says: a task just
    // started takes requests before its first load (a rolling restart sends
    // them at once), and they must wait for it, not get 503.
    let db = TestDb::new().await;
    let mut client = db.client().await;
    kc_core::migrate::run(&mut client).await.unwrap();
    let new = kc_core::auth::admin::NewClient {
        name: "early".into(),
        role: Role::Issuer,
        credential_types: vec![],
        rate_limit: None,
    };
    let key = kc_core::auth::admin::add(&mut client, &new, None)
        .await
        .unwrap()
        .unwrap();
    let env = [
        ("DATABASE_URL", db.url()),
        ("DB_SSLMODE", "disable".into()),
        ("WORKER_ID", "early-task".into()),
    ];
    let config =
        kc_core::Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap();
    let app = kc_core::App::<Issuance>::new(config);
    let request = hyper::Request::post(PATH)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            credential("Early", "Bird").to_string(),
        )))
        .unwrap();
    let load_later = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.load_clients().await.unwrap();
    };
    let started = Instant::now();
    let (response, ()) = tokio::join!(app.handle(request), load_later);
    assert_eq!(response.status(), 201);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(db.count_credentials().await, 1);
}
