//! Logging: one JSON object per line (or text for humans), every line naming the
//! service and the worker, request lines also the request id.

use crate::config::{Config, LogFormat};
use log::kv::{Key, Source, Value, VisitSource};
use std::io::Write;
use std::time::SystemTime;

/// Installs the global logger. Later calls (tests) are ignored.
pub fn init(config: &Config, service: &'static str) {
    let worker = config.worker_id.clone();
    let mut builder = env_logger::Builder::new();
    builder
        .parse_filters(&config.log_level)
        .target(env_logger::Target::Stdout);
    match config.log_format {
        LogFormat::Json => builder.format(move |buf, record| {
            let mut line = Vec::with_capacity(256);
            json_line(&mut line, service, &worker, SystemTime::now(), record);
            buf.write_all(&line)
        }),
        LogFormat::Text => builder.format(move |buf, record| {
            buf.write_all(text_line(service, &worker, SystemTime::now(), record).as_bytes())
        }),
    };
    let _ = builder.try_init();
}

/// One log line as a JSON object: timestamp, level, service, worker id, target,
/// message, then the record's own fields, and a newline.
pub fn json_line(line: &mut Vec<u8>, service: &str, worker: &str, at: SystemTime, record: &log::Record<'_>) {
    line.extend_from_slice(b"{\"timestamp\":\"");
    line.extend_from_slice(crate::time::rfc3339_millis(at).as_bytes());
    line.extend_from_slice(b"\",\"level\":\"");
    line.extend_from_slice(record.level().as_str().to_ascii_lowercase().as_bytes());
    line.extend_from_slice(b"\",\"service\":\"");
    line.extend_from_slice(service.as_bytes());
    line.extend_from_slice(b"\",\"worker_id\":");
    crate::json::write_str(line, worker);
    line.extend_from_slice(b",\"target\":");
    crate::json::write_str(line, record.target());
    line.extend_from_slice(b",\"message\":");
    crate::json::write_str(line, &record.args().to_string());
    let _ = record.key_values().visit(&mut JsonFields(line));
    line.extend_from_slice(b"}\n");
}

/// One log line for a human at a terminal: `time LEVEL service[worker] message key=value…`.
pub fn text_line(service: &str, worker: &str, at: SystemTime, record: &log::Record<'_>) -> String {
    let mut fields = String::new();
    let _ = record.key_values().visit(&mut TextFields(&mut fields));
    format!(
        "{} {:<5} {service}[{worker}] {}{fields}\n",
        crate::time::rfc3339_millis(at),
        record.level(),
        record.args()
    )
}

struct JsonFields<'a>(&'a mut Vec<u8>);

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        self.0.push(b',');
        crate::json::write_str(self.0, key.as_str());
        self.0.push(b':');
        if let Some(n) = value.to_u64() {
            self.0.extend_from_slice(n.to_string().as_bytes());
        } else if let Some(n) = value.to_i64() {
            self.0.extend_from_slice(n.to_string().as_bytes());
        } else if let Some(f) = value.to_f64().filter(|f| f.is_finite()) {
            self.0.extend_from_slice(f.to_string().as_bytes());
        } else if let Some(b) = value.to_bool() {
            self.0.extend_from_slice(if b { b"true" } else { b"false" });
        } else {
            crate::json::write_str(self.0, &value.to_string());
        }
        Ok(())
    }
}

struct TextFields<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for TextFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        use std::fmt::Write;
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

/// The fields of one request's access line; absent ones are left out.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// The request id (`X-Request-Id`).
    pub request_id: &'a str,
    /// The load balancer's trace id (`X-Amzn-Trace-Id`'s Root) or W3C `traceparent`'s.
    pub trace_id: Option<&'a str>,
    /// The request method.
    pub method: &'a str,
    /// The request path.
    pub path: &'a str,
    /// The status answered.
    pub status: u16,
    /// From the request's head to its response, in milliseconds.
    pub duration_ms: f64,
    /// Why the request was shed (answered 503 without reaching the database).
    pub shed: Option<&'a str>,
    /// Who called a business route: the client's name, `anonymous` or `open`.
    pub client: Option<&'a str>,
}

