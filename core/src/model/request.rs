//! What a client may send: the issuance and verification request bodies, read
//! from their JSON object member by member and normalised. The rules they are
//! checked against live in [`super::rules`].

use super::rules::{
    canonical_uuid, contains_nul, depth, email, identity, message, numeric_fits, trim, valid_until,
    FieldError, Invalid, CREDENTIAL_TYPE_MAX, MAX_VALIDITY_DAYS, METADATA_MAX_DEPTH, NAME_MAX, REASON_MAX,
};
use crate::json;
use simd_json::prelude::*;
use simd_json::BorrowedValue;
use std::borrow::Cow;
use std::time::{Duration, SystemTime};

/// A credential to issue: parsed, normalised and validated. The only way to get
/// one is [`NewCredential::parse`], so holding one means the rules were applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential<'a> {
    name: Cow<'a, str>,
    email: Cow<'a, str>,
    credential_type: Cow<'a, str>,
    metadata: Option<Cow<'a, str>>,
    valid_until: Option<SystemTime>,
}

impl<'a> NewCredential<'a> {
    /// Parses an issuance request body. `raw` is the body as received; `scratch`
    /// is a copy of it that simd-json may rewrite in place, and that the returned
    /// strings borrow from. A `validUntil` may be up to [`MAX_VALIDITY_DAYS`] ahead.
    pub fn parse(raw: &'a [u8], scratch: &'a mut [u8]) -> Result<Self, Invalid> {
        let max_validity = Duration::from_secs(MAX_VALIDITY_DAYS * 86_400);
        Self::parse_within(raw, scratch, max_validity)
    }

    /// Like [`NewCredential::parse`], with a `validUntil` that must be at most
    /// `max_validity` from now (`CREDENTIAL_MAX_VALIDITY_DAYS`). The clock is
    /// read only when the body has a `validUntil`.
    pub fn parse_within(
        raw: &'a [u8],
        scratch: &'a mut [u8],
        max_validity: Duration,
    ) -> Result<Self, Invalid> {
        Self::parse_with_clock(raw, scratch, max_validity, SystemTime::now)
    }

    /// Like [`NewCredential::parse_within`], as if it were `now`.
    pub fn parse_at(
        raw: &'a [u8],
        scratch: &'a mut [u8],
        now: SystemTime,
        max_validity: Duration,
    ) -> Result<Self, Invalid> {
        Self::parse_with_clock(raw, scratch, max_validity, || now)
    }

    fn parse_with_clock(
        raw: &'a [u8],
        scratch: &'a mut [u8],
        max_validity: Duration,
        now: impl FnOnce() -> SystemTime,
    ) -> Result<Self, Invalid> {
        let value = json::parse_object(scratch).map_err(|e| e.explain(raw))?;
        let mut errors = repeated(&value, raw);
        let mut body = Members::new(value, &mut errors);

        let name = body
            .string("name", Some(NAME_MAX), &mut errors)
            .and_then(|n| identity("name", trim(n), NAME_MAX, &mut errors));
        let email = body
            .string("email", None, &mut errors)
            .and_then(|e| email(e, &mut errors));
        let credential_type = body
            .string("credentialType", Some(CREDENTIAL_TYPE_MAX), &mut errors)
            .and_then(|t| identity("credentialType", trim(t), CREDENTIAL_TYPE_MAX, &mut errors));
        let spans = json::top_level_members(raw, "metadata").unwrap_or_default();
        let metadata = match body.take("metadata") {
            None => None,
            // Repeated (see `repeated`), or holding a NUL: already reported.
            Some(_) if Members::has_nul_error(&errors, "metadata") => None,
            Some(BorrowedValue::Object(map)) => {
                let value = BorrowedValue::Object(map);
                if depth(&value) > METADATA_MAX_DEPTH {
                    errors.push(FieldError::new("metadata", message::too_deep(METADATA_MAX_DEPTH)));
                    None
                } else {
                    // Hand PostgreSQL the metadata as the client wrote it, so numbers keep
                    // every digit. (simd-json checked it is UTF-8; re-encoding is a fallback
                    // that cannot be reached.)
                    let text = match spans
                        .first()
                        .and_then(|span| std::str::from_utf8(&raw[span.clone()]).ok())
                    {
                        Some(text) => Cow::Borrowed(text),
                        None => Cow::Owned(value.encode()),
                    };
                    // A number jsonb cannot store would fail the whole batch it rides in.
                    if json::numbers(text.as_bytes()).all(numeric_fits) {
                        Some(text)
                    } else {
                        errors.push(FieldError::new("metadata", message::number_out_of_range()));
                        None
                    }
                }
            }
            Some(_) => {
                errors.push(FieldError::new("metadata", message::NOT_AN_OBJECT));
                None
            }
        };
        let valid_until = body
            .optional_string("validUntil", None, &mut errors)
            .and_then(|t| valid_until(&t, now(), max_validity, &mut errors));
        match (name, email, credential_type) {
            (Some(name), Some(email), Some(credential_type)) if errors.is_empty() => Ok(NewCredential {
                name,
                email,
                credential_type,
                metadata,
                valid_until,
            }),
            _ => Err(Invalid(errors)),
        }
    }

