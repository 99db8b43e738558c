//! Signing keys of instances, as learned from handshakes and rosters, and their rotations.
//!
//! Invariants:
//! - the first key learned for an instance id is kept (`instance_keys`, the chain's anchor);
//!   a different key claimed later is refused (and logged by the caller), never silently
//!   swapped, unless a chain of rotation statements leads to it from the anchor;
//! - a rotation statement is stored only if both its signatures verify; the first statement
//!   rotating a given old key wins (a second one, a fork, is refused and counted as a key
//!   conflict); statements for instances whose first key is not known yet are kept (at most
//!   [`MAX_UNANCHORED`]) so that a key learned later can be traced back to its first key;
//! - an event is verified with the one key of its origin's chain valid at its `origin_ts`
//!   ([`KeyChain::verify_event`]);
//! - only keys [`PublicKey::from_base64`] accepts are kept: a stored key it refuses (a weak
//!   key learned by a version that did not check) is forgotten at start ([`forget_invalid`]).

use crate::engine::{Conn, DbResult, OptionalExtension};
use crate::error::Result;
use crate::params;
use openhive_core::rotation::{MAX_CHAIN, RotationError};
use openhive_core::{KeyChain, PublicKey, RotationStatement};

/// At most this many statements are kept for instances whose first key is unknown.
pub const MAX_UNANCHORED: i64 = 1000;

/// The result of offering a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    New,
    AlreadyKnown,
    Conflict,
}

/// The first key learned for `instance_id` (the anchor of its chain).
fn anchor(conn: &Conn<'_>, instance_id: &str) -> Result<Option<PublicKey>> {
    let s: Option<String> = conn
        .prepare_cached("SELECT signing_key FROM instance_keys WHERE instance_id = ?1")?
        .query_row([instance_id], |r| r.get(0))
        .optional()?;
    Ok(s.and_then(|s| PublicKey::from_base64(&s).ok()))
}

/// Every stored statement of `instance_id`.
fn stored_statements(conn: &Conn<'_>, instance_id: &str) -> Result<Vec<RotationStatement>> {
    Ok(conn
        .prepare_cached(
            "SELECT instance_id, old_key, new_key, rotated_at, old_signature, new_signature
             FROM key_rotations WHERE instance_id = ?1 ORDER BY rotated_at",
        )?
        .query_map([instance_id], |r| {
            Ok(RotationStatement {
                instance_id: r.get(0)?,
                old_key: r.get(1)?,
                new_key: r.get(2)?,
                at: r.get(3)?,
                old_signature: r.get(4)?,
                new_signature: r.get(5)?,
            })
        })?
        .collect::<DbResult<_>>()?)
}

/// The key chain of `instance_id` (its first key, then its rotations), if a key is known.
pub fn chain(conn: &Conn<'_>, instance_id: &str) -> Result<Option<KeyChain>> {
    let Some(a) = anchor(conn, instance_id)? else {
        return Ok(None);
    };
    let st = stored_statements(conn, instance_id)?;
    Ok(Some(KeyChain::build(a, &st)))
}

/// The current key of `instance_id` (the end of its chain).
pub fn get(conn: &Conn<'_>, instance_id: &str) -> Result<Option<PublicKey>> {
    Ok(chain(conn, instance_id)?.map(|c| c.current()))
}

/// The statements of `instance_id`'s chain, oldest first (what a peer needs to verify all of
/// its events, given its first key).
pub fn chain_statements(conn: &Conn<'_>, instance_id: &str) -> Result<Vec<RotationStatement>> {
    let Some(a) = anchor(conn, instance_id)? else {
        return Ok(Vec::new());
    };
    let all = stored_statements(conn, instance_id)?;
    let chain = KeyChain::build(a, &all);
    // The statements the chain followed: each one's new key is in the chain and its old key
    // is the key before it.
    let mut out = Vec::new();
    let mut cur = a.to_base64();
    for _ in 1..chain.len() {
        let Some(s) = all.iter().find(|s| {
            s.old_key == cur && PublicKey::from_base64(&s.new_key).is_ok_and(|k| chain.contains(&k))
        }) else {
            break;
        };
        cur = s.new_key.clone();
        out.push(s.clone());
    }
    Ok(out)
}

/// The chain statements of each of `instance_ids` that has any (deduplicated input).
pub fn statements_for<'a>(
    conn: &Conn<'_>,
    instance_ids: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<RotationStatement>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for id in instance_ids {
        if !seen.insert(id) {
            continue;
        }
        // Cheap test first: most instances never rotated.
        let n: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM key_rotations WHERE instance_id = ?1")?
            .query_row([id], |r| r.get(0))?;
        if n > 0 {
            out.extend(chain_statements(conn, id)?);
        }
    }
    Ok(out)
}

