//! Votes: `vote_cast` projected into `votes`, and what derives from the winners: the
//! target's `score`, a post's `hot` rank, the author's `karma`.
//!
//! Invariants:
//! - one register per (voter, target): the vote with the highest version
//!   `(origin_ts, event id)` is the one stored, whatever the arrival order; an older or
//!   repeated vote changes nothing (the decision is the upsert's `WHERE excluded.version >
//!   votes.version`, in one statement);
//! - value 0 means "no vote": it stays stored as the register's winner (so an older +1
//!   cannot come back) but counts for nothing;
//! - a score is the sum of the winning values; the hot rank is a function of score and
//!   creation time only ([`order::hot_rank`]); karma moves by exactly the score's change;
//! - a vote on an unknown target waits for it ([`Outcome::Waiting`]);
//! - within a batch of remote events ([`super::Batch`]) a vote stores its register at once
//!   and leaves its target to [`Rescores`], which rescores each target once before the
//!   batch's transaction ends: the sum of the winners then is the sum the votes one by one
//!   would have left, and karma moves by the difference from the score the row holds at
//!   that moment, so it moves by exactly the score's change even if something rescored the
//!   target in between. Nothing in a batch reads a score between the two.

use super::{Change, Ctx, Outcome, applied};
use crate::engine::{Conn, OptionalExtension};
use crate::error::Result;
use crate::params;
use openhive_core::order;
use openhive_core::payload::{TargetType, VoteCast};
use std::collections::BTreeMap;

/// What a vote that replaced its register's value did to the target's score: the karma
/// delta to apply, or None when the sum of the winners is unchanged (e.g. +1 replaced by a
/// newer +1), which is no change to report.
fn score_delta(old_score: i64, new_score: i64) -> Option<i64> {
    Some(new_score - old_score).filter(|d| *d != 0)
}

/// A vote's target as the score derives it: what the vote lookup found, kept so that a
/// batch rescoring it later needs no second lookup of these immutable columns.
#[derive(Debug, Clone)]
pub(super) struct Target {
    target_type: TargetType,
    target_id: String,
    /// The post the target is or belongs to (realtime notices name it).
    post_id: String,
    author_id: String,
    created_at: i64,
    hive: String,
}

