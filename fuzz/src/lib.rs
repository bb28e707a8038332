//! The invariants the fuzz targets hold the request parsers to, beyond "does not
//! panic": whatever [`NewCredential::parse`] or [`VerifyRequest::parse`] accepts
//!
//! - was valid JSON to an independent parser (serde_json), which decodes its
//!   strings to values that prepare to the very same identities;
//! - is prepared: non-empty, within its limit, trimmed, single-spaced, with no
//!   control or refused code point, and preparing it again changes nothing;
//! - round-trips: written as the services write it (the credential as a 201 and
//!   a 200 return it, and a request body made of it) it reads back, with
//!   serde_json and with the parser itself, as the same values;
//! - keeps metadata as a JSON object (at most 32 levels deep, no NUL) that
//!   serde_json reads as the same value the body held;
//! - is what the other service accepts too: a name or email verification takes
//!   is prepared by issuance to the same value.
//!
//! A violation panics, which libFuzzer reports as a crash. How to run the
//! targets: README.md beside this crate.

use kc_core::json::{object, write_str};
use kc_core::model::identity;
use kc_core::model::{
    Credential, NewCredential, VerifyRequest, CREDENTIAL_TYPE_MAX, EMAIL_MAX, METADATA_MAX_DEPTH, NAME_MAX,
};
use serde_json::{json, Value};
use std::borrow::Cow;

/// What [`NewCredential::parse`] accepted, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub name: String,
    pub email: String,
    pub credential_type: String,
    pub metadata: Option<String>,
}

/// What [`VerifyRequest::parse`] accepted, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// Parses an issuance body as the service does (a scratch copy for simd-json).
pub fn issue(raw: &[u8]) -> Option<Issued> {
    let mut scratch = raw.to_vec();
    let c = NewCredential::parse(raw, &mut scratch).ok()?;
    Some(Issued {
        name: c.name().to_owned(),
        email: c.email().to_owned(),
        credential_type: c.credential_type().to_owned(),
        metadata: c.metadata().map(str::to_owned),
    })
}

/// Parses a verification body as the service does.
pub fn verify(raw: &[u8]) -> Option<Verified> {
    let mut scratch = raw.to_vec();
    let v = VerifyRequest::parse(raw, &mut scratch).ok()?;
    Some(Verified {
        id: v.id().hyphenated().to_string(),
        name: v.name().map(str::to_owned),
        email: v.email().map(str::to_owned),
    })
}

/// The issuance target: every invariant of the module's documentation.
pub fn check_issuance(raw: &[u8]) {
    let Some(c) = issue(raw) else { return };
    prepared_identity("name", &c.name, NAME_MAX);
    prepared_identity("credentialType", &c.credential_type, CREDENTIAL_TYPE_MAX);
    prepared_email(&c.email);
    let body = independent(raw);

    match &c.metadata {
        Some(text) => {
            let meta: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("stored metadata {text:?} is not JSON to serde_json: {e}"));
            assert!(meta.is_object(), "stored metadata {text:?} is not an object");
            assert_eq!(meta, body["metadata"], "stored metadata is not the body's");
            assert!(
                depth(&meta) <= METADATA_MAX_DEPTH,
                "metadata deeper than the limit"
            );
            assert!(!has_nul(&meta), "metadata holds a NUL");
        }
        None => assert!(body.get("metadata").is_none(), "metadata sent but not kept"),
    }

    // Returned: the credential as a 201 and a 200 write it reads back the same.
    let returned = returned(&c);
    assert_eq!(returned["name"], c.name.as_str());
    assert_eq!(returned["email"], c.email.as_str());
    assert_eq!(returned["credentialType"], c.credential_type.as_str());
    let meta = c
        .metadata
        .as_deref()
        .map_or(Value::Null, |m| serde_json::from_str(m).expect("checked above"));
    assert_eq!(returned["metadata"], meta);

    // Sent again: a body made of the accepted values is accepted as the same values.
    let again = issuance_body(&c.name, &c.email, &c.credential_type, c.metadata.as_deref());
    assert_eq!(
        issue(&again).as_ref(),
        Some(&c),
        "{}",
        String::from_utf8_lossy(&again)
    );

    // Decoded by serde_json instead of simd-json, the strings prepare the same.
    let decoded = serde_json::to_vec(&json!({
        "name": body["name"], "email": body["email"], "credentialType": body["credentialType"]
    }))
    .expect("a Value serialises");
    let d = issue(&decoded).unwrap_or_else(|| panic!("refused as decoded by serde_json: {body}"));
    assert_eq!(
        (&d.name, &d.email, &d.credential_type),
        (&c.name, &c.email, &c.credential_type)
    );
}

