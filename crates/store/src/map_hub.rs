//! The MAP hub's registry (docs/PROTOCOL-sync.md, "MAP hub"): swarms (instances registered
//! with this hub), the hive *names* each advertises, preauth keys, and the join/leave/status
//! events swarms follow; plus, on the client side, this instance's own registration with a
//! hub (`hub_registration`).
//!
//! Invariants:
//! - the hub never stores hive content: a hive here is a name a swarm advertised, nothing
//!   more (no row of `hives`, no log);
//! - preauth keys and swarm tokens are stored only as SHA-256 hashes; a preauth key is
//!   spent (its `uses_left` decremented) in the transaction that registers the swarm, so a
//!   refused registration spends nothing and two registrations never share the last use;
//! - one swarm per instance id and per sync endpoint;
//! - events get gap-free increasing ids in commit order (one writer), so a follower's
//!   `since` never skips one; the swarm token held by the client side is sealed like peer
//!   tokens ([`crate::context`]).

use crate::engine::{Conn, DbResult, OptionalExtension, Row};
use crate::error::{Result, StoreError};
use crate::params;

/// Swarm status values.
pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

/// Event kinds.
pub const JOINED: &str = "swarm_joined_hive";
pub const LEFT: &str = "swarm_left_hive";
pub const SWARM_ONLINE: &str = "swarm_online";
pub const SWARM_OFFLINE: &str = "swarm_offline";
pub const SWARM_UPDATED: &str = "swarm_updated";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub instance_id: String,
    pub signing_key: String,
    pub sync_endpoint: String,
    pub map_endpoint: Option<String>,
    /// JSON object, as registered (kept whole: `hive_sync` included).
    pub capabilities: String,
    pub status: String,
    pub last_seen_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a registration stores.
#[derive(Debug, Clone)]
pub struct NewSwarm {
    pub name: String,
    pub description: String,
    pub instance_id: String,
    pub signing_key: String,
    pub sync_endpoint: String,
    pub map_endpoint: Option<String>,
    pub capabilities: String,
    pub token_hash: String,
}

const SWARM_COLUMNS: &str = "id, name, description, instance_id, signing_key, sync_endpoint, \
     map_endpoint, capabilities, status, last_seen_at, created_at, updated_at";

fn swarm_row(r: &Row<'_>) -> DbResult<SwarmRow> {
    Ok(SwarmRow {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        instance_id: r.get(3)?,
        signing_key: r.get(4)?,
        sync_endpoint: r.get(5)?,
        map_endpoint: r.get(6)?,
        capabilities: r.get(7)?,
        status: r.get(8)?,
        last_seen_at: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    )
}

// ── Preauth keys ────────────────────────────────────────────────────────────────────────

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreauthKeyRow {
    pub id: String,
    pub uses_left: i64,
    pub expires_at: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

fn preauth_row(r: &Row<'_>) -> DbResult<PreauthKeyRow> {
    Ok(PreauthKeyRow {
        id: r.get(0)?,
        uses_left: r.get(1)?,
        expires_at: r.get(2)?,
        created_at: r.get(3)?,
        last_used_at: r.get(4)?,
    })
}

/// Stores a preauth key by its hash.
pub fn create_preauth_key(
    conn: &Conn<'_>,
    key_hash: &str,
    uses: i64,
    expires_at: i64,
    now: i64,
) -> Result<PreauthKeyRow> {
    let id = new_id("pak");
    conn.execute(
        "INSERT INTO map_preauth_keys (id, key_hash, uses_left, expires_at, created_at, last_used_at)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
        params![id, key_hash, uses, expires_at, now],
    )?;
    Ok(PreauthKeyRow {
        id,
        uses_left: uses,
        expires_at,
        created_at: now,
        last_used_at: None,
    })
}

/// Every preauth key (no hashes), newest first.
pub fn list_preauth_keys(conn: &Conn<'_>) -> Result<Vec<PreauthKeyRow>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, uses_left, expires_at, created_at, last_used_at FROM map_preauth_keys
             ORDER BY created_at DESC, id DESC",
        )?
        .query_map((), preauth_row)?
        .collect::<DbResult<_>>()?)
}

