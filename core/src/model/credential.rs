//! A stored credential as both services return it, and its JSON writer: the
//! seven fields of the contract, the same in a 201, a 409's holder and a 200.

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
    /// When it was issued (millisecond precision).
    pub issued_at: std::time::SystemTime,
}

impl Credential<'_> {
    /// Writes the credential as a JSON object member named `key`.
    pub fn write(&self, o: &mut json::ObjectWriter<'_>, key: &'static str) {
        o.object(key, |c| {
            c.str(
                "id",
                self.id
                    .hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            )
            .str("name", self.name)
            .str("email", self.email)
            .str("credentialType", self.credential_type)
            .raw("metadata", self.metadata.unwrap_or("null"))
            .str("issuedBy", self.issued_by)
            .str("issuedAt", &crate::time::rfc3339_millis(self.issued_at));
        });
    }
}
