//! Hive Sync state: sync groups and their rosters, peers, per-(peer, hive) links with their
//! replication cursors, and the tokens peers present to us.
//!
//! Invariants:
//! - a sync group is identified across the mesh by its hive name; locally by the hive id;
//! - one `peers` row per remote instance: rows are matched by instance id first, then by
//!   endpoint, so two sides initiating at once never produce two rows for one instance;
//! - a link (`peer_groups`) is keyed `(peer, hive)`; its cursors are in the *peer's* seq space
//!   for `last_seq_received` and in ours for `last_seq_sent`, and only move forward except on
//!   an explicit resync;
//! - tokens peers present to us are stored only as SHA-256 hashes, each bound to one peer and
//!   one hive; at most [`TOKENS_KEPT`] per link survive (the newest); a token's stored key
//!   starts with its issue time ([`token_key`]), so tokens issued together are stored
//!   together;
//! - `token_out` (the secret we present to a peer) never leaves this module except to the
//!   HTTP client that sends it, and is stored sealed when the store has a sealing key
//!   ([`crate::context`]): a copied database alone does not reveal it.

use crate::consumers::{self, ConsumerId, ConsumerKind};
use crate::engine::{Conn, DbResult, OptionalExtension, Row, params_from_iter};
use crate::error::Result;
use crate::params;
use openhive_core::{ids, seal};

/// How many issued tokens are kept per (peer, hive): two, so that a double handshake (both
/// sides initiating at once) leaves each side holding a valid token.
pub const TOKENS_KEPT: i64 = 2;

openhive_core::closed_vocabulary! {
    /// Where a link (peer, hive) stands.
    pub enum LinkState ("link state", expected "handshaking, backfilling, active or left") {
        Handshaking = "handshaking",
        Backfilling = "backfilling",
        Active = "active",
        /// No more push or pull; kept for its history.
        Left = "left",
    }
}

openhive_core::closed_vocabulary! {
    /// How a peer is doing.
    pub enum PeerStatus ("peer status", expected "pending, active, error or unreachable") {
        Pending = "pending",
        Active = "active",
        Error = "error",
        Unreachable = "unreachable",
    }
}

openhive_core::closed_vocabulary! {
    /// How we learned of a peer.
    pub enum PeerSource ("peer source", expected "api, config, handshake, hub or gossip") {
        Api = "api",
        Config = "config",
        Handshake = "handshake",
        /// Found through the MAP hub (issue 8; precedence manual > hub > gossip).
        Hub = "hub",
        /// Found through a peer's heartbeat (`known_peers`).
        Gossip = "gossip",
    }
}

crate::engine::text_column!(LinkState, PeerStatus, PeerSource);

/// Counter names (table `counters`).
pub const RATE_LIMITED: &str = "sync_rate_limited";
pub const KEY_CONFLICTS: &str = "sync_key_conflicts";

// ── Groups and rosters ──────────────────────────────────────────────────────────────────

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub hive_id: String,
    pub hive_name: String,
    pub created_at: i64,
}

/// Makes the hive `hive_id` a sync group with `self_id` in its roster. Returns true if the
/// group was created by this call.
pub fn ensure_group(
    conn: &Conn<'_>,
    hive_id: &str,
    hive_name: &str,
    self_id: &str,
    now: i64,
) -> Result<bool> {
    // A mirror hive is filled by its pull subscription only (read-only, signed by us as
    // copies of a remote's posts): it is never shared.
    if let Some((url, remote)) = crate::subscriptions::mirror_of(conn, hive_id)? {
        return Err(crate::StoreError::Conflict(format!(
            "hive {hive_name} is a read-only mirror of {remote} on {url}; a mirror hive cannot be shared in a sync group"
        )));
    }
    let n = conn.execute(
        "INSERT INTO sync_groups (hive_id, hive_name, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        params![hive_id, hive_name, now],
    )?;
    add_member(conn, hive_id, self_id)?;
    Ok(n > 0)
}

fn group_row(r: &Row<'_>) -> DbResult<GroupRow> {
    Ok(GroupRow {
        hive_id: r.get(0)?,
        hive_name: r.get(1)?,
        created_at: r.get(2)?,
    })
}

pub fn group_by_name(conn: &Conn<'_>, hive_name: &str) -> Result<Option<GroupRow>> {
    Ok(conn
        .prepare_cached(
            "SELECT hive_id, hive_name, created_at FROM sync_groups WHERE hive_name = ?1",
        )?
        .query_row([hive_name], group_row)
        .optional()?)
}

pub fn group_by_hive_id(conn: &Conn<'_>, hive_id: &str) -> Result<Option<GroupRow>> {
    Ok(conn
        .prepare_cached(
            "SELECT hive_id, hive_name, created_at FROM sync_groups WHERE hive_id = ?1",
        )?
        .query_row([hive_id], group_row)
        .optional()?)
}

/// Up to `limit` groups whose hive name sorts after `after`, by name (a page).
pub fn groups_after(conn: &Conn<'_>, after: &str, limit: usize) -> Result<Vec<GroupRow>> {
    Ok(conn
        .prepare_cached(
            "SELECT hive_id, hive_name, created_at FROM sync_groups WHERE hive_name > ?1
             ORDER BY hive_name LIMIT ?2",
        )?
        .query_map(params![after, limit as i64], group_row)?
        .collect::<DbResult<_>>()?)
}

pub fn list_groups(conn: &Conn<'_>) -> Result<Vec<GroupRow>> {
    Ok(conn
        .prepare_cached(
            "SELECT hive_id, hive_name, created_at FROM sync_groups ORDER BY hive_name",
        )?
        .query_map((), group_row)?
        .collect::<DbResult<_>>()?)
}

/// Stops syncing a hive: removes the group, its roster, its links and tokens. The hive's
/// log and content stay.
pub fn delete_group(conn: &Conn<'_>, hive_id: &str) -> Result<bool> {
    conn.execute("DELETE FROM peer_tokens WHERE hive_id = ?1", [hive_id])?;
    conn.execute("DELETE FROM peer_groups WHERE hive_id = ?1", [hive_id])?;
    consumers::remove_hive(conn, hive_id)?;
    conn.execute("DELETE FROM group_members WHERE hive_id = ?1", [hive_id])?;
    Ok(conn.execute("DELETE FROM sync_groups WHERE hive_id = ?1", [hive_id])? > 0)
}

