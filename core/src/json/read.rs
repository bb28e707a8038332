//! Reading request bodies: parsing in place with simd-json (strings borrowed
//! from the buffer, not allocated), and scanning the raw text for what the
//! parser does not keep: the text of a top-level member as the client wrote
//! it, and its number literals.

use simd_json::BorrowedValue;
use std::borrow::Cow;
use std::ops::Range;

/// Deepest nesting a request body may have. Deeper bodies are refused before a
/// value tree is built, so no request can make recursion (parsing, walking or
/// dropping the tree) run deep. The metadata rule (32 levels) is checked separately.
pub const MAX_BODY_DEPTH: usize = 64;

/// Why a body could not be parsed into a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Zero bytes (or only white space).
    Empty,
    /// Not valid JSON (or not UTF-8).
    Malformed,
    /// Nested deeper than [`MAX_BODY_DEPTH`].
    TooDeep,
    /// Valid JSON, but an array, string, number, boolean or null.
    NotAnObject,
    /// Valid JSON with a number beyond what a 64-bit float holds (about ±1.8e308).
    NumberTooLarge,
    /// The parser refused the number at this byte offset: malformed, or too
    /// large; [`BodyError::explain`] tells which from the body's original text.
    BadNumber(usize),
}

impl BodyError {
    /// The message a client sees for this error.
    pub fn message(&self) -> &'static str {
        match self {
            BodyError::Empty => "request body is empty; send a JSON object",
            BodyError::Malformed | BodyError::BadNumber(_) => "request body is not valid JSON",
            BodyError::TooDeep => "request body is nested too deeply",
            BodyError::NotAnObject => "request body must be a JSON object",
            BodyError::NumberTooLarge => "request body has a number beyond ±1.7976931348623157e308",
        }
    }
}

impl BodyError {
    /// Tells a number the parser cannot hold from a malformed one, by reading
    /// `raw`, the body as received (the parser may have rewritten its own copy).
    pub fn explain(self, raw: &[u8]) -> BodyError {
        match self {
            BodyError::BadNumber(at) if number_at(raw, at).is_some_and(is_number_literal) => {
                BodyError::NumberTooLarge
            }
            BodyError::BadNumber(_) => BodyError::Malformed,
            other => other,
        }
    }
}

/// Parses `buf` in place (simd-json unescapes strings inside it, so the returned
/// value borrows its strings from `buf` instead of allocating them) and checks
/// that the top level is an object.
pub fn parse_object(buf: &mut [u8]) -> Result<BorrowedValue<'_>, BodyError> {
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    let mut buffers = simd_json::Buffers::with_max_depth(buf.len(), MAX_BODY_DEPTH);
    let value =
        simd_json::to_borrowed_value_with_buffers(buf, &mut buffers).map_err(|e| match e.error() {
            simd_json::ErrorType::DepthLimitExceeded => BodyError::TooDeep,
            simd_json::ErrorType::InvalidNumber => BodyError::BadNumber(e.index()),
            _ => BodyError::Malformed,
        })?;
    match value {
        BorrowedValue::Object(_) => Ok(value),
        _ => Err(BodyError::NotAnObject),
    }
}

/// The byte ranges of the values of every top-level member named `key` in
/// `raw`, which must be a valid JSON object (`None` if it is not).
///
/// Used to hand PostgreSQL the metadata exactly as the client wrote it (numbers
/// like `12.50` or `1e40` keep their digits) without re-serialising anything.
/// More than one range means the client repeated the member: the caller must
/// refuse that, or it could validate one copy and store another.
pub fn top_level_members(raw: &[u8], key: &str) -> Option<Vec<Range<usize>>> {
    let mut i = skip_ws(raw, 0);
    if raw.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(raw, i + 1);
    let mut found = Vec::new();
    if raw.get(i) == Some(&b'}') {
        return Some(found);
    }
    loop {
        let key_end = skip_string(raw, i)?;
        let name = &raw[i..key_end];
        i = skip_ws(raw, key_end);
        if raw.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(raw, i + 1);
        let end = skip_value(raw, start)?;
        if key_equals(name, key) {
            found.push(start..end);
        }
        i = skip_ws(raw, end);
        match raw.get(i) {
            Some(b',') => i = skip_ws(raw, i + 1),
            Some(b'}') => return Some(found),
            _ => return None,
        }
    }
}