    /// Trimmed name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Trimmed, lower-cased email.
    pub fn email(&self) -> &str {
        &self.email
    }
    /// Trimmed credential type.
    pub fn credential_type(&self) -> &str {
        &self.credential_type
    }
    /// Metadata as JSON text (an object), or `None` when the client sent none.
    pub fn metadata(&self) -> Option<&str> {
        self.metadata.as_deref()
    }
    /// The end of its validity, or `None` when the client sent no `validUntil`.
    pub fn valid_until(&self) -> Option<SystemTime> {
        self.valid_until
    }
}

/// A revocation's optional body: nothing at all, or `{"reason": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeRequest<'a> {
    reason: Option<Cow<'a, str>>,
}

impl<'a> RevokeRequest<'a> {
    /// Parses a revocation body in place (see [`NewCredential::parse`]); no
    /// body at all is a revocation without a reason. White space alone is a
    /// body, and no JSON: 400, as at issuance.
    pub fn parse(raw: &[u8], scratch: &'a mut [u8]) -> Result<Self, Invalid> {
        if raw.is_empty() {
            return Ok(RevokeRequest { reason: None });
        }
        let value = json::parse_object(scratch).map_err(|e| e.explain(raw))?;
        let mut errors = repeated(&value, raw);
        let mut body = Members::new(value, &mut errors);
        let reason = body
            .optional_string("reason", Some(REASON_MAX), &mut errors)
            .map(trim);
        if errors.is_empty() {
            Ok(RevokeRequest { reason })
        } else {
            Err(Invalid(errors))
        }
    }

    /// The reason, trimmed (1–500 characters), if one was given.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

/// A verification request: a credential id and, optionally, the name and email
/// it must have been issued to (normalised like at issuance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest<'a> {
    id: uuid::Uuid,
    name: Option<Cow<'a, str>>,
    email: Option<Cow<'a, str>>,
}

impl<'a> VerifyRequest<'a> {
    /// Parses a verification request body in place (see [`NewCredential::parse`]:
    /// `raw` is the body as received, `scratch` a copy the parser may rewrite).
    pub fn parse(raw: &[u8], scratch: &'a mut [u8]) -> Result<Self, Invalid> {
        let value = json::parse_object(scratch).map_err(|e| e.explain(raw))?;
        let mut errors = repeated(&value, raw);
        let mut body = Members::new(value, &mut errors);
        let id = body
            .string("id", None, &mut errors)
            .and_then(|id| match canonical_uuid(&id) {
                Some(id) => Some(id),
                None => {
                    errors.push(FieldError::new("id", message::NOT_A_UUID));
                    None
                }
            });
        let name = body
            .optional_string("name", Some(NAME_MAX), &mut errors)
            .and_then(|n| identity("name", trim(n), NAME_MAX, &mut errors));
        let email = body
            .optional_string("email", None, &mut errors)
            .and_then(|e| email(e, &mut errors));
        match id {
            Some(id) if errors.is_empty() => Ok(VerifyRequest { id, name, email }),
            _ => Err(Invalid(errors)),
        }
    }

