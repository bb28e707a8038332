//! The validation rules of the HTTP contract: the limits, the checks, and the
//! messages a client developer reads, built from the limits they state.

use crate::json::BodyError;
use simd_json::BorrowedValue;
use std::borrow::Cow;
use std::time::{Duration, SystemTime};

/// Longest `name`, in characters, after trimming.
pub const NAME_MAX: usize = 255;
/// Longest `email`, in characters, after normalising.
pub const EMAIL_MAX: usize = 255;
/// Longest `credentialType`, in characters, after trimming.
pub const CREDENTIAL_TYPE_MAX: usize = 100;
/// Deepest `metadata` may be; the metadata object itself is level 1.
pub const METADATA_MAX_DEPTH: usize = 32;
/// Longest revocation `reason`, in characters, after trimming.
pub const REASON_MAX: usize = 500;
/// How many days ahead `validUntil` may be unless `CREDENTIAL_MAX_VALIDITY_DAYS` says otherwise.
pub const MAX_VALIDITY_DAYS: u64 = 3650;

/// One field that failed validation, as reported to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The request field (`name`, `email`, …, or `body` for the body as a whole).
    pub field: Cow<'static, str>,
    /// What is wrong, in words a client developer understands.
    pub message: Cow<'static, str>,
}

impl FieldError {
    /// An error on `field`, saying `message`.
    pub fn new(field: impl Into<Cow<'static, str>>, message: impl Into<Cow<'static, str>>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The messages, with the limits they state.
pub(super) mod message {
    use std::borrow::Cow;

    pub const REQUIRED: &str = "is required";
    pub const NOT_A_STRING: &str = "must be a string";
    pub const EMPTY: &str = "must not be empty";
    pub const NOT_AN_EMAIL: &str = "must be a valid email address";
    pub const NOT_A_UUID: &str = "must be a UUID such as 550e8400-e29b-41d4-a716-446655440000";
    pub const NOT_AN_OBJECT: &str = "must be a JSON object";
    pub const NOT_AN_ARRAY: &str = "must be an array";
    pub const REPEATED: &str = "must appear only once";
    pub const NUL: &str = "must not contain the NUL character (\\u0000)";
    pub const NOT_A_TIME: &str =
        "must be an RFC 3339 time in UTC such as 2030-12-31T23:59:59Z, with at most three fractional digits";
    pub const NOT_IN_THE_FUTURE: &str = "must be in the future";

    /// Further ahead than `days` days.
    pub fn too_far(days: u64) -> Cow<'static, str> {
        format!("must be at most {days} days from now").into()
    }

    /// A code point PRECIS refuses in an identity.
    pub fn code_point(c: u32) -> Cow<'static, str> {
        format!(
            "must not contain U+{c:04X}: control characters, invisible characters (such as a zero-width space) and direction overrides are refused"
        )
        .into()
    }

    /// An array of more than `max` items.
    pub fn too_many(max: usize) -> Cow<'static, str> {
        format!("must hold at most {max} items").into()
    }

    /// Longer than `max` characters.
    pub fn too_long(max: usize) -> Cow<'static, str> {
        format!("must be at most {max} characters").into()
    }

    /// Nested deeper than `max` levels.
    pub fn too_deep(max: usize) -> Cow<'static, str> {
        format!("must be nested at most {max} levels deep").into()
    }

    /// A number PostgreSQL's `numeric` cannot hold.
    pub fn number_out_of_range() -> Cow<'static, str> {
        use super::{NUMERIC_MAX_DIGITS_BEFORE_POINT as DIGITS, NUMERIC_MAX_SCALE as SCALE};
        format!(
            "has a number PostgreSQL cannot store: at most {SCALE} digits after the decimal point, and less than 1e{DIGITS} in magnitude"
        )
        .into()
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

/// Without surrounding white space, borrowing when it can.
pub(super) fn trim(s: Cow<'_, str>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) if o.trim().len() == o.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(o.trim().to_owned()),
    }
}

/// A name or credential type, trimmed, prepared as an identity (see
/// [`super::identity`]) and checked against `max` characters again (NFKC may
/// change its length).
pub(super) fn identity<'a>(
    field: &'static str,
    trimmed: Cow<'a, str>,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<Cow<'a, str>> {
    match super::identity::nickname(trimmed) {
        Ok(prepared) if prepared.is_empty() => {
            errors.push(FieldError::new(field, message::EMPTY));
            None
        }
        Ok(prepared) if prepared.chars().count() > max => {
            errors.push(FieldError::new(field, message::too_long(max)));
            None
        }
        Ok(prepared) => Some(prepared),
        Err(refused) => {
            errors.push(FieldError::new(field, message::code_point(refused.0 as u32)));
            None
        }
    }
}