/// The byte ranges of the elements of the array at `span` in `raw` (valid
/// JSON), in order; `None` if `span` does not hold an array. A bulk request's
/// items are each read as the single route reads its whole body.
pub fn array_elements(raw: &[u8], span: Range<usize>) -> Option<Vec<Range<usize>>> {
    let raw = raw.get(..span.end)?;
    if raw.get(span.start) != Some(&b'[') {
        return None;
    }
    let mut i = skip_ws(raw, span.start + 1);
    let mut found = Vec::new();
    if raw.get(i) == Some(&b']') {
        return Some(found);
    }
    loop {
        let end = skip_value(raw, i)?;
        found.push(i..end);
        i = skip_ws(raw, end);
        match raw.get(i) {
            Some(b',') => i = skip_ws(raw, i + 1),
            Some(b']') => return Some(found),
            _ => return None,
        }
    }
}

/// The top-level members of `raw` (a valid JSON object) whose name appears
/// twice in the top-level object, or under which some nested object repeats a
/// member name: each such top-level name once, decoded, in order of appearance.
///
/// The parser keeps both copies of a repeated member in small objects and only
/// the last in large ones, so which copy a reader sees would depend on the
/// object's size; and a gateway that checked one copy would let the other
/// through. Refusing repeats makes every reader see the same thing. Escaped
/// names are compared decoded (`"meta\u0064ata"` is `"metadata"`). One pass,
/// one buffer of member names for the whole body; an object with more than
/// [`LINEAR_KEYS`] members is checked by sorting its names instead of pairwise.
pub fn repeated_members(raw: &[u8]) -> Vec<String> {
    let mut names: Vec<Cow<'_, [u8]>> = Vec::new();
    let mut found = Vec::new();
    let mut i = skip_ws(raw, 0);
    if raw.get(i) != Some(&b'{') {
        return found;
    }
    i = skip_ws(raw, i + 1);
    if raw.get(i) == Some(&b'}') {
        return found;
    }
    let mut top: Vec<Cow<'_, [u8]>> = Vec::new();
    loop {
        let Some(key_end) = skip_string(raw, i) else {
            return found;
        };
        let key = decoded(&raw[i..key_end]);
        i = skip_ws(raw, key_end);
        if raw.get(i) != Some(&b':') {
            return found;
        }
        let start = skip_ws(raw, i + 1);
        let Some((end, nested_repeat)) = scan_value(raw, start, &mut names) else {
            return found;
        };
        let repeated = top.contains(&key);
        if repeated || nested_repeat {
            let name = String::from_utf8_lossy(&key).into_owned();
            if !found.contains(&name) {
                found.push(name);
            }
        }
        if !repeated {
            top.push(key);
        }
        i = skip_ws(raw, end);
        match raw.get(i) {
            Some(b',') => i = skip_ws(raw, i + 1),
            _ => return found,
        }
    }
}