    /// The credential id.
    pub fn id(&self) -> uuid::Uuid {
        self.id
    }
    /// The name to match, normalised.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// The email to match, normalised.
    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }
}

/// One error per top-level member that is repeated, or inside which an object
/// repeats a member (see [`json::repeated_members`]): whichever copy a reader
/// took, another reader could take the other.
fn repeated(value: &BorrowedValue<'_>, raw: &[u8]) -> Vec<FieldError> {
    json::repeated_members_of(value, raw)
        .into_iter()
        .map(|name| FieldError::new(Cow::Owned(name), message::REPEATED))
        .collect()
}

/// The top-level members of a request object, taken out one by one.
struct Members<'a> {
    map: Box<simd_json::borrowed::Object<'a>>,
}

impl<'a> Members<'a> {
    /// Also reports NUL characters anywhere in the body, once per top-level member:
    /// PostgreSQL can store them neither in text nor in JSONB.
    fn new(value: BorrowedValue<'a>, errors: &mut Vec<FieldError>) -> Self {
        let map = match value {
            BorrowedValue::Object(map) => map,
            // parse_object only returns objects.
            _ => Box::default(),
        };
        for (key, member) in map.iter() {
            if key.contains('\0') {
                errors.push(FieldError::new("body", message::NUL));
            } else if contains_nul(member) {
                errors.push(FieldError::new(Cow::Owned(key.to_string()), message::NUL));
            }
        }
        Members { map }
    }

