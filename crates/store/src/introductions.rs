//! The introductions this instance holds *for itself*: statements by a MAP hub or by a peer
//! sharing a hive that vouch for this instance, presented in handshakes with instances that
//! did not configure it (docs/PROTOCOL-sync.md, "Introductions").
//!
//! Invariants: one row per (kind, issuer), a newer statement (later `issued_at`) replaces an
//! older one, never the reverse; only statements whose subject is this instance are stored
//! (the caller checks); an expired one is never handed out. Checking introductions *others*
//! present is the sync crate's business (`openhive_sync::admission`).

use crate::engine::{Conn, DbResult, OptionalExtension};
use crate::error::Result;
use crate::params;
use openhive_core::{Introduction, IntroductionKind};

/// Stores `intro` unless one at least as new from the same issuer is already held.
/// Returns whether it was stored.
pub fn put_own(conn: &Conn<'_>, intro: &Introduction, now: i64) -> Result<bool> {
    let kind = intro.kind.as_str();
    let held: Option<String> = conn
        .prepare_cached("SELECT body FROM own_introductions WHERE kind = ?1 AND issuer = ?2")?
        .query_row(params![kind, intro.issuer], |r| r.get(0))
        .optional()?;
    if let Some(old) = held.and_then(|b| serde_json::from_str::<Introduction>(&b).ok())
        && old.issued_at >= intro.issued_at
    {
        return Ok(false);
    }
    let body = serde_json::to_string(intro)
        .map_err(|e| crate::error::StoreError::Corrupt(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO own_introductions (kind, issuer, body, expires_at, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (kind, issuer) DO UPDATE SET body = ?3, expires_at = ?4, received_at = ?5",
    )?
    .execute(params![kind, intro.issuer, body, intro.expires_at, now])?;
    Ok(true)
}

/// Every unexpired introduction held, newest expiry first.
pub fn own_valid(conn: &Conn<'_>, now: i64) -> Result<Vec<Introduction>> {
    let bodies: Vec<String> = conn
        .prepare_cached(
            "SELECT body FROM own_introductions WHERE expires_at >= ?1
             ORDER BY expires_at DESC, issuer",
        )?
        .query_map([now], |r| r.get(0))?
        .collect::<DbResult<_>>()?;
    Ok(bodies
        .iter()
        .filter_map(|b| serde_json::from_str(b).ok())
        .collect())
}

/// The introduction to present for `hive`: an unexpired one covering it, a hub's first
/// (manual > hub > gossip), then the one valid longest.
pub fn own_for(conn: &Conn<'_>, hive: &str, now: i64) -> Result<Option<Introduction>> {
    let mut all: Vec<Introduction> = own_valid(conn, now)?
        .into_iter()
        .filter(|i| i.covers(hive))
        .collect();
    all.sort_by_key(|i| {
        (
            i.kind != IntroductionKind::Hub,
            std::cmp::Reverse(i.expires_at),
        )
    });
    Ok(all.into_iter().next())
}

/// Forgets the introductions of `kind` by `issuer` (e.g. a hub we no longer use).
pub fn forget_own(conn: &Conn<'_>, kind: IntroductionKind, issuer: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM own_introductions WHERE kind = ?1 AND issuer = ?2")?
        .execute(params![kind.as_str(), issuer])?
        > 0)
}
