//! Write the 201 and 200 response bodies, with the services' own functions.

use criterion::{criterion_group, criterion_main, Criterion};
use kc_benches::{credential, ctx, ISSUE};
use kc_core::model::NewCredential;
use std::hint::black_box;

fn respond(c: &mut Criterion) {
    let cred = credential();
    let mut scratch = ISSUE.to_vec();
    let new = NewCredential::parse(ISSUE, &mut scratch).expect("a valid body");
    let mut g = c.benchmark_group("respond");
    g.bench_function("201 issued", |b| {
        b.iter(|| {
            black_box(issuance::issued(
                &ctx(),
                black_box(&new),
                cred.id,
                cred.metadata,
                cred.issued_at,
            ))
        })
    });
    g.bench_function("200 verified", |b| {
        b.iter(|| {
            black_box(verification::verified(
                &ctx(),
                black_box(&cred),
                &kc_core::time::rfc3339_millis(std::time::SystemTime::now()),
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, respond);
criterion_main!(benches);
