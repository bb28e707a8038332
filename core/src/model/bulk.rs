//! A bulk request's body, `{"credentials": [ … ]}`: checked as a whole (JSON,
//! an object whose `credentials` member is an array of 1 to `BULK_MAX` items,
//! given once) and split into its items' text as the client wrote it. Each
//! item is then read exactly as the single route reads a whole body, so an
//! item gets the answer it would have got alone, and one bad item does not
//! fail the others.

use super::rules::{contains_nul, message, FieldError, Invalid};
use crate::error::ApiError;
use crate::http::Reply;
use crate::json;
use hyper::StatusCode;
use std::ops::Range;

/// The items of a bulk request, as ranges of its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bulk {
    items: Vec<Range<usize>>,
}

impl Bulk {
    /// Checks the body `raw` of a bulk request holding at most `max` items.
    pub fn parse(raw: &[u8], max: usize) -> Result<Self, Invalid> {
        // Parsed once whole, so the text between and around the items is JSON too.
        let mut scratch = raw.to_vec();
        let value = json::parse_object(&mut scratch).map_err(|e| e.explain(raw))?;
        // NUL characters outside the items are refused as a single request's are
        // (the items are checked as single requests).
        if let simd_json::BorrowedValue::Object(map) = &value {
            let nul: Vec<FieldError> = map
                .iter()
                .filter_map(|(key, member)| {
                    if key.contains('\0') {
                        Some(FieldError::new("body", message::NUL))
                    } else if key != "credentials" && contains_nul(member) {
                        Some(FieldError::new(key.to_string(), message::NUL))
                    } else {
                        None
                    }
                })
                .collect();
            if !nul.is_empty() {
                return Err(Invalid(nul));
            }
        }
        let spans = json::top_level_members(raw, "credentials").unwrap_or_default();
        let field = |m: &'static str| Invalid(vec![FieldError::new("credentials", m)]);
        let span = match spans.as_slice() {
            [] => return Err(field(message::REQUIRED)),
            [span] => span.clone(),
            _ => return Err(field(message::REPEATED)),
        };
        let Some(items) = json::array_elements(raw, span) else {
            return Err(field(message::NOT_AN_ARRAY));
        };
        if items.is_empty() {
            return Err(field(message::EMPTY));
        }
        if items.len() > max {
            return Err(Invalid(vec![FieldError::new(
                "credentials",
                message::too_many(max),
            )]));
        }
        Ok(Bulk { items })
    }

    /// How many items it holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds none (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Each item's text with its share of `scratch`, a copy of `raw` for the
    /// parser to rewrite in place (see [`super::NewCredential::parse`]): one
    /// copy of the body for all items.
    pub fn split<'a>(&self, raw: &'a [u8], mut scratch: &'a mut [u8]) -> Vec<(&'a [u8], &'a mut [u8])> {
        let mut at = 0;
        let mut out = Vec::with_capacity(self.items.len());
        for r in &self.items {
            let Some(rest) = scratch.get_mut(r.start - at..) else {
                break;
            };
            let (item, rest) = rest.split_at_mut((r.end - r.start).min(rest.len()));
            out.push((raw.get(r.clone()).unwrap_or_default(), item));
            scratch = rest;
            at = r.end;
        }
        out
    }

    /// Each item's text, in order, from the body `raw` it was parsed from.
    pub fn items<'a>(&'a self, raw: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.items
            .iter()
            .map(move |r| raw.get(r.clone()).unwrap_or_default())
    }
}

/// `n` random (version 4) ids from one read of the system's random source: a
/// profile of bulk issuance found `Uuid::new_v4`'s `getrandom` call per id
/// taking about 4 % of the task's CPU. Falls back to one call per id if the
/// batched read fails.
pub fn random_ids(n: usize) -> Vec<uuid::Uuid> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = vec![0u8; n * 16];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return (0..n).map(|_| uuid::Uuid::new_v4()).collect();
    }
    bytes
        .chunks_exact(16)
        .map(|c| {
            let mut b = [0u8; 16];
            b.copy_from_slice(c);
            uuid::Builder::from_random_bytes(b).into_uuid()
        })
        .collect()
}