/// Records `key` for `instance_id`: for an unknown instance its first key is the root of the
/// stored statements leading to `key` (or `key` itself); for a known one, a key of its chain
/// is already known, any other key is a conflict.
pub fn learn(
    conn: &Conn<'_>,
    instance_id: &str,
    key: &PublicKey,
    learned_from: Option<&str>,
    now: i64,
) -> Result<Learned> {
    if let Some(chain) = chain(conn, instance_id)? {
        return Ok(if chain.contains(key) {
            Learned::AlreadyKnown
        } else {
            Learned::Conflict
        });
    }
    // A stored key that is no key (until `forget_invalid` runs) still pins the instance.
    let stored: Option<String> = conn
        .prepare_cached("SELECT signing_key FROM instance_keys WHERE instance_id = ?1")?
        .query_row([instance_id], |r| r.get(0))
        .optional()?;
    if stored.is_some() {
        return Ok(Learned::Conflict);
    }
    // Walk back from `key` through the statements handing over to it.
    let all = stored_statements(conn, instance_id)?;
    let mut root = key.to_base64();
    let mut at = i64::MAX;
    for _ in 0..MAX_CHAIN {
        match all.iter().find(|s| s.new_key == root && s.at < at) {
            Some(s) => {
                root = s.old_key.clone();
                at = s.at;
            }
            None => break,
        }
    }
    conn.execute(
        "INSERT INTO instance_keys (instance_id, signing_key, learned_from, learned_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![instance_id, root, learned_from, now],
    )?;
    // The chain from that root must reach the key we were given (it does unless the walk
    // met a statement that the forward rule skips, e.g. a cycle): otherwise anchor the key.
    if chain(conn, instance_id)?.is_some_and(|c| !c.contains(key)) {
        conn.execute(
            "UPDATE instance_keys SET signing_key = ?2 WHERE instance_id = ?1",
            params![instance_id, key.to_base64()],
        )?;
    }
    Ok(Learned::New)
}

/// What [`accept_rotation`] did with a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// It continues the instance's chain: the instance's current key changed.
    Rotated,
    /// Already stored.
    Known,
    /// Stored, but the instance's first key is not known yet (used when it is).
    Unanchored,
    /// Refused: bad signatures, a fork (another statement already rotated that old key),
    /// a key the chain does not end with, a time not after the current key's start, or no
    /// room for statements of unknown instances.
    Refused(String),
}

/// Checks and stores a rotation statement (inside the caller's write transaction).
pub fn accept_rotation(
    conn: &Conn<'_>,
    s: &RotationStatement,
    learned_from: Option<&str>,
    now: i64,
) -> Result<Rotation> {
    if let Err(e) = s.verify() {
        return Ok(Rotation::Refused(e.to_string()));
    }
    let existing: Option<String> = conn
        .prepare_cached(
            "SELECT new_key FROM key_rotations WHERE instance_id = ?1 AND old_key = ?2",
        )?
        .query_row([&s.instance_id, &s.old_key], |r| r.get(0))
        .optional()?;
    match existing {
        Some(k) if k == s.new_key => return Ok(Rotation::Known),
        Some(_) => {
            return Ok(Rotation::Refused(format!(
                "another rotation of this key of {} is already known (first rotation wins)",
                s.instance_id
            )));
        }
        None => {}
    }
    let anchored = match chain(conn, &s.instance_id)? {
        Some(c) => {
            let old = PublicKey::from_base64(&s.old_key).map_err(|_| {
                crate::StoreError::Invalid(RotationError::Malformed("old_key").to_string())
            })?;
            if c.current() != old {
                return Ok(Rotation::Refused(format!(
                    "the rotation does not start from the current key of {}",
                    s.instance_id
                )));
            }
            if c.current_since().is_some_and(|from| s.at <= from) {
                return Ok(Rotation::Refused(
                    "the rotation is not later than the previous one".into(),
                ));
            }
            if c.len() > MAX_CHAIN {
                return Ok(Rotation::Refused("too many rotations".into()));
            }
            let new = PublicKey::from_base64(&s.new_key).map_err(|_| {
                crate::StoreError::Invalid(RotationError::Malformed("new_key").to_string())
            })?;
            if c.contains(&new) {
                return Ok(Rotation::Refused(
                    "the new key is an earlier key of the instance".into(),
                ));
            }
            true
        }
        None => {
            let n: i64 = conn.query_row(
                "SELECT COUNT(*) FROM key_rotations r WHERE NOT EXISTS
                   (SELECT 1 FROM instance_keys k WHERE k.instance_id = r.instance_id)",
                (),
                |r| r.get(0),
            )?;
            if n >= MAX_UNANCHORED {
                return Ok(Rotation::Refused(
                    "too many rotation statements of unknown instances".into(),
                ));
            }
            false
        }
    };
    conn.execute(
        "INSERT INTO key_rotations (instance_id, old_key, new_key, rotated_at, old_signature,
           new_signature, learned_from, learned_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            s.instance_id,
            s.old_key,
            s.new_key,
            s.at,
            s.old_signature,
            s.new_signature,
            learned_from,
            now
        ],
    )?;
    Ok(if anchored {
        Rotation::Rotated
    } else {
        Rotation::Unanchored
    })
}

/// The latest rotation time of `instance_id` (our own, at start: our clock never goes back
/// before it).
pub fn last_rotation_at(conn: &Conn<'_>, instance_id: &str) -> Result<Option<i64>> {
    Ok(chain(conn, instance_id)?.and_then(|c| c.current_since()))
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
