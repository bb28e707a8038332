//! CloudWatch embedded-metric-format (EMF) lines: how the task's metrics reach
//! CloudWatch on ECS. Every `METRICS_EMF_SECONDS` the task writes one JSON line
//! to stdout; the awslogs driver ships it with the other log lines, and
//! CloudWatch Logs turns it into metrics (namespace `KubeCredential`,
//! dimension `Service`). No sidecar: on a 0.25 vCPU / 512 MB task a collector
//! (the CloudWatch agent, ADOT) would take a share of what the task has.
//!
//! The line is worked out from the task's own exposition, the text `/metrics`
//! serves, as differences since the previous line: requests, 5xx answers and
//! shed requests in the interval, the latency's p50 and p99 and the queue
//! wait's p99 (to the histogram's bucket bounds), the mean batch size; and, as
//! they are now, the queue depth, whether the probe gets answers, the pooled
//! connections in use and the resident memory. A figure with nothing behind it
//! (a percentile without requests) is left out of the line.

use super::Metrics;
use crate::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The CloudWatch namespace of the metrics.
pub const NAMESPACE: &str = "KubeCredential";

/// Cumulative figures read from one exposition.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    requests: f64,
    errors_5xx: f64,
    shed: f64,
    /// Upper bound (seconds, `inf` last) → requests at or below it.
    latency: BTreeMap<Bound, f64>,
    queue_wait: BTreeMap<Bound, f64>,
    batch_sum: f64,
    batch_count: f64,
    queue_depth: f64,
    db_up: f64,
    connections_used: f64,
    rss_bytes: f64,
}

/// A bucket's upper bound, ordered (`+Inf` greatest).
/// Equality and order are `f64::total_cmp`'s, so the two agree.
#[derive(Debug, Clone, Copy)]
struct Bound(f64);

impl PartialEq for Bound {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Bound {}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// `name{labels} value`, or `name value`; None for comments and blank lines.
fn sample(line: &str) -> Option<(&str, &str, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    Some(match series.split_once('{') {
        Some((name, labels)) => (name, labels.trim_end_matches('}'), value),
        None => (series, "", value),
    })
}

/// The value of label `key` in `labels` (`a="1",b="2"`).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.trim_matches('"'))
    })
}

fn bucket(into: &mut BTreeMap<Bound, f64>, labels: &str, value: f64) {
    let le = match label(labels, "le") {
        Some("+Inf") => f64::INFINITY,
        Some(le) => le.parse().unwrap_or(f64::INFINITY),
        None => return,
    };
    *into.entry(Bound(le)).or_default() += value;
}

impl Snapshot {
    /// Reads the figures from an exposition in the text format.
    pub fn read(text: &str) -> Self {
        let mut s = Snapshot::default();
        for (name, labels, value) in text.lines().filter_map(sample) {
            match name {
                "http_server_request_duration_seconds_count" => {
                    s.requests += value;
                    if label(labels, "http_response_status_code").is_some_and(|c| c.starts_with('5')) {
                        s.errors_5xx += value;
                    }
                }
                "http_server_request_duration_seconds_bucket" => bucket(&mut s.latency, labels, value),
                "db_queue_wait_seconds_bucket" => bucket(&mut s.queue_wait, labels, value),
                "db_shed_requests_total" => s.shed += value,
                "db_batch_size_sum" => s.batch_sum = value,
                "db_batch_size_count" => s.batch_count = value,
                "db_queue_depth" => s.queue_depth = value,
                "db_up" => s.db_up = value,
                "db_client_connection_count"
                    if label(labels, "db_client_connection_state") == Some("used") =>
                {
                    s.connections_used = value
                }
                "process_resident_memory_bytes" => s.rss_bytes = value,
                _ => {}
            }
        }
        s
    }
}

/// The `q` quantile, in milliseconds, of the observations between two
/// cumulative histograms: the upper bound of the bucket it falls in (the
/// largest finite bound when it falls past them all). None without observations.
fn quantile_ms(now: &BTreeMap<Bound, f64>, before: &BTreeMap<Bound, f64>, q: f64) -> Option<f64> {
    let delta = |b: &Bound| now.get(b).copied().unwrap_or(0.0) - before.get(b).copied().unwrap_or(0.0);
    let total = now.keys().last().map(delta)?;
    if total <= 0.0 {
        return None;
    }
    let largest_finite = now
        .keys()
        .map(|b| b.0)
        .filter(|b| b.is_finite())
        .fold(0.0, f64::max);
    now.keys()
        .find(|b| delta(b) >= q * total)
        .map(|b| if b.0.is_finite() { b.0 } else { largest_finite } * 1000.0)
}