/// Adds `instance_id` to the roster of `hive_id`. Returns true if it was new.
pub fn add_member(conn: &Conn<'_>, hive_id: &str, instance_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO group_members (hive_id, instance_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?
        .execute([hive_id, instance_id])?
        > 0)
}

/// The roster of a group: `(instance_id, signing_key)` of every member whose key is known.
pub fn roster(conn: &Conn<'_>, hive_id: &str) -> Result<Vec<(String, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT m.instance_id, k.signing_key FROM group_members m
             JOIN instance_keys k ON k.instance_id = m.instance_id
             WHERE m.hive_id = ?1 ORDER BY m.instance_id",
        )?
        .query_map([hive_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<DbResult<_>>()?)
}

// ── Peers ───────────────────────────────────────────────────────────────────────────────

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRow {
    pub id: String,
    pub name: String,
    pub endpoint: String,
    pub instance_id: Option<String>,
    pub source: PeerSource,
    pub status: PeerStatus,
    pub failure_count: i64,
    pub last_contact_at: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const PEER_COLS: &str = "id, name, endpoint, instance_id, source, status, failure_count, \
                         last_contact_at, last_error, created_at, updated_at";

fn peer_row(r: &Row<'_>) -> DbResult<PeerRow> {
    Ok(PeerRow {
        id: r.get(0)?,
        name: r.get(1)?,
        endpoint: r.get(2)?,
        instance_id: r.get(3)?,
        source: r.get(4)?,
        status: r.get(5)?,
        failure_count: r.get(6)?,
        last_contact_at: r.get(7)?,
        last_error: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

fn peer_where(conn: &Conn<'_>, cond: &str, arg: &str) -> Result<Option<PeerRow>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {PEER_COLS} FROM peers WHERE {cond} = ?1"))?
        .query_row([arg], peer_row)
        .optional()?)
}

pub fn peer_by_id(conn: &Conn<'_>, id: &str) -> Result<Option<PeerRow>> {
    peer_where(conn, "id", id)
}

pub fn peer_by_endpoint(conn: &Conn<'_>, endpoint: &str) -> Result<Option<PeerRow>> {
    peer_where(conn, "endpoint", endpoint)
}

pub fn peer_by_instance(conn: &Conn<'_>, instance_id: &str) -> Result<Option<PeerRow>> {
    peer_where(conn, "instance_id", instance_id)
}

pub fn list_peers(conn: &Conn<'_>) -> Result<Vec<PeerRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {PEER_COLS} FROM peers ORDER BY created_at, id"
        ))?
        .query_map((), peer_row)?
        .collect::<DbResult<_>>()?)
}

/// Up to `limit` peers whose id sorts after `after`, by id (a page).
pub fn peers_after(conn: &Conn<'_>, after: &str, limit: usize) -> Result<Vec<PeerRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {PEER_COLS} FROM peers WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))?
        .query_map(params![after, limit as i64], peer_row)?
        .collect::<DbResult<_>>()?)
}

