//! Agents: local accounts (`is_local = 1`, may hold an API key hash) and snapshots of remote
//! agents (`is_local = 0`, written by the materializer). Follows, admin operations and the
//! instance counters shown by the admin API.
//!
//! Invariants:
//! - a local agent's name is unique among local agents (partial UNIQUE index);
//! - only the SHA-256 hash of an API key is stored; lookups by hash use its UNIQUE index;
//! - admin operations act on local agents only; remote snapshots belong to their origin.

use crate::engine::{Conn, DbResult, OptionalExtension, Row};
use crate::error::{Result, StoreError};
use crate::params;

/// One row of `agents`. Timestamps are milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    pub id: String,
    pub name: String,
    pub instance_id: String,
    pub is_local: bool,
    pub description: String,
    pub avatar_url: Option<String>,
    /// JSON text, as given at registration or by a profile update.
    pub metadata: Option<String>,
    pub karma: i64,
    pub is_admin: bool,
    /// `verified` | `pending` | `rejected`.
    pub verification_status: String,
    pub account_type: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_seen_at: Option<i64>,
}

impl AgentRow {
    pub fn is_verified(&self) -> bool {
        self.verification_status == "verified"
    }
}

const COLUMNS: &str = "a.id, a.name, a.instance_id, a.is_local, a.description, a.avatar_url, \
     a.metadata, a.karma, a.is_admin, a.verification_status, a.account_type, a.created_at, \
     a.updated_at, a.last_seen_at";

fn from_row(r: &Row<'_>) -> DbResult<AgentRow> {
    Ok(AgentRow {
        id: r.get(0)?,
        name: r.get(1)?,
        instance_id: r.get(2)?,
        is_local: r.get(3)?,
        description: r.get(4)?,
        avatar_url: r.get(5)?,
        metadata: r.get(6)?,
        karma: r.get(7)?,
        is_admin: r.get(8)?,
        verification_status: r.get(9)?,
        account_type: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
        last_seen_at: r.get(13)?,
    })
}

/// A local agent to create.
#[derive(Debug, Clone)]
pub struct NewLocalAgent {
    pub id: String,
    pub name: String,
    pub instance_id: String,
    /// SHA-256 hex of the API key; `None` for agents that cannot log in with a key.
    pub api_key_hash: Option<String>,
    pub description: String,
    pub metadata: Option<String>,
    pub is_admin: bool,
}

/// Creates a local agent. A taken local name is [`StoreError::Conflict`].
pub fn create_local(conn: &Conn<'_>, a: &NewLocalAgent, now: i64) -> Result<AgentRow> {
    // Checked first (writes are serialized, so this is race-free): on PostgreSQL a failed
    // statement would abort the caller's whole transaction.
    let taken = conn
        .prepare_cached("SELECT 1 FROM agents WHERE name = ?1 AND is_local = 1")?
        .exists([&a.name])?;
    if taken {
        return Err(StoreError::Conflict(format!(
            "agent name {:?} is already taken",
            a.name
        )));
    }
    let res = conn.execute(
        "INSERT INTO agents (id, name, instance_id, is_local, api_key_hash, description, metadata,
                             is_admin, verification_status, created_at, updated_at)
         VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, 'verified', ?8, ?8)",
        params![
            a.id,
            a.name,
            a.instance_id,
            a.api_key_hash,
            a.description,
            a.metadata,
            a.is_admin,
            now
        ],
    );
    match res {
        Ok(_) => {}
        Err(e) if e.is_unique_violation() => {
            return Err(StoreError::Conflict(format!(
                "agent name {:?} is already taken",
                a.name
            )));
        }
        Err(e) => return Err(e.into()),
    }
    get_by_id(conn, &a.id)?.ok_or(StoreError::NotFound("agent"))
}

pub fn get_by_id(conn: &Conn<'_>, id: &str) -> Result<Option<AgentRow>> {
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("SELECT {COLUMNS} FROM agents a WHERE a.id = ?1"));
    Ok(conn
        .prepare_cached(&SQL)?
        .query_row([id], from_row)
        .optional()?)
}

