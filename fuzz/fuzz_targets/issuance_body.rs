//! `POST /issuance/credentials` bodies: `NewCredential::parse` and the invariants
//! of `kc_fuzz::check_issuance` (src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|raw: &[u8]| kc_fuzz::check_issuance(raw));
