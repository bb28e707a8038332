//! The credential model: what a client may send, how it is normalised, and the
//! validation rules of the HTTP contract with one error per offending field.

use crate::json::{self, BodyError};
use simd_json::prelude::*;
use simd_json::BorrowedValue;
use std::borrow::Cow;

/// Longest `name`, in characters, after trimming.
pub const NAME_MAX: usize = 255;
/// Longest `email`, in characters, after normalising.
pub const EMAIL_MAX: usize = 255;
/// Longest `credentialType`, in characters, after trimming.
pub const CREDENTIAL_TYPE_MAX: usize = 100;
/// Deepest `metadata` may be; the metadata object itself is level 1.
pub const METADATA_MAX_DEPTH: usize = 32;

/// One field that failed validation, as reported to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The request field (`name`, `email`, …, or `body` for the body as a whole).
    pub field: Cow<'static, str>,
    /// What is wrong, in words a client developer understands.
    pub message: &'static str,
}

impl FieldError {
    fn new(field: impl Into<Cow<'static, str>>, message: &'static str) -> Self {
        FieldError {
            field: field.into(),
            message,
        }
    }
}

/// Why a request body was refused. Always a client error (400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<FieldError>);

impl From<BodyError> for Invalid {
    fn from(e: BodyError) -> Self {
        Invalid(vec![FieldError::new("body", e.message())])
    }
}

/// A credential to issue: parsed, normalised and validated. The only way to get
/// one is [`NewCredential::parse`], so holding one means the rules were applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential<'a> {
    name: Cow<'a, str>,
    email: Cow<'a, str>,
    credential_type: Cow<'a, str>,
    metadata: Option<Cow<'a, str>>,
}

impl<'a> NewCredential<'a> {
    /// Parses an issuance request body. `raw` is the body as received; `scratch`
    /// is a copy of it that simd-json may rewrite in place, and that the returned
    /// strings borrow from.
    pub fn parse(raw: &'a [u8], scratch: &'a mut [u8]) -> Result<Self, Invalid> {
        let value = json::parse_object(scratch).map_err(|e| e.explain(raw))?;
        let mut errors = Vec::new();
        let mut body = Members::new(value, &mut errors);

        let name = body.string("name", Some(NAME_MAX), &mut errors).map(trim);
        let email = body
            .string("email", None, &mut errors)
            .and_then(|e| email(e, &mut errors));
        let credential_type = body
            .string("credentialType", Some(CREDENTIAL_TYPE_MAX), &mut errors)
            .map(trim);
        let spans = json::top_level_members(raw, "metadata").unwrap_or_default();
        let metadata = match body.take("metadata") {
            None => None,
            Some(_) if Members::has_nul_error(&errors, "metadata") => None,
            // The parser keeps one copy and the raw text has several: refuse, or
            // one copy could be validated and another stored.
            Some(_) if spans.len() > 1 => {
                errors.push(FieldError::new("metadata", "must appear only once"));
                None
            }
            Some(BorrowedValue::Object(map)) => {
                let value = BorrowedValue::Object(map);
                if depth(&value) > METADATA_MAX_DEPTH {
                    errors.push(FieldError::new(
                        "metadata",
                        "must be nested at most 32 levels deep",
                    ));
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
                        errors.push(FieldError::new("metadata", NUMBER_OUT_OF_RANGE));
                        None
                    }
                }
            }
            Some(_) => {
                errors.push(FieldError::new("metadata", "must be a JSON object"));
                None
            }
        };
        match (name, email, credential_type) {
            (Some(name), Some(email), Some(credential_type)) if errors.is_empty() => Ok(NewCredential {
                name,
                email,
                credential_type,
                metadata,
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
    /// Parses a verification request body in place (see [`NewCredential::parse`]).
    pub fn parse(scratch: &'a mut [u8]) -> Result<Self, Invalid> {
        let value = json::parse_object(scratch)?;
        let mut errors = Vec::new();
        let mut body = Members::new(value, &mut errors);
        let id = body
            .string("id", None, &mut errors)
            .and_then(|id| match canonical_uuid(&id) {
                Some(id) => Some(id),
                None => {
                    errors.push(FieldError::new(
                        "id",
                        "must be a UUID such as 550e8400-e29b-41d4-a716-446655440000",
                    ));
                    None
                }
            });
        let name = body
            .optional_string("name", Some(NAME_MAX), &mut errors)
            .map(trim);
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

/// A stored credential as both services return it: the seven fields of the contract.
#[derive(Debug, Clone, Copy)]
pub struct Credential<'a> {
    /// Its id (UUID v4).
    pub id: uuid::Uuid,
    /// Normalised name.
    pub name: &'a str,
    /// Normalised email.
    pub email: &'a str,
    /// Normalised credential type.
    pub credential_type: &'a str,
    /// Metadata as JSON text, `None` when none was sent.
    pub metadata: Option<&'a str>,
    /// Worker id of the task that issued it.
    pub issued_by: &'a str,
    /// When it was issued (millisecond precision).
    pub issued_at: std::time::SystemTime,
}

impl Credential<'_> {
    /// Writes the credential as a JSON object member named `key`.
    pub fn write(&self, o: &mut json::ObjectWriter<'_>, key: &'static str) {
        o.object(key, |c| {
            c.str(
                "id",
                self.id
                    .hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            )
            .str("name", self.name)
            .str("email", self.email)
            .str("credentialType", self.credential_type)
            .raw("metadata", self.metadata.unwrap_or("null"))
            .str("issuedBy", self.issued_by)
            .str("issuedAt", &crate::time::rfc3339_millis(self.issued_at));
        });
    }
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
                errors.push(FieldError::new(
                    "body",
                    "must not contain the NUL character (\\u0000)",
                ));
            } else if contains_nul(member) {
                errors.push(FieldError::new(
                    Cow::Owned(key.to_string()),
                    "must not contain the NUL character (\\u0000)",
                ));
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
                errors.push(FieldError::new(key, "is required"));
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
            errors.push(FieldError::new(key, "must be a string"));
            return None;
        };
        if Self::has_nul_error(errors, key) {
            return None;
        }
        if let Some(max) = max {
            let len = s.trim().chars().count();
            if len == 0 {
                errors.push(FieldError::new(key, "must not be empty"));
                return None;
            }
            if len > max {
                errors.push(FieldError::new(
                    key,
                    if max == NAME_MAX {
                        "must be at most 255 characters"
                    } else {
                        "must be at most 100 characters"
                    },
                ));
                return None;
            }
        }
        Some(s)
    }
}

fn trim(s: Cow<'_, str>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) if o.trim().len() == o.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(o.trim().to_owned()),
    }
}

