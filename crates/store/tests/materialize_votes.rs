//! Votes as the materializer projects them: one last-writer-wins register per (voter,
//! target), 0 removes the vote without letting an older one back, scores, hot rank and
//! karma derived from the winners, duplicates change nothing, votes wait for their target.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod materialize_support;

use materialize_support::*;
use openhive_core::order;
use openhive_core::payload::TargetType;
use openhive_store::materialize::{Change, Outcome};

const POST_SCORE: &str = "SELECT score FROM posts WHERE id = ?1";
const COMMENT_SCORE: &str = "SELECT score FROM comments WHERE id = ?1";
const KARMA: &str = "SELECT karma FROM agents WHERE id = ?1";

/// A hive with one post by agent 0 of instance 0; returns (world, replica, post id).
fn with_post() -> (World, Replica, String) {
    let w = World::new();
    let r = w.replica();
    let (post, p) = w.post(0, 0, 2, "t");
    r.deliver_ok(&[w.created(0, 1), p]);
    (w, r, post)
}

#[test]
fn a_vote_of_zero_removes_the_vote_and_an_older_vote_does_not_come_back() {
    let (w, r, post) = with_post();
    let author = w.agent(0, 0).agent_id;
    r.deliver_ok(&[w.vote(1, 0, 10, TargetType::Post, &post, 1)]);
    assert_eq!(r.int(POST_SCORE, &post), 1);
    assert_eq!(r.int(KARMA, &author), 1);
    let with_vote = r.digest();

    r.deliver_ok(&[w.vote(1, 0, 20, TargetType::Post, &post, 0)]);
    assert_eq!(r.int(POST_SCORE, &post), 0);
    assert_eq!(r.int(KARMA, &author), 0);
    // The register keeps its (zero) winner, and the digest shows no vote.
    assert_eq!(
        r.int("SELECT value FROM votes WHERE target_id = ?1", &post),
        0
    );
    // The digest's votes section (its fourth) lists only non-zero votes.
    let digest = r.digest();
    assert_ne!(digest, with_vote);
    let votes = digest.split("--\n").nth(3).unwrap();
    assert!(votes.is_empty(), "{votes}");
    assert!(
        with_vote
            .split("--\n")
            .nth(3)
            .unwrap()
            .contains(&w.agent(1, 0).agent_id)
    );

    // An older +1 arriving late loses to the newer 0.
    r.deliver_ok(&[w.vote(1, 0, 15, TargetType::Post, &post, 1)]);
    assert_eq!(r.int(POST_SCORE, &post), 0);
    assert_eq!(r.int(KARMA, &author), 0);
}

#[test]
fn an_older_vote_does_not_replace_a_newer_one_in_either_order() {
    let w = World::new();
    let created = w.created(0, 1);
    let (post, p) = w.post(0, 0, 2, "t");
    let down = w.vote(1, 0, 20, TargetType::Post, &post, -1);
    let up = w.vote(1, 0, 10, TargetType::Post, &post, 1);

    let r1 = w.replica();
    r1.deliver_ok(&[created.clone(), p.clone(), down.clone()]);
    // The older vote is applied without effect: nothing to report.
    let late = r1.deliver_ok(std::slice::from_ref(&up));
    assert!(late.changes.is_empty(), "{:?}", late.changes);
    assert_eq!(r1.int(POST_SCORE, &post), -1);

    let r2 = w.replica();
    r2.deliver_ok(&[created, p, up, down]);
    assert_eq!(r2.int(POST_SCORE, &post), -1);
    assert_eq!(r1.digest(), r2.digest());
    assert_eq!(r2.int(KARMA, &w.agent(0, 0).agent_id), -1);
}

#[test]
fn one_vote_per_voter_per_target() {
    let (w, r, post) = with_post();
    r.deliver_ok(&[
        w.vote(1, 0, 10, TargetType::Post, &post, 1),
        // The same voter again (another event): replaces, does not add.
        w.vote(1, 0, 11, TargetType::Post, &post, 1),
        w.vote(1, 1, 12, TargetType::Post, &post, 1),
        w.vote(2, 0, 13, TargetType::Post, &post, -1),
    ]);
    assert_eq!(r.int(POST_SCORE, &post), 1);
    assert_eq!(
        r.count("SELECT COUNT(*) FROM votes WHERE target_id = ?1", &post),
        3
    );
    assert_eq!(r.int(KARMA, &w.agent(0, 0).agent_id), 1);
}

