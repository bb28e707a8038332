//! A deterministic generator of issuance request bodies for the round-trip
//! property tests: core's own (tests/roundtrip.rs) and the services' against the
//! real PostgreSQL (verification/tests/roundtrip.rs, which includes this file by
//! its path). No crate of its own and no proptest: a seeded xorshift picks from
//! tables of the strings that matter, so a failure names its seed and case and
//! replays exactly.
//!
//! The strings mix what a client may send and what the rules refuse: plain
//! ASCII, accents precomposed and combining, spaces of every width and runs of
//! them, full-width and ligature letters (NFKC), emoji with and without their
//! presentation selectors and in ZWJ sequences, Arabic and Indic join controls,
//! titlecase and upper-case letters, quotes and backslashes; and, less often,
//! control, invisible and direction-changing code points. Each character is
//! written raw or as a JSON escape (`\uXXXX`, surrogate pairs, the short escapes).

#![allow(dead_code)] // Each including test uses its own part of it.

/// xorshift64*: small, fast and the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Pieces of a name or credential type a client may well send.
const WORDS: &[&str] = &[
    "Ada",
    "Lovelace",
    "José",
    "Jose\u{301}",
    "Zoë",
    "O'Brien-Smith",
    "李小龍",
    "محمد",
    "Ólafsdóttir",
    "Ｊｏｈｎ",
    "ﬁne",
    "Heart ❤\u{fe0f}",
    "🦀",
    "👩\u{200d}💻",
    "🎓",
    "\u{1c5}ac",
    "ÅNGSTRÖM",
    "Å",
    "\u{646}\u{627}\u{645}\u{647}\u{200c}\u{627}\u{6cc}",
    "\u{915}\u{94d}\u{200d}\u{937}",
    "\"quoted\"",
    "back\\slash",
    "a/b",
    "Σίσυφος",
    "Developer Certificate",
    "x",
    "9",
    "é\u{fe0f}\u{301}",
    "¨",
];

/// Spaces between words: most are one space; the rest become one.
const SPACES: &[&str] = &[" ", " ", " ", "  ", "\u{a0}", "\u{3000}", "\u{2003}", " \u{a0} "];

/// Around a value: trimmed away.
const PADDING: &[&str] = &["", "", "", " ", "\t", "\n ", "\u{3000}"];

/// What the rules refuse in a name or type: control, invisible, direction-changing.
const REFUSED: &[&str] = &[
    "\u{7}",
    "\u{1b}[31m",
    "\u{200b}",
    "\u{202e}",
    "\u{feff}",
    "\u{0}",
    "\u{e000}",
];

/// Atoms of an email's local part and labels of its domain.
const LOCAL: &[&str] = &[
    "ada",
    "Ada",
    "first.last",
    "x+tag",
    "o'brien",
    "zoë",
    "ZOË",
    "用户",
    "\u{1c5}",
    "e\u{301}",
    "e\u{fe0f}\u{301}",
];
const DOMAIN: &[&str] = &[
    "example.com",
    "Example.COM",
    "b.co",
    "exämple.de",
    "例子.广告",
    "x-y.example",
];
const NOT_AN_EMAIL: &[&str] = &[
    "nope", "a@@b.co", "a b@c.co", "<x>@y.co", "a@b", "@b.co", "a@b.co.",
];

/// Number literals metadata may hold, PostgreSQL's edges included.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "12.50",
    "1e-16383",
    "-1.5E+300",
    "123456789012345678901234567890",
    "0.1e-400000",
    "7",
];

/// One value as JSON text: each character raw or escaped, at random.
pub fn literal(rng: &mut Rng, s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || rng.one_in(6) => escape(rng, c, &mut out),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn escape(rng: &mut Rng, c: char, out: &mut String) {
    let short = match c {
        '\n' => Some("\\n"),
        '\t' => Some("\\t"),
        '/' => Some("\\/"),
        '\u{8}' => Some("\\b"),
        '\u{c}' => Some("\\f"),
        '\r' => Some("\\r"),
        _ => None,
    };
    match short {
        Some(s) if rng.one_in(2) => out.push_str(s),
        _ => {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                if rng.one_in(2) {
                    out.push_str(&format!("\\u{unit:04x}"));
                } else {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
        }
    }
}

/// A name or credential type of 1 to `words` pieces then `suffix`, padded, now
/// and then refused.
pub fn identity(rng: &mut Rng, words: usize, suffix: &str) -> String {
    let mut s = rng.pick(PADDING).to_owned();
    for i in 0..=rng.below(words) {
        if i > 0 {
            s.push_str(rng.pick(SPACES));
        }
        s.push_str(rng.pick(WORDS));
    }
    if rng.one_in(12) {
        s.push_str(rng.pick(REFUSED));
    }
    s.push_str(suffix);
    s.push_str(rng.pick(PADDING));
    s
}

/// An email: mostly valid, in any case, padded; now and then not an email at all.
pub fn email(rng: &mut Rng) -> String {
    if rng.one_in(12) {
        return rng.pick(NOT_AN_EMAIL).to_owned();
    }
    let mut local = rng.pick(LOCAL).to_owned();
    if rng.one_in(3) {
        local.push('.');
        local.push_str(rng.pick(LOCAL));
    }
    format!(
        "{}{local}@{}{}",
        rng.pick(PADDING),
        rng.pick(DOMAIN),
        rng.pick(PADDING)
    )
}

/// A metadata object as JSON text, nested up to `depth` levels.
pub fn metadata(rng: &mut Rng, depth: usize) -> String {
    let members: Vec<String> = (0..rng.below(4))
        .map(|i| {
            let word = rng.pick(WORDS);
            let key = literal(rng, &format!("{word}{i}"));
            format!("{key}:{}", value(rng, depth.saturating_sub(1)))
        })
        .collect();
    format!("{{{}}}", members.join(","))
}

fn value(rng: &mut Rng, depth: usize) -> String {
    match rng.below(if depth == 0 { 4 } else { 6 }) {
        0 => rng.pick(NUMBERS).to_owned(),
        1 => {
            let word = if rng.one_in(4) {
                rng.pick(REFUSED)
            } else {
                rng.pick(WORDS)
            };
            literal(rng, word)
        }
        2 => rng.pick(&["true", "false", "null"]).to_owned(),
        3 => literal(rng, ""),
        4 => metadata(rng, depth),
        _ => {
            let items: Vec<String> = (0..rng.below(3)).map(|_| value(rng, depth - 1)).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// A whole issuance body: the three fields, metadata one time in two, members
/// in any order; `name_suffix` is appended to the name (to keep names apart).
pub fn issuance(rng: &mut Rng, name_suffix: &str) -> String {
    let (name, email, credential_type) = (identity(rng, 4, name_suffix), email(rng), identity(rng, 3, ""));
    let mut members = vec![
        format!("\"name\":{}", literal(rng, &name)),
        format!("\"email\":{}", literal(rng, &email)),
        format!("\"credentialType\":{}", literal(rng, &credential_type)),
    ];
    if rng.one_in(2) {
        members.push(format!("\"metadata\": {}", metadata(rng, 3)));
    }
    let first = rng.below(members.len());
    members.swap(0, first);
    format!("{{{}}}", members.join(", "))
}
