//! Compaction of a hive's log: below a compaction point P, only the events whose
//! materialization is the state at P are kept (the *snapshot*); the events they supersede
//! are deleted from `events` and their ids kept in `compacted_events`. The retained events
//! keep their seq, origin id and origin signature, so a peer pulling from a cursor below P
//! receives the retained events and then the tail, through the normal verified ingest path,
//! and verifies every one of them against its origin's key chain (docs/PROTOCOL-sync.md,
//! "Compaction and snapshots").
//!
//! What is dropped (all at or below P, all *applied* here, none waiting in
//! `pending_events`), and why the state does not change, whatever subset of the dropped
//! events a replica also holds (each rule keeps what the materializer's decision depends on):
//! - an author's `post_updated` that is neither the highest version of the post's edits
//!   (it sets `updated_at`) nor the highest version of any field it sets (per-field LWW);
//! - a `comment_updated` that is not the highest version of the comment's edits;
//! - a `vote_cast` that is not the highest version of its (voter, target) register;
//! - a register candidate (setting, membership, moderator, pin) that another candidate of
//!   the same register at or below P names as `prev`: it is not a head, so it never wins,
//!   whoever the owner turns out to be. Losing *heads* are kept: a later creation (owner
//!   change) or a change superseding the winner can make a loser win. A register with no
//!   head (a `prev` cycle, only a broken or hostile origin makes one) keeps everything.
//!   And every id a candidate names as `prev` stays named by at least one retained
//!   candidate (the newest of its namers, if no namer is kept anyway): the named event may
//!   be retained for another reason below, arrive later, or be held by a replica from
//!   before, and without a retained namer it would become a head;
//! - but never the newest droppable event of each origin instance (owner succession reads
//!   each instance's newest `origin_ts`), nor the earliest or the newest droppable event
//!   naming an agent (remote agent
//!   snapshots: `created_at` is the earliest, name and `updated_at` the newest), nor the
//!   latest setting change (it sets `hives.updated_at`).
//!
//! Creations, deletes (tombstones), the hive's creation and deletion, mirrored posts, and
//! anything ignored or still waiting are always kept. The register candidates of dropped
//! events leave `state_candidates` too, so the tables stay a projection of the log.
//!
//! Invariants:
//! - the materialized state of the retained events (plus any later ones, plus any of the
//!   dropped ones) equals the state of the full log (property test `tests/compaction.rs`);
//! - one compaction is one write transaction: the log, `compacted_events`,
//!   `state_candidates` and `log_compactions` change together or not at all;
//! - the compaction point never moves back and never passes the log's head; seqs above it
//!   stay gap-free;
//! - compacting again at the same point drops nothing (the retained set is a fixpoint).

use crate::consumers;
use crate::engine::{Conn, DbResult, OptionalExtension};
use crate::error::Result;
use crate::log;
use crate::params;
use openhive_core::order;
use openhive_core::payload::{
    CommentUpdated, MembershipChanged, ModeratorChanged, PostUpdated, TargetType, VoteCast,
};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// What a compaction of one hive did, and what the snapshot is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compacted {
    /// The compaction point: the log at or below it is the snapshot.
    pub compacted_through_seq: i64,
    /// Events in the snapshot (retained at or below the point).
    pub snapshot_size: i64,
    /// Approximate encoded size of the snapshot's events (characters of their fields).
    pub snapshot_bytes: i64,
    /// Events dropped by this call.
    pub dropped: i64,
    /// Events dropped from this hive's log by every compaction so far.
    pub dropped_total: i64,
    /// The log's head seq, and how many events the log holds.
    pub head_seq: i64,
    pub log_events: i64,
}

/// The recorded compaction state of a hive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompactionState {
    pub through_seq: i64,
    pub dropped: i64,
    pub compacted_at: i64,
}

/// The hive's compaction state; None if it was never compacted.
pub fn state(conn: &Conn<'_>, hive_id: &str) -> Result<Option<CompactionState>> {
    Ok(conn
        .prepare_cached(
            "SELECT through_seq, dropped, compacted_at FROM log_compactions WHERE hive_id = ?1",
        )?
        .query_row([hive_id], |r| {
            Ok(CompactionState {
                through_seq: r.get(0)?,
                dropped: r.get(1)?,
                compacted_at: r.get(2)?,
            })
        })
        .optional()?)
}

