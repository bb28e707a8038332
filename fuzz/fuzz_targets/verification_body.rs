//! `POST /verification/credentials` bodies: `VerifyRequest::parse` and the
//! invariants of `kc_fuzz::check_verification` (src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|raw: &[u8]| kc_fuzz::check_verification(raw));