impl Source for Access<'_> {
    fn visit<'kvs>(&'kvs self, visitor: &mut dyn VisitSource<'kvs>) -> Result<(), log::kv::Error> {
        visitor.visit_pair(Key::from("request_id"), Value::from(self.request_id))?;
        if let Some(trace_id) = self.trace_id {
            visitor.visit_pair(Key::from("trace_id"), Value::from(trace_id))?;
        }
        visitor.visit_pair(Key::from("method"), Value::from(self.method))?;
        visitor.visit_pair(Key::from("path"), Value::from(self.path))?;
        visitor.visit_pair(Key::from("status"), Value::from(self.status))?;
        visitor.visit_pair(Key::from("duration_ms"), Value::from(self.duration_ms))?;
        if let Some(shed) = self.shed {
            visitor.visit_pair(Key::from("shed"), Value::from(shed))?;
        }
        if let Some(client) = self.client {
            visitor.visit_pair(Key::from("client"), Value::from(client))?;
        }
        Ok(())
    }
}

/// Writes one request's `access` line (target `access`, level info).
pub fn access(line: &Access<'_>) {
    if log::log_enabled!(target: "access", log::Level::Info) {
        log::logger().log(
            &log::Record::builder()
                .args(format_args!("request"))
                .level(log::Level::Info)
                .target("access")
                .key_values(line)
                .build(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const AT: Duration = Duration::from_millis(1_759_833_000_123);

    fn json(record: &log::Record<'_>) -> String {
        let mut line = Vec::new();
        json_line(
            &mut line,
            "issuance",
            "worker \"1\"",
            SystemTime::UNIX_EPOCH + AT,
            record,
        );
        String::from_utf8(line).unwrap()
    }

    fn access<'a>(trace_id: Option<&'a str>, shed: Option<&'a str>) -> Access<'a> {
        Access {
            request_id: "req-1",
            trace_id,
            method: "POST",
            path: "/issuance/credentials",
            status: 503,
            duration_ms: 0.25,
            shed,
            client: None,
        }
    }

    #[test]
    fn access_lines_carry_the_trace_id_and_the_shed_reason_only_when_there_are_some() {
        let line = access(Some("1-5759e988-bd862e3fe1be46a994272793"), Some("queue_full"));
        let record = log::Record::builder()
            .args(format_args!("request"))
            .level(log::Level::Info)
            .target("access")
            .key_values(&line)
            .build();
        assert_eq!(
            json(&record),
            "{\"timestamp\":\"2025-10-07T10:30:00.123Z\",\"level\":\"info\",\"service\":\"issuance\",\
             \"worker_id\":\"worker \\\"1\\\"\",\"target\":\"access\",\"message\":\"request\",\
             \"request_id\":\"req-1\",\"trace_id\":\"1-5759e988-bd862e3fe1be46a994272793\",\"method\":\"POST\",\
             \"path\":\"/issuance/credentials\",\"status\":503,\"duration_ms\":0.25,\"shed\":\"queue_full\"}\n"
        );
        let bare = access(None, None);
        let record = log::Record::builder()
            .args(format_args!("request"))
            .level(log::Level::Info)
            .target("access")
            .key_values(&bare)
            .build();
        let line = json(&record);
        assert!(!line.contains("trace_id") && !line.contains("shed"), "{line}");
        assert!(line.ends_with("\"status\":503,\"duration_ms\":0.25}\n"), "{line}");
    }

    #[test]
    fn json_fields_keep_their_types_and_text_is_escaped() {
        let fields: [(&str, log::kv::Value<'_>); 5] = [
            ("count", 7u64.into()),
            ("delta", (-3i64).into()),
            ("ok", true.into()),
            ("ratio", 0.5f64.into()),
            ("why", "tab\there".into()),
        ];
        let record = log::Record::builder()
            .args(format_args!("line \"one\"\ntwo"))
            .level(log::Level::Warn)
            .target("db")
            .key_values(&fields)
            .build();
        assert_eq!(
            json(&record),
            concat!(
                r#"{"timestamp":"2025-10-07T10:30:00.123Z","level":"warn","service":"issuance","worker_id":"worker \"1\"","#,
                r#""target":"db","message":"line \"one\"\ntwo","count":7,"delta":-3,"ok":true,"ratio":0.5,"why":"tab\there"}"#,
                "\n"
            )
        );
    }

    #[test]
    fn text_lines_are_for_people() {
        let fields = [("request_id", "req-1"), ("id", "abc")];
        let record = log::Record::builder()
            .args(format_args!("credential issued"))
            .level(log::Level::Info)
            .target("issuance")
            .key_values(&fields)
            .build();
        assert_eq!(
            text_line("issuance", "issuance-1", SystemTime::UNIX_EPOCH + AT, &record),
            "2025-10-07T10:30:00.123Z INFO  issuance[issuance-1] credential issued request_id=req-1 id=abc\n"
        );
    }
}
