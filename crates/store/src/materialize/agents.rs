//! Remote agent snapshots: the `agents` rows (`is_local = 0`) cached from the agent
//! references events carry (`author`, `owner`, `updated_by`, the `agent` of membership and
//! moderator changes).
//!
//! Invariants:
//! - the newest snapshot by event version (`snapshot_version`) wins, whatever the arrival
//!   order; `created_at` is the earliest and `updated_at` the latest `origin_ts` of the
//!   events that named the agent (functions of the event set);
//! - a local agent's row (`is_local = 1`) is authoritative and never written here;
//! - the decision is made inside the one upsert below (no read-then-write), so there is no
//!   pure rule to test apart from the database: `tests/materialize_agents.rs` covers it.

use super::Ctx;
use crate::error::Result;
use crate::params;
use openhive_core::payload::AgentRef;

/// Caches a remote agent's snapshot; the newest snapshot (by event version) wins. Local
/// agents are authoritative here and never overwritten.
pub(super) fn upsert_agent_snapshot(cx: &Ctx<'_>, a: &AgentRef) -> Result<()> {
    // created_at = the earliest event that named the agent, updated_at = the latest: both
    // functions of the event set, like the snapshot itself (newest version wins).
    cx.conn
        .prepare_cached(
            "INSERT INTO agents (id, name, instance_id, is_local, avatar_url, snapshot_version,
                                 created_at, updated_at)
             VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?6)
             ON CONFLICT(id) DO UPDATE SET
               name = CASE WHEN excluded.snapshot_version > agents.snapshot_version
                           THEN excluded.name ELSE agents.name END,
               avatar_url = CASE WHEN excluded.snapshot_version > agents.snapshot_version
                                 THEN excluded.avatar_url ELSE agents.avatar_url END,
               snapshot_version = GREATEST(agents.snapshot_version, excluded.snapshot_version),
               created_at = LEAST(agents.created_at, excluded.created_at),
               updated_at = GREATEST(agents.updated_at, excluded.updated_at)
             WHERE agents.is_local = 0",
        )?
        .execute(params![
            a.agent_id,
            a.name,
            a.instance_id,
            a.avatar_url,
            cx.version(),
            cx.ev.origin_ts
        ])?;
    Ok(())
}