/// Normalises (trim, lower-case) and checks an email address.
fn email<'a>(raw: Cow<'a, str>, errors: &mut Vec<FieldError>) -> Option<Cow<'a, str>> {
    let trimmed = trim(raw);
    let normal = if trimmed.chars().any(char::is_uppercase) {
        Cow::Owned(trimmed.to_lowercase())
    } else {
        trimmed
    };
    if normal.is_empty() {
        errors.push(FieldError::new("email", "must not be empty"));
        return None;
    }
    if normal.chars().count() > EMAIL_MAX {
        errors.push(FieldError::new("email", "must be at most 255 characters"));
        return None;
    }
    if !is_email(&normal) {
        errors.push(FieldError::new("email", "must be a valid email address"));
        return None;
    }
    Some(normal)
}

/// One `@`, a non-empty local part, a domain with at least one dot and no empty
/// labels, and no white space anywhere.
fn is_email(s: &str) -> bool {
    if s.chars().any(char::is_whitespace) {
        return false;
    }
    let mut parts = s.split('@');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(local), Some(domain), None) => {
            !local.is_empty() && domain.contains('.') && domain.split('.').all(|label| !label.is_empty())
        }
        _ => false,
    }
}

/// Accepts only the canonical 8-4-4-4-12 form (any case), unlike
/// `Uuid::parse_str`, which also takes braces, URNs and the bare 32 digits.
fn canonical_uuid(s: &str) -> Option<uuid::Uuid> {
    let b = s.as_bytes();
    let dashes_ok = b.len() == 36 && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-');
    if dashes_ok {
        uuid::Uuid::try_parse(s).ok()
    } else {
        None
    }
}

fn contains_nul(v: &BorrowedValue<'_>) -> bool {
    match v {
        BorrowedValue::String(s) => s.contains('\0'),
        BorrowedValue::Array(items) => items.iter().any(contains_nul),
        BorrowedValue::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        BorrowedValue::Static(_) => false,
    }
}

/// The message for a metadata number PostgreSQL cannot store.
const NUMBER_OUT_OF_RANGE: &str =
    "has a number PostgreSQL cannot store: at most 16383 digits after the decimal point, and less than 1e131072 in magnitude";

/// Most digits after the decimal point a `numeric` keeps (`NUMERIC_DSCALE_MAX`).
const NUMERIC_MAX_SCALE: i64 = 16383;
/// A `numeric` is less than 10^this in magnitude (`NUMERIC_WEIGHT_MAX`, 32767
/// base-10000 digits, is 131068 decimal digits before the point, plus the 4 of the first).
const NUMERIC_MAX_DIGITS_BEFORE_POINT: i64 = 131_072;
/// PostgreSQL refuses an exponent this large in either direction, even on zero (`INT_MAX / 2`).
const NUMERIC_MAX_EXPONENT: i64 = 1_073_741_823;

