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
//! The history generator is the one of `convergence.rs` (copied: test binaries share no
//! code but `common`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use openhive_core::ids::{self, Kind};
use openhive_core::payload::*;
use openhive_core::{Event, InstanceKey};
use openhive_store::{Store, check, compact, hives, ingest, keys, log, materialize};
use proptest::prelude::*;

const HIVE: &str = "general";

struct Inst {
    id: String,
    key: InstanceKey,
    agents: Vec<AgentRef>,
}

fn instances() -> Vec<Inst> {
    (0..3)
        .map(|i| {
            let id = ids::new_instance_id();
            let agents = (0..2)
                .map(|j| AgentRef {
                    instance_id: id.clone(),
                    agent_id: ids::new_id(Kind::Agent, &id),
                    name: format!("agent{i}{j}"),
                    avatar_url: None,
                })
                .collect();
            Inst {
                id,
                key: InstanceKey::generate(),
                agents,
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Op {
    inst: usize,
    kind: u8,
    a: usize,
    b: usize,
    ts: i64,
    flag: bool,
}

fn op() -> impl Strategy<Value = Op> {
    (
        0..3usize,
        0..11u8,
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

struct Post {
    id: String,
    author: AgentRef,
}
struct Comment {
    id: String,
    post: usize,
    author: AgentRef,
}

/// Turns op specs into a causally valid history of signed events.
fn build(insts: &[Inst], ops: &[Op], competing_creation: bool) -> Vec<Event> {
    let mut events = Vec::new();
    let mut posts: Vec<Post> = Vec::new();
    let mut comments: Vec<Comment> = Vec::new();
    let mut registers: std::collections::HashMap<String, Vec<String>> = Default::default();
    let sign = |i: &Inst, ts: i64, p: Payload| {
        Event::sign_new(&i.key, &i.id, HIVE, p.event_type(), 1000 + ts, p.to_json())
    };
    let created = |i: &Inst, ts: i64, desc: &str| {
        sign(
            i,
            ts,
            Payload::HiveCreated(HiveCreated {
                name: HIVE.into(),
                description: desc.into(),
                is_public: true,
                settings: HiveSettings::default(),
                owner: i.agents[0].clone(),
            }),
        )
    };
    events.push(created(&insts[0], 0, "from A"));
    if competing_creation {
        events.push(created(&insts[1], 0, "from B"));
    }
    for o in ops {
        let inst = &insts[o.inst];
        let agent = inst.agents[o.b % 2].clone();
        let prev_of = |reg: String, id_hint: usize| -> (String, Option<String>) {
            let prev = registers
                .get(&reg)
                .filter(|v| !v.is_empty() && !id_hint.is_multiple_of(3))
                .map(|v| v[id_hint % v.len()].clone());
            (reg, prev)
        };
        let ev = match o.kind {
            0 => {
                let id = ids::new_id(Kind::Post, &inst.id);
                posts.push(Post {
                    id: id.clone(),
                    author: agent.clone(),
                });
                sign(
                    inst,
                    o.ts,
                    Payload::PostCreated(PostCreated {
                        post_id: id,
                        title: format!("t{}", o.a % 7),
                        content: Some("c".into()),
                        url: None,
                        author: agent,
                    }),
                )
            }
            1 if !posts.is_empty() => {
                let post = o.a % posts.len();
                let siblings: Vec<usize> = (0..comments.len())
                    .filter(|&c| comments[c].post == post)
                    .collect();
                let parent = if o.flag && !siblings.is_empty() {
                    Some(comments[siblings[o.b % siblings.len()]].id.clone())
                } else {
                    None
                };
                let id = ids::new_id(Kind::Comment, &inst.id);
                comments.push(Comment {
                    id: id.clone(),
                    post,
                    author: agent.clone(),
                });
                sign(
                    inst,
                    o.ts,
                    Payload::CommentCreated(CommentCreated {
                        comment_id: id,
                        post_id: posts[post].id.clone(),
                        parent_comment_id: parent,
                        content: format!("c{}", o.a % 5),
                        author: agent,
                    }),
                )
            }
            2 if !posts.is_empty() => {
                let p = &posts[o.a % posts.len()];
                let author_inst = insts.iter().find(|i| i.id == p.author.instance_id).unwrap();
                sign(
                    author_inst,
                    o.ts,
                    Payload::PostUpdated(PostUpdated {
                        post_id: p.id.clone(),
                        title: o.flag.then(|| format!("edit{}", o.b % 9)),
                        content: (!o.flag || o.b.is_multiple_of(2))
                            .then(|| format!("body{}", o.b % 9)),
                        url: None,
                        updated_by: p.author.clone(),
                    }),
                )
            }
            3 if !posts.is_empty() => sign(
                inst,
                o.ts,
                Payload::PostDeleted(PostDeleted {
                    post_id: posts[o.a % posts.len()].id.clone(),
                    deleted_by: agent,
                    reason: None,
                }),
            ),
            4 if !comments.is_empty() => {
                let c = &comments[o.a % comments.len()];
                let author_inst = insts.iter().find(|i| i.id == c.author.instance_id).unwrap();
                sign(
                    author_inst,
                    o.ts,
                    Payload::CommentUpdated(CommentUpdated {
                        comment_id: c.id.clone(),
                        content: format!("edited{}", o.b % 9),
                        updated_by: c.author.clone(),
                    }),
                )
            }
            5 if !comments.is_empty() => sign(
                inst,
                o.ts,
                Payload::CommentDeleted(CommentDeleted {
                    comment_id: comments[o.a % comments.len()].id.clone(),
                    deleted_by: agent,
                    reason: None,
                }),
            ),
            6 if !posts.is_empty() || !comments.is_empty() => {
                let on_comment = o.flag && !comments.is_empty() || posts.is_empty();
                let (target_type, target_id) = if on_comment {
                    (
                        TargetType::Comment,
                        comments[o.a % comments.len()].id.clone(),
                    )
                } else {
                    (TargetType::Post, posts[o.a % posts.len()].id.clone())
                };
                sign(
                    inst,
                    o.ts,
                    Payload::VoteCast(VoteCast {
                        target_type,
                        target_id,
                        voter: VoterRef {
                            instance_id: inst.id.clone(),
                            agent_id: agent.agent_id,
                        },
                        value: [1, -1, 0][o.a % 3],
                    }),
                )
            }
            7 => {
                let key = if o.flag { "description" } else { "is_public" };
                let (reg, prev) = prev_of(format!("setting:{key}"), o.a);
                let value = if o.flag {
                    serde_json::json!(format!("d{}", o.b % 4))
                } else {
                    serde_json::json!(o.b.is_multiple_of(2))
                };
                let ev = sign(
                    inst,
                    o.ts,
                    Payload::HiveSettingChanged(HiveSettingChanged {
                        key: key.into(),
                        value,
                        prev,
                        changed_by: agent,
                    }),
                );
                registers.entry(reg).or_default().push(ev.id.clone());
                ev
            }
            8 => {
                let target = insts[o.a % 3].agents[o.b % 2].clone();
                let (reg, prev) = prev_of(format!("moderator:{}", target.agent_id), o.a / 3);
                let ev = sign(
                    inst,
                    o.ts,
                    Payload::ModeratorChanged(ModeratorChanged {
                        agent: target,
                        action: if o.flag {
                            ModeratorAction::Add
                        } else {
                            ModeratorAction::Remove
                        },
                        prev,
                        by: agent,
                    }),
                );
                registers.entry(reg).or_default().push(ev.id.clone());
                ev
            }
            9 => {
                let (target, action) = match o.a % 4 {
                    0 => (agent.clone(), MembershipAction::Join),
                    1 => (agent.clone(), MembershipAction::Leave),
                    2 => (
                        insts[o.b % 3].agents[o.a % 2].clone(),
                        MembershipAction::Ban,
                    ),
                    _ => (
                        insts[o.b % 3].agents[o.a % 2].clone(),
                        MembershipAction::Unban,
                    ),
                };
                let (reg, prev) = prev_of(format!("member:{}", target.agent_id), o.b);
                let ev = sign(
                    inst,
                    o.ts,
                    Payload::MembershipChanged(MembershipChanged {
                        agent: target,
                        action,
                        prev,
                        by: agent,
                    }),
                );
                registers.entry(reg).or_default().push(ev.id.clone());
                ev
            }
            10 if !posts.is_empty() => {
                let post = posts[o.a % posts.len()].id.clone();
                let (reg, prev) = prev_of(format!("pin:{post}"), o.b);
                let ev = sign(
                    inst,
                    o.ts,
                    Payload::PostPinned(PostPinned {
                        post_id: post,
                        pinned: o.flag,
                        prev,
                        by: agent,
                    }),
                );
                registers.entry(reg).or_default().push(ev.id.clone());
                ev
            }
            _ => continue,
        };
        events.push(ev);
    }
    events
}

fn replica(insts: &[Inst]) -> (tempfile::TempDir, Store, String) {
    let (dir, store) = common::open_store();
    let known: Vec<(String, openhive_core::PublicKey)> = insts
        .iter()
        .map(|i| (i.id.clone(), i.key.public()))
        .collect();
    let hive_id = store
        .write_blocking(move |tx| -> openhive_store::error::Result<String> {
            for (id, key) in &known {
                keys::learn(tx, id, key, None, 0)?;
            }
            hives::ensure_log(tx, HIVE)
        })
        .unwrap();
    (dir, store, hive_id)
}

fn deliver(store: &Store, hive_id: &str, events: &[Event], batch: usize) -> String {
    for chunk in events.chunks(batch.max(1)) {
        let chunk = chunk.to_vec();
        let hive_id = hive_id.to_string();
        let report = store
            .write_blocking(move |tx| {
                ingest::ingest_remote(tx, &hive_id, HIVE, &chunk, "inst_peer", 5)
            })
            .unwrap();
        assert_eq!(report.rejected, 0, "{:?}", report.rejections);
    }
    let hive_id = hive_id.to_string();
    store
        .read_blocking(move |c| materialize::state_digest(c, &hive_id))
        .unwrap()
}

/// Fisher–Yates with a small deterministic generator, so proptest can shrink the seed.
fn shuffled<T: Clone>(v: &[T], mut seed: u64) -> Vec<T> {
    let mut out = v.to_vec();
    for i in (1..out.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    out
}

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
