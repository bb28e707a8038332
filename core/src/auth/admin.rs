//! Managing clients: what `SERVICE clients …` does, and what the tests and the
//! fault suite use to make clients of their own. A key is printed once, when it
//! is made, and never stored or logged; the database keeps its hash.

use super::keys::{self, KeyHash};
use super::registry::Role;
use crate::db::{self, DbError};
use std::time::SystemTime;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

/// A client to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClient {
    /// 1–64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The credential types an issuer may issue (trimmed, as requests are); empty: all.
    pub credential_types: Vec<String>,
    /// Its own limit in requests per second per task; None: `CLIENT_RATE_LIMIT`.
    pub rate_limit: Option<u32>,
}

/// A client as `clients list` shows it: never its key.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Its name.
    pub name: String,
    /// `issuer` or `verifier`.
    pub role: String,
    /// The types it may issue; empty: all.
    pub credential_types: Vec<String>,
    /// Its own limit, if any.
    pub rate_limit: Option<i32>,
    /// Live keys.
    pub keys: i64,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<SystemTime>,
}

/// Whether `name` may name a client (the table's CHECK says the same).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=64).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// Creates `client` with one key: the given hash (a key made elsewhere, so it
/// never passes through this process), or a fresh key, returned.
pub async fn add(
    db: &mut Client,
    client: &NewClient,
    hash: Option<KeyHash>,
) -> Result<Option<String>, AdminError> {
    if !valid_name(&client.name) {
        return Err(AdminError::Invalid(format!(
            "invalid name {:?}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            client.name
        )));
    }
    if client.rate_limit == Some(0) || client.rate_limit.is_some_and(|r| r > i32::MAX as u32) {
        return Err(AdminError::Invalid(
            "--rate-limit must be a whole number from 1".into(),
        ));
    }
    let (key, hash) = match hash {
        Some(hash) => (None, hash),
        None => {
            let key = keys::generate().map_err(AdminError::Invalid)?;
            let hash = KeyHash::of(&key);
            (Some(key), hash)
        }
    };
    // Every statement unnamed (query_typed): a named one, closed only when its
    // last row is dropped, could outlive the transaction on a server connection
    // a transaction-mode pooler lends to the next process, which then finds its
    // name taken ("prepared statement \"s3\" already exists").
    let tx = db.transaction().await.map_err(DbError::from)?;
    let exists = tx
        .query_typed(
            "SELECT 1 FROM api_clients WHERE name = $1",
            &[(&client.name, Type::TEXT)],
        )
        .await
        .map_err(DbError::from)?;
    if !exists.is_empty() {
        return Err(AdminError::Exists(client.name.clone()));
    }
    let rate = client.rate_limit.map(|r| r as i32);
    let rows = tx
        .query_typed(
            "INSERT INTO api_clients (name, role, credential_types, rate_limit)
             VALUES ($1, $2, $3, $4) RETURNING id",
            &[
                (&client.name, Type::TEXT),
                (&client.role.as_str(), Type::TEXT),
                (&client.credential_types, Type::TEXT_ARRAY),
                (&rate, Type::INT4),
            ],
        )
        .await
        .map_err(DbError::from)?;
    let row = rows
        .first()
        .ok_or_else(|| DbError::Other("INSERT INTO api_clients returned no row".into()))?;
    let id: i64 = db::column(row, "id")?;
    tx.query_typed(
        "INSERT INTO api_keys (key_sha256, client_id) VALUES ($1, $2)",
        &[(&&hash.0[..], Type::BYTEA), (&id, Type::INT8)],
    )
    .await
    .map_err(DbError::from)?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(key)
}

/// Revokes the client `name` and its keys; false if there is no live client so named.
pub async fn revoke(db: &mut Client, name: &str) -> Result<bool, AdminError> {
    // Unnamed, as in `add`.
    let tx = db.transaction().await.map_err(DbError::from)?;
    let rows = tx
        .query_typed(
            "UPDATE api_clients SET revoked_at = CURRENT_TIMESTAMP
              WHERE name = $1 AND revoked_at IS NULL RETURNING id",
            &[(&name, Type::TEXT)],
        )
        .await
        .map_err(DbError::from)?;
    let Some(row) = rows.first() else {
        return Ok(false);
    };
    let id: i64 = db::column(row, "id")?;
    tx.query_typed(
        "UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE client_id = $1 AND revoked_at IS NULL",
        &[(&id, Type::INT8)],
    )
    .await
    .map_err(DbError::from)?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(true)
}

/// Every client, revoked ones too, oldest first.
pub async fn list(db: &Client) -> Result<Vec<ClientInfo>, AdminError> {
    // Unnamed (no prepared statement to find again): works behind a transaction-mode pooler.
    let rows = db
        .query_typed(
            "SELECT c.name, c.role, c.credential_types, c.rate_limit, c.created_at, c.revoked_at,
                    (SELECT count(*) FROM api_keys k WHERE k.client_id = c.id AND k.revoked_at IS NULL) AS keys
               FROM api_clients c ORDER BY c.id",
            &[],
        )
        .await
        .map_err(DbError::from)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(ClientInfo {
            name: db::column(row, "name")?,
            role: db::column(row, "role")?,
            credential_types: db::column(row, "credential_types")?,
            rate_limit: db::column(row, "rate_limit")?,
            keys: db::column(row, "keys")?,
            created_at: db::column(row, "created_at")?,
            revoked_at: db::column(row, "revoked_at")?,
        });
    }
    Ok(out)
}

