//! The round-trip property (issue 21, item 6): whatever `NewCredential::parse`
//! accepts, written back with the project's JSON writer (as both services return
//! a credential), reads back as the same values; a body made of the accepted
//! values is accepted as the same values again (preparation is idempotent); and
//! verification prepares the accepted name and email to themselves. Bodies come
//! from the deterministic generator in tests/bodies; the fuzz targets (fuzz/)
//! hold arbitrary bytes to the same properties, and
//! verification/tests/roundtrip.rs holds what PostgreSQL stores to them.

mod bodies;

use bodies::Rng;
use kc_core::json::{object, write_str};
use kc_core::model::{Credential, NewCredential, VerifyRequest};
use simd_json::prelude::*;
use simd_json::OwnedValue;

const SEED: u64 = 21;
const CASES: usize = 4000;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Accepted {
    name: String,
    email: String,
    credential_type: String,
    metadata: Option<String>,
}

fn issue(body: &[u8]) -> Option<Accepted> {
    let mut scratch = body.to_vec();
    let c = NewCredential::parse(body, &mut scratch).ok()?;
    Some(Accepted {
        name: c.name().into(),
        email: c.email().into(),
        credential_type: c.credential_type().into(),
        metadata: c.metadata().map(Into::into),
    })
}

fn read(json: &[u8]) -> OwnedValue {
    simd_json::to_owned_value(&mut json.to_vec()).expect("the writer writes JSON")
}

fn str_member<'v>(v: &'v OwnedValue, key: &str) -> Option<&'v str> {
    v.get(key).and_then(|m| m.as_str())
}

/// `{"k1":"v1",…}` with the writer's string literals, for values a request may hold.
fn request(members: &[(&str, &str)], metadata: Option<&str>) -> Vec<u8> {
    let mut out = b"{".to_vec();
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(&mut out, key);
        out.push(b':');
        write_str(&mut out, value);
    }
    if let Some(m) = metadata {
        out.extend_from_slice(b",\"metadata\":");
        out.extend_from_slice(m.as_bytes());
    }
    out.push(b'}');
    out
}

#[test]
fn whatever_issuance_accepts_round_trips() {
    let mut rng = Rng::new(SEED);
    let mut accepted = 0;
    for case in 0..CASES {
        let body = bodies::issuance(&mut rng, "");
        let Some(c) = issue(body.as_bytes()) else {
            continue;
        };
        accepted += 1;
        let at = format!("case {case} of seed {SEED}: {body}");

        // Returned: the credential as a 201 and a 200 write it.
        let written = object(|o| {
            Credential {
                id: uuid::Uuid::nil(),
                name: &c.name,
                email: &c.email,
                credential_type: &c.credential_type,
                metadata: c.metadata.as_deref(),
                issued_by: "roundtrip",
                issuer: None,
                issued_at: std::time::UNIX_EPOCH,
                valid_until: None,
            }
            .write(o, "credential")
        });
        let back = read(&written);
        let back = back.get("credential").expect(&at);
        assert_eq!(str_member(back, "name"), Some(c.name.as_str()), "{at}");
        assert_eq!(str_member(back, "email"), Some(c.email.as_str()), "{at}");
        assert_eq!(
            str_member(back, "credentialType"),
            Some(c.credential_type.as_str()),
            "{at}"
        );
        let metadata = c
            .metadata
            .as_deref()
            .map_or(OwnedValue::null(), |m| read(m.as_bytes()));
        assert!(metadata.is_null() || metadata.is_object(), "{at}");
        assert_eq!(back.get("metadata"), Some(&metadata), "{at}");

        // Sent again: the accepted values are accepted as themselves.
        let fields = [
            ("name", c.name.as_str()),
            ("email", c.email.as_str()),
            ("credentialType", c.credential_type.as_str()),
        ];
        let again = request(&fields, c.metadata.as_deref());
        assert_eq!(issue(&again).as_ref(), Some(&c), "{at}");

        // Verification prepares them to themselves too, so the holder's details match.
        let id = ("id", "550e8400-e29b-41d4-a716-446655440000");
        let verify = request(&[id, fields[0], fields[1]], None);
        let mut scratch = verify.clone();
        let v = VerifyRequest::parse(&verify, &mut scratch).expect(&at);
        assert_eq!(
            (v.name(), v.email()),
            (Some(c.name.as_str()), Some(c.email.as_str())),
            "{at}"
        );
    }
    eprintln!("{accepted} of {CASES} generated bodies accepted");
    // Neither vacuous nor blind: the generator makes both kinds of body.
    assert!(
        (CASES / 4..CASES * 9 / 10).contains(&accepted),
        "{accepted} of {CASES} accepted"
    );
}

#[test]
fn the_generator_escapes_what_it_writes_and_replays() {
    let mut a = Rng::new(7);
    let mut b = Rng::new(7);
    for _ in 0..200 {
        let body = bodies::issuance(&mut a, " 1");
        assert_eq!(body, bodies::issuance(&mut b, " 1"));
        // Every body is JSON, refused or not: the generator tests the rules, not the syntax.
        assert!(read(body.as_bytes()).is_object(), "{body}");
    }
}