/// The targets whose winning votes changed in one batch of remote events, rescored once
/// each by [`Rescores::flush`] before the batch's transaction ends (see the module's
/// invariants). Keyed by (target type, id): flushed in that order, so the changes a batch
/// reports do not depend on a map's iteration order.
#[derive(Debug, Default)]
pub(super) struct Rescores {
    targets: BTreeMap<(&'static str, String), Target>,
}

impl Rescores {
    /// Rescores every target the batch's votes changed: the score from the winning votes
    /// now, what derives from it, and karma moved by the difference from the stored score.
    pub(super) fn flush(self, conn: &Conn<'_>, changes: &mut Vec<Change>) -> Result<()> {
        for t in self.targets.into_values() {
            let sql = match t.target_type {
                TargetType::Post => "SELECT score FROM posts WHERE id = ?1",
                TargetType::Comment => "SELECT score FROM comments WHERE id = ?1",
            };
            // Rows are never removed (deletes are tombstones); one that is gone has nothing
            // left to rescore.
            let stored: Option<i64> = conn
                .prepare_cached(sql)?
                .query_row([&t.target_id], |r| r.get(0))
                .optional()?;
            if let Some(stored) = stored {
                changes.extend(rescore(conn, t, stored)?);
            }
        }
        Ok(())
    }
}

pub(super) fn cast(cx: &Ctx<'_>, p: &VoteCast) -> Result<Outcome> {
    let waiting = || Outcome::Waiting {
        depends_on: p.target_id.clone(),
    };
    let Some(batch) = cx.batch else {
        let Some((target, stored)) = lookup(cx, p)? else {
            return Ok(waiting());
        };
        if !store_register(cx, p)? {
            return Ok(applied(Vec::new()));
        }
        return Ok(applied(
            rescore(cx.conn, target, stored)?.into_iter().collect(),
        ));
    };
    let key = (p.target_type.as_str(), p.target_id.clone());
    // A target the batch already rescores exists: no second lookup.
    let kept = batch.borrow().rescores.targets.contains_key(&key);
    let target = if kept {
        None
    } else {
        match lookup(cx, p)? {
            Some((target, _)) => Some(target),
            None => return Ok(waiting()),
        }
    };
    if store_register(cx, p)?
        && let Some(target) = target
    {
        batch.borrow_mut().rescores.targets.insert(key, target);
    }
    Ok(applied(Vec::new()))
}

/// Stores the vote in its (voter, target) register if it is newer than the stored one;
/// false when it is not (an older or repeated vote: no effect).
fn store_register(cx: &Ctx<'_>, p: &VoteCast) -> Result<bool> {
    let n = cx
        .conn
        .prepare_cached(
            "INSERT INTO votes (target_id, voter_id, target_type, hive_id, value, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(target_id, voter_id) DO UPDATE
               SET value = excluded.value, version = excluded.version
               WHERE excluded.version > votes.version",
        )?
        .execute(params![
            p.target_id,
            p.voter.agent_id,
            p.target_type.as_str(),
            cx.hive_id,
            p.value,
            cx.version()
        ])?;
    Ok(n > 0)
}

/// The vote's target and its stored score, or None when the target is not known (yet).
fn lookup(cx: &Ctx<'_>, p: &VoteCast) -> Result<Option<(Target, i64)>> {
    let conn = cx.conn;
    Ok(match p.target_type {
        TargetType::Post => conn
            .prepare_cached(
                "SELECT author_id, score, created_at FROM posts WHERE id = ?1 AND hive_id = ?2",
            )?
            .query_row(params![p.target_id, cx.hive_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?
            .map(|(author_id, score, created_at)| {
                let t = Target {
                    target_type: p.target_type,
                    target_id: p.target_id.clone(),
                    post_id: p.target_id.clone(),
                    author_id,
                    created_at,
                    hive: cx.hive(),
                };
                (t, score)
            }),
        TargetType::Comment => conn
            .prepare_cached(
                "SELECT author_id, post_id, score, created_at FROM comments WHERE id = ?1 AND hive_id = ?2",
            )?
            .query_row(params![p.target_id, cx.hive_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?
            .map(|(author_id, post_id, score, created_at)| {
                let t = Target {
                    target_type: p.target_type,
                    target_id: p.target_id.clone(),
                    post_id,
                    author_id,
                    created_at,
                    hive: cx.hive(),
                };
                (t, score)
            }),
    })
}

/// Sets the target's score to the sum of its winning votes, with the hot rank of a post,
/// and moves the author's karma by the difference from `stored` (the score its row holds).
/// None when the sum equals it: no change to report.
fn rescore(conn: &Conn<'_>, t: Target, stored: i64) -> Result<Option<Change>> {
    let score: i64 = conn
        .prepare_cached(
            "SELECT CAST(COALESCE(SUM(value), 0) AS BIGINT) FROM votes WHERE target_id = ?1",
        )?
        .query_row([&t.target_id], |r| r.get(0))?;
    let Some(delta) = score_delta(stored, score) else {
        return Ok(None);
    };
    match t.target_type {
        TargetType::Post => conn
            .prepare_cached("UPDATE posts SET score = ?2, hot = ?3 WHERE id = ?1")?
            .execute(params![
                t.target_id,
                score,
                order::hot_rank(score, t.created_at)
            ])?,
        TargetType::Comment => conn
            .prepare_cached("UPDATE comments SET score = ?2 WHERE id = ?1")?
            .execute(params![t.target_id, score])?,
    };
    conn.prepare_cached("UPDATE agents SET karma = karma + ?2 WHERE id = ?1")?
        .execute(params![t.author_id, delta])?;
    Ok(Some(Change::VoteUpdated {
        hive: t.hive,
        target_type: t.target_type,
        target_id: t.target_id,
        post_id: t.post_id,
        score,
        delta,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacing_vote_moves_karma_by_the_score_change() {
        assert_eq!(score_delta(0, 1), Some(1));
        // +1 replaced by -1: the score drops by two.
        assert_eq!(score_delta(1, -1), Some(-2));
        // +1 replaced by 0 (vote removed).
        assert_eq!(score_delta(1, 0), Some(-1));
    }

    #[test]
    fn a_replacing_vote_with_the_same_value_is_not_a_change() {
        assert_eq!(score_delta(1, 1), None);
        assert_eq!(score_delta(0, 0), None);
    }
}
