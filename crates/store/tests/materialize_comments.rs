//! Comments as the materializer projects them: a delete hides exactly its subtree (also
//! replies that arrive after it), visible-comment counts stay exact whatever the order,
//! content edits are last-writer-wins, duplicates change nothing, replies across posts and
//! edits by non-authors have no effect.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod materialize_support;

use materialize_support::*;
use openhive_store::materialize::Outcome;

const DELETED: &str = "SELECT deleted FROM comments WHERE id = ?1";
const HIDDEN: &str = "SELECT hidden FROM comments WHERE id = ?1";
const CONTENT: &str = "SELECT content FROM comments WHERE id = ?1";
const COUNT: &str = "SELECT comment_count FROM posts WHERE id = ?1";

#[test]
fn a_delete_hides_the_subtree_and_only_the_subtree() {
    let w = World::new();
    let r = w.replica();
    let (post, p) = w.post(0, 0, 2, "t");
    let (c1, e1) = w.comment(0, 0, 3, &post, None);
    let (c2, e2) = w.comment(1, 0, 4, &post, Some(&c1));
    let (c3, e3) = w.comment(2, 0, 5, &post, Some(&c2));
    let (c4, e4) = w.comment(0, 1, 6, &post, None);
    // A reply under another root must not be touched either.
    let (c5, e5) = w.comment(1, 1, 7, &post, Some(&c4));
    r.deliver_ok(&[w.created(0, 1), p, e1, e2, e3, e4, e5]);
    assert_eq!(r.int(COUNT, &post), 5);
    assert_eq!(r.int("SELECT depth FROM comments WHERE id = ?1", &c3), 2);
    assert_eq!(
        r.text("SELECT path FROM comments WHERE id = ?1", &c3),
        Some(format!("{c1}/{c2}/{c3}"))
    );

    r.deliver_ok(&[w.delete_comment(0, 0, 10, &c1)]);
    assert_eq!((r.int(DELETED, &c1), r.int(HIDDEN, &c1)), (1, 0));
    assert_eq!((r.int(DELETED, &c2), r.int(HIDDEN, &c2)), (0, 1));
    assert_eq!((r.int(DELETED, &c3), r.int(HIDDEN, &c3)), (0, 1));
    for c in [&c4, &c5] {
        assert_eq!((r.int(DELETED, c), r.int(HIDDEN, c)), (0, 0), "{c}");
    }
    assert_eq!(r.int(COUNT, &post), 2);
}

#[test]
fn a_reply_arriving_after_the_delete_is_hidden_and_not_counted() {
    let w = World::new();
    let created = w.created(0, 1);
    let (post, p) = w.post(0, 0, 2, "t");
    let (c1, e1) = w.comment(0, 0, 3, &post, None);
    let (c2, e2) = w.comment(1, 0, 4, &post, Some(&c1));
    let del = w.delete_comment(0, 0, 10, &c1);
    // Written before the delete was seen, delivered after it.
    let (c3, e3) = w.comment(2, 0, 5, &post, Some(&c2));
    let (c4, e4) = w.comment(2, 1, 6, &post, Some(&c1));

    let r1 = w.replica();
    r1.deliver_ok(&[
        created.clone(),
        p.clone(),
        e1.clone(),
        e2.clone(),
        del.clone(),
    ]);
    assert_eq!(r1.int(COUNT, &post), 0);
    r1.deliver_ok(&[e3.clone(), e4.clone()]);
    assert_eq!(r1.int(HIDDEN, &c3), 1);
    assert_eq!(r1.int(HIDDEN, &c4), 1);
    assert_eq!(r1.int(COUNT, &post), 0);

    // The same set, the delete last: the same state.
    let r2 = w.replica();
    r2.deliver_ok(&[created, p, e1, e2, e3, e4]);
    assert_eq!(r2.int(COUNT, &post), 4);
    r2.deliver_ok(&[del]);
    assert_eq!(r2.int(COUNT, &post), 0);
    assert_eq!(r1.digest(), r2.digest());
}

#[test]
fn deletes_inside_a_deleted_subtree_count_each_comment_once() {
    let w = World::new();
    let (post, p) = w.post(0, 0, 2, "t");
    let (c1, e1) = w.comment(0, 0, 3, &post, None);
    let (c2, e2) = w.comment(1, 0, 4, &post, Some(&c1));
    let (_c3, e3) = w.comment(1, 1, 5, &post, None);
    let del1 = w.delete_comment(0, 0, 10, &c1);
    let del1_again = w.delete_comment(1, 0, 11, &c1);
    let del2 = w.delete_comment(1, 0, 12, &c2);
    let created = w.created(0, 1);

    // Child first, then parent, then the parent again.
    let r1 = w.replica();
    r1.deliver_ok(&[
        created.clone(),
        p.clone(),
        e1.clone(),
        e2.clone(),
        e3.clone(),
    ]);
    assert_eq!(r1.int(COUNT, &post), 3);
    r1.deliver_ok(std::slice::from_ref(&del2));
    assert_eq!(r1.int(COUNT, &post), 2);
    r1.deliver_ok(std::slice::from_ref(&del1));
    assert_eq!(r1.int(COUNT, &post), 1);
    let again = r1.deliver_ok(std::slice::from_ref(&del1_again));
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(r1.int(COUNT, &post), 1);

    // Parent first: the child is already hidden, deleting it must not count it out again.
    let r2 = w.replica();
    r2.deliver_ok(&[created, p, e1, e2, e3, del1, del1_again, del2]);
    assert_eq!(r2.int(COUNT, &post), 1);
    assert_eq!(r1.digest(), r2.digest());
}

