//! Heap allocations per request, counted by a global allocator: the key check
//! alone (`Gate::admit`, which must allocate nothing), and an issuance POST
//! through the whole pipeline with an issuer's key and with `AUTH_MODE=off`
//! (access control must add no allocation per request). Each path runs once
//! first, so one-off costs (a metrics series, an address's limiter) are not
//! counted. Prints a table and fails if either rule is broken. The keyed
//! pipeline loads its clients from a scratch schema (see `kc_benches::Pipeline`).
//!
//!     cargo bench -p kc-benches --bench allocs

use issuance::Issuance;
use kc_benches::{bearer, gate, invalid_issuance, Pipeline, CLIENTS};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (reallocations included) while `f` runs, once warmed up by a first run.
fn allocations<R>(mut f: impl FnMut() -> R) -> u64 {
    black_box(f());
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    black_box(f());
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

fn admit(vars: &[(&str, &str)], authorization: Option<String>, anonymous: bool) -> u64 {
    let (gate, headers) = gate(vars, authorization.as_deref());
    let peer = SocketAddr::from(([10, 0, 1, 7], 40000));
    allocations(|| gate.admit(&headers, peer, anonymous).is_ok())
}

/// Allocations of one issuance POST refused at validation, the request built
/// outside the count.
fn request(p: &Pipeline<Issuance>, authorization: Option<&str>) -> u64 {
    let mut requests = [invalid_issuance(authorization), invalid_issuance(authorization)].into_iter();
    allocations(|| p.handle(requests.next().expect("a request")))
}

fn main() {
    let key = bearer(CLIENTS / 2);
    let open = Pipeline::<Issuance>::new(&[("AUTH_MODE", "off")]);
    let keyed = Pipeline::<Issuance>::with_clients(&[]);
    let rows = [
        (
            "Gate::admit, a key among 100 clients",
            admit(&[], Some(key.clone()), false),
        ),
        ("Gate::admit, no key (anonymous route)", admit(&[], None, true)),
        (
            "Gate::admit, AUTH_MODE=off",
            admit(&[("AUTH_MODE", "off")], None, false),
        ),
        (
            "POST /issuance/credentials 400, AUTH_MODE=off",
            request(&open, None),
        ),
        (
            "POST /issuance/credentials 400, issuer key",
            request(&keyed, Some(&key)),
        ),
    ];
    println!("| path | allocations per request |");
    println!("| --- | ---: |");
    for (path, n) in &rows {
        println!("| {path} | {n} |");
    }
    let admits = rows[..3].iter().map(|(_, n)| n).sum::<u64>();
    assert_eq!(admits, 0, "the key check allocates");
    assert!(
        rows[4].1 <= rows[3].1,
        "an authenticated request allocates more than an open one"
    );
    std::mem::forget((open, keyed));
}
