//! The five scenarios. Each starts a PostgreSQL server of its own (initdb into
//! a temporary directory, a free port), the release binaries against it with
//! authentication on (`AUTH_MODE=required`, the default: the load sends keys of
//! clients the scenario made, see clients.rs), and open-loop load; injects its
//! fault; and records its figures.

use crate::clients::{self, UNLIMITED};
use crate::load::{self, Sample, Shape, Stream, FAILED, TIMED_OUT};
use crate::report::{ms, quantile, statuses, Report};
use crate::retry::{self, Retrying};
use crate::task::Task;
use crate::Suite;
use kc_core::auth::Role;
use kc_testing::fakes::{PgBouncer, PrivatePostgres, Upstream};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The suite's servers trust loopback.
const HBA: &str = "local all all trust\nhost all all 127.0.0.1/32 trust\n";
/// The client's own limit, as k6's default: past it a request counts as timed out.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The tasks run with the default DB_STATEMENT_TIMEOUT_MS.
const STATEMENT_TIMEOUT: Duration = Duration::from_millis(5000);
/// The tasks run with the default DB_BATCH_MAX and DB_BATCH_LANES: at most this
/// many requests are in a statement when the database stalls.
const IN_FLIGHT_MAX: usize = 128;
/// Enough clients to keep one lane busy with full statements of the default
/// DB_BATCH_MAX (128) without overflowing the default DB_QUEUE_MAX (256).
const FULL_LOAD_CLIENTS: usize = 192;
const ISSUE: &str = "/issuance/credentials";
const VERIFY: &str = "/verification/credentials";

/// Makes the suite's database the bottleneck, deterministically: each INSERT
/// statement sleeps 0.12 ms per row it inserted (about 6,500 rows a second). On two shared cores the load
/// generator could not otherwise outrun one task three times over; sleeping
/// (not burning CPU) keeps the database's capacity independent of the noise.
const SLOW_ROWS: &str = "
CREATE FUNCTION fault_slow_rows() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_sleep((SELECT count(*) FROM new_rows) * 0.00012); RETURN NULL; END $$;
CREATE TRIGGER fault_slow_rows AFTER INSERT ON credentials
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION fault_slow_rows();";

fn server() -> (PrivatePostgres, String) {
    let server = tokio::task::block_in_place(|| PrivatePostgres::start(None, HBA));
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port);
    (server, url)
}

/// With `FAULTS_POOLER=pgbouncer`, a PgBouncer in transaction mode in front of
/// `server` that the task connects through (with `DB_POOLER=transaction`); the
/// suite itself still reads and writes the server directly.
fn pooler(server: &PrivatePostgres) -> Option<PgBouncer> {
    if std::env::var("FAULTS_POOLER").ok().as_deref() != Some("pgbouncer") {
        return None;
    }
    let upstream = Upstream {
        host: "127.0.0.1",
        port: server.port,
        dbname: "postgres",
        password: None,
        search_path: None,
    };
    let bouncer = tokio::task::block_in_place(|| PgBouncer::start(&upstream, false));
    assert!(
        bouncer.is_some(),
        "FAULTS_POOLER=pgbouncer: pgbouncer is not installed"
    );
    bouncer
}