/// The point up to which the hive may be compacted now: the low-water mark of its live
/// consumers (the head if nothing reads it), and, with a retention, below the first event
/// logged less than `retention_ms` before `now`.
pub fn point(conn: &Conn<'_>, hive_id: &str, retention_ms: Option<i64>, now: i64) -> Result<i64> {
    let head = log::head(conn, hive_id)?;
    let mut p = consumers::low_water_mark(conn, hive_id)?
        .unwrap_or(head)
        .min(head);
    if let Some(r) = retention_ms {
        let first_young: Option<i64> = conn
            .prepare_cached("SELECT MIN(seq) FROM events WHERE hive_id = ?1 AND received_at > ?2")?
            .query_row(params![hive_id, now.saturating_sub(r)], |r| r.get(0))?;
        if let Some(y) = first_young {
            p = p.min(y - 1);
        }
    }
    Ok(p.max(0))
}

/// Compacts the log of `hive_id` up to `upto` (capped at the head; never below the
/// previous compaction point). Run it in a write transaction.
pub fn compact(conn: &Conn<'_>, hive_id: &str, upto: i64, now: i64) -> Result<Compacted> {
    let head = log::head(conn, hive_id)?;
    let prior = state(conn, hive_id)?;
    let prior_through = prior.as_ref().map_or(0, |s| s.through_seq);
    let through = upto.min(head).max(prior_through).max(0);
    let mut dropped = 0i64;
    if through > 0 {
        let cands = candidates(conn, hive_id, through)?;
        let plan = plan(&cands.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>());
        for ((seq, c), drop) in cands.iter().zip(plan) {
            if !drop {
                continue;
            }
            conn.prepare_cached("DELETE FROM events WHERE hive_id = ?1 AND seq = ?2")?
                .execute(params![hive_id, seq])?;
            conn.prepare_cached(
                "INSERT INTO compacted_events (id, hive_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?
            .execute(params![c.id, hive_id])?;
            if matches!(c.what, What::Register { .. }) {
                conn.prepare_cached(
                    "DELETE FROM state_candidates WHERE hive_id = ?1 AND event_id = ?2",
                )?
                .execute(params![hive_id, c.id])?;
            }
            dropped += 1;
        }
        conn.prepare_cached(
            "INSERT INTO log_compactions (hive_id, through_seq, dropped, compacted_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (hive_id) DO UPDATE SET through_seq = excluded.through_seq,
               dropped = log_compactions.dropped + excluded.dropped,
               compacted_at = excluded.compacted_at",
        )?
        .execute(params![hive_id, through, dropped, now])?;
    }
    let (snapshot_size, snapshot_bytes): (i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(*), CAST(COALESCE(SUM(LENGTH(id) + LENGTH(event_type)
                 + LENGTH(origin_instance_id) + LENGTH(payload) + LENGTH(signature) + 20), 0)
                 AS BIGINT)
             FROM events WHERE hive_id = ?1 AND seq <= ?2",
        )?
        .query_row(params![hive_id, through], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let log_events: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM events WHERE hive_id = ?1")?
        .query_row([hive_id], |r| r.get(0))?;
    Ok(Compacted {
        compacted_through_seq: through,
        snapshot_size,
        snapshot_bytes,
        dropped,
        dropped_total: prior.map_or(0, |s| s.dropped) + dropped,
        head_seq: head,
        log_events,
    })
}

/// The droppable kinds of event at or below `through`, each with its seq, in seq order:
/// applied (target known, author's edit, register candidate stored) and not waiting.
fn candidates(conn: &Conn<'_>, hive_id: &str, through: i64) -> Result<Vec<(i64, Candidate)>> {
    let authors = |sql: &str| -> Result<HashMap<String, String>> {
        Ok(conn
            .prepare(sql)?
            .query_map([hive_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<DbResult<_>>()?)
    };
    let post_authors = authors("SELECT id, author_id FROM posts WHERE hive_id = ?1")?;
    let comment_authors = authors("SELECT id, author_id FROM comments WHERE hive_id = ?1")?;
    let registers: HashMap<String, (String, Option<String>)> = conn
        .prepare("SELECT event_id, register, prev FROM state_candidates WHERE hive_id = ?1")?
        .query_map([hive_id], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
        .collect::<DbResult<_>>()?;
    let waiting: HashSet<String> = conn
        .prepare("SELECT event_id FROM pending_events WHERE hive_id = ?1")?
        .query_map([hive_id], |r| r.get(0))?
        .collect::<DbResult<_>>()?;
    let mut stmt = conn.prepare(
        "SELECT seq, id, event_type, origin_ts, payload FROM events
         WHERE hive_id = ?1 AND seq <= ?2 AND event_type IN ('post_updated', 'comment_updated',
           'vote_cast', 'hive_setting_changed', 'membership_changed', 'moderator_changed',
           'post_pinned')
         ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![hive_id, through], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, id, event_type, origin_ts, payload) = row?;
        if waiting.contains(&id) {
            continue;
        }
        let what = match event_type.as_str() {
            "post_updated" => serde_json::from_str::<PostUpdated>(&payload)
                .ok()
                .filter(|p| post_authors.get(&p.post_id) == Some(&p.updated_by.agent_id))
                .map(|p| What::PostEdit {
                    fields: [p.title.is_some(), p.content.is_some(), p.url.is_some()],
                    post_id: p.post_id,
                    agent: p.updated_by.agent_id,
                }),
            "comment_updated" => serde_json::from_str::<CommentUpdated>(&payload)
                .ok()
                .filter(|p| comment_authors.get(&p.comment_id) == Some(&p.updated_by.agent_id))
                .map(|p| What::CommentEdit {
                    comment_id: p.comment_id,
                    agent: p.updated_by.agent_id,
                }),
            "vote_cast" => serde_json::from_str::<VoteCast>(&payload)
                .ok()
                .filter(|p| match p.target_type {
                    TargetType::Post => post_authors.contains_key(&p.target_id),
                    TargetType::Comment => comment_authors.contains_key(&p.target_id),
                })
                .map(|p| What::Vote {
                    target_id: p.target_id,
                    voter: p.voter.agent_id,
                }),
            _ => registers.get(&id).map(|(register, prev)| {
                let agent = match event_type.as_str() {
                    "membership_changed" => serde_json::from_str::<MembershipChanged>(&payload)
                        .ok()
                        .map(|p| p.agent.agent_id),
                    "moderator_changed" => serde_json::from_str::<ModeratorChanged>(&payload)
                        .ok()
                        .map(|p| p.agent.agent_id),
                    _ => None,
                };
                What::Register {
                    setting: register.starts_with("setting:"),
                    register: register.clone(),
                    prev: prev.clone(),
                    agent,
                }
            }),
        };
        // A membership or moderator change whose agent no longer parses is kept.
        let Some(what) = what.filter(|w| {
            !matches!(w, What::Register { register, agent: None, .. }
                if register.starts_with("member:") || register.starts_with("moderator:"))
        }) else {
            continue;
        };
        out.push((
            seq,
            Candidate {
                id,
                origin_ts,
                what,
            },
        ));
    }
    Ok(out)
}

/// An applied event compaction may drop, with what decides whether it is superseded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub origin_ts: i64,
    pub what: What,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// An author's edit of a post: which of title, content, url it sets.
    PostEdit {
        post_id: String,
        fields: [bool; 3],
        agent: String,
    },
    /// An author's edit of a comment.
    CommentEdit { comment_id: String, agent: String },
    /// A vote (one register per voter and target).
    Vote { target_id: String, voter: String },
    /// A stored state-register candidate; `agent` is the agent a membership or moderator
    /// change names (its snapshot is cached), `setting` whether it is a hive setting.
    Register {
        register: String,
        prev: Option<String>,
        agent: Option<String>,
        setting: bool,
    },
}

/// Which candidates are superseded (true = drop), by the rules of the module documentation.
/// A pure function of the candidates, whatever their order.
pub fn plan(cands: &[Candidate]) -> Vec<bool> {
    let version: Vec<String> = cands
        .iter()
        .map(|c| order::version(c.origin_ts, &c.id))
        .collect();
    let mut keep = vec![false; cands.len()];
    let mut droppable = vec![true; cands.len()];
    // Highest version per key.
    let mut best: HashMap<String, usize> = HashMap::new();
    let mut bump = |key: String, i: usize| {
        best.entry(key)
            .and_modify(|j| {
                if version[i] > version[*j] {
                    *j = i;
                }
            })
            .or_insert(i);
    };
    // Earliest and newest per agent (remote agent snapshots).
    let mut agent_first: HashMap<&str, usize> = HashMap::new();
    let mut agent_last: HashMap<&str, usize> = HashMap::new();
    let mut latest_setting: Option<usize> = None;
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    // Newest per origin instance: owner succession decides from each instance's newest
    // `origin_ts` in the hive (docs/PROTOCOL.md, "Owner succession"), so the event that
    // carries it must stay (event ids are `evt_<instance suffix>_<ulid>`).
    let mut origin_last: HashMap<&str, usize> = HashMap::new();
    for (i, c) in cands.iter().enumerate() {
        let origin = c.id.split('_').nth(1).unwrap_or("");
        origin_last
            .entry(origin)
            .and_modify(|j| {
                if version[i] > version[*j] {
                    *j = i;
                }
            })
            .or_insert(i);
    }
    for (i, c) in cands.iter().enumerate() {
        let agent = match &c.what {
            What::PostEdit {
                post_id,
                fields,
                agent,
            } => {
                bump(format!("p\u{0}{post_id}"), i);
                for (f, set) in fields.iter().enumerate() {
                    if *set {
                        bump(format!("f{f}\u{0}{post_id}"), i);
                    }
                }
                Some(agent.as_str())
            }
            What::CommentEdit { comment_id, agent } => {
                bump(format!("c\u{0}{comment_id}"), i);
                Some(agent.as_str())
            }
            What::Vote { target_id, voter } => {
                bump(format!("v\u{0}{target_id}\u{0}{voter}"), i);
                None
            }
            What::Register {
                register,
                agent,
                setting,
                ..
            } => {
                groups.entry(register.as_str()).or_default().push(i);
                if *setting && latest_setting.is_none_or(|j| c.origin_ts > cands[j].origin_ts) {
                    latest_setting = Some(i);
                }
                agent.as_deref()
            }
        };
        if let Some(a) = agent {
            agent_first
                .entry(a)
                .and_modify(|j| {
                    if c.origin_ts < cands[*j].origin_ts {
                        *j = i;
                    }
                })
                .or_insert(i);
            agent_last
                .entry(a)
                .and_modify(|j| {
                    if version[i] > version[*j] {
                        *j = i;
                    }
                })
                .or_insert(i);
        }
    }
    for i in best.into_values() {
        keep[i] = true;
    }
    for i in agent_first
        .into_values()
        .chain(agent_last.into_values())
        .chain(origin_last.into_values())
        .chain(latest_setting)
    {
        keep[i] = true;
    }
    for members in groups.into_values() {
        let named: HashSet<&str> = members
            .iter()
            .filter_map(|&i| match &cands[i].what {
                What::Register { prev, .. } => prev.as_deref(),
                _ => None,
            })
            .collect();
        let heads: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| !named.contains(cands[i].id.as_str()))
            .collect();
        if heads.is_empty() {
            for &i in &members {
                droppable[i] = false;
            }
        }
        for i in heads {
            keep[i] = true;
        }
        // Every id a candidate names stays named by a retained candidate: a dropped namer
        // takes its "supersedes" edge with it, and the named event (retained for another
        // reason, still waiting, not arrived yet, or held by a replica from before)
        // would turn into a head and could win.
        let mut namers: HashMap<&str, Vec<usize>> = HashMap::new();
        for &i in &members {
            if let What::Register {
                prev: Some(prev), ..
            } = &cands[i].what
            {
                namers.entry(prev.as_str()).or_default().push(i);
            }
        }
        for of_one in namers.into_values() {
            if of_one.iter().any(|&i| keep[i]) {
                continue;
            }
            if let Some(&newest) = of_one.iter().max_by(|&&a, &&b| version[a].cmp(&version[b])) {
                keep[newest] = true;
            }
        }
    }
    keep.iter().zip(droppable).map(|(k, d)| !k && d).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, ts: i64, what: What) -> Candidate {
        Candidate {
            id: id.into(),
            origin_ts: ts,
            what,
        }
    }
    fn vote(t: &str, v: &str) -> What {
        What::Vote {
            target_id: t.into(),
            voter: v.into(),
        }
    }
    fn reg(r: &str, prev: Option<&str>) -> What {
        What::Register {
            register: r.into(),
            prev: prev.map(Into::into),
            agent: None,
            setting: false,
        }
    }
    fn edit(post: &str, fields: [bool; 3]) -> What {
        What::PostEdit {
            post_id: post.into(),
            fields,
            agent: "agt_a".into(),
        }
    }

    #[test]
    fn only_the_newest_vote_of_a_voter_on_a_target_stays() {
        let cands = [
            c("e1", 1, vote("p1", "a")),
            c("e3", 3, vote("p1", "a")),
            c("e2", 2, vote("p1", "a")),
            c("e4", 1, vote("p1", "b")),
        ];
        assert_eq!(plan(&cands), vec![true, false, true, false]);
    }

    #[test]
    fn a_post_edit_stays_while_it_wins_a_field_or_is_the_newest() {
        let cands = [
            c("e1", 1, edit("p", [true, true, false])),
            c("e2", 2, edit("p", [true, false, false])),
            c("e3", 3, edit("p", [false, false, true])),
            c("e0", 0, edit("p", [true, false, false])),
        ];
        // e1 still wins content; e0 is superseded on its only field.
        let agentless: Vec<bool> = plan(&cands);
        // e0 is the agent's earliest droppable event: kept for the snapshot's created_at.
        assert_eq!(agentless, vec![false, false, false, false]);
        let mut cands = cands.to_vec();
        cands.push(c("e00", -1, edit("q", [true, false, false])));
        assert_eq!(plan(&cands), vec![false, false, false, true, false]);
    }

    #[test]
    fn register_non_heads_go_heads_stay_even_losing_ones() {
        let cands = [
            c("e1", 1, reg("member:x", None)),
            c("e2", 2, reg("member:x", Some("e1"))),
            c("e3", 3, reg("member:x", None)),
        ];
        assert_eq!(plan(&cands), vec![true, false, false]);
    }

    #[test]
    fn a_named_event_keeps_a_retained_namer() {
        // z <- x <- y: z is the newest event of its origin (kept for succession), so x,
        // which supersedes it, stays too, or z would become a head on a replica.
        let cands = [
            c("evt_b_1", 9, reg("pin:p", None)),
            c("evt_a_2", 2, reg("pin:p", Some("evt_b_1"))),
            c("evt_a_3", 3, reg("pin:p", Some("evt_a_2"))),
        ];
        assert_eq!(plan(&cands), vec![false, false, false]);
        // x names an event that is not here (not arrived, waiting, or compacted before):
        // x stays, so that event never becomes a head when it arrives.
        let cands = [
            c("e2", 2, reg("pin:p", Some("e1"))),
            c("e3", 3, reg("pin:p", Some("e2"))),
        ];
        assert_eq!(plan(&cands), vec![false, false]);
        // Of several namers, one retained is enough: e1 stays named by e2, e3 by e4.
        let cands = [
            c("e1", 1, reg("pin:p", None)),
            c("e2", 2, reg("pin:p", Some("e1"))),
            c("e3", 3, reg("pin:p", Some("e1"))),
            c("e4", 4, reg("pin:p", Some("e3"))),
        ];
        assert_eq!(plan(&cands), vec![true, false, true, false]);
    }

    #[test]
    fn a_register_without_a_head_keeps_everything() {
        let cands = [
            c("e1", 1, reg("pin:p", Some("e2"))),
            c("e2", 2, reg("pin:p", Some("e1"))),
        ];
        assert_eq!(plan(&cands), vec![false, false]);
    }

    #[test]
    fn prev_in_another_register_supersedes_nothing() {
        let cands = [
            c("e1", 1, reg("pin:p", None)),
            c("e2", 2, reg("pin:q", Some("e1"))),
        ];
        assert_eq!(plan(&cands), vec![false, false]);
    }

    #[test]
    fn the_latest_setting_change_stays_for_updated_at() {
        let mut a = reg("setting:description", None);
        let mut b = reg("setting:description", Some("e9"));
        for w in [&mut a, &mut b] {
            if let What::Register { setting, .. } = w {
                *setting = true;
            }
        }
        // e9 (newer clock) is superseded by e1, which saw it: e9 stays for updated_at.
        let cands = [c("e9", 9, a), c("e1", 1, b)];
        assert_eq!(plan(&cands), vec![false, false]);
    }

    #[test]
    fn the_plan_does_not_depend_on_the_order() {
        let cands = vec![
            c("e1", 1, vote("p1", "a")),
            c("e2", 2, vote("p1", "a")),
            c("e3", 1, reg("member:x", None)),
            c("e4", 2, reg("member:x", Some("e3"))),
        ];
        let fwd = plan(&cands);
        let mut rev = cands.clone();
        rev.reverse();
        let mut back = plan(&rev);
        back.reverse();
        assert_eq!(fwd, back);
    }
}