/// [`repeated_members`] read from the parsed value when it can be: objects the
/// parser kept as small vectors hold every member, repeats included, so they
/// are checked pairwise without a second pass over the text; an object it
/// kept as a hash map (more than 32 members) may have lost a repeat, and then
/// the raw text is scanned instead.
pub fn repeated_members_of(value: &BorrowedValue<'_>, raw: &[u8]) -> Vec<String> {
    fn repeats(v: &BorrowedValue<'_>) -> Option<bool> {
        match v {
            BorrowedValue::Object(map) => {
                if !map.is_vec() {
                    return None;
                }
                let mut found = false;
                for (i, (k, inner)) in map.iter().enumerate() {
                    found |= map.iter().take(i).any(|(earlier, _)| earlier == k);
                    found |= repeats(inner)?;
                }
                Some(found)
            }
            BorrowedValue::Array(items) => items
                .iter()
                .try_fold(false, |found, item| Some(found | repeats(item)?)),
            _ => Some(false),
        }
    }
    let BorrowedValue::Object(map) = value else {
        return Vec::new();
    };
    if !map.is_vec() {
        return repeated_members(raw);
    }
    let mut found: Vec<String> = Vec::new();
    for (i, (k, inner)) in map.iter().enumerate() {
        let repeated = map.iter().take(i).any(|(earlier, _)| earlier == k);
        let Some(nested) = repeats(inner) else {
            return repeated_members(raw);
        };
        if (repeated || nested) && !found.iter().any(|f| f == k) {
            found.push(k.to_string());
        }
    }
    found
}

/// Objects with at most this many members are checked for repeats pairwise as
/// their names arrive; larger ones by sorting their names once at the end.
pub const LINEAR_KEYS: usize = 32;

/// Scans the value at `raw[i]`; returns the index past it and whether an
/// object in it repeats a member name. `names` is scratch space shared by
/// every object of the body (each uses its own tail of it).
fn scan_value<'a>(raw: &'a [u8], i: usize, names: &mut Vec<Cow<'a, [u8]>>) -> Option<(usize, bool)> {
    match raw.get(i)? {
        b'{' => {
            let base = names.len();
            let mut repeat = false;
            let mut j = skip_ws(raw, i + 1);
            if raw.get(j) == Some(&b'}') {
                return Some((j + 1, false));
            }
            loop {
                let key_end = skip_string(raw, j)?;
                let key = decoded(&raw[j..key_end]);
                if names.len() - base < LINEAR_KEYS && names[base..].contains(&key) {
                    repeat = true;
                }
                names.push(key);
                j = skip_ws(raw, key_end);
                if raw.get(j) != Some(&b':') {
                    return None;
                }
                let (end, inner) = scan_value(raw, skip_ws(raw, j + 1), names)?;
                repeat |= inner;
                j = skip_ws(raw, end);
                match raw.get(j)? {
                    b',' => j = skip_ws(raw, j + 1),
                    b'}' => {
                        let own = &mut names[base..];
                        if own.len() > LINEAR_KEYS {
                            own.sort_unstable();
                            repeat |= own.windows(2).any(|w| w[0] == w[1]);
                        }
                        names.truncate(base);
                        return Some((j + 1, repeat));
                    }
                    _ => return None,
                }
            }
        }
        b'[' => {
            let mut repeat = false;
            let mut j = skip_ws(raw, i + 1);
            if raw.get(j) == Some(&b']') {
                return Some((j + 1, false));
            }
            loop {
                let (end, inner) = scan_value(raw, j, names)?;
                repeat |= inner;
                j = skip_ws(raw, end);
                match raw.get(j)? {
                    b',' => j = skip_ws(raw, j + 1),
                    b']' => return Some((j + 1, repeat)),
                    _ => return None,
                }
            }
        }
        _ => skip_value(raw, i).map(|end| (end, false)),
    }
}

/// The decoded name of the quoted JSON string `quoted`: borrowed unless it has
/// escapes (rare), which the parser decodes.
fn decoded(quoted: &[u8]) -> Cow<'_, [u8]> {
    let inner = &quoted[1..quoted.len() - 1];
    if !inner.contains(&b'\\') {
        return Cow::Borrowed(inner);
    }
    let mut copy = quoted.to_vec();
    let name = match simd_json::to_borrowed_value(&mut copy) {
        Ok(BorrowedValue::String(s)) => Some(s.as_bytes().to_vec()),
        _ => None,
    };
    name.map_or(Cow::Borrowed(inner), Cow::Owned)
}