/// Issuance bodies: a new credential per number, named after the run.
fn issue_body(run: &'static str) -> impl Fn(u64) -> String + Send + Sync + 'static {
    move |seq| {
        format!(
            r#"{{"name":"{run}-{seq}","email":"f{seq}@example.com","credentialType":"fault","metadata":{{"seq":{seq}}}}}"#
        )
    }
}

async fn at(start: Instant, offset: Duration) {
    tokio::time::sleep_until((start + offset).into()).await;
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// An issuer named `name` (every type, a rate limit no scenario reaches) that
/// `task` accepts; its key.
async fn issuer(url: &str, task: &Task, name: &str) -> String {
    clients::add(url, task, ISSUE, name, Role::Issuer, UNLIMITED).await
}

/// The numbers of the requests of `stream` answered 201.
fn created(samples: &[Sample], stream: usize) -> HashSet<u64> {
    samples
        .iter()
        .filter(|s| s.stream == stream && s.status == 201)
        .map(|s| s.seq)
        .collect()
}

/// The numbers of the credentials stored for `run`.
async fn stored(url: &str, run: &str) -> HashSet<u64> {
    let client = kc_testing::connect(url).await;
    client
        .query(
            "SELECT name::text FROM credentials WHERE name LIKE $1",
            &[&format!("{run}-%")],
        )
        .await
        .expect("read the stored names")
        .iter()
        .filter_map(|row| row.get::<_, &str>(0).rsplit('-').next()?.parse().ok())
        .collect()
}

/// Every request got an answer from the task, and none a 5xx but 503.
fn none_lost(r: &mut Report, scenario: &'static str, samples: &[Sample]) {
    let lost = samples
        .iter()
        .filter(|s| s.status == TIMED_OUT || s.status == FAILED || (s.status >= 500 && s.status != 503))
        .count();
    r.check(
        scenario,
        "client timeouts (10 s), failed connections, 5xx but 503",
        lost,
        "0",
        lost == 0,
    );
}

/// Every 201 of `stream` (whose bodies are named after `run`) is a stored row;
/// returns the numbers answered 201 and stored.
async fn all_stored(
    r: &mut Report,
    scenario: &'static str,
    samples: &[Sample],
    (url, stream, run): (&str, usize, &str),
) -> (HashSet<u64>, HashSet<u64>) {
    let (created, stored) = (created(samples, stream), stored(url, run).await);
    let missing = created.difference(&stored).count();
    let what = if stream == 0 {
        "201s not stored".to_owned()
    } else {
        format!("201s not stored (stream {stream})")
    };
    r.check(scenario, &what, missing, "0", missing == 0);
    (created, stored)
}

/// The p99 latency of `samples` is at most `limit_ms` (none: a miss).
fn p99_within<'a>(
    r: &mut Report,
    scenario: &'static str,
    what: &str,
    samples: impl IntoIterator<Item = &'a Sample>,
    limit_ms: u64,
) {
    let p99 = quantile(samples, 0.99);
    r.check(
        scenario,
        what,
        ms(p99),
        &format!("≤ {limit_ms} ms"),
        p99.is_some_and(|d| d <= Duration::from_millis(limit_ms)),
    );
}

/// The task did not crash.
fn still_running(r: &mut Report, scenario: &'static str, task: &mut Task) {
    let alive = task.alive();
    r.check(scenario, "task still running", alive, "true", alive);
}

fn of(samples: &[Sample], stream: usize) -> impl Iterator<Item = &Sample> {
    samples.iter().filter(move |s| s.stream == stream)
}

/// The database stops (as a crash would: `pg_ctl stop -m immediate`) for 4 s
/// under 1,000 issuances and 500 verifications a second, then comes back.
pub async fn down(suite: &mut Suite) {
    const S: &str = "down";
    let (server, url) = server();
    let info = [("LOG_LEVEL", "info")];
    let issuance = Task::start(&suite.bin("issuance"), &url, &info, &suite.log("down-issuance")).await;
    let verification = Task::start(
        &suite.bin("verification"),
        &url,
        &info,
        &suite.log("down-verification"),
    )
    .await;
    let issuer = issuer(&url, &issuance, "fault-issuer").await;
    let verifier = clients::add(
        &url,
        &verification,
        VERIFY,
        "fault-verifier",
        Role::Verifier,
        UNLIMITED,
    )
    .await;
    let streams = vec![
        Stream::post(
            issuance.addr,
            ISSUE,
            Shape::Open { per_second: 1000.0 },
            issue_body(S),
        )
        .with_key(&issuer),
        Stream::post(
            verification.addr,
            VERIFY,
            Shape::Open { per_second: 500.0 },
            |seq| format!(r#"{{"id":"00000000-0000-4000-8000-{seq:012x}"}}"#),
        )
        .with_key(&verifier),
    ];
    let start = Instant::now();
    let load = tokio::spawn(load::run(streams, start, secs(12), CLIENT_TIMEOUT));
    at(start, secs(3)).await;
    tokio::task::block_in_place(|| server.stop());
    let stopped = start.elapsed();
    at(start, secs(7)).await;
    let restarting = start.elapsed();
    tokio::task::block_in_place(|| server.restart());
    let back = start.elapsed();
    let samples = load.await.expect("the load ran");

    let r = &mut suite.report;
    r.note(
        S,
        "database down (stopped → restart begun)",
        format!("{:.2} s", (restarting - stopped).as_secs_f64()),
    );
    let while_down: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.sent >= stopped && s.answered() <= restarting)
        .collect();
    let refused = while_down.iter().filter(|s| s.status == 503).count();
    r.all(
        S,
        "answers while down that are 503 (both services)",
        refused,
        while_down.len(),
    );
    p99_within(
        r,
        S,
        "p99 of the answers while down",
        while_down.iter().copied(),
        50,
    );
    for (stream, what, ok) in [
        (0, "first 201 after the database is back", 201),
        (1, "first 404 (verified) after it is back", 404),
    ] {
        let first = of(&samples, stream)
            .filter(|s| s.status == ok && s.sent >= back)
            .map(|s| s.answered() - back)
            .min();
        r.check(
            S,
            what,
            ms(first),
            "≤ 1000 ms",
            first.is_some_and(|d| d <= secs(1)),
        );
    }
    all_stored(r, S, &samples, (&url, 0, S)).await;
    none_lost(r, S, &samples);
    r.note(S, "issuance answers", statuses(of(&samples, 0)));
    r.note(S, "verification answers", statuses(of(&samples, 1)));
    issuance.stop().await;
    verification.stop().await;
}

/// Clients that retry their 503s with the same Idempotency-Key during the
/// frozen scenario: how many, and how often each starts a new credential.
const RETRYING_CLIENTS: usize = 50;
const RETRYING_EVERY: Duration = Duration::from_millis(100);

/// The database is frozen with SIGSTOP for 15 s (connections stay open, nothing
/// answers) under 3,000 issuances a second, then resumes. Beside the load, 50
/// clients of their own issue 500 credentials a second, each with an
/// Idempotency-Key, and retry every 503 with the same key until it is answered.
pub async fn frozen(suite: &mut Suite) {
    const S: &str = "frozen";
    let (server, url) = server();
    let bouncer = pooler(&server);
    let (task_url, mut vars) = match &bouncer {
        Some(b) => (b.url(), vec![("DB_POOLER", "transaction")]),
        None => (url.clone(), Vec::new()),
    };
    vars.push(("LOG_LEVEL", "info"));
    let mut issuance = Task::start(
        &suite.bin("issuance"),
        &task_url,
        &vars,
        &suite.log("frozen-issuance"),
    )
    .await;
    if bouncer.is_some() {
        suite
            .report
            .note(S, "through", "PgBouncer, transaction mode, DB_POOLER=transaction");
    }
    let key = issuer(&url, &issuance, "fault-issuer").await;
    let retrying = Arc::new(Retrying {
        addr: issuance.addr,
        path: ISSUE,
        key: issuer(&url, &issuance, "fault-retrier").await,
        body: Arc::new(issue_body("idem")),
        clients: RETRYING_CLIENTS,
        every: RETRYING_EVERY,
        give_up: secs(60),
        timeout: CLIENT_TIMEOUT,
    });
    let streams = vec![Stream::post(
        issuance.addr,
        ISSUE,
        Shape::Open { per_second: 3000.0 },
        issue_body(S),
    )
    .with_key(&key)];
    let start = Instant::now();
    let load = tokio::spawn(load::run(streams, start, secs(23), CLIENT_TIMEOUT));
    let retried = tokio::spawn(retry::run(retrying, start, secs(23)));
    at(start, secs(3)).await;
    server.freeze();
    let froze = start.elapsed();
    at(start, secs(18)).await;
    server.thaw();
    let thawed = start.elapsed();
    let samples = load.await.expect("the load ran");
    let retried = retried.await.expect("the retrying clients ran");
    // Whatever the thawed server still runs, let it finish before counting rows.
    tokio::time::sleep(secs(1)).await;

    let r = &mut suite.report;
    still_running(r, S, &mut issuance);
    retried_once(r, S, &retried, &stored(&url, "idem").await);
    let rss = issuance.peak_rss_mb();
    r.check(
        S,
        "peak RSS",
        format!("{rss:.1} MB"),
        "≤ 64 MB",
        rss > 0.0 && rss <= 64.0,
    );
    let slowest = samples.iter().filter(|s| s.status >= 100).map(|s| s.took).max();
    let limit = STATEMENT_TIMEOUT + secs(1);
    r.check(
        S,
        "slowest answer",
        ms(slowest),
        "≤ statement timeout + 1 s = 6000 ms",
        slowest.is_some_and(|d| d <= limit),
    );
    none_lost(r, S, &samples);
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.sent >= froze && s.answered() <= thawed)
        .collect();
    r.note(S, "answers while frozen", statuses(during.iter().copied()));
    r.note(
        S,
        "503s while frozen: p50 / p99",
        format!(
            "{} / {}",
            ms(quantile(during.iter().copied(), 0.5)),
            ms(quantile(during.iter().copied(), 0.99))
        ),
    );
    let (created, stored) = all_stored(r, S, &samples, (&url, 0, S)).await;
    // Stored although answered 503: a commit under way when the server froze.
    let exceptions = stored.difference(&created).count();
    r.check(
        S,
        "rows stored beyond the 201s (commit-race exceptions)",
        exceptions,
        "≤ one statement (128)",
        exceptions <= IN_FLIGHT_MAX,
    );
    r.note(
        S,
        "201s answered / rows stored",
        format!("{} / {}", created.len(), stored.len()),
    );
    let first = samples
        .iter()
        .filter(|s| s.status == 201 && s.sent >= thawed)
        .map(|s| s.answered() - thawed)
        .min();
    r.check(
        S,
        "first 201 after the thaw",
        ms(first),
        "≤ 1000 ms",
        first.is_some_and(|d| d <= secs(1)),
    );
    issuance.stop().await;
}