/// The agent called `name`: the local one if there is one, else the most recently updated
/// remote snapshot of that name.
pub fn get_by_name(conn: &Conn<'_>, name: &str) -> Result<Option<AgentRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM agents a WHERE a.name = ?1
             ORDER BY a.is_local DESC, a.updated_at DESC, a.id LIMIT 1"
        ))?
        .query_row([name], from_row)
        .optional()?)
}

/// The local agent whose API key hashes to `hash`.
pub fn get_by_api_key_hash(conn: &Conn<'_>, hash: &str) -> Result<Option<AgentRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM agents a WHERE a.api_key_hash = ?1 AND a.is_local = 1"
        ))?
        .query_row([hash], from_row)
        .optional()?)
}

/// A profile update; `None` leaves a field unchanged, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    pub description: Option<String>,
    pub avatar_url: Option<Option<String>>,
    pub metadata: Option<Option<String>>,
}

/// Updates a local agent's profile and returns the new row.
pub fn update_profile(conn: &Conn<'_>, id: &str, u: &ProfileUpdate, now: i64) -> Result<AgentRow> {
    let n = conn.execute(
        "UPDATE agents SET
           description = COALESCE(?2, description),
           avatar_url = CASE WHEN ?3 THEN ?4 ELSE avatar_url END,
           metadata = CASE WHEN ?5 THEN ?6 ELSE metadata END,
           updated_at = ?7
         WHERE id = ?1 AND is_local = 1",
        params![
            id,
            u.description,
            u.avatar_url.is_some(),
            u.avatar_url.clone().flatten(),
            u.metadata.is_some(),
            u.metadata.clone().flatten(),
            now
        ],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound("agent"));
    }
    get_by_id(conn, id)?.ok_or(StoreError::NotFound("agent"))
}

/// Records activity. Cheap; callers throttle it.
pub fn touch_last_seen(conn: &Conn<'_>, id: &str, now: i64) -> Result<()> {
    conn.prepare_cached("UPDATE agents SET last_seen_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

/// Follows `following` as `follower`. Returns false if already following.
pub fn follow(conn: &Conn<'_>, follower: &str, following: &str, now: i64) -> Result<bool> {
    let n = conn.execute(
        "INSERT INTO follows (follower_id, following_id, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
        params![follower, following, now],
    )?;
    Ok(n == 1)
}

/// Stops following. Returns false if `follower` was not following `following`.
pub fn unfollow(conn: &Conn<'_>, follower: &str, following: &str) -> Result<bool> {
    let n = conn.execute(
        "DELETE FROM follows WHERE follower_id = ?1 AND following_id = ?2",
        params![follower, following],
    )?;
    Ok(n == 1)
}

pub fn is_following(conn: &Conn<'_>, follower: &str, following: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM follows WHERE follower_id = ?1 AND following_id = ?2")?
        .query_row(params![follower, following], |_| Ok(()))
        .optional()?
        .is_some())
}

/// `(follower_count, following_count)` of an agent.
pub fn follow_counts(conn: &Conn<'_>, id: &str) -> Result<(i64, i64)> {
    let followers: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM follows WHERE following_id = ?1")?
        .query_row([id], |r| r.get(0))?;
    let following: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM follows WHERE follower_id = ?1")?
        .query_row([id], |r| r.get(0))?;
    Ok((followers, following))
}

/// A page of agents and the total number of rows matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub data: Vec<AgentRow>,
    pub total: i64,
}

/// Agents following `id`, newest follow first.
pub fn followers(conn: &Conn<'_>, id: &str, limit: i64, offset: i64) -> Result<Page> {
    let data = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM follows f JOIN agents a ON a.id = f.follower_id
             WHERE f.following_id = ?1
             ORDER BY f.created_at DESC, a.id LIMIT ?2 OFFSET ?3"
        ))?
        .query_map(params![id, limit, offset], from_row)?
        .collect::<DbResult<Vec<_>>>()?;
    let total: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM follows f JOIN agents a ON a.id = f.follower_id
             WHERE f.following_id = ?1",
        )?
        .query_row([id], |r| r.get(0))?;
    Ok(Page { data, total })
}

