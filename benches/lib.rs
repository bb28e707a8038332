//! The benches' shared fixtures. Two kinds of bench live in `benches/`:
//! criterion (`parse`, `respond`, `endpoint`: wall-clock times, for people
//! comparing runs with `--save-baseline`/`--baseline`) and gungraun
//! (`instructions`: instruction counts under valgrind, deterministic, for the
//! CI gate `scripts/bench-gate.sh`). See docs/PERFORMANCE.md.

use kc_core::auth::Caller;
use kc_core::model::Credential;
use kc_core::RequestCtx;
use std::time::{Duration, UNIX_EPOCH};

/// A typical issuance body, with white space to trim and an email to lower-case.
pub const ISSUE: &[u8] =
    br#"{"name":"  John Doe ","email":"John@Example.com","credentialType":"Developer Certificate",
"metadata":{"organization":"Tech Corp","expiryDate":"2026-12-31","level":3,"tags":["rust","postgres"]}}"#;

/// A typical verification body.
pub const VERIFY: &[u8] =
    br#"{"id":"550e8400-e29b-41d4-a716-446655440000","name":"John Doe","email":"john@example.com"}"#;

/// A stored credential, as the 201 and the 200 write it.
pub fn credential() -> Credential<'static> {
    Credential {
        id: uuid::Uuid::from_u128(0x550e8400_e29b_41d4_a716_446655440000),
        name: "John Doe",
        email: "john@example.com",
        credential_type: "Developer Certificate",
        metadata: Some(r#"{"level": 3, "expiryDate": "2026-12-31", "organization": "Tech Corp"}"#),
        issued_by: "ip-10-0-1-123.ec2.internal",
        issuer: Some("acme-issuer"),
        issued_at: UNIX_EPOCH + Duration::from_millis(1_759_833_000_123),
    }
}

/// Who calls, in the benches: a caller as `AUTH_MODE=off` sees it.
pub static CALLER: std::sync::LazyLock<Caller> =
    std::sync::LazyLock::new(|| Caller::Open(std::net::IpAddr::from([127, 0, 0, 1])));

/// Who answers, in the benches.
pub fn ctx() -> RequestCtx<'static> {
    RequestCtx {
        request_id: "bench-request",
        worker_id: "ip-10-0-1-123.ec2.internal",
        caller: &CALLER,
    }
}