/// The answer to a bulk request whose items got `replies`, in request order:
/// 200 with [`results`]; or 503 when every item got 503 (nothing was stored,
/// and the client retries the whole request after `Retry-After`).
pub fn answer(head: impl FnOnce(&mut json::ObjectWriter<'_>), replies: &[Reply]) -> Result<Reply, ApiError> {
    if replies
        .iter()
        .all(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
    {
        return Err(ApiError::Unavailable(
            "every item of the bulk request was shed".into(),
        ));
    }
    let body = results(
        head,
        replies.iter().map(|r| (r.status.as_u16(), r.body.as_slice())),
    );
    Ok(Reply::json(StatusCode::OK, body))
}

/// Writes a bulk answer: `{<head members>,"results":[…]}`, each result the
/// single route's JSON object for its item with `"status"` put first.
pub fn results<'a>(
    head: impl FnOnce(&mut json::ObjectWriter<'_>),
    items: impl ExactSizeIterator<Item = (u16, &'a [u8])>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + items.len() * 320);
    let mut w = json::ObjectWriter::new(&mut out);
    head(&mut w);
    w.raw_with("results", |out| {
        out.push(b'[');
        for (n, (status, body)) in items.enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"status\":");
            out.extend_from_slice(status.to_string().as_bytes());
            // The body is a JSON object written by this crate: `{` then its members.
            match body.get(1..) {
                Some(b"}") | None => out.push(b'}'),
                Some(rest) => {
                    out.push(b',');
                    out.extend_from_slice(rest);
                }
            }
        }
        out.push(b']');
    });
    w.finish();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(raw: &str, max: usize) -> Result<Vec<String>, Vec<String>> {
        Bulk::parse(raw.as_bytes(), max)
            .map(|b| {
                b.items(raw.as_bytes())
                    .map(|i| String::from_utf8_lossy(i).into_owned())
                    .collect()
            })
            .map_err(|e| {
                e.0.iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect()
            })
    }

    #[test]
    fn random_ids_are_distinct_version_4_uuids() {
        let ids = random_ids(1000);
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.get_version_num() == 4));
        assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), 1000);
    }

    #[test]
    fn splits_the_items_as_written() {
        assert_eq!(
            items(
                r#"{"credentials": [{"name": "a"}, 7 , {"x": 1.50}], "other": 1}"#,
                3
            ),
            Ok(vec![
                r#"{"name": "a"}"#.into(),
                "7".into(),
                r#"{"x": 1.50}"#.into()
            ])
        );
    }

    #[test]
    fn each_item_gets_its_own_share_of_one_scratch_copy() {
        let raw = br#"{"credentials": [{"a": 1}, "b" ]}"#;
        let bulk = Bulk::parse(raw, 5).unwrap();
        let mut scratch = raw.to_vec();
        let split = bulk.split(raw, &mut scratch);
        let texts: Vec<(&[u8], &[u8])> = split.iter().map(|(r, s)| (*r, &**s)).collect();
        assert_eq!(
            texts,
            [(&br#"{"a": 1}"#[..], &br#"{"a": 1}"#[..]), (b"\"b\"", b"\"b\"")]
        );
    }

    #[test]
    fn refuses_a_wrapper_that_is_not_one_array_of_1_to_max_items() {
        for (raw, err) in [
            ("", "body: request body is empty; send a JSON object"),
            ("[]", "body: request body must be a JSON object"),
            (
                r#"{"credentials": [1], "x": tru}"#,
                "body: request body is not valid JSON",
            ),
            ("{}", "credentials: is required"),
            (r#"{"credentials": {}}"#, "credentials: must be an array"),
            (r#"{"credentials": []}"#, "credentials: must not be empty"),
            (
                r#"{"credentials": [1, 2, 3]}"#,
                "credentials: must hold at most 2 items",
            ),
            (
                r#"{"credentials": [1], "credentials": [2]}"#,
                "credentials: must appear only once",
            ),
            (
                r#"{"credentials": [1], "a\u0000": 1}"#,
                "body: must not contain the NUL character (\\u0000)",
            ),
            (
                r#"{"credentials": [1], "x": ["\u0000"]}"#,
                "x: must not contain the NUL character (\\u0000)",
            ),
        ] {
            assert_eq!(items(raw, 2), Err(vec![err.to_owned()]), "{raw}");
        }
    }

    #[test]
    fn results_put_the_status_first_in_each_items_answer() {
        let a = br#"{"success":true,"n":1}"#;
        let body = results(
            |o| {
                o.bool("success", true);
            },
            [(201u16, &a[..]), (409, b"{}")].into_iter(),
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"success":true,"results":[{"status":201,"success":true,"n":1},{"status":409}]}"#
        );
        let none = results(|_| {}, std::iter::empty());
        assert_eq!(String::from_utf8(none).unwrap(), r#"{"results":[]}"#);
    }
}
