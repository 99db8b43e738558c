//! Property: compaction does not change the state. Random multi-origin histories (posts,
//! comments with replies, edits, deletes, votes changing, settings, membership, moderator
//! and pin registers) reach an instance A in a random order; part of it arrives, A compacts
//! its log at a random point P (at most its head), the rest arrives. Then, for a random
//! cursor C <= P:
//! - A's own state is the state of the full history (compaction changed no row);
//! - a new replica fed A's log from the start (the snapshot, then the tail), page by page as
//!   a pull sends it, ends with the same state digest;
//! - a replica that held A's log up to C *before* the compaction, then receives what a pull
//!   from C returns after it, ends with the same digest;
//! - compacting again at the same point drops nothing, and A's log passes the consistency
//!   check (gaps only below the compaction point, exactly as many as were dropped).
//!
//! The history generator is shared with `convergence.rs` (`tests/history`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod history;
use history::*;
use openhive_core::Event;
use openhive_core::ids::{self, Kind};
use openhive_core::payload::*;
use openhive_store::{Store, check, compact, ingest, log, materialize};
use proptest::prelude::*;

/// A's log as a pull from `since` returns it: pages of at most `limit` seqs, in order.
fn pull(store: &Store, hive_id: &str, since: i64, limit: i64) -> Vec<Event> {
    let mut out = Vec::new();
    let mut cursor = since;
    loop {
        let h = hive_id.to_string();
        let (page, next) = store
            .read_blocking(move |c| log::covering(c, &h, cursor, limit))
            .unwrap();
        assert!(next >= cursor && next <= cursor + limit, "{cursor} {next}");
        assert!(page.iter().all(|e| e.seq > cursor && e.seq <= next));
        out.extend(page.into_iter().map(|e| e.event));
        if next == cursor {
            return out;
        }
        cursor = next;
    }
}

fn digest(store: &Store, hive_id: &str) -> String {
    let h = hive_id.to_string();
    store
        .read_blocking(move |c| materialize::state_digest(c, &h))
        .unwrap()
}

fn cases() -> u32 {
    // Each case opens five stores: fewer on PostgreSQL (a scratch database each).
    // PROPTEST_CASES overrides, to hunt with many more.
    if let Some(n) = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    match std::env::var("OPENHIVE_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => 12,
        _ => 64,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), .. ProptestConfig::default() })]

    #[test]
    fn snapshot_and_tail_give_the_state_of_the_full_log(
        ops in prop::collection::vec(op(), 1..60),
        competing in any::<bool>(),
        seed in 1u64..u64::MAX,
        split in 0.0f64..=1.0,
        p_frac in 0.0f64..=1.0,
        c_frac in 0.0f64..=1.0,
        limit in 1i64..12,
    ) {
        let insts = instances();
        let history = build(&insts, &ops, competing);
        let (_d0, s0, h0) = replica(&insts);
        let reference = deliver(&s0, &h0, &history, 500);

        // A: part of the history (random order), compaction, the rest.
        let order = shuffled(&history, seed);
        let k = ((order.len() as f64) * split) as usize;
        let (_da, a, ha) = replica(&insts);
        deliver(&a, &ha, &order[..k], 7);
        let h = ha.clone();
        let head = a.read_blocking(move |c| log::head(c, &h)).unwrap();
        let p = ((head as f64) * p_frac) as i64;
        let before = pull(&a, &ha, 0, 1000);
        let state_before = digest(&a, &ha);
        let h = ha.clone();
        let first = a.write_blocking(move |tx| compact::compact(tx, &h, p, 9)).unwrap();
        prop_assert_eq!(first.compacted_through_seq, p.min(head));
        prop_assert_eq!(digest(&a, &ha), state_before, "compaction changed A's state");
        let h = ha.clone();
        let again = a.write_blocking(move |tx| compact::compact(tx, &h, p, 10)).unwrap();
        prop_assert_eq!(again.dropped, 0);
        prop_assert_eq!(again.snapshot_size, first.snapshot_size);
        deliver(&a, &ha, &order[k..], 5);
        prop_assert_eq!(digest(&a, &ha), reference.clone(), "A after the tail");
        let health = a.read_blocking(check::consistency).unwrap();
        prop_assert_eq!(health.log_gaps, 0, "{:?}", health);

        // A new replica: the snapshot, then the tail, as pulled.
        let (_dn, n, hn) = replica(&insts);
        let pulled = pull(&a, &ha, 0, limit);
        prop_assert_eq!(deliver(&n, &hn, &pulled, 50), reference.clone(), "new replica");

        // A replica that held A's log through C <= P, then pulls from C.
        let c = ((p as f64) * c_frac) as i64;
        let (_dm, m, hm) = replica(&insts);
        let held: Vec<Event> = before.into_iter().take(c as usize).collect();
        deliver(&m, &hm, &held, 9);
        let rest = pull(&a, &ha, c, limit);
        prop_assert_eq!(deliver(&m, &hm, &rest, 50), reference.clone(), "replica from C");
        let (pending, unverified) = m.read_blocking(ingest::waiting_counts).unwrap();
        prop_assert_eq!((pending, unverified), (0, 0));
    }
}

