//! Reading what the client sent: its request id, its `Idempotency-Key` header
//! as sent, and a bounded JSON body.

use crate::error::ApiError;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::Request;
use std::time::Duration;

/// The client's `X-Request-Id` when it is 1–128 visible ASCII characters,
/// else a fresh UUID v4.
pub fn request_id<B>(req: &Request<B>) -> String {
    req.headers()
        .get("x-request-id")
        .map(|v| v.as_bytes())
        .filter(|v| (1..=128).contains(&v.len()) && v.iter().all(u8::is_ascii_graphic))
        // Visible ASCII is valid UTF-8.
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The `Idempotency-Key` header lines of a request, unchecked: the service
/// that honours the header (issuance) validates the value, the other ignores it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeyHeader {
    /// No such header.
    #[default]
    Absent,
    /// One line, with this value.
    One(hyper::header::HeaderValue),
    /// More than one line: not a key.
    Repeated,
}

/// The request's `Idempotency-Key` lines (one header lookup when there are none).
pub fn idempotency_key<B>(req: &Request<B>) -> KeyHeader {
    let mut lines = req.headers().get_all("idempotency-key").iter();
    match (lines.next(), lines.next()) {
        (None, _) => KeyHeader::Absent,
        (Some(value), None) => KeyHeader::One(value.clone()),
        (Some(_), Some(_)) => KeyHeader::Repeated,
    }
}

/// The trace id the request came with, for the logs: the `Root` of the ALB's
/// `X-Amzn-Trace-Id` (`1-<8 hex>-<24 hex>`), else the trace id of a W3C
/// `traceparent` (32 hex). Anything malformed is ignored.
pub fn trace_id<B>(req: &Request<B>) -> Option<String> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    header("x-amzn-trace-id")
        .and_then(amzn_root)
        .or_else(|| header("traceparent").and_then(traceparent_id))
        .map(str::to_owned)
}

