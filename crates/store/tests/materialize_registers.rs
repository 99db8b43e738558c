//! State registers as the materializer projects them: owner-preferring last-writer-wins
//! over register heads for settings, membership, moderators and pins; the earliest
//! creation wins and registers follow its owner; state events wait for the creation; and a
//! stored candidate that does not decode is `StoreError::Corrupt`, never a default.
//! Instance 0 creates the hive (the owner's instance) unless a test says otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod materialize_support;

use materialize_support::*;
use openhive_core::Event;
use openhive_core::payload::{MembershipAction, ModeratorAction};
use openhive_store::materialize::Change;
use openhive_store::{StoreError, log};
use serde_json::json;

const DESCRIPTION: &str = "SELECT description FROM hives WHERE id = ?1";
const IS_PUBLIC: &str = "SELECT is_public FROM hives WHERE id = ?1";
const MEMBER_COUNT: &str = "SELECT member_count FROM hives WHERE id = ?1";
const STATE: &str = "SELECT state FROM memberships WHERE agent_id = ?1";
const IS_MOD: &str = "SELECT is_moderator FROM memberships WHERE agent_id = ?1";
const PINNED: &str = "SELECT is_pinned FROM posts WHERE id = ?1";

fn description(r: &Replica) -> Option<String> {
    r.text(DESCRIPTION, &r.hive_id)
}

/// Delivers `events` in both orders to two fresh replicas; returns them after checking
/// they agree.
fn both_orders(w: &World, base: &[Event], events: &[Event]) -> (Replica, Replica) {
    let r1 = w.replica();
    r1.deliver_ok(base);
    r1.deliver_ok(events);
    let r2 = w.replica();
    r2.deliver_ok(base);
    let mut rev = events.to_vec();
    rev.reverse();
    r2.deliver_ok(&rev);
    assert_eq!(r1.digest(), r2.digest());
    (r1, r2)
}

fn assert_corrupt(res: openhive_store::error::Result<impl std::fmt::Debug>, mentions: &str) {
    match res {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains(mentions), "{msg}"),
        other => panic!("expected StoreError::Corrupt mentioning {mentions}, got {other:?}"),
    }
}

fn logged(r: &Replica, ev: &Event) -> bool {
    let id = ev.id.clone();
    r.store
        .read_blocking(move |c| log::contains(c, &id))
        .unwrap()
}

// ── Settings ────────────────────────────────────────────────────────────────

#[test]
fn a_concurrent_non_owner_setting_loses_to_the_owners() {
    let w = World::new();
    let created = w.created(0, 1);
    let by_owner = w.setting(0, 10, "description", json!("by owner"), None);
    // Later, but made without seeing the owner's change.
    let by_b = w.setting(1, 20, "description", json!("by B"), None);
    let (r1, _) = both_orders(&w, &[created], &[by_owner, by_b]);
    assert_eq!(description(&r1).as_deref(), Some("by owner"));
}

#[test]
fn a_non_owner_change_made_after_seeing_the_owners_wins() {
    let w = World::new();
    let created = w.created(0, 1);
    let by_owner = w.setting(0, 10, "description", json!("by owner"), None);
    // Even with an earlier clock: it names the owner's change as prev.
    let by_b = w.setting(1, 5, "description", json!("by B"), Some(&by_owner));
    let (r1, _) = both_orders(&w, &[created], &[by_owner, by_b]);
    assert_eq!(description(&r1).as_deref(), Some("by B"));
}

#[test]
fn among_concurrent_non_owner_changes_the_later_wins_then_the_smaller_id() {
    let w = World::new();
    let created = w.created(0, 1);
    let by_b = w.setting(1, 10, "description", json!("B at 10"), None);
    let by_c = w.setting(2, 20, "description", json!("C at 20"), None);
    let (r1, _) = both_orders(&w, std::slice::from_ref(&created), &[by_b, by_c]);
    assert_eq!(description(&r1).as_deref(), Some("C at 20"));

    let tie_b = w.setting(1, 30, "is_public", json!(false), None);
    let tie_c = w.setting(2, 30, "is_public", json!(true), None);
    let want = if tie_b.id < tie_c.id { 0 } else { 1 };
    let (r1, _) = both_orders(&w, &[created], &[tie_b, tie_c]);
    assert_eq!(r1.int(IS_PUBLIC, &r1.hive_id), want);
}