/// Why a command failed.
#[derive(Debug)]
pub enum AdminError {
    /// The arguments are wrong (exit 2).
    Invalid(String),
    /// A client of that name exists (exit 1).
    Exists(String),
    /// The database failed (exit 1).
    Db(DbError),
}

impl From<DbError> for AdminError {
    fn from(e: DbError) -> Self {
        AdminError::Db(e)
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::Invalid(why) => f.write_str(why),
            AdminError::Exists(name) => write!(f, "a client named {name:?} exists already"),
            AdminError::Db(e) => write!(f, "{e}"),
        }
    }
}

/// The `clients` command line, parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// `clients add NAME --role R [--credential-types "A,B"] [--rate-limit N] [--key-sha256 HEX]`
    Add(NewClient, Option<KeyHash>),
    /// `clients revoke NAME`
    Revoke(String),
    /// `clients list`
    List,
    /// `clients keygen`: a key and its hash, made locally; nothing is stored.
    Keygen,
}

/// The usage text of `clients`.
pub const USAGE: &str = "usage: SERVICE clients <command>
  add NAME --role issuer|verifier [--credential-types \"A,B\"] [--rate-limit N] [--key-sha256 HEX]
                 create a client; prints its new key alone on stdout, once
                 (with --key-sha256, registers the key made by `clients keygen` instead and prints nothing secret)
  revoke NAME    revoke the client and its keys (every task refuses them within 1 s)
  list           the clients (never their keys)
  keygen         print a new key and its SHA-256 (key=…, sha256=…); stores nothing";

/// Parses the words after `clients`.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter().map(String::as_str);
    match it.next() {
        Some("list") if args.len() == 1 => Ok(Command::List),
        Some("keygen") if args.len() == 1 => Ok(Command::Keygen),
        Some("revoke") if args.len() == 2 => Ok(Command::Revoke(args[1].clone())),
        Some("add") => {
            let name = it
                .next()
                .filter(|n| !n.starts_with("--"))
                .ok_or("add needs a NAME")?;
            let (mut role, mut types, mut rate, mut hash) = (None, Vec::new(), None, None);
            while let Some(flag) = it.next() {
                let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
                match flag {
                    "--role" => role = Some(Role::parse(value).ok_or("--role must be issuer or verifier")?),
                    "--credential-types" => {
                        types = value
                            .split(',')
                            .map(str::trim)
                            .filter(|t| !t.is_empty())
                            .map(str::to_owned)
                            .collect();
                    }
                    "--rate-limit" => {
                        rate = Some(
                            value
                                .parse::<u32>()
                                .ok()
                                .filter(|r| (1..=i32::MAX as u32).contains(r))
                                .ok_or("--rate-limit must be a whole number from 1")?,
                        );
                    }
                    "--key-sha256" => {
                        hash = Some(KeyHash::from_hex(value).ok_or("--key-sha256 must be 64 hex digits")?);
                    }
                    other => return Err(format!("unknown option {other}")),
                }
            }
            let role = role.ok_or("add needs --role issuer|verifier")?;
            if role == Role::Verifier && !types.is_empty() {
                return Err("--credential-types is for issuers".into());
            }
            Ok(Command::Add(
                NewClient {
                    name: name.to_owned(),
                    role,
                    credential_types: types,
                    rate_limit: rate,
                },
                hash,
            ))
        }
        _ => Err("expected add, revoke, list or keygen".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn the_command_line_is_parsed() {
        let add = parse(&words(
            "add acme --role issuer --credential-types A,B --rate-limit 50",
        ))
        .unwrap();
        assert_eq!(
            add,
            Command::Add(
                NewClient {
                    name: "acme".into(),
                    role: Role::Issuer,
                    credential_types: vec!["A".into(), "B".into()],
                    rate_limit: Some(50),
                },
                None
            )
        );
        let hash = "ab".repeat(32);
        assert!(matches!(
            parse(&words(&format!("add v --role verifier --key-sha256 {hash}"))),
            Ok(Command::Add(_, Some(_)))
        ));
        assert_eq!(parse(&words("list")), Ok(Command::List));
        assert_eq!(parse(&words("keygen")), Ok(Command::Keygen));
        assert_eq!(parse(&words("revoke acme")), Ok(Command::Revoke("acme".into())));
        for bad in [
            "add",
            "add acme",
            "add acme --role admin",
            "add acme --role issuer --rate-limit 0",
            "add acme --role issuer --rate-limit",
            "add acme --role verifier --credential-types A",
            "add acme --role issuer --key-sha256 00",
            "add acme --role issuer --colour red",
            "revoke",
            "drop acme",
        ] {
            assert!(parse(&words(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("acme-issuer_1.eu"));
        for bad in ["", "-acme", "acme corp", "acmé", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
