//! POST /issuance/credentials against the real PostgreSQL, one schema per test.

use issuance::Issuance;
use kc_testing::fakes::TcpProxy;
use kc_testing::{spawn_app, spawn_app_with, start, TestDb};
use serde_json::{json, Value};

const PATH: &str = "/issuance/credentials";

fn john() -> Value {
    json!({
        "name": "John Doe",
        "email": "john@example.com",
        "credentialType": "Developer Certificate",
        "metadata": { "organization": "Tech Corp", "expiryDate": "2026-12-31" }
    })
}

fn is_rfc3339_millis(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[23] == b'Z'
        && b.iter()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19, 23].contains(&i) || c.is_ascii_digit())
}

#[tokio::test]
async fn issues_a_credential_with_201_and_stores_it() {
    let app = spawn_app::<Issuance>().await;
    let res = app.post_json(PATH, &john()).await;
    assert_eq!(res.status, 201);
    assert_eq!(res.header("content-type"), Some("application/json"));
    let body = res.json();
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], format!("credential issued by {}", app.worker_id));
    let c = &body["credential"];
    let id = uuid::Uuid::parse_str(c["id"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(c["name"], "John Doe");
    assert_eq!(c["email"], "john@example.com");
    assert_eq!(c["credentialType"], "Developer Certificate");
    assert_eq!(
        c["metadata"],
        json!({ "organization": "Tech Corp", "expiryDate": "2026-12-31" })
    );
    assert_eq!(c["issuedBy"], app.worker_id);
    // The client that issued it (the harness names it after the task).
    assert_eq!(c["issuer"], app.worker_id);
    assert!(
        is_rfc3339_millis(c["issuedAt"].as_str().unwrap()),
        "{}",
        c["issuedAt"]
    );
    // No validUntil was sent: null, and the ninth field.
    assert_eq!(c["validUntil"], serde_json::Value::Null);
    assert_eq!(c.as_object().unwrap().len(), 9);

    let db = app.db.client().await;
    let row = db
        .query_one(
            "SELECT name, email, credential_type, metadata::text, issued_by,
                    to_char(issued_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
               FROM credentials WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "John Doe");
    assert_eq!(row.get::<_, &str>(1), "john@example.com");
    assert_eq!(row.get::<_, &str>(2), "Developer Certificate");
    let stored: Value = serde_json::from_str(row.get::<_, &str>(3)).unwrap();
    assert_eq!(stored, c["metadata"]);
    assert_eq!(row.get::<_, &str>(4), app.worker_id);
    assert_eq!(row.get::<_, &str>(5), c["issuedAt"].as_str().unwrap());
}

#[tokio::test]
async fn normalises_name_email_and_type_before_storing() {
    let app = spawn_app::<Issuance>().await;
    let res = app
        .post_json(
            PATH,
            &json!({ "name": "  Jane Roe\t", "email": " Jane.Roe@Example.COM ", "credentialType": "\nAdmin ", "ignored": [1] }),
        )
        .await;
    assert_eq!(res.status, 201);
    let c = &res.json()["credential"];
    assert_eq!(
        (
            c["name"].as_str(),
            c["email"].as_str(),
            c["credentialType"].as_str()
        ),
        (Some("Jane Roe"), Some("jane.roe@example.com"), Some("Admin"))
    );
    assert_eq!(c["metadata"], Value::Null);
    // The same person written differently is a duplicate.
    let again = app
        .post_json(
            PATH,
            &json!({ "name": "Jane Roe", "email": "jane.roe@example.com", "credentialType": "Admin" }),
        )
        .await;
    assert_eq!(again.status, 409);
}

#[tokio::test]
async fn metadata_is_echoed_as_sent() {
    let app = spawn_app::<Issuance>().await;
    let body = |n: u32, meta: &str| {
        format!(r#"{{"name":"m{n}","email":"m@example.com","credentialType":"t","metadata":{meta}}}"#)
    };
    let res = app.post_raw(PATH, Some("application/json"), body(1, "{}")).await;
    assert_eq!(res.json()["credential"]["metadata"], json!({}));
    // Numbers keep their digits: the metadata goes to PostgreSQL as the client wrote it.
    let res = app
        .post_raw(PATH, Some("application/json"), body(2, r#"{"price": 12.50, "big": 123456789012345678901234567890, "tiny": 1e-400, "huge": -1.5E+300, "nested": {"list": [1, "two", null, true]}}"#))
        .await;
    assert_eq!(res.status, 201);
    let text = String::from_utf8_lossy(&res.body).into_owned();
    assert!(
        text.contains("12.50") && text.contains("123456789012345678901234567890"),
        "{text}"
    );
    assert_eq!(
        res.json()["credential"]["metadata"]["nested"],
        json!({ "list": [1, "two", null, true] })
    );
}

#[tokio::test]
async fn a_duplicate_gets_409_with_the_existing_credential() {
    let app = spawn_app::<Issuance>().await;
    let first = app.post_json(PATH, &john()).await.json();
    // A different task issuing the same triple with other metadata is still a duplicate.
    // The same client on another task: the holder's details are its own.
    let mut other = spawn_app_with::<Issuance>(app.db.clone(), &[]).await;
    other.key = app.key.clone();
    let mut same = john();
    same["metadata"] = json!({ "other": true });
    let res = other.post_json(PATH, &same).await;
    assert_eq!(res.status, 409);
    let body = res.json();
    assert_eq!(body["success"], false);
    assert_eq!(body["message"], "Credential already issued");
    let existing = &body["existingCredential"];
    assert_eq!(existing["id"], first["credential"]["id"]);
    assert_eq!(existing["issuedBy"], app.worker_id);
    assert_eq!(existing["issuedAt"], first["credential"]["issuedAt"]);
    assert_eq!(existing.as_object().unwrap().len(), 3);
    // Another credential type for the same person is not a duplicate.
    let mut other_type = john();
    other_type["credentialType"] = json!("Other");
    assert_eq!(app.post_json(PATH, &other_type).await.status, 201);
}

#[tokio::test]
async fn exactly_one_of_many_concurrent_identical_requests_wins_across_tasks() {
    // One lane per task, so identical requests also meet inside one batch.
    let a = spawn_app_with::<Issuance>(TestDb::new().await, &[("DB_BATCH_LANES", "1")]).await;
    let mut b = spawn_app_with::<Issuance>(a.db.clone(), &[]).await;
    // One client on both tasks, so every 409 may name the winner.
    b.key = a.key.clone();
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let body = json!({ "name": "Race", "email": "race@example.com", "credentialType": "Sprint" });
    let mut tasks = Vec::new();
    for i in 0..48 {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        let body = body.clone();
        tasks.push(tokio::spawn(async move { app.post_json(PATH, &body).await }));
    }
    let mut created = Vec::new();
    let mut conflicts = Vec::new();
    for t in tasks {
        let res = t.await.unwrap();
        match res.status.as_u16() {
            201 => created.push(res.json()["credential"]["id"].clone()),
            409 => conflicts.push(res.json()["existingCredential"]["id"].clone()),
            other => panic!("unexpected {other}: {:?}", res.body),
        }
    }
    assert_eq!(created.len(), 1, "exactly one 201");
    assert_eq!(conflicts.len(), 47);
    assert!(
        conflicts.iter().all(|id| *id == created[0]),
        "every 409 names the winner"
    );
    let rows = a.db.count_credentials().await;
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn validation_errors_list_every_offending_field() {
    let app = spawn_app::<Issuance>().await;
    let res = app
        .post_json(
            PATH,
            &json!({ "name": "", "email": "not-an-email", "credentialType": 7, "metadata": [1] }),
        )
        .await;
    assert_eq!(res.status, 400);
    let body = res.json();
    assert_eq!(body["success"], false);
    assert_eq!(body["message"], "Validation failed");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "email", "credentialType", "metadata"]);
    assert_eq!(body["errors"][1]["message"], "must be a valid email address");
    for e in body["errors"].as_array().unwrap() {
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    let res = app.post_json(PATH, &json!({})).await;
    assert_eq!(res.json()["errors"].as_array().unwrap().len(), 3);
    let long = app
        .post_json(
            PATH,
            &json!({ "name": "n".repeat(256), "email": "a@b.co", "credentialType": "t".repeat(101) }),
        )
        .await;
    assert_eq!(long.status, 400);
    assert_eq!(long.json()["errors"].as_array().unwrap().len(), 2);
    let deep = json!({ "name": "n", "email": "a@b.co", "credentialType": "t", "metadata": (0..40).fold(json!(1), |v, _| json!({ "a": v })) });
    assert_eq!(
        app.post_json(PATH, &deep).await.json()["errors"][0]["field"],
        "metadata"
    );
    assert_eq!(app.db.count_credentials().await, 0);
}

#[tokio::test]
async fn nul_characters_are_refused_and_nothing_is_stored() {
    let app = spawn_app::<Issuance>().await;
    for body in [
        r#"{"name":"a\u0000b","email":"a@b.co","credentialType":"t"}"#,
        r#"{"name":"a","email":"a@b.co","credentialType":"t","metadata":{"k":"\u0000"}}"#,
        r#"{"name":"a","email":"a@b.co","credentialType":"t","metadata":{"\u0000":1}}"#,
    ] {
        let res = app.post_raw(PATH, Some("application/json"), body).await;
        assert_eq!(res.status, 400, "{body}");
        assert!(res.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("NUL"));
    }
    assert_eq!(app.db.count_credentials().await, 0);
}

#[tokio::test]
async fn repeated_metadata_is_refused() {
    let app = spawn_app::<Issuance>().await;
    let body = r#"{"metadata":{"a":1},"name":"n","email":"a@b.co","credentialType":"t","metadata":[1]}"#;
    let res = app.post_raw(PATH, Some("application/json"), body).await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["errors"][0]["message"], "must appear only once");
    assert_eq!(app.db.count_credentials().await, 0);
}

#[tokio::test]
async fn a_member_repeated_in_a_large_object_is_refused_and_nothing_is_stored() {
    let app = spawn_app::<Issuance>().await;
    // Past 32 members simd-json keeps only the last copy: still refused.
    let pad: String = (0..40).map(|i| format!(",\"x{i}\":{i}")).collect();
    let body = format!(r#"{{"name":"Alice","email":"a@b.co","credentialType":"t"{pad},"name":"Mallory"}}"#);
    let res = app.post_raw(PATH, Some("application/json"), body).await;
    assert_eq!(res.status, 400);
    assert_eq!(
        res.json()["errors"],
        json!([{ "field": "name", "message": "must appear only once" }])
    );
    assert_eq!(app.db.count_credentials().await, 0);
}

#[tokio::test]
async fn invisible_or_combining_variants_of_a_name_are_not_a_second_person() {
    let app = spawn_app::<Issuance>().await;
    let with = |name: &str| json!({ "name": name, "email": "jose@example.com", "credentialType": "Degree" });
    assert_eq!(app.post_json(PATH, &with("José")).await.status, 201);
    // e + COMBINING ACUTE ACCENT is the same person.
    let combining = app.post_json(PATH, &with("Jose\u{301}")).await;
    assert_eq!(combining.status, 409);
    // A zero-width space, a bell, an ANSI escape, a right-to-left override: refused.
    for name in ["Jos\u{200B}é", "José\u{7}", "\u{1b}[31mJosé", "Jos\u{202E}é"] {
        let res = app.post_json(PATH, &with(name)).await;
        assert_eq!(res.status, 400, "{name:?}");
        assert_eq!(res.json()["errors"][0]["field"], "name");
    }
    assert_eq!(app.db.count_credentials().await, 1);
}

#[tokio::test]
async fn unicode_round_trips_exactly() {
    let app = spawn_app::<Issuance>().await;
    let name = format!("Zoë 李小龍 🦀{}", "é".repeat(200));
    let kind = "Сертификат ✓ ".repeat(7).trim().to_owned();
    let meta = json!({ "note": "naïve café — 日本語 🎉", "emoji": "👩‍💻" });
    let res = app
        .post_json(
            PATH,
            &json!({ "name": name, "email": "zoë@exämple.de", "credentialType": kind, "metadata": meta }),
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    let c = &res.json()["credential"];
    assert_eq!(c["name"], name);
    assert_eq!(c["email"], "zoë@exämple.de");
    assert_eq!(c["credentialType"], kind);
    assert_eq!(c["metadata"], meta);
    // 255 characters: a local part of 64 bytes (RFC 5321's limit) and a long domain.
    let email = format!(
        "{}@{}{}.io",
        "é".repeat(32),
        format!("{}.", "b".repeat(62)).repeat(3),
        "b".repeat(30)
    );
    assert_eq!(email.chars().count(), 255);
    let longest = json!({ "name": "🦀".repeat(255), "email": email, "credentialType": "✓".repeat(100) });
    assert_eq!(app.post_json(PATH, &longest).await.status, 201);
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_get_400() {
    let app = spawn_app::<Issuance>().await;
    for body in [
        "",
        "   ",
        "{",
        "{\"name\": }",
        "[]",
        "\"text\"",
        "42",
        "null",
        "{\"a\":1} trailing",
        "{\"a\":\"\\ud800\"}",
    ] {
        let res = app.post_raw(PATH, Some("application/json"), body).await;
        assert_eq!(res.status, 400, "{body:?}");
        let json = res.json();
        assert_eq!(json["success"], false);
        assert_eq!(json["errors"][0]["field"], "body", "{body:?}");
    }
    let res = app
        .post_raw(PATH, Some("application/json"), vec![b'{', 0xff, b'}'])
        .await;
    assert_eq!(res.status, 400);
    let deep = format!("{{\"metadata\":{}{}}}", "[".repeat(20_000), "]".repeat(20_000));
    assert_eq!(
        app.post_raw(PATH, Some("application/json"), deep).await.status,
        400
    );
    // The task is still serving after all of that.
    assert_eq!(app.post_json(PATH, &john()).await.status, 201);
}

#[tokio::test]
async fn oversize_bodies_get_413() {
    let app = spawn_app_with::<Issuance>(TestDb::new().await, &[("MAX_BODY_BYTES", "1024")]).await;
    let big = json!({ "name": "n", "email": "a@b.co", "credentialType": "t", "metadata": { "pad": "x".repeat(2000) } });
    let res = app.post_json(PATH, &big).await;
    assert_eq!(res.status, 413);
    let body = res.json();
    assert_eq!(body["success"], false);
    assert!(body["message"].as_str().unwrap().contains("1024"));
    // Without a Content-Length (chunked), the limit holds while reading.
    let mut chunked = String::from("POST /issuance/credentials HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..8 {
        chunked.push_str(&format!("c8\r\n{}\r\n", " ".repeat(200)));
    }
    chunked.push_str("0\r\n\r\n");
    assert!(raw_exchange(&app, &chunked).await.starts_with("HTTP/1.1 413"));
    assert_eq!(app.post_json(PATH, &john()).await.status, 201);
}

/// Writes `request` on a fresh connection and returns what comes back until the server closes or pauses.
async fn raw_exchange(app: &kc_testing::TestApp, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let _ = stream.write_all(request.as_bytes()).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn content_type_must_be_json_when_present() {
    let app = spawn_app::<Issuance>().await;
    let body = john().to_string();
    let res = app.post_raw(PATH, Some("text/plain"), body.clone()).await;
    assert_eq!(res.status, 415);
    assert!(res.json()["message"]
        .as_str()
        .unwrap()
        .contains("application/json"));
    assert_eq!(
        app.post_raw(PATH, Some("application/x-www-form-urlencoded"), body.clone())
            .await
            .status,
        415
    );
    assert_eq!(
        app.post_raw(PATH, Some("Application/JSON; charset=utf-8"), body.clone())
            .await
            .status,
        201
    );
    let mut second = john();
    second["name"] = json!("Second");
    assert_eq!(app.post_raw(PATH, None, second.to_string()).await.status, 201);
}

#[tokio::test]
async fn database_outage_gives_503_and_the_task_recovers() {
    let proxy = TcpProxy::start().await;
    let db = TestDb::new().await;
    let url = db.url_via(proxy.addr);
    let app =
        spawn_app_with::<Issuance>(db, &[("DATABASE_URL", &url), ("DB_CONNECT_TIMEOUT_MS", "500")]).await;
    assert_eq!(app.post_json(PATH, &john()).await.status, 201);

    proxy.cut();
    let mut second = john();
    second["name"] = json!("During Outage");
    let res = app.post_json(PATH, &second).await;
    assert_eq!(res.status, 503);
    assert_eq!(res.header("retry-after"), Some("1"));
    assert_eq!(res.json()["message"], "Service temporarily unavailable");
    let health = app.get("/health").await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["status"], "degraded");
    assert_eq!(health.json()["database"], "down");
    assert_eq!(app.get("/health/live").await.status, 200);

    proxy.restore();
    let mut recovered = None;
    for _ in 0..40 {
        let res = app.post_json(PATH, &second).await;
        if res.status == 201 {
            recovered = Some(res);
            break;
        }
        assert_eq!(res.status, 503);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered.is_some(), "no recovery after the database came back");
    assert_eq!(app.get("/health").await.status, 200);
}

#[tokio::test]
async fn a_task_whose_database_is_unreachable_from_the_start_serves_503() {
    // A port with nothing listening: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let app = start::<Issuance>(
        TestDb::new().await,
        &[("DATABASE_URL", &url), ("DB_CONNECT_TIMEOUT_MS", "300")],
    )
    .await;
    assert_eq!(app.get("/health/live").await.status, 200);
    let health = app.get("/health").await;
    assert_eq!(
        (health.status.as_u16(), health.json()["database"].as_str()),
        (503, Some("down"))
    );
    let res = app.post_json(PATH, &john()).await;
    assert_eq!(res.status, 503);
    assert_eq!(res.header("retry-after"), Some("1"));
}