/// Why a preauth key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreauthRefusal {
    Unknown,
    UsedUp,
    Expired,
}

impl PreauthRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            PreauthRefusal::Unknown => "unknown preauth key",
            PreauthRefusal::UsedUp => "preauth key has no uses left",
            PreauthRefusal::Expired => "preauth key has expired",
        }
    }
}

/// Spends one use of the key whose hash is `key_hash`. Call inside the transaction that
/// registers the swarm.
pub fn spend_preauth_key(
    conn: &Conn<'_>,
    key_hash: &str,
    now: i64,
) -> Result<std::result::Result<String, PreauthRefusal>> {
    let row = conn
        .prepare_cached(
            "SELECT id, uses_left, expires_at, created_at, last_used_at FROM map_preauth_keys
             WHERE key_hash = ?1",
        )?
        .query_row([key_hash], preauth_row)
        .optional()?;
    let Some(k) = row else {
        return Ok(Err(PreauthRefusal::Unknown));
    };
    if k.expires_at <= now {
        return Ok(Err(PreauthRefusal::Expired));
    }
    if k.uses_left <= 0 {
        return Ok(Err(PreauthRefusal::UsedUp));
    }
    conn.execute(
        "UPDATE map_preauth_keys SET uses_left = uses_left - 1, last_used_at = ?2 WHERE id = ?1",
        params![k.id, now],
    )?;
    Ok(Ok(k.id))
}

// ── Swarms ──────────────────────────────────────────────────────────────────────────────

pub fn swarm(conn: &Conn<'_>, id: &str) -> Result<Option<SwarmRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SWARM_COLUMNS} FROM map_swarms WHERE id = ?1"
        ))?
        .query_row([id], swarm_row)
        .optional()?)
}

pub fn swarm_by_instance(conn: &Conn<'_>, instance_id: &str) -> Result<Option<SwarmRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SWARM_COLUMNS} FROM map_swarms WHERE instance_id = ?1"
        ))?
        .query_row([instance_id], swarm_row)
        .optional()?)
}

fn swarm_by_endpoint(conn: &Conn<'_>, endpoint: &str) -> Result<Option<SwarmRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SWARM_COLUMNS} FROM map_swarms WHERE sync_endpoint = ?1"
        ))?
        .query_row([endpoint], swarm_row)
        .optional()?)
}

/// The swarm whose token hashes to `token_hash`.
pub fn swarm_by_token(conn: &Conn<'_>, token_hash: &str) -> Result<Option<SwarmRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SWARM_COLUMNS} FROM map_swarms WHERE token_hash = ?1"
        ))?
        .query_row([token_hash], swarm_row)
        .optional()?)
}

/// Registers a swarm, or re-registers the instance's existing one (same id, new token,
/// new details; its hives stay). Another instance's endpoint is a conflict. Returns the row
/// and whether it was created.
pub fn register(conn: &Conn<'_>, s: &NewSwarm, now: i64) -> Result<(SwarmRow, bool)> {
    if let Some(other) = swarm_by_endpoint(conn, &s.sync_endpoint)?
        && other.instance_id != s.instance_id
    {
        return Err(StoreError::Conflict(
            "another swarm is registered with this sync_endpoint".into(),
        ));
    }
    if let Some(old) = swarm_by_instance(conn, &s.instance_id)? {
        if old.signing_key != s.signing_key {
            return Err(StoreError::Conflict(
                "this instance id is registered with another signing key".into(),
            ));
        }
        conn.execute(
            "UPDATE map_swarms SET name = ?2, description = ?3, sync_endpoint = ?4,
               map_endpoint = ?5, capabilities = ?6, token_hash = ?7, status = 'online',
               last_seen_at = ?8, updated_at = ?8 WHERE id = ?1",
            params![
                old.id,
                s.name,
                s.description,
                s.sync_endpoint,
                s.map_endpoint,
                s.capabilities,
                s.token_hash,
                now
            ],
        )?;
        if old.sync_endpoint != s.sync_endpoint || old.status != ONLINE {
            let kind = if old.status != ONLINE {
                SWARM_ONLINE
            } else {
                SWARM_UPDATED
            };
            push_event(conn, kind, &old.id, None, now)?;
        }
        let row = swarm(conn, &old.id)?.ok_or(StoreError::NotFound("swarm"))?;
        return Ok((row, false));
    }
    let id = new_id("swarm");
    conn.execute(
        "INSERT INTO map_swarms (id, name, description, instance_id, signing_key, sync_endpoint,
           map_endpoint, capabilities, token_hash, status, last_seen_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'online', ?10, ?10, ?10)",
        params![
            id,
            s.name,
            s.description,
            s.instance_id,
            s.signing_key,
            s.sync_endpoint,
            s.map_endpoint,
            s.capabilities,
            s.token_hash,
            now
        ],
    )?;
    let row = swarm(conn, &id)?.ok_or(StoreError::NotFound("swarm"))?;
    Ok((row, true))
}

