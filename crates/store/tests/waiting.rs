//! What waits and what is refused: unknown targets park in the log, unknown keys park
//! outside it, forgeries are rejected and counted, and waiting has a 24 h limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use openhive_core::ids::{self, Kind};
use openhive_core::payload::*;
use openhive_core::{Event, InstanceKey};
use openhive_store::db::counter_get;
use openhive_store::{Store, hives, ingest, keys, log};

const HOUR: i64 = 3_600_000;

struct World {
    store: Store,
    hive_id: String,
    inst: String,
    key: InstanceKey,
    author: AgentRef,
    /// Last: fields drop in order, and the store closes before its database goes.
    _dir: common::Scratch,
}

fn world() -> World {
    let (dir, store) = common::open_store();
    let hive_id = store
        .write_blocking(|tx| hives::ensure_log(tx, "general"))
        .unwrap();
    let inst = ids::new_instance_id();
    let author = AgentRef {
        instance_id: inst.clone(),
        agent_id: ids::new_id(Kind::Agent, &inst),
        name: "alice".into(),
        avatar_url: None,
    };
    World {
        _dir: dir,
        store,
        hive_id,
        inst,
        key: InstanceKey::generate(),
        author,
    }
}

impl World {
    fn sign(&self, ts: i64, p: Payload) -> Event {
        Event::sign_new(
            &self.key,
            &self.inst,
            "general",
            p.event_type(),
            ts,
            p.to_json(),
        )
    }
    fn comment_on(&self, post_id: &str) -> Event {
        self.sign(
            2,
            Payload::CommentCreated(CommentCreated {
                comment_id: ids::new_id(Kind::Comment, &self.inst),
                post_id: post_id.into(),
                parent_comment_id: None,
                content: "hi".into(),
                author: self.author.clone(),
            }),
        )
    }
    fn push(&self, events: Vec<Event>, now: i64) -> ingest::BatchReport {
        let hive = self.hive_id.clone();
        self.store
            .write_blocking(move |tx| {
                ingest::ingest_remote(tx, &hive, "general", &events, "inst_peer", now)
            })
            .unwrap()
    }
    fn learn_key(&self) -> ingest::BatchReport {
        let (inst, key) = (self.inst.clone(), self.key.public());
        self.store
            .write_blocking(move |tx| -> openhive_store::error::Result<_> {
                keys::learn(tx, &inst, &key, None, 0)?;
                ingest::release_unverified(tx, &inst, 0)
            })
            .unwrap()
    }
}

#[test]
fn unknown_keys_wait_outside_the_log_until_the_key_arrives() {
    let w = world();
    let post = ids::new_id(Kind::Post, &w.inst);
    let ev = w.sign(
        1,
        Payload::PostCreated(PostCreated {
            post_id: post.clone(),
            title: "t".into(),
            content: None,
            url: None,
            author: w.author.clone(),
        }),
    );
    let r = w.push(vec![ev.clone()], 0);
    assert_eq!((r.accepted, r.waiting_for_key), (0, 1));
    let id = ev.id.clone();
    assert!(
        !w.store
            .read_blocking(move |c| log::contains(c, &id))
            .unwrap()
    );
    let r = w.learn_key();
    assert_eq!(r.accepted, 1);
    let id = ev.id.clone();
    assert!(
        w.store
            .read_blocking(move |c| log::contains(c, &id))
            .unwrap()
    );
    assert_eq!(
        w.store.read_blocking(ingest::waiting_counts).unwrap(),
        (0, 0)
    );
}

#[test]
fn forged_and_altered_events_are_rejected_and_counted() {
    let w = world();
    w.learn_key();
    let post = ids::new_id(Kind::Post, &w.inst);
    let good = w.sign(
        1,
        Payload::PostCreated(PostCreated {
            post_id: post.clone(),
            title: "t".into(),
            content: None,
            url: None,
            author: w.author.clone(),
        }),
    );
    let mut altered = good.clone();
    altered.payload = altered.payload.replace("\"t\"", "\"T\"");
    let mut forged = good.clone();
    forged.signature = InstanceKey::generate().sign_b64(&forged.signing_bytes());
    let mut other_hive = good.clone();
    other_hive.hive = "elsewhere".into();
    let r = w.push(vec![altered, forged, other_hive], 0);
    assert_eq!((r.accepted, r.rejected), (0, 3), "{:?}", r.rejections);
    assert_eq!(
        w.store
            .read_blocking(|c| counter_get(c, ingest::REJECTED))
            .unwrap(),
        3
    );
    // The genuine event still goes through, once.
    let r = w.push(vec![good.clone(), good], 0);
    assert_eq!((r.accepted, r.duplicates), (1, 1));
}