#[test]
fn the_earliest_creation_wins_and_registers_follow_its_owner() {
    let w = World::new();
    let by_a = w.created(0, 10);
    let by_b = w.created(1, 5);
    let set_a = w.setting(0, 20, "description", json!("A's"), None);
    let set_b = w.setting(1, 20, "description", json!("B's"), None);

    let r = w.replica();
    r.deliver_ok(&[by_a.clone(), set_a.clone(), set_b.clone()]);
    // A's creation is the only one: A's instance is the owner's, its change wins.
    assert_eq!(description(&r).as_deref(), Some("A's"));
    assert_eq!(
        r.text("SELECT owner_id FROM hives WHERE id = ?1", &r.hive_id),
        Some(w.agent(0, 0).agent_id)
    );
    // B's earlier creation arrives: B's instance becomes the owner's and wins the register.
    let report = r.deliver_ok(std::slice::from_ref(&by_b));
    assert!(
        report
            .changes
            .iter()
            .any(|c| matches!(c, Change::HiveUpdated { .. })),
        "{:?}",
        report.changes
    );
    assert_eq!(description(&r).as_deref(), Some("B's"));
    assert_eq!(
        r.text("SELECT owner_id FROM hives WHERE id = ?1", &r.hive_id),
        Some(w.agent(1, 0).agent_id)
    );
    assert_eq!(
        r.text(
            "SELECT created_event_id FROM hives WHERE id = ?1",
            &r.hive_id
        ),
        Some(by_b.id.clone())
    );
    assert_eq!(r.int(MEMBER_COUNT, &r.hive_id), 1);

    // The other order ends in the same state.
    let r2 = w.replica();
    r2.deliver_ok(&[set_b, by_b, set_a, by_a]);
    assert_eq!(r.digest(), r2.digest());
}

#[test]
fn settings_fall_back_to_the_winning_creation() {
    let w = World::new();
    let r = w.replica();
    r.deliver_ok(&[w.created(0, 10)]);
    assert_eq!(description(&r).as_deref(), Some("from 0"));
    // A later-created competitor does not win; an earlier one brings its own base values.
    r.deliver_ok(&[w.created(2, 20)]);
    assert_eq!(description(&r).as_deref(), Some("from 0"));
    r.deliver_ok(&[w.created(1, 5)]);
    assert_eq!(description(&r).as_deref(), Some("from 1"));
}

#[test]
fn state_events_before_the_creation_wait_for_it() {
    let w = World::new();
    let r = w.replica();
    let created = w.created(0, 1);
    let set = w.setting(0, 10, "description", json!("set early"), None);
    let join = w.membership(1, 11, w.agent(1, 1), MembershipAction::Join, None);
    r.deliver_ok(&[set, join]);
    assert_eq!(r.waiting(), (2, 0));
    r.deliver_ok(&[created]);
    assert_eq!(r.waiting(), (0, 0));
    assert_eq!(description(&r).as_deref(), Some("set early"));
    assert_eq!(r.int(MEMBER_COUNT, &r.hive_id), 2);
}

#[test]
fn a_hive_deleted_event_marks_the_hive_once_it_exists() {
    let w = World::new();
    let r = w.replica();
    let created = w.created(0, 1);
    r.deliver_ok(&[w.hive_deleted(0, 5)]);
    assert_eq!(r.waiting(), (1, 0));
    let report = r.deliver_ok(&[created]);
    assert_eq!(
        r.int("SELECT deleted FROM hives WHERE id = ?1", &r.hive_id),
        1
    );
    assert!(
        report
            .changes
            .iter()
            .any(|c| matches!(c, Change::HiveDeleted { .. })),
        "{:?}",
        report.changes
    );
}

// ── Membership, moderators, pins ────────────────────────────────────────────

