//! Serialise the 201 and 200 response bodies.

use criterion::{criterion_group, criterion_main, Criterion};
use kc_core::json;
use kc_core::model::Credential;
use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

fn credential() -> Credential<'static> {
    Credential {
        id: uuid::Uuid::from_u128(0x550e8400_e29b_41d4_a716_446655440000),
        name: "John Doe",
        email: "john@example.com",
        credential_type: "Developer Certificate",
        metadata: Some(r#"{"level": 3, "expiryDate": "2026-12-31", "organization": "Tech Corp"}"#),
        issued_by: "ip-10-0-1-123.ec2.internal",
        issued_at: UNIX_EPOCH + Duration::from_millis(1_759_833_000_123),
    }
}

fn respond(c: &mut Criterion) {
    let cred = credential();
    let mut g = c.benchmark_group("respond");
    g.bench_function("201 issued", |b| {
        b.iter(|| {
            black_box(json::object(|o| {
                o.bool("success", true)
                    .str("message", "credential issued by ip-10-0-1-123.ec2.internal");
                black_box(&cred).write(o, "credential");
            }))
        })
    });
    g.bench_function("200 verified", |b| {
        b.iter(|| {
            black_box(json::object(|o| {
                o.bool("valid", true)
                    .str("message", "Credential verified successfully");
                black_box(&cred).write(o, "credential");
                o.str("verifiedBy", "ip-10-0-1-125.ec2.internal").str(
                    "verifiedAt",
                    &kc_core::time::rfc3339_millis(std::time::SystemTime::now()),
                );
            }))
        })
    });
    g.finish();
}

criterion_group!(benches, respond);
criterion_main!(benches);
