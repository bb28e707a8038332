//! The HTTP plumbing every response shares, seen through the issuance service:
//! headers, routing errors, CORS, health, and connection timeouts.

use issuance::Issuance;
use kc_testing::{spawn_app, spawn_app_with, TestApp, TestDb, TestResponse};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATH: &str = "/issuance/credentials";

fn assert_common_headers(res: &TestResponse, app: &TestApp) {
    assert_eq!(res.header("x-worker-id"), Some(app.worker_id.as_str()));
    assert!(res.header("x-request-id").is_some_and(|id| !id.is_empty()));
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        assert_eq!(res.header(name), Some(value), "{name} on {}", res.status);
    }
    // CORS is off unless origins are configured.
    assert_eq!(res.header("access-control-allow-origin"), None);
    if !res.body.is_empty() {
        assert_eq!(
            res.header("content-type"),
            Some("application/json"),
            "on {}",
            res.status
        );
        let _ = res.json();
    }
}

#[tokio::test]
async fn every_response_carries_the_common_headers() {
    let app = spawn_app::<Issuance>().await;
    let good = json!({ "name": "h", "email": "h@example.com", "credentialType": "t" });
    let responses = [
        app.post_json(PATH, &good).await,
        app.post_json(PATH, &good).await,
        app.post_json(PATH, &json!({})).await,
        app.post_raw(PATH, Some("text/plain"), "x").await,
        app.post_raw(PATH, Some("application/json"), "x".repeat(70_000))
            .await,
        app.get("/nope").await,
        app.get(PATH).await,
        app.get("/health").await,
        app.get("/health/live").await,
        app.get("/health/ready").await,
        app.get("/issuance/health").await,
    ];
    let statuses: Vec<u16> = responses.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(statuses, [201, 409, 400, 415, 413, 404, 405, 200, 200, 200, 200]);
    for res in &responses {
        assert_common_headers(res, &app);
    }
}

#[tokio::test]
async fn request_ids_are_echoed_when_valid_and_made_up_otherwise() {
    let app = spawn_app::<Issuance>().await;
    let get = |id: &'static str| {
        hyper::Request::get("/health/live")
            .header("x-request-id", id)
            .body(Default::default())
            .unwrap()
    };
    assert_eq!(
        app.send(get("trace-abc-123")).await.header("x-request-id"),
        Some("trace-abc-123")
    );
    let long: &'static str = Box::leak("x".repeat(129).into_boxed_str());
    for bad in ["has space", long] {
        let id = app
            .send(get(bad))
            .await
            .header("x-request-id")
            .unwrap()
            .to_owned();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4, "{bad}");
    }
    let a = app
        .get("/health/live")
        .await
        .header("x-request-id")
        .unwrap()
        .to_owned();
    let b = app
        .get("/health/live")
        .await
        .header("x-request-id")
        .unwrap()
        .to_owned();
    assert_ne!(a, b);
}

#[tokio::test]
async fn unknown_paths_get_404_and_wrong_methods_405_with_allow() {
    let app = spawn_app::<Issuance>().await;
    let res = app.get("/verification/credentials").await;
    assert_eq!(res.status, 404);
    assert_eq!(res.json(), json!({ "success": false, "message": "Not found" }));
    let res = app.get(PATH).await;
    assert_eq!(res.status, 405);
    assert_eq!(res.header("allow"), Some("POST, OPTIONS"));
    assert_eq!(res.json()["success"], false);
    let res = app.post_json("/health", &json!({})).await;
    assert_eq!(
        (res.status.as_u16(), res.header("allow")),
        (405, Some("GET, OPTIONS"))
    );
}

