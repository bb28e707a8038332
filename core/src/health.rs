//! Health endpoints: the ALB's target check, the container's liveness check, and
//! readiness that turns to "draining" on shutdown.

//!
//! The database's state comes from the task's monitor (`db::monitor`): a check
//! answers at once, whatever the database is doing.

use crate::http::Reply;
use crate::json;
use hyper::StatusCode;

/// What a health response reports.
pub struct Status<'a> {
    /// `issuance` or `verification`.
    pub service: &'a str,
    /// This task's worker id.
    pub worker_id: &'a str,
    /// Seconds since the task started.
    pub uptime_seconds: u64,
    /// Whether the database answered (`None`: not asked).
    pub database_up: Option<bool>,
    /// The read replica's state (`up`, `lagging`, `down`), if there is one: said,
    /// never counted against the status (reads fall back to the database).
    pub replica: Option<&'static str>,
    /// Whether shutdown has begun (only readiness reports it).
    pub draining: bool,
    /// `AUTH_MODE=off`: said in every answer, so it is not left on unnoticed.
    pub auth_off: bool,
}

impl Status<'_> {
    /// 200 when everything asked about is fine, 503 otherwise.
    pub fn reply(&self) -> Reply {
        let (status, word) = if self.draining {
            (StatusCode::SERVICE_UNAVAILABLE, "draining")
        } else if self.database_up == Some(false) {
            (StatusCode::SERVICE_UNAVAILABLE, "degraded")
        } else {
            (StatusCode::OK, "ok")
        };
        Reply::json(
            status,
            json::object(|o| {
                o.str("status", word)
                    .str("service", self.service)
                    .str("workerId", self.worker_id);
                if let Some(up) = self.database_up {
                    o.str("database", if up { "up" } else { "down" });
                }
                if let Some(replica) = self.replica {
                    o.str("replica", replica);
                }
                o.u64("uptimeSeconds", self.uptime_seconds);
                if self.auth_off {
                    o.str("auth", "off").str(
                        "warning",
                        "AUTH_MODE=off: anyone may issue and read every credential",
                    );
                }
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &Status<'_>) -> (u16, String) {
        let r = s.reply();
        (r.status.as_u16(), String::from_utf8(r.body).unwrap_or_default())
    }

    #[test]
    fn statuses_follow_the_database_and_draining() {
        let mut s = Status {
            service: "issuance",
            worker_id: "w",
            uptime_seconds: 12,
            database_up: Some(true),
            replica: None,
            draining: false,
            auth_off: false,
        };
        assert_eq!(
            body(&s),
            (
                200,
                r#"{"status":"ok","service":"issuance","workerId":"w","database":"up","uptimeSeconds":12}"#
                    .into()
            )
        );
        s.database_up = Some(false);
        assert_eq!(
            body(&s),
            (503, r#"{"status":"degraded","service":"issuance","workerId":"w","database":"down","uptimeSeconds":12}"#.into())
        );
        s.replica = Some("down");
        assert_eq!(
            body(&s),
            (503, r#"{"status":"degraded","service":"issuance","workerId":"w","database":"down","replica":"down","uptimeSeconds":12}"#.into())
        );
        s.database_up = Some(true);
        assert_eq!(
            body(&s).0,
            200,
            "a replica that is down does not make the task unhealthy"
        );
        s.replica = None;
        s.database_up = None;
        assert_eq!(
            body(&s),
            (
                200,
                r#"{"status":"ok","service":"issuance","workerId":"w","uptimeSeconds":12}"#.into()
            )
        );
        s.auth_off = true;
        assert!(body(&s).1.ends_with(r#""uptimeSeconds":12,"auth":"off","warning":"AUTH_MODE=off: anyone may issue and read every credential"}"#));
        s.draining = true;
        assert_eq!(body(&s).0, 503);
        assert!(body(&s).1.contains(r#""status":"draining""#));
    }
}