#[test]
fn the_hot_rank_follows_the_score_and_creation_time() {
    let (w, r, post) = with_post();
    r.deliver_ok(&[
        w.vote(1, 0, 10, TargetType::Post, &post, 1),
        w.vote(1, 1, 11, TargetType::Post, &post, 1),
        w.vote(2, 0, 12, TargetType::Post, &post, 1),
    ]);
    let hot = r.real("SELECT hot FROM posts WHERE id = ?1", &post);
    assert!((hot - order::hot_rank(3, 2)).abs() < 1e-9, "{hot}");
    assert_ne!(order::hot_rank(3, 2), order::hot_rank(0, 2));
}

#[test]
fn a_comment_vote_scores_the_comment_and_its_author_not_the_post() {
    let (w, r, post) = with_post();
    let (c, e) = w.comment(1, 1, 3, &post, None);
    r.deliver_ok(&[e]);
    let report = r.deliver_ok(&[w.vote(2, 0, 10, TargetType::Comment, &c, 1)]);
    assert_eq!(r.int(COMMENT_SCORE, &c), 1);
    assert_eq!(r.int(POST_SCORE, &post), 0);
    assert_eq!(r.int(KARMA, &w.agent(1, 1).agent_id), 1);
    assert_eq!(r.int(KARMA, &w.agent(0, 0).agent_id), 0);
    assert!(
        matches!(
            report.changes.as_slice(),
            [Change::VoteUpdated { target_type: TargetType::Comment, target_id, post_id, score: 1, delta: 1, .. }]
                if *target_id == c && *post_id == post
        ),
        "{:?}",
        report.changes
    );
}

#[test]
fn a_duplicate_vote_changes_nothing() {
    let (w, r, post) = with_post();
    let v = w.vote(1, 0, 10, TargetType::Post, &post, 1);
    r.deliver_ok(std::slice::from_ref(&v));
    let before = r.digest();
    // Handed to the materializer again: the same version does not replace itself.
    let again = r.apply(&v);
    assert_eq!(
        again,
        Outcome::Applied {
            changes: Vec::new(),
            provides: Vec::new()
        }
    );
    assert_eq!(r.digest(), before);
    assert_eq!(r.int(KARMA, &w.agent(0, 0).agent_id), 1);
}

#[test]
fn a_vote_on_an_unknown_target_waits_for_it() {
    let w = World::new();
    let r = w.replica();
    let (post, p) = w.post(0, 0, 2, "t");
    r.deliver_ok(&[
        w.created(0, 1),
        w.vote(1, 0, 10, TargetType::Post, &post, 1),
    ]);
    assert_eq!(r.waiting(), (1, 0));
    r.deliver_ok(&[p]);
    assert_eq!(r.waiting(), (0, 0));
    assert_eq!(r.int(POST_SCORE, &post), 1);
}