fn new_peer_id() -> String {
    format!(
        "peer_{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    )
}

/// Adds a configured peer (source `api` or `config`), or returns the existing row with that
/// endpoint (renamed to `name`; a handshake- or gossip-learned row becomes configured).
pub fn upsert_configured_peer(
    conn: &Conn<'_>,
    name: &str,
    endpoint: &str,
    source: PeerSource,
    now: i64,
) -> Result<(PeerRow, bool)> {
    if let Some(p) = peer_by_endpoint(conn, endpoint)? {
        conn.execute(
            "UPDATE peers SET name = ?2, updated_at = ?3 WHERE id = ?1",
            params![p.id, name, now],
        )?;
        raise_source(conn, &p.id, source)?;
        let row = peer_by_id(conn, &p.id)?.ok_or(crate::StoreError::NotFound("peer"))?;
        return Ok((row, false));
    }
    let id = new_peer_id();
    conn.execute(
        "INSERT INTO peers (id, name, endpoint, source, status, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
        params![id, name, endpoint, source, now],
    )?;
    let row = peer_by_id(conn, &id)?.ok_or(crate::StoreError::NotFound("peer"))?;
    Ok((row, true))
}

impl PeerSource {
    /// Precedence of the design's peer sources: manual (`api`, `config`) > `hub` > `gossip`
    /// > `handshake` (learned only because the peer called us).
    pub fn precedence(self) -> u8 {
        match self {
            PeerSource::Api | PeerSource::Config => 3,
            PeerSource::Hub => 2,
            PeerSource::Gossip => 1,
            PeerSource::Handshake => 0,
        }
    }
}

/// Sets the peer's source to `source` if that ranks higher than its current one (never
/// downgrades: a manual peer found again through the hub stays manual). Returns whether it
/// changed.
pub fn raise_source(conn: &Conn<'_>, peer_id: &str, source: PeerSource) -> Result<bool> {
    let Some(p) = peer_by_id(conn, peer_id)? else {
        return Ok(false);
    };
    if source.precedence() <= p.source.precedence() {
        return Ok(false);
    }
    conn.execute(
        "UPDATE peers SET source = ?2 WHERE id = ?1",
        params![peer_id, source],
    )?;
    Ok(true)
}

/// Records what a handshake told us about a peer: its instance id, name and endpoint.
/// Matches by instance id, then by endpoint; if two rows match (a configured row without an
/// instance id and a handshake-learned row), they are merged into one. Returns the peer id.
pub fn upsert_handshake_peer(
    conn: &Conn<'_>,
    instance_id: &str,
    name: &str,
    endpoint: &str,
    now: i64,
) -> Result<String> {
    let by_inst = peer_by_instance(conn, instance_id)?;
    let by_ep = peer_by_endpoint(conn, endpoint)?;
    match (by_inst, by_ep) {
        (Some(a), Some(b)) if a.id != b.id => {
            // Keep the configured row (b has the endpoint an admin entered) if a was only
            // learned; otherwise keep a. Move the links of the dropped row over.
            let (keep, drop) = if matches!(a.source, PeerSource::Handshake | PeerSource::Gossip) {
                (b, a)
            } else {
                (a, b)
            };
            merge_peer_into(conn, &drop.id, &keep.id)?;
            conn.execute(
                "UPDATE peers SET instance_id = ?2, endpoint = ?3, updated_at = ?4 WHERE id = ?1",
                params![keep.id, instance_id, endpoint, now],
            )?;
            Ok(keep.id)
        }
        (Some(a), _) => {
            // Same instance, maybe a new endpoint.
            if a.endpoint != endpoint {
                conn.execute(
                    "UPDATE peers SET endpoint = ?2, updated_at = ?3 WHERE id = ?1",
                    params![a.id, endpoint, now],
                )?;
            }
            Ok(a.id)
        }
        (None, Some(b)) => {
            // A configured row learns its instance id; or the endpoint now answers as another
            // instance (the old one moved away) and the row follows the endpoint.
            conn.execute(
                "UPDATE peers SET instance_id = ?2, updated_at = ?3 WHERE id = ?1",
                params![b.id, instance_id, now],
            )?;
            Ok(b.id)
        }
        (None, None) => {
            let id = new_peer_id();
            conn.execute(
                "INSERT INTO peers (id, name, endpoint, instance_id, source, status, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'handshake', 'pending', ?5, ?5)",
                params![id, name, endpoint, instance_id, now],
            )?;
            Ok(id)
        }
    }
}

fn merge_peer_into(conn: &Conn<'_>, from: &str, into: &str) -> Result<()> {
    // Links of `from` the kept row lacks move over; tokens follow.
    conn.execute(
        "UPDATE peer_groups SET peer_id = ?2 WHERE peer_id = ?1 AND NOT EXISTS
           (SELECT 1 FROM peer_groups g WHERE g.peer_id = ?2 AND g.hive_id = peer_groups.hive_id)",
        params![from, into],
    )?;
    conn.execute("DELETE FROM peer_groups WHERE peer_id = ?1", [from])?;
    consumers::merge(conn, &ConsumerId::peer(from), &ConsumerId::peer(into))?;
    conn.execute(
        "UPDATE peer_tokens SET peer_id = ?2 WHERE peer_id = ?1",
        params![from, into],
    )?;
    conn.execute("DELETE FROM peers WHERE id = ?1", [from])?;
    Ok(())
}

/// Renames a peer and/or changes its endpoint.
pub fn update_peer(
    conn: &Conn<'_>,
    id: &str,
    name: Option<&str>,
    endpoint: Option<&str>,
    now: i64,
) -> Result<()> {
    if let Some(n) = name {
        conn.execute(
            "UPDATE peers SET name = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, n, now],
        )?;
    }
    if let Some(e) = endpoint {
        conn.execute(
            "UPDATE peers SET endpoint = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, e, now],
        )?;
    }
    Ok(())
}

/// Deletes a peer with its links and tokens.
pub fn delete_peer(conn: &Conn<'_>, id: &str) -> Result<bool> {
    conn.execute("DELETE FROM peer_tokens WHERE peer_id = ?1", [id])?;
    conn.execute("DELETE FROM peer_groups WHERE peer_id = ?1", [id])?;
    consumers::remove(conn, &ConsumerId::peer(id), None)?;
    Ok(conn.execute("DELETE FROM peers WHERE id = ?1", [id])? > 0)
}

/// A successful contact in either direction: failures reset, status active.
pub fn record_contact(conn: &Conn<'_>, peer_id: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE peers SET failure_count = 0, status = 'active', last_contact_at = ?2,
           last_error = NULL, updated_at = ?2 WHERE id = ?1",
    )?
    .execute(params![peer_id, now])?;
    Ok(())
}

/// A failed request to the peer. After `error_after` consecutive failures the status becomes
/// `error` (unless the peer is already `unreachable`). Returns the new failure count.
pub fn record_failure(
    conn: &Conn<'_>,
    peer_id: &str,
    error: &str,
    error_after: i64,
    now: i64,
) -> Result<i64> {
    let n: Option<i64> = conn
        .prepare_cached(
            "UPDATE peers SET failure_count = failure_count + 1, last_error = ?2, updated_at = ?3,
               status = CASE WHEN failure_count + 1 >= ?4 AND status <> 'unreachable'
                             THEN 'error' ELSE status END
             WHERE id = ?1 RETURNING failure_count",
        )?
        .query_row(params![peer_id, error, now, error_after], |r| r.get(0))
        .optional()?;
    Ok(n.unwrap_or(0))
}

/// Marks `unreachable` every peer not heard from since `cutoff` (peers never contacted count
/// from their creation). Returns the ids newly marked.
pub fn mark_unreachable(conn: &Conn<'_>, cutoff: i64, now: i64) -> Result<Vec<String>> {
    Ok(conn
        .prepare_cached(
            "UPDATE peers SET status = 'unreachable', updated_at = ?2
             WHERE status <> 'unreachable' AND COALESCE(last_contact_at, created_at) < ?1
             RETURNING id",
        )?
        .query_map(params![cutoff, now], |r| r.get(0))?
        .collect::<DbResult<_>>()?)
}

// ── Gossip ──────────────────────────────────────────────────────────────────────────────

/// A peer as gossip sees it: what we may tell others about it (docs/PROTOCOL-sync.md,
/// "Gossip"). `signing_key` is the current key of its chain (`None` until learned: such a
/// peer is never passed on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipPeerRow {
    pub id: String,
    pub name: String,
    pub endpoint: String,
    pub instance_id: Option<String>,
    pub source: PeerSource,
    pub status: PeerStatus,
    pub gossip_ttl: i64,
    pub discovered_via: Option<String>,
    /// Its last contact attempt failed (`failure_count > 0`).
    pub failing: bool,
    /// Hive names of its links that are not `left`.
    pub hives: Vec<String>,
}