    fn take(&mut self, key: &str) -> Option<BorrowedValue<'a>> {
        self.map.remove(key)
    }

    fn has_nul_error(errors: &[FieldError], key: &str) -> bool {
        errors.iter().any(|e| e.field == key)
    }

    /// A required string member, trimmed length-checked against `max` when given.
    fn string(
        &mut self,
        key: &'static str,
        max: Option<usize>,
        errors: &mut Vec<FieldError>,
    ) -> Option<Cow<'a, str>> {
        match self.take(key) {
            None => {
                errors.push(FieldError::new(key, message::REQUIRED));
                None
            }
            Some(v) => Self::check_string(key, v, max, errors),
        }
    }

    /// An optional string member: absent is fine, anything else is checked like a required one.
    fn optional_string(
        &mut self,
        key: &'static str,
        max: Option<usize>,
        errors: &mut Vec<FieldError>,
    ) -> Option<Cow<'a, str>> {
        self.take(key)
            .and_then(|v| Self::check_string(key, v, max, errors))
    }

    fn check_string(
        key: &'static str,
        v: BorrowedValue<'a>,
        max: Option<usize>,
        errors: &mut Vec<FieldError>,
    ) -> Option<Cow<'a, str>> {
        let BorrowedValue::String(s) = v else {
            errors.push(FieldError::new(key, message::NOT_A_STRING));
            return None;
        };
        if Self::has_nul_error(errors, key) {
            return None;
        }
        if let Some(max) = max {
            let len = s.trim().chars().count();
            if len == 0 {
                errors.push(FieldError::new(key, message::EMPTY));
                return None;
            }
            if len > max {
                errors.push(FieldError::new(key, message::too_long(max)));
                return None;
            }
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, email, credentialType, metadata) on success; (field, message) pairs otherwise.
    type Parsed = Result<(String, String, String, Option<String>), Vec<(String, String)>>;

    fn issue(body: &str) -> Parsed {
        let raw = body.as_bytes().to_vec();
        let mut scratch = raw.clone();
        NewCredential::parse(&raw, &mut scratch)
            .map(|c| {
                (
                    c.name().to_owned(),
                    c.email().to_owned(),
                    c.credential_type().to_owned(),
                    c.metadata().map(str::to_owned),
                )
            })
            .map_err(|Invalid(errors)| {
                errors
                    .into_iter()
                    .map(|e| (e.field.into_owned(), e.message.into_owned()))
                    .collect()
            })
    }

    fn fields(body: &str) -> Vec<String> {
        issue(body).unwrap_err().into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn normalises_a_valid_request() {
        let (name, email, kind, meta) = issue(
            r#"{"name":"  John Doe ","email":" John@Example.COM ","credentialType":"\tDeveloper Certificate\n",
                "metadata":{"organization":"Tech Corp","score":12.50},"extra":[1,2]}"#,
        )
        .unwrap();
        assert_eq!(name, "John Doe");
        assert_eq!(email, "john@example.com");
        assert_eq!(kind, "Developer Certificate");
        assert_eq!(
            meta.as_deref(),
            Some(r#"{"organization":"Tech Corp","score":12.50}"#)
        );
    }

    #[test]
    fn metadata_is_optional_and_empty_objects_stay_empty() {
        let base = r#""name":"a","email":"a@b.co","credentialType":"t""#;
        assert_eq!(issue(&format!("{{{base}}}")).unwrap().3, None);
        assert_eq!(
            issue(&format!("{{{base},\"metadata\":{{}}}}"))
                .unwrap()
                .3
                .as_deref(),
            Some("{}")
        );
        // An escaped key is still found, and its value taken as written.
        assert_eq!(
            issue(&format!("{{{base},\"meta\\u0064ata\":{{\"k\":1}}}}"))
                .unwrap()
                .3
                .as_deref(),
            Some(r#"{"k":1}"#)
        );
    }

    #[test]
    fn metadata_numbers_must_fit_postgresql_numeric() {
        let with = |n: &str| {
            issue(&format!(
                r#"{{"name":"a","email":"a@b.co","credentialType":"t","metadata":{{"x":[1,{{"y":{n}}}]}}}}"#
            ))
        };
        // (Beyond a double, the parser refuses a number first: see below.)
        for fits in [
            "0.1e-300",
            "1e-16383",
            "0e131072",
            "-1.5e300",
            "100e-16381",
            "1e308",
            "1",
        ] {
            assert!(with(fits).is_ok(), "{fits}");
        }
        for poison in [
            "0.1e-400000",
            "1.0e-16383",
            "0.0e-16383",
            "1e-1073741823",
            "0e1073741823",
        ] {
            assert_eq!(
                with(poison).unwrap_err(),
                [("metadata".to_owned(), message::number_out_of_range().into_owned())],
                "{poison}"
            );
        }
        // Parsed as a double it would be infinite: refused, and said so.
        assert_eq!(
            with("1e400").unwrap_err(),
            [(
                "body".to_owned(),
                "request body has a number beyond ±1.7976931348623157e308".to_owned()
            )]
        );
        // A number-like string is not a number.
        assert!(with(r#""1e-99999""#).is_ok());
    }

    #[test]
    fn reports_every_offending_field_at_once() {
        assert_eq!(fields("{}"), ["name", "email", "credentialType"]);
        assert_eq!(
            fields(r#"{"name":1,"email":"nope","credentialType":"   ","metadata":[1]}"#),
            ["name", "email", "credentialType", "metadata"]
        );
        let errors = issue(r#"{"name":1,"email":"x","credentialType":true}"#).unwrap_err();
        assert_eq!(errors[0], ("name".to_owned(), "must be a string".to_owned()));
        assert_eq!(
            errors[1],
            ("email".to_owned(), "must be a valid email address".to_owned())
        );
    }

    #[test]
    fn enforces_lengths_in_characters_after_trimming() {
        let ok = format!(
            r#"{{"name":" {} ","email":"a@b.co","credentialType":"{}"}}"#,
            "é".repeat(255),
            "ü".repeat(100)
        );
        assert!(issue(&ok).is_ok());
        let long = format!(
            r#"{{"name":"{}","email":"a@b.co","credentialType":"{}"}}"#,
            "x".repeat(256),
            "y".repeat(101)
        );
        assert_eq!(fields(&long), ["name", "credentialType"]);
        let email = format!(
            r#"{{"name":"n","email":"{}@b.co","credentialType":"t"}}"#,
            "a".repeat(251)
        );
        assert_eq!(
            issue(&email).unwrap_err(),
            [("email".to_owned(), "must be at most 255 characters".to_owned())]
        );
    }

    #[test]
    fn repeated_metadata_is_refused_whichever_copy_is_an_object() {
        let base = r#""name":"a","email":"a@b.co","credentialType":"t""#;
        for repeat in [
            r#""metadata":{"a":1},"metadata":[1]"#,
            r#""metadata":[1],"metadata":{"a":1}"#,
            r#""metadata":{"a":1},"meta\u0064ata":null"#,
            r#""meta\u0064ata":"x","metadata":{}"#,
        ] {
            let errors = issue(&format!("{{{repeat},{base}}}")).unwrap_err();
            assert_eq!(
                errors,
                [("metadata".to_owned(), "must appear only once".to_owned())],
                "{repeat}"
            );
        }
    }

    #[test]
    fn a_repeated_member_is_refused_at_any_object_size_and_depth() {
        // simd-json keeps both copies below 33 members and the last above: both sides.
        for padding in [0, 1, 28, 29, 30, 31, 32, 33, 40, 100] {
            let pad: String = (0..padding).map(|i| format!(",\"x{i}\":{i}")).collect();
            for (field, repeat) in [
                ("name", r#""name":"Mallory""#),
                ("email", r#""em\u0061il":"m@b.co""#),
                ("credentialType", r#""credentialType":"u""#),
            ] {
                let body = format!(r#"{{"name":"a","email":"a@b.co","credentialType":"t"{pad},{repeat}}}"#);
                assert_eq!(
                    issue(&body).unwrap_err(),
                    [(field.to_owned(), "must appear only once".to_owned())],
                    "{field} with {padding} more members"
                );
            }
            // Inside metadata, at any depth and in objects of any size.
            let inner: String = (0..padding).map(|i| format!("\"k{i}\":{i},")).collect();
            let body = format!(
                r#"{{"name":"a","email":"a@b.co","credentialType":"t","metadata":{{"l":[{{{inner}"ssn":1,"ssn":2}}]}}}}"#
            );
            assert_eq!(fields(&body), ["metadata"], "nested with {padding} more members");
        }
        // The same name in different objects is no repeat.
        assert!(issue(
            r#"{"name":"a","email":"a@b.co","credentialType":"t","metadata":{"name":"x","o":{"name":"y"}}}"#
        )
        .is_ok());
        assert_eq!(
            verify(
                r#"{"id":"550e8400-e29b-41d4-a716-446655440000","id":"00000000-0000-4000-8000-000000000000"}"#
            )
            .unwrap_err(),
            ["id"]
        );
    }

    #[test]
    fn identities_are_prepared_so_invisible_or_combining_variants_are_one_person() {
        let named = |name: &str| {
            issue(&format!(
                r#"{{"name":{},"email":"a@b.co","credentialType":"t"}}"#,
                serde_json_str(name)
            ))
        };
        // Names in any script, accents and emoji keep working, and come back as sent.
        for name in [
            "Zoë Ólafsdóttir",
            "李小龙",
            "محمد بن سلمان",
            "Ada 🎓",
            "O'Brien-Smith",
            // Persian: a ZWNJ between joining letters; Hindi: a ZWJ after a virama.
            "\u{646}\u{627}\u{645}\u{647}\u{200C}\u{627}\u{6CC}",
            "\u{915}\u{94D}\u{200D}\u{937}",
        ] {
            assert_eq!(named(name).map(|p| p.0), Ok(name.to_owned()), "{name:?}");
        }
        // A combining accent is the precomposed letter; spaces of any kind are one space.
        assert_eq!(named("Jose\u{301}").unwrap().0, "José");
        assert_eq!(named("John\u{a0}\u{a0}Doe").unwrap().0, "John Doe");
        assert_eq!(named("John  Doe").unwrap().0, "John Doe");
        // Invisible, control and direction-changing code points are refused.
        for (name, cp) in [
            ("Jo\u{200B}hn", "U+200B"),
            ("John\u{7}", "U+0007"),
            ("\u{1b}[31mJohn", "U+001B"),
            ("John\u{202E}eoD", "U+202E"),
            ("Jo\u{feff}hn", "U+FEFF"),
            ("J\u{200D}ohn", "U+200D"),
        ] {
            let errors = named(name).unwrap_err();
            assert_eq!(errors.len(), 1, "{name:?}");
            assert_eq!(errors[0].0, "name");
            assert!(errors[0].1.contains(cp), "{name:?}: {}", errors[0].1);
        }
        // The credential type too; metadata stays free-form.
        assert_eq!(
            fields(
                r#"{"name":"a","email":"a@b.co","credentialType":"De\u200bgree","metadata":{"x":"\u200b\u202e"}}"#
            ),
            ["credentialType"]
        );
        // Emails hold what an address can.
        assert_eq!(
            fields(r#"{"name":"a","email":"<script>x</script>@x.co","credentialType":"t"}"#),
            ["email"]
        );
        assert_eq!(
            fields(r#"{"name":"a","email":"a\u200b@x.co","credentialType":"t"}"#),
            ["email"]
        );
        // Verification prepares a name the same way, so it matches what was stored.
        let v = verify(r#"{"id":"550e8400-e29b-41d4-a716-446655440000","name":"Jose\u0301"}"#).unwrap();
        assert_eq!(v.name(), Some("José"));
        assert_eq!(
            verify(r#"{"id":"550e8400-e29b-41d4-a716-446655440000","name":"Jo\u200bse"}"#).unwrap_err(),
            ["name"]
        );
    }

    fn serde_json_str(s: &str) -> String {
        let mut out = Vec::new();
        crate::json::write_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_email_is_folded_and_composed_once_for_all() {
        // Caught by the fuzz targets' invariants (fuzz/src/lib.rs): an emoji selector
        // kept a combining accent from composing, and a titlecase letter (U+01C5) was
        // not lower-cased unless an upper-case one came with it.
        let body = |e: &str| {
            format!(
                r#"{{"name":"n","email":{},"credentialType":"t"}}"#,
                serde_json_str(e)
            )
        };
        for (sent, stored) in [
            ("e\u{fe0f}\u{301}@x.co", "\u{e9}@x.co"),
            ("\u{1c5}b@x.co", "\u{1c6}b@x.co"),
            ("\u{1c5}B@x.co", "\u{1c6}b@x.co"),
        ] {
            assert_eq!(issue(&body(sent)).unwrap().1, stored, "{sent:?}");
            assert_eq!(issue(&body(stored)).unwrap().1, stored, "{stored:?} again");
        }
    }

    #[test]
    fn verification_says_what_issuance_says_of_a_number_too_large() {
        let raw = br#"{"id":"550e8400-e29b-41d4-a716-446655440000","n":1e999}"#;
        let mut scratch = raw.to_vec();
        let Err(Invalid(errors)) = VerifyRequest::parse(raw, &mut scratch) else {
            panic!("accepted");
        };
        assert_eq!(
            errors[0].message,
            "request body has a number beyond ±1.7976931348623157e308"
        );
    }

    #[test]
    fn metadata_must_be_an_object_of_bounded_depth() {
        let base = r#""name":"a","email":"a@b.co","credentialType":"t""#;
        for bad in ["null", "[]", "\"x\"", "1", "true"] {
            assert_eq!(
                fields(&format!("{{{base},\"metadata\":{bad}}}")),
                ["metadata"],
                "{bad}"
            );
        }
        let nest = |n: usize| {
            format!(
                "{{{base},\"metadata\":{}1{}}}",
                "{\"a\":".repeat(n),
                "}".repeat(n)
            )
        };
        assert!(issue(&nest(32)).is_ok());
        assert_eq!(fields(&nest(33)), ["metadata"]);
        assert_eq!(fields(&nest(70)), ["body"]);
    }

    #[test]
    fn nul_characters_are_refused_wherever_they_are() {
        assert_eq!(
            fields(
                r#"{"name":"a\u0000b","email":"a@b.co","credentialType":"t","metadata":{"k":["\u0000"]},"other":"\u0000"}"#
            ),
            ["name", "metadata", "other"]
        );
        assert_eq!(
            fields(r#"{"name":"a","email":"a@b.co","credentialType":"t","metadata":{"\u0000":1}}"#),
            ["metadata"]
        );
        assert_eq!(
            fields(r#"{"name":"a","email":"a@b.co","credentialType":"t","\u0000":1}"#),
            ["body"]
        );
    }

    #[test]
    fn body_level_errors_use_the_body_field() {
        for body in ["", "[]", "{", "nope", "null"] {
            assert_eq!(fields(body), ["body"], "{body:?}");
        }
    }

    #[test]
    fn valid_until_is_an_rfc3339_utc_time_within_the_horizon() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_759_833_000);
        let max = Duration::from_secs(10 * 86_400);
        let with = |t: &str| {
            let raw = format!(r#"{{"name":"a","email":"a@b.co","credentialType":"t","validUntil":{t}}}"#);
            let mut scratch = raw.clone().into_bytes();
            NewCredential::parse_at(raw.as_bytes(), &mut scratch, now, max)
                .map(|c| c.valid_until().map(crate::time::rfc3339_millis))
                .map_err(|Invalid(e)| {
                    e.into_iter()
                        .map(|e| (e.field.into_owned(), e.message.into_owned()))
                        .collect::<Vec<_>>()
                })
        };
        assert_eq!(
            with(r#""2025-10-08T10:30:00.5Z""#).unwrap().as_deref(),
            Some("2025-10-08T10:30:00.500Z")
        );
        // The horizon itself is allowed; a millisecond after it is not.
        assert!(with(r#""2025-10-17T10:30:00Z""#).is_ok());
        let field = |message: &str| vec![("validUntil".to_owned(), message.to_owned())];
        assert_eq!(
            with(r#""2025-10-17T10:30:00.001Z""#).unwrap_err(),
            field("must be at most 10 days from now")
        );
        for past in [r#""2025-10-07T10:30:00Z""#, r#""2020-01-01T00:00:00Z""#] {
            assert_eq!(
                with(past).unwrap_err(),
                field(message::NOT_IN_THE_FUTURE),
                "{past}"
            );
        }
        for bad in [
            r#""2025-10-08T10:30:00+00:00""#,
            r#""2025-10-08""#,
            r#""""#,
            r#""2025-10-08T10:30:00.0001Z""#,
        ] {
            assert_eq!(with(bad).unwrap_err(), field(message::NOT_A_TIME), "{bad}");
        }
        assert_eq!(with("null").unwrap_err(), field(message::NOT_A_STRING));
        assert_eq!(with("1759833000").unwrap_err(), field(message::NOT_A_STRING));
        // Reported with the other fields' errors.
        let raw = br#"{"name":"","email":"a@b.co","credentialType":"t","validUntil":"soon"}"#;
        let mut scratch = raw.to_vec();
        let Invalid(errors) = NewCredential::parse_at(raw, &mut scratch, now, max).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| &*e.field).collect();
        assert_eq!(fields, ["name", "validUntil"]);
        // Absent: none.
        assert_eq!(
            issue(r#"{"name":"a","email":"a@b.co","credentialType":"t"}"#).map(|_| ()),
            Ok(())
        );
    }

    #[test]
    fn revocation_bodies() {
        let revoke = |body: &str| {
            let mut scratch = body.as_bytes().to_vec();
            RevokeRequest::parse(body.as_bytes(), &mut scratch)
                .map(|r| r.reason().map(str::to_owned))
                .map_err(|Invalid(e)| e.into_iter().map(|e| e.field.into_owned()).collect::<Vec<_>>())
        };
        assert_eq!(revoke(""), Ok(None));
        // Found by schemathesis: a body that is not JSON was taken for no body.
        assert_eq!(revoke(" \n"), Err(vec!["body".to_owned()]));
        assert_eq!(revoke("{}"), Ok(None));
        assert_eq!(
            revoke(r#"{"reason":"  key compromised "}"#),
            Ok(Some("key compromised".into()))
        );
        assert_eq!(revoke(r#"{"other":1}"#), Ok(None));
        for bad in [
            r#"{"reason":null}"#,
            r#"{"reason":7}"#,
            r#"{"reason":"   "}"#,
            r#"{"reason":"a\u0000b"}"#,
            r#"{"reason":"a","reason":"b"}"#,
        ] {
            assert_eq!(revoke(bad), Err(vec!["reason".to_owned()]), "{bad}");
        }
        assert_eq!(
            revoke(&format!(r#"{{"reason":"{}"}}"#, "x".repeat(REASON_MAX))).map(|r| r.map(|r| r.len())),
            Ok(Some(REASON_MAX))
        );
        assert_eq!(
            revoke(&format!(r#"{{"reason":"{}"}}"#, "x".repeat(REASON_MAX + 1))),
            Err(vec!["reason".to_owned()])
        );
        assert_eq!(revoke("[1]"), Err(vec!["body".to_owned()]));
        assert_eq!(revoke("nope"), Err(vec!["body".to_owned()]));
    }

    fn verify(body: &str) -> Result<VerifyRequest<'static>, Vec<String>> {
        let scratch: &'static mut [u8] = Box::leak(body.as_bytes().to_vec().into_boxed_slice());
        VerifyRequest::parse(body.as_bytes(), scratch)
            .map_err(|Invalid(e)| e.into_iter().map(|e| e.field.into_owned()).collect())
    }

    #[test]
    fn verification_requests() {
        let v = verify(
            r#"{"id":"550E8400-E29B-41D4-A716-446655440000","name":" John ","email":"JOHN@example.com"}"#,
        )
        .unwrap();
        assert_eq!(v.id().to_string(), "550e8400-e29b-41d4-a716-446655440000");
        assert_eq!(v.name(), Some("John"));
        assert_eq!(v.email(), Some("john@example.com"));
        let v = verify(r#"{"id":"550e8400-e29b-41d4-a716-446655440000"}"#).unwrap();
        assert_eq!((v.name(), v.email()), (None, None));
        for bad_id in [
            r#""550e8400e29b41d4a716446655440000""#,
            r#""{550e8400-e29b-41d4-a716-446655440000}""#,
            r#""urn:uuid:550e8400-e29b-41d4-a716-446655440000""#,
            r#""550e8400-e29b-41d4-a716-44665544000g""#,
            r#""""#,
            "42",
        ] {
            assert_eq!(
                verify(&format!("{{\"id\":{bad_id}}}")).unwrap_err(),
                ["id"],
                "{bad_id}"
            );
        }
        assert_eq!(verify("{}").unwrap_err(), ["id"]);
        assert_eq!(
            verify(r#"{"id":"550e8400-e29b-41d4-a716-446655440000","name":null,"email":"bad"}"#).unwrap_err(),
            ["name", "email"]
        );
    }
}
