//! Database faults and overload, injected through a TCP proxy the test controls
//! (cut = the database is gone; frozen = it holds every byte, like a server
//! stopped with SIGSTOP), against the real PostgreSQL. Each promise of
//! docs/RELIABILITY.md that a single task can show in-process is tested here;
//! the figures under load are the fault suite's (faults/).

use issuance::Issuance;
use kc_testing::fakes::TcpProxy;
use kc_testing::{spawn_app_with, TestApp, TestDb};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATH: &str = "/issuance/credentials";

fn credential(name: &str) -> serde_json::Value {
    json!({ "name": name, "email": "fault@example.com", "credentialType": "t" })
}

/// A task whose database connections go through `proxy`, with a pooled
/// connection open (so a statement is sent, not stuck connecting).
async fn behind(proxy: &TcpProxy, vars: &[(&str, &str)]) -> TestApp {
    let db = TestDb::new().await;
    let url = db.url_via(proxy.addr);
    let mut env = vec![("DATABASE_URL", url.as_str()), ("DB_CONNECT_TIMEOUT_MS", "500")];
    env.extend_from_slice(vars);
    let app = spawn_app_with::<Issuance>(db, &env).await;
    assert_eq!(app.post_json(PATH, &credential("warm-up")).await.status, 201);
    app
}

async fn stored(app: &TestApp, name: &str) -> bool {
    let row = app
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM credentials WHERE name = $1", &[&name])
        .await
        .expect("count");
    row.get::<_, i64>(0) == 1
}

/// Makes every INSERT statement in the test's schema take `seconds` longer,
/// after its rows are in.
async fn slow_inserts(app: &TestApp, seconds: f64) {
    app.db
        .client()
        .await
        .batch_execute(&format!(
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$;
             CREATE TRIGGER slow AFTER INSERT ON credentials FOR EACH STATEMENT EXECUTE FUNCTION slow();"
        ))
        .await
        .expect("slow trigger");
}

