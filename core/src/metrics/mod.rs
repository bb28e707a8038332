//! What a task counts, and its exposition in the Prometheus text format
//! (OpenMetrics) for `GET /metrics` on `METRICS_PORT`, a port of its own that
//! the load balancer does not forward.
//!
//! Names follow the OpenTelemetry semantic conventions where they have one
//! (`http_server_request_duration_seconds` with `http_route`,
//! `http_request_method`, `http_response_status_code`;
//! `http_server_active_requests`; `db_client_operation_duration_seconds`;
//! `db_client_connection_count` with `db_client_connection_state`), Prometheus'
//! conventions otherwise (units in names, `_total` counters, the standard
//! `process_*` metrics). Every label takes values from a bounded set. The
//! database layer's own metrics live in `db::metrics`.

use crate::db::{DbMetrics, Monitor, ReplicaState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::fmt::{self, Write};
use std::sync::Arc;

pub mod emf;
mod process;

/// A label value shared with what it names (a route template, a client's
/// label), so labelling a series copies nothing; its values come from a
/// bounded set.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct SharedLabel(pub Arc<str>);

impl EncodeLabelValue for SharedLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(&self.0)
    }
}

/// The labels of one HTTP series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template, e.g. `/issuance/credentials`; empty for an unknown path.
    pub http_route: SharedLabel,
    /// A known method, or `_OTHER`.
    pub http_request_method: &'static str,
    /// The status code the task answered.
    pub http_response_status_code: u16,
}

/// The method as a label: the methods HTTP defines, `_OTHER` for the rest.
pub fn method_label(method: &hyper::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "OPTIONS" => "OPTIONS",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "_OTHER",
    }
}

/// The labels of a refused request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// The client's label (its name, `other` past the first 100), `anonymous`, or `unknown`.
    pub client: SharedLabel,
    /// 401, 403 or 429.
    pub http_response_status_code: u16,
}

/// The labels of a malformed request head.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectedLabels {
    /// `too_large`, `header`, `content_length`, `transfer_encoding`, `uri`, `version`,
    /// `method`, `http2_preface` or `malformed`.
    pub reason: &'static str,
}

/// Every metric of one task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Request durations by route, method and status.
    pub requests: Family<HttpLabels, Histogram>,
    /// Requests being handled now.
    pub active: Gauge,
    /// Requests refused by access control (401, 403) or rate limits (429), by client.
    pub refused: Family<RefusedLabels, Counter>,
    /// Request heads hyper refused before the pipeline saw them, by reason.
    pub rejected: Family<RejectedLabels, Counter>,
    /// The database layer's metrics, shared with the pool and the coalescers.
    pub db: Arc<DbMetrics>,
}

impl Metrics {
    /// The metrics of a task whose database the caller will monitor with
    /// `monitor` through a pool whose state `connections` reads.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(crate::db::metrics::DURATION_BUCKETS)
        });
        registry.register_with_unit(
            "http_server_request_duration",
            "Duration of HTTP requests, from the request's head to its response",
            Unit::Seconds,
            requests.clone(),
        );
        let active = Gauge::default();
        registry.register(
            "http_server_active_requests",
            "HTTP requests being handled now",
            active.clone(),
        );
        let refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "kc_refused_requests",
            "Business requests refused by access control (401, 403) or a rate limit (429), by client",
            refused.clone(),
        );
        let rejected = Family::<RejectedLabels, Counter>::default();
        registry.register(
            "http_server_rejected_requests",
            "Request heads refused as malformed before routing (hyper's own 400, 414 or 431), by reason",
            rejected.clone(),
        );
        let db = Arc::new(DbMetrics::default());
        db.register(&mut registry);
        registry.register_collector(Box::new(process::Process::new()));
        Metrics {
            registry,
            requests,
            active,
            refused,
            rejected,
            db,
        }
    }

    /// Counts a request head refused as malformed, for `reason`.
    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&RejectedLabels { reason }).inc();
    }

    /// Counts a request refused with `status` for the client labelled `client`.
    pub fn refused(&self, client: Arc<str>, status: u16) {
        self.refused
            .get_or_create(&RefusedLabels {
                client: SharedLabel(client),
                http_response_status_code: status,
            })
            .inc();
    }

    /// Adds what is read from the pool and the monitor at each scrape.
    pub fn watch_database(
        &mut self,
        monitor: Monitor,
        pool_size: u32,
        connections: impl Fn() -> (u32, u32) + Send + Sync + 'static,
    ) {
        self.registry.register_collector(Box::new(Database {
            monitor,
            pool_size,
            connections: Box::new(connections),
        }));
    }

    /// Reports the read replica's state at each scrape: `db_replica_up` and
    /// `db_replica_lag_seconds` (where reads landed is `db_reads_total`).
    pub fn watch_replica(&mut self, replica: ReplicaState) {
        self.registry.register_collector(Box::new(Replica(replica)));
    }

    /// Records one answered request.
    pub fn observe(&self, labels: &HttpLabels, seconds: f64) {
        self.requests.get_or_create(labels).observe(seconds);
    }

    /// Everything, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The pool's connections and the monitor's belief, read at each scrape.
struct Database {
    monitor: Monitor,
    pool_size: u32,
    connections: Box<dyn Fn() -> (u32, u32) + Send + Sync>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Database")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionState {
    db_client_connection_state: &'static str,
}

impl Collector for Database {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let (open, idle) = (self.connections)();
        let count = encoder.encode_descriptor(
            "db_client_connection_count",
            "Pooled database connections, by state (used, idle)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        let mut count = count;
        for (state, n) in [("used", open.saturating_sub(idle)), ("idle", idle)] {
            let labels = ConnectionState {
                db_client_connection_state: state,
            };
            ConstGauge::new(i64::from(n)).encode(count.encode_family(&labels)?)?;
        }
        gauge(
            &mut encoder,
            "db_client_connection_max",
            "Connections the pool may open (DB_POOL_SIZE)",
            None,
            i64::from(self.pool_size),
        )?;
        gauge(
            &mut encoder,
            "db_up",
            "1 while the task's database probe gets answers, else 0",
            None,
            i64::from(self.monitor.is_up()),
        )
    }
}

/// The read replica's state, read at each scrape.
struct Replica(ReplicaState);

impl fmt::Debug for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Replica")
    }
}

impl Collector for Replica {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        gauge(
            &mut encoder,
            "db_replica_up",
            "1 while the read replica's probe gets answers (DATABASE_READ_URL), else 0",
            None,
            i64::from(self.0.is_up()),
        )?;
        // -1 while unknown (down, not a standby, not measured yet).
        let lag = self.0.lag().map_or(-1.0, |lag| lag.as_secs_f64());
        let gauge = ConstGauge::new(lag);
        gauge.encode(encoder.encode_descriptor(
            "db_replica_lag",
            "The read replica's replay lag, measured every 250 ms against the primary's WAL position; -1 while unknown",
            Some(&Unit::Seconds),
            gauge.metric_type(),
        )?)
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: i64,
) -> Result<(), fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, unit, gauge.metric_type())?)
}
