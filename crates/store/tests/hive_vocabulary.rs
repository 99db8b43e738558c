//! The hive vocabularies (`openhive_core::hive`) at the store's edges: the read model
//! returns them typed, a stored value outside them is `StoreError::Corrupt` (never a
//! default), and a peer's value outside them is refused before it is logged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod materialize_support;

use materialize_support::*;
use openhive_core::hive::{MembershipState, PostPermissions};
use openhive_core::payload::MembershipAction;
use openhive_core::{Event, EventType};
use openhive_store::StoreError;
use openhive_store::hives::{self, Role};
use serde_json::json;

const POST_PERMISSIONS: &str = "SELECT post_permissions FROM hives WHERE id = ?1";
const STATE: &str = "SELECT state FROM memberships WHERE agent_id = ?1";

fn assert_corrupt<T: std::fmt::Debug>(res: openhive_store::error::Result<T>, mentions: &str) {
    match res {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains(mentions), "{msg}"),
        other => panic!("expected StoreError::Corrupt mentioning {mentions}, got {other:?}"),
    }
}

#[test]
fn post_permissions_are_stored_as_their_strings_and_read_typed() {
    let w = World::new();
    let r = w.replica();
    r.deliver_ok(&[w.created(0, 1)]);
    assert_eq!(
        r.text(POST_PERMISSIONS, &r.hive_id).as_deref(),
        Some(PostPermissions::All.as_str())
    );
    for (ts, p) in [(10, PostPermissions::Mods), (20, PostPermissions::Members)] {
        r.deliver_ok(&[w.setting(0, ts, "post_permissions", json!(p.as_str()), None)]);
        assert_eq!(
            r.text(POST_PERMISSIONS, &r.hive_id).as_deref(),
            Some(p.as_str())
        );
        let hive = r
            .store
            .read_blocking(|c| hives::get_by_name(c, HIVE))
            .unwrap()
            .unwrap();
        assert_eq!(hive.post_permissions, p);
    }
}

#[test]
fn a_peers_post_permissions_outside_the_vocabulary_is_refused() {
    let w = World::new();
    let r = w.replica();
    let owner = w.agent(0, 0);
    let raw = json!({
        "name": HIVE,
        "description": "",
        "is_public": true,
        "settings": { "post_permissions": "kings" },
        "owner": owner,
    })
    .to_string();
    let i = &w.insts[0];
    let created = Event::sign_new(&i.key, &i.id, HIVE, EventType::HiveCreated, 1, raw);
    let report = r.deliver(&[created]).unwrap();
    assert_eq!((report.accepted, report.rejected), (0, 1));
    assert!(
        report.rejections[0].1.contains("post_permissions must be"),
        "{:?}",
        report.rejections
    );

    r.deliver_ok(&[w.created(0, 1)]);
    let report = r
        .deliver(&[w.setting(0, 10, "post_permissions", json!("everyone"), None)])
        .unwrap();
    assert_eq!((report.accepted, report.rejected), (0, 1));
    assert_eq!(r.text(POST_PERMISSIONS, &r.hive_id).as_deref(), Some("all"));
}

#[test]
fn a_stored_post_permissions_outside_the_vocabulary_is_corrupt() {
    let w = World::new();
    let r = w.replica();
    r.deliver_ok(&[w.created(0, 1)]);
    assert_eq!(
        r.exec(
            "UPDATE hives SET post_permissions = 'kings' WHERE id = ?1",
            &[&r.hive_id]
        ),
        1
    );
    let hive_id = r.hive_id.clone();
    assert_corrupt(
        r.store.read_blocking(|c| hives::get_by_name(c, HIVE)),
        &hive_id,
    );
    assert_corrupt(
        r.store
            .read_blocking(move |c| hives::get_by_id(c, &hive_id)),
        "post_permissions",
    );
    assert_corrupt(
        r.store.read_blocking(|c| hives::list(c, None, 10, 0)),
        "post_permissions",
    );
}

#[test]
fn a_stored_setting_candidate_outside_the_vocabulary_is_corrupt() {
    let w = World::new();
    let r = w.replica();
    let by_owner = w.setting(0, 10, "post_permissions", json!("mods"), None);
    r.deliver_ok(&[w.created(0, 1), by_owner.clone()]);
    assert_eq!(
        r.exec(
            "UPDATE state_candidates SET value = '\"kings\"' WHERE register = ?1 AND event_id = ?2",
            &["setting:post_permissions", &by_owner.id]
        ),
        1
    );
    // B's concurrent change loses to the owner's, whose stored value must be decoded.
    let by_b = w.setting(1, 20, "post_permissions", json!("members"), None);
    assert_corrupt(r.deliver(&[by_b]), "setting:post_permissions");
    assert_eq!(
        r.text(POST_PERMISSIONS, &r.hive_id).as_deref(),
        Some("mods")
    );
}

#[test]
fn membership_states_are_stored_as_their_strings_and_a_bad_one_is_corrupt() {
    let w = World::new();
    let r = w.replica();
    let b1 = w.agent(1, 1);
    let join = w.membership(1, 10, b1.clone(), MembershipAction::Join, None);
    r.deliver_ok(&[w.created(0, 1), join.clone()]);
    assert_eq!(
        r.text(STATE, &b1.agent_id).as_deref(),
        Some(MembershipState::Member.as_str())
    );
    let role = |r: &Replica, agent: &str| {
        let agent = agent.to_string();
        r.store.read_blocking(move |c| {
            let hive = hives::get_by_name(c, HIVE)?.expect("the hive");
            hives::role(c, &hive, &agent)
        })
    };
    let members = |r: &Replica| {
        r.store.read_blocking(|c| {
            let hive = hives::get_by_name(c, HIVE)?.expect("the hive");
            hives::members(c, &hive, 10, 0)
        })
    };
    assert_eq!(role(&r, &b1.agent_id).unwrap(), Role::Member);
    let (rows, total) = members(&r).unwrap();
    assert_eq!(total, 2);
    assert_eq!(
        rows.iter().map(|m| m.role).collect::<Vec<_>>(),
        [Role::Owner, Role::Member]
    );

    let ban = w.membership(0, 20, b1.clone(), MembershipAction::Ban, Some(&join));
    r.deliver_ok(&[ban]);
    assert_eq!(
        r.text(STATE, &b1.agent_id).as_deref(),
        Some(MembershipState::Banned.as_str())
    );
    assert_eq!(role(&r, &b1.agent_id).unwrap(), Role::Banned);
    assert_eq!(members(&r).unwrap().1, 1);

    // A state this binary never writes: an error, not "left".
    assert_eq!(
        r.exec(
            "UPDATE memberships SET state = 'joined' WHERE agent_id = ?1",
            &[&b1.agent_id]
        ),
        1
    );
    assert_corrupt(role(&r, &b1.agent_id), &b1.agent_id);
    assert_eq!(
        r.exec(
            "UPDATE memberships SET state = 'Member' WHERE agent_id = ?1",
            &[&b1.agent_id]
        ),
        1
    );
    assert_corrupt(role(&r, &b1.agent_id), "membership state");
}
