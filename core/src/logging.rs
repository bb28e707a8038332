//! Logging: one JSON object per line (or text for humans), every line naming the
//! service and the worker, request lines also the request id.

use crate::config::{Config, LogFormat};
use log::kv::{Key, Value, VisitSource};
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
            line.extend_from_slice(b"{\"timestamp\":\"");
            line.extend_from_slice(crate::time::rfc3339_millis(SystemTime::now()).as_bytes());
            line.extend_from_slice(b"\",\"level\":\"");
            line.extend_from_slice(record.level().as_str().to_ascii_lowercase().as_bytes());
            line.extend_from_slice(b"\",\"service\":\"");
            line.extend_from_slice(service.as_bytes());
            line.extend_from_slice(b"\",\"worker_id\":");
            crate::json::write_str(&mut line, &worker);
            line.extend_from_slice(b",\"target\":");
            crate::json::write_str(&mut line, record.target());
            line.extend_from_slice(b",\"message\":");
            crate::json::write_str(&mut line, &record.args().to_string());
            let _ = record.key_values().visit(&mut JsonFields(&mut line));
            line.extend_from_slice(b"}\n");
            buf.write_all(&line)
        }),
        LogFormat::Text => builder.format(move |buf, record| {
            let mut fields = String::new();
            let _ = record.key_values().visit(&mut TextFields(&mut fields));
            writeln!(
                buf,
                "{} {:<5} {service}[{worker}] {}{fields}",
                crate::time::rfc3339_millis(SystemTime::now()),
                record.level(),
                record.args()
            )
        }),
    };
    let _ = builder.try_init();
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
