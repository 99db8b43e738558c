//! Heartbeat group processing, both directions: what this instance does with the per-group
//! part of a peer's heartbeat, whether it received the heartbeat (`POST /sync/v1/heartbeat`,
//! [`crate::inbound::heartbeat`]) or got it back as the answer to its own
//! ([`crate::heartbeat`]).
//!
//! Owns, for both directions: recording the contact; per group the peer shares with us, its
//! head (`remote_seq`), learning its roster, following its word on which part of its log
//! holds only our own events and how far it holds ours, and deciding whether our link must
//! pull ([`apply`], inside the caller's write transaction); after the commit, realtime changes,
//! relaying released events and asking the links to pull ([`after_commit`]). The one
//! side-specific part, the peer's self-announced endpoint, is the [`Direction`] parameter;
//! the callers keep only what belongs to one side: the receiver's check that the heartbeat
//! comes from the token's peer and its answer, the sender's check of who answered.
//!
//! Invariants:
//! - moves a pull cursor only over a range the peer says holds nothing but our own events
//!   (`skipped`, starting at or before the cursor: never over entries the peer could hold
//!   that we lack, except by the peer's own word, which could only withhold what it could
//!   withhold anyway); everything else is a pull (which moves `last_seq_received` together
//!   with the data); `remote_seq` is advisory;
//! - moves a push cursor only to the peer's pull cursor (`received`): the peer durably
//!   holds what that covers, as a pull's `since` says;
//! - never acts on a group we do not share with the peer right now: groups are matched
//!   against our links with the peer that are not `left`, read in the same transaction
//!   (never a snapshot taken before the round trip, which could name a link the peer has left
//!   meanwhile);
//! - never trusts a key it has not checked: roster keys only through
//!   [`trust::learn_roster`] (first key wins);
//! - no effect outside the transaction before it commits.

use crate::engine::SyncHandle;
use crate::news::Due;
use crate::outbox::Held;
use crate::protocol::{HeartbeatGroup, SkippedRange, normalize_endpoint};
use crate::trust;
use openhive_store::consumers::{self, ConsumerId};
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
    /// Hives where our pull cursor moved over a range of only our own events without a
    /// pull: the peer hears the new cursor (`received`) in our next message to it.
    skipped_over: Vec<String>,
    changes: Vec<Change>,
}

