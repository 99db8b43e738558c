//! Roster-based key trust, shared by handshakes (both sides) and heartbeats.
//!
//! A peer we hold a token with vouches for the keys of the instances in its roster. Keys are
//! first-seen-wins (`keys::learn`): a roster entry claiming another key for a known instance
//! is refused, logged and counted, never swapped in. Learning a key releases the events that
//! waited for it.

use crate::protocol::RosterEntry;
use openhive_core::PublicKey;
use openhive_store::Conn;
use openhive_store::error::Result;
use openhive_store::ingest::{self, BatchReport};
use openhive_store::{db, keys, sync_state};

/// What [`learn_roster`] did.
#[derive(Debug, Default)]
pub struct RosterLearned {
    /// What releasing the events that waited for a newly learned key changed.
    pub released: BatchReport,
    /// The group's roster gained a member (news for the hive's other peers).
    pub grew: bool,
}

/// Learns the keys of `roster` (vouched for by `from`), adds them to the group's roster and
/// releases events that waited for a newly learned key.
pub fn learn_roster(
    conn: &Conn<'_>,
    hive_id: &str,
    roster: &[RosterEntry],
    from: &str,
    now: i64,
) -> Result<RosterLearned> {
    let mut total = BatchReport::default();
    let mut grew = false;
    for e in roster {
        if openhive_core::ids::instance_suffix(&e.instance_id).is_none() {
            continue;
        }
        let Ok(key) = PublicKey::from_base64(&e.signing_key) else {
            tracing::warn!(peer = from, instance = %e.instance_id, "roster entry with a malformed key ignored");
            continue;
        };
        match keys::learn(conn, &e.instance_id, &key, Some(from), now)? {
            keys::Learned::New => {
                grew |= sync_state::add_member(conn, hive_id, &e.instance_id)?;
                tracing::info!(peer = from, instance = %e.instance_id, "learned instance key from roster");
                let r = ingest::release_unverified(conn, &e.instance_id, now)?;
                total.accepted += r.accepted;
                total.duplicates += r.duplicates;
                total.rejected += r.rejected;
                total.changes.extend(r.changes);
            }
            keys::Learned::AlreadyKnown => {
                grew |= sync_state::add_member(conn, hive_id, &e.instance_id)?;
            }
            keys::Learned::Conflict => {
                tracing::warn!(
                    peer = from,
                    instance = %e.instance_id,
                    "roster claims a different key for a known instance; keeping the first key"
                );
                db::counter_add(conn, sync_state::KEY_CONFLICTS, 1)?;
            }
        }
    }
    Ok(RosterLearned {
        released: total,
        grew,
    })
}

/// The roster of a group as sent on the wire.
pub fn roster(conn: &Conn<'_>, hive_id: &str) -> Result<Vec<RosterEntry>> {
    Ok(sync_state::roster(conn, hive_id)?
        .into_iter()
        .map(|(instance_id, signing_key)| RosterEntry {
            instance_id,
            signing_key,
        })
        .collect())
}
