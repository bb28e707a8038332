//! Instruction counts of the CPU paths, under valgrind (gungraun): the same for
//! the same binary on the same kind of machine, however busy it is, so CI can
//! gate on them (`scripts/bench-gate.sh`, more than 5 % above the committed
//! baseline fails) where wall-clock times swing by half.
//!
//! - parsing and validating both request bodies;
//! - writing the 201 and the 200 bodies;
//! - building a batch's statement parameters (128 requests, the default batch);
//! - the key check alone (`Gate::admit`): a valid key among 100 clients (a
//!   SHA-256, a map lookup, a constant-time comparison, a GCRA step), no key
//!   on a route that serves anonymous callers (the per-address limiter), and
//!   `AUTH_MODE=off`;
//! - a request routed and handled in-process by the whole pipeline (the common
//!   headers, metrics, the access line): `GET /health/live`, and a POST with an
//!   invalid body: without a key (401 at the gate), with an issuer's key (400
//!   at validation) and with `AUTH_MODE=off` (400, what every request cost
//!   before access control). All stop short of the database, whose round trip
//!   would not be deterministic; the database side is PostgreSQL's own limit in
//!   `load/limit.sh`. The keyed pipeline loads its clients from a scratch schema
//!   while it is set up (so the gate needs PostgreSQL, as `scripts/test.sh`
//!   provides), then never asks it. The future is polled once with a no-op
//!   waker, so no runtime runs in the measured region.

use bytes::Bytes;
use gungraun::{library_benchmark, library_benchmark_group, main};
use http_body_util::Full;
use hyper::header::HeaderMap;
use hyper::Request;
use issuance::{Issuance, IssueParams, Pending};
use kc_benches::{bearer, credential, ctx, gate, invalid_issuance, Pipeline, CLIENTS, ISSUE, VERIFY};
use kc_core::auth::Gate;
use kc_core::model::{NewCredential, VerifyRequest};
use std::hint::black_box;
use std::net::SocketAddr;

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

/// A gate over the benches' 100 clients, a request's headers, and whether the
/// route serves anonymous callers. It has admitted the same request once: an
/// address's first request adds it to the anonymous limiter's map.
struct Admission {
    gate: Gate,
    headers: HeaderMap,
    anonymous: bool,
}

const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, 7)), 40000);

fn admission(vars: &[(&str, &str)], authorization: Option<String>, anonymous: bool) -> Admission {
    let (gate, headers) = gate(vars, authorization.as_deref());
    let _ = gate.admit(&headers, PEER, anonymous);
    Admission {
        gate,
        headers,
        anonymous,
    }
}

/// An issuer's key, the middle one of the 100.
fn keyed() -> Admission {
    admission(&[], Some(bearer(CLIENTS / 2)), false)
}

/// No key, on a route that serves anonymous callers (verification).
fn anonymous() -> Admission {
    admission(&[], None, true)
}

/// `AUTH_MODE=off`.
fn open() -> Admission {
    admission(&[("AUTH_MODE", "off")], None, false)
}

#[library_benchmark]
#[bench::key_of_100(setup = keyed)]
#[bench::anonymous(setup = anonymous)]
#[bench::open(setup = open)]
fn gate_admit(a: Admission) -> bool {
    let admitted = black_box(a.gate.admit(black_box(&a.headers), PEER, a.anonymous)).is_ok();
    std::mem::forget(a);
    admitted
}

/// A pipeline that has already handled one request like the measured one:
/// the first of its kind pays one-off costs (its metrics series is created).
fn warmed(
    p: Pipeline<Issuance>,
    request: impl Fn() -> Request<Full<Bytes>>,
) -> (Pipeline<Issuance>, Request<Full<Bytes>>) {
    p.handle(request());
    (p, request())
}

fn live() -> Request<Full<Bytes>> {
    Request::get("/health/live")
        .body(Full::default())
        .expect("request")
}

fn with_live() -> (Pipeline<Issuance>, Request<Full<Bytes>>) {
    warmed(Pipeline::new(&[]), live)
}

/// No key where issuance needs one: 401 at the gate.
fn without_key() -> (Pipeline<Issuance>, Request<Full<Bytes>>) {
    warmed(Pipeline::new(&[]), || invalid_issuance(None))
}

/// An issuer's key: admitted, then 400 at validation.
fn with_key() -> (Pipeline<Issuance>, Request<Full<Bytes>>) {
    let key = bearer(CLIENTS / 2);
    warmed(Pipeline::with_clients(&[]), || invalid_issuance(Some(&key)))
}

/// `AUTH_MODE=off`: 400 at validation, with no key checked.
fn open_pipeline() -> (Pipeline<Issuance>, Request<Full<Bytes>>) {
    warmed(Pipeline::new(&[("AUTH_MODE", "off")]), || invalid_issuance(None))
}

#[library_benchmark]
#[bench::live(setup = with_live)]
#[bench::refused_401(setup = without_key)]
#[bench::refused_400_key(setup = with_key)]
#[bench::refused_400_open(setup = open_pipeline)]
fn pipeline_request((p, req): (Pipeline<Issuance>, Request<Full<Bytes>>)) -> u16 {
    let status = black_box(p.handle(req));
    // Tearing the pipeline and its runtime down is not what is measured.
    std::mem::forget(p);
    status
}

library_benchmark_group!(
    name = cpu_paths;
    benchmarks = parse_issuance, parse_verification, write_201, write_200, batch_params, gate_admit, pipeline_request
);

main!(library_benchmark_groups = cpu_paths);
