//! JSON in and out: [`read`](mod@read) parses request bodies in place with simd-json and
//! finds what the parser does not keep (a member's raw text, number literals);
//! [`write`](mod@write) writes response bodies straight into a byte buffer.

pub mod read;
pub mod write;

pub use read::{
    array_elements, is_number_literal, numbers, parse_object, repeated_members, repeated_members_of,
    top_level_members, BodyError, MAX_BODY_DEPTH,
};
pub use write::{object, write_str, ObjectWriter};
