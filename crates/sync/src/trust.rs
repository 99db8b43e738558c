//! Roster-based key trust, shared by handshakes (both sides) and heartbeats.
//!
//! A peer we hold a token with vouches for the keys of the instances in its roster. Keys are
//! first-seen-wins (`keys::learn`): a roster entry claiming another key for a known instance
//! is refused, logged and counted, never swapped in. Learning a key releases the events that
//! waited for it.

use crate::protocol::{MAX_KEY_ROTATIONS, RosterEntry};
use openhive_core::{PublicKey, RotationStatement};
use openhive_store::Conn;
use openhive_store::error::Result;
use openhive_store::ingest::{self, BatchReport};
use openhive_store::{db, keys, sync_state};
use std::collections::HashMap;

/// What [`learn_roster`] did.
#[derive(Debug, Default)]
pub struct RosterLearned {
    /// What releasing the events that waited for a newly learned key changed.
    pub released: BatchReport,
    /// The group's roster gained a member (news for the hive's other peers).
    pub grew: bool,
}

/// What the roster entries seen so far in one transaction came to, by (instance id, key as
/// sent): every group of a message (a heartbeat, a batched handshake) carries the same few
/// entries, and parsing a key and reading its instance's chain cost tens of µs each, so each
/// distinct entry is settled once per transaction. Only valid while no key chain changes
/// otherwise than through [`learn_roster`] (a group carrying rotation statements starts a
/// new one).
#[derive(Debug, Default)]
pub struct RosterMemo {
    settled: HashMap<(String, String), Settled>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// The key is the instance's (known, or learned in this transaction).
    Known,
    /// Not taken: a malformed entry, or a key conflicting with the instance's chain.
    Ignored,
}

/// Learns the keys of `roster` (vouched for by `from`), adds them to the group's roster and
/// releases events that waited for a newly learned key. `memo` carries what earlier groups
/// of the same transaction settled.
pub fn learn_roster(
    conn: &Conn<'_>,
    hive_id: &str,
    roster: &[RosterEntry],
    from: &str,
    now: i64,
    memo: &mut RosterMemo,
) -> Result<RosterLearned> {
    let mut total = BatchReport::default();
    let mut grew = false;
    for e in roster {
        let seen = (e.instance_id.clone(), e.signing_key.clone());
        match memo.settled.get(&seen) {
            Some(Settled::Known) => {
                grew |= sync_state::add_member(conn, hive_id, &e.instance_id)?;
                continue;
            }
            Some(Settled::Ignored) => continue,
            None => {}
        }
        if openhive_core::ids::instance_suffix(&e.instance_id).is_none() {
            memo.settled.insert(seen, Settled::Ignored);
            continue;
        }
        let Ok(key) = PublicKey::from_base64(&e.signing_key) else {
            tracing::warn!(peer = from, instance = %e.instance_id, "roster entry with a malformed key ignored");
            memo.settled.insert(seen, Settled::Ignored);
            continue;
        };
        let learned = keys::learn(conn, &e.instance_id, &key, Some(from), now)?;
        memo.settled.insert(
            seen,
            match learned {
                keys::Learned::Conflict => Settled::Ignored,
                keys::Learned::New | keys::Learned::AlreadyKnown => Settled::Known,
            },
        );
        match learned {
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

/// What [`learn_rotations`] did.
#[derive(Debug, Default)]
pub struct RotationsLearned {
    /// Statements new here (to relay to the other peers).
    pub new: Vec<RotationStatement>,
    pub known: usize,
    /// `(instance id, reason)` of each refused statement.
    pub refused: Vec<(String, String)>,
}

/// Checks and stores rotation statements received from `from` (a handshake, a batch of
/// events, an announcement), inside the caller's write transaction: both signatures must
/// verify and the statement must continue the instance's chain (`keys::accept_rotation`).
/// A refusal is logged and counted as a key conflict. Statements about this instance
/// (`me`) are never taken from a peer: our own chain is what we signed; one we did not sign
/// means our key was stolen, and is logged loudly.
pub fn learn_rotations(
    conn: &Conn<'_>,
    statements: &[RotationStatement],
    from: &str,
    me: &str,
    now: i64,
) -> Result<RotationsLearned> {
    let mut out = RotationsLearned::default();
    for s in statements.iter().take(MAX_KEY_ROTATIONS) {
        if s.instance_id == me {
            let ours = keys::chain_statements(conn, me)?;
            if ours.contains(s) {
                out.known += 1;
            } else {
                tracing::error!(
                    peer = from,
                    "a peer relays a rotation of THIS instance's key that this instance did not \
                     make: the key may be compromised; ignored"
                );
                db::counter_add(conn, sync_state::KEY_CONFLICTS, 1)?;
                out.refused.push((
                    s.instance_id.clone(),
                    "a rotation of the receiver's own key".into(),
                ));
            }
            continue;
        }
        match keys::accept_rotation(conn, s, Some(from), now)? {
            keys::Rotation::Rotated => {
                tracing::info!(peer = from, instance = %s.instance_id, at = s.at, "learned a key rotation");
                out.new.push(s.clone());
            }
            keys::Rotation::Unanchored => out.new.push(s.clone()),
            keys::Rotation::Known => out.known += 1,
            keys::Rotation::Refused(reason) => {
                tracing::warn!(peer = from, instance = %s.instance_id, %reason, "rotation statement refused");
                db::counter_add(conn, sync_state::KEY_CONFLICTS, 1)?;
                out.refused.push((s.instance_id.clone(), reason));
            }
        }
    }
    Ok(out)
}

/// The rotation statements to send with a handshake for `hive_id`: our own chain and those
/// of the group's roster.
pub fn handshake_rotations(
    conn: &Conn<'_>,
    hive_id: &str,
    me: &str,
) -> Result<Vec<RotationStatement>> {
    let members: Vec<String> = sync_state::roster(conn, hive_id)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut out = keys::statements_for(
        conn,
        std::iter::once(me).chain(members.iter().map(String::as_str)),
    )?;
    out.truncate(MAX_KEY_ROTATIONS);
    Ok(out)
}

/// The rotation statements to send with a batch of events: the chains of their origins.
pub fn batch_rotations(
    conn: &Conn<'_>,
    events: &[openhive_core::Event],
) -> Result<Vec<RotationStatement>> {
    let mut out = keys::statements_for(conn, events.iter().map(|e| e.origin_instance_id.as_str()))?;
    out.truncate(MAX_KEY_ROTATIONS);
    Ok(out)
}
