//! Key chains: rotation statements accepted and refused, learning a key through a chain,
//! events verified with the key of their period, and preverification racing a rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use openhive_core::ids::{self, Kind};
use openhive_core::payload::*;
use openhive_core::{Event, InstanceKey, RotationStatement};
use openhive_store::error::Result;
use openhive_store::keys::{self, Learned, Rotation};
use openhive_store::{Conn, Store, hives, ingest};

fn post(key: &InstanceKey, inst: &str, ts: i64) -> Event {
    let p = Payload::PostCreated(PostCreated {
        post_id: ids::new_id(Kind::Post, inst),
        title: format!("at {ts}"),
        content: None,
        url: None,
        author: AgentRef {
            instance_id: inst.into(),
            agent_id: ids::new_id(Kind::Agent, inst),
            name: "a".into(),
            avatar_url: None,
        },
    });
    Event::sign_new(key, inst, "general", p.event_type(), ts, p.to_json())
}

fn open() -> (common::Scratch, Store, String) {
    let (d, s) = common::open_store();
    let hive = s
        .write_blocking(|tx| hives::ensure_log(tx, "general"))
        .unwrap();
    (d, s, hive)
}

fn w<T: Send + 'static>(s: &Store, f: impl FnOnce(&Conn<'_>) -> Result<T> + Send + 'static) -> T {
    s.write_blocking(f).unwrap()
}

#[test]
fn statements_extend_the_chain_once_and_only_from_its_end() {
    let (_d, s, _) = open();
    let inst = ids::new_instance_id();
    let (k0, k1, k2) = (
        InstanceKey::generate(),
        InstanceKey::generate(),
        InstanceKey::generate(),
    );
    let s1 = RotationStatement::sign(&k0, &k1, &inst, 1000);
    let fork = RotationStatement::sign(&k0, &k2, &inst, 1500);
    let back = RotationStatement::sign(&k1, &k2, &inst, 1000);
    let onto_old = RotationStatement::sign(&k1, &k0, &inst, 2000);
    let mut forged = RotationStatement::sign(&k2, &k2, &inst, 2000);
    forged.old_key = k1.public().to_base64();
    forged.new_key = InstanceKey::generate().public().to_base64();
    let s2 = RotationStatement::sign(&k1, &k2, &inst, 2000);
    let (i, p0, p1, p2) = (inst.clone(), k0.public(), k1.public(), k2.public());
    w(&s, move |c| {
        assert_eq!(keys::learn(c, &i, &p0, None, 0)?, Learned::New);
        assert_eq!(keys::accept_rotation(c, &s1, None, 0)?, Rotation::Rotated);
        assert_eq!(keys::get(c, &i)?, Some(p1));
        assert_eq!(keys::accept_rotation(c, &s1, None, 0)?, Rotation::Known);
        for bad in [&fork, &back, &onto_old, &forged] {
            assert!(
                matches!(
                    keys::accept_rotation(c, bad, None, 0)?,
                    Rotation::Refused(_)
                ),
                "{bad:?}"
            );
        }
        // Every key of the chain is known; any other is a conflict (first key wins).
        assert_eq!(keys::learn(c, &i, &p0, None, 0)?, Learned::AlreadyKnown);
        assert_eq!(keys::learn(c, &i, &p1, None, 0)?, Learned::AlreadyKnown);
        assert_eq!(keys::learn(c, &i, &p2, None, 0)?, Learned::Conflict);
        assert_eq!(keys::accept_rotation(c, &s2, None, 0)?, Rotation::Rotated);
        assert_eq!(keys::learn(c, &i, &p2, None, 0)?, Learned::AlreadyKnown);
        let chain = keys::chain(c, &i)?.unwrap();
        assert_eq!(
            (chain.len(), chain.current(), chain.current_since()),
            (3, p2, Some(2000))
        );
        assert_eq!(keys::chain_statements(c, &i)?, vec![s1.clone(), s2.clone()]);
        assert_eq!(keys::last_rotation_at(c, &i)?, Some(2000));
        Ok(())
    });
}

