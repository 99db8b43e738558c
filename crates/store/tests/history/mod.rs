//! The random histories the property tests of this crate share (`convergence.rs`,
//! `compaction.rs`): three simulated instances with their keys and agents, op specs drawn by
//! proptest, a builder that turns them into a causally valid history of signed events, and
//! replicas to deliver them to.
#![allow(dead_code)] // each test binary uses part of it

use crate::common;
use openhive_core::ids::{self, Kind};
use openhive_core::payload::*;
use openhive_core::{Event, InstanceKey};
use openhive_store::{Store, hives, ingest, keys, materialize};
use proptest::prelude::*;

pub(crate) const HIVE: &str = "general";

pub(crate) struct Inst {
    pub(crate) id: String,
    pub(crate) key: InstanceKey,
    pub(crate) agents: Vec<AgentRef>,
}

pub(crate) fn instances() -> Vec<Inst> {
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
pub(crate) struct Op {
    pub(crate) inst: usize,
    pub(crate) kind: u8,
    pub(crate) a: usize,
    pub(crate) b: usize,
    pub(crate) ts: i64,
    pub(crate) flag: bool,
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
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

pub(crate) struct Post {
    pub(crate) id: String,
    pub(crate) author: AgentRef,
}
pub(crate) struct Comment {
    pub(crate) id: String,
    pub(crate) post: usize,
    pub(crate) author: AgentRef,
}

/// How [`build_shaped`] bends a history.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Op times (0..40) are multiplied by this (ms).
    pub(crate) ts_scale: i64,
    /// The owner's instance makes no event after this time (its ops go to another
    /// instance, edits of its content are skipped): an owner gone silent.
    pub(crate) owner_silent_after: Option<i64>,
    /// Let ops of kind 11 change `owner_succession_secs` (else kind 11 is skipped), and open
    /// the history with the owner setting it to 1 s.
    pub(crate) succession: bool,
}

pub(crate) const PLAIN: Shape = Shape {
    ts_scale: 1,
    owner_silent_after: None,
    succession: false,
};

/// Turns op specs into a causally valid history of signed events.
pub(crate) fn build(insts: &[Inst], ops: &[Op], competing_creation: bool) -> Vec<Event> {
    build_shaped(insts, ops, competing_creation, PLAIN)
}

pub(crate) fn build_shaped(
    insts: &[Inst],
    ops: &[Op],
    competing_creation: bool,
    shape: Shape,
) -> Vec<Event> {
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
    if shape.succession {
        let p = Payload::HiveSettingChanged(HiveSettingChanged {
            key: "owner_succession_secs".into(),
            value: serde_json::json!(1),
            prev: None,
            changed_by: insts[0].agents[0].clone(),
        });
        let ev = sign(&insts[0], 1, p);
        registers
            .entry("setting:owner_succession_secs".into())
            .or_default()
            .push(ev.id.clone());
        events.push(ev);
    }
    for o in ops {
        let o = &Op {
            ts: o.ts * shape.ts_scale,
            ..o.clone()
        };
        let silent = shape.owner_silent_after.is_some_and(|t| o.ts > t);
        let inst = if silent && o.inst == 0 {
            &insts[1 + o.a % 2]
        } else {
            &insts[o.inst]
        };
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
                if silent && author_inst.id == insts[0].id {
                    continue;
                }
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
                if silent && author_inst.id == insts[0].id {
                    continue;
                }
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
            11 if shape.succession => {
                let (reg, prev) = prev_of("setting:owner_succession_secs".into(), o.a);
                let ev = sign(
                    inst,
                    o.ts,
                    Payload::HiveSettingChanged(HiveSettingChanged {
                        key: "owner_succession_secs".into(),
                        value: serde_json::json!([0, 1, 2, 3][o.b % 4]),
                        prev,
                        changed_by: agent,
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

pub(crate) fn replica(insts: &[Inst]) -> (common::Scratch, Store, String) {
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

pub(crate) fn deliver(store: &Store, hive_id: &str, events: &[Event], batch: usize) -> String {
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
pub(crate) fn shuffled<T: Clone>(v: &[T], mut seed: u64) -> Vec<T> {
    let mut out = v.to_vec();
    for i in (1..out.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    out
}
