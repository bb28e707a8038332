//! A stored credential as both services return it, and its JSON writers: the
//! seven fields of the contract plus `issuer`, the same in a 201 and a 200; and
//! the public part alone, for callers not entitled to the holder's data.

use crate::json;

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
    /// The API client that issued it; None when it was issued with `AUTH_MODE=off`.
    pub issuer: Option<&'a str>,
    /// When it was issued (millisecond precision).
    pub issued_at: std::time::SystemTime,
}

/// How much of a credential a caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// All of it: the holder's name, email and metadata too.
    Whole,
    /// What anyone holding the id may see: id, credential type, issuer, issue time.
    Public,
}

impl Credential<'_> {
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
            c.str_or_null("issuer", self.issuer)
                .str("issuedAt", &crate::time::rfc3339_millis(self.issued_at));
        });
    }
}