/// Whether PostgreSQL's `numeric`, which `jsonb` stores numbers as, takes the JSON
/// number literal `t` (see `set_var_from_str` and `make_result` in its numeric.c).
/// Checked against a real server in issuance's tests/poison.rs.
fn numeric_fits(t: &[u8]) -> bool {
    let t = t.strip_prefix(b"-").unwrap_or(t);
    let (mantissa, exponent) = match t.iter().position(|b| matches!(b, b'e' | b'E')) {
        Some(e) => (&t[..e], &t[e + 1..]),
        None => (t, &b""[..]),
    };
    let (int, frac) = match mantissa.iter().position(|&b| b == b'.') {
        Some(dot) => (&mantissa[..dot], &mantissa[dot + 1..]),
        None => (mantissa, &b""[..]),
    };
    // Saturating: a thousand-digit exponent is simply "too large".
    let exponent = {
        let (negative, digits) = match exponent.split_first() {
            Some((b'-', d)) => (true, d),
            Some((b'+', d)) => (false, d),
            _ => (false, exponent),
        };
        let magnitude = digits.iter().fold(0i64, |n, d| {
            n.saturating_mul(10)
                .saturating_add(i64::from(d.saturating_sub(b'0')))
        });
        if negative {
            -magnitude
        } else {
            magnitude
        }
    };
    if exponent.abs() >= NUMERIC_MAX_EXPONENT {
        return false;
    }
    let frac_digits = i64::try_from(frac.len()).unwrap_or(i64::MAX);
    if frac_digits.saturating_sub(exponent) > NUMERIC_MAX_SCALE {
        return false;
    }
    // The power of ten of the leading significant digit; zero has none.
    let leading = if let Some(k) = int.iter().position(|&b| b != b'0') {
        i64::try_from(int.len() - 1 - k).unwrap_or(i64::MAX)
    } else if let Some(j) = frac.iter().position(|&b| b != b'0') {
        -i64::try_from(j + 1).unwrap_or(i64::MAX)
    } else {
        return true;
    };
    leading.saturating_add(exponent) < NUMERIC_MAX_DIGITS_BEFORE_POINT
}

/// Nesting depth: 0 for a scalar, 1 for an object or array of scalars, and so on.
fn depth(v: &BorrowedValue<'_>) -> usize {
    match v {
        BorrowedValue::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        BorrowedValue::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, email, credentialType, metadata) on success; (field, message) pairs otherwise.
    type Parsed = Result<(String, String, String, Option<String>), Vec<(String, &'static str)>>;

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
                    .map(|e| (e.field.into_owned(), e.message))
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
                [("metadata".to_owned(), NUMBER_OUT_OF_RANGE)],
                "{poison}"
            );
        }
        // Parsed as a double it would be infinite: refused, and said so.
        assert_eq!(
            with("1e400").unwrap_err(),
            [(
                "body".to_owned(),
                "request body has a number beyond ±1.7976931348623157e308"
            )]
        );
        // A number-like string is not a number.
        assert!(with(r#""1e-99999""#).is_ok());
    }

    #[test]
    fn numeric_limits_match_postgresql_at_their_edges() {
        for (literal, fits) in [
            ("1e131071", true),
            ("1e131072", false),
            ("0.01e131073", true),
            ("0.01e131074", false),
            ("0e-16383", true),
            ("0e-16384", false),
            ("0.000e-16381", false),
            ("1e-1073741822", false),
            ("1e99999999999999999999999", false),
            ("-0", true),
        ] {
            assert_eq!(numeric_fits(literal.as_bytes()), fits, "{literal}");
        }
    }

    #[test]
    fn reports_every_offending_field_at_once() {
        assert_eq!(fields("{}"), ["name", "email", "credentialType"]);
        assert_eq!(
            fields(r#"{"name":1,"email":"nope","credentialType":"   ","metadata":[1]}"#),
            ["name", "email", "credentialType", "metadata"]
        );
        let errors = issue(r#"{"name":1,"email":"x","credentialType":true}"#).unwrap_err();
        assert_eq!(errors[0], ("name".to_owned(), "must be a string"));
        assert_eq!(errors[1], ("email".to_owned(), "must be a valid email address"));
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
            [("email".to_owned(), "must be at most 255 characters")]
        );
    }

    #[test]
    fn email_rules() {
        for good in ["a@b.co", "first.last+tag@sub.example.org", "ü@ä.de"] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "",
            "ab.co",
            "a@@b.co",
            "a@b@c.co",
            "@b.co",
            "a@bco",
            "a@.b.co",
            "a@b..co",
            "a@b.co.",
            "a b@c.co",
            "a@b.c\u{a0}o",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
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
                [("metadata".to_owned(), "must appear only once")],
                "{repeat}"
            );
        }
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

    fn verify(body: &str) -> Result<VerifyRequest<'static>, Vec<String>> {
        let scratch: &'static mut [u8] = Box::leak(body.as_bytes().to_vec().into_boxed_slice());
        VerifyRequest::parse(scratch)
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