/// Every peer with its gossip columns and the hive names of its live links (two queries,
/// whatever the number of peers).
pub fn gossip_peers(conn: &Conn<'_>) -> Result<Vec<GossipPeerRow>> {
    let mut peers: Vec<GossipPeerRow> = conn
        .prepare_cached(
            "SELECT id, name, endpoint, instance_id, source, status, gossip_ttl, discovered_via,
               failure_count FROM peers ORDER BY id",
        )?
        .query_map((), |r| {
            Ok(GossipPeerRow {
                id: r.get(0)?,
                name: r.get(1)?,
                endpoint: r.get(2)?,
                instance_id: r.get(3)?,
                source: r.get(4)?,
                status: r.get(5)?,
                gossip_ttl: r.get(6)?,
                discovered_via: r.get(7)?,
                failing: r.get::<_, i64>(8)? > 0,
                hives: Vec::new(),
            })
        })?
        .collect::<DbResult<_>>()?;
    let links: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT l.peer_id, g.hive_name FROM peer_groups l
             JOIN sync_groups g ON g.hive_id = l.hive_id
             WHERE l.state <> 'left' ORDER BY l.peer_id, g.hive_name",
        )?
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<DbResult<_>>()?;
    let mut by_id: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, p) in peers.iter().enumerate() {
        by_id.insert(p.id.as_str(), i);
    }
    let mut hives: Vec<Vec<String>> = vec![Vec::new(); peers.len()];
    for (peer, hive) in links {
        if let Some(&i) = by_id.get(peer.as_str()) {
            hives[i].push(hive);
        }
    }
    for (p, h) in peers.iter_mut().zip(hives) {
        p.hives = h;
    }
    Ok(peers)
}

/// The gossip columns of one peer: `(gossip_ttl, discovered_via)`.
pub fn gossip_meta(conn: &Conn<'_>, peer_id: &str) -> Result<Option<(i64, Option<String>)>> {
    Ok(conn
        .prepare_cached("SELECT gossip_ttl, discovered_via FROM peers WHERE id = ?1")?
        .query_row([peer_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Adds a peer learned by gossip (source `gossip`) with its instance id, or raises the TTL of
/// an existing gossip-sourced row of that instance (never lowers it, never touches a row of
/// another source: manual > hub > gossip). Returns the peer id, or `None` when the instance
/// or the endpoint is already known otherwise (a row of another source, or the endpoint
/// under another instance id): gossip never overrides what we know first-hand.
pub fn upsert_gossip_peer(
    conn: &Conn<'_>,
    instance_id: &str,
    name: &str,
    endpoint: &str,
    ttl: i64,
    via: &str,
    now: i64,
) -> Result<Option<String>> {
    let by_inst = peer_by_instance(conn, instance_id)?;
    let by_ep = peer_by_endpoint(conn, endpoint)?;
    match (by_inst, by_ep) {
        (Some(a), _) if a.source == PeerSource::Gossip => {
            conn.prepare_cached(
                "UPDATE peers SET gossip_ttl = GREATEST(gossip_ttl, ?2), updated_at = ?3
                 WHERE id = ?1",
            )?
            .execute(params![a.id, ttl, now])?;
            Ok(Some(a.id))
        }
        (Some(_), _) | (None, Some(_)) => Ok(None),
        (None, None) => {
            let id = new_peer_id();
            conn.prepare_cached(
                "INSERT INTO peers (id, name, endpoint, instance_id, source, status, gossip_ttl,
                   discovered_via, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'gossip', 'pending', ?5, ?6, ?7, ?7)",
            )?
            .execute(params![id, name, endpoint, instance_id, ttl, via, now])?;
            Ok(Some(id))
        }
    }
}

/// A peer that paired with us on the word of a peer introduction (issued by `via`) counts
/// as found by gossip: a `handshake` row becomes `gossip` (rows of other sources stay).
pub fn mark_gossip_sourced(conn: &Conn<'_>, peer_id: &str, via: &str, ttl: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE peers SET source = 'gossip', gossip_ttl = GREATEST(gossip_ttl, ?3),
           discovered_via = COALESCE(discovered_via, ?2)
         WHERE id = ?1 AND source = 'handshake'",
    )?
    .execute(params![peer_id, via, ttl])?;
    Ok(())
}

/// How many gossip-sourced peers hold a live link for `hive_id` (the per-hive cap
/// `max_gossip_peers` applies to them).
pub fn gossip_peer_count(conn: &Conn<'_>, hive_id: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM peer_groups l JOIN peers p ON p.id = l.peer_id
             WHERE l.hive_id = ?1 AND l.state <> 'left' AND p.source = 'gossip'",
        )?
        .query_row([hive_id], |r| r.get(0))?)
}

/// Gossip-sourced peers to remove: silent since before `silent_before` (never contacted:
/// since their creation), or at `max_failures` consecutive failures or more. Peers of every
/// other source are never returned.
pub fn stale_gossip_peers(
    conn: &Conn<'_>,
    silent_before: i64,
    max_failures: i64,
) -> Result<Vec<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM peers WHERE source = 'gossip'
               AND (COALESCE(last_contact_at, created_at) < ?1 OR failure_count >= ?2)
             ORDER BY id",
        )?
        .query_map(params![silent_before, max_failures], |r| r.get(0))?
        .collect::<DbResult<_>>()?)
}

// ── Links ───────────────────────────────────────────────────────────────────────────────

/// A (peer, hive) link. `token_out` is the secret we present to the peer for this hive.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkRow {
    pub peer_id: String,
    pub hive_id: String,
    pub hive_name: String,
    pub state: LinkState,
    pub token_out: Option<String>,
    pub last_seq_sent: i64,
    pub last_seq_received: i64,
    pub remote_seq: i64,
    pub events_received: i64,
    pub events_rejected: i64,
    pub last_error: Option<String>,
    pub last_sync_at: Option<i64>,
}

impl std::fmt::Debug for LinkRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkRow")
            .field("peer_id", &self.peer_id)
            .field("hive", &self.hive_name)
            .field("state", &self.state)
            .field("has_token", &self.token_out.is_some())
            .field("last_seq_sent", &self.last_seq_sent)
            .field("last_seq_received", &self.last_seq_received)
            .finish_non_exhaustive()
    }
}

