//! Admin-issued scoped API keys (`/api/v1/admin/ingest-keys`, the reference's "ingest
//! keys"): each acts as one local agent, limited to a set of scopes.
//!
//! Invariants:
//! - only the SHA-256 hash of a key is stored (plus a short prefix to recognize it in
//!   listings); lookups by hash use its UNIQUE index;
//! - a revoked or expired key authenticates nothing; deleting an agent deletes its keys.

use crate::engine::{Conn, DbResult, OptionalExtension, Row};
use crate::error::{Result, StoreError};
use crate::params;

/// One row of `ingest_keys`. Timestamps are milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestKeyRow {
    pub id: String,
    /// The first characters of the key (never enough to use it).
    pub key_prefix: String,
    pub label: String,
    pub agent_id: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl IngestKeyRow {
    /// Neither revoked nor expired at `now`.
    pub fn is_usable(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| now < t)
    }
}

/// A key to store (`key_hash` = `ids::hash_secret` of the key).
#[derive(Debug, Clone)]
pub struct NewIngestKey {
    pub id: String,
    pub key_hash: String,
    pub key_prefix: String,
    pub label: String,
    pub agent_id: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<i64>,
}

const COLUMNS: &str = "id, key_prefix, label, agent_id, scopes, created_at, expires_at, revoked_at";

fn from_row(r: &Row<'_>) -> DbResult<IngestKeyRow> {
    let scopes: String = r.get(4)?;
    Ok(IngestKeyRow {
        id: r.get(0)?,
        key_prefix: r.get(1)?,
        label: r.get(2)?,
        agent_id: r.get(3)?,
        scopes: scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
        revoked_at: r.get(7)?,
    })
}

/// Stores a key. Scope names must not contain `,` (the caller checks them against its
/// closed list).
pub fn create(conn: &Conn<'_>, k: &NewIngestKey, now: i64) -> Result<IngestKeyRow> {
    if k.scopes.iter().any(|s| s.contains(',') || s.is_empty()) {
        return Err(StoreError::Invalid("invalid scope name".into()));
    }
    conn.execute(
        "INSERT INTO ingest_keys (id, key_hash, key_prefix, label, agent_id, scopes, created_at,
                                  expires_at, revoked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)",
        params![
            k.id,
            k.key_hash,
            k.key_prefix,
            k.label,
            k.agent_id,
            k.scopes.join(","),
            now,
            k.expires_at
        ],
    )?;
    get(conn, &k.id)?.ok_or(StoreError::NotFound("ingest key"))
}

pub fn get(conn: &Conn<'_>, id: &str) -> Result<Option<IngestKeyRow>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM ingest_keys WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

/// The key whose hash is `hash` (usable or not: the caller decides).
pub fn by_hash(conn: &Conn<'_>, hash: &str) -> Result<Option<IngestKeyRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM ingest_keys WHERE key_hash = ?1"
        ))?
        .query_row([hash], from_row)
        .optional()?)
}

/// Every key, newest first.
pub fn list(conn: &Conn<'_>) -> Result<Vec<IngestKeyRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM ingest_keys ORDER BY created_at DESC, id DESC"
        ))?
        .query_map((), from_row)?
        .collect::<DbResult<_>>()?)
}

/// Revokes a key (idempotent: the first revocation time stays). False if there is no such
/// key.
pub fn revoke(conn: &Conn<'_>, id: &str, now: i64) -> Result<bool> {
    if get(conn, id)?.is_none() {
        return Ok(false);
    }
    conn.execute(
        "UPDATE ingest_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )?;
    Ok(true)
}

/// Deletes a key. False if there was none.
pub fn delete(conn: &Conn<'_>, id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM ingest_keys WHERE id = ?1", [id])? > 0)
}

/// Deletes every key of an agent.
pub fn delete_for_agent(conn: &Conn<'_>, agent_id: &str) -> Result<()> {
    conn.execute("DELETE FROM ingest_keys WHERE agent_id = ?1", [agent_id])?;
    Ok(())
}
