//! API keys: how one is made, how it is recognised in a request, and the only
//! form in which it is ever kept (its SHA-256).
//!
//! A key is `kc_` and 43 characters of unpadded base64url: 256 bits from the
//! operating system's random source. Guessing one is hopeless and a fast hash
//! cannot be reversed, so a plain SHA-256 is enough (a password hash such as
//! argon2 is for low-entropy secrets, and would put milliseconds on every
//! request). The prefix makes a leaked key easy to recognise, for a secret
//! scanner or a person. At 46 bytes a key is one SHA-256 block: about 100 ns
//! here, where 64 hex digits (67 bytes, two blocks) took 170 ns.

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// What every key starts with.
pub const PREFIX: &str = "kc_";
/// Random bytes in a key.
const RANDOM_BYTES: usize = 32;
/// Base64url characters after the prefix: 32 bytes, unpadded.
const BODY_LEN: usize = 43;
/// Length of a whole key.
pub const KEY_LEN: usize = PREFIX.len() + BODY_LEN;

/// The SHA-256 of a key: what the database and the tasks keep.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({})", hex(&self.0[..4]))
    }
}

impl KeyHash {
    /// The hash of `key`.
    pub fn of(key: &str) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest::digest(&digest::SHA256, key.as_bytes()).as_ref());
        KeyHash(out)
    }

    /// Compares in constant time: how long it takes says nothing about how many
    /// leading bytes matched.
    pub fn matches(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The first 16 bytes, which the tasks' map is keyed on (the whole hash is then
    /// compared with [`KeyHash::matches`]).
    pub fn slot(&self) -> u128 {
        let mut head = [0u8; 16];
        head.copy_from_slice(&self.0[..16]);
        u128::from_be_bytes(head)
    }

    /// As 64 lower-case hex digits (the `--key-sha256` form).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// From 64 hex digits, either case.
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.trim().as_bytes();
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16);
            *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Some(KeyHash(out))
    }
}

/// A fresh key. Fails only if the operating system has no random source.
pub fn generate() -> Result<String, String> {
    let mut bytes = [0u8; RANDOM_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the operating system's random source failed".to_owned())?;
    Ok(format!("{PREFIX}{}", base64url(&bytes)))
}

/// Whether `token` has the shape of a key (so a malformed one is refused
/// without hashing it).
pub fn well_formed(token: &str) -> bool {
    token.len() == KEY_LEN
        && token.starts_with(PREFIX)
        && token.as_bytes()[PREFIX.len()..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any
/// case, RFC 9110 §11.1); None for another scheme or no token.
pub fn bearer(header: &[u8]) -> Option<&str> {
    let header = std::str::from_utf8(header).ok()?.trim();
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Unpadded base64url (RFC 4648 §5).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert!(well_formed(&a) && well_formed(&b), "{a}");
        assert_ne!(a, b);
        assert_eq!(a.len(), KEY_LEN);
        assert!(!well_formed(&format!("kc_{}", "+".repeat(43))));
        assert!(!well_formed(&format!("{a}=")));
        assert!(!well_formed(&a[..KEY_LEN - 1]));
        assert!(!well_formed(&format!("xx_{}", &a[3..])));
    }

    #[test]
    fn base64url_is_rfc_4648s() {
        // RFC 4648 §10's vectors, unpadded, and the URL-safe alphabet.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(plain.as_bytes()), encoded);
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn hashes_round_trip_through_hex_and_compare() {
        let key = generate().unwrap();
        let h = KeyHash::of(&key);
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(KeyHash::from_hex(&h.to_hex().to_uppercase()), Some(h));
        assert!(h.matches(&KeyHash::of(&key)));
        assert!(!h.matches(&KeyHash::of("kc_other")));
        assert_eq!(KeyHash::from_hex("zz"), None);
        assert_eq!(KeyHash::from_hex(&"g".repeat(64)), None);
        // The known SHA-256 of "abc".
        assert_eq!(
            KeyHash::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(!format!("{h:?}").contains(&h.to_hex()));
    }

    #[test]
    fn bearer_tokens_are_read_in_any_scheme_case() {
        assert_eq!(bearer(b"Bearer kc_1"), Some("kc_1"));
        assert_eq!(bearer(b"bearer   kc_1 "), Some("kc_1"));
        assert_eq!(bearer(b"Basic dXNlcg=="), None);
        assert_eq!(bearer(b"Bearer"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"\xffBearer x"), None);
    }
}
