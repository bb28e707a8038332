//! Verification from a read replica (issue 20, item 3), against a private
//! primary and a private streaming replica of it (`pg_basebackup -R`, both
//! temporary directories on free ports; the shared server is not touched):
//!
//! - a credential issued a moment ago is verified 200 through the task that
//!   reads from the replica;
//! - under load most reads land on the replica (`db_reads_total`);
//! - with the replica's replay paused, a new credential is still 200 (the
//!   primary answers) and one revoked on the primary meanwhile is 404 revoked,
//!   never 200 from the replica's stale row; `/health` says `replica: lagging`;
//! - with the replica stopped, verification keeps answering 200, never 503,
//!   and `/health` stays 200 with `replica: down`;
//! - without one, every read counts as the primary's (`no_replica`) and
//!   `/health` says nothing of a replica.

use issuance::Issuance;
use kc_testing::fakes::PrivatePostgres;
use kc_testing::{connect, spawn_app_with, TestApp, TestDb};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use verification::Verification;

const ISSUE: &str = "/issuance/credentials";
const VERIFY: &str = "/verification/credentials";
const HBA: &str =
    "local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication postgres 127.0.0.1/32 trust\n";

/// Requests answered from `target` with `fallback` so far, from `/metrics`.
fn reads(metrics: &str, target: &str, fallback: &str) -> u64 {
    let series = format!("db_reads_total{{target=\"{target}\",fallback=\"{fallback}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// (from the replica, from the primary for any reason) so far.
async fn landed(app: &TestApp) -> (u64, u64) {
    let metrics = app.metrics().await;
    let primary = [
        "no_replica",
        "replica_down",
        "replica_lagging",
        "replica_behind",
        "replica_error",
    ]
    .iter()
    .map(|why| reads(&metrics, "primary", why))
    .sum();
    (reads(&metrics, "replica", "none"), primary)
}

/// Waits up to `within` for `/health`'s `replica` to say `want`.
async fn replica_health(app: &TestApp, want: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let health = app.get("/health").await;
        let body = health.json();
        if body["replica"] == want {
            assert_eq!(health.status, 200, "the primary is up: {body}");
            return;
        }
        assert!(
            started.elapsed() < within,
            "replica never {want} within {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn issue(app: &TestApp, name: &str) -> String {
    let res = app
        .post_json(
            ISSUE,
            &json!({ "name": name, "email": "r@example.com", "credentialType": "t" }),
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    res.json()["credential"]["id"].as_str().expect("an id").to_owned()
}

async fn verify(app: &TestApp, id: &str) -> (u16, Value) {
    let res = app.post_json(VERIFY, &json!({ "id": id })).await;
    (res.status.as_u16(), res.json())
}

/// `rounds` verifications of `ids` from `clients` concurrent clients; every answer must be 200.
async fn verify_all(app: &Arc<TestApp>, ids: &Arc<Vec<String>>, clients: usize, rounds: usize) {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (app, ids) = (app.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            for r in 0..rounds {
                let id = &ids[(c * rounds + r) % ids.len()];
                let (status, body) = verify(&app, id).await;
                assert_eq!(status, 200, "{id}: {body}");
            }
        }));
    }
    for task in tasks {
        task.await.expect("a client");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_reads_from_a_streaming_replica_and_answers_as_the_primary_would() {
    let primary = PrivatePostgres::start(None, HBA);
    let replica = primary.replica();
    let db = TestDb::new_on(&primary.url()).await;
    let issuer = spawn_app_with::<Issuance>(db.clone(), &[]).await;
    let read_url = replica.url();
    let verifier = Arc::new(
        spawn_app_with::<Verification>(
            db.clone(),
            &[
                ("DATABASE_READ_URL", read_url.as_str()),
                ("DB_READ_MAX_LAG_MS", "500"),
                ("CLIENT_RATE_LIMIT", "1000000"),
            ],
        )
        .await,
    );
    replica_health(&verifier, "up", Duration::from_secs(10)).await;

    // Issued a moment ago: 200, whether the replica had replayed it yet or not.
    let mut ids = Vec::new();
    for i in 0..20 {
        let id = issue(&issuer, &format!("holder {i}")).await;
        let (status, body) = verify(&verifier, &id).await;
        assert_eq!(status, 200, "just issued, {id}: {body}");
        ids.push(id);
    }

    // Under load (16 clients, 2,000 verifications, issuance going on beside
    // them), most reads land on the replica.
    let before = landed(&verifier).await;
    let ids = Arc::new(ids);
    let writes = tokio::spawn({
        let issuer = Arc::new(issuer);
        let handle = issuer.clone();
        async move {
            for i in 0..20 {
                issue(&handle, &format!("beside the load {i}")).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            issuer
        }
    });
    verify_all(&verifier, &ids, 16, 125).await;
    let issuer = writes.await.expect("the issuance beside the load");
    let after = landed(&verifier).await;
    let (on_replica, on_primary) = (after.0 - before.0, after.1 - before.1);
    eprintln!("under load: {on_replica} reads on the replica, {on_primary} on the primary");
    assert_eq!(on_replica + on_primary, 2000, "every read counted once");
    assert!(
        on_replica > 1000,
        "most reads on the replica: {on_replica} of 2000"
    );

    // Replay paused: the replica keeps answering its probe but falls behind.
    let standby = connect(&read_url).await;
    standby
        .simple_query("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    let fresh = issue(&issuer, "issued while replay is paused").await;
    let (status, body) = verify(&verifier, &fresh).await;
    assert_eq!(status, 200, "issued while the replica does not replay: {body}");
    // Verified 200 (from the replica) before; revoked on the primary now.
    let revoked = ids[0].clone();
    let res = issuer
        .post_json(
            &format!("{ISSUE}/{revoked}/revoke"),
            &json!({ "reason": "superseded" }),
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let (status, body) = verify(&verifier, &revoked).await;
    assert_eq!((status, &body["reason"]), (404, &json!("revoked")), "{body}");
    // The replica's own row still says valid: only the primary's answer counts.
    let stale = standby
        .query_one(
            &format!(
                "SELECT revoked_at IS NULL AS valid FROM {}.credentials WHERE id = $1::text::uuid",
                db.schema()
            ),
            &[&revoked],
        )
        .await
        .expect("the paused replica's row");
    assert!(
        stale.get::<_, bool>("valid"),
        "the paused replica has not replayed the revocation"
    );
    replica_health(&verifier, "lagging", Duration::from_secs(3)).await;
    let ids = Arc::new(ids[1..].to_vec());
    verify_all(&verifier, &ids, 4, 25).await;
    let (status, _) = verify(&verifier, &revoked).await;
    assert_eq!(status, 404, "still revoked while the replica lags");
    standby
        .simple_query("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume replay");
    replica_health(&verifier, "up", Duration::from_secs(5)).await;
    let (status, _) = verify(&verifier, &revoked).await;
    assert_eq!(status, 404, "revoked once the replica caught up");

    // The replica stops: verification keeps answering, never 503.
    drop(standby);
    let before = landed(&verifier).await;
    replica.stop();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        verify_all(&verifier, &ids, 4, 10).await;
    }
    replica_health(&verifier, "down", Duration::from_secs(2)).await;
    let after = landed(&verifier).await;
    assert_eq!(after.0, before.0, "nothing read from a stopped replica");
    assert!(after.1 > before.1, "the primary answered");
    let fresh = issue(&issuer, "issued while the replica is down").await;
    assert_eq!(verify(&verifier, &fresh).await.0, 200);
}

#[tokio::test]
async fn without_a_replica_every_read_is_counted_on_the_primary_and_health_says_nothing_of_one() {
    let issuer = kc_testing::spawn_app::<Issuance>().await;
    let verifier = spawn_app_with::<Verification>(issuer.db.clone(), &[]).await;
    let id = issue(&issuer, "no replica").await;
    for _ in 0..3 {
        assert_eq!(verify(&verifier, &id).await.0, 200);
    }
    let metrics = verifier.metrics().await;
    assert_eq!(reads(&metrics, "primary", "no_replica"), 3, "{metrics}");
    assert_eq!(reads(&metrics, "replica", "none"), 0);
    assert!(
        !metrics.contains("db_replica_up"),
        "no replica gauges without a replica"
    );
    let health = verifier.get("/health").await.json();
    assert!(health.get("replica").is_none(), "{health}");
}
