//! The issuance binary as ECS runs it: subcommands, and SIGTERM with a request in flight.

use kc_testing::TestDb;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_issuance");

fn command(db: &TestDb) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear();
    // Under cargo llvm-cov, where the binary writes its coverage profile.
    if let Ok(profile) = std::env::var("LLVM_PROFILE_FILE") {
        cmd.env("LLVM_PROFILE_FILE", profile);
    }
    cmd.env("DATABASE_URL", db.url())
        .env("PORT", "0")
        .env("METRICS_PORT", "0")
        .env("BIND_ADDR", "127.0.0.1")
        .env("WORKER_ID", "process-test")
        // These tests are about the process; tests/access.rs is about who may call.
        .env("AUTH_MODE", "off")
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd
}

type Logs = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// Starts the binary and returns it with the address from its "listening" log line.
async fn start(db: &TestDb) -> (Child, std::net::SocketAddr, Logs) {
    start_with(command(db)).await
}

/// Starts `cmd` (from [`command`]) like [`start`].
async fn start_with(mut cmd: Command) -> (Child, std::net::SocketAddr, Logs) {
    let mut child = cmd.spawn().expect("start the issuance binary");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let log: serde_json::Value = serde_json::from_str(&line).expect("every log line is JSON");
            assert_eq!(log["service"], "issuance");
            assert_eq!(log["worker_id"], "process-test");
            if log["message"] == "listening" {
                return log["addr"].as_str().unwrap().parse().unwrap();
            }
        }
        panic!("exited before listening");
    })
    .await
    .expect("no listening line");
    (child, addr, lines)
}

async fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

async fn wait_healthy(addr: std::net::SocketAddr) {
    for _ in 0..100 {
        if http(
            addr,
            "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .starts_with("HTTP/1.1 200")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not healthy");
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test]
async fn sigterm_lets_the_in_flight_request_finish_then_exits_0() {
    let db = TestDb::new().await;
    let (mut child, addr, mut logs) = start(&db).await;
    wait_healthy(addr).await;

    let body = r#"{"name":"In Flight","email":"flight@example.com","credentialType":"Drain"}"#;
    let (head, rest) = body.split_at(20);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("POST /issuance/credentials HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{head}", body.len())
                .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sigterm(&child);
    // Wait until the task says it stopped accepting, then finish the request.
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(line) = logs.next_line().await.unwrap() {
            if line.contains("stopped accepting") {
                return;
            }
        }
    })
    .await
    .expect("no 'stopped accepting' log line");
    // New connections are no longer accepted.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after SIGTERM"
    );
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");

    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("did not exit")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let stored = db.count_credentials().await;
    assert_eq!(stored, 1);
}

/// Reads log lines until `found` picks one; panics after 5 s.
async fn find_line<T>(logs: &mut Logs, found: impl Fn(&serde_json::Value) -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(line) = logs.next_line().await.unwrap() {
            let log: serde_json::Value = serde_json::from_str(&line).expect("every log line is JSON");
            if let Some(it) = found(&log) {
                return it;
            }
        }
        panic!("the log ended");
    })
    .await
    .expect("no such log line")
}

#[tokio::test]
async fn access_lines_carry_the_trace_id_and_metrics_have_a_port_of_their_own() {
    let db = TestDb::new().await;
    let (_child, addr, mut logs) = start(&db).await;
    let metrics: std::net::SocketAddr = find_line(&mut logs, |log| {
        (log["message"] == "serving /metrics").then(|| log["addr"].as_str().unwrap().parse().unwrap())
    })
    .await;
    wait_healthy(addr).await;

    let root = "1-5759e988-bd862e3fe1be46a994272793";
    http(
        addr,
        &format!("GET /health/live HTTP/1.1\r\nHost: x\r\nX-Amzn-Trace-Id: Root={root};Sampled=1\r\nX-Request-Id: alb-1\r\nConnection: close\r\n\r\n"),
    )
    .await;
    http(
        addr,
        "GET /health/live HTTP/1.1\r\nHost: x\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX-Request-Id: w3c-1\r\nConnection: close\r\n\r\n",
    )
    .await;
    for (request_id, trace_id) in [("alb-1", root), ("w3c-1", "4bf92f3577b34da6a3ce929d0e0e4736")] {
        let line = find_line(&mut logs, |log| {
            (log["target"] == "access" && log["request_id"] == request_id).then(|| log.clone())
        })
        .await;
        assert_eq!(line["trace_id"], trace_id, "{line}");
        assert_eq!(line["path"], "/health/live");
    }

    // /metrics answers on its own port, and not on the service's.
    let scrape = http(
        metrics,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
    assert!(scrape.contains("application/openmetrics-text"), "{scrape}");
    assert!(
        scrape.contains(r#"http_server_request_duration_seconds_count{http_route="/health/live",http_request_method="GET",http_response_status_code="200"} 2"#),
        "{scrape}"
    );
    assert!(scrape.contains("process_resident_memory_bytes "), "{scrape}");
    let public = http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(public.starts_with("HTTP/1.1 404"), "{public}");
}

#[tokio::test]
async fn migrate_applies_the_schema_once_and_exits() {
    let db = TestDb::new().await;
    for _ in 0..2 {
        let out = command(&db).arg("migrate").output().await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }
    let client = db.client().await;
    let versions: Vec<String> = client
        .query("SELECT version FROM schema_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        versions,
        [
            "001_create_credentials_table",
            "002_statement_deadline",
            "003_api_clients",
            "004_roles",
            "005_lifecycle",
            "006_idempotency"
        ]
    );
    let kind: String = client
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attrelid = 'credentials'::regclass AND attname = 'issued_at'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kind, "timestamp(3) with time zone");
}

#[tokio::test]
async fn migrate_fails_with_a_clear_exit_code_when_the_database_is_unreachable() {
    let db = TestDb::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = command(&db)
        .env(
            "DATABASE_URL",
            format!("postgres://postgres:topsecret@127.0.0.1:{port}/test"),
        )
        .env("DB_CONNECT_TIMEOUT_MS", "500")
        .arg("migrate")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("migration failed"), "{text}");
    assert!(
        !text.contains("topsecret"),
        "the password leaked into the log: {text}"
    );
}