#[test]
fn events_wait_for_their_target_then_expire_after_a_day() {
    let w = world();
    w.learn_key();
    let missing = ids::new_id(Kind::Post, &w.inst);
    let r = w.push(vec![w.comment_on(&missing)], 0);
    assert_eq!(r.accepted, 1);
    assert_eq!(
        w.store.read_blocking(ingest::waiting_counts).unwrap(),
        (1, 0)
    );
    // Not yet expired at 23 h.
    let n = w
        .store
        .write_blocking(|tx| ingest::expire_waiting(tx, 23 * HOUR))
        .unwrap();
    assert_eq!(n, 0);
    let n = w
        .store
        .write_blocking(|tx| ingest::expire_waiting(tx, 25 * HOUR))
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        w.store.read_blocking(ingest::waiting_counts).unwrap(),
        (0, 0)
    );
    assert_eq!(
        w.store
            .read_blocking(|c| counter_get(c, ingest::PENDING_DROPPED))
            .unwrap(),
        1
    );
}

#[test]
fn preverification_is_per_event_not_per_id() {
    let w = world();
    w.learn_key();
    let post = ids::new_id(Kind::Post, &w.inst);
    let good = w.sign(
        1,
        Payload::PostCreated(PostCreated {
            post_id: post,
            title: "t".into(),
            content: None,
            url: None,
            author: w.author.clone(),
        }),
    );
    // Same id, other content, signed by someone else: must not ride on the genuine one.
    let mut forged = good.clone();
    forged.payload = forged.payload.replace("\"t\"", "\"evil\"");
    forged.signature = InstanceKey::generate().sign_b64(&forged.signing_bytes());
    let batch = vec![forged, good];
    let b2 = batch.clone();
    let verified = w
        .store
        .read_blocking(move |c| ingest::preverify(c, &b2))
        .unwrap();
    assert_eq!(
        verified.iter().map(Option::is_some).collect::<Vec<_>>(),
        vec![false, true]
    );
    let hive = w.hive_id.clone();
    let r = w
        .store
        .write_blocking(move |tx| {
            ingest::ingest_remote_checked(tx, &hive, "general", &batch, &verified, "inst_peer", 0)
        })
        .unwrap();
    assert_eq!((r.accepted, r.rejected), (1, 1));
}

/// Local events pass the same payload check as remote ones: `Verified::sign` refuses what a
/// peer's event would be refused for (here: an author of another instance, an id outside the
/// signer's namespace), and `Verified::check` refuses a forged signature.
#[test]
fn only_checked_events_become_verified() {
    let w = world();
    let other = ids::new_instance_id();
    let post = |post_id: String, author_instance: &str| {
        Payload::PostCreated(PostCreated {
            post_id,
            title: "t".into(),
            content: Some("c".into()),
            url: None,
            author: AgentRef {
                instance_id: author_instance.into(),
                ..w.author.clone()
            },
        })
    };
    let sign = |p: &Payload| ingest::Verified::sign(&w.key, &w.inst, "general", p, 1);
    assert!(sign(&post(ids::new_id(Kind::Post, &w.inst), &w.inst)).is_ok());
    assert!(sign(&post(ids::new_id(Kind::Post, &w.inst), &other)).is_err());
    assert!(sign(&post(ids::new_id(Kind::Post, &other), &w.inst)).is_err());

    let ev = w.sign(1, post(ids::new_id(Kind::Post, &w.inst), &w.inst));
    assert!(ingest::Verified::check(ev.clone(), &w.key.public()).is_ok());
    let stranger = InstanceKey::generate().public();
    assert!(ingest::Verified::check(ev, &stranger).is_err());
}