/// What an update may change (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct SwarmPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub sync_endpoint: Option<String>,
    pub map_endpoint: Option<String>,
    pub capabilities: Option<String>,
}

/// Updates a swarm; an endpoint change is an event for its peers. Counts as contact.
pub fn update(conn: &Conn<'_>, id: &str, p: &SwarmPatch, now: i64) -> Result<SwarmRow> {
    let old = swarm(conn, id)?.ok_or(StoreError::NotFound("swarm"))?;
    if let Some(e) = &p.sync_endpoint
        && let Some(other) = swarm_by_endpoint(conn, e)?
        && other.id != old.id
    {
        return Err(StoreError::Conflict(
            "another swarm is registered with this sync_endpoint".into(),
        ));
    }
    conn.execute(
        "UPDATE map_swarms SET name = ?2, description = ?3, sync_endpoint = ?4, map_endpoint = ?5,
           capabilities = ?6, updated_at = ?7 WHERE id = ?1",
        params![
            old.id,
            p.name.as_deref().unwrap_or(&old.name),
            p.description.as_deref().unwrap_or(&old.description),
            p.sync_endpoint.as_deref().unwrap_or(&old.sync_endpoint),
            p.map_endpoint.as_deref().or(old.map_endpoint.as_deref()),
            p.capabilities.as_deref().unwrap_or(&old.capabilities),
            now
        ],
    )?;
    if p.sync_endpoint
        .as_deref()
        .is_some_and(|e| e != old.sync_endpoint)
    {
        push_event(conn, SWARM_UPDATED, &old.id, None, now)?;
    }
    heartbeat(conn, id, now)?;
    swarm(conn, id)?.ok_or(StoreError::NotFound("swarm"))
}

/// Records contact: `online`, `last_seen_at = now`. A swarm coming back from `offline` is
/// an event. Returns false if there is no such swarm.
pub fn heartbeat(conn: &Conn<'_>, id: &str, now: i64) -> Result<bool> {
    let Some(old) = swarm(conn, id)? else {
        return Ok(false);
    };
    conn.execute(
        "UPDATE map_swarms SET status = 'online', last_seen_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    if old.status != ONLINE {
        push_event(conn, SWARM_ONLINE, id, None, now)?;
    }
    Ok(true)
}

/// Marks `offline` every online swarm not seen since `cutoff`; one event each. Returns
/// their ids.
pub fn mark_stale(conn: &Conn<'_>, cutoff: i64, now: i64) -> Result<Vec<String>> {
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM map_swarms WHERE status = 'online' AND last_seen_at < ?1 ORDER BY id",
        )?
        .query_map([cutoff], |r| r.get(0))?
        .collect::<DbResult<_>>()?;
    for id in &ids {
        conn.execute(
            "UPDATE map_swarms SET status = 'offline' WHERE id = ?1",
            [id.as_str()],
        )?;
        push_event(conn, SWARM_OFFLINE, id, None, now)?;
    }
    Ok(ids)
}

/// Every swarm, by name then id.
pub fn list_swarms(conn: &Conn<'_>) -> Result<Vec<SwarmRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SWARM_COLUMNS} FROM map_swarms ORDER BY name, id"
        ))?
        .query_map((), swarm_row)?
        .collect::<DbResult<_>>()?)
}