#[test]
fn membership_follows_its_register() {
    let w = World::new();
    let r = w.replica();
    let b1 = w.agent(1, 1);
    r.deliver_ok(&[w.created(0, 1)]);
    assert_eq!(r.int(MEMBER_COUNT, &r.hive_id), 1, "the owner is a member");

    let join = w.membership(1, 10, b1.clone(), MembershipAction::Join, None);
    let report = r.deliver_ok(std::slice::from_ref(&join));
    assert!(matches!(
        report.changes.as_slice(),
        [Change::MembershipChanged { agent_id, .. }] if *agent_id == b1.agent_id
    ));
    assert_eq!(r.text(STATE, &b1.agent_id).as_deref(), Some("member"));
    assert_eq!(
        r.int(
            "SELECT joined_at FROM memberships WHERE agent_id = ?1",
            &b1.agent_id
        ),
        10
    );
    assert_eq!(r.int(MEMBER_COUNT, &r.hive_id), 2);

    let leave = w.membership(1, 20, b1.clone(), MembershipAction::Leave, Some(&join));
    r.deliver_ok(std::slice::from_ref(&leave));
    assert_eq!(r.text(STATE, &b1.agent_id).as_deref(), Some("left"));
    assert_eq!(r.int(MEMBER_COUNT, &r.hive_id), 1);

    let ban = w.membership(0, 30, b1.clone(), MembershipAction::Ban, Some(&leave));
    r.deliver_ok(std::slice::from_ref(&ban));
    assert_eq!(r.text(STATE, &b1.agent_id).as_deref(), Some("banned"));

    let unban = w.membership(0, 40, b1.clone(), MembershipAction::Unban, Some(&ban));
    r.deliver_ok(&[unban]);
    assert_eq!(r.text(STATE, &b1.agent_id).as_deref(), Some("left"));
    assert_eq!(r.int(MEMBER_COUNT, &r.hive_id), 1);
}

#[test]
fn a_concurrent_ban_by_the_owner_beats_a_later_join() {
    let w = World::new();
    let b1 = w.agent(1, 1);
    let join = w.membership(1, 20, b1.clone(), MembershipAction::Join, None);
    let ban = w.membership(0, 10, b1.clone(), MembershipAction::Ban, None);
    let (r1, _) = both_orders(&w, &[w.created(0, 1)], &[join, ban]);
    assert_eq!(r1.text(STATE, &b1.agent_id).as_deref(), Some("banned"));
    assert_eq!(r1.int(MEMBER_COUNT, &r1.hive_id), 1);
}

#[test]
fn moderators_follow_their_register() {
    let w = World::new();
    let r = w.replica();
    let b0 = w.agent(1, 0);
    r.deliver_ok(&[w.created(0, 1)]);
    let add = w.moderator(0, 10, b0.clone(), ModeratorAction::Add, None);
    r.deliver_ok(std::slice::from_ref(&add));
    assert_eq!(r.int(IS_MOD, &b0.agent_id), 1);
    // A concurrent removal by another instance loses to the owner's add...
    let concurrent = w.moderator(2, 20, b0.clone(), ModeratorAction::Remove, None);
    r.deliver_ok(&[concurrent]);
    assert_eq!(r.int(IS_MOD, &b0.agent_id), 1);
    // ...one that saw the add supersedes it (and is later than the concurrent one).
    let after = w.moderator(2, 30, b0.clone(), ModeratorAction::Remove, Some(&add));
    r.deliver_ok(&[after]);
    assert_eq!(r.int(IS_MOD, &b0.agent_id), 0);
    // A moderator change alone does not make a member.
    assert_eq!(r.text(STATE, &b0.agent_id).as_deref(), Some("left"));
}

#[test]
fn pins_follow_their_register_and_wait_for_their_post() {
    let w = World::new();
    let r = w.replica();
    let (post, p) = w.post(1, 0, 2, "t");
    let pin = w.pin(0, 10, &post, true, None);
    r.deliver_ok(&[w.created(0, 1), pin.clone()]);
    assert_eq!(r.waiting(), (1, 0));
    r.deliver_ok(&[p]);
    assert_eq!(r.int(PINNED, &post), 1);

    let concurrent = w.pin(1, 20, &post, false, None);
    r.deliver_ok(&[concurrent]);
    assert_eq!(r.int(PINNED, &post), 1, "the owner's concurrent pin wins");
    let after = w.pin(1, 30, &post, false, Some(&pin));
    r.deliver_ok(&[after]);
    assert_eq!(r.int(PINNED, &post), 0);
}

// ── Owner succession ────────────────────────────────────────────────────────

const DECIDER: &str = "SELECT deciding_instance_id FROM hives WHERE id = ?1";
const PERIOD: &str = "SELECT owner_succession_secs FROM hives WHERE id = ?1";

/// Instances 1 and 2 in id order: (smaller, larger).
fn by_id(w: &World) -> (usize, usize) {
    if w.insts[1].id < w.insts[2].id {
        (1, 2)
    } else {
        (2, 1)
    }
}

