//! Reading what the client sent: its request id, and a bounded JSON body.

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
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
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