/// Whether the quoted JSON string `quoted` decodes to `key`.
fn key_equals(quoted: &[u8], key: &str) -> bool {
    let inner = &quoted[1..quoted.len() - 1];
    if !inner.contains(&b'\\') {
        return inner == key.as_bytes();
    }
    // Escaped keys are rare: let the parser decode this one.
    let mut copy = quoted.to_vec();
    let equal = matches!(simd_json::to_borrowed_value(&mut copy), Ok(BorrowedValue::String(s)) if s == key);
    equal
}

fn skip_ws(raw: &[u8], mut i: usize) -> usize {
    while matches!(raw.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `raw[i]` is an opening quote; returns the index just past the closing one.
fn skip_string(raw: &[u8], i: usize) -> Option<usize> {
    if raw.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    while j < raw.len() {
        match raw[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// Returns the index just past the JSON value that starts at `raw[i]`.
fn skip_value(raw: &[u8], i: usize) -> Option<usize> {
    match raw.get(i)? {
        b'"' => skip_string(raw, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < raw.len() {
                match raw[j] {
                    b'"' => {
                        j = skip_string(raw, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < raw.len() && !matches!(raw[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                j += 1;
            }
            Some(j)
        }
    }
}

/// The number tokens of `raw`, which must be valid JSON, in order: the text of
/// each number outside strings, as the client wrote it.
pub fn numbers(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < raw.len() {
            match raw[i] {
                b'"' => i = skip_string(raw, i).unwrap_or(raw.len()),
                b'-' | b'0'..=b'9' => {
                    let start = i;
                    i = skip_value(raw, i).unwrap_or(raw.len());
                    return Some(&raw[start..i]);
                }
                _ => i += 1,
            }
        }
        None
    })
}

/// The token that starts at or just before `at` (the parser's error index may
/// point at the number's start or into it), when it looks like a number.
fn number_at(raw: &[u8], at: usize) -> Option<&[u8]> {
    let in_number = |b: &u8| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9');
    let mut start = at.min(raw.len());
    while start > 0 && in_number(&raw[start - 1]) {
        start -= 1;
    }
    let len = raw[start..].iter().take_while(|b| in_number(b)).count();
    (len > 0).then(|| &raw[start..start + len])
}

/// Whether `t` is a number by JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
pub fn is_number_literal(t: &[u8]) -> bool {
    let digits = |from: usize| {
        t[from.min(t.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut i = usize::from(t.first() == Some(&b'-'));
    match t.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits(i),
        _ => return false,
    }
    if t.get(i) == Some(&b'.') {
        let n = digits(i + 1);
        if n == 0 {
            return false;
        }
        i += 1 + n;
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(t.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let n = digits(i);
        if n == 0 {
            return false;
        }
        i += n;
    }
    i == t.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_elements_are_their_raw_text() {
        let raw = br#"{"credentials": [ {"a": [1, "]"]} ,"x\"]",2 ], "b": []}"#;
        let span = top_level_members(raw, "credentials").unwrap()[0].clone();
        let items: Vec<&[u8]> = array_elements(raw, span)
            .unwrap()
            .into_iter()
            .map(|r| &raw[r])
            .collect();
        assert_eq!(items, [&br#"{"a": [1, "]"]}"#[..], br#""x\"]""#, b"2"]);
        let empty = top_level_members(raw, "b").unwrap()[0].clone();
        assert_eq!(array_elements(raw, empty), Some(vec![]));
        assert_eq!(array_elements(b"{}", 0..2), None);
    }
    use simd_json::prelude::*;

    fn parse(s: &str) -> Result<String, BodyError> {
        let mut buf = s.as_bytes().to_vec();
        parse_object(&mut buf)
            .map(|v| v.encode())
            .map_err(|e| e.explain(s.as_bytes()))
    }

    #[test]
    fn parses_objects_and_names_what_is_wrong_otherwise() {
        assert_eq!(parse(r#"{"a": "b\u00e9"}"#).unwrap(), r#"{"a":"bé"}"#);
        assert_eq!(parse(""), Err(BodyError::Empty));
        assert_eq!(parse("  \n"), Err(BodyError::Empty));
        assert_eq!(parse("{"), Err(BodyError::Malformed));
        assert_eq!(parse("{\"a\":1}x"), Err(BodyError::Malformed));
        assert_eq!(parse("[1,2]"), Err(BodyError::NotAnObject));
        assert_eq!(parse("\"x\""), Err(BodyError::NotAnObject));
        assert_eq!(parse("null"), Err(BodyError::NotAnObject));
        assert_eq!(parse("{\"a\":\"\\ud800\"}"), Err(BodyError::Malformed));
    }

    #[test]
    fn numbers_beyond_a_double_are_told_apart_from_malformed_json() {
        assert_eq!(parse(r#"{"a":1e400}"#), Err(BodyError::NumberTooLarge));
        assert_eq!(parse(r#"{"a":[1, -1.8e308]}"#), Err(BodyError::NumberTooLarge));
        assert_eq!(parse(r#"{"a":1e308}"#).map(|_| ()), Ok(()));
        for bad in [
            r#"{"a":1e}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e5"#,
        ] {
            assert_eq!(parse(bad), Err(BodyError::Malformed), "{bad}");
        }
    }

    #[test]
    fn number_literals_follow_the_json_grammar() {
        for good in ["0", "-0", "12", "-1.50", "1e5", "1E+5", "0.1e-400000", "9e131071"] {
            assert!(is_number_literal(good.as_bytes()), "{good}");
        }
        for bad in [
            "", "-", "01", "1.", ".5", "+1", "1e", "1e+", "1.2.3", "1e5e5", "0x1", "--1",
        ] {
            assert!(!is_number_literal(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn finds_every_number_outside_strings() {
        let raw = br#"{"a": -1.5e3, "b": "12 \" 34", "c": [0, {"d": 7}], "e1": true, "f": 1E+2}"#;
        let found: Vec<&[u8]> = numbers(raw).collect();
        assert_eq!(found, [&b"-1.5e3"[..], b"0", b"7", b"1E+2"]);
        assert_eq!(numbers(br#"{"a":"1"}"#).count(), 0);
    }

    #[test]
    fn invalid_utf8_is_malformed() {
        let mut buf = b"{\"a\":\"\xff\"}".to_vec();
        assert_eq!(parse_object(&mut buf).err(), Some(BodyError::Malformed));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse(&deep), Err(BodyError::TooDeep));
        let ok = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_BODY_DEPTH - 1),
            "]".repeat(MAX_BODY_DEPTH - 1)
        );
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn finds_the_raw_text_of_top_level_members() {
        let texts = |raw: &[u8]| {
            top_level_members(raw, "metadata")
                .map(|spans| spans.into_iter().map(|r| raw[r].to_vec()).collect::<Vec<_>>())
        };
        let raw =
            br#" { "name" : "x", "metadata" : { "n": 12.50, "s": "}\"{", "a": [1, {"b": []}] } , "z": 1 } "#;
        assert_eq!(
            texts(raw),
            Some(vec![
                br#"{ "n": 12.50, "s": "}\"{", "a": [1, {"b": []}] }"#.to_vec()
            ])
        );
        assert_eq!(texts(br#"{"metadata":-0.5}"#), Some(vec![b"-0.5".to_vec()]));
        // Repeats are all reported, escaped spellings of the key included.
        assert_eq!(
            texts(br#"{"metadata":1e40,"meta\u0064ata":[true]}"#),
            Some(vec![b"1e40".to_vec(), b"[true]".to_vec()])
        );
        assert_eq!(texts(br#"{"nested":{"metadata":1}}"#), Some(vec![]));
        assert_eq!(texts(br#"{}"#), Some(vec![]));
        assert_eq!(texts(br#"{"metadata":"#), None);
        assert_eq!(texts(br#"[1]"#), None);
    }
}