/// A batch of remote events rescores each target once, at its end: scores, hot ranks and
/// karma are what the same votes leave one by one, in any order within the batch, and the
/// batch reports one change per target whose score moved, with its final score and the
/// whole move as the delta.
#[test]
fn a_batch_rescores_each_target_once_as_its_votes_one_by_one_would() {
    let w = World::new();
    let created = w.created(0, 1);
    let (post, p) = w.post(0, 0, 2, "t");
    let (other, o) = w.post(0, 1, 3, "u");
    let (c, e) = w.comment(1, 1, 4, &post, None);
    let votes = [
        w.vote(1, 0, 10, TargetType::Post, &post, 1),
        w.vote(1, 0, 11, TargetType::Post, &post, -1),
        w.vote(1, 1, 12, TargetType::Post, &post, 1),
        w.vote(2, 0, 13, TargetType::Post, &post, 1),
        w.vote(2, 0, 14, TargetType::Comment, &c, 1),
        w.vote(2, 1, 15, TargetType::Comment, &c, 1),
        // +1 then 0 by one voter: the batch leaves `other` where it was.
        w.vote(2, 0, 16, TargetType::Post, &other, 1),
        w.vote(2, 0, 17, TargetType::Post, &other, 0),
    ];
    let base = [created, p, o, e];
    let state = |r: &Replica| {
        (
            r.int(POST_SCORE, &post),
            r.real("SELECT hot FROM posts WHERE id = ?1", &post),
            r.int(COMMENT_SCORE, &c),
            r.int(POST_SCORE, &other),
            r.int(KARMA, &w.agent(0, 0).agent_id),
            r.int(KARMA, &w.agent(0, 1).agent_id),
            r.int(KARMA, &w.agent(1, 1).agent_id),
        )
    };

    let one_by_one = w.replica();
    one_by_one.deliver_ok(&base);
    for v in &votes {
        one_by_one.deliver_ok(std::slice::from_ref(v));
    }
    let expected = state(&one_by_one);
    assert_eq!(
        (
            expected.0, expected.2, expected.3, expected.4, expected.5, expected.6
        ),
        (1, 2, 0, 1, 0, 2)
    );

    for order in [
        [0, 1, 2, 3, 4, 5, 6, 7],
        [7, 6, 5, 4, 3, 2, 1, 0],
        [4, 1, 6, 0, 7, 3, 5, 2],
    ] {
        let r = w.replica();
        r.deliver_ok(&base);
        let batch: Vec<_> = order.iter().map(|&i| votes[i].clone()).collect();
        let report = r.deliver_ok(&batch);
        assert_eq!(state(&r), expected, "order {order:?}");
        assert_eq!(r.digest(), one_by_one.digest(), "order {order:?}");
        let moved: Vec<_> = report
            .changes
            .iter()
            .filter_map(|ch| match ch {
                Change::VoteUpdated {
                    target_id,
                    score,
                    delta,
                    ..
                } => Some((target_id.clone(), *score, *delta)),
                _ => None,
            })
            .collect();
        let mut want = vec![(post.clone(), 1, 1), (c.clone(), 2, 2)];
        want.sort();
        let mut got = moved.clone();
        got.sort();
        assert_eq!(got, want, "order {order:?}: {moved:?}");
    }

    // A later batch moves karma from the stored score, not from zero.
    let r = w.replica();
    r.deliver_ok(&base);
    r.deliver_ok(&votes[..4]);
    r.deliver_ok(&[
        w.vote(1, 1, 20, TargetType::Post, &post, -1),
        w.vote(2, 1, 21, TargetType::Post, &post, -1),
    ]);
    assert_eq!(r.int(POST_SCORE, &post), -2);
    assert_eq!(r.int(KARMA, &w.agent(0, 0).agent_id), -2);
}

/// A post read by id carries the viewer's own vote, none for another viewer, and none
/// without a viewer (the anonymous read skips the lookup in `votes`; realtime messages
/// use it); every other field reads the same.
#[test]
fn a_post_read_by_id_carries_the_viewers_vote_and_no_vote_without_a_viewer() {
    let (w, r, post) = with_post();
    let voter = w.agent(1, 0).agent_id;
    r.deliver_ok(&[w.vote(1, 0, 10, TargetType::Post, &post, -1)]);
    let read = |viewer: Option<&str>| {
        let (id, viewer) = (post.clone(), viewer.map(str::to_string));
        r.store
            .read_blocking(move |c| openhive_store::posts::get(c, &id, viewer.as_deref()))
            .unwrap()
            .expect("the post is live")
    };
    let (mine, other, anonymous) = (read(Some(&voter)), read(Some("agt_nobody")), read(None));
    assert_eq!(mine.user_vote, Some(-1));
    assert_eq!(other.user_vote, None);
    assert_eq!(anonymous.user_vote, None);
    assert_eq!((anonymous.score, &anonymous.title), (-1, &mine.title));
    assert_eq!(format!("{anonymous:?}"), format!("{other:?}"));
}