#[tokio::test]
async fn bad_configuration_names_the_variable_and_exits_2() {
    let db = TestDb::new().await;
    let out = command(&db).env("DB_POOL_SIZE", "lots").output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DB_POOL_SIZE"));
}

#[tokio::test]
async fn version_and_healthcheck_subcommands() {
    let out = Command::new(BIN).arg("--version").output().await.unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("issuance {}", env!("CARGO_PKG_VERSION"))
    );

    let db = TestDb::new().await;
    let (mut child, addr, _logs) = start(&db).await;
    let check = |port: u16| async move {
        Command::new(BIN)
            .arg("healthcheck")
            .env("PORT", port.to_string())
            .status()
            .await
            .unwrap()
    };
    assert!(check(addr.port()).await.success());
    sigterm(&child);
    child.wait().await.unwrap();
    assert_eq!(check(addr.port()).await.code(), Some(1));
}

#[tokio::test]
async fn help_and_unknown_commands() {
    let out = Command::new(BIN).arg("--help").output().await.unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.starts_with("usage: issuance [serve|migrate|clients|healthcheck|--version|--help]"),
        "{help}"
    );
    let out = Command::new(BIN).arg("frobnicate").output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown command \"frobnicate\"") && err.contains("usage: issuance"),
        "{err}"
    );
}

#[tokio::test]
async fn a_taken_port_stops_the_task_but_a_taken_metrics_port_does_not() {
    let db = TestDb::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = command(&db).env("PORT", &port).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cannot listen"));

    // Metrics are not what the task is for: without their port it still serves.
    let mut child = command(&db).env("METRICS_PORT", &port).spawn().unwrap();
    let mut logs = BufReader::new(child.stdout.take().unwrap()).lines();
    find_line(&mut logs, |log| {
        (log["level"] == "error" && log["message"].as_str().is_some_and(|m| m.contains("/metrics")))
            .then_some(())
    })
    .await;
    let addr: std::net::SocketAddr = find_line(&mut logs, |log| {
        (log["message"] == "listening").then(|| log["addr"].as_str().unwrap().parse().unwrap())
    })
    .await;
    wait_healthy(addr).await;
    let live = http(
        addr,
        "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
}

#[tokio::test]
async fn with_metrics_emf_seconds_the_task_writes_cloudwatch_metric_lines() {
    let db = TestDb::new().await;
    let mut cmd = command(&db);
    cmd.env("METRICS_EMF_SECONDS", "1");
    let (_child, addr, mut logs) = start_with(cmd).await;
    wait_healthy(addr).await;
    let body = r#"{"name":"Ada","email":"ada@example.com","credentialType":"degree"}"#;
    let created = http(
        addr,
        &format!(
            "POST /issuance/credentials HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    // The first line after the request counts it (with the health checks).
    let line = find_line(&mut logs, |log| {
        (log["_aws"].is_object() && log["Requests"].as_f64().is_some_and(|n| n >= 1.0)).then(|| log.clone())
    })
    .await;
    let declared = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(declared["Namespace"], "KubeCredential");
    assert_eq!(declared["Dimensions"], serde_json::json!([["Service"]]));
    assert_eq!(line["Service"], "issuance");
    assert_eq!(line["WorkerId"], "process-test");
    assert_eq!(line["DbUp"], 1);
    assert!(line["LatencyP99"].as_f64().is_some_and(|ms| ms > 0.0), "{line}");
    // Every figure in the line is declared, and every declared one is there.
    for metric in declared["Metrics"].as_array().unwrap() {
        let name = metric["Name"].as_str().unwrap();
        assert!(line[name].is_number(), "{name} declared but missing: {line}");
    }
}