/// `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=…;Sampled=1` → the Root.
/// Both formats have fixed lengths, so they are checked by position: this
/// runs on every request.
fn amzn_root(value: &str) -> Option<&str> {
    let root = value
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Root="))?;
    let b = root.as_bytes();
    let ok = b.len() == 35
        && b.starts_with(b"1-")
        && b[10] == b'-'
        && b[2..10].iter().all(u8::is_ascii_hexdigit)
        && b[11..].iter().all(u8::is_ascii_hexdigit);
    ok.then_some(root)
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>` → the trace id (not all zeros).
fn traceparent_id(value: &str) -> Option<&str> {
    let value = value.trim();
    let b = value.as_bytes();
    let lower_hex = |r: std::ops::Range<usize>| b[r].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let ok = b.len() == 55
        && b[2] == b'-'
        && b[35] == b'-'
        && b[52] == b'-'
        && lower_hex(0..2)
        && &b[..2] != b"ff"
        && lower_hex(3..35)
        && b[3..35].iter().any(|&c| c != b'0')
        && lower_hex(36..52)
        && lower_hex(53..55);
    ok.then(|| &value[3..35])
}

/// A body declared too large but at most this long is read and thrown away
/// before the 413. Answering first and closing with the body unread makes the
/// kernel reset the connection, and a load balancer still sending the body
/// (nginx with unbuffered bodies, the ALB) may see the reset before the answer
/// and give the client a 502 instead of the task's 413. Larger bodies get the
/// 413 at once: reading megabytes to be polite is not worth it.
pub const DISCARD_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// The body length a request declares (`Content-Length`), if it is a number.
pub fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads a request's body to its end (at most `DISCARD_MAX_BYTES` declared),
/// keeping nothing, for at most `timeout`: for a refusal answered without it.
pub async fn discard_body<B>(req: Request<B>, timeout: Duration)
where
    B: Body<Data = Bytes>,
{
    let declared = content_length(&req);
    if declared.is_none_or(|n| n <= DISCARD_MAX_BYTES) {
        discard(req.into_body(), timeout).await;
    }
}

/// Reads `body` to its end, keeping nothing, for at most `timeout` and
/// [`DISCARD_MAX_BYTES`].
async fn discard<B>(body: B, timeout: Duration)
where
    B: Body<Data = Bytes>,
{
    let drain = async {
        let mut body = std::pin::pin!(body);
        let mut read = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read > DISCARD_MAX_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, drain).await;
}

/// Checks the content type and reads the whole body, refusing more than
/// `limit` bytes (413) and clients slower than `timeout` (408).
pub async fn read_body<B>(req: Request<B>, limit: usize, timeout: Duration) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if let Some(ct) = req.headers().get(CONTENT_TYPE) {
        let media_type = ct.to_str().unwrap_or("").split(';').next().unwrap_or("").trim();
        if !media_type.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let declared = content_length(&req);
    if let Some(n) = declared.filter(|&n| n > limit as u64) {
        if n <= DISCARD_MAX_BYTES {
            discard(req.into_body(), timeout).await;
        }
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let body = Limited::new(req.into_body(), limit);
    match tokio::time::timeout(timeout, body.collect()).await {
        Err(_) => Err(ApiError::RequestTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::PayloadTooLarge(limit)),
        Ok(Err(_)) => Err(ApiError::Invalid(crate::model::Invalid(vec![
            crate::model::FieldError::new("body", "request body could not be read"),
        ]))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_id(id: &[u8]) -> String {
        let req = Request::builder().header("x-request-id", id).body(()).unwrap();
        request_id(&req)
    }

    fn trace(headers: &[(&str, &str)]) -> Option<String> {
        let mut req = Request::builder();
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        trace_id(&req.body(()).unwrap())
    }

    #[test]
    fn trace_ids_come_from_the_alb_header_else_from_traceparent() {
        let root = "1-5759e988-bd862e3fe1be46a994272793";
        let amzn =
            format!("Self=1-67891234-12456789abcdef012345678;Root={root};Parent=53995c3f42cd8ad8;Sampled=1");
        assert_eq!(
            trace(&[("x-amzn-trace-id", &format!("Root={root}"))]).as_deref(),
            Some(root)
        );
        assert_eq!(trace(&[("x-amzn-trace-id", &amzn)]).as_deref(), Some(root));
        let w3c = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace(&[("traceparent", w3c)]).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        // The ALB's wins when both are there.
        assert_eq!(
            trace(&[("traceparent", w3c), ("x-amzn-trace-id", &amzn)]).as_deref(),
            Some(root)
        );
        for (name, bad) in [
            ("x-amzn-trace-id", "Root=2-5759e988-bd862e3fe1be46a994272793"),
            ("x-amzn-trace-id", "Root=1-5759e98-bd862e3fe1be46a994272793"),
            ("x-amzn-trace-id", "Parent=53995c3f42cd8ad8"),
            (
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ),
            (
                "traceparent",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            (
                "traceparent",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            ),
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-01"),
        ] {
            assert_eq!(trace(&[(name, bad)]), None, "{name}: {bad}");
        }
        assert_eq!(trace(&[]), None);
    }

    #[test]
    fn idempotency_keys_are_handed_on_as_sent_and_repeated_lines_are_told_apart() {
        let lines = |values: &[&str]| {
            let mut req = Request::builder();
            for v in values {
                req = req.header("Idempotency-Key", *v);
            }
            idempotency_key(&req.body(()).unwrap())
        };
        assert_eq!(lines(&[]), KeyHeader::Absent);
        assert_eq!(
            lines(&[" a key "]),
            KeyHeader::One(hyper::header::HeaderValue::from_static(" a key "))
        );
        assert_eq!(lines(&["a", "a"]), KeyHeader::Repeated);
    }

    #[test]
    fn echoes_valid_request_ids_and_replaces_others() {
        assert_eq!(with_id(b"abc-123"), "abc-123");
        let max = "x".repeat(128);
        assert_eq!(with_id(max.as_bytes()), max);
        for bad in [&b"x".repeat(129)[..], b"has space", b"tab\there", b"\xc3\xa9"] {
            let id = with_id(bad);
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{bad:?} -> {id}");
        }
        let none = request_id(&Request::new(()));
        assert_eq!(uuid::Uuid::parse_str(&none).unwrap().get_version_num(), 4);
    }
}