/// Compaction drops what it should on a known history: older edits and votes, superseded
/// register candidates; the state is unchanged and a dropped event arriving again is a
/// duplicate, not logged again.
#[test]
fn superseded_events_are_dropped_and_stay_known() {
    let insts = instances();
    let a = &insts[0];
    let agent = a.agents[0].clone();
    let post = ids::new_id(Kind::Post, &a.id);
    let mk = |ts: i64, p: Payload| {
        Event::sign_new(&a.key, &a.id, HIVE, p.event_type(), 1000 + ts, p.to_json())
    };
    let mut evs = vec![
        mk(
            0,
            Payload::HiveCreated(HiveCreated {
                name: HIVE.into(),
                description: String::new(),
                is_public: true,
                settings: HiveSettings::default(),
                owner: agent.clone(),
            }),
        ),
        mk(
            1,
            Payload::PostCreated(PostCreated {
                post_id: post.clone(),
                title: "t".into(),
                content: Some("c".into()),
                url: None,
                author: agent.clone(),
            }),
        ),
    ];
    for ts in 2..6 {
        evs.push(mk(
            ts,
            Payload::PostUpdated(PostUpdated {
                post_id: post.clone(),
                title: Some(format!("t{ts}")),
                content: None,
                url: None,
                updated_by: agent.clone(),
            }),
        ));
        evs.push(mk(
            ts,
            Payload::VoteCast(VoteCast {
                target_type: TargetType::Post,
                target_id: post.clone(),
                voter: VoterRef {
                    instance_id: a.id.clone(),
                    agent_id: insts[0].agents[1].agent_id.clone(),
                },
                value: [1, -1][ts as usize % 2],
            }),
        ));
    }
    let (_d, s, h) = replica(&insts);
    let reference = deliver(&s, &h, &evs, 100);
    let hh = h.clone();
    let r = s
        .write_blocking(move |tx| compact::compact(tx, &hh, 100, 5))
        .unwrap();
    // Edits at 2 (earliest of the agent's droppable events: kept), 3, 4 (dropped), 5 (newest);
    // votes at 2, 3, 4 dropped, 5 kept.
    assert_eq!(r.dropped, 5, "{r:?}");
    assert_eq!(r.compacted_through_seq, 10);
    assert_eq!(r.snapshot_size, 5);
    assert_eq!(digest(&s, &h), reference);
    // Every event delivered again: all duplicates (dropped ones included), nothing logged.
    let hh = h.clone();
    let again = s
        .write_blocking(move |tx| ingest::ingest_remote(tx, &hh, HIVE, &evs, "inst_peer", 6))
        .unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 10));
    assert_eq!(digest(&s, &h), reference);
}
