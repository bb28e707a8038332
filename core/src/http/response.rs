//! What a response is made of: a [`Reply`] (status, JSON body, an extra header
//! or two), and the headers every response carries: request and worker ids,
//! content type, the security headers helmet would set, and CORS (off unless
//! origins are listed; never `*`, since verification returns personal data).

use crate::config::CorsOrigins;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

/// A response before the common headers are added: status, JSON body, and an
/// extra header or two.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body; empty for 204.
    pub body: Vec<u8>,
    /// `Allow` for 405 and preflight responses.
    pub allow: Option<&'static str>,
    /// `Retry-After` seconds for 503 and 429.
    pub retry_after: Option<u32>,
    /// `WWW-Authenticate: Bearer` for 401.
    pub challenge: bool,
    /// `Idempotent-Replayed: true`: the answer of an earlier request with the
    /// same `Idempotency-Key`, given again.
    pub replayed: bool,
}

impl Reply {
    /// A JSON reply with this status.
    pub fn json(status: StatusCode, body: Vec<u8>) -> Self {
        Reply {
            status,
            body,
            allow: None,
            retry_after: None,
            challenge: false,
            replayed: false,
        }
    }
}

const SECURITY: [(HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
    (header::REFERRER_POLICY, "no-referrer"),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    ),
];

/// Header values computed once at start-up.
pub struct CommonHeaders {
    worker_id: HeaderValue,
    cors: CorsOrigins,
}

impl CommonHeaders {
    /// Headers for a task called `worker_id` with this CORS policy.
    pub fn new(worker_id: &str, cors: CorsOrigins) -> Self {
        CommonHeaders {
            worker_id: HeaderValue::from_str(worker_id).unwrap_or(HeaderValue::from_static("unknown-worker")),
            cors,
        }
    }

    /// Builds the response for `reply`, adding every common header.
    pub fn respond(
        &self,
        reply: Reply,
        request_id: &str,
        origin: Option<&HeaderValue>,
    ) -> Response<Full<Bytes>> {
        let preflight = reply.status == hyper::StatusCode::NO_CONTENT;
        let has_body = !reply.body.is_empty();
        let mut response = Response::new(Full::new(Bytes::from(reply.body)));
        *response.status_mut() = reply.status;
        let h = response.headers_mut();
        if has_body {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Ok(id) = HeaderValue::from_str(request_id) {
            h.insert("x-request-id", id);
        }
        h.insert("x-worker-id", self.worker_id.clone());
        for (name, value) in &SECURITY {
            h.insert(name.clone(), HeaderValue::from_static(value));
        }
        if let Some(allow) = reply.allow {
            if preflight {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static(allow),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("Authorization, Content-Type, X-Request-Id, Idempotency-Key"),
                );
                h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
            } else {
                h.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
        }
        if let Some(seconds) = reply.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if reply.challenge {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if reply.replayed {
            h.insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        self.cors(h, origin);
        response
    }

    fn cors(&self, h: &mut HeaderMap, origin: Option<&HeaderValue>) {
        let allowed = match &self.cors {
            CorsOrigins::Off => None,
            CorsOrigins::List(list) => {
                h.insert(header::VARY, HeaderValue::from_static("Origin"));
                origin
                    .filter(|o| list.iter().any(|allowed| allowed.as_bytes() == o.as_bytes()))
                    .cloned()
            }
        };
        if let Some(value) = allowed {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("X-Request-Id, X-Worker-Id, Idempotent-Replayed"),
            );
        }
    }
}
