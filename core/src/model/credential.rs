//! A stored credential as both services return it, and its JSON writers: the
//! seven fields of the contract plus `issuer` and `validUntil`, the same in a
//! 201 and a 200; and the public part alone, for callers not entitled to the
//! holder's data.

use crate::db::{self, DbError, Jsonb};
use crate::json;
use tokio_postgres::Row;

/// A stored credential as both services return it: the seven fields of the
/// contract, `issuer` and `validUntil`.
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
    /// The API client that issued it; None when it was issued with `AUTH_MODE=off`.
    pub issuer: Option<&'a str>,
    /// When it was issued (millisecond precision).
    pub issued_at: std::time::SystemTime,
    /// The end of its validity (`validUntil`, millisecond precision); None when it has none.
    pub valid_until: Option<std::time::SystemTime>,
}

/// How much of a credential a caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// All of it: the holder's name, email and metadata too.
    Whole,
    /// What anyone holding the id may see: id, credential type, issuer, issue
    /// time, end of validity.
    Public,
}

impl<'a> Credential<'a> {
    /// The credential a row holds, borrowing its strings: the columns `id`,
    /// `name`, `email`, `credential_type`, `metadata`, `issued_by`, `issuer`,
    /// `issued_at` and `valid_until`, read by name.
    pub fn from_row(row: &'a Row) -> Result<Self, DbError> {
        let metadata: Option<Jsonb<&str>> = db::column(row, "metadata")?;
        Ok(Credential {
            id: db::column(row, "id")?,
            name: db::column(row, "name")?,
            email: db::column(row, "email")?,
            credential_type: db::column(row, "credential_type")?,
            metadata: metadata.map(|m| m.0),
            issued_by: db::column(row, "issued_by")?,
            issuer: db::column(row, "issuer")?,
            issued_at: db::column(row, "issued_at")?,
            valid_until: db::column(row, "valid_until")?,
        })
    }

    /// Writes the credential as a JSON object member named `key`, whole.
    pub fn write(&self, o: &mut json::ObjectWriter<'_>, key: &'static str) {
        self.write_view(o, key, View::Whole);
    }

    /// Writes as much of the credential as `view` allows, as a JSON object member named `key`.
    pub fn write_view(&self, o: &mut json::ObjectWriter<'_>, key: &'static str, view: View) {
        o.object(key, |c| {
            c.str(
                "id",
                self.id
                    .hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            );
            if view == View::Whole {
                c.str("name", self.name).str("email", self.email);
            }
            c.str("credentialType", self.credential_type);
            if view == View::Whole {
                c.raw("metadata", self.metadata.unwrap_or("null"))
                    .str("issuedBy", self.issued_by);
            }
            let valid_until = self.valid_until.map(crate::time::rfc3339_millis);
            c.str_or_null("issuer", self.issuer)
                .str("issuedAt", &crate::time::rfc3339_millis(self.issued_at))
                .str_or_null("validUntil", valid_until.as_deref());
        });
    }
}