/// The verification target: the same invariants for the optional name and
/// email, the id in its canonical form, and issuance preparing the same.
pub fn check_verification(raw: &[u8]) {
    let Some(v) = verify(raw) else { return };
    let body = independent(raw);
    let sent_id = body["id"].as_str().expect("an accepted id is a string");
    assert_eq!(sent_id.to_ascii_lowercase(), v.id, "id not the one sent");
    match &v.name {
        Some(name) => prepared_identity("name", name, NAME_MAX),
        None => assert!(body.get("name").is_none(), "name sent but not kept"),
    }
    match &v.email {
        Some(email) => prepared_email(email),
        None => assert!(body.get("email").is_none(), "email sent but not kept"),
    }

    // Sent again: the accepted values make a body accepted as the same values.
    let mut again = format!("{{\"id\":\"{}\"", v.id).into_bytes();
    for (key, value) in [("name", &v.name), ("email", &v.email)] {
        if let Some(value) = value {
            again.extend_from_slice(format!(",\"{key}\":").as_bytes());
            write_str(&mut again, value);
        }
    }
    again.push(b'}');
    assert_eq!(
        verify(&again).as_ref(),
        Some(&v),
        "{}",
        String::from_utf8_lossy(&again)
    );

    // What verification compares is what issuance stored for the same strings.
    let placeholder = |key: &str, default: &str| match body.get(key) {
        Some(sent) => sent.clone(),
        None => Value::from(default),
    };
    let issued = serde_json::to_vec(&json!({
        "name": placeholder("name", "n"), "email": placeholder("email", "e@x.co"), "credentialType": "t"
    }))
    .expect("a Value serialises");
    let c = issue(&issued).unwrap_or_else(|| panic!("verification accepts what issuance refuses: {body}"));
    if let Some(name) = &v.name {
        assert_eq!(&c.name, name, "issuance prepares the name differently");
    }
    if let Some(email) = &v.email {
        assert_eq!(&c.email, email, "issuance prepares the email differently");
    }
}

/// `raw` as serde_json reads it: whatever the services accept must be JSON to it too.
fn independent(raw: &[u8]) -> Value {
    serde_json::from_slice(raw).unwrap_or_else(|e| {
        panic!(
            "accepted a body serde_json refuses ({e}): {:?}",
            String::from_utf8_lossy(raw)
        )
    })
}

/// The credential as both services return it (kc_core's writer), read back by serde_json.
fn returned(c: &Issued) -> Value {
    let credential = Credential {
        id: uuid::Uuid::nil(),
        name: &c.name,
        email: &c.email,
        credential_type: &c.credential_type,
        metadata: c.metadata.as_deref(),
        issued_by: "fuzz",
        issuer: None,
        issued_at: std::time::UNIX_EPOCH,
        valid_until: None,
    };
    let written = object(|o| credential.write(o, "credential"));
    let mut value: Value = serde_json::from_slice(&written).unwrap_or_else(|e| {
        panic!(
            "the writer's output is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&written)
        )
    });
    value["credential"].take()
}

/// An issuance body written with kc_core's writer.
pub fn issuance_body(name: &str, email: &str, credential_type: &str, metadata: Option<&str>) -> Vec<u8> {
    object(|o| {
        o.str("name", name)
            .str("email", email)
            .str("credentialType", credential_type);
        if let Some(m) = metadata {
            o.raw("metadata", m);
        }
    })
}

/// A prepared name or credential type: what the Nickname profile leaves.
fn prepared_identity(field: &str, s: &str, max: usize) {
    assert!(!s.is_empty(), "{field} empty");
    assert!(s.chars().count() <= max, "{field} {s:?} longer than {max}");
    assert!(
        !s.chars().any(char::is_control),
        "{field} {s:?} has a control character"
    );
    assert_eq!(s.trim(), s, "{field} not trimmed");
    assert!(!s.contains("  "), "{field} {s:?} has a run of spaces");
    assert_eq!(
        identity::refused(s),
        None,
        "{field} {s:?} holds a refused code point"
    );
    let again = identity::nickname(Cow::Borrowed(s)).expect("prepared once, accepted again");
    assert_eq!(again, s, "preparing {field} twice changes it");
}

/// A prepared email: trimmed, lower-case, NFC, one `@`, and stable.
fn prepared_email(s: &str) {
    assert!(!s.is_empty(), "email empty");
    assert!(
        s.chars().count() <= EMAIL_MAX,
        "email {s:?} longer than {EMAIL_MAX}"
    );
    assert!(
        !s.chars().any(|c| c.is_control() || c.is_whitespace()),
        "email {s:?} has a control or space character"
    );
    assert_eq!(s.matches('@').count(), 1, "email {s:?}");
    assert_eq!(s.to_lowercase(), s, "email not lower-case");
    let again = identity::email(Cow::Borrowed(s)).expect("prepared once, accepted again");
    assert_eq!(again, s, "preparing the email twice changes it");
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}
