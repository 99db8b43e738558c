//! Remote agent snapshots as the materializer caches them: the newest snapshot (by event
//! version) wins whatever the arrival order, its time span covers every event that named
//! the agent, every agent reference is cached, and a local agent is never overwritten.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod materialize_support;

use materialize_support::*;
use openhive_core::payload::{AgentRef, MembershipAction, ModeratorAction, TargetType};
use openhive_store::StoreError;
use openhive_store::agents::{NewLocalAgent, create_local};

const NAME: &str = "SELECT name FROM agents WHERE id = ?1";
const AVATAR: &str = "SELECT avatar_url FROM agents WHERE id = ?1";
const ROWS: &str = "SELECT COUNT(*) FROM agents WHERE id = ?1";

fn renamed(a: &AgentRef, name: &str, avatar: Option<&str>) -> AgentRef {
    AgentRef {
        name: name.into(),
        avatar_url: avatar.map(Into::into),
        ..a.clone()
    }
}

#[test]
fn the_newest_snapshot_wins_whatever_the_arrival_order() {
    let w = World::new();
    let created = w.created(0, 1);
    let a = w.agent(1, 0);
    let (_, old) = w.post_by(renamed(&a, "old-name", None), 1, 10, "first");
    let (_, new) = w.post_by(
        renamed(&a, "new-name", Some("https://x/a.png")),
        1,
        20,
        "second",
    );
    let (_, middle) = w.post_by(renamed(&a, "mid-name", None), 1, 15, "third");

    let r1 = w.replica();
    r1.deliver_ok(&[created.clone(), old.clone(), middle.clone(), new.clone()]);
    let r2 = w.replica();
    r2.deliver_ok(&[created, new, old, middle]);
    for r in [&r1, &r2] {
        assert_eq!(r.text(NAME, &a.agent_id).as_deref(), Some("new-name"));
        // An older snapshot without an avatar does not clear the newer one's.
        assert_eq!(
            r.text(AVATAR, &a.agent_id).as_deref(),
            Some("https://x/a.png")
        );
        assert_eq!(
            r.int("SELECT created_at FROM agents WHERE id = ?1", &a.agent_id),
            10
        );
        assert_eq!(
            r.int("SELECT updated_at FROM agents WHERE id = ?1", &a.agent_id),
            20
        );
        assert_eq!(
            r.int("SELECT is_local FROM agents WHERE id = ?1", &a.agent_id),
            0
        );
    }
    assert_eq!(r1.digest(), r2.digest());
}

#[test]
fn a_local_agent_is_never_overwritten_by_a_snapshot() {
    let w = World::new();
    let r = w.replica();
    let a = w.agent(1, 0);
    let local = NewLocalAgent {
        id: a.agent_id.clone(),
        name: "local-name".into(),
        instance_id: a.instance_id.clone(),
        api_key_hash: None,
        description: String::new(),
        metadata: None,
        is_admin: false,
    };
    r.store
        .write_blocking(move |c| -> Result<(), StoreError> {
            create_local(c, &local, 3)?;
            Ok(())
        })
        .unwrap();
    let (_, p) = w.post_by(
        renamed(&a, "remote-name", Some("https://x/r.png")),
        1,
        20,
        "t",
    );
    r.deliver_ok(&[w.created(0, 1), p]);
    assert_eq!(r.text(NAME, &a.agent_id).as_deref(), Some("local-name"));
    assert_eq!(r.text(AVATAR, &a.agent_id), None);
    assert_eq!(
        r.int("SELECT is_local FROM agents WHERE id = ?1", &a.agent_id),
        1
    );
    assert_eq!(
        r.text(
            "SELECT snapshot_version FROM agents WHERE id = ?1",
            &a.agent_id
        ),
        None
    );
    assert_eq!(
        r.int("SELECT created_at FROM agents WHERE id = ?1", &a.agent_id),
        3
    );
}