#[test]
fn a_key_learned_after_its_statements_is_traced_back_to_the_first_key() {
    let (_d, s, hive) = open();
    let inst = ids::new_instance_id();
    let (k0, k1) = (InstanceKey::generate(), InstanceKey::generate());
    let s1 = RotationStatement::sign(&k0, &k1, &inst, 1000);
    let old = post(&k0, &inst, 999);
    let new = post(&k1, &inst, 1001);
    let (i, h, p1) = (inst.clone(), hive.clone(), k1.public());
    w(&s, move |c| {
        // Events of an unknown instance wait; its statement is kept unanchored.
        let r = ingest::ingest_remote(c, &h, "general", &[old, new], "inst_peer", 0)?;
        assert_eq!(r.waiting_for_key, 2);
        assert_eq!(
            keys::accept_rotation(c, &s1, None, 0)?,
            Rotation::Unanchored
        );
        assert!(keys::chain_statements(c, &i)?.is_empty());
        // The current key arrives (a handshake): the chain starts at the first key, and both
        // periods verify.
        assert_eq!(keys::learn(c, &i, &p1, None, 0)?, Learned::New);
        assert_eq!(keys::chain(c, &i)?.unwrap().len(), 2);
        assert_eq!(keys::chain_statements(c, &i)?, vec![s1]);
        let r = ingest::release_unverified(c, &i, 0)?;
        assert_eq!((r.accepted, r.rejected), (2, 0), "{:?}", r.rejections);
        Ok(())
    });
}

#[test]
fn events_verify_with_the_key_of_their_period_and_preverify_cannot_skip_a_rotation() {
    let (_d, s, hive) = open();
    let inst = ids::new_instance_id();
    let (k0, k1) = (InstanceKey::generate(), InstanceKey::generate());
    let s1 = RotationStatement::sign(&k0, &k1, &inst, 1000);
    let (i, p0) = (inst.clone(), k0.public());
    w(&s, move |c| keys::learn(c, &i, &p0, None, 0).map(|_| ()));
    // Checked on a reader before the rotation is known: the old key verifies it then.
    let late_old = post(&k0, &inst, 1000);
    let batch = vec![late_old.clone()];
    let b2 = batch.clone();
    let pre = s.read_blocking(move |c| ingest::preverify(c, &b2)).unwrap();
    assert_eq!(pre, vec![Some(k0.public())]);
    let (h, good_old, good_new, new_early) = (
        hive.clone(),
        post(&k0, &inst, 999),
        post(&k1, &inst, 1000),
        post(&k1, &inst, 500),
    );
    w(&s, move |c| {
        // The statement is committed first (as a batch carrying it does): the preverified
        // `true` no longer holds and the event is refused.
        assert_eq!(keys::accept_rotation(c, &s1, None, 0)?, Rotation::Rotated);
        let r = ingest::ingest_remote_checked(c, &h, "general", &batch, &pre, "inst_peer", 0)?;
        assert_eq!((r.accepted, r.rejected), (0, 1));
        assert!(
            r.rejections[0].1.contains("not valid at origin_ts"),
            "{:?}",
            r.rejections
        );
        let r = ingest::ingest_remote(
            c,
            &h,
            "general",
            &[good_old, good_new, new_early],
            "inst_peer",
            0,
        )?;
        assert_eq!((r.accepted, r.rejected), (2, 1), "{:?}", r.rejections);
        Ok(())
    });
}

/// A page is checked in one batch (`Event::verify_each`), yet each event gets its own
/// answer: a forged signature, a bad envelope and an unknown origin among good events
/// leave the good ones verified, and each chain's key is the one of the event's period.
#[test]
fn preverify_answers_each_event_of_a_page_on_its_own() {
    let (_d, s, _) = open();
    let (inst, other) = (ids::new_instance_id(), ids::new_instance_id());
    let (k0, k1, stranger) = (
        InstanceKey::generate(),
        InstanceKey::generate(),
        InstanceKey::generate(),
    );
    let s1 = RotationStatement::sign(&k0, &k1, &inst, 1000);
    let (i, p0) = (inst.clone(), k0.public());
    w(&s, move |c| {
        keys::learn(c, &i, &p0, None, 0)?;
        keys::accept_rotation(c, &s1, None, 0).map(|_| ())
    });
    let mut forged = post(&k0, &inst, 600);
    forged.signature = post(&k0, &inst, 601).signature;
    let mut bad_envelope = post(&k1, &inst, 1300);
    bad_envelope.hive = String::new();
    let page = vec![
        post(&k0, &inst, 500),
        post(&k1, &inst, 1200),
        forged,
        post(&stranger, &other, 700),
        bad_envelope,
        post(&k0, &inst, 1100), // signed by the rotated-out key after the rotation
        post(&k1, &inst, 1400),
    ];
    let all_good: Vec<Event> = page.iter().take(2).cloned().collect();
    let pre = s
        .read_blocking(move |c| ingest::preverify(c, &page))
        .unwrap();
    let (p0, p1) = (Some(k0.public()), Some(k1.public()));
    assert_eq!(pre, vec![p0, p1, None, None, None, None, p1]);
    // Alone, each good event gets the same answer as in the page.
    for (ev, want) in all_good.into_iter().zip([p0, p1]) {
        let got = s
            .read_blocking(move |c| ingest::preverify(c, &[ev]))
            .unwrap();
        assert_eq!(got, vec![want]);
    }
}