#[test]
fn the_period_defaults_to_thirty_days_and_the_owner_decides() {
    let w = World::new();
    let r = w.replica();
    r.deliver_ok(&[w.created(0, 1)]);
    assert_eq!(r.int(PERIOD, &r.hive_id), 30 * 24 * 3600);
    assert_eq!(r.text(DECIDER, &r.hive_id), Some(w.insts[0].id.clone()));
    // A day of silence is not thirty.
    r.deliver_ok(&[w.post(1, 0, 86_400_000, "t").1]);
    assert_eq!(r.text(DECIDER, &r.hive_id), Some(w.insts[0].id.clone()));
}

#[test]
fn a_silent_owner_is_succeeded_by_the_smallest_active_instance_then_returns() {
    let w = World::new();
    let (small, large) = by_id(&w);
    let base = [
        w.created(0, 1),
        w.setting(0, 2, "owner_succession_secs", json!(1), None),
    ];
    // Three concurrent description changes: the owner's early, then the larger id's
    // latest, the smaller id's in between; the owner is silent for more than 1 s.
    let by_owner = w.setting(0, 100, "description", json!("by owner"), None);
    let by_small = w.setting(small, 5_000, "description", json!("by small"), None);
    let by_large = w.setting(large, 5_001, "description", json!("by large"), None);
    let (r1, r2) = both_orders(&w, &base, &[by_owner, by_small, by_large]);
    for r in [&r1, &r2] {
        assert_eq!(r.text(DECIDER, &r.hive_id), Some(w.insts[small].id.clone()));
        // Rule 1 now prefers the successor: not the owner's, not the latest.
        assert_eq!(description(r).as_deref(), Some("by small"));
    }
    // The owner speaks again (any event): it decides again, its value wins again.
    let back = w.post(0, 0, 5_002, "back").1;
    let outcome = r1.apply(&back);
    assert!(
        changes(&outcome)
            .iter()
            .any(|c| matches!(c, Change::HiveUpdated { .. })),
        "{outcome:?}"
    );
    r2.deliver_ok(&[back]);
    for r in [&r1, &r2] {
        assert_eq!(r.text(DECIDER, &r.hive_id), Some(w.insts[0].id.clone()));
        assert_eq!(description(r).as_deref(), Some("by owner"));
    }
    assert_eq!(r1.digest(), r2.digest());
}

#[test]
fn the_period_is_decided_by_the_owner_and_zero_turns_succession_off() {
    let w = World::new();
    let (small, _) = by_id(&w);
    let created = w.created(0, 1);
    // Concurrent period changes: the owner's 0 (off) wins over a later 1 from another
    // instance, even while the owner is silent: the period never depends on the decider.
    let off = w.setting(0, 2, "owner_succession_secs", json!(0), None);
    let one = w.setting(small, 3, "owner_succession_secs", json!(1), None);
    let by_owner = w.setting(0, 100, "description", json!("by owner"), None);
    let by_small = w.setting(small, 50_000, "description", json!("by small"), None);
    let (r1, _) = both_orders(&w, &[created], &[off, one, by_owner, by_small]);
    assert_eq!(r1.int(PERIOD, &r1.hive_id), 0);
    assert_eq!(r1.text(DECIDER, &r1.hive_id), Some(w.insts[0].id.clone()));
    assert_eq!(description(&r1).as_deref(), Some("by owner"));
}

#[test]
fn shortening_the_period_hands_over_at_once() {
    let w = World::new();
    let (small, _) = by_id(&w);
    let created = w.created(0, 1);
    let by_owner = w.setting(0, 100, "description", json!("by owner"), None);
    let by_small = w.setting(small, 50_000, "description", json!("by small"), None);
    let r = w.replica();
    r.deliver_ok(&[created, by_owner.clone(), by_small]);
    assert_eq!(description(&r).as_deref(), Some("by owner"));
    // The owner's clock is 100 ms here; it shortens the period (having seen its own value).
    let shorten = w.setting(0, 101, "owner_succession_secs", json!(10), None);
    r.deliver_ok(&[shorten]);
    assert_eq!(r.text(DECIDER, &r.hive_id), Some(w.insts[small].id.clone()));
    assert_eq!(description(&r).as_deref(), Some("by small"));
}

// ── Corrupt candidates ──────────────────────────────────────────────────────

const CORRUPT_VALUE: &str =
    "UPDATE state_candidates SET value = ?2 WHERE register = ?1 AND event_id = ?3";