/// Deletes a swarm and its hives (each a `left` event for the swarms that shared it).
pub fn delete_swarm(conn: &Conn<'_>, id: &str, now: i64) -> Result<bool> {
    for h in hives_of(conn, id)? {
        leave_hive(conn, id, &h, now)?;
    }
    Ok(conn.execute("DELETE FROM map_swarms WHERE id = ?1", [id])? > 0)
}

// ── Hives (names only) ──────────────────────────────────────────────────────────────────

/// The hive names a swarm advertises, sorted.
pub fn hives_of(conn: &Conn<'_>, swarm_id: &str) -> Result<Vec<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT hive_name FROM map_swarm_hives WHERE swarm_id = ?1 ORDER BY hive_name",
        )?
        .query_map([swarm_id], |r| r.get(0))?
        .collect::<DbResult<_>>()?)
}

/// Adds a hive to a swarm's list; a new one is a `joined` event. Returns whether it was new.
pub fn join_hive(conn: &Conn<'_>, swarm_id: &str, hive_name: &str, now: i64) -> Result<bool> {
    let n = conn.execute(
        "INSERT INTO map_swarm_hives (swarm_id, hive_name, joined_at) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
        params![swarm_id, hive_name, now],
    )?;
    if n > 0 {
        push_event(conn, JOINED, swarm_id, Some(hive_name), now)?;
    }
    Ok(n > 0)
}

/// Removes a hive from a swarm's list; a `left` event if it was there.
pub fn leave_hive(conn: &Conn<'_>, swarm_id: &str, hive_name: &str, now: i64) -> Result<bool> {
    let n = conn.execute(
        "DELETE FROM map_swarm_hives WHERE swarm_id = ?1 AND hive_name = ?2",
        params![swarm_id, hive_name],
    )?;
    if n > 0 {
        push_event(conn, LEFT, swarm_id, Some(hive_name), now)?;
    }
    Ok(n > 0)
}

/// A swarm sharing at least one hive with another, and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRow {
    pub swarm: SwarmRow,
    pub shared_hives: Vec<String>,
}

