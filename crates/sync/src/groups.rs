//! Heartbeat group processing, both directions: what this instance does with the per-group
//! part of a peer's heartbeat, whether it received the heartbeat (`POST /sync/v1/heartbeat`,
//! [`crate::inbound::heartbeat`]) or got it back as the answer to its own
//! ([`crate::heartbeat`]).
//!
//! Owns, for both directions: recording the contact; per group the peer shares with us, its
//! head (`remote_seq`), learning its roster, and deciding whether our link must pull
//! ([`apply`], inside the caller's write transaction); after the commit, realtime changes,
//! relaying released events and asking the links to pull ([`after_commit`]). The one
//! side-specific part, the peer's self-announced endpoint, is the [`Direction`] parameter;
//! the callers keep only what belongs to one side: the receiver's check that the heartbeat
//! comes from the token's peer and its answer, the sender's check of who answered.
//!
//! Invariants:
//! - never advances a cursor: it only asks the link to pull (the pull moves
//!   `last_seq_received` together with the data); `remote_seq` is advisory;
//! - never acts on a group we do not share with the peer right now: groups are matched
//!   against our links with the peer that are not `left`, read in the same transaction
//!   (never a snapshot taken before the round trip, which could name a link the peer has left
//!   meanwhile);
//! - never trusts a key it has not checked: roster keys only through
//!   [`trust::learn_roster`] (first key wins);
//! - no effect outside the transaction before it commits.

use crate::engine::SyncHandle;
use crate::news::Due;
use crate::protocol::{HeartbeatGroup, normalize_endpoint};
use crate::trust;
use openhive_store::materialize::Change;
use openhive_store::sync_state;
use openhive_store::{Conn, StoreError, log};
use std::collections::BTreeMap;

/// Which way the heartbeat went.
#[derive(Debug, Clone)]
pub(crate) enum Direction {
    /// We received it. `announced_endpoint` is where the sender says it listens now (an
    /// instance restarted on another address is found again); it is adopted unless another
    /// peer row already uses it. Ignored unless an http(s) URL.
    Received { announced_endpoint: Option<String> },
    /// It is the answer to ours. We reached the peer at its stored endpoint, which is
    /// therefore authoritative: the endpoint it announces is not adopted (it may be one we
    /// cannot reach, such as its bind address behind a proxy).
    Answer,
}

impl Direction {
    /// The direction of a heartbeat we received announcing `endpoint`.
    pub fn received(endpoint: Option<&str>) -> Direction {
        Direction::Received {
            announced_endpoint: endpoint
                .filter(|e| openhive_core::validate::url(e).is_ok())
                .map(normalize_endpoint),
        }
    }
}

/// What [`apply`] found.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Hives whose roster grew (news for their other peers).
    grew: Vec<String>,
    /// Hives where the peer is ahead of our pull cursor.
    pulls: Vec<String>,
    /// Hives where a learned key released waiting events.
    released: Vec<String>,
    changes: Vec<Change>,
}

/// Applies the groups of a heartbeat from the peer `peer_id` (instance `peer_instance_id`),
/// inside the caller's write transaction.
pub(crate) fn apply(
    tx: &Conn<'_>,
    peer_id: &str,
    peer_instance_id: &str,
    groups: &BTreeMap<String, HeartbeatGroup>,
    direction: &Direction,
    now: i64,
) -> Result<Applied, StoreError> {
    sync_state::record_contact(tx, peer_id, now)?;
    if let Direction::Received {
        announced_endpoint: Some(e),
    } = direction
        && sync_state::peer_by_endpoint(tx, e)?.is_none()
    {
        tracing::info!(peer = %peer_instance_id, endpoint = %e, "peer moved to a new sync endpoint");
        sync_state::update_peer(tx, peer_id, None, Some(e), now)?;
    }
    let mut out = Applied::default();
    // Only the groups the message carries are looked at (a heartbeat carries the hives that
    // changed, not every shared one: see `crate::news`).
    for (name, g) in groups {
        // (Id and cursor only: a heartbeat carries up to every shared hive.)
        let Some((hive_id, cursor)) = sync_state::live_link_cursor_by_name(tx, peer_id, name)?
        else {
            continue;
        };
        let _span = tracing::info_span!(
            "sync.heartbeat.group",
            peer = %peer_instance_id,
            hive = %name,
            seq = g.seq
        )
        .entered();
        let learned = trust::learn_roster(tx, &hive_id, &g.roster, peer_instance_id, now)?;
        if learned.grew {
            out.grew.push(hive_id.clone());
        }
        let r = learned.released;
        if r.accepted > 0 {
            out.released.push(hive_id.clone());
        }
        out.changes.extend(r.changes);
        sync_state::set_remote_seq(tx, peer_id, &hive_id, g.seq)?;
        if g.seq > cursor {
            tracing::debug!(cursor, "peer is ahead of our cursor; pulling");
            out.pulls.push(hive_id);
        }
    }
    // Groups come by name; pulls are asked for by hive id, so that the links they queue are
    // batched with their neighbours in key order (see `Scheduler::reconcile`).
    out.pulls.sort_unstable();
    Ok(out)
}

