//! Property: the materialized state is a function of the *set* of events. Random histories
//! from three simulated instances (posts, replies, concurrent edits, deletes, vote flips,
//! settings, membership, moderator and pin changes by owner and non-owner instances) are
//! delivered to several replicas in random orders, in random batches, with duplicates; every
//! replica must end with the same state digest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod history;
use history::*;
use openhive_core::Event;
use openhive_core::ids::{self, Kind};
use openhive_core::payload::*;
use openhive_store::ingest;
use proptest::prelude::*;

/// The number of cases: `default`, or `PROPTEST_CASES` to hunt with many more.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(96), .. ProptestConfig::default() })]

    #[test]
    fn replicas_converge_whatever_the_delivery_order(
        ops in prop::collection::vec(op(), 1..45),
        competing in any::<bool>(),
        seeds in prop::collection::vec(1u64..u64::MAX, 2),
        dup_every in 2usize..6,
        batches in prop::collection::vec(1usize..9, 2),
    ) {
        let insts = instances();
        let history = build(&insts, &ops, competing);

        let (_d0, s0, h0) = replica(&insts);
        let reference = deliver(&s0, &h0, &history, 500);

        for (k, seed) in seeds.iter().enumerate() {
            let mut order = shuffled(&history, *seed);
            // Duplicates: re-deliver every n-th event again later.
            let dups: Vec<Event> = order.iter().step_by(dup_every).cloned().collect();
            order.extend(shuffled(&dups, seed.wrapping_mul(31)));
            let (_d, s, h) = replica(&insts);
            let digest = deliver(&s, &h, &order, batches[k]);
            prop_assert_eq!(&digest, &reference);
            let (pending, unverified) = s.read_blocking(ingest::waiting_counts).unwrap();
            prop_assert_eq!((pending, unverified), (0, 0));
        }
    }
}

fn succession_op() -> impl Strategy<Value = Op> {
    (
        0..3usize,
        // Register changes twice as often as in `op`: they are what succession decides.
        prop_oneof![0..12u8, 7..12u8],
        any::<usize>(),
        any::<usize>(),
        0..40i64,
        any::<bool>(),
    )
        .prop_map(|(inst, kind, a, b, ts, flag)| Op {
            inst,
            kind,
            a,
            b,
            ts,
            flag,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), .. ProptestConfig::default() })]

    /// Owner succession keeps the state a function of the event set: the owner goes silent
    /// (ops spread over 4 s, the owner's stop at a random time, the period starts at 1 s and
    /// random period changes, 0 to 3 s, race), while the others keep making concurrent
    /// register changes; every order and duplication gives the same digest, decider
    /// included.
    #[test]
    fn replicas_converge_when_the_owner_goes_silent(
        ops in prop::collection::vec(succession_op(), 1..45),
        silent_after in 0..4_000i64,
        competing in any::<bool>(),
        seeds in prop::collection::vec(1u64..u64::MAX, 2),
        dup_every in 2usize..6,
        batches in prop::collection::vec(1usize..9, 2),
    ) {
        let insts = instances();
        let shape = Shape {
            ts_scale: 100,
            owner_silent_after: Some(silent_after),
            succession: true,
        };
        let history = build_shaped(&insts, &ops, competing, shape);

        let (_d0, s0, h0) = replica(&insts);
        let reference = deliver(&s0, &h0, &history, 500);

        for (k, seed) in seeds.iter().enumerate() {
            let mut order = shuffled(&history, *seed);
            let dups: Vec<Event> = order.iter().step_by(dup_every).cloned().collect();
            order.extend(shuffled(&dups, seed.wrapping_mul(31)));
            let (_d, s, h) = replica(&insts);
            let digest = deliver(&s, &h, &order, batches[k]);
            prop_assert_eq!(&digest, &reference);
        }
    }
}

/// The succession histories do exercise succession: a history where the owner falls
/// silent after 1 s and the others write until 4 s hands the decision to another instance.
#[test]
fn a_silent_owner_history_hands_over() {
    let insts = instances();
    let ops: Vec<Op> = (0..40)
        .map(|t| Op {
            inst: (t % 3) as usize,
            kind: 0,
            a: t as usize,
            b: 0,
            ts: t,
            flag: false,
        })
        .collect();
    let shape = Shape {
        ts_scale: 100,
        owner_silent_after: Some(1_000),
        succession: true,
    };
    let history = build_shaped(&insts, &ops, false, shape);
    let (_d, s, h) = replica(&insts);
    deliver(&s, &h, &history, 500);
    let decider: Option<String> = s
        .read_blocking(move |c| -> openhive_store::error::Result<Option<String>> {
            Ok(c.query_row(
                "SELECT deciding_instance_id FROM hives WHERE id = ?1",
                [&h],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    let expected = insts[1].id.clone().min(insts[2].id.clone());
    assert_eq!(decider, Some(expected));
}

/// A vote flip delivered in both orders ends with the later vote, not the last delivered.
#[test]
fn later_vote_wins_not_last_delivered() {
    let insts = instances();
    let a = &insts[0];
    let post = ids::new_id(Kind::Post, &a.id);
    let mk =
        |ts: i64, p: Payload| Event::sign_new(&a.key, &a.id, HIVE, p.event_type(), ts, p.to_json());
    let created = mk(
        1,
        Payload::HiveCreated(HiveCreated {
            name: HIVE.into(),
            description: String::new(),
            is_public: true,
            settings: HiveSettings::default(),
            owner: a.agents[0].clone(),
        }),
    );
    let p = mk(
        2,
        Payload::PostCreated(PostCreated {
            post_id: post.clone(),
            title: "t".into(),
            content: None,
            url: None,
            author: a.agents[0].clone(),
        }),
    );
    let vote = |ts, value| {
        mk(
            ts,
            Payload::VoteCast(VoteCast {
                target_type: TargetType::Post,
                target_id: post.clone(),
                voter: VoterRef {
                    instance_id: a.id.clone(),
                    agent_id: a.agents[1].agent_id.clone(),
                },
                value,
            }),
        )
    };
    let up = vote(10, 1);
    let down = vote(20, -1);
    let (_d1, s1, h1) = replica(&insts);
    let (_d2, s2, h2) = replica(&insts);
    let d1 = deliver(
        &s1,
        &h1,
        &[created.clone(), p.clone(), up.clone(), down.clone()],
        1,
    );
    let d2 = deliver(&s2, &h2, &[down, up, p, created], 1);
    assert_eq!(d1, d2);
    let score: i64 = s2
        .read_blocking(move |c| -> openhive_store::error::Result<i64> {
            Ok(
                c.query_row("SELECT score FROM posts WHERE id = ?1", [&post], |r| {
                    r.get(0)
                })?,
            )
        })
        .unwrap();
    assert_eq!(score, -1);
}