const LINK_COLS: &str = "l.peer_id, l.hive_id, g.hive_name, l.state, l.token_out, \
    COALESCE((SELECT k.cursor_seq FROM consumers k
              WHERE k.id = 'peer:' || l.peer_id AND k.hive_id = l.hive_id), 0), \
    l.last_seq_received, l.remote_seq, l.events_received, l.events_rejected, \
    l.last_error, l.last_sync_at";

fn link_row(r: &Row<'_>) -> DbResult<LinkRow> {
    Ok(LinkRow {
        peer_id: r.get(0)?,
        hive_id: r.get(1)?,
        hive_name: r.get(2)?,
        state: r.get(3)?,
        token_out: r.get(4)?,
        last_seq_sent: r.get(5)?,
        last_seq_received: r.get(6)?,
        remote_seq: r.get(7)?,
        events_received: r.get(8)?,
        events_rejected: r.get(9)?,
        last_error: r.get(10)?,
        last_sync_at: r.get(11)?,
    })
}

fn links_where(conn: &Conn<'_>, cond: &str, args: &[&str]) -> Result<Vec<LinkRow>> {
    let sql = format!(
        "SELECT {LINK_COLS} FROM peer_groups l JOIN sync_groups g ON g.hive_id = l.hive_id
         WHERE {cond} ORDER BY g.hive_name, l.peer_id"
    );
    let mut rows: Vec<LinkRow> = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(args.iter()), link_row)?
        .collect::<DbResult<_>>()?;
    open_tokens(conn, rows.iter_mut());
    Ok(rows)
}

/// Replaces each link's stored outbound token with the token it seals ([`open_token`]).
fn open_tokens<'a>(conn: &Conn<'_>, links: impl Iterator<Item = &'a mut LinkRow>) {
    for l in links {
        l.token_out = l
            .token_out
            .take()
            .and_then(|t| open_token(conn, t, &l.peer_id, &l.hive_id));
    }
}

/// What is stored for an outbound token: sealed with the store's key when it has one.
fn seal_token(conn: &Conn<'_>, token: &str) -> Result<String> {
    match &conn.context().seal_key {
        Some(k) => k
            .seal(token)
            .map_err(|e| crate::StoreError::Task(format!("sealing a peer token: {e}"))),
        None => Ok(token.to_string()),
    }
}

/// The outbound token a stored value holds. A value in clear (stored by an older version,
/// or by a store without a key) is used as is; a sealed value that does not open (no key,
/// another key) counts as no token, so the link handshakes again for a fresh one.
fn open_token(conn: &Conn<'_>, stored: String, peer_id: &str, hive_id: &str) -> Option<String> {
    if !seal::is_sealed(&stored) {
        return Some(stored);
    }
    let opened = match &conn.context().seal_key {
        Some(k) => k.open(&stored).map_err(|e| e.to_string()),
        None => Err("no sealing key configured".to_string()),
    };
    match opened {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(peer = peer_id, hive = hive_id, error = %e, "stored peer token does not open; a new handshake will replace it");
            None
        }
    }
}

/// Seals a secret other than a peer token (the MAP hub swarm token) like peer tokens.
pub(crate) fn seal_secret(conn: &Conn<'_>, secret: &str) -> Result<String> {
    seal_token(conn, secret)
}

/// Opens what [`seal_secret`] stored (`None` if it does not open).
pub(crate) fn open_secret(conn: &Conn<'_>, stored: String) -> Option<String> {
    open_token(conn, stored, "-", "-")
}

/// Seals every outbound token still stored in clear (by a version before sealing). A no-op
/// without a sealing key. Returns how many were sealed.
pub fn reseal_tokens(conn: &Conn<'_>) -> Result<usize> {
    if conn.context().seal_key.is_none() {
        return Ok(0);
    }
    let plain: Vec<(String, String, String)> = conn
        .prepare("SELECT peer_id, hive_id, token_out FROM peer_groups WHERE token_out IS NOT NULL")?
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<DbResult<Vec<_>>>()?
        .into_iter()
        .filter(|(_, _, t): &(String, String, String)| !seal::is_sealed(t))
        .collect();
    for (peer_id, hive_id, token) in &plain {
        set_token_out(conn, peer_id, hive_id, Some(token))?;
    }
    Ok(plain.len())
}

/// Creates the link if missing (in `state`); a `left` link is reopened in `state`.
/// Returns true if the link was created or reopened.
pub fn ensure_link(
    conn: &Conn<'_>,
    peer_id: &str,
    hive_id: &str,
    state: LinkState,
) -> Result<bool> {
    let n = conn.execute(
        "INSERT INTO peer_groups (peer_id, hive_id, state) VALUES (?1, ?2, ?3)
         ON CONFLICT(peer_id, hive_id) DO UPDATE SET state = excluded.state
         WHERE peer_groups.state = 'left'",
        params![peer_id, hive_id, state],
    )?;
    // The link's outbox reads the hive's log: it is a consumer of it.
    consumers::ensure(
        conn,
        &ConsumerId::peer(peer_id),
        hive_id,
        ConsumerKind::PeerLink,
    )?;
    Ok(n > 0)
}

pub fn link(conn: &Conn<'_>, peer_id: &str, hive_id: &str) -> Result<Option<LinkRow>> {
    Ok(links_where(
        conn,
        "l.peer_id = ?1 AND l.hive_id = ?2",
        &[peer_id, hive_id],
    )?
    .into_iter()
    .next())
}

/// Hives per statement in [`links_for_hives`].
const LINKS_CHUNK: usize = 32;