/// Polls `/health` until its `database` is `want`; returns how long that took.
async fn health_turns(app: &TestApp, want: &str, within: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        let asked = Instant::now();
        let res = app.get("/health").await;
        // Answered from the last probe, never by waiting for the database.
        assert!(
            asked.elapsed() < Duration::from_millis(100),
            "/health took {:?}",
            asked.elapsed()
        );
        if res.json()["database"] == want {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("/health did not turn {want} within {within:?}");
}

#[tokio::test]
async fn while_the_database_is_gone_requests_get_503_in_milliseconds_and_the_first_after_it_is_back_succeeds()
{
    let proxy = TcpProxy::start().await;
    let app = behind(&proxy, &[]).await;

    proxy.cut();
    // The first request finds out (its connection is gone); the rest are told at once.
    let first = app.post_json(PATH, &credential("finds out")).await;
    assert_eq!(first.status, 503);
    let mut slowest = Duration::ZERO;
    for n in 0..20 {
        let started = Instant::now();
        let res = app.post_json(PATH, &credential(&format!("during {n}"))).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(res.status, 503);
        assert_eq!(res.header("retry-after"), Some("1"));
    }
    assert!(slowest < Duration::from_millis(50), "a 503 took {slowest:?}");
    health_turns(&app, "down", Duration::from_secs(1)).await;
    assert_eq!(app.get("/health/live").await.status, 200);

    proxy.restore();
    let back = Instant::now();
    loop {
        let res = app.post_json(PATH, &credential("after")).await;
        if res.status == 201 {
            break;
        }
        assert_eq!(res.status, 503);
        assert!(
            back.elapsed() < Duration::from_secs(1),
            "no 201 within 1 s of the database's return"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    health_turns(&app, "up", Duration::from_secs(1)).await;
    for n in 0..20 {
        assert!(!stored(&app, &format!("during {n}")).await, "a 503 was stored");
    }
}

#[tokio::test]
async fn health_turns_down_within_a_second_of_a_freeze_and_up_within_a_second_of_the_thaw() {
    let proxy = TcpProxy::start().await;
    let app = behind(&proxy, &[]).await;
    proxy.freeze();
    let down = health_turns(&app, "down", Duration::from_secs(1)).await;
    proxy.thaw();
    let up = health_turns(&app, "up", Duration::from_secs(1)).await;
    eprintln!("frozen: down after {down:?}; thawed: up after {up:?}");
}

#[tokio::test]
async fn a_statement_the_server_gets_after_its_deadline_stores_nothing() {
    // The INSERT is sent, then held (the server is "frozen" with it in its
    // socket) until well after the task has answered 503.
    let proxy = TcpProxy::start().await;
    let app = behind(&proxy, &[("DB_STATEMENT_TIMEOUT_MS", "300")]).await;
    proxy.freeze();
    let started = Instant::now();
    let res = app.post_json(PATH, &credential("held")).await;
    let waited = started.elapsed();
    assert_eq!(res.status, 503);
    // The statement timeout plus its grace (capped at the timeout), well under a second.
    assert!(waited < Duration::from_millis(900), "{waited:?}");
    proxy.thaw();
    // The held statement reaches the server now; give it time to run.
    health_turns(&app, "up", Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !stored(&app, "held").await,
        "stored after its client was told 503"
    );
    assert_eq!(app.post_json(PATH, &credential("later")).await.status, 201);
}

#[tokio::test]
async fn the_server_cancels_a_statement_that_runs_past_the_statement_timeout() {
    let app = spawn_app_with::<Issuance>(TestDb::new().await, &[("DB_STATEMENT_TIMEOUT_MS", "300")]).await;
    // Slow after the rows are in (past the deadline checks): only the server's
    // own statement_timeout can stop it from committing.
    slow_inserts(&app, 1.5).await;
    let started = Instant::now();
    let res = app.post_json(PATH, &credential("slow")).await;
    assert_eq!(res.status, 503);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(
        !stored(&app, "slow").await,
        "committed after its client was told 503"
    );
}

/// Sends a request over a raw connection and returns the connection unread.
async fn send_raw(app: &TestApp, body: &serde_json::Value) -> tokio::net::TcpStream {
    let body = body.to_string();
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    let request = format!(
        "POST {PATH} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    stream
}

#[tokio::test]
async fn a_request_whose_client_disconnects_while_it_waits_is_never_stored() {
    let proxy = TcpProxy::start().await;
    let app = Arc::new(behind(&proxy, &[("DB_QUEUE_TIMEOUT_MS", "10000")]).await);
    proxy.freeze();
    // The lane is busy with this one, held by the frozen database...
    let busy = tokio::spawn({
        let app = app.clone();
        async move { app.post_json(PATH, &credential("in flight")).await.status }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...so this one waits in the queue; then its client goes away.
    let waiting = send_raw(&app, &credential("gone")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(waiting);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Thawed before the monitor gives the database up: the lane carries on.
    proxy.thaw();
    assert_eq!(busy.await.unwrap(), 201);
    assert_eq!(app.post_json(PATH, &credential("next")).await.status, 201);
    assert!(
        !stored(&app, "gone").await,
        "a request whose client left was stored"
    );
}

#[tokio::test]
async fn past_the_queue_bound_requests_get_503_at_once_and_are_never_sent() {
    let app = Arc::new(
        spawn_app_with::<Issuance>(
            TestDb::new().await,
            &[
                ("DB_QUEUE_MAX", "2"),
                ("DB_BATCH_MAX", "1"),
                ("DB_QUEUE_TIMEOUT_MS", "5000"),
            ],
        )
        .await,
    );
    // Each statement takes 200 ms: one in flight, two waiting, the rest shed.
    slow_inserts(&app, 0.2).await;
    let mut tasks = Vec::new();
    for n in 0..10 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let res = app.post_json(PATH, &credential(&format!("burst {n}"))).await;
            (n, res.status.as_u16(), started.elapsed())
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut created = 0;
    for t in tasks {
        let (n, status, took) = t.await.unwrap();
        match status {
            201 => {
                created += 1;
                assert!(stored(&app, &format!("burst {n}")).await);
            }
            503 => {
                assert!(took < Duration::from_millis(100), "a shed request took {took:?}");
                assert!(
                    !stored(&app, &format!("burst {n}")).await,
                    "a shed request was stored"
                );
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!(created, 3, "one in flight and two queued");
    // Counted as shed, by reason.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"db_shed_requests_total{reason="queue_full"} 7"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn at_max_connections_a_new_one_waits_until_an_idle_one_is_reclaimed() {
    // No test client: every connection here is the test's own.
    let app = kc_testing::start::<Issuance>(TestDb::new().await, &[("MAX_CONNECTIONS", "2")]).await;
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut c = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        assert!(exchange(&mut c, LIVE).await.starts_with("http/1.1 200"));
        idle.push(c);
    }
    let started = Instant::now();
    let mut waiting = past_the_cap(&app).await;
    let mut head = [0u8; 12];
    // Nobody sends on the two: one idle for RECLAIM_IDLE is closed to make room.
    tokio::time::timeout(Duration::from_secs(3), waiting.read_exact(&mut head))
        .await
        .expect("answered once an idle connection was reclaimed")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(
        started.elapsed() >= RECLAIM_AFTER - Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    let mut closed = 0;
    for c in &mut idle {
        let mut rest = Vec::new();
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(100), c.read_to_end(&mut rest)).await {
            closed += 1;
        }
    }
    assert!(closed >= 1, "no idle connection was closed");
}

/// Opens a connection past the task's cap and sends a request on it; checks it
/// is held (in the kernel's backlog, or waiting for a slot), not answered.
#[tokio::test]
async fn at_max_connections_slow_heads_are_reclaimed_too() {
    // Twenty connections that each sent one byte of a head and stopped: a
    // slowloris. A fresh request must not wait for their header timeout (10 s).
    let app = kc_testing::start::<Issuance>(TestDb::new().await, &[("MAX_CONNECTIONS", "20")]).await;
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut c = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        c.write_all(b"G").await.unwrap();
        slow.push(c);
    }
    tokio::time::sleep(RECLAIM_AFTER + Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut fresh = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(1), exchange(&mut fresh, LIVE))
        .await
        .expect("a fresh request waited more than 1 s behind slow heads");
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

async fn past_the_cap(app: &TestApp) -> tokio::net::TcpStream {
    let mut waiting = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    waiting.write_all(LIVE.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), waiting.read_exact(&mut head))
            .await
            .is_err(),
        "answered past MAX_CONNECTIONS"
    );
    waiting
}

/// A keep-alive request for the liveness check.
const LIVE: &str = "GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n";

/// Sends `request` on `stream` and reads one whole response (head and
/// Content-Length body); returns it as text, head lower-cased.
async fn exchange(stream: &mut tokio::net::TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(
            n > 0,
            "closed before a whole response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn at_max_connections_responses_close_their_connection_so_waiting_ones_get_in() {
    // No test client: every connection here is the test's own.
    let app = kc_testing::start::<Issuance>(TestDb::new().await, &[("MAX_CONNECTIONS", "2")]).await;
    let mut first = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    assert!(exchange(&mut first, LIVE).await.starts_with("http/1.1 200"));
    let mut second = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let answer = exchange(&mut second, LIVE).await;
    assert!(
        !answer.contains("connection: close"),
        "closed below the cap: {answer}"
    );
    let mut waiting = past_the_cap(&app).await;
    let mut head = [0u8; 12];
    // A busy keep-alive connection at the cap is told to close after its response...
    let started = Instant::now();
    let answer = exchange(&mut first, LIVE).await;
    assert!(answer.contains("connection: close"), "{answer}");
    let mut rest = Vec::new();
    let _ = first.read_to_end(&mut rest).await;
    // ...and the waiting one gets its slot long before an idle one would be reclaimed.
    tokio::time::timeout(Duration::from_millis(500), waiting.read_exact(&mut head))
        .await
        .expect("the waiting connection got in")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(started.elapsed() < RECLAIM_AFTER, "{:?}", started.elapsed());
}

/// How long an idle connection may sit at the cap before it is closed (`RECLAIM_IDLE`).
const RECLAIM_AFTER: Duration = Duration::from_secs(1);
