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
//! - a vote on an unknown target waits for it ([`Outcome::Waiting`]).

use super::{Change, Ctx, Outcome, applied};
use crate::engine::OptionalExtension;
use crate::error::Result;
use crate::params;
use openhive_core::order;
use openhive_core::payload::{TargetType, VoteCast};

/// What a vote that replaced its register's value did to the target's score: the karma
/// delta to apply, or None when the sum of the winners is unchanged (e.g. +1 replaced by a
/// newer +1), which is no change to report.
fn score_delta(old_score: i64, new_score: i64) -> Option<i64> {
    Some(new_score - old_score).filter(|d| *d != 0)
}

pub(super) fn cast(cx: &Ctx<'_>, p: &VoteCast) -> Result<Outcome> {
    let conn = cx.conn;
    let (author_id, post_id, old_score, created_at) = match p.target_type {
        TargetType::Post => {
            let row: Option<(String, i64, i64)> = conn
                .prepare_cached(
                    "SELECT author_id, score, created_at FROM posts WHERE id = ?1 AND hive_id = ?2",
                )?
                .query_row(params![p.target_id, cx.hive_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            let Some((a, s, c)) = row else {
                return Ok(Outcome::Waiting {
                    depends_on: p.target_id.clone(),
                });
            };
            (a, p.target_id.clone(), s, c)
        }
        TargetType::Comment => {
            let row: Option<(String, String, i64, i64)> = conn
                .prepare_cached(
                    "SELECT author_id, post_id, score, created_at FROM comments WHERE id = ?1 AND hive_id = ?2",
                )?
                .query_row(params![p.target_id, cx.hive_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            let Some((a, post, s, c)) = row else {
                return Ok(Outcome::Waiting {
                    depends_on: p.target_id.clone(),
                });
            };
            (a, post, s, c)
        }
    };
    let voter_id = &p.voter.agent_id;
    let n = conn
        .prepare_cached(
            "INSERT INTO votes (target_id, voter_id, target_type, hive_id, value, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(target_id, voter_id) DO UPDATE
               SET value = excluded.value, version = excluded.version
               WHERE excluded.version > votes.version",
        )?
        .execute(params![
            p.target_id,
            voter_id,
            p.target_type.as_str(),
            cx.hive_id,
            p.value,
            cx.version()
        ])?;
    if n == 0 {
        // Not newer than the stored vote of this voter: no effect.
        return Ok(applied(Vec::new()));
    }
    let score: i64 = conn
        .prepare_cached(
            "SELECT CAST(COALESCE(SUM(value), 0) AS BIGINT) FROM votes WHERE target_id = ?1",
        )?
        .query_row([&p.target_id], |r| r.get(0))?;
    let Some(delta) = score_delta(old_score, score) else {
        return Ok(applied(Vec::new()));
    };
    match p.target_type {
        TargetType::Post => conn
            .prepare_cached("UPDATE posts SET score = ?2, hot = ?3 WHERE id = ?1")?
            .execute(params![
                p.target_id,
                score,
                order::hot_rank(score, created_at)
            ])?,
        TargetType::Comment => conn
            .prepare_cached("UPDATE comments SET score = ?2 WHERE id = ?1")?
            .execute(params![p.target_id, score])?,
    };
    conn.prepare_cached("UPDATE agents SET karma = karma + ?2 WHERE id = ?1")?
        .execute(params![author_id, delta])?;
    Ok(applied(vec![Change::VoteUpdated {
        hive: cx.hive(),
        target_type: p.target_type,
        target_id: p.target_id.clone(),
        post_id,
        score,
        delta,
    }]))
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