/// The links with `peer_id` for each of `hive_ids`, aligned with it (`None`: no such link).
/// One statement per [`LINKS_CHUNK`] hives instead of one per hive: a batched sync step
/// loads hundreds of links, and one statement walks the neighbouring rows together.
pub fn links_for_hives(
    conn: &Conn<'_>,
    peer_id: &str,
    hive_ids: &[String],
) -> Result<Vec<Option<LinkRow>>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let marks: Vec<String> = (2..LINKS_CHUNK + 2).map(|i| format!("?{i}")).collect();
        format!(
            "SELECT {LINK_COLS} FROM peer_groups l JOIN sync_groups g ON g.hive_id = l.hive_id
             WHERE l.peer_id = ?1 AND l.hive_id IN ({})",
            marks.join(", ")
        )
    });
    let mut found: std::collections::HashMap<String, LinkRow> =
        std::collections::HashMap::with_capacity(hive_ids.len());
    let mut stmt = conn.prepare_cached(&SQL)?;
    for chunk in hive_ids.chunks(LINKS_CHUNK) {
        // A short chunk repeats its first id: one statement text for every chunk.
        let args: Vec<&str> = std::iter::once(peer_id)
            .chain((0..LINKS_CHUNK).map(|i| chunk.get(i).unwrap_or(&chunk[0]).as_str()))
            .collect();
        for row in stmt.query_map(params_from_iter(args.iter()), link_row)? {
            let l = row?;
            found.insert(l.hive_id.clone(), l);
        }
    }
    open_tokens(conn, found.values_mut());
    Ok(hive_ids.iter().map(|h| found.get(h).cloned()).collect())
}

/// The link with `peer_id` for the hive named `hive_name`.
pub fn link_by_name(conn: &Conn<'_>, peer_id: &str, hive_name: &str) -> Result<Option<LinkRow>> {
    Ok(links_where(
        conn,
        "l.peer_id = ?1 AND g.hive_name = ?2",
        &[peer_id, hive_name],
    )?
    .into_iter()
    .next())
}

/// One live link with `peer_id` that holds a token (any token of ours authenticates a
/// heartbeat); `None` if there is none.
pub fn heartbeat_link(conn: &Conn<'_>, peer_id: &str) -> Result<Option<LinkRow>> {
    // The first such row found, not the least: no scan of the peer's every link.
    let hive: Option<String> = conn
        .prepare_cached(
            "SELECT hive_id FROM peer_groups
             WHERE peer_id = ?1 AND state <> 'left' AND token_out IS NOT NULL LIMIT 1",
        )?
        .query_row([peer_id], |r| r.get(0))
        .optional()?;
    match hive {
        Some(h) => link(conn, peer_id, &h),
        None => Ok(None),
    }
}

pub fn links_for_peer(conn: &Conn<'_>, peer_id: &str) -> Result<Vec<LinkRow>> {
    links_where(conn, "l.peer_id = ?1", &[peer_id])
}

/// The hives (id, name) of the peer's links that are not `left`, by name: what gossip and
/// a full heartbeat need of each link, without building its row (no cursor subquery, no
/// token opened), so a message to a peer sharing thousands of hives stays one index scan.
pub fn live_hives_of_peer(conn: &Conn<'_>, peer_id: &str) -> Result<Vec<(String, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT l.hive_id, g.hive_name FROM peer_groups l
             JOIN sync_groups g ON g.hive_id = l.hive_id
             WHERE l.peer_id = ?1 AND l.state <> 'left' ORDER BY g.hive_name",
        )?
        .query_map([peer_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<DbResult<_>>()?)
}

/// The hive name of the peer's link to `hive_id` if that link is not `left` (the one-link
/// form of [`live_hives_of_peer`]).
pub fn live_hive_of_peer(conn: &Conn<'_>, peer_id: &str, hive_id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT g.hive_name FROM peer_groups l
             JOIN sync_groups g ON g.hive_id = l.hive_id
             WHERE l.peer_id = ?1 AND l.hive_id = ?2 AND l.state <> 'left'",
        )?
        .query_row([peer_id, hive_id], |r| r.get(0))
        .optional()?)
}