/// Every other swarm sharing a hive with `swarm_id` (offline ones included: the client
/// decides), by name then id.
pub fn peers_of(conn: &Conn<'_>, swarm_id: &str) -> Result<Vec<PeerRow>> {
    let pairs: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT o.swarm_id, o.hive_name FROM map_swarm_hives m
             JOIN map_swarm_hives o ON o.hive_name = m.hive_name AND o.swarm_id <> m.swarm_id
             WHERE m.swarm_id = ?1 ORDER BY o.swarm_id, o.hive_name",
        )?
        .query_map([swarm_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<DbResult<_>>()?;
    let mut out: Vec<PeerRow> = Vec::new();
    for (sid, hive) in pairs {
        match out.last_mut() {
            Some(p) if p.swarm.id == sid => p.shared_hives.push(hive),
            _ => {
                if let Some(s) = swarm(conn, &sid)? {
                    out.push(PeerRow {
                        swarm: s,
                        shared_hives: vec![hive],
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.swarm.name, &a.swarm.id).cmp(&(&b.swarm.name, &b.swarm.id)));
    Ok(out)
}

// ── Events ──────────────────────────────────────────────────────────────────────────────

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub id: i64,
    pub kind: String,
    pub swarm_id: String,
    pub hive_name: Option<String>,
    pub at: i64,
}

fn push_event(
    conn: &Conn<'_>,
    kind: &str,
    swarm_id: &str,
    hive_name: Option<&str>,
    now: i64,
) -> Result<i64> {
    let id = last_event_id(conn)? + 1;
    conn.execute(
        "INSERT INTO map_events (id, kind, swarm_id, hive_name, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, kind, swarm_id, hive_name, now],
    )?;
    Ok(id)
}

/// The id of the newest event (0 if none).
pub fn last_event_id(conn: &Conn<'_>) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM map_events")?
        .query_row((), |r| r.get(0))?)
}

/// Up to `limit` events after `since` that concern `swarm_id`: joins and leaves of the
/// hives it advertises, and status or endpoint changes of swarms sharing a hive with it;
/// never its own. Also returns the last event id scanned (the next `since`).
pub fn events_for(
    conn: &Conn<'_>,
    swarm_id: &str,
    since: i64,
    limit: i64,
) -> Result<(Vec<EventRow>, i64)> {
    let last = last_event_id(conn)?;
    let rows: Vec<EventRow> = conn
        .prepare_cached(
            "SELECT e.id, e.kind, e.swarm_id, e.hive_name, e.at FROM map_events e
             WHERE e.id > ?2 AND e.swarm_id <> ?1 AND (
               e.hive_name IN (SELECT hive_name FROM map_swarm_hives WHERE swarm_id = ?1)
               OR (e.hive_name IS NULL AND EXISTS (
                 SELECT 1 FROM map_swarm_hives a JOIN map_swarm_hives b ON a.hive_name = b.hive_name
                 WHERE a.swarm_id = ?1 AND b.swarm_id = e.swarm_id)))
             ORDER BY e.id LIMIT ?3",
        )?
        .query_map(params![swarm_id, since, limit], |r| {
            Ok(EventRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                swarm_id: r.get(2)?,
                hive_name: r.get(3)?,
                at: r.get(4)?,
            })
        })?
        .collect::<DbResult<_>>()?;
    let newest = rows.last().map_or(since, |e| e.id);
    let next = if rows.len() as i64 >= limit {
        newest
    } else {
        last.max(newest).max(since)
    };
    Ok((rows, next))
}

/// Drops events older than `cutoff` (followers that far behind re-read the peer list).
pub fn prune_events(conn: &Conn<'_>, cutoff: i64) -> Result<usize> {
    // Keep the newest event whatever its age, so ids never go back.
    let last = last_event_id(conn)?;
    Ok(conn.execute(
        "DELETE FROM map_events WHERE at < ?1 AND id < ?2",
        params![cutoff, last],
    )?)
}

// ── Client side: this instance's registration with a hub ────────────────────────────────

/// This instance's registration with the hub at `hub_url`. `token` is in clear here (sealed
/// at rest).
#[derive(Clone, PartialEq, Eq)]
pub struct Registration {
    pub hub_url: String,
    pub swarm_id: String,
    pub token: String,
    pub hub_instance_id: String,
    pub hub_key: String,
    pub registered_at: i64,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("hub_url", &self.hub_url)
            .field("swarm_id", &self.swarm_id)
            .field("hub_instance_id", &self.hub_instance_id)
            .finish_non_exhaustive()
    }
}

/// The registration held for `hub_url`, if any (a token that does not open counts as an
/// empty one: the client registers again).
pub fn registration(conn: &Conn<'_>, hub_url: &str) -> Result<Option<Registration>> {
    let row: Option<(String, String, String, String, i64)> = conn
        .prepare_cached(
            "SELECT swarm_id, token, hub_instance_id, hub_key, registered_at FROM hub_registration
             WHERE hub_url = ?1",
        )?
        .query_row([hub_url], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    Ok(row.map(
        |(swarm_id, token, hub_instance_id, hub_key, registered_at)| {
            let token = crate::sync_state::open_secret(conn, token).unwrap_or_default();
            Registration {
                hub_url: hub_url.to_string(),
                swarm_id,
                token,
                hub_instance_id,
                hub_key,
                registered_at,
            }
        },
    ))
}

/// Stores (or replaces) the registration for its hub URL; the token is sealed.
pub fn put_registration(conn: &Conn<'_>, r: &Registration) -> Result<()> {
    let token = crate::sync_state::seal_secret(conn, &r.token)?;
    conn.execute(
        "INSERT INTO hub_registration (hub_url, swarm_id, token, hub_instance_id, hub_key, registered_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (hub_url) DO UPDATE SET swarm_id = ?2, token = ?3, hub_instance_id = ?4,
           hub_key = ?5, registered_at = ?6",
        params![
            r.hub_url,
            r.swarm_id,
            token,
            r.hub_instance_id,
            r.hub_key,
            r.registered_at
        ],
    )?;
    Ok(())
}

/// Forgets the swarm token (the hub refused it) but keeps the hub's pinned identity.
pub fn clear_registration_token(conn: &Conn<'_>, hub_url: &str) -> Result<()> {
    conn.execute(
        "UPDATE hub_registration SET token = '' WHERE hub_url = ?1",
        [hub_url],
    )?;
    Ok(())
}