const PLANT: &str = "INSERT INTO state_candidates
     (hive_id, register, event_id, prev, origin_instance_id, origin_ts, value)
     VALUES (?1, ?2, 'evt_planted', NULL, 'inst_planted', 0, ?3)";

#[test]
fn a_corrupt_membership_value_is_an_error_not_left() {
    let w = World::new();
    let r = w.replica();
    let b1 = w.agent(1, 1);
    let register = format!("member:{}", b1.agent_id);
    let join = w.membership(1, 10, b1.clone(), MembershipAction::Join, None);
    r.deliver_ok(&[w.created(0, 1), join.clone()]);
    assert_eq!(r.exec(CORRUPT_VALUE, &[&register, "not json", &join.id]), 1);
    // A concurrent, earlier ban by a non-owner loses to the join: the join's value decides.
    let ban = w.membership(2, 5, b1.clone(), MembershipAction::Ban, None);
    assert_corrupt(r.deliver(std::slice::from_ref(&ban)), &register);
    // The failed batch was rolled back: the ban is not logged and nothing moved.
    assert!(!logged(&r, &ban));
    assert_eq!(r.text(STATE, &b1.agent_id).as_deref(), Some("member"));
}

#[test]
fn a_corrupt_moderator_value_is_an_error_not_removed() {
    let w = World::new();
    let r = w.replica();
    let b0 = w.agent(1, 0);
    let register = format!("moderator:{}", b0.agent_id);
    let add = w.moderator(0, 10, b0.clone(), ModeratorAction::Add, None);
    r.deliver_ok(&[w.created(0, 1), add.clone()]);
    assert_eq!(r.exec(CORRUPT_VALUE, &[&register, "\"maybe\"", &add.id]), 1);
    let concurrent = w.moderator(2, 20, b0, ModeratorAction::Remove, None);
    assert_corrupt(r.deliver(&[concurrent]), &register);
}

#[test]
fn a_corrupt_setting_value_is_an_error_not_unchanged() {
    let w = World::new();
    for (key, bad) in [("description", "42"), ("is_public", "{oops")] {
        let r = w.replica();
        let register = format!("setting:{key}");
        let value = if key == "description" {
            json!("owner's")
        } else {
            json!(false)
        };
        let by_owner = w.setting(0, 10, key, value.clone(), None);
        r.deliver_ok(&[w.created(0, 1), by_owner.clone()]);
        assert_eq!(r.exec(CORRUPT_VALUE, &[&register, bad, &by_owner.id]), 1);
        // B's concurrent change loses to the owner's, whose stored value must be decoded.
        let by_b = w.setting(1, 20, key, value, None);
        assert_corrupt(r.deliver(&[by_b]), &register);
    }
}

#[test]
fn a_corrupt_pin_value_is_an_error_when_registers_are_recomputed() {
    let w = World::new();
    let r = w.replica();
    let (post, p) = w.post(0, 0, 2, "t");
    let register = format!("pin:{post}");
    let pin = w.pin(0, 10, &post, true, None);
    r.deliver_ok(&[w.created(0, 5), p, pin.clone()]);
    assert_eq!(r.exec(CORRUPT_VALUE, &[&register, "yes", &pin.id]), 1);
    // An earlier creation changes the owner: every register is recomputed, this one too.
    assert_corrupt(r.deliver(&[w.created(1, 1)]), &register);
    assert_eq!(r.int(PINNED, &post), 1);
}

#[test]
fn a_corrupt_creation_value_is_an_error() {
    let w = World::new();
    let r = w.replica();
    // A candidate creation earlier than any real one, whose value is not a hive_created.
    assert_eq!(r.exec(PLANT, &[&r.hive_id, "hive", "{\"name\":1}"]), 1);
    assert_corrupt(r.deliver(&[w.created(0, 1)]), "register hive");
    assert_eq!(
        r.text(
            "SELECT created_event_id FROM hives WHERE id = ?1",
            &r.hive_id
        ),
        None
    );
}

#[test]
fn a_register_of_no_known_kind_is_an_error() {
    let w = World::new();
    let r = w.replica();
    r.deliver_ok(&[w.created(0, 5)]);
    assert_eq!(r.exec(PLANT, &[&r.hive_id, "colour:red", "\"red\""]), 1);
    assert_corrupt(r.deliver(&[w.created(1, 1)]), "colour:red");
}