/// The effects of applied groups, after their commit: realtime changes, relay of released
/// events to the hives' links, pulls where the peer is ahead.
pub(crate) fn after_commit(h: &SyncHandle, peer_id: &str, applied: Applied) {
    h.emit(applied.changes);
    for hive in &applied.grew {
        h.mark_news(hive);
    }
    for hive in &applied.released {
        h.notify(hive);
    }
    for hive in &applied.pulls {
        h.request_pull(peer_id, hive);
    }
}

/// Our side of a heartbeat message to `peer_id` (sent, or answered): head and roster of the
/// hives shared with it that `due` names (every shared hive for [`Due::All`]).
pub(crate) fn ours(
    c: &Conn<'_>,
    peer_id: &str,
    due: &Due,
) -> Result<BTreeMap<String, HeartbeatGroup>, StoreError> {
    // (hive id, hive name) of the live links `due` names; no link row is built (no token
    // opened): a heartbeat costs the hives it carries.
    let links: Vec<(String, String)> = match due {
        Due::All => sync_state::live_hives_of_peer(c, peer_id)?,
        Due::Some(hives) => {
            let mut v = Vec::with_capacity(hives.len());
            for h in hives {
                if let Some(name) = sync_state::live_hive_of_peer(c, peer_id, h)? {
                    v.push((h.clone(), name));
                }
            }
            v
        }
    };
    let mut out = BTreeMap::new();
    for (hive_id, hive_name) in links {
        let group = HeartbeatGroup {
            seq: log::head(c, &hive_id)?,
            roster: trust::roster(c, &hive_id)?,
        };
        out.insert(hive_name, group);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A heartbeat names hives by name; the pulls it asks for come in hive id order (the
    /// order links are batched in), not in name order.
    #[test]
    fn a_heartbeat_asks_for_pulls_in_hive_id_order() {
        let (_dir, store) = crate::temp_store();
        let applied = store
            .write_blocking(|tx| -> Result<Applied, StoreError> {
                let (peer, _) = sync_state::upsert_configured_peer(
                    tx,
                    "b",
                    "http://b/sync/v1",
                    sync_state::PeerSource::Api,
                    1,
                )?;
                let mut groups = BTreeMap::new();
                // Names in the opposite order of the hive ids.
                for (i, name) in ["zeta", "mu", "delta", "alpha"].iter().enumerate() {
                    let hive = format!("hive_{i}");
                    log::create(tx, &hive)?;
                    sync_state::ensure_group(tx, &hive, name, "inst_self", 1)?;
                    sync_state::ensure_link(tx, &peer.id, &hive, sync_state::LinkState::Active)?;
                    let group = HeartbeatGroup {
                        seq: 5,
                        roster: Vec::new(),
                    };
                    groups.insert((*name).to_string(), group);
                }
                apply(tx, &peer.id, "inst_b", &groups, &Direction::Answer, 2)
            })
            .unwrap();
        assert_eq!(applied.pulls, ["hive_0", "hive_1", "hive_2", "hive_3"]);
    }

    #[test]
    fn only_a_received_heartbeat_announces_an_endpoint() {
        let d = Direction::received(Some("http://10.0.0.9:4000/sync/v1/"));
        assert!(matches!(
            d,
            Direction::Received { announced_endpoint: Some(ref e) } if e == "http://10.0.0.9:4000/sync/v1"
        ));
        for bad in [None, Some("ftp://x"), Some("not a url")] {
            assert!(matches!(
                Direction::received(bad),
                Direction::Received {
                    announced_endpoint: None
                }
            ));
        }
    }
}