/// The id and pull cursor of the peer's link to the hive named `hive_name`, if that link is
/// not `left`: what a heartbeat group needs, without building the link's row (no token
/// opened).
pub fn live_link_cursor_by_name(
    conn: &Conn<'_>,
    peer_id: &str,
    hive_name: &str,
) -> Result<Option<(String, i64)>> {
    Ok(conn
        .prepare_cached(
            "SELECT l.hive_id, l.last_seq_received FROM sync_groups g
             JOIN peer_groups l ON l.hive_id = g.hive_id AND l.peer_id = ?1
             WHERE g.hive_name = ?2 AND l.state <> 'left'",
        )?
        .query_row([peer_id, hive_name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// The pull cursor (`last_seq_received`) of the peer's link to `hive_id` (0 without one).
pub fn pull_cursor(conn: &Conn<'_>, peer_id: &str, hive_id: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT last_seq_received FROM peer_groups WHERE peer_id = ?1 AND hive_id = ?2",
        )?
        .query_row([peer_id, hive_id], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

pub fn links_for_hive(conn: &Conn<'_>, hive_id: &str) -> Result<Vec<LinkRow>> {
    links_where(conn, "l.hive_id = ?1", &[hive_id])
}

/// Every link that is not `left` (the links the engine runs workers for).
pub fn live_links(conn: &Conn<'_>) -> Result<Vec<LinkRow>> {
    links_where(conn, "l.state <> 'left'", &[])
}

/// The (peer id, hive id) of every link that is not `left`, without the rest of the row.
pub fn live_link_keys(conn: &Conn<'_>) -> Result<Vec<(String, String)>> {
    Ok(conn
        .prepare_cached("SELECT peer_id, hive_id FROM peer_groups WHERE state <> 'left'")?
        .query_map(params![], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<DbResult<_>>()?)
}

/// A live link past a [`crate::context::LagAlert`] threshold (see [`lagging_links`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaggingLink {
    pub peer_id: String,
    pub peer_name: String,
    pub hive_name: String,
    /// Log head − the last seq the peer took.
    pub lag: i64,
    /// Milliseconds since the peer was last heard from (or since it was added).
    pub silent_ms: i64,
}

/// The live links that pass the store's lag-alert thresholds at `now_ms` (the rule of
/// `LagAlert::lagging`), found by one query: a periodic check costs the lagging links, not
/// every link (no row is built and no token opened for a link that keeps up).
pub fn lagging_links(conn: &Conn<'_>, now_ms: i64) -> Result<Vec<LaggingLink>> {
    let alert = conn.context().lag_alert;
    Ok(conn
        .prepare_cached(
            "SELECT l.peer_id, p.name, g.hive_name,
                    COALESCE(h.head_seq, 0) - COALESCE(k.cursor_seq, 0),
                    ?1 - COALESCE(p.last_contact_at, p.created_at)
             FROM peer_groups l
             JOIN peers p ON p.id = l.peer_id
             JOIN sync_groups g ON g.hive_id = l.hive_id
             LEFT JOIN hive_logs h ON h.hive_id = l.hive_id
             LEFT JOIN consumers k ON k.id = 'peer:' || l.peer_id AND k.hive_id = l.hive_id
             WHERE l.state <> 'left'
               AND (COALESCE(h.head_seq, 0) - COALESCE(k.cursor_seq, 0) > ?2
                    OR ?1 - COALESCE(p.last_contact_at, p.created_at) > ?3)
             ORDER BY g.hive_name, l.peer_id",
        )?
        .query_map(params![now_ms, alert.events, alert.silence_ms], |r| {
            Ok(LaggingLink {
                peer_id: r.get(0)?,
                peer_name: r.get(1)?,
                hive_name: r.get(2)?,
                lag: r.get::<_, i64>(3)?.max(0),
                silent_ms: r.get::<_, i64>(4)?.max(0),
            })
        })?
        .collect::<DbResult<_>>()?)
}

/// Live links whose outbox cursor is behind their hive's log head (work a missed wake-up
/// would otherwise leave undone until the next commit).
pub fn links_behind(conn: &Conn<'_>) -> Result<Vec<(String, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT l.peer_id, l.hive_id FROM peer_groups l
             JOIN hive_logs g ON g.hive_id = l.hive_id
             LEFT JOIN consumers k ON k.id = 'peer:' || l.peer_id AND k.hive_id = l.hive_id
             WHERE l.state <> 'left' AND COALESCE(k.cursor_seq, 0) < g.head_seq",
        )?
        .query_map(params![], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<DbResult<_>>()?)
}

pub fn set_link_state(
    conn: &Conn<'_>,
    peer_id: &str,
    hive_id: &str,
    state: LinkState,
) -> Result<()> {
    conn.prepare_cached("UPDATE peer_groups SET state = ?3 WHERE peer_id = ?1 AND hive_id = ?2")?
        .execute(params![peer_id, hive_id, state])?;
    consumers::set_live(
        conn,
        &ConsumerId::peer(peer_id),
        hive_id,
        state != LinkState::Left,
    )?;
    Ok(())
}

/// Stores the token we present to the peer for this hive (None forgets it, forcing a new
/// handshake), sealed with the store's key (see [`crate::context`]): a copy of the
/// database alone does not reveal it.
pub fn set_token_out(
    conn: &Conn<'_>,
    peer_id: &str,
    hive_id: &str,
    token: Option<&str>,
) -> Result<()> {
    let stored = token.map(|t| seal_token(conn, t)).transpose()?;
    conn.prepare_cached(
        "UPDATE peer_groups SET token_out = ?3 WHERE peer_id = ?1 AND hive_id = ?2",
    )?
    .execute(params![peer_id, hive_id, stored])?;
    Ok(())
}

/// Moves `last_seq_sent` (the cursor of the link's outbox consumer) forward to `seq`
/// (never back, never beyond the log's head).
pub fn advance_sent(
    conn: &Conn<'_>,
    peer_id: &str,
    hive_id: &str,
    seq: i64,
    now: i64,
) -> Result<()> {
    consumers::advance(conn, &ConsumerId::peer(peer_id), hive_id, seq, now)?;
    touch_link(conn, peer_id, hive_id, now)
}

/// Records that the link's outbox moved (its `last_sync_at`).
pub fn touch_link(conn: &Conn<'_>, peer_id: &str, hive_id: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE peer_groups SET last_sync_at = ?3 WHERE peer_id = ?1 AND hive_id = ?2",
    )?
    .execute(params![peer_id, hive_id, now])?;
    Ok(())
}

/// A pulled page covering the peer's seqs `since + 1 ..= next` was applied: moves
/// `last_seq_received` forward to `next` (never back), if the page still joins the cursor
/// (`last_seq_received >= since`). Returns false when it does not: the cursor went back
/// below the page's start while the page was in flight (an admin resync), and a page read
/// before that reset must not undo it.
pub fn advance_received(
    conn: &Conn<'_>,
    peer_id: &str,
    hive_id: &str,
    since: i64,
    next: i64,
    now: i64,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE peer_groups SET last_seq_received = GREATEST(last_seq_received, ?4), last_sync_at = ?5
             WHERE peer_id = ?1 AND hive_id = ?2 AND last_seq_received >= ?3",
        )?
        .execute(params![peer_id, hive_id, since, next, now])?;
    Ok(n > 0)
}

/// A pushed batch covering the sender's seqs `first..=last` was applied: the pull cursor moves
/// to `last` if that leaves no gap (`last_seq_received >= first - 1`). Returns true if moved.
pub fn advance_received_contiguous(
    conn: &Conn<'_>,
    peer_id: &str,
    hive_id: &str,
    first: i64,
    last: i64,
    now: i64,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE peer_groups SET last_seq_received = ?4, last_sync_at = ?5
             WHERE peer_id = ?1 AND hive_id = ?2 AND last_seq_received >= ?3 - 1
               AND last_seq_received < ?4",
        )?
        .execute(params![peer_id, hive_id, first, last, now])?;
    Ok(n > 0)
}

/// Resets the pull cursor (admin resync).
pub fn reset_received(conn: &Conn<'_>, hive_id: &str) -> Result<usize> {
    Ok(conn.execute(
        "UPDATE peer_groups SET last_seq_received = 0 WHERE hive_id = ?1 AND state <> 'left'",
        [hive_id],
    )?)
}

pub fn set_remote_seq(conn: &Conn<'_>, peer_id: &str, hive_id: &str, seq: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE peer_groups SET remote_seq = ?3
         WHERE peer_id = ?1 AND hive_id = ?2 AND remote_seq < ?3",
    )?
    .execute(params![peer_id, hive_id, seq])?;
    Ok(())
}

