//! Parse + validate + normalise request bodies (simd-json, in place).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kc_benches::{ISSUE, VERIFY};
use kc_core::model::{NewCredential, VerifyRequest};
use std::hint::black_box;

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(ISSUE.len() as u64));
    g.bench_function("issuance body", |b| {
        b.iter_batched_ref(
            || ISSUE.to_vec(),
            |scratch| {
                let c = NewCredential::parse(black_box(ISSUE), scratch).ok();
                black_box(c.map(|c| c.email().len()))
            },
            BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Bytes(VERIFY.len() as u64));
    g.bench_function("verification body", |b| {
        b.iter_batched_ref(
            || VERIFY.to_vec(),
            |scratch| black_box(VerifyRequest::parse(VERIFY, scratch).ok().map(|r| r.id())),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