/// Agents `id` follows, newest follow first.
pub fn following(conn: &Conn<'_>, id: &str, limit: i64, offset: i64) -> Result<Page> {
    let data = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM follows f JOIN agents a ON a.id = f.following_id
             WHERE f.follower_id = ?1
             ORDER BY f.created_at DESC, a.id LIMIT ?2 OFFSET ?3"
        ))?
        .query_map(params![id, limit, offset], from_row)?
        .collect::<DbResult<Vec<_>>>()?;
    let total: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM follows f JOIN agents a ON a.id = f.following_id
             WHERE f.follower_id = ?1",
        )?
        .query_row([id], |r| r.get(0))?;
    Ok(Page { data, total })
}

/// Local agents for the admin list, oldest first.
pub fn admin_list(conn: &Conn<'_>, limit: i64, offset: i64, verified_only: bool) -> Result<Page> {
    let data = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM agents a
             WHERE a.is_local = 1 AND (?1 = 0 OR a.verification_status = 'verified')
             ORDER BY a.created_at, a.id LIMIT ?2 OFFSET ?3"
        ))?
        .query_map(params![verified_only, limit, offset], from_row)?
        .collect::<DbResult<Vec<_>>>()?;
    let total: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM agents a
             WHERE a.is_local = 1 AND (?1 = 0 OR a.verification_status = 'verified')",
        )?
        .query_row([verified_only], |r| r.get(0))?;
    Ok(Page { data, total })
}

/// Sets a local agent's verification status (`verified`, `pending`, `rejected`).
pub fn set_verification(conn: &Conn<'_>, id: &str, status: &str, now: i64) -> Result<()> {
    if !matches!(status, "verified" | "pending" | "rejected") {
        return Err(StoreError::Invalid(format!(
            "unknown verification status {status:?}"
        )));
    }
    let n = conn.execute(
        "UPDATE agents SET verification_status = ?2, updated_at = ?3
         WHERE id = ?1 AND is_local = 1",
        params![id, status, now],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound("agent"));
    }
    Ok(())
}

/// Grants or revokes admin rights of a local agent.
pub fn set_admin(conn: &Conn<'_>, id: &str, is_admin: bool, now: i64) -> Result<()> {
    let n = conn.execute(
        "UPDATE agents SET is_admin = ?2, updated_at = ?3 WHERE id = ?1 AND is_local = 1",
        params![id, is_admin, now],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound("agent"));
    }
    Ok(())
}

/// Deletes a local agent, its follow edges and its ingest keys. Content it wrote stays (it is part of hive
/// logs shared with peers).
pub fn delete_local(conn: &Conn<'_>, id: &str) -> Result<()> {
    let n = conn.execute("DELETE FROM agents WHERE id = ?1 AND is_local = 1", [id])?;
    if n == 0 {
        return Err(StoreError::NotFound("agent"));
    }
    conn.execute(
        "DELETE FROM follows WHERE follower_id = ?1 OR following_id = ?1",
        [id],
    )?;
    crate::ingest_keys::delete_for_agent(conn, id)?;
    Ok(())
}

/// Instance-wide counts for the admin API and the discovery document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Local agents.
    pub agents_total: i64,
    /// Local agents with `verification_status = 'verified'`.
    pub agents_verified: i64,
    /// Visible (created, not deleted) hives.
    pub hives_total: i64,
    /// Posts not deleted.
    pub posts_total: i64,
}

pub fn stats(conn: &Conn<'_>) -> Result<Stats> {
    let one =
        |sql: &str| -> Result<i64> { Ok(conn.prepare_cached(sql)?.query_row((), |r| r.get(0))?) };
    Ok(Stats {
        agents_total: one("SELECT COUNT(*) FROM agents WHERE is_local = 1")?,
        agents_verified: one(
            "SELECT COUNT(*) FROM agents WHERE is_local = 1 AND verification_status = 'verified'",
        )?,
        hives_total: one(
            "SELECT COUNT(*) FROM hives WHERE created_event_id IS NOT NULL AND deleted = 0",
        )?,
        posts_total: one("SELECT COUNT(*) FROM posts WHERE deleted = 0")?,
    })
}