/// Builds the EMF lines of one task.
pub struct Emf {
    service: &'static str,
    worker_id: String,
    before: Snapshot,
}

impl Emf {
    /// Lines for `service` on worker `worker_id`, counting from zero.
    pub fn new(service: &'static str, worker_id: &str) -> Self {
        Emf {
            service,
            worker_id: worker_id.to_owned(),
            before: Snapshot::default(),
        }
    }

    /// The line for the interval that ends at `at`, whose exposition is
    /// `text`, newline included; the next line counts from here.
    pub fn line(&mut self, at: SystemTime, text: &str) -> Vec<u8> {
        let now = Snapshot::read(text);
        let b = &self.before;
        let mean_batch = (now.batch_count > b.batch_count)
            .then(|| (now.batch_sum - b.batch_sum) / (now.batch_count - b.batch_count));
        let figures: Vec<(&'static str, &'static str, Option<f64>)> = vec![
            ("Requests", "Count", Some(now.requests - b.requests)),
            ("Errors5xx", "Count", Some(now.errors_5xx - b.errors_5xx)),
            ("Shed", "Count", Some(now.shed - b.shed)),
            (
                "LatencyP50",
                "Milliseconds",
                quantile_ms(&now.latency, &b.latency, 0.50),
            ),
            (
                "LatencyP99",
                "Milliseconds",
                quantile_ms(&now.latency, &b.latency, 0.99),
            ),
            (
                "DbQueueWaitP99",
                "Milliseconds",
                quantile_ms(&now.queue_wait, &b.queue_wait, 0.99),
            ),
            ("DbBatchSize", "Count", mean_batch),
            ("DbQueueDepth", "Count", Some(now.queue_depth)),
            ("DbUp", "None", Some(now.db_up)),
            ("DbConnectionsUsed", "Count", Some(now.connections_used)),
            ("MemoryRss", "Bytes", Some(now.rss_bytes)),
        ];
        let present: Vec<(&str, &str, f64)> = figures
            .into_iter()
            .filter_map(|(name, unit, value)| value.map(|v| (name, unit, v)))
            .collect();
        let millis = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut out = json::object(|o| {
            o.object("_aws", |aws| {
                aws.u64("Timestamp", millis)
                    .array("CloudWatchMetrics", [()], |m, ()| {
                        m.str("Namespace", NAMESPACE)
                            .raw("Dimensions", r#"[["Service"]]"#)
                            .array("Metrics", &present, |d, (name, unit, _)| {
                                d.str("Name", name).str("Unit", unit);
                            });
                    });
            })
            .str("Service", self.service)
            .str("WorkerId", &self.worker_id);
            for (name, _, value) in &present {
                o.raw(name, &format_number(*value));
            }
        });
        out.push(b'\n');
        self.before = now;
        out
    }
}

/// A JSON number: integers without a fraction, others to microsecond precision.
fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.6}")
    }
}