/// The figures of the clients that retried their 503s with the same
/// Idempotency-Key (`retried`), given the numbers of their credentials stored.
fn retried_once(r: &mut Report, scenario: &'static str, retried: &[retry::Issued], stored: &HashSet<u64>) {
    let attempts: usize = retried.iter().map(|c| c.answers.len()).sum();
    let answers = retried.iter().flat_map(|c| &c.answers);
    let retries = retried.iter().filter(|c| c.answers.len() > 1).count();
    r.note(
        scenario,
        "retrying clients (Idempotency-Key): credentials / attempts / credentials retried",
        format!("{} / {attempts} / {retries}", retried.len()),
    );
    let mut counts = std::collections::BTreeMap::new();
    for a in answers.clone() {
        *counts.entry(a.status).or_insert(0u64) += 1;
    }
    r.note(
        scenario,
        "retrying clients: answers",
        counts
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let once = retried.iter().filter(|c| c.one_201()).count();
    r.all(
        scenario,
        "retrying clients: credentials that end with exactly one 201",
        once,
        retried.len(),
    );
    let conflicts = answers.clone().filter(|a| a.status == 409).count();
    r.check(scenario, "retrying clients: 409s", conflicts, "0", conflicts == 0);
    let replays = answers.filter(|a| a.replayed).count();
    r.note(
        scenario,
        "retrying clients: 201s replayed (a 503'd statement had committed)",
        replays,
    );
    let sent: HashSet<u64> = retried.iter().map(|c| c.seq).collect();
    let (missing, extra) = (sent.difference(stored).count(), stored.difference(&sent).count());
    r.check(
        scenario,
        "retrying clients: credentials not stored exactly once (missing / extra)",
        format!("{missing} / {extra}"),
        "0 / 0",
        missing == 0 && extra == 0,
    );
}

/// Starts an issuance task on a fresh server whose inserts cost 0.12 ms a row.
async fn slow_database(suite: &Suite, name: &str) -> (PrivatePostgres, String, Task) {
    let (server, url) = server();
    let issuance = Task::start(
        &suite.bin("issuance"),
        &url,
        &[("LOG_LEVEL", "warn")],
        &suite.log(name),
    )
    .await;
    kc_testing::connect(&url)
        .await
        .batch_execute(SLOW_ROWS)
        .await
        .expect("the slow-rows trigger");
    (server, url, issuance)
}

/// Issuances answered 201 per second among `samples`, by answer time, in [from, to).
fn rate(samples: &[Sample], stream: usize, from: Duration, to: Duration) -> f64 {
    let n = of(samples, stream)
        .filter(|s| s.status == 201 && s.answered() >= from && s.answered() < to)
        .count();
    n as f64 / (to - from).as_secs_f64()
}

/// Issuances `task` answers 201 a second at full load: 192 clients sending
/// `key`, closed loop, for 6 s; the rate over the last 4.
async fn capacity(task: &Task, key: &str) -> f64 {
    let full = vec![Stream::post(
        task.addr,
        ISSUE,
        Shape::Closed {
            clients: FULL_LOAD_CLIENTS,
        },
        issue_body("capacity"),
    )
    .with_key(key)];
    let samples = load::run(full, Instant::now(), secs(6), CLIENT_TIMEOUT).await;
    rate(&samples, 0, secs(2), secs(6))
}

/// A healthy database at its limit: capacity is measured closed-loop, then the
/// task gets three times that, open-loop, for 20 s.
pub async fn overload(suite: &mut Suite) {
    const S: &str = "overload";
    let (_server, url, mut issuance) = slow_database(suite, "overload-issuance").await;
    let key = issuer(&url, &issuance, "fault-issuer").await;
    let capacity = capacity(&issuance, &key).await;
    let r = &mut suite.report;
    r.note(
        S,
        "capacity at 1× (192 clients, closed loop)",
        format!("{capacity:.0} 201/s"),
    );

    let offered = 3.0 * capacity;
    let start = Instant::now();
    let streams = vec![Stream::post(
        issuance.addr,
        ISSUE,
        Shape::Open { per_second: offered },
        issue_body(S),
    )
    .with_key(&key)];
    let samples = load::run(streams, start, secs(20), CLIENT_TIMEOUT).await;
    r.note(
        S,
        "offered (3×, open loop, 20 s)",
        format!("{offered:.0} requests/s"),
    );
    r.note(S, "answers", statuses(samples.iter()));
    let shed: Vec<&Sample> = samples.iter().filter(|s| s.status == 503).collect();
    p99_within(r, S, "p99 of the 503s", shed.iter().copied(), 50);
    let accepted = samples.iter().filter(|s| s.status == 201);
    p99_within(r, S, "p99 of the 201s", accepted, 100);
    let served = rate(&samples, 0, secs(2), secs(20));
    r.check(
        S,
        "201s per second (2-20 s) / capacity at 1×",
        format!("{served:.0} / {capacity:.0} = {:.2}", served / capacity),
        "≥ 0.80",
        served >= 0.8 * capacity,
    );
    none_lost(r, S, &samples);
    all_stored(r, S, &samples, (&url, 0, S)).await;
    r.note(S, "peak RSS", format!("{:.1} MB", issuance.peak_rss_mb()));
    still_running(r, S, &mut issuance);
    issuance.stop().await;
}

/// A value PostgreSQL's jsonb cannot store (`0.1e-400000`) in 100 requests a
/// second, mixed into full load (192 clients, closed loop) in every other 2-s
/// window; good throughput with and without it is compared within the run.
pub async fn poison(suite: &mut Suite) {
    const S: &str = "poison";
    const WINDOW: u64 = 2;
    const WINDOWS: u64 = 14;
    let (_server, url, issuance) = slow_database(suite, "poison-issuance").await;
    let key = issuer(&url, &issuance, "fault-issuer").await;
    let poisoned = |t: Duration| (t.as_secs() / WINDOW) % 2 == 1;
    let streams = vec![
        Stream::post(issuance.addr, ISSUE, Shape::Closed { clients: FULL_LOAD_CLIENTS }, issue_body(S)).with_key(&key),
        Stream::post(issuance.addr, ISSUE, Shape::Open { per_second: 100.0 }, |seq| {
            format!(r#"{{"name":"bad-{seq}","email":"p@example.com","credentialType":"fault","metadata":{{"tiny":0.1e-400000}}}}"#)
        })
        .with_key(&key)
        .when(poisoned),
    ];
    let start = Instant::now();
    let samples = load::run(streams, start, secs(WINDOW * WINDOWS), CLIENT_TIMEOUT).await;
    // The first window warms up; then clean and poisoned windows alternate.
    let (mut clean, mut dirty) = (Vec::new(), Vec::new());
    for w in 1..WINDOWS {
        let (from, to) = (secs(w * WINDOW), secs((w + 1) * WINDOW));
        let good = rate(&samples, 0, from, to);
        if poisoned(from) {
            dirty.push(good)
        } else {
            clean.push(good)
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (clean, dirty) = (mean(&clean), mean(&dirty));
    let r = &mut suite.report;
    r.check(
        S,
        "good 201/s with poison / without (mean of 2-s windows)",
        format!("{dirty:.0} / {clean:.0} = {:.3}", dirty / clean),
        "≥ 0.95",
        dirty >= 0.95 * clean,
    );
    let poison: Vec<&Sample> = of(&samples, 1).collect();
    let refused = poison.iter().filter(|s| s.status == 400).count();
    r.all(S, "poison requests answered 400", refused, poison.len());
    let stored_poison = stored(&url, "bad").await.len();
    r.check(S, "poison rows stored", stored_poison, "0", stored_poison == 0);
    none_lost(r, S, &samples);
    issuance.stop().await;
}

/// One client floods a task at its database's limit while another sends a
/// little (issue 16): capacity is measured as in `overload`, then client A
/// offers three times that and client B a tenth of it, open loop, for 20 s,
/// each with its own key and a rate limit neither reaches, so the only thing
/// between A's flood and B is the queue's rule: when it is full, the owner
/// holding the largest share is shed first.
pub async fn fairness(suite: &mut Suite) {
    const S: &str = "fairness";
    const DURATION: u64 = 20;
    let (_server, url, mut issuance) = slow_database(suite, "fairness-issuance").await;
    let flooder = issuer(&url, &issuance, "fault-flooder").await;
    let bystander = issuer(&url, &issuance, "fault-bystander").await;
    let capacity = capacity(&issuance, &flooder).await;
    let (a_rate, b_rate) = (3.0 * capacity, 0.1 * capacity);
    let streams = vec![
        Stream::post(
            issuance.addr,
            ISSUE,
            Shape::Open { per_second: a_rate },
            issue_body("fairness-a"),
        )
        .with_key(&flooder),
        Stream::post(
            issuance.addr,
            ISSUE,
            Shape::Open { per_second: b_rate },
            issue_body("fairness-b"),
        )
        .with_key(&bystander),
    ];
    let samples = load::run(streams, Instant::now(), secs(DURATION), CLIENT_TIMEOUT).await;

    let r = &mut suite.report;
    r.note(
        S,
        "capacity at 1× (192 clients, closed loop)",
        format!("{capacity:.0} 201/s"),
    );
    r.note(
        S,
        "offered, open loop, 20 s: A (3×) / B (0.1×)",
        format!("{a_rate:.0} / {b_rate:.0} requests/s"),
    );
    r.note(S, "A's answers", statuses(of(&samples, 0)));
    r.note(S, "B's answers", statuses(of(&samples, 1)));
    let b: Vec<&Sample> = of(&samples, 1).collect();
    let served = b.iter().filter(|s| s.status == 201).count();
    let share = served as f64 / b.len().max(1) as f64;
    r.check(
        S,
        "B's requests answered 201",
        format!("{served} of {} = {:.2} %", b.len(), 100.0 * share),
        "≥ 99 %",
        !b.is_empty() && share >= 0.99,
    );
    p99_within(r, S, "p99 of B's answers", b.iter().copied(), 100);
    let p99 = quantile(b.iter().copied().filter(|s| s.status == 201), 0.99);
    r.note(S, "p99 of B's 201s", ms(p99));
    let a: Vec<&Sample> = of(&samples, 0).collect();
    let shed = a.iter().filter(|s| s.status == 503 || s.status == 429).count();
    let answered = a.iter().filter(|s| s.status == 201).count() + shed;
    r.all(
        S,
        "A's answers that are 201, or 503/429 (shed)",
        answered,
        a.len(),
    );
    let shed_share = shed as f64 / a.len().max(1) as f64;
    r.check(
        S,
        "A's requests shed (503/429)",
        format!("{shed} of {} = {:.0} %", a.len(), 100.0 * shed_share),
        "≥ 50 % (A offers 3× capacity)",
        shed_share >= 0.5,
    );
    let p99 = quantile(a.iter().copied().filter(|s| s.status == 201), 0.99);
    r.note(S, "p99 of A's 201s", ms(p99));
    let total = rate(&samples, 0, secs(2), secs(DURATION)) + rate(&samples, 1, secs(2), secs(DURATION));
    r.note(
        S,
        "201/s, A and B (2-20 s) / capacity at 1×",
        format!("{total:.0} / {capacity:.0} = {:.2}", total / capacity),
    );
    none_lost(r, S, &samples);
    all_stored(r, S, &samples, (&url, 0, "fairness-a")).await;
    all_stored(r, S, &samples, (&url, 1, "fairness-b")).await;
    still_running(r, S, &mut issuance);
    issuance.stop().await;
}
