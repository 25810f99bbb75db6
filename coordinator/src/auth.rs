//! Who may call what. Every call but health and reflection carries a bearer
//! token (`authorization: Bearer TOKEN`) whose role allows it:
//!
//! - `worker`: register, lease, report progress, complete, fail, release,
//!   checkpoints;
//! - `reader`: list and get sweeps, watch, results, compare, curves;
//! - `user`: submit and cancel, and everything a reader may.
//!
//! Tokens are made by `coordinator token create`, shown once, and kept in
//! the database only as a SHA-256 hash; a revoked token is refused.

use std::fmt;

use rand::RngExt;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;

use crate::error::Error;
use crate::store::Store;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Role {
    /// Serves trials: the worker service.
    Worker,
    /// Submits and cancels sweeps, and reads them.
    User,
    /// Reads sweeps and their results.
    Reader,
}

impl Role {
    /// The role's name, as stored and typed.
    pub fn name(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::User => "user",
            Role::Reader => "reader",
        }
    }

    /// Parses a stored role name.
    pub fn parse(name: &str) -> Option<Role> {
        [Role::Worker, Role::User, Role::Reader]
            .into_iter()
            .find(|r| r.name() == name)
    }

    /// Whether a token of this role may make a call that needs `need`.
    pub fn grants(self, need: Role) -> bool {
        self == need || (self == Role::User && need == Role::Reader)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A fresh token: `exp025_` and 256 random bits in hex.
pub fn new_token() -> String {
    let mut rng = rand::rng();
    format!(
        "exp025_{:032x}{:032x}",
        rng.random::<u128>(),
        rng.random::<u128>()
    )
}

/// The SHA-256 of a token in hex, as the database keeps it. Tokens carry
/// 256 random bits, so a fast hash is enough.
pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether the server checks tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Every call needs a token of a role that allows it.
    Required,
    /// Anyone who reaches the port may call anything (loopback only).
    Disabled,
}

/// Admits or refuses calls by their token.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Where the token hashes are.
    pub store: Store,
    /// Whether tokens are checked at all.
    pub auth: Auth,
}

impl Gate {
    /// Admits a call that needs `need` when its metadata carries a valid,
    /// unrevoked token of a role that grants it: UNAUTHENTICATED for a
    /// missing, malformed, unknown or revoked token, PERMISSION_DENIED for
    /// the wrong role.
    pub async fn admit(&self, metadata: &MetadataMap, call: &str, need: Role) -> Result<(), Error> {
        if self.auth == Auth::Disabled {
            return Ok(());
        }
        let header = metadata.get("authorization").ok_or_else(|| {
            Error::Unauthenticated(format!(
                "{call} needs a bearer token; pass --token or set EXP025_TOKEN"
            ))
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
            .ok_or_else(|| {
                Error::Unauthenticated(
                    "malformed authorization header; expected `Bearer TOKEN`".into(),
                )
            })?;
        let found = self
            .store
            .token_by_hash(&hash(token.trim()))
            .await?
            .ok_or_else(|| Error::Unauthenticated("unknown token".into()))?;
        if found.revoked_ms.is_some() {
            return Err(Error::Unauthenticated(format!(
                "token {:?} was revoked",
                found.name
            )));
        }
        if !found.role.grants(need) {
            return Err(Error::PermissionDenied(format!(
                "token {:?} has role {}; {call} needs {need}",
                found.name, found.role
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_read_but_readers_do_not_write_and_workers_only_work() {
        assert!(Role::User.grants(Role::Reader));
        assert!(Role::User.grants(Role::User));
        assert!(!Role::Reader.grants(Role::User));
        assert!(!Role::User.grants(Role::Worker));
        assert!(!Role::Worker.grants(Role::Reader));
        assert!(Role::Worker.grants(Role::Worker));
    }

    #[test]
    fn tokens_are_fresh_and_only_their_hash_is_kept() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), "exp025_".len() + 64);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert!(!hash(&a).contains(&a[7..]));
        // SHA-256 of "abc", as every implementation gives it.
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
