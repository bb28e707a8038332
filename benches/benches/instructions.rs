//! Instruction counts of the CPU paths, under valgrind (gungraun): the same for
//! the same binary on the same kind of machine, however busy it is, so CI can
//! gate on them (`scripts/bench-gate.sh`, more than 5 % above the committed
//! baseline fails) where wall-clock times swing by half.
//!
//! - parsing and validating both request bodies;
//! - writing the 201 and the 200 bodies;
//! - building a batch's statement parameters (128 requests, the default batch);
//! - a request routed and handled in-process by the whole pipeline (the common
//!   headers, metrics, the access line): `GET /health/live`, and a POST that is
//!   refused at validation. Both stop short of the database, whose round trip
//!   would not be deterministic; the database side is PostgreSQL's own limit in
//!   `load/limit.sh`. The future is polled once with a no-op waker, so no
//!   runtime runs in the measured region.

use bytes::Bytes;
use gungraun::{library_benchmark, library_benchmark_group, main};
use http_body_util::Full;
use hyper::Request;
use issuance::{Issuance, IssueParams, Pending};
use kc_benches::{credential, ctx, ISSUE, VERIFY};
use kc_core::model::{NewCredential, VerifyRequest};
use kc_core::{App, Config};
use std::future::Future;
use std::hint::black_box;
use std::task::{Context, Poll, Waker};

#[library_benchmark]
#[bench::issuance(ISSUE)]
fn parse_issuance(body: &[u8]) -> usize {
    let mut scratch = body.to_vec();
    let c = NewCredential::parse(black_box(body), &mut scratch);
    black_box(c.map(|c| c.email().len()).unwrap_or(0))
}

#[library_benchmark]
#[bench::verification(VERIFY)]
fn parse_verification(body: &[u8]) -> u128 {
    let mut scratch = body.to_vec();
    black_box(
        VerifyRequest::parse(body, &mut scratch)
            .map(|r| r.id().as_u128())
            .unwrap_or(0),
    )
}

/// A parsed issuance request; its buffers live as long as the bench process.
fn parsed() -> NewCredential<'static> {
    let scratch: &'static mut [u8] = Vec::leak(ISSUE.to_vec());
    NewCredential::parse(ISSUE, scratch).expect("a valid body")
}

#[library_benchmark]
#[bench::issued(setup = parsed)]
fn write_201(new: NewCredential<'static>) -> usize {
    let cred = credential();
    black_box(
        issuance::issued(&ctx(), &new, cred.id, cred.metadata, cred.issued_at)
            .body
            .len(),
    )
}

#[library_benchmark]
fn write_200() -> usize {
    black_box(
        verification::verified(&ctx(), &credential(), "2025-10-07T11:45:00.000Z")
            .body
            .len(),
    )
}

/// 128 pending credentials, as a full default batch.
fn batch() -> Vec<Pending> {
    let new = parsed();
    (0..128u128)
        .map(|n| {
            Pending::new(
                uuid::Uuid::from_u128(n),
                &new,
                Some(std::sync::Arc::from("acme-issuer")),
            )
        })
        .collect()
}

#[library_benchmark]
#[bench::batch_of_128(setup = batch)]
fn batch_params(items: Vec<Pending>) -> usize {
    let params = IssueParams::new(black_box(&items));
    black_box(params.ids.len() + params.metadata.len())
}

/// An issuance pipeline (its database unreachable: the measured requests
/// never ask it), and the runtime it was built in, never driven.
struct Pipeline {
    app: App<Issuance>,
    _runtime: tokio::runtime::Runtime,
}

fn pipeline() -> Pipeline {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _entered = runtime.enter();
    let env = [
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
        ("WORKER_ID", "bench"),
        ("DB_SSLMODE", "disable"),
    ];
    let config = Config::from_lookup(|k| {
        env.iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| (*v).to_owned())
    })
    .expect("bench configuration");
    Pipeline {
        app: App::new(config),
        _runtime: runtime,
    }
}

/// Handles `req`, which must complete without waiting.
fn handle(p: &Pipeline, req: Request<Full<Bytes>>) -> u16 {
    let _entered = p._runtime.enter();
    let mut response = std::pin::pin!(p.app.handle(req));
    match response.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r.status().as_u16(),
        Poll::Pending => 0,
    }
}

/// A pipeline that has already handled one request like the measured one:
/// the first of its kind pays one-off costs (its metrics series is created).
fn warmed(request: fn() -> Request<Full<Bytes>>) -> (Pipeline, Request<Full<Bytes>>) {
    let p = pipeline();
    handle(&p, request());
    (p, request())
}

fn live() -> Request<Full<Bytes>> {
    Request::get("/health/live")
        .body(Full::default())
        .expect("request")
}

fn invalid() -> Request<Full<Bytes>> {
    let body = r#"{"name":"","email":"not-an-email","credentialType":"Developer Certificate"}"#;
    Request::post("/issuance/credentials")
        .header("content-type", "application/json")
        .header("x-amzn-trace-id", "Root=1-5759e988-bd862e3fe1be46a994272793")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("request")
}

fn with_live() -> (Pipeline, Request<Full<Bytes>>) {
    warmed(live)
}

fn with_invalid() -> (Pipeline, Request<Full<Bytes>>) {
    warmed(invalid)
}

#[library_benchmark]
#[bench::live(setup = with_live)]
#[bench::refused_400(setup = with_invalid)]
fn pipeline_request((p, req): (Pipeline, Request<Full<Bytes>>)) -> u16 {
    let status = black_box(handle(&p, req));
    // Tearing the pipeline and its runtime down is not what is measured.
    std::mem::forget(p);
    status
}

library_benchmark_group!(
    name = cpu_paths;
    benchmarks = parse_issuance, parse_verification, write_201, write_200, batch_params, pipeline_request
);

main!(library_benchmark_groups = cpu_paths);