/// A post by `w`'s origin with a fresh id (its key unknown to the store until learned).
fn unknown_origin_post(w: &World, title: &str) -> Event {
    w.sign(
        1,
        Payload::PostCreated(PostCreated {
            post_id: ids::new_id(Kind::Post, &w.inst),
            title: title.into(),
            content: None,
            url: None,
            author: w.author.clone(),
        }),
    )
}

#[test]
fn the_queue_of_events_waiting_for_a_key_is_bounded_per_peer_and_in_total() {
    let w = world();
    w.store.configure(|c| {
        c.waiting = openhive_store::WaitingLimits {
            per_peer: 3,
            total: 5,
        }
    });
    let hive = w.hive_id.clone();
    let push_from = |from: &'static str, n: usize| {
        let events: Vec<Event> = (0..n)
            .map(|i| unknown_origin_post(&w, &format!("p{i}")))
            .collect();
        let hive = hive.clone();
        w.store
            .write_blocking(move |tx| ingest::ingest_remote(tx, &hive, "general", &events, from, 0))
            .unwrap()
    };
    // Peer 1 may park 3; the 4th and 5th are refused with the reason.
    let r = push_from("inst_peer1", 5);
    assert_eq!(
        (r.waiting_for_key, r.rejected, r.waiting_refused),
        (3, 2, 2)
    );
    assert!(
        r.rejections[0].1.contains("max_waiting_per_peer = 3"),
        "{:?}",
        r.rejections
    );
    // Peer 2 may park 2 more: then the total bound (5) refuses the rest.
    let r = push_from("inst_peer2", 4);
    assert_eq!(
        (r.waiting_for_key, r.rejected, r.waiting_refused),
        (2, 2, 2)
    );
    assert!(r.rejections[0].1.contains("max_waiting_total = 5"));
    assert_eq!(
        w.store.read_blocking(ingest::waiting_counts).unwrap(),
        (0, 5)
    );
    let refused = w
        .store
        .read_blocking(|c| counter_get(c, ingest::WAITING_REFUSED))
        .unwrap();
    assert_eq!(refused, 4);
    // Once the key arrives the queue drains and takes events again.
    assert_eq!(w.learn_key().accepted, 5);
    let r = push_from("inst_peer1", 1);
    assert_eq!(r.accepted, 1, "the key is known now");
}

#[test]
fn waiting_counts_are_per_hive() {
    let w = world();
    let other = w
        .store
        .write_blocking(|tx| hives::ensure_log(tx, "other"))
        .unwrap();
    let ev = unknown_origin_post(&w, "t");
    w.push(vec![ev], 0);
    let h = w.hive_id.clone();
    assert_eq!(
        w.store
            .read_blocking(move |c| ingest::waiting_counts_for(c, &h))
            .unwrap(),
        (0, 1)
    );
    let o = other.clone();
    assert_eq!(
        w.store
            .read_blocking(move |c| ingest::waiting_counts_for(c, &o))
            .unwrap(),
        (0, 0)
    );
    // The grouped form (metrics) agrees and lists only hives with waiting events.
    let by_hive = w
        .store
        .read_blocking(ingest::waiting_counts_by_hive)
        .unwrap();
    assert_eq!(by_hive.len(), 1, "{by_hive:?}");
    assert_eq!(by_hive.get(&w.hive_id), Some(&(0, 1)));
    // Log heads, in hive-name order, bounded by the limit.
    let heads = w.store.read_blocking(|c| log::heads(c, 10)).unwrap();
    assert!(heads.iter().any(|(id, _, _)| id == &other), "{heads:?}");
    assert!(heads.iter().any(|(id, _, _)| id == &w.hive_id), "{heads:?}");
    let names: Vec<&String> = heads.iter().map(|(_, n, _)| n).collect();
    assert!(names.windows(2).all(|p| p[0] <= p[1]), "{names:?}");
    let one = w.store.read_blocking(|c| log::heads(c, 1)).unwrap();
    assert_eq!(one.len(), 1);
}