#[test]
fn every_agent_reference_is_cached_but_voters_are_not() {
    let w = World::new();
    let r = w.replica();
    let owner = w.agent(0, 0);
    let (post, p) = w.post(1, 0, 2, "t");
    let (c, e) = w.comment(2, 0, 3, &post, None);
    let joiner = w.agent(1, 1);
    let moderator = w.agent(2, 1);
    let voter = w.agent(0, 1);
    r.deliver_ok(&[
        w.created(0, 1),
        p,
        e,
        w.edit_comment(2, 0, 4, &c, "edited"),
        w.membership(1, 5, joiner.clone(), MembershipAction::Join, None),
        w.moderator(0, 6, moderator.clone(), ModeratorAction::Add, None),
        w.vote(0, 1, 7, TargetType::Post, &post, 1),
    ]);
    for a in [&owner, &w.agent(1, 0), &w.agent(2, 0), &joiner, &moderator] {
        assert_eq!(r.count(ROWS, &a.agent_id), 1, "{}", a.name);
        assert_eq!(r.text(NAME, &a.agent_id).as_deref(), Some(a.name.as_str()));
    }
    // A vote names its voter by id only: no snapshot to cache.
    assert_eq!(r.count(ROWS, &voter.agent_id), 0);
}

#[test]
fn an_older_event_does_not_revert_a_newer_snapshot() {
    let w = World::new();
    let r = w.replica();
    let a = w.agent(1, 0);
    let (post, p) = w.post(1, 0, 2, "t");
    r.deliver_ok(&[w.created(0, 1), p]);
    assert_eq!(r.text(NAME, &a.agent_id).as_deref(), Some(a.name.as_str()));
    // A newer snapshot (ts 30), then an older event (an edit at ts 10) that still carries
    // the old name: the name stays the newer one.
    let (_, renamed_post) = w.post_by(renamed(&a, "renamed", None), 1, 30, "u");
    r.deliver_ok(&[renamed_post]);
    r.deliver_ok(&[w.edit_post(1, 0, 10, &post, Some("t2"), None, None)]);
    assert_eq!(r.text(NAME, &a.agent_id).as_deref(), Some("renamed"));
    assert_eq!(
        r.int("SELECT updated_at FROM agents WHERE id = ?1", &a.agent_id),
        30
    );
}

/// A batch merges its references to one agent and writes them once (`AgentSnapshots`): the
/// row must be the one the references give one event at a time, in any order, and the
/// agent's row must exist for the karma of a vote in the same batch.
#[test]
fn a_batch_leaves_the_same_snapshot_as_its_events_one_by_one() {
    let w = World::new();
    let created = w.created(0, 1);
    let a = w.agent(1, 0);
    let (p1, e1) = w.post_by(renamed(&a, "name-30", None), 1, 30, "one");
    let (_, e2) = w.post_by(
        renamed(&a, "name-50", Some("https://x/50.png")),
        1,
        50,
        "two",
    );
    let (_, e3) = w.post_by(
        renamed(&a, "name-20", Some("https://x/20.png")),
        1,
        20,
        "three",
    );
    let (_, e4) = w.post_by(renamed(&a, "name-40", None), 1, 40, "four");
    let up = w.vote(2, 0, 60, TargetType::Post, &p1, 1);
    let events = [e1, e2, e3, e4, up];

    let one_by_one = w.replica();
    one_by_one.deliver_ok(std::slice::from_ref(&created));
    for e in &events {
        one_by_one.deliver_ok(std::slice::from_ref(e));
    }
    let row = |r: &Replica| {
        (
            r.text(NAME, &a.agent_id),
            r.text(AVATAR, &a.agent_id),
            r.text(
                "SELECT snapshot_version FROM agents WHERE id = ?1",
                &a.agent_id,
            ),
            r.int("SELECT created_at FROM agents WHERE id = ?1", &a.agent_id),
            r.int("SELECT updated_at FROM agents WHERE id = ?1", &a.agent_id),
            r.int("SELECT karma FROM agents WHERE id = ?1", &a.agent_id),
        )
    };
    let expected = row(&one_by_one);
    assert_eq!(expected.0.as_deref(), Some("name-50"));
    assert_eq!(expected.1.as_deref(), Some("https://x/50.png"));
    assert_eq!((expected.3, expected.4, expected.5), (20, 50, 1));

    // The whole batch in several orders, the creation first or inside it.
    for order in [
        [0, 1, 2, 3, 4],
        [4, 3, 2, 1, 0],
        [2, 0, 4, 1, 3],
        [3, 1, 0, 4, 2],
    ] {
        let r = w.replica();
        let mut batch = vec![created.clone()];
        batch.extend(order.iter().map(|&i| events[i].clone()));
        r.deliver_ok(&batch);
        assert_eq!(row(&r), expected, "order {order:?}");
        assert_eq!(r.digest(), one_by_one.digest(), "order {order:?}");
    }
}
