//! PostgreSQL wire types the services need beyond tokio-postgres' own.

use std::error::Error;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

/// JSONB sent and received as its text, without a JSON library in between:
/// the request's metadata goes to the database as the client wrote it, and
/// comes back as text that is written into the response as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jsonb<T>(pub T);

/// JSONB's binary format is a version byte (1) followed by the JSON text.
const JSONB_VERSION: u8 = 1;

impl<T: AsRef<str> + std::fmt::Debug> ToSql for Jsonb<T> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.extend_from_slice(&[JSONB_VERSION]);
        }
        out.extend_from_slice(self.0.as_ref().as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Jsonb<&'a str> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((&JSONB_VERSION, rest)) => rest,
                _ => return Err("unsupported JSONB version".into()),
            }
        } else {
            raw
        };
        Ok(Jsonb(std::str::from_utf8(text)?))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }
}
