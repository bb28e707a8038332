//! The errors a request can end in, and the one place they become HTTP responses.

use crate::auth::Refusal;
use crate::db::{DbError, Shed};
use crate::http::Reply;
use crate::json;
use crate::model::{FieldError, Invalid};
use hyper::StatusCode;

/// Everything that can stop a request from getting its normal answer.
#[derive(Debug)]
pub enum ApiError {
    /// The body broke the contract (400); one entry per offending field.
    Invalid(Invalid),
    /// The body is larger than `MAX_BODY_BYTES` (413).
    PayloadTooLarge(usize),
    /// `Content-Type` is present and not `application/json` (415).
    UnsupportedMediaType,
    /// No such path (404).
    NotFound,
    /// The path exists but not with this method (405); carries the `Allow` value.
    MethodNotAllowed(&'static str),
    /// The client took longer than `HTTP_HEADER_TIMEOUT_MS` to send the body (408).
    RequestTimeout,
    /// No API key where the route needs one, or one that is malformed, unknown or
    /// revoked (401, `WWW-Authenticate: Bearer`); says which.
    Unauthenticated(Refusal),
    /// The caller's key may not do this (403); the message says what.
    Forbidden(&'static str),
    /// The caller is past its rate limit (429); `Retry-After` seconds.
    RateLimited(u32),
    /// The caller used this `Idempotency-Key` before with another body (422).
    KeyReused,
    /// The caller's earlier request with this `Idempotency-Key` is still being
    /// served (409, `Retry-After`).
    KeyInFlight,
    /// The database refused a value that passed validation (400); the reason is logged.
    Refused(String),
    /// A dependency (the database) is unavailable; the reason is logged, not shown (503).
    Unavailable(String),
    /// Shed by admission control, never sent to the database (503); the reason
    /// goes into the request's access log line.
    Shed(Shed),
    /// A bug; the reason is logged, not shown (500).
    Internal(String),
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Invalid(e)
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Missing | Refusal::Unknown => ApiError::Unauthenticated(r),
            Refusal::RateLimited(seconds) => ApiError::RateLimited(seconds),
            Refusal::NotReady => ApiError::Unavailable("the API clients are not loaded yet".into()),
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Shed(why) => ApiError::Shed(why),
            DbError::Down(why) | DbError::Unavailable(why) => ApiError::Unavailable(why),
            DbError::BadValue(why) => ApiError::Refused(why),
            DbError::Other(why) => ApiError::Internal(why),
        }
    }
}

impl ApiError {
    /// Why the request was shed, if it was.
    pub fn shed(&self) -> Option<Shed> {
        match self {
            ApiError::Shed(why) => Some(*why),
            _ => None,
        }
    }

    /// Turns the error into a reply. `outcome_key` is how this service names its
    /// boolean outcome in validation errors (`success` or `valid`). Dependency
    /// failures and bugs are logged here, with the request id, and never shown.
    pub fn into_reply(self, outcome_key: &'static str, request_id: &str) -> Reply {
        let simple = |status, message: &str| {
            Reply::json(
                status,
                json::object(|o| {
                    o.bool("success", false).str("message", message);
                }),
            )
        };
        let unavailable = || {
            let mut reply = simple(StatusCode::SERVICE_UNAVAILABLE, "Service temporarily unavailable");
            reply.retry_after = Some(1);
            reply
        };
        match self {
            ApiError::Invalid(Invalid(errors)) => Reply::json(
                StatusCode::BAD_REQUEST,
                json::object(|o| {
                    o.bool(outcome_key, false)
                        .str("message", "Validation failed")
                        .array("errors", &errors, |o, e| {
                            o.str("field", &e.field).str("message", &e.message);
                        });
                }),
            ),
            ApiError::Refused(why) => {
                log::info!(request_id, reason:% = why; "database refused a value");
                let errors = vec![FieldError::new(
                    "body",
                    "contains a value the database cannot store",
                )];
                ApiError::Invalid(Invalid(errors)).into_reply(outcome_key, request_id)
            }
            ApiError::PayloadTooLarge(limit) => simple(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("Request body exceeds the limit of {limit} bytes"),
            ),
            ApiError::UnsupportedMediaType => simple(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported Content-Type: send the body as application/json",
            ),
            ApiError::NotFound => simple(StatusCode::NOT_FOUND, "Not found"),
            ApiError::MethodNotAllowed(allow) => {
                let mut reply = simple(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("Method not allowed; use {allow}"),
                );
                reply.allow = Some(allow);
                reply
            }
            ApiError::RequestTimeout => simple(
                StatusCode::REQUEST_TIMEOUT,
                "Request body was not received in time",
            ),
            ApiError::Unauthenticated(why) => {
                let mut reply = simple(
                    StatusCode::UNAUTHORIZED,
                    match why {
                        Refusal::Missing => "Authentication required: send Authorization: Bearer <API key>",
                        _ => "Invalid or revoked API key",
                    },
                );
                reply.challenge = true;
                reply
            }
            ApiError::Forbidden(what) => simple(StatusCode::FORBIDDEN, what),
            ApiError::RateLimited(seconds) => {
                let mut reply = simple(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded; retry later");
                reply.retry_after = Some(seconds);
                reply
            }
            ApiError::KeyReused => simple(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Idempotency-Key was already used with a different request body",
            ),
            ApiError::KeyInFlight => {
                let mut reply = simple(
                    StatusCode::CONFLICT,
                    "A request with this Idempotency-Key is still being processed; retry later",
                );
                reply.retry_after = Some(1);
                reply
            }
            ApiError::Unavailable(why) => {
                log::warn!(request_id, reason:% = why; "dependency unavailable");
                unavailable()
            }
            // Not logged on a line of its own: under overload that would double
            // the log; the access line says why, and the coalescer sums it up.
            ApiError::Shed(_) => unavailable(),
            ApiError::Internal(why) => {
                log::error!(request_id, reason:% = why; "internal error");
                Reply::json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json::object(|o| {
                        o.bool("success", false)
                            .str("message", "Internal server error")
                            .str("requestId", request_id);
                    }),
                )
            }
        }
    }
}