#[test]
fn an_older_comment_edit_does_not_overwrite_a_newer_one_in_either_order() {
    let w = World::new();
    let (post, p) = w.post(0, 0, 2, "t");
    let (c, e) = w.comment(1, 0, 3, &post, None);
    let newer = w.edit_comment(1, 0, 20, &c, "new");
    let older = w.edit_comment(1, 0, 10, &c, "old");
    let created = w.created(0, 1);

    let r1 = w.replica();
    r1.deliver_ok(&[
        created.clone(),
        p.clone(),
        e.clone(),
        newer.clone(),
        older.clone(),
    ]);
    let r2 = w.replica();
    r2.deliver_ok(&[created, p, e, older, newer]);
    for r in [&r1, &r2] {
        assert_eq!(r.text(CONTENT, &c).as_deref(), Some("new"));
        assert_eq!(
            r.int("SELECT updated_at FROM comments WHERE id = ?1", &c),
            20
        );
    }
    assert_eq!(r1.digest(), r2.digest());
}

#[test]
fn a_duplicate_comment_created_changes_nothing() {
    let w = World::new();
    let r = w.replica();
    let (post, p) = w.post(0, 0, 2, "t");
    let (c, e) = w.comment(1, 0, 3, &post, None);
    r.deliver_ok(&[w.created(0, 1), p, e.clone()]);
    let before = r.digest();

    let again = r.apply(&e);
    assert!(changes(&again).is_empty(), "{again:?}");
    assert_eq!(r.digest(), before);
    assert_eq!(r.int(COUNT, &post), 1);

    // A re-signed creation of the same id with other content and another parent: ignored.
    let (other_root, o) = w.comment(1, 1, 4, &post, None);
    r.deliver_ok(&[o]);
    let copy = w.recomment(&c, 1, 0, 5, &post, Some(&other_root), "changed");
    let report = r.deliver_ok(&[copy]);
    assert_eq!(report.accepted, 1);
    assert_eq!(r.text(CONTENT, &c).as_deref(), Some("hi"));
    assert_eq!(r.int("SELECT depth FROM comments WHERE id = ?1", &c), 0);
    assert_eq!(r.int(COUNT, &post), 2);
}

#[test]
fn a_reply_to_a_comment_of_another_post_has_no_effect() {
    let w = World::new();
    let r = w.replica();
    let (p1, e1) = w.post(0, 0, 2, "one");
    let (p2, e2) = w.post(0, 0, 3, "two");
    let (c1, ec) = w.comment(0, 0, 4, &p1, None);
    r.deliver_ok(&[w.created(0, 1), e1, e2, ec]);
    let (stray, es) = w.comment(1, 0, 5, &p2, Some(&c1));
    assert_eq!(
        r.apply(&es),
        Outcome::Ignored {
            reason: "parent comment is on another post"
        }
    );
    r.deliver_ok(&[es]);
    assert_eq!(
        r.count("SELECT COUNT(*) FROM comments WHERE id = ?1", &stray),
        0
    );
    assert_eq!(r.int(COUNT, &p2), 0);
}

#[test]
fn only_the_author_edits_a_comment() {
    let w = World::new();
    let r = w.replica();
    let (post, p) = w.post(0, 0, 2, "t");
    let (c, e) = w.comment(1, 0, 3, &post, None);
    r.deliver_ok(&[w.created(0, 1), p, e]);
    let edit = w.edit_comment(1, 1, 10, &c, "not yours");
    assert_eq!(
        r.apply(&edit),
        Outcome::Ignored {
            reason: "only the author edits a comment"
        }
    );
    assert_eq!(r.text(CONTENT, &c).as_deref(), Some("hi"));
}

#[test]
fn a_reply_that_arrives_before_its_parent_waits_for_it() {
    let w = World::new();
    let r = w.replica();
    let (post, p) = w.post(0, 0, 2, "t");
    let (c1, e1) = w.comment(0, 0, 3, &post, None);
    let (c2, e2) = w.comment(1, 0, 4, &post, Some(&c1));
    r.deliver_ok(&[w.created(0, 1), e2]);
    assert_eq!(r.waiting(), (1, 0));
    r.deliver_ok(&[p]);
    // Now waiting for the parent instead of the post.
    assert_eq!(r.waiting(), (1, 0));
    r.deliver_ok(&[e1]);
    assert_eq!(r.waiting(), (0, 0));
    assert_eq!(
        r.text("SELECT path FROM comments WHERE id = ?1", &c2),
        Some(format!("{c1}/{c2}"))
    );
    assert_eq!(r.int(COUNT, &post), 2);
}
