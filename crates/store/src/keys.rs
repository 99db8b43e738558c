//! Signing keys of instances, as learned from handshakes and rosters.
//!
//! Invariant: the first key learned for an instance id is kept; a different key claimed
//! later is refused (and logged by the caller), never silently swapped.

use crate::engine::{Conn, OptionalExtension};
use crate::error::Result;
use crate::params;
use openhive_core::PublicKey;

/// The result of offering a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    New,
    AlreadyKnown,
    Conflict,
}

/// The known key of `instance_id`.
pub fn get(conn: &Conn<'_>, instance_id: &str) -> Result<Option<PublicKey>> {
    let s: Option<String> = conn
        .prepare_cached("SELECT signing_key FROM instance_keys WHERE instance_id = ?1")?
        .query_row([instance_id], |r| r.get(0))
        .optional()?;
    Ok(s.and_then(|s| PublicKey::from_base64(&s).ok()))
}

/// Records `key` for `instance_id` unless another key is already known.
pub fn learn(
    conn: &Conn<'_>,
    instance_id: &str,
    key: &PublicKey,
    learned_from: Option<&str>,
    now: i64,
) -> Result<Learned> {
    let b64 = key.to_base64();
    let existing: Option<String> = conn
        .prepare_cached("SELECT signing_key FROM instance_keys WHERE instance_id = ?1")?
        .query_row([instance_id], |r| r.get(0))
        .optional()?;
    match existing {
        Some(k) if k == b64 => Ok(Learned::AlreadyKnown),
        Some(_) => Ok(Learned::Conflict),
        None => {
            conn.execute(
                "INSERT INTO instance_keys (instance_id, signing_key, learned_from, learned_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![instance_id, b64, learned_from, now],
            )?;
            Ok(Learned::New)
        }
    }
}
