#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use openhive_store::sync_state::*;
use openhive_store::{Conn, Store, StoreError, hives};

fn store() -> (common::Scratch, Store) {
    common::open_store()
}

fn setup(conn: &Conn<'_>) -> (String, String) {
    let hive = hives::ensure_log(conn, "general").unwrap();
    ensure_group(conn, &hive, "general", "inst_self", 1).unwrap();
    let (p, created) =
        upsert_configured_peer(conn, "b", "http://b/sync/v1", PeerSource::Api, 1).unwrap();
    assert!(created);
    ensure_link(conn, &p.id, &hive, LinkState::Handshaking).unwrap();
    (hive, p.id)
}

#[test]
fn groups_and_roster() {
    let (_d, s) = store();
    s.write_blocking(|c| {
        let (hive, _) = setup(c);
        assert!(!ensure_group(c, &hive, "general", "inst_self", 2)?);
        assert_eq!(group_by_name(c, "general")?.unwrap().hive_id, hive);
        // Roster only lists members with a known key.
        assert!(roster(c, &hive)?.is_empty());
        let k = openhive_core::InstanceKey::generate().public();
        openhive_store::keys::learn(c, "inst_self", &k, None, 1)?;
        assert_eq!(roster(c, &hive)?, vec![("inst_self".into(), k.to_base64())]);
        assert_eq!(list_groups(c)?.len(), 1);
        assert!(delete_group(c, &hive)?);
        assert!(group_by_name(c, "general")?.is_none());
        assert!(live_links(c)?.is_empty());
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

/// Tokens are stored in the order they were issued (their keys start with the issue time),
/// never in the clear; a token stored under its bare hash, as before those keys, still
/// authenticates.
#[test]
fn tokens_are_stored_in_issue_order_and_older_ones_still_work() {
    let (_d, s) = store();
    s.write_blocking(|c| {
        let (hive, peer) = setup(c);
        let mut issued = Vec::new();
        for (i, name) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
            let other = hives::ensure_log(c, name)?;
            ensure_link(c, &peer, &other, LinkState::Handshaking)?;
            issued.push(issue_token(c, &peer, &other, 1_000 + 7 * i as i64)?);
        }
        let keys: Vec<String> = c
            .prepare("SELECT token_hash FROM peer_tokens ORDER BY token_hash")?
            .query_map(openhive_store::params![], |r| r.get::<_, String>(0))?
            .collect::<std::result::Result<_, _>>()?;
        assert_eq!(keys.len(), issued.len());
        for (key, token) in keys.iter().zip(&issued) {
            assert!(
                key.ends_with(&openhive_core::ids::hash_secret(token)),
                "stored in issue order: {keys:?}"
            );
            assert!(!key.contains(&token[4..]), "never in the clear");
            assert_eq!(token.len(), 4 + 64, "as long as before");
        }
        // A token issued before timed keys: stored under its bare hash.
        let old = openhive_core::ids::new_secret_token("ohs_");
        c.execute(
            "INSERT INTO peer_tokens (token_hash, peer_id, hive_id, created_at)
             VALUES (?1, ?2, ?3, 1)",
            openhive_store::params![openhive_core::ids::hash_secret(&old), peer, hive],
        )?;
        assert_eq!(
            authenticate(c, &old, 5)?,
            Some((peer.clone(), hive.clone()))
        );
        assert!(authenticate(c, &issued[0], 5)?.is_some());
        // A forged time in front of a real token's hash proves nothing.
        let forged = format!("ohs_{}{}", "0".repeat(12), &issued[0][16..]);
        assert!(authenticate(c, &forged, 5)?.is_none());
        assert!(authenticate(c, "ohs_", 5)?.is_none());
        assert!(authenticate(c, "ohs_é", 5)?.is_none());
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

/// Token rotation: retired tokens work until their expiry, then not; they do not count
/// against the two kept, and go at the next issue once expired.
#[test]
fn retired_tokens_expire_after_their_grace_period() {
    let (_d, s) = store();
    s.write_blocking(|c| {
        let (hive, peer) = setup(c);
        let t1 = issue_token(c, &peer, &hive, 10)?;
        let t2 = issue_token(c, &peer, &hive, 11)?;
        assert_eq!(retire_tokens(c, &peer, 100)?, 2);
        // An earlier expiry is kept; a later rotation cannot extend it.
        assert_eq!(retire_tokens(c, &peer, 200)?, 0);
        assert!(
            authenticate(c, &t1, 99)?.is_some(),
            "within the grace period"
        );
        assert!(authenticate(c, &t1, 100)?.is_none(), "after it");
        // Two fresh tokens after the rotation: the retired ones stay until they expire.
        let t3 = issue_token(c, &peer, &hive, 50)?;
        let t4 = issue_token(c, &peer, &hive, 51)?;
        for t in [&t1, &t2, &t3, &t4] {
            assert!(authenticate(c, t, 60)?.is_some());
        }
        // Once expired they are removed at the next issue; the two newest others stay.
        let t5 = issue_token(c, &peer, &hive, 150)?;
        let n: i64 = c.query_row("SELECT COUNT(*) FROM peer_tokens", (), |r| r.get(0))?;
        assert_eq!(n, 2);
        assert!(
            authenticate(c, &t3, 150)?.is_none(),
            "pruned: not among the two newest"
        );
        assert!(authenticate(c, &t4, 150)?.is_some());
        assert!(authenticate(c, &t5, 150)?.is_some());
        assert!(authenticate(c, &t2, 150)?.is_none());
        // A shorter grace shortens an earlier one.
        assert_eq!(retire_tokens(c, &peer, 160)?, 2);
        assert!(authenticate(c, &t5, 160)?.is_none());
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

#[test]
fn tokens_are_hashed_bound_and_two_are_kept() {
    let (_d, s) = store();
    s.write_blocking(|c| {
        let (hive, peer) = setup(c);
        let t1 = issue_token(c, &peer, &hive, 5)?;
        let t2 = issue_token(c, &peer, &hive, 5)?;
        let t3 = issue_token(c, &peer, &hive, 5)?;
        assert!(authenticate(c, &t1, 5)?.is_none(), "oldest pruned");
        assert_eq!(authenticate(c, &t2, 5)?, Some((peer.clone(), hive.clone())));
        assert_eq!(authenticate(c, &t3, 5)?, Some((peer.clone(), hive.clone())));
        assert!(authenticate(c, "ohs_bogus", 5)?.is_none());
        // Only hashes are stored.
        let n: i64 = c.query_row(
            "SELECT COUNT(*) FROM peer_tokens WHERE token_hash = ?1",
            [&t3],
            |r| r.get(0),
        )?;
        assert_eq!(n, 0);
        mark_left(c, &peer, &hive)?;
        assert!(authenticate(c, &t3, 5)?.is_none());
        assert_eq!(link(c, &peer, &hive)?.unwrap().state, LinkState::Left);
        assert!(live_links(c)?.is_empty());
        // Re-adding reopens the link.
        assert!(ensure_link(c, &peer, &hive, LinkState::Handshaking)?);
        assert!(!ensure_link(c, &peer, &hive, LinkState::Handshaking)?);
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

#[test]
fn cursors_only_move_forward_and_push_needs_contiguity() {
    let (_d, s) = store();
    s.write_blocking(|c| {
        let (hive, peer) = setup(c);
        // The outbox cursor never runs ahead of the log: with an empty log it stays at 0.
        advance_sent(c, &peer, &hive, 10, 1)?;
        assert_eq!(link(c, &peer, &hive)?.unwrap().last_seq_sent, 0);
        c.execute(
            "UPDATE hive_logs SET head_seq = 12 WHERE hive_id = ?1",
            openhive_store::params![hive],
        )?;
        advance_sent(c, &peer, &hive, 10, 1)?;
        advance_sent(c, &peer, &hive, 5, 1)?;
        assert_eq!(link(c, &peer, &hive)?.unwrap().last_seq_sent, 10);
        // Gap: received 0, batch 5..=9 → not moved.
        assert!(!advance_received_contiguous(c, &peer, &hive, 5, 9, 1)?);
        assert!(advance_received_contiguous(c, &peer, &hive, 1, 4, 1)?);
        assert!(advance_received_contiguous(c, &peer, &hive, 5, 9, 1)?);
        // Overlap (already past) → not moved back.
        assert!(!advance_received_contiguous(c, &peer, &hive, 3, 6, 1)?);
        assert_eq!(link(c, &peer, &hive)?.unwrap().last_seq_received, 9);
        // A pulled page behind the cursor never moves it back.
        assert!(advance_received(c, &peer, &hive, 5, 7, 1)?);
        assert_eq!(link(c, &peer, &hive)?.unwrap().last_seq_received, 9);
        count_events(c, &peer, &hive, 3, 2)?;
        let l = link(c, &peer, &hive)?.unwrap();
        assert_eq!((l.events_received, l.events_rejected), (3, 2));
        assert!(!format!("{l:?}").contains("token_out: Some"));
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

/// A resync resets the pull cursor while a page may be in flight; that page (read from the
/// old cursor) must not move the cursor back up when it commits: before, the resync was
/// lost (seen in CI: `sync_progress::a_resync_shows_progress_while_it_pulls_and_none_after`
/// waited for a pull that never came).
#[test]
fn a_page_read_before_a_resync_does_not_undo_it() {
    let (_d, s) = store();
    s.write_blocking(|c| {
        let (hive, peer) = setup(c);
        assert!(advance_received(c, &peer, &hive, 0, 40, 1)?);
        assert_eq!(link(c, &peer, &hive)?.unwrap().last_seq_received, 40);
        assert_eq!(reset_received(c, &hive)?, 1);
        // The page pulled from 40 before the reset commits after it: not applied.
        assert!(!advance_received(c, &peer, &hive, 40, 45, 2)?);
        assert_eq!(link(c, &peer, &hive)?.unwrap().last_seq_received, 0);
        // The resync's own pull starts at the reset cursor and moves it.
        assert!(advance_received(c, &peer, &hive, 0, 5, 3)?);
        assert_eq!(link(c, &peer, &hive)?.unwrap().last_seq_received, 5);
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

#[test]
fn handshake_upsert_never_duplicates_a_peer() {
    let (_d, s) = store();
    s.write_blocking(|c| {
        let (hive, configured) = setup(c);
        // The configured peer answers as inst_b: same row gets the instance id.
        let id = upsert_handshake_peer(c, "inst_b", "b", "http://b/sync/v1", 2)?;
        assert_eq!(id, configured);
        // Again (the other side initiated too): still one row.
        let id2 = upsert_handshake_peer(c, "inst_b", "b", "http://b/sync/v1", 3)?;
        assert_eq!(id2, configured);
        assert_eq!(list_peers(c)?.len(), 1);
        // An unknown instance gets a handshake row.
        let c_id = upsert_handshake_peer(c, "inst_c", "c", "http://c/sync/v1", 3)?;
        assert_ne!(c_id, configured);
        assert_eq!(peer_by_id(c, &c_id)?.unwrap().source, PeerSource::Handshake);
        ensure_link(c, &c_id, &hive, LinkState::Active)?;
        // Admin then configures C under a different endpoint spelling, and C handshakes
        // from that endpoint: the two rows merge.
        let (cfg, _) = upsert_configured_peer(c, "c2", "http://c2/sync/v1", PeerSource::Api, 4)?;
        let merged = upsert_handshake_peer(c, "inst_c", "c", "http://c2/sync/v1", 5)?;
        assert_eq!(merged, cfg.id);
        assert_eq!(list_peers(c)?.len(), 2);
        assert_eq!(links_for_peer(c, &merged)?.len(), 1);
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

#[test]
fn failures_contact_and_unreachable() {
    let (_d, s) = store();
    s.write_blocking(|c| {
        let (_hive, peer) = setup(c);
        for i in 1..=9 {
            assert_eq!(record_failure(c, &peer, "boom", 10, 10)?, i);
        }
        assert_eq!(peer_by_id(c, &peer)?.unwrap().status, PeerStatus::Pending);
        record_failure(c, &peer, "boom", 10, 10)?;
        let p = peer_by_id(c, &peer)?.unwrap();
        assert_eq!(
            (p.status.as_str(), p.last_error.as_deref()),
            ("error", Some("boom"))
        );
        record_contact(c, &peer, 20)?;
        let p = peer_by_id(c, &peer)?.unwrap();
        assert_eq!((p.status.as_str(), p.failure_count), ("active", 0));
        assert!(mark_unreachable(c, 15, 30)?.is_empty());
        assert_eq!(mark_unreachable(c, 25, 30)?, vec![peer.clone()]);
        assert_eq!(
            peer_by_id(c, &peer)?.unwrap().status,
            PeerStatus::Unreachable
        );
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

#[test]
fn link_states_peer_statuses_and_sources_are_closed_vocabularies() {
    for s in LinkState::ALL {
        assert_eq!(LinkState::parse(s.as_str()).ok(), Some(*s));
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
    }
    for s in PeerStatus::ALL {
        assert_eq!(PeerStatus::parse(s.as_str()).ok(), Some(*s));
    }
    for s in PeerSource::ALL {
        assert_eq!(PeerSource::parse(s.as_str()).ok(), Some(*s));
    }
    assert_eq!(LinkState::parse("Active").ok(), None);
    assert_eq!(PeerSource::parse("carrier-pigeon").ok(), None);
    // A stored value outside the vocabulary is corruption, not a default.
    let (_d, s) = store();
    let r = s.write_blocking(|c| {
        let (_hive, peer) = setup(c);
        c.execute(
            "UPDATE peers SET status = 'sleepy' WHERE id = ?1",
            openhive_store::params![peer],
        )?;
        peer_by_id(c, &peer)
    });
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
}

#[test]
fn outbound_tokens_are_sealed_at_rest_and_clear_ones_are_resealed() {
    let (_d, s) = store();
    let raw = |s: &Store| {
        s.read_blocking(|c| {
            c.query_row("SELECT token_out FROM peer_groups", (), |r| {
                r.get::<_, Option<String>>(0)
            })
            .map_err(StoreError::from)
        })
        .unwrap()
    };
    // An older version (no sealing key) stored the token in clear.
    let (hive, peer) = s
        .write_blocking(|c| {
            let (hive, peer) = setup(c);
            set_token_out(c, &peer, &hive, Some("ohs_legacy_clear"))?;
            Ok::<_, StoreError>((hive, peer))
        })
        .unwrap();
    assert_eq!(raw(&s).as_deref(), Some("ohs_legacy_clear"));
    s.configure(|c| c.seal_key = Some(openhive_core::seal::SealKey::new(&[9; 32])));
    // Still readable before the migration, sealed by it, and the same token after.
    let (p, h) = (peer.clone(), hive.clone());
    let before = s.read_blocking(move |c| link(c, &p, &h)).unwrap().unwrap();
    assert_eq!(before.token_out.as_deref(), Some("ohs_legacy_clear"));
    assert_eq!(s.write_blocking(reseal_tokens).unwrap(), 1);
    assert_eq!(s.write_blocking(reseal_tokens).unwrap(), 0);
    let stored = raw(&s).unwrap();
    assert!(stored.starts_with("sealed:v1:"), "{stored}");
    assert!(!stored.contains("ohs_legacy_clear"));
    let (p, h) = (peer.clone(), hive.clone());
    let after = s.read_blocking(move |c| link(c, &p, &h)).unwrap().unwrap();
    assert_eq!(after.token_out.as_deref(), Some("ohs_legacy_clear"));
    // New tokens are sealed as they are stored.
    let (p, h) = (peer.clone(), hive.clone());
    s.write_blocking(move |c| set_token_out(c, &p, &h, Some("ohs_fresh")))
        .unwrap();
    assert!(!raw(&s).unwrap().contains("ohs_fresh"));
    // With another key (a copied database without its key file) the token does not open:
    // the link has no token (it will handshake again), nothing leaks.
    s.configure(|c| c.seal_key = Some(openhive_core::seal::SealKey::new(&[1; 32])));
    let (p, h) = (peer.clone(), hive.clone());
    let other = s.read_blocking(move |c| link(c, &p, &h)).unwrap().unwrap();
    assert_eq!(other.token_out, None);
}

#[test]
fn weak_keys_learned_before_they_were_checked_are_forgotten() {
    let (_d, s) = store();
    // The all-zero key, as SPKI base64.
    let zero = "MCowBQYDK2VwAyEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_string();
    let real = openhive_core::InstanceKey::generate().public();
    let good = openhive_core::InstanceKey::generate().public();
    s.write_blocking(move |c| {
        // As an older version stored it: the all-zero key pins inst_victim.
        c.execute(
            "INSERT INTO instance_keys (instance_id, signing_key, learned_from, learned_at)
             VALUES ('inst_victim', ?1, NULL, 1)",
            [&zero],
        )?;
        openhive_store::keys::learn(c, "inst_good", &good, None, 1)?;
        assert_eq!(
            openhive_store::keys::learn(c, "inst_victim", &real, None, 2)?,
            openhive_store::keys::Learned::Conflict
        );
        assert_eq!(
            openhive_store::keys::forget_invalid(c)?,
            vec!["inst_victim".to_string()]
        );
        assert_eq!(
            openhive_store::keys::learn(c, "inst_victim", &real, None, 3)?,
            openhive_store::keys::Learned::New
        );
        assert_eq!(openhive_store::keys::get(c, "inst_good")?, Some(good));
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

/// Gossip never changes a peer it did not create (manual > hub > gossip), only raises the
/// TTL of its own rows; an admin adding a gossiped peer makes it configured; only
/// gossip-sourced peers are ever stale.
#[test]
fn gossip_peers_never_override_other_sources_and_only_they_go_stale() {
    let (_d, s) = store();
    s.write_blocking(|c| {
        let (hive, configured) = setup(c);
        upsert_handshake_peer(c, "inst_bbbbbbbbbbbb", "b", "http://b/sync/v1", 2)?;
        // Known by instance id or by endpoint from another source: left alone.
        assert_eq!(
            upsert_gossip_peer(
                c,
                "inst_bbbbbbbbbbbb",
                "x",
                "http://x/sync/v1",
                1,
                "inst_v",
                3
            )?,
            None
        );
        assert_eq!(
            upsert_gossip_peer(
                c,
                "inst_cccccccccccc",
                "x",
                "http://b/sync/v1",
                1,
                "inst_v",
                3
            )?,
            None
        );
        let b = peer_by_id(c, &configured)?.unwrap();
        assert_eq!(
            (b.source, b.endpoint.as_str()),
            (PeerSource::Api, "http://b/sync/v1")
        );
        // A new one is added as gossip; a second hearing raises its TTL, never lowers it.
        let g = upsert_gossip_peer(
            c,
            "inst_dddddddddddd",
            "d",
            "http://d/sync/v1",
            0,
            "inst_v",
            3,
        )?
        .unwrap();
        assert_eq!(gossip_meta(c, &g)?, Some((0, Some("inst_v".into()))));
        upsert_gossip_peer(
            c,
            "inst_dddddddddddd",
            "d",
            "http://d2/sync/v1",
            1,
            "inst_w",
            4,
        )?;
        upsert_gossip_peer(
            c,
            "inst_dddddddddddd",
            "d",
            "http://d/sync/v1",
            0,
            "inst_w",
            5,
        )?;
        assert_eq!(gossip_meta(c, &g)?, Some((1, Some("inst_v".into()))));
        assert_eq!(peer_by_id(c, &g)?.unwrap().endpoint, "http://d/sync/v1");
        ensure_link(c, &g, &hive, LinkState::Handshaking)?;
        assert_eq!(gossip_peer_count(c, &hive)?, 1);
        let listed = gossip_peers(c)?;
        let d = listed.iter().find(|p| p.id == g).unwrap();
        assert_eq!(d.hives, vec!["general".to_string()]);
        // Stale: silent since before the cutoff, or failing; the configured peer never.
        record_failure(c, &configured, "down", 10, 6)?;
        record_failure(c, &configured, "down", 10, 6)?;
        assert!(stale_gossip_peers(c, 0, 2)?.is_empty());
        assert_eq!(stale_gossip_peers(c, 100, 2)?, vec![g.clone()]);
        record_failure(c, &g, "down", 10, 6)?;
        assert!(stale_gossip_peers(c, 0, 2)?.is_empty());
        record_failure(c, &g, "down", 10, 6)?;
        assert_eq!(stale_gossip_peers(c, 0, 2)?, vec![g.clone()]);
        // The admin adds it: configured from now on, never stale.
        let (row, created) =
            upsert_configured_peer(c, "d", "http://d/sync/v1", PeerSource::Api, 7)?;
        assert!(!created);
        assert_eq!(row.source, PeerSource::Api);
        assert!(stale_gossip_peers(c, 100, 1)?.is_empty());
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

/// The lag check reads only the links past a threshold: one that keeps up is not returned,
/// one whose outbox is behind by more than `events` is, and every link of a peer silent
/// for more than `silence_ms` is.
#[test]
fn lagging_links_are_those_past_either_threshold() {
    let (_d, s) = store();
    s.configure(|c| {
        c.lag_alert = openhive_store::LagAlert {
            events: 2,
            silence_ms: 1_000,
        }
    });
    s.write_blocking(|c| {
        let (hive, peer) = setup(c);
        record_contact(c, &peer, 100)?;
        assert!(lagging_links(c, 500)?.is_empty(), "no events, heard from");
        c.execute(
            "UPDATE hive_logs SET head_seq = 3 WHERE hive_id = ?1",
            openhive_store::params![hive],
        )?;
        let l = lagging_links(c, 500)?;
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!(l[0].peer_id, peer);
        assert_eq!(l[0].peer_name, "b");
        assert_eq!(l[0].hive_name, "general");
        assert_eq!(l[0].lag, 3);
        let id = openhive_store::consumers::ConsumerId::peer(&peer);
        openhive_store::consumers::advance(c, &id, &hive, 2, 500)?;
        assert!(lagging_links(c, 500)?.is_empty(), "1 behind, within 2");
        let l = lagging_links(c, 1_101)?;
        assert_eq!(l.len(), 1, "silent for 1001 ms: {l:?}");
        assert_eq!((l[0].lag, l[0].silent_ms), (1, 1_001));
        set_link_state(c, &peer, &hive, LinkState::Left)?;
        assert!(
            lagging_links(c, 1_101)?.is_empty(),
            "a left link is not checked"
        );
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

/// The light link listings (gossip, heartbeats) name the live links only, by hive name.
#[test]
fn live_hives_of_a_peer_leave_out_left_links() {
    let (_d, s) = store();
    s.write_blocking(|c| {
        let (general, peer) = setup(c);
        let other = hives::ensure_log(c, "another")?;
        ensure_group(c, &other, "another", "inst_self", 1)?;
        ensure_link(c, &peer, &other, LinkState::Active)?;
        assert_eq!(
            live_hives_of_peer(c, &peer)?,
            vec![
                (other.clone(), "another".to_string()),
                (general.clone(), "general".to_string())
            ]
        );
        assert_eq!(
            live_hive_of_peer(c, &peer, &general)?.as_deref(),
            Some("general")
        );
        set_link_state(c, &peer, &general, LinkState::Left)?;
        assert_eq!(
            live_hives_of_peer(c, &peer)?,
            vec![(other, "another".to_string())]
        );
        assert_eq!(live_hive_of_peer(c, &peer, &general)?, None);
        assert_eq!(live_hive_of_peer(c, "nobody", &general)?, None);
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

/// A heartbeat group's lookup: the id and pull cursor of a live link by hive name; nothing
/// for a name the peer has no link to, another peer, or a link that was left.
#[test]
fn a_live_link_is_found_by_hive_name_with_its_cursor() {
    let (_d, s) = store();
    s.write_blocking(|c| {
        let (hive, peer) = setup(c);
        assert!(advance_received(c, &peer, &hive, 0, 12, 5).unwrap());
        assert_eq!(
            live_link_cursor_by_name(c, &peer, "general").unwrap(),
            Some((hive.clone(), 12))
        );
        assert_eq!(live_link_cursor_by_name(c, &peer, "other").unwrap(), None);
        assert_eq!(
            live_link_cursor_by_name(c, "peer_x", "general").unwrap(),
            None
        );
        set_link_state(c, &peer, &hive, LinkState::Left).unwrap();
        assert_eq!(live_link_cursor_by_name(c, &peer, "general").unwrap(), None);
        // The peer's head only moves forward.
        set_remote_seq(c, &peer, &hive, 30).unwrap();
        set_remote_seq(c, &peer, &hive, 20).unwrap();
        assert_eq!(link(c, &peer, &hive).unwrap().unwrap().remote_seq, 30);
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

/// A batched step's links, read together: aligned with the hives asked for, each equal to
/// what `link` reads for it (token opened), `None` for a hive without a link with that peer,
/// across more hives than one statement takes.
#[test]
fn links_for_many_hives_are_read_together_and_aligned() {
    let (_d, s) = store();
    s.write_blocking(|c| {
        let (general, peer) = setup(c);
        let mut hives = vec![general.clone()];
        for i in 0..70 {
            let name = format!("h{i:02}");
            let hive = hives::ensure_log(c, &name)?;
            ensure_group(c, &hive, &name, "inst_self", 1)?;
            // Every third hive has no link with the peer.
            if i % 3 != 0 {
                ensure_link(c, &peer, &hive, LinkState::Active)?;
                set_token_out(c, &peer, &hive, Some(&format!("tok-{i}")))?;
            }
            hives.push(hive);
        }
        hives.push("no-such-hive".into());
        hives.push(general.clone());
        let read = links_for_hives(c, &peer, &hives)?;
        assert_eq!(read.len(), hives.len());
        for (h, l) in hives.iter().zip(&read) {
            assert!(*l == link(c, &peer, h)?, "{h}");
        }
        assert_eq!(read.iter().filter(|l| l.is_some()).count(), 2 + 46);
        assert_eq!(
            read[2].as_ref().unwrap().token_out.as_deref(),
            Some("tok-1")
        );
        assert!(
            links_for_hives(c, "peer_x", &hives)?
                .iter()
                .all(Option::is_none)
        );
        assert!(links_for_hives(c, &peer, &[])?.is_empty());
        Ok::<_, StoreError>(())
    })
    .unwrap();
}