impl Applied {
    /// The hives whose pull cursor moved without a pull, for an answer built in the same
    /// transaction (they are then not news any more).
    pub(crate) fn take_skipped_over(&mut self) -> Vec<String> {
        std::mem::take(&mut self.skipped_over)
    }
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
    let consumer = ConsumerId::peer(peer_id);
    // Every group carries the same few roster entries: each is settled once.
    let mut roster = trust::RosterMemo::default();
    // Only the groups the message carries are looked at (a heartbeat carries the hives that
    // changed, not every shared one: see `crate::news`).
    for (name, g) in groups {
        // (Id and cursor only: a heartbeat carries up to every shared hive.)
        let Some((hive_id, mut cursor)) = sync_state::live_link_cursor_by_name(tx, peer_id, name)?
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
        let learned =
            trust::learn_roster(tx, &hive_id, &g.roster, peer_instance_id, now, &mut roster)?;
        if learned.grew {
            out.grew.push(hive_id.clone());
        }
        let r = learned.released;
        if r.accepted > 0 {
            out.released.push(hive_id.clone());
        }
        out.changes.extend(r.changes);
        sync_state::set_remote_seq(tx, peer_id, &hive_id, g.seq)?;
        if let Some(through) = skip_to(g, cursor)
            && sync_state::advance_received(tx, peer_id, &hive_id, cursor, through, now)?
        {
            tracing::debug!(
                cursor,
                through,
                "peer's log holds only what we sent it; no pull"
            );
            cursor = through;
            out.skipped_over.push(hive_id.clone());
        }
        // The peer holds our log up to its pull cursor: our push cursor may follow.
        if let Some(received) = g.received
            && received > consumers::cursor(tx, &consumer, &hive_id)?
        {
            consumers::advance(tx, &consumer, &hive_id, received, now)?;
        }
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

/// Where the pull cursor `cursor` may move without a pull, if the group names a range of
/// the peer's log holding only entries we originated or relayed to it
/// ([`HeartbeatGroup::skipped`]) and the cursor stands inside it. A cursor before the range
/// stays: what lies between is the peer's own (or ones we acknowledged and may have lost
/// since: an admin resync set the cursor back to pull them again).
fn skip_to(g: &HeartbeatGroup, cursor: i64) -> Option<i64> {
    let s = g.skipped?;
    (s.after <= cursor && cursor < s.through && s.through <= g.seq).then_some(s.through)
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
    for hive in &applied.skipped_over {
        h.inner.news.mark(hive, [&peer_id.to_string()]);
    }
}

/// Our side of a heartbeat message to `peer_id` (sent, or answered): head and roster of the
/// hives shared with it that `due` names (every shared hive for [`Due::All`]), and the range
/// after our push cursor for it that holds only its own events, where our outbox holds one
/// (`held`, see [`crate::outbox::hold_skipped`]).
pub(crate) fn ours(
    c: &Conn<'_>,
    peer_id: &str,
    due: &Due,
    held: &Held,
) -> Result<BTreeMap<String, HeartbeatGroup>, StoreError> {
    let consumer = ConsumerId::peer(peer_id);
    let peer_instance = sync_state::peer_by_id(c, peer_id)?.and_then(|p| p.instance_id);
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
        let head = log::head(c, &hive_id)?;
        let skipped = match &peer_instance {
            Some(inst) => skipped_for(c, held, &consumer, &hive_id, head, inst)?,
            None => None,
        };
        let received = sync_state::pull_cursor(c, peer_id, &hive_id)?;
        let group = HeartbeatGroup {
            seq: head,
            roster: trust::roster(c, &hive_id)?,
            skipped,
            received: (received > 0).then_some(received),
        };
        out.insert(hive_name, group);
    }
    Ok(out)
}

/// How many seqs after our push cursor [`skipped_for`] looks at in the log (a pull page).
const SKIPPED_LOOKAHEAD: i64 = 500;

/// The range after our push cursor for the peer (instance `peer_instance`) that holds only
/// its own events or ones it relayed to us, if there is one: the range our outbox holds
/// back (`held`, valid while the cursor is still where it starts), and beyond it what the
/// log shows up to [`SKIPPED_LOOKAHEAD`] seqs on (our outbox may not have stepped yet:
/// right after a pull ingested the peer's events, the heartbeat would otherwise name
/// nothing and the peer would pull them all back).
fn skipped_for(
    c: &Conn<'_>,
    held: &Held,
    consumer: &ConsumerId,
    hive_id: &str,
    head: i64,
    peer_instance: &str,
) -> Result<Option<SkippedRange>, StoreError> {
    let cursor = consumers::cursor(c, consumer, hive_id)?;
    if cursor >= head {
        return Ok(None);
    }
    let mut through = match held.get(consumer, hive_id) {
        Some((after, through)) if after == cursor => through,
        _ => cursor,
    };
    if through < head {
        through = log::run_known_to(c, hive_id, through, peer_instance, SKIPPED_LOOKAHEAD)?;
    }
    Ok((through > cursor).then_some(SkippedRange {
        after: cursor,
        through,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use openhive_store::{db, keys};

    /// A heartbeat names hives by name; the pulls it asks for come in hive id order (the
    /// order links are batched in), not in name order.
    #[test]
    fn a_heartbeat_asks_for_pulls_in_hive_id_order() {
        let (_dir, store) = crate::temp_store();
        // Names in the opposite order of the hive ids.
        let names = ["zeta", "mu", "delta", "alpha"];
        let applied = store
            .write_blocking(move |tx| -> Result<Applied, StoreError> {
                let peer = shared_hives_named(tx, &names, 0)?;
                let groups = names
                    .iter()
                    .map(|n| (n.to_string(), group(5, None, None)))
                    .collect();
                apply(tx, &peer, "inst_b", &groups, &Direction::Answer, 2)
            })
            .unwrap();
        assert_eq!(applied.pulls, ["hive_0", "hive_1", "hive_2", "hive_3"]);
    }

    /// Every group of a heartbeat carries the same roster entries; each is settled once
    /// per message (`trust::RosterMemo`), with the same outcome per group as alone: each
    /// hive gains the member, and a conflicting key is refused in every group (counted once).
    #[test]
    fn a_roster_entry_repeated_in_every_group_is_learned_for_every_hive() {
        let (_dir, store) = crate::temp_store();
        let c_key = openhive_core::InstanceKey::generate().public().to_base64();
        let d_key = openhive_core::InstanceKey::generate().public().to_base64();
        let other = openhive_core::InstanceKey::generate().public().to_base64();
        let (rosters, conflicts) = store
            .write_blocking(move |tx| -> Result<_, StoreError> {
                let peer = shared_hives(tx, 5, 0)?;
                // D's key is known already; the peer's rosters claim another one for it.
                keys::learn(
                    tx,
                    "inst_dddddddddddd",
                    &openhive_core::PublicKey::from_base64(&d_key).unwrap(),
                    None,
                    1,
                )?;
                let entry = |i: &str, k: &str| crate::protocol::RosterEntry {
                    instance_id: i.into(),
                    signing_key: k.into(),
                };
                let groups = (0..5)
                    .map(|i| {
                        let mut g = group(0, None, None);
                        g.roster = vec![
                            entry("inst_cccccccccccc", &c_key),
                            entry("inst_dddddddddddd", &other),
                            entry("inst_bad", "not a key"),
                        ];
                        (format!("h{i}"), g)
                    })
                    .collect();
                let applied = apply(tx, &peer, "inst_b", &groups, &Direction::Answer, 2)?;
                assert_eq!(applied.grew.len(), 5, "{:?}", applied.grew);
                let rosters: Vec<Vec<(String, String)>> = (0..5)
                    .map(|i| sync_state::roster(tx, &format!("hive_{i}")))
                    .collect::<Result<_, _>>()?;
                Ok((rosters, db::counter_get(tx, sync_state::KEY_CONFLICTS)?))
            })
            .unwrap();
        for r in &rosters {
            assert_eq!(r.len(), 1, "{r:?}");
            assert_eq!(r[0].0, "inst_cccccccccccc");
        }
        assert_eq!(conflicts, 1);
    }

    fn event(hive: &str, n: i64) -> openhive_core::Event {
        openhive_core::Event {
            id: format!("evt_{hive}_{n}"),
            hive: "h".into(),
            event_type: openhive_core::EventType::PostCreated,
            origin_instance_id: "inst_self".into(),
            origin_ts: n,
            payload: "{}".into(),
            signature: String::new(),
        }
    }

    /// A peer `b` sharing the hives `hive_0 ..` (named `h0 ..`), each with `events` entries
    /// of ours in its log; returns the peer's id.
    fn shared_hives(tx: &Conn<'_>, n: usize, events: i64) -> Result<String, StoreError> {
        let names: Vec<String> = (0..n).map(|i| format!("h{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        shared_hives_named(tx, &names, events)
    }

    /// As [`shared_hives`], the hive `hive_i` named `names[i]`.
    fn shared_hives_named(
        tx: &Conn<'_>,
        names: &[&str],
        events: i64,
    ) -> Result<String, StoreError> {
        let (peer, _) = sync_state::upsert_configured_peer(
            tx,
            "b",
            "http://b/sync/v1",
            sync_state::PeerSource::Api,
            1,
        )?;
        for (i, name) in names.iter().enumerate() {
            let hive = format!("hive_{i}");
            log::create(tx, &hive)?;
            for e in 1..=events {
                log::append(tx, &hive, &event(&hive, e), None, 1)?;
            }
            sync_state::ensure_group(tx, &hive, name, "inst_self", 1)?;
            sync_state::ensure_link(tx, &peer.id, &hive, sync_state::LinkState::Active)?;
        }
        Ok(peer.id)
    }

    fn group(seq: i64, skipped: Option<(i64, i64)>, received: Option<i64>) -> HeartbeatGroup {
        HeartbeatGroup {
            seq,
            roster: Vec::new(),
            skipped: skipped.map(|(after, through)| SkippedRange { after, through }),
            received,
        }
    }

    /// A range of the peer's log that holds only our own events moves our pull cursor over
    /// it without a pull, when the cursor stands inside it; a cursor before the range (an
    /// admin resync set it back), or a range past the peer's head, pulls as before.
    #[test]
    fn a_range_of_only_our_events_moves_the_pull_cursor_without_a_pull() {
        let (_dir, store) = crate::temp_store();
        let (applied, cursors) = store
            .write_blocking(|tx| -> Result<_, StoreError> {
                let peer = shared_hives(tx, 4, 0)?;
                // hive_3's cursor stands at 2 (it pulled that far).
                sync_state::advance_received(tx, &peer, "hive_3", 0, 2, 1)?;
                let groups: BTreeMap<String, HeartbeatGroup> = [
                    ("h0", group(5, Some((0, 5)), None)),
                    ("h1", group(5, Some((3, 5)), None)),
                    ("h2", group(5, Some((0, 9)), None)),
                    ("h3", group(7, Some((1, 4)), None)),
                ]
                .into_iter()
                .map(|(n, g)| (n.to_string(), g))
                .collect();
                let mut applied = apply(tx, &peer, "inst_b", &groups, &Direction::Answer, 2)?;
                let cursors = (0..4)
                    .map(|i| sync_state::pull_cursor(tx, &peer, &format!("hive_{i}")))
                    .collect::<Result<Vec<_>, _>>()?;
                let over = applied.take_skipped_over();
                Ok(((applied.pulls, over), cursors))
            })
            .unwrap();
        assert_eq!(cursors, [5, 0, 0, 4]);
        let (pulls, over) = applied;
        assert_eq!(pulls, ["hive_1", "hive_2", "hive_3"]);
        assert_eq!(over, ["hive_0", "hive_3"]);
    }

    /// The peer's pull cursor (`received`) moves our push cursor for it forward, never back
    /// and never past our head.
    #[test]
    fn the_peers_pull_cursor_moves_our_push_cursor() {
        let (_dir, store) = crate::temp_store();
        let sent = store
            .write_blocking(|tx| -> Result<_, StoreError> {
                let peer = shared_hives(tx, 3, 4)?;
                let consumer = ConsumerId::peer(&peer);
                consumers::advance(tx, &consumer, "hive_1", 3, 1)?;
                let groups: BTreeMap<String, HeartbeatGroup> = [
                    ("h0", group(0, None, Some(2))),
                    ("h1", group(0, None, Some(1))),
                    ("h2", group(0, None, Some(99))),
                ]
                .into_iter()
                .map(|(n, g)| (n.to_string(), g))
                .collect();
                apply(tx, &peer, "inst_b", &groups, &Direction::Answer, 2)?;
                (0..3)
                    .map(|i| consumers::cursor(tx, &consumer, &format!("hive_{i}")))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        assert_eq!(sent, [2, 3, 4]);
    }

    /// Our side names the range after our push cursor that holds only the peer's events:
    /// the one our outbox holds back while the cursor is still where it starts, and what
    /// the log shows beyond (the outbox may not have stepped yet); and how far we pulled.
    #[test]
    fn our_groups_name_the_peers_own_run_and_our_pull_cursor() {
        let (_dir, store) = crate::temp_store();
        let held = Held::default();
        let peer = store
            .write_blocking(|tx| -> Result<_, StoreError> {
                let peer = shared_hives(tx, 4, 0)?;
                let p =
                    sync_state::upsert_handshake_peer(tx, "inst_b", "B", "http://b/sync/v1", 1)?;
                assert_eq!(p, peer);
                // hive_0 and hive_1: 1..=3 and 5..=6 are the peer's, 4 is ours.
                // hive_2: all the peer's. hive_3: all ours.
                for i in 0..4 {
                    let hive = format!("hive_{i}");
                    for n in 1..=6 {
                        let mut e = event(&hive, n);
                        if i == 2 || (i < 2 && n != 4) {
                            e.origin_instance_id = "inst_b".into();
                        }
                        log::append(tx, &hive, &e, None, 1)?;
                    }
                }
                sync_state::advance_received(tx, &peer, "hive_0", 0, 3, 1)?;
                Ok(peer)
            })
            .unwrap();
        let consumer = ConsumerId::peer(&peer);
        // The outbox held hive_2's first four; the log shows the rest.
        held.hold(&consumer, "hive_2", 0, 4);
        let sent = store
            .read_blocking(|c| ours(c, &peer, &Due::All, &held))
            .unwrap();
        assert_eq!(sent["h0"], group(6, Some((0, 3)), Some(3)));
        assert_eq!(sent["h1"], group(6, Some((0, 3)), None));
        assert_eq!(sent["h2"], group(6, Some((0, 6)), None));
        assert_eq!(sent["h3"], group(6, None, None));
        // Past our own event, hive_1 names the rest once the push cursor is there; a hint
        // left from before the cursor moved counts for nothing.
        held.hold(&consumer, "hive_1", 0, 6);
        let c2 = consumer.clone();
        store
            .write_blocking(move |tx| consumers::advance(tx, &c2, "hive_1", 4, 2))
            .unwrap();
        let sent = store
            .read_blocking(|c| ours(c, &peer, &Due::All, &held))
            .unwrap();
        assert_eq!(sent["h1"], group(6, Some((4, 6)), None));
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