#[tokio::test]
async fn preflight_requests_get_204_with_the_allowed_methods() {
    let app = spawn_app_with::<Issuance>(
        TestDb::new().await,
        &[("CORS_ALLOWED_ORIGINS", "https://app.example")],
    )
    .await;
    let req = hyper::Request::options(PATH)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .body(Default::default())
        .unwrap();
    let res = app.send(req).await;
    assert_eq!(res.status, 204);
    assert!(res.body.is_empty());
    assert_eq!(res.header("access-control-allow-methods"), Some("POST, OPTIONS"));
    assert!(res
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Content-Type"));
    assert!(res
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Authorization"));
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(res.header("x-worker-id"), Some(app.worker_id.as_str()));
}

#[tokio::test]
async fn cors_origins_can_be_restricted() {
    let app = spawn_app_with::<Issuance>(
        TestDb::new().await,
        &[(
            "CORS_ALLOWED_ORIGINS",
            "https://good.example, https://also.example",
        )],
    )
    .await;
    let with_origin = |origin: &'static str| {
        hyper::Request::get("/health/live")
            .header("origin", origin)
            .body(Default::default())
            .unwrap()
    };
    let res = app.send(with_origin("https://also.example")).await;
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://also.example")
    );
    assert_eq!(res.header("vary"), Some("Origin"));
    let res = app.send(with_origin("https://evil.example")).await;
    assert_eq!(res.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn health_endpoints_report_service_worker_and_database() {
    let app = spawn_app::<Issuance>().await;
    for path in ["/health", "/issuance/health", "/health/ready"] {
        let body = app.get(path).await.json();
        assert_eq!(body["status"], "ok", "{path}");
        assert_eq!(body["service"], "issuance");
        assert_eq!(body["workerId"], app.worker_id.as_str());
        assert_eq!(body["database"], "up");
        assert!(body["uptimeSeconds"].is_u64());
    }
    let live = app.get("/health/live").await.json();
    assert_eq!(live["status"], "ok");
    assert!(live.get("database").is_none(), "liveness never asks the database");
}

#[tokio::test]
async fn the_openapi_document_is_served_publicly_under_the_service_prefix() {
    let app = spawn_app::<Issuance>().await;
    // No key: app.get sends none.
    let res = app.get("/issuance/openapi.json").await;
    assert_eq!(res.status, 200);
    assert_common_headers(&res, &app);
    let spec = res.json();
    let version = spec["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi: {version}");
    assert_eq!(spec["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(spec["servers"][0]["url"], "/");
    // Every route of both services is described.
    for path in [
        "/issuance/credentials",
        "/issuance/credentials/{id}/revoke",
        "/issuance/credentials/batch",
        "/issuance/openapi.json",
        "/issuance/health",
        "/verification/credentials",
        "/verification/credentials/batch",
        "/verification/openapi.json",
        "/verification/health",
        "/health",
        "/health/live",
        "/health/ready",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} is not in the document");
    }
    // The other service's document is the ALB's to route, not this task's.
    assert_eq!(app.get("/verification/openapi.json").await.status, 404);
    assert_eq!(
        app.post_json("/issuance/openapi.json", &json!({})).await.status,
        405
    );
}

async fn connect(app: &TestApp) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(app.addr).await.unwrap()
}

/// Reads until the peer closes; returns what arrived, or None if it stays open for `wait`.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(all),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_head_is_disconnected() {
    let app = spawn_app_with::<Issuance>(TestDb::new().await, &[("HTTP_HEADER_TIMEOUT_MS", "300")]).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(3))
            .await
            .is_some(),
        "slow head was not cut off"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_outlive_the_header_timeout() {
    let app = spawn_app_with::<Issuance>(
        TestDb::new().await,
        &[
            ("HTTP_HEADER_TIMEOUT_MS", "200"),
            ("HTTP_KEEP_ALIVE_SECONDS", "2"),
        ],
    )
    .await;
    let mut stream = connect(&app).await;
    let request = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = [0u8; 2048];
    for _ in 0..2 {
        stream.write_all(request).await.unwrap();
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        // Idle for far longer than the header timeout: a load balancer's pooled
        // connection must survive this.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // Past the keep-alive timeout the task closes it.
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(4))
            .await
            .is_some(),
        "idle connection never closed"
    );
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_body_gets_408() {
    let app = spawn_app_with::<Issuance>(TestDb::new().await, &[("HTTP_HEADER_TIMEOUT_MS", "300")]).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"POST /issuance/credentials HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na")
        .await
        .unwrap();
    let reply = read_until_closed(&mut stream, Duration::from_secs(3))
        .await
        .expect("no answer");
    assert!(
        reply.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
}

/// The value of the series `series` (name and labels as exposed), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[tokio::test]
async fn metrics_count_requests_statements_the_pool_and_the_process() {
    // Without access control, so the counts are this test's requests alone.
    let app = spawn_app_with::<Issuance>(TestDb::new().await, &[("AUTH_MODE", "off")]).await;
    let good = json!({ "name": "m", "email": "m@example.com", "credentialType": "t" });
    assert_eq!(app.post_json(PATH, &good).await.status, 201);
    assert_eq!(app.post_json(PATH, &good).await.status, 409);
    assert_eq!(app.post_json(PATH, &json!({})).await.status, 400);
    assert_eq!(app.get("/nope").await.status, 404);
    let m = app.metrics().await;
    let requests = |status: u16| {
        sample(
            &m,
            &format!(
                r#"http_server_request_duration_seconds_count{{http_route="{PATH}",http_request_method="POST",http_response_status_code="{status}"}}"#
            ),
        )
    };
    assert_eq!(
        (requests(201), requests(409), requests(400)),
        (Some(1.0), Some(1.0), Some(1.0)),
        "{m}"
    );
    // An unknown path has no route: the label set stays bounded.
    assert_eq!(
        sample(
            &m,
            r#"http_server_request_duration_seconds_count{http_route="",http_request_method="GET",http_response_status_code="404"}"#
        ),
        Some(1.0)
    );
    assert_eq!(sample(&m, "http_server_active_requests"), Some(0.0));
    // The 400 never reached the database: two statements, one request each.
    assert_eq!(sample(&m, "db_client_operations_total"), Some(2.0));
    assert_eq!(sample(&m, "db_batch_size_count"), Some(2.0));
    assert_eq!(sample(&m, "db_batch_size_sum"), Some(2.0));
    assert_eq!(
        sample(&m, "db_client_operation_duration_seconds_count"),
        Some(2.0)
    );
    assert_eq!(sample(&m, "db_queue_wait_seconds_count"), Some(2.0));
    assert_eq!(sample(&m, "db_queue_depth"), Some(0.0));
    assert_eq!(
        sample(&m, r#"db_shed_requests_total{reason="queue_full"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, r#"db_client_operation_errors_total{error_type="down"}"#),
        Some(0.0)
    );
    assert_eq!(sample(&m, "db_client_connection_max"), Some(8.0));
    let used = sample(
        &m,
        r#"db_client_connection_count{db_client_connection_state="used"}"#,
    );
    let idle = sample(
        &m,
        r#"db_client_connection_count{db_client_connection_state="idle"}"#,
    );
    assert!(matches!((used, idle), (Some(u), Some(i)) if u + i >= 1.0), "{m}");
    assert_eq!(sample(&m, "db_up"), Some(1.0));
    assert!(
        sample(&m, "process_resident_memory_bytes").is_some_and(|b| b > 1e6),
        "{m}"
    );
    assert!(sample(&m, "process_open_fds").is_some_and(|n| n > 0.0), "{m}");
    assert!(sample(&m, "process_cpu_seconds_total").is_some(), "{m}");
}

/// The series a PromQL query selects: each name written right before a `{`.
fn selected_series(expr: &str) -> impl Iterator<Item = &str> {
    expr.match_indices('{').filter_map(move |(at, _)| {
        let head = &expr[..at];
        let start = head
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        (start < at).then(|| &head[start..])
    })
}

#[tokio::test]
async fn the_grafana_dashboard_queries_only_series_a_task_exposes() {
    let app = spawn_app::<Issuance>().await;
    let good = json!({ "name": "g", "email": "g@example.com", "credentialType": "t" });
    assert_eq!(app.post_json(PATH, &good).await.status, 201);
    let m = app.metrics().await;
    let exposed: BTreeSet<&str> = m
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../deploy/grafana/kube-credential.json"))
            .expect("the dashboard is JSON");
    let queried: BTreeSet<&str> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .filter_map(|target| target["expr"].as_str())
        .flat_map(selected_series)
        .collect();
    assert!(queried.len() >= 10, "too few series found: {queried:?}");
    let missing: Vec<_> = queried.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which a task does not expose:\n{m}"
    );
}

/// Reads one response head and its Content-Length body from `stream`.
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .expect("read the answer");
        assert!(
            n > 0,
            "closed before a whole answer: {}",
            String::from_utf8_lossy(&all)
        );
        all.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&all).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn an_oversized_body_is_read_before_its_413_so_the_connection_survives() {
    // A balancer that streams bodies (the ALB; the twin's nginx) may still be
    // sending when the task answers: the task must read the body, not reset.
    let app = spawn_app::<Issuance>().await;
    let mut stream = connect(&app).await;
    let body = vec![b'x'; 2 * 1024 * 1024];
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
        .write_all(&body)
        .await
        .expect("the whole body is read, not refused with a reset");
    let first = read_response(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 413"), "{first}");
    // The same connection goes on serving.
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let second = read_response(&mut stream).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}

/// Writes `head` on a fresh connection and reads until the task closes it or
/// 2 s pass; the status line it got, if any.
async fn malformed(app: &TestApp, head: &[u8]) -> String {
    let mut c = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let _ = c.write_all(head).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn malformed_heads_are_refused_counted_by_reason_and_the_task_keeps_serving() {
    let app = spawn_app_with::<Issuance>(TestDb::new().await, &[("AUTH_MODE", "off")]).await;
    let many_headers: String = (0..1000).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"POST /issuance/credentials HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello".to_vec(), "400"),
        (b"POST /issuance/credentials HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n".to_vec(), "400"),
        (b"POST /issuance/credentials HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n".to_vec(), "400"),
        (b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n folded\r\n\r\n".to_vec(), "400"),
        (b"GET /health HTTP/1.1\r\nHost: t\r\nBad Name: 1\r\n\r\n".to_vec(), "400"),
        (format!("GET /health HTTP/1.1\r\nHost: t\r\n{many_headers}\r\n").into_bytes(), "431"),
        (format!("GET /health HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20)).into_bytes(), "431"),
        // Past the 56 KiB head limit before the URI's own (414 is for a shorter, still too long URI).
        (format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "u".repeat(100 * 1024)).into_bytes(), "431"),
    ];
    for (head, status) in &cases {
        let line = malformed(&app, head).await;
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status}")),
            "{status}: got {line:?}"
        );
    }
    let m = app.metrics().await;
    let total: f64 = m
        .lines()
        .filter(|l| l.starts_with("http_server_rejected_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(total, cases.len() as f64, "{m}");
    assert!(
        m.contains(r#"http_server_rejected_requests_total{reason="too_large"} 3"#),
        "{m}"
    );
    // Still serving.
    assert_eq!(app.get("/health/live").await.status, 200);
    assert_eq!(app.db.count_credentials().await, 0);
}
