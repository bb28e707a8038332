//! What the database layer counts: statements and their sizes and durations,
//! how long requests wait for them, how many wait now, the requests shed and
//! why, the errors by class, and where reads landed (a read replica or the
//! primary, and why not the replica). One set per task, shared by its coalescers;
//! `crate::metrics` registers it for `/metrics`, and the coalescer's own
//! [`Stats`](super::batch::Stats) read it too.

use super::DbError;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds, in seconds, of the duration histograms: 0.5 ms to 10 s.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadLabels {
    target: &'static str,
    fallback: &'static str,
}

/// Where a read was answered from (`db_reads_total{target,fallback}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadTarget {
    /// The read replica (`DATABASE_READ_URL`), once it had replayed the primary's position.
    Replica,
    /// The primary, for this reason.
    Primary(Fallback),
}

/// Why a read went to the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// No `DATABASE_READ_URL`.
    NoReplica,
    /// The replica's probe gets no answer.
    ReplicaDown,
    /// Its replay lag is past `DB_READ_MAX_LAG_MS`, or unknown.
    ReplicaLagging,
    /// It had not replayed the primary's WAL position of this read yet.
    ReplicaBehind,
    /// Reading there failed or took too long.
    ReplicaError,
}

impl Fallback {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::NoReplica => "no_replica",
            Fallback::ReplicaDown => "replica_down",
            Fallback::ReplicaLagging => "replica_lagging",
            Fallback::ReplicaBehind => "replica_behind",
            Fallback::ReplicaError => "replica_error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorType {
    error_type: &'static str,
}

/// The database layer's metrics. Cheap to update: atomics, and a bucket search
/// for histograms.
#[derive(Debug)]
pub struct DbMetrics {
    pub(crate) statements: Counter,
    pub(crate) items: Counter,
    pub(crate) splits: Counter,
    pub(crate) left_queue: Counter,
    shed: Family<Reason, Counter>,
    pub(crate) shed_queue_full: Counter,
    pub(crate) shed_queue_timeout: Counter,
    pub(crate) shed_database_down: Counter,
    errors: Family<ErrorType, Counter>,
    errors_down: Counter,
    errors_unavailable: Counter,
    errors_bad_value: Counter,
    errors_other: Counter,
    pub(crate) batch_size: Histogram,
    pub(crate) queue_wait: Histogram,
    pub(crate) statement_duration: Histogram,
    pub(crate) queue_depth: Gauge,
    reads: Family<ReadLabels, Counter>,
    /// `reads`' series, made once: counting is one atomic add. Index 0 is the
    /// replica, then the primary for each [`Fallback`] in its order.
    reads_by_target: [Counter; 6],
}

impl Default for DbMetrics {
    fn default() -> Self {
        let shed = Family::<Reason, Counter>::default();
        let errors = Family::<ErrorType, Counter>::default();
        let reads = Family::<ReadLabels, Counter>::default();
        let read = |target: ReadTarget| {
            let (target, fallback) = match target {
                ReadTarget::Replica => ("replica", "none"),
                ReadTarget::Primary(why) => ("primary", why.as_str()),
            };
            reads.get_or_create(&ReadLabels { target, fallback }).clone()
        };
        let reads_by_target = [
            read(ReadTarget::Replica),
            read(ReadTarget::Primary(Fallback::NoReplica)),
            read(ReadTarget::Primary(Fallback::ReplicaDown)),
            read(ReadTarget::Primary(Fallback::ReplicaLagging)),
            read(ReadTarget::Primary(Fallback::ReplicaBehind)),
            read(ReadTarget::Primary(Fallback::ReplicaError)),
        ];
        let reason = |reason| shed.get_or_create(&Reason { reason }).clone();
        let error = |error_type| errors.get_or_create(&ErrorType { error_type }).clone();
        DbMetrics {
            statements: Counter::default(),
            items: Counter::default(),
            splits: Counter::default(),
            left_queue: Counter::default(),
            shed_queue_full: reason("queue_full"),
            shed_queue_timeout: reason("queue_timeout"),
            shed_database_down: reason("database_down"),
            errors_down: error("down"),
            errors_unavailable: error("unavailable"),
            errors_bad_value: error("bad_value"),
            errors_other: error("other"),
            shed,
            errors,
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            queue_wait: Histogram::new(DURATION_BUCKETS),
            statement_duration: Histogram::new(DURATION_BUCKETS),
            queue_depth: Gauge::default(),
            reads,
            reads_by_target,
        }
    }
}

impl DbMetrics {
    /// Counts a failed statement (or connection attempt) by the class of its error.
    pub(crate) fn error(&self, e: &DbError) {
        match e {
            DbError::Shed(_) => {}
            DbError::Down(_) => {
                self.errors_down.inc();
            }
            DbError::Unavailable(_) => {
                self.errors_unavailable.inc();
            }
            DbError::BadValue(_) => {
                self.errors_bad_value.inc();
            }
            DbError::Other(_) => {
                self.errors_other.inc();
            }
        }
    }

    /// Counts `n` reads answered from `target`.
    pub fn read(&self, target: ReadTarget, n: u64) {
        let index = match target {
            ReadTarget::Replica => 0,
            ReadTarget::Primary(Fallback::NoReplica) => 1,
            ReadTarget::Primary(Fallback::ReplicaDown) => 2,
            ReadTarget::Primary(Fallback::ReplicaLagging) => 3,
            ReadTarget::Primary(Fallback::ReplicaBehind) => 4,
            ReadTarget::Primary(Fallback::ReplicaError) => 5,
        };
        self.reads_by_target[index].inc_by(n);
    }

    /// Registers every metric under its Prometheus name.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "db_client_operations",
            "Statements sent to the database (each half of a split batch counts)",
            self.statements.clone(),
        );
        registry.register(
            "db_batch_size",
            "Requests carried by one statement",
            self.batch_size.clone(),
        );
        registry.register_with_unit(
            "db_client_operation_duration",
            "How long one statement took, from sending it to its last row",
            Unit::Seconds,
            self.statement_duration.clone(),
        );
        registry.register_with_unit(
            "db_queue_wait",
            "How long a request waited for its statement to start",
            Unit::Seconds,
            self.queue_wait.clone(),
        );
        registry.register(
            "db_queue_depth",
            "Requests waiting for a statement now",
            self.queue_depth.clone(),
        );
        registry.register(
            "db_shed_requests",
            "Requests answered 503 without being sent to the database, by reason",
            self.shed.clone(),
        );
        registry.register(
            "db_queue_abandoned_requests",
            "Requests whose client left while they waited; never sent",
            self.left_queue.clone(),
        );
        registry.register(
            "db_batch_splits",
            "Batches halved because the database refused a value in them",
            self.splits.clone(),
        );
        registry.register(
            "db_client_operation_errors",
            "Statements or connection attempts that failed, by class (down, unavailable, bad_value, other)",
            self.errors.clone(),
        );
        registry.register(
            "db_reads",
            "Requests whose read was answered by the replica or the primary (and why not the replica: no_replica, replica_down, replica_lagging, replica_behind, replica_error)",
            self.reads.clone(),
        );
    }
}