/// Normalises (trim, lower-case, NFC) and checks an email address.
pub(super) fn email<'a>(raw: Cow<'a, str>, errors: &mut Vec<FieldError>) -> Option<Cow<'a, str>> {
    let trimmed = trim(raw);
    // Titlecase letters (U+01C5 ǅ) are not upper-case but still have a lower case.
    let lower = if trimmed.chars().any(|c| {
        if c.is_ascii() {
            c.is_ascii_uppercase()
        } else {
            c.to_lowercase().ne([c])
        }
    }) {
        Cow::Owned(trimmed.to_lowercase())
    } else {
        trimmed
    };
    let normal = match super::identity::email(lower) {
        Ok(normal) => normal,
        Err(refused) => {
            errors.push(FieldError::new("email", message::code_point(refused.0 as u32)));
            return None;
        }
    };
    if normal.is_empty() {
        errors.push(FieldError::new("email", message::EMPTY));
        return None;
    }
    if normal.chars().count() > EMAIL_MAX {
        errors.push(FieldError::new("email", message::too_long(EMAIL_MAX)));
        return None;
    }
    if !is_email(&normal) {
        errors.push(FieldError::new("email", message::NOT_AN_EMAIL));
        return None;
    }
    Some(normal)
}

/// What an address can hold (RFC 5321, with RFC 6531's UTF-8): one `@`; a
/// local part of at most 64 bytes, dot-separated non-empty atoms of letters,
/// digits, ``!#$%&'*+-/=?^_`{|}~`` or non-ASCII characters (no quoted local
/// parts, so no spaces, `<`, `>`, `"`, `(`, `)`, `,`, `;`, `:`, `[`, `]` or `\`);
/// a domain of at most 253 bytes, with at least two labels, each 1–63 bytes of
/// letters, digits, hyphens (not first or last) or non-ASCII characters.
fn is_email(s: &str) -> bool {
    let mut parts = s.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    let local_ok = (1..=64).contains(&local.len())
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext));
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
    };
    let domain_ok = domain.len() <= 253 && domain.split('.').count() >= 2 && domain.split('.').all(label_ok);
    local_ok && domain_ok && !s.chars().any(char::is_whitespace)
}

/// A `validUntil`: an RFC 3339 time in UTC (see [`crate::time::parse_rfc3339_utc`])
/// after `now` and at most `max` after it.
pub(super) fn valid_until(
    raw: &str,
    now: SystemTime,
    max: Duration,
    errors: &mut Vec<FieldError>,
) -> Option<SystemTime> {
    let Some(t) = crate::time::parse_rfc3339_utc(raw) else {
        errors.push(FieldError::new("validUntil", message::NOT_A_TIME));
        return None;
    };
    if t <= now {
        errors.push(FieldError::new("validUntil", message::NOT_IN_THE_FUTURE));
        None
    } else if now.checked_add(max).is_none_or(|limit| t > limit) {
        errors.push(FieldError::new(
            "validUntil",
            message::too_far(max.as_secs() / 86_400),
        ));
        None
    } else {
        Some(t)
    }
}

/// Accepts only the canonical 8-4-4-4-12 form (any case), unlike
/// `Uuid::parse_str`, which also takes braces, URNs and the bare 32 digits.
pub fn canonical_uuid(s: &str) -> Option<uuid::Uuid> {
    let b = s.as_bytes();
    let dashes_ok = b.len() == 36 && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-');
    if dashes_ok {
        uuid::Uuid::try_parse(s).ok()
    } else {
        None
    }
}

/// Whether a NUL is anywhere in `v`, keys included: PostgreSQL can store it in
/// neither text nor JSONB.
pub(super) fn contains_nul(v: &BorrowedValue<'_>) -> bool {
    match v {
        BorrowedValue::String(s) => s.contains('\0'),
        BorrowedValue::Array(items) => items.iter().any(contains_nul),
        BorrowedValue::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        BorrowedValue::Static(_) => false,
    }
}

/// Nesting depth: 0 for a scalar, 1 for an object or array of scalars, and so on.
pub(super) fn depth(v: &BorrowedValue<'_>) -> usize {
    match v {
        BorrowedValue::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        BorrowedValue::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

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
pub(super) fn numeric_fits(t: &[u8]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_rules() {
        for good in [
            "a@b.co",
            "first.last+tag@sub.example.org",
            "ü@ä.de",
            "o'brien@example.ie",
            "用户@例子.广告",
            "a-b@x-y.example",
        ] {
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
            "<script>alert(1)</script>@x.co",
            "a\"b@x.co",
            "a(b)@x.co",
            "a,b@x.co",
            "a;b@x.co",
            "a:b@x.co",
            "a\\b@x.co",
            ".a@x.co",
            "a.@x.co",
            "a..b@x.co",
            "a@-x.co",
            "a@x-.co",
            "a@[127.0.0.1]",
            "a@x_y.co",
            &format!("{}@x.co", "a".repeat(65)),
            &format!("a@{}.co", "b".repeat(64)),
        ] {
            assert!(!is_email(bad), "{bad}");
        }
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
}
