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
//!   pure rule to test apart from the database: `tests/materialize_agents.rs` covers it;
//! - within a batch of remote events ([`super::Batch`]), the first reference to an agent
//!   is written at once (its row exists for everything after it, e.g. karma) and the later
//!   ones are merged in memory and written once by [`AgentSnapshots::flush`] before the
//!   batch's transaction ends. The upsert is a merge (newest version's name and avatar, the
//!   greatest version, the least `created_at`, the greatest `updated_at`), so one upsert of
//!   the merged reference leaves the row as the sequence of upserts would. Nothing in a
//!   batch reads those columns between the two.

use super::Ctx;
use crate::engine::Conn;
use crate::error::Result;
use crate::params;
use openhive_core::payload::AgentRef;
use std::collections::HashMap;

/// Caches a remote agent's snapshot; the newest snapshot (by event version) wins. Local
/// agents are authoritative here and never overwritten.
pub(super) fn upsert_agent_snapshot(cx: &Ctx<'_>, a: &AgentRef) -> Result<()> {
    let version = cx.version();
    if let Some(batch) = cx.batch {
        let batch = &mut batch.borrow_mut().snapshots;
        if let Some(merged) = batch.merged.get_mut(&a.agent_id) {
            merged.merge(a, version, cx.ev.origin_ts);
            return Ok(());
        }
        batch.merged.insert(
            a.agent_id.clone(),
            Merged {
                reference: None,
                created_at: cx.ev.origin_ts,
                updated_at: cx.ev.origin_ts,
            },
        );
    }
    write(cx.conn, a, &version, cx.ev.origin_ts, cx.ev.origin_ts)
}

/// The snapshot upserts of one batch of remote events, merged per agent (see the module's
/// invariants). Dropping it unflushed loses the merged references: flush it in the same
/// transaction, before it ends.
#[derive(Debug, Default)]
pub(super) struct AgentSnapshots {
    merged: HashMap<String, Merged>,
}

/// What the references to one agent after its first in the batch add up to.
#[derive(Debug)]
struct Merged {
    /// The newest reference merged and its version; `None` until one is.
    reference: Option<(AgentRef, String)>,
    created_at: i64,
    updated_at: i64,
}

impl Merged {
    fn merge(&mut self, a: &AgentRef, version: String, ts: i64) {
        self.created_at = self.created_at.min(ts);
        self.updated_at = self.updated_at.max(ts);
        if self.reference.as_ref().is_none_or(|(_, v)| version > *v) {
            self.reference = Some((a.clone(), version));
        }
    }
}

impl AgentSnapshots {
    /// Writes the merged references (one upsert per agent referenced more than once).
    pub fn flush(self, conn: &Conn<'_>) -> Result<()> {
        for m in self.merged.into_values() {
            if let Some((a, version)) = &m.reference {
                write(conn, a, version, m.created_at, m.updated_at)?;
            }
        }
        Ok(())
    }
}

fn write(
    conn: &Conn<'_>,
    a: &AgentRef,
    version: &str,
    created_at: i64,
    updated_at: i64,
) -> Result<()> {
    // created_at = the earliest event that named the agent, updated_at = the latest: both
    // functions of the event set, like the snapshot itself (newest version wins).
    conn.prepare_cached(
        "INSERT INTO agents (id, name, instance_id, is_local, avatar_url, snapshot_version,
                             created_at, updated_at)
         VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7)
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
        version,
        created_at,
        updated_at
    ])?;
    Ok(())
}
