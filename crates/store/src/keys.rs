//! Signing keys of instances, as learned from handshakes and rosters.
//!
//! Invariant: the first key learned for an instance id is kept; a different key claimed
//! later is refused (and logged by the caller), never silently swapped. Only keys
//! [`PublicKey::from_base64`] accepts are kept: a stored key it refuses (a weak key learned
//! by a version that did not check) is forgotten at start ([`forget_invalid`]), so it pins
//! nothing.

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

/// Forgets every stored key that [`PublicKey::from_base64`] refuses (small-order or
/// non-canonical keys learned before they were checked): such a key verifies nothing, and
/// while it is stored the instance's real key would be refused as a conflict. Returns the
/// instance ids whose key was forgotten.
pub fn forget_invalid(conn: &Conn<'_>) -> Result<Vec<String>> {
    let rows: Vec<(String, String)> = conn
        .prepare("SELECT instance_id, signing_key FROM instance_keys")?
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<crate::engine::DbResult<_>>()?;
    let mut forgotten = Vec::new();
    for (instance_id, key) in rows {
        if PublicKey::from_base64(&key).is_err() {
            conn.execute(
                "DELETE FROM instance_keys WHERE instance_id = ?1",
                [&instance_id],
            )?;
            forgotten.push(instance_id);
        }
    }
    Ok(forgotten)
}
