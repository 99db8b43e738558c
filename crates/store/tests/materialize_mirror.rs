//! `post_mirrored` (pull subscriptions): a remote post copied into a mirror hive keeps the
//! remote's id; copies of one id converge on the newest (by event version) whatever the
//! order; a copy counts once; the event rules refuse ids and authors of the signer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod materialize_support;

use materialize_support::*;
use openhive_core::ids::{self, Kind};
use openhive_core::payload::{AgentRef, Payload, PostMirrored};

const TITLE: &str = "SELECT title FROM posts WHERE id = ?1";

fn remote_author() -> AgentRef {
    AgentRef {
        instance_id: "https://remote.example".into(),
        agent_id: "agt_mirror_0123456789abcdef01234567".into(),
        name: "remote-alice".into(),
        avatar_url: None,
    }
}

fn mirrored(w: &World, ts: i64, id: &str, title: &str, author: AgentRef) -> openhive_core::Event {
    w.sign(
        0,
        ts,
        Payload::PostMirrored(PostMirrored {
            post_id: id.into(),
            source_url: "https://remote.example".into(),
            source_hive: "news".into(),
            title: title.into(),
            content: Some("c".into()),
            url: None,
            author,
            created_at: 1_000,
        }),
    )
}

#[test]
fn copies_of_one_remote_post_converge_and_count_once() {
    let w = World::new();
    let created = w.created(0, 1);
    let first = mirrored(&w, 10, "9f1c-remote-id", "first copy", remote_author());
    let second = mirrored(&w, 20, "9f1c-remote-id", "second copy", remote_author());

    let r1 = w.replica();
    r1.deliver_ok(&[
        created.clone(),
        first.clone(),
        second.clone(),
        first.clone(),
    ]);
    let r2 = w.replica();
    r2.deliver_ok(&[created, second, first]);
    for r in [&r1, &r2] {
        assert_eq!(
            r.text(TITLE, "9f1c-remote-id").as_deref(),
            Some("second copy")
        );
        assert_eq!(r.post_count(), 1);
        // The remote's created_at, the remote author (a remote agent row).
        assert_eq!(
            r.int(
                "SELECT created_at FROM posts WHERE id = ?1",
                "9f1c-remote-id"
            ),
            1_000
        );
        assert_eq!(
            r.text(
                "SELECT name FROM agents WHERE id = ?1",
                &remote_author().agent_id
            )
            .as_deref(),
            Some("remote-alice")
        );
        assert_eq!(
            r.int(
                "SELECT is_local FROM agents WHERE id = ?1",
                &remote_author().agent_id
            ),
            0
        );
    }
    assert_eq!(r1.digest(), r2.digest());
}

#[test]
fn the_signer_cannot_mirror_its_own_ids_or_agents() {
    let w = World::new();
    let r = w.replica();
    r.deliver_ok(&[w.created(0, 1)]);
    let own_post = ids::new_id(Kind::Post, &w.insts[0].id);
    let own_agent = w.agent(0, 0);
    let bad = [
        mirrored(&w, 5, &own_post, "t", remote_author()),
        mirrored(&w, 6, "remote-id", "t", own_agent),
        mirrored(&w, 7, "has space", "t", remote_author()),
        mirrored(&w, 8, "dep:key", "t", remote_author()),
    ];
    let report = r.deliver(&bad).unwrap();
    assert_eq!(report.rejected, 4, "{:?}", report.rejections);
    assert_eq!(r.post_count(), 0);
}
