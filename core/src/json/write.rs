//! Writing response bodies straight into a byte buffer: no intermediate
//! strings, no serde.

/// Appends `s` to `out` as a JSON string literal, quotes included.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Writes one JSON object member by member into a byte buffer.
///
/// Keys are compile-time names of this API and are written as they are.
pub struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> ObjectWriter<'a> {
    /// Opens an object at the end of `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter { out, empty: true }
    }

    fn key(&mut self, key: &'static str) {
        debug_assert!(!key.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20));
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A string member.
    pub fn str(&mut self, key: &'static str, value: &str) -> &mut Self {
        self.key(key);
        write_str(self.out, value);
        self
    }

    /// A string member, or `null` when there is none.
    pub fn str_or_null(&mut self, key: &'static str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(key, v),
            None => self.raw(key, "null"),
        }
    }

    /// A member whose value is JSON text already (e.g. metadata from PostgreSQL).
    pub fn raw(&mut self, key: &'static str, json: &str) -> &mut Self {
        self.key(key);
        self.out.extend_from_slice(json.as_bytes());
        self
    }

    /// A member whose value `write` appends as JSON text (e.g. an array of
    /// objects written already).
    pub fn raw_with(&mut self, key: &'static str, write: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        self.key(key);
        write(self.out);
        self
    }

    /// A boolean member.
    pub fn bool(&mut self, key: &'static str, value: bool) -> &mut Self {
        self.raw(key, if value { "true" } else { "false" })
    }

    /// An unsigned integer member.
    pub fn u64(&mut self, key: &'static str, value: u64) -> &mut Self {
        self.key(key);
        let mut digits = [0u8; 20];
        let mut n = value;
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.out.extend_from_slice(&digits[at..]);
        self
    }

    /// A nested object member, filled in by `fill`.
    pub fn object(&mut self, key: &'static str, fill: impl FnOnce(&mut ObjectWriter<'_>)) -> &mut Self {
        self.key(key);
        let mut inner = ObjectWriter::new(self.out);
        fill(&mut inner);
        inner.finish();
        self
    }

    /// An array member holding one object per item.
    pub fn array<T>(
        &mut self,
        key: &'static str,
        items: impl IntoIterator<Item = T>,
        mut fill: impl FnMut(&mut ObjectWriter<'_>, T),
    ) -> &mut Self {
        self.key(key);
        self.out.push(b'[');
        for (n, item) in items.into_iter().enumerate() {
            if n > 0 {
                self.out.push(b',');
            }
            let mut inner = ObjectWriter::new(self.out);
            fill(&mut inner, item);
            inner.finish();
        }
        self.out.push(b']');
        self
    }

    /// Closes the object.
    pub fn finish(self) {
        self.out.push(b'}');
    }
}

/// Builds a complete JSON object body.
pub fn object(fill: impl FnOnce(&mut ObjectWriter<'_>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut w = ObjectWriter::new(&mut out);
    fill(&mut w);
    w.finish();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_object;

    #[test]
    fn writes_escaped_strings_and_nested_objects() {
        let body = object(|o| {
            o.bool("success", false)
                .str("message", "quote \" slash \\ nl \n nul \u{0} tab \t é")
                .u64("n", 0)
                .u64("max", u64::MAX)
                .raw("metadata", "null")
                .object("inner", |i| {
                    i.str("id", "x");
                })
                .array("errors", ["a", "b"], |o, f| {
                    o.str("field", f);
                });
        });
        let text = String::from_utf8(body).unwrap();
        assert_eq!(
            text,
            r#"{"success":false,"message":"quote \" slash \\ nl \n nul \u0000 tab \t é","n":0,"max":18446744073709551615,"metadata":null,"inner":{"id":"x"},"errors":[{"field":"a"},{"field":"b"}]}"#
        );
        let mut buf = text.into_bytes();
        assert!(parse_object(&mut buf).is_ok());
    }
}
