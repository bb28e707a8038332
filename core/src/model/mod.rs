//! The credential model, one file per reason to change:
//!
//! - [`request`]: what a client may send, read from its JSON body and normalised
//!   ([`NewCredential`], [`VerifyRequest`], [`RevokeRequest`]); holding one means
//!   the rules were applied;
//! - [`identity`]: how names, credential types and emails are prepared (PRECIS),
//!   so that invisible or combining variants of one identity are one;
//! - [`rules`]: the validation rules of the HTTP contract, their limits and
//!   their messages, one error per offending field ([`FieldError`], [`Invalid`]);
//! - [`credential`]: a stored credential as both services return it ([`Credential`]);
//! - [`bulk`]: a bulk request's items, each read as a single request, and its answer ([`Bulk`]).

pub mod bulk;
pub mod credential;
pub mod identity;
pub mod request;
pub mod rules;

pub use bulk::Bulk;
pub use credential::{Credential, View};
pub use request::{NewCredential, RevokeRequest, VerifyRequest};
pub use rules::{
    canonical_uuid, FieldError, Invalid, CREDENTIAL_TYPE_MAX, EMAIL_MAX, MAX_VALIDITY_DAYS,
    METADATA_MAX_DEPTH, NAME_MAX, REASON_MAX,
};
