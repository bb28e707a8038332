//! The coalescer's own logic with a stand-in batch: numbers in, doubles
//! out, negative numbers refused as a database would refuse a bad value.
//! The real statements are tested against PostgreSQL in the service crates.

use super::*;
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::watch;

/// Hands out `()` as a connection, or an error once told to.
#[derive(Default)]
struct Conns {
    discarded: AtomicUsize,
    refuse: Mutex<Option<DbError>>,
}

impl Source for Arc<Conns> {
    type Conn = ();
    async fn get(&self) -> Result<(), DbError> {
        match self.refuse.lock().ok().and_then(|r| r.clone()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
    fn discard(&self, _conn: ()) {
        self.discarded.fetch_add(1, Ordering::SeqCst);
    }
}

struct Doubler {
    conns: Arc<Conns>,
    /// Every statement's items, recorded as it starts.
    runs: Arc<Mutex<Vec<Vec<i64>>>>,
    /// Statements wait while this is false.
    open: watch::Receiver<bool>,
    /// Returns one output too few.
    short: bool,
    /// Held by the lanes (through the coalescer's inner state), to see them end.
    _alive: Arc<()>,
}

impl Batch for Doubler {
    type Source = Arc<Conns>;
    type Item = i64;
    type Output = i64;

    async fn run(&self, _conn: &(), items: &[i64], _deadline: Deadline) -> Result<Vec<i64>, DbError> {
        if let Ok(mut runs) = self.runs.lock() {
            runs.push(items.to_vec());
        }
        let mut open = self.open.clone();
        let _ = open.wait_for(|open| *open).await;
        if items.iter().any(|n| *n < 0) {
            return Err(DbError::BadValue("negative".into()));
        }
        let skip = usize::from(self.short);
        Ok(items.iter().skip(skip).map(|n| n * 2).collect())
    }
}

struct Harness {
    coalescer: Arc<Coalescer<Doubler>>,
    monitor: Monitor,
    conns: Arc<Conns>,
    runs: Arc<Mutex<Vec<Vec<i64>>>>,
    gate: watch::Sender<bool>,
    alive: Arc<()>,
}

const LONG: Duration = Duration::from_secs(30);

fn limits() -> Limits {
    Limits {
        lanes: 1,
        batch_max: 256,
        queue_max: 256,
        queue_timeout: LONG,
        statement_timeout: LONG,
    }
}

fn harness(limits: Limits, open: bool, short: bool) -> Harness {
    let (gate, open_rx) = watch::channel(open);
    let conns = Arc::new(Conns::default());
    let runs = Arc::new(Mutex::new(Vec::new()));
    let alive = Arc::new(());
    let monitor = Monitor::new();
    let batch = Doubler {
        conns: conns.clone(),
        runs: runs.clone(),
        open: open_rx,
        short,
        _alive: alive.clone(),
    };
    let coalescer = Arc::new(Coalescer::new(
        batch.conns.clone(),
        monitor.clone(),
        Arc::default(),
        batch,
        limits,
    ));
    Harness {
        coalescer,
        monitor,
        conns,
        runs,
        gate,
        alive,
    }
}

impl Harness {
    fn submit(&self, n: i64) -> tokio::task::JoinHandle<Result<i64, DbError>> {
        let coalescer = self.coalescer.clone();
        tokio::spawn(async move { coalescer.submit(n).await })
    }

    fn submit_as(&self, owner: u64, n: i64) -> tokio::task::JoinHandle<Result<i64, DbError>> {
        let coalescer = self.coalescer.clone();
        tokio::spawn(async move { coalescer.submit_as(owner, n).await })
    }

    /// Submits `n` as `owner`'s and waits until it is queued.
    async fn queue_as(&self, owner: u64, n: i64) -> tokio::task::JoinHandle<Result<i64, DbError>> {
        let queued = self.coalescer.queued();
        let handle = self.submit_as(owner, n);
        self.settle(self.runs().len(), queued + 1).await;
        handle
    }

    /// Entries waiting, per owner, as the queue counts them.
    fn shares(&self) -> HashMap<u64, usize> {
        shares(&self.coalescer.inner)
    }

    fn runs(&self) -> Vec<Vec<i64>> {
        self.runs.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Waits until `statements` statements have started and `queued` requests wait.
    async fn settle(&self, statements: usize, queued: usize) {
        for _ in 0..1000 {
            if self.runs().len() == statements && self.coalescer.queued() == queued {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!(
            "expected {statements} statements and {queued} queued, got {:?} and {}",
            self.runs(),
            self.coalescer.queued()
        );
    }

    /// Starts a statement for one request and holds it there: the lane is busy.
    async fn plug(&self) -> tokio::task::JoinHandle<Result<i64, DbError>> {
        let plug = self.submit(1000);
        self.settle(1, 0).await;
        plug
    }
}

fn shed(result: Result<i64, DbError>) -> Option<Shed> {
    match result {
        Err(DbError::Shed(why)) => Some(why),
        _ => None,
    }
}

#[tokio::test]
async fn requests_that_arrive_during_a_statement_share_the_next_one() {
    let h = harness(limits(), false, false);
    let plug = h.plug().await;
    let waiting: Vec<_> = (0..100).map(|n| h.submit(n)).collect();
    h.settle(1, 100).await;
    h.gate.send_replace(true);
    assert_eq!(plug.await.unwrap().unwrap(), 2000);
    for (n, w) in waiting.into_iter().enumerate() {
        assert_eq!(w.await.unwrap().unwrap(), 2 * n as i64);
    }
    let runs = h.runs();
    assert_eq!(runs.len(), 2, "one statement for the plug, one for the hundred");
    assert_eq!(runs[1], (0..100).collect::<Vec<i64>>());
    assert_eq!(h.coalescer.stats().statements, 2);
}

#[tokio::test]
async fn a_full_queue_sheds_the_next_request_at_once() {
    let (h, plug) = three_places_behind_a_plug().await;
    let waiting: Vec<_> = (0..3).map(|n| h.submit(n)).collect();
    h.settle(1, 3).await;
    let started = Instant::now();
    assert_eq!(shed(h.coalescer.submit(99).await), Some(Shed::QueueFull));
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    h.gate.send_replace(true);
    plug.await.unwrap().unwrap();
    for w in waiting {
        w.await.unwrap().unwrap();
    }
    assert!(
        !h.runs().concat().contains(&99),
        "a shed request reached a statement"
    );
    assert_eq!(h.coalescer.stats().shed_queue_full, 1);
}

#[tokio::test]
async fn a_request_whose_statement_does_not_start_in_time_is_shed_and_never_run() {
    let timeout = Duration::from_millis(60);
    let h = harness(
        Limits {
            queue_timeout: timeout,
            ..limits()
        },
        false,
        false,
    );
    let plug = h.plug().await;
    let started = Instant::now();
    assert_eq!(shed(h.coalescer.submit(7).await), Some(Shed::QueueTimeout));
    let waited = started.elapsed();
    assert!(waited >= timeout && waited < timeout * 5, "{waited:?}");
    assert_eq!(h.coalescer.queued(), 0, "it left the queue");
    h.gate.send_replace(true);
    plug.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(h.runs(), [vec![1000]]);
    assert_eq!(h.coalescer.stats().shed_queue_timeout, 1);
}

#[tokio::test]
async fn a_request_whose_client_left_leaves_the_queue_and_is_never_run() {
    let h = harness(limits(), false, false);
    let plug = h.plug().await;
    let gone = h.submit(7);
    let stays = h.submit(8);
    h.settle(1, 2).await;
    gone.abort();
    let _ = gone.await;
    assert_eq!(h.coalescer.queued(), 1, "the aborted request left at once");
    h.gate.send_replace(true);
    plug.await.unwrap().unwrap();
    assert_eq!(stays.await.unwrap().unwrap(), 16);
    assert_eq!(h.runs(), [vec![1000], vec![8]]);
    assert_eq!(h.coalescer.stats().left_queue, 1);
}

#[tokio::test]
async fn while_the_database_is_down_requests_are_shed_and_queued_ones_answered() {
    let h = harness(limits(), false, false);
    let plug = h.plug().await;
    let queued = h.submit(5);
    h.settle(1, 1).await;
    h.monitor.report_down("test");
    let started = Instant::now();
    assert_eq!(shed(h.coalescer.submit(6).await), Some(Shed::DatabaseDown));
    assert!(started.elapsed() < Duration::from_millis(50));
    // The plug's statement finishes; the lane then answers the queue instead of running it.
    h.gate.send_replace(true);
    plug.await.unwrap().unwrap();
    assert_eq!(shed(queued.await.unwrap()), Some(Shed::DatabaseDown));
    assert_eq!(h.runs(), [vec![1000]]);
    // Back up: served again.
    h.monitor.report_up();
    assert_eq!(h.coalescer.submit(4).await.unwrap(), 8);
}

#[tokio::test]
async fn a_lane_waiting_for_a_connection_gives_up_when_the_database_goes_down() {
    let h = harness(limits(), true, false);
    *h.conns.refuse.lock().unwrap() = Some(DbError::Down("refused".into()));
    let started = Instant::now();
    assert!(matches!(h.coalescer.submit(1).await, Err(DbError::Down(_))));
    assert!(started.elapsed() < Duration::from_millis(50));
    assert!(h.monitor.is_down(), "a failed connect is reported");
    assert!(h.runs().is_empty());
}

#[tokio::test]
async fn a_statement_without_an_answer_times_out_and_its_connection_is_not_reused() {
    let timeout = Duration::from_millis(80);
    let h = harness(
        Limits {
            statement_timeout: timeout,
            ..limits()
        },
        false,
        false,
    );
    let started = Instant::now();
    let result = h.coalescer.submit(3).await;
    let waited = started.elapsed();
    assert!(matches!(result, Err(DbError::Down(_))), "{result:?}");
    // The statement timeout, plus the grace (capped at the timeout itself).
    assert!(
        waited >= timeout * 2 && waited < timeout * 2 + Duration::from_millis(200),
        "{waited:?}"
    );
    assert_eq!(h.conns.discarded.load(Ordering::SeqCst), 1);
    assert!(h.monitor.is_down());
}

#[tokio::test]
async fn a_refused_value_is_isolated_by_halving_in_a_few_statements() {
    let h = harness(limits(), false, false);
    let plug = h.plug().await;
    let bad = [3i64, 40, 41];
    let waiting: Vec<_> = (0..64)
        .map(|n| h.submit(if bad.contains(&n) { -n } else { n }))
        .collect();
    h.settle(1, 64).await;
    h.gate.send_replace(true);
    plug.await.unwrap().unwrap();
    for (n, w) in waiting.into_iter().enumerate() {
        let n = n as i64;
        match w.await.unwrap() {
            Ok(out) => assert_eq!(out, 2 * n),
            Err(DbError::BadValue(_)) => assert!(bad.contains(&n), "{n} refused"),
            Err(e) => panic!("{n}: {e}"),
        }
    }
    let statements = h.runs().len() - 1;
    // log2(64) = 6 levels; at most two statements per level per bad value.
    assert!(
        statements <= 2 * 3 * 6 + 1,
        "{statements} statements for 64 items"
    );
    assert!(statements < 64, "no better than one at a time");
    assert!(h.coalescer.stats().splits > 0);
}

#[tokio::test]
async fn a_batch_that_returns_the_wrong_number_of_results_fails_every_request() {
    let h = harness(limits(), true, true);
    assert!(matches!(h.coalescer.submit(1).await, Err(DbError::Other(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_end_when_the_coalescer_is_dropped_even_right_after_a_batch() {
    // Dropping races the lane going back to sleep after answering; a
    // wake-up lost there would leave the lane (and its pool) alive forever.
    for round in 0..2000 {
        let h = harness(Limits { lanes: 2, ..limits() }, true, false);
        assert_eq!(h.coalescer.submit(round).await.unwrap(), 2 * round);
        let Harness { coalescer, alive, .. } = h;
        drop(coalescer);
        let mut ended = false;
        for _ in 0..500 {
            if Arc::strong_count(&alive) == 1 {
                ended = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(ended, "round {round}: a lane outlived its coalescer");
    }
}

#[tokio::test]
async fn shutting_down_with_requests_queued_runs_none_of_them_and_ends_the_lanes() {
    let h = harness(limits(), false, false);
    let plug = h.plug().await;
    let queued: Vec<_> = (0..5).map(|n| h.submit(n)).collect();
    h.settle(1, 5).await;
    // The shutdown grace is over: the connections are dropped, and with them
    // the requests in flight and waiting...
    plug.abort();
    for q in &queued {
        q.abort();
    }
    for q in queued {
        let _ = q.await;
    }
    let _ = plug.await;
    assert_eq!(h.coalescer.queued(), 0, "the waiting requests left the queue");
    // ...then the service, and its coalescer, while a statement is still running.
    let Harness {
        coalescer,
        alive,
        gate,
        runs,
        ..
    } = h;
    drop(coalescer);
    gate.send_replace(true);
    let started = Instant::now();
    while Arc::strong_count(&alive) > 1 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a lane outlived its coalescer"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        *runs.lock().unwrap(),
        [vec![1000]],
        "only the statement in flight ran"
    );
}

/// Entries waiting, per owner, as `inner`'s queue counts them.
fn shares(inner: &Inner<Doubler>) -> HashMap<u64, usize> {
    inner.queue.lock().map(|q| q.shares.clone()).unwrap_or_default()
}

const A: u64 = 1;
const B: u64 = 2;

/// A queue of three places, and a statement in flight that holds the lane.
async fn three_places_behind_a_plug() -> (Harness, tokio::task::JoinHandle<Result<i64, DbError>>) {
    let h = harness(
        Limits {
            queue_max: 3,
            ..limits()
        },
        false,
        false,
    );
    let plug = h.plug().await;
    (h, plug)
}

#[tokio::test]
async fn a_full_queue_of_one_owner_sheds_its_newest_to_let_another_owner_in() {
    let (h, plug) = three_places_behind_a_plug().await;
    let mut floods = Vec::new();
    for n in 1..=3 {
        floods.push(h.queue_as(A, n).await);
    }
    let newest = floods.pop().unwrap();
    let started = Instant::now();
    let other = h.submit_as(B, 99);
    // A's newest is answered at once; the queue stays full, B in it.
    assert_eq!(shed(newest.await.unwrap()), Some(Shed::QueueFull));
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    h.settle(1, 3).await;
    assert_eq!(h.shares(), HashMap::from([(A, 2), (B, 1)]));
    h.gate.send_replace(true);
    plug.await.unwrap().unwrap();
    assert_eq!(other.await.unwrap().unwrap(), 198);
    for (n, f) in (1..).zip(floods) {
        assert_eq!(f.await.unwrap().unwrap(), 2 * n);
    }
    assert_eq!(h.runs(), [vec![1000], vec![1, 2, 99]], "A's newest never ran");
    assert_eq!(h.coalescer.stats().shed_queue_full, 1);
    assert!(h.shares().is_empty());
}

#[tokio::test]
async fn the_owner_holding_the_largest_share_of_a_full_queue_sheds_its_own_newcomer() {
    let (h, plug) = three_places_behind_a_plug().await;
    let queued = vec![
        h.queue_as(A, 1).await,
        h.queue_as(A, 2).await,
        h.queue_as(B, 3).await,
    ];
    // A holds the largest share: its newcomer is shed, not B's request.
    let started = Instant::now();
    assert_eq!(shed(h.coalescer.submit_as(A, 4).await), Some(Shed::QueueFull));
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    // B's newcomer is shed too: B would then hold as much as A, so taking
    // one of A's would only turn the unfairness around.
    assert_eq!(shed(h.coalescer.submit_as(B, 5).await), Some(Shed::QueueFull));
    assert_eq!(h.shares(), HashMap::from([(A, 2), (B, 1)]));
    h.gate.send_replace(true);
    plug.await.unwrap().unwrap();
    for (n, q) in (1..).zip(queued) {
        assert_eq!(q.await.unwrap().unwrap(), 2 * n);
    }
    assert_eq!(h.runs(), [vec![1000], vec![1, 2, 3]]);
    assert_eq!(h.coalescer.stats().shed_queue_full, 2);
}

/// The queue on its own, without lanes: what enters, leaves, is taken or
/// fails is driven by hand.
fn bare_queue(limits: Limits) -> (Inner<Doubler>, watch::Sender<bool>) {
    let (gate, open) = watch::channel(false);
    let conns = Arc::new(Conns::default());
    let batch = Doubler {
        conns: conns.clone(),
        runs: Arc::default(),
        open,
        short: false,
        _alive: Arc::new(()),
    };
    let inner = Inner::new(batch, conns, Monitor::new(), Arc::default(), limits);
    (inner, gate)
}

type Answer = oneshot::Receiver<Result<i64, DbError>>;

fn enqueue(inner: &Inner<Doubler>, owner: u64, n: i64) -> (u64, Answer) {
    let (reply, answer) = oneshot::channel();
    let ticket = inner.enqueue(owner, n, reply).expect("queued");
    (ticket, answer)
}

#[tokio::test]
async fn shares_follow_requests_that_leave_are_taken_in_a_batch_or_fail() {
    let (inner, _gate) = bare_queue(Limits {
        queue_max: 4,
        batch_max: 2,
        queue_timeout: Duration::from_secs(1),
        ..limits()
    });
    let _a1 = enqueue(&inner, A, 1);
    let a2 = enqueue(&inner, A, 2);
    let _b3 = enqueue(&inner, B, 3);
    let _a4 = enqueue(&inner, A, 4);
    assert_eq!(shares(&inner), HashMap::from([(A, 3), (B, 1)]));
    // A request leaves (its client gave up, or it waited too long).
    assert!(inner.leave(a2.0));
    assert_eq!(shares(&inner), HashMap::from([(A, 2), (B, 1)]));
    // A batch takes the two oldest, A's and B's.
    let taken: Vec<i64> = inner.take_batch().iter().map(|e| e.item).collect();
    assert_eq!(taken, [1, 3]);
    assert_eq!(shares(&inner), HashMap::from([(A, 1)]));
    // A request whose client left is dropped when a batch reaches it, and
    // one that waited too long is shed: both count out.
    let (_, gone) = enqueue(&inner, B, 5);
    drop(gone);
    let late = bare_late(&inner, B, 6);
    assert_eq!(shares(&inner), HashMap::from([(A, 1), (B, 2)]));
    let taken: Vec<i64> = inner.take_batch().iter().map(|e| e.item).collect();
    assert_eq!(taken, [4]);
    assert!(shares(&inner).is_empty(), "{:?}", shares(&inner));
    assert_eq!(shed(late.await.unwrap()), Some(Shed::QueueTimeout));
    // The database goes down: every queued request fails, and its share with it.
    let a7 = enqueue(&inner, A, 7);
    let b8 = enqueue(&inner, B, 8);
    inner.fail_queued(&DbError::Shed(Shed::DatabaseDown));
    assert!(shares(&inner).is_empty());
    assert_eq!(shed(a7.1.await.unwrap()), Some(Shed::DatabaseDown));
    assert_eq!(shed(b8.1.await.unwrap()), Some(Shed::DatabaseDown));
    // With no stale share left, A filling the queue and B arriving sheds A's newest.
    let mut flood: Vec<_> = (10..14).map(|n| enqueue(&inner, A, n)).collect();
    let _b = enqueue(&inner, B, 99);
    assert_eq!(shares(&inner), HashMap::from([(A, 3), (B, 1)]));
    let (_, newest) = flood.pop().unwrap();
    assert_eq!(shed(newest.await.unwrap()), Some(Shed::QueueFull));
}

/// Queues `n` of `owner` as if it had waited longer than the queue timeout.
fn bare_late(inner: &Inner<Doubler>, owner: u64, n: i64) -> Answer {
    let (_, answer) = enqueue(inner, owner, n);
    if let Ok(mut queue) = inner.queue.lock() {
        if let Some(entry) = queue.entries.back_mut() {
            entry.queued_at -= inner.limits.queue_timeout + Duration::from_millis(1);
        }
    }
    answer
}

/// A closed gate in front of statements of 4 and a queue of 6: a bulk's window is 3.
fn small_queue() -> Harness {
    let limits = Limits {
        batch_max: 4,
        queue_max: 6,
        ..limits()
    };
    harness(limits, false, false)
}

#[tokio::test]
async fn a_bulk_request_waits_in_a_window_of_half_the_queue_and_gets_its_answers_in_order() {
    let h = small_queue();
    let plug = h.plug().await;
    let coalescer = h.coalescer.clone();
    let bulk = tokio::spawn(async move { coalescer.submit_many(7, (0..20).collect()).await });
    // Half the queue (3) waits; the rest is not queued yet, so others still get in.
    h.settle(1, 3).await;
    assert_eq!(h.shares(), HashMap::from([(7, 3)]));
    let other = h.queue_as(8, 100).await;
    h.gate.send_replace(true);
    let answers: Vec<i64> = bulk.await.unwrap().into_iter().map(Result::unwrap).collect();
    assert_eq!(answers, (0..20).map(|n| 2 * n).collect::<Vec<_>>());
    assert_eq!(other.await.unwrap().unwrap(), 200);
    assert_eq!(plug.await.unwrap().unwrap(), 2000);
    assert!(h.runs().iter().all(|r| r.len() <= 4), "{:?}", h.runs());
    assert_eq!(h.coalescer.stats().items, 22);
}

#[tokio::test]
async fn a_bulk_request_that_is_dropped_takes_its_waiting_items_out_of_the_queue() {
    let h = harness(limits(), false, false);
    let plug = h.plug().await;
    let coalescer = h.coalescer.clone();
    let bulk = tokio::spawn(async move { coalescer.submit_many(7, (0..10).collect()).await });
    h.settle(1, 10).await;
    bulk.abort();
    h.settle(1, 0).await;
    assert_eq!(h.coalescer.stats().left_queue, 10);
    h.gate.send_replace(true);
    assert_eq!(plug.await.unwrap().unwrap(), 2000);
    assert_eq!(h.runs().len(), 1, "none of them ran");
}

#[tokio::test]
async fn while_the_database_is_down_a_bulk_request_is_shed_whole() {
    let h = harness(limits(), true, false);
    h.monitor.report_down("test");
    let answers = h.coalescer.submit_many(7, vec![1, 2, 3]).await;
    assert!(answers.into_iter().all(|a| shed(a) == Some(Shed::DatabaseDown)));
    assert!(h.runs().is_empty());
}

#[tokio::test]
async fn bulk_requests_larger_than_the_queue_together_wait_for_room_instead_of_shedding() {
    let h = small_queue();
    let plug = h.plug().await;
    let bulks: Vec<_> = (0..4i64)
        .map(|b| {
            let coalescer = h.coalescer.clone();
            tokio::spawn(async move {
                coalescer
                    .submit_many(7, (0..10).map(|n| 100 * b + n).collect())
                    .await
            })
        })
        .collect();
    // The queue fills to its bound and no further.
    h.settle(1, 6).await;
    h.gate.send_replace(true);
    for (b, bulk) in bulks.into_iter().enumerate() {
        let answers: Vec<i64> = bulk.await.unwrap().into_iter().map(Result::unwrap).collect();
        assert_eq!(
            answers,
            (0..10).map(|n| 2 * (100 * b as i64 + n)).collect::<Vec<_>>()
        );
    }
    assert_eq!(plug.await.unwrap().unwrap(), 2000);
    let stats = h.coalescer.stats();
    assert_eq!((stats.shed_queue_full, stats.items), (0, 41));
}

#[tokio::test]
async fn a_bulk_request_facing_a_queue_full_of_others_sheds_after_the_queue_timeout() {
    let limits = Limits {
        queue_max: 2,
        queue_timeout: Duration::from_millis(100),
        ..limits()
    };
    let h = harness(limits, false, false);
    let plug = h.plug().await;
    let others = [h.queue_as(1, 1).await, h.queue_as(2, 2).await];
    let started = Instant::now();
    let answers = h.coalescer.submit_many(7, vec![3, 4]).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    let why: Vec<Option<Shed>> = answers.into_iter().map(shed).collect();
    // The second may find room once the others timed out, and then time out itself.
    assert_eq!(why[0], Some(Shed::QueueFull), "{why:?}");
    assert!(why[1].is_some(), "{why:?}");
    h.gate.send_replace(true);
    let _ = plug.await;
    for o in others {
        let _ = o.await;
    }
}