/// Adds to the link's received/rejected counters.
pub fn count_events(
    conn: &Conn<'_>,
    peer_id: &str,
    hive_id: &str,
    received: i64,
    rejected: i64,
) -> Result<()> {
    if received == 0 && rejected == 0 {
        return Ok(());
    }
    conn.prepare_cached(
        "UPDATE peer_groups SET events_received = events_received + ?3,
           events_rejected = events_rejected + ?4 WHERE peer_id = ?1 AND hive_id = ?2",
    )?
    .execute(params![peer_id, hive_id, received, rejected])?;
    Ok(())
}

pub fn set_link_error(
    conn: &Conn<'_>,
    peer_id: &str,
    hive_id: &str,
    error: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE peer_groups SET last_error = ?3 WHERE peer_id = ?1 AND hive_id = ?2",
    )?
    .execute(params![peer_id, hive_id, error])?;
    Ok(())
}

/// The peer left the group (or we did): no more push or pull on this link, its tokens are
/// gone. Past events stay.
pub fn mark_left(conn: &Conn<'_>, peer_id: &str, hive_id: &str) -> Result<()> {
    conn.execute(
        "UPDATE peer_groups SET state = 'left', token_out = NULL WHERE peer_id = ?1 AND hive_id = ?2",
        params![peer_id, hive_id],
    )?;
    consumers::set_live(conn, &ConsumerId::peer(peer_id), hive_id, false)?;
    conn.execute(
        "DELETE FROM peer_tokens WHERE peer_id = ?1 AND hive_id = ?2",
        params![peer_id, hive_id],
    )?;
    Ok(())
}

// ── Tokens ──────────────────────────────────────────────────────────────────────────────

/// Issues a fresh token the peer will present to us for this hive; stores only its hash and
/// keeps the [`TOKENS_KEPT`] newest for the link. Returns the secret (to send once).
pub fn issue_token(conn: &Conn<'_>, peer_id: &str, hive_id: &str, now: i64) -> Result<String> {
    let secret = new_token(now);
    // Strictly increasing creation times per link, so "newest" is well defined.
    let last: Option<i64> = conn
        .prepare_cached(
            "SELECT MAX(created_at) FROM peer_tokens WHERE peer_id = ?1 AND hive_id = ?2",
        )?
        .query_row([peer_id, hive_id], |r| r.get(0))?;
    let at = last.map_or(now, |l| now.max(l + 1));
    conn.prepare_cached(
        "INSERT INTO peer_tokens (token_hash, peer_id, hive_id, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        token_key(&secret).unwrap_or_else(|| ids::hash_secret(&secret)),
        peer_id,
        hive_id,
        at
    ])?;
    if last.is_none() {
        // The link's first token: nothing older to expire (the common case when pairing).
        return Ok(secret);
    }
    // Tokens retired by a rotation live until their expiry (then go); of the others, the
    // newest are kept.
    conn.prepare_cached(
        "DELETE FROM peer_tokens WHERE peer_id = ?1 AND hive_id = ?2 AND (
           (expires_at IS NOT NULL AND expires_at <= ?4)
           OR (expires_at IS NULL AND token_hash NOT IN
             (SELECT token_hash FROM peer_tokens WHERE peer_id = ?1 AND hive_id = ?2
                AND expires_at IS NULL ORDER BY created_at DESC LIMIT ?3)))",
    )?
    .execute(params![peer_id, hive_id, TOKENS_KEPT, now])?;
    Ok(secret)
}

/// Hex digits of a token's issue time (milliseconds, 48 bits) right after its `ohs_` prefix.
const TOKEN_TIME_HEX: usize = 12;

/// A fresh token: `ohs_`, its issue time (`now`, [`TOKEN_TIME_HEX`] hex digits), then 26
/// random bytes in hex; as long as the tokens of before, which were 32 random bytes.
fn new_token(now: i64) -> String {
    let random = ids::new_secret_token("");
    let time = u64::try_from(now).unwrap_or(0) & 0xffff_ffff_ffff;
    format!("ohs_{time:012x}{}", &random[TOKEN_TIME_HEX..])
}

/// The key a token is stored under: `t`, its issue time, `.`, the SHA-256 of the whole
/// token. The time first keeps tokens issued together (a batched handshake issues hundreds)
/// on neighbouring pages of `peer_tokens`: keyed by the hash alone, each lands on a random
/// page, and a batch wrote one page per token into the WAL (docs/PERFORMANCE.md, "Seventh
/// round"). The time is not secret; the hash still covers every random byte. `None` for a
/// token without a time (one issued before these keys, stored under its bare hash).
fn token_key(token: &str) -> Option<String> {
    let time = token
        .strip_prefix("ohs_")?
        .get(..TOKEN_TIME_HEX)
        .filter(|t| t.bytes().all(|b| b.is_ascii_hexdigit()))?;
    Some(format!("t{time}.{}", ids::hash_secret(token)))
}

/// The (peer id, hive id) a presented token is bound to, if it is valid at `now` (not
/// retired by a rotation whose grace period is over).
pub fn authenticate(conn: &Conn<'_>, token: &str, now: i64) -> Result<Option<(String, String)>> {
    let mut st = conn.prepare_cached(
        "SELECT t.peer_id, t.hive_id FROM peer_tokens t
         JOIN peer_groups l ON l.peer_id = t.peer_id AND l.hive_id = t.hive_id
         WHERE t.token_hash = ?1 AND l.state <> 'left'
           AND (t.expires_at IS NULL OR t.expires_at > ?2)",
    )?;
    // Stored under its timed key; a token issued before those keys, under its bare hash.
    for key in token_key(token)
        .into_iter()
        .chain(std::iter::once(ids::hash_secret(token)))
    {
        let found = st
            .query_row(params![key, now], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Token rotation: every token we issued to `peer_id` (all hives) stops authenticating at
/// `expires_at` (a token already expiring earlier keeps its earlier expiry). Returns how many
/// tokens were retired.
pub fn retire_tokens(conn: &Conn<'_>, peer_id: &str, expires_at: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached(
            "UPDATE peer_tokens SET expires_at = ?2
             WHERE peer_id = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        )?
        .execute(params![peer_id, expires_at])?)
}