/// Writes one line to stdout every `every` until the task ends.
pub async fn run(metrics: Arc<Metrics>, every: Duration, service: &'static str, worker_id: String) {
    let mut emf = Emf::new(service, &worker_id);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: it sets the starting point without a line.
    tick.tick().await;
    emf.line(SystemTime::now(), &metrics.encode());
    loop {
        tick.tick().await;
        let line = emf.line(SystemTime::now(), &metrics.encode());
        // A line the log driver cannot take is lost, as a log line would be.
        let _ = std::io::stdout().lock().write_all(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = r#"# HELP http_server_request_duration_seconds Duration of HTTP requests.
http_server_request_duration_seconds_count{http_route="/issuance/credentials",http_request_method="POST",http_response_status_code="201"} 10
http_server_request_duration_seconds_bucket{http_route="/issuance/credentials",http_request_method="POST",http_response_status_code="201",le="0.005"} 8
http_server_request_duration_seconds_bucket{http_route="/issuance/credentials",http_request_method="POST",http_response_status_code="201",le="0.01"} 10
http_server_request_duration_seconds_bucket{http_route="/issuance/credentials",http_request_method="POST",http_response_status_code="201",le="+Inf"} 10
db_shed_requests_total{reason="queue_full"} 0
db_batch_size_sum 10.0
db_batch_size_count 2
db_up 1
"#;

    const SECOND: &str = r#"http_server_request_duration_seconds_count{http_route="/issuance/credentials",http_request_method="POST",http_response_status_code="201"} 108
http_server_request_duration_seconds_bucket{http_route="/issuance/credentials",http_request_method="POST",http_response_status_code="201",le="0.005"} 98
http_server_request_duration_seconds_bucket{http_route="/issuance/credentials",http_request_method="POST",http_response_status_code="201",le="0.01"} 107
http_server_request_duration_seconds_bucket{http_route="/issuance/credentials",http_request_method="POST",http_response_status_code="201",le="+Inf"} 108
http_server_request_duration_seconds_count{http_route="/issuance/credentials",http_request_method="POST",http_response_status_code="503"} 2
http_server_request_duration_seconds_bucket{http_route="/issuance/credentials",http_request_method="POST",http_response_status_code="503",le="0.005"} 2
http_server_request_duration_seconds_bucket{http_route="/issuance/credentials",http_request_method="POST",http_response_status_code="503",le="0.01"} 2
http_server_request_duration_seconds_bucket{http_route="/issuance/credentials",http_request_method="POST",http_response_status_code="503",le="+Inf"} 2
db_shed_requests_total{reason="queue_full"} 2
db_shed_requests_total{reason="database_down"} 1
db_batch_size_sum 110.0
db_batch_size_count 6
db_queue_depth 3
db_up 1
db_client_connection_count{db_client_connection_state="used"} 1
db_client_connection_count{db_client_connection_state="idle"} 4
process_resident_memory_bytes 15728640
"#;

    /// The line as text, once checked to be one JSON object.
    fn parse(line: &[u8]) -> String {
        let mut copy = line.to_vec();
        assert!(
            crate::json::parse_object(&mut copy).is_ok(),
            "not a JSON object: {}",
            String::from_utf8_lossy(line)
        );
        String::from_utf8_lossy(line).into_owned()
    }

    #[test]
    fn a_line_holds_the_differences_since_the_last_and_the_current_gauges() {
        let mut emf = Emf::new("issuance", "ip-10-0-1-123.ec2.internal");
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        emf.line(at, FIRST);
        let line = parse(&emf.line(at + Duration::from_secs(60), SECOND));
        assert!(line.ends_with("}\n"));
        assert!(line.starts_with(r#"{"_aws":{"Timestamp":1700000060000,"CloudWatchMetrics":[{"Namespace":"KubeCredential","Dimensions":[["Service"]],"Metrics":[{"Name":"Requests","Unit":"Count"},"#), "{line}");
        for field in [
            r#""Service":"issuance""#,
            r#""WorkerId":"ip-10-0-1-123.ec2.internal""#,
            // 98 + 2 new requests, 2 of them 503s, 3 sheds.
            r#""Requests":100"#,
            r#""Errors5xx":2"#,
            r#""Shed":3"#,
            // 92 of the 100 new ones within 5 ms, 99 within 10 ms.
            r#""LatencyP50":5"#,
            r#""LatencyP99":10"#,
            // 100 requests in 4 statements.
            r#""DbBatchSize":25"#,
            r#""DbQueueDepth":3"#,
            r#""DbUp":1"#,
            r#""DbConnectionsUsed":1"#,
            r#""MemoryRss":15728640"#,
        ] {
            assert!(line.contains(field), "{field} missing from {line}");
        }
        // No queue-wait histogram in the text: no figure, and no declaration.
        assert!(!line.contains("DbQueueWaitP99"), "{line}");
    }

    #[test]
    fn an_interval_without_requests_has_no_percentiles() {
        let mut emf = Emf::new("verification", "w");
        emf.line(UNIX_EPOCH, SECOND);
        let line = parse(&emf.line(UNIX_EPOCH, SECOND));
        assert!(
            line.contains(r#""Requests":0"#) && !line.contains("Latency"),
            "{line}"
        );
    }

    #[test]
    fn percentiles_past_every_bound_report_the_largest_finite_one() {
        let mut before = BTreeMap::new();
        let mut now = BTreeMap::new();
        before.insert(Bound(0.5), 0.0);
        before.insert(Bound(f64::INFINITY), 0.0);
        now.insert(Bound(0.5), 1.0);
        now.insert(Bound(f64::INFINITY), 10.0);
        assert_eq!(quantile_ms(&now, &before, 0.99), Some(500.0));
        assert_eq!(quantile_ms(&now, &before, 0.05), Some(500.0));
        assert_eq!(quantile_ms(&before, &before, 0.5), None);
    }
}
