//! Posts as the materializer projects them: per-field last-writer-wins edits, duplicate
//! creations that change nothing, tombstones that stay, author-only edits, edits that wait
//! for their post. Each test delivers signed events as a peer would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod materialize_support;

use materialize_support::*;
use openhive_store::materialize::{Change, Outcome};

const TITLE: &str = "SELECT title FROM posts WHERE id = ?1";
const CONTENT: &str = "SELECT content FROM posts WHERE id = ?1";
const DELETED: &str = "SELECT deleted FROM posts WHERE id = ?1";

#[test]
fn an_older_edit_does_not_overwrite_a_newer_one_in_either_order() {
    let w = World::new();
    let created = w.created(0, 1);
    let (post, p) = w.post(0, 0, 2, "t0");
    let newer = w.edit_post(0, 0, 20, &post, Some("new"), None, None);
    let older = w.edit_post(0, 0, 10, &post, Some("old"), None, None);

    let r1 = w.replica();
    r1.deliver_ok(&[created.clone(), p.clone(), newer.clone(), older.clone()]);
    assert_eq!(r1.text(TITLE, &post).as_deref(), Some("new"));

    let r2 = w.replica();
    r2.deliver_ok(&[created, p, older, newer]);
    assert_eq!(r2.text(TITLE, &post).as_deref(), Some("new"));
    // updated_at is the latest edit, not the last delivered.
    assert_eq!(
        r1.int("SELECT updated_at FROM posts WHERE id = ?1", &post),
        20
    );
    assert_eq!(r1.digest(), r2.digest());
}

#[test]
fn fields_are_versioned_independently() {
    let w = World::new();
    let r = w.replica();
    let (post, p) = w.post(0, 0, 2, "t0");
    // The newer edit sets only the title; the older one sets title and content.
    let newer = w.edit_post(0, 0, 20, &post, Some("T20"), None, None);
    let older = w.edit_post(0, 0, 10, &post, Some("T10"), Some("C10"), None);
    r.deliver_ok(&[w.created(0, 1), p, newer, older]);
    assert_eq!(r.text(TITLE, &post).as_deref(), Some("T20"));
    // An absent field is "unchanged", so the older edit's content still wins its field.
    assert_eq!(r.text(CONTENT, &post).as_deref(), Some("C10"));
    assert_eq!(r.text("SELECT url FROM posts WHERE id = ?1", &post), None);
}

#[test]
fn a_duplicate_post_created_changes_nothing() {
    let w = World::new();
    let r = w.replica();
    let (post, p) = w.post(0, 0, 2, "first");
    r.deliver_ok(&[w.created(0, 1), p.clone()]);
    let before = r.digest();

    // The same event again, through the log: a duplicate, nothing changes.
    let report = r.deliver_ok(std::slice::from_ref(&p));
    assert_eq!((report.accepted, report.duplicates), (0, 1));
    assert_eq!(r.digest(), before);

    // The same event handed to the materializer a second time: no change reported, and it
    // still provides the post (what waits on it may be released).
    let again = r.apply(&p);
    assert_eq!(
        again,
        Outcome::Applied {
            changes: Vec::new(),
            provides: vec![post.clone()]
        }
    );
    assert_eq!(r.digest(), before);

    // A re-signed creation of the same id (another event, later): the first one stays.
    let copy = w.repost(&post, w.agent(0, 0), 0, 30, "second");
    let report = r.deliver_ok(&[copy]);
    assert_eq!(report.accepted, 1);
    assert!(report.changes.is_empty(), "{:?}", report.changes);
    assert_eq!(r.text(TITLE, &post).as_deref(), Some("first"));
    assert_eq!(
        r.int("SELECT created_at FROM posts WHERE id = ?1", &post),
        2
    );
    assert_eq!(r.post_count(), 1);
}

#[test]
fn a_delete_is_a_tombstone_and_counts_once() {
    let w = World::new();
    let r = w.replica();
    let (post, p) = w.post(0, 0, 2, "t");
    let (other, o) = w.post(0, 1, 3, "kept");
    r.deliver_ok(&[w.created(0, 1), p, o]);
    assert_eq!(r.post_count(), 2);

    let report = r.deliver_ok(&[w.delete_post(0, 0, 5, &post)]);
    assert!(matches!(
        report.changes.as_slice(),
        [Change::PostDeleted { post_id, .. }] if *post_id == post
    ));
    assert_eq!(r.int(DELETED, &post), 1);
    assert_eq!(r.post_count(), 1);

    // Later events do not bring it back: an edit, a re-signed creation, a second delete.
    let report = r.deliver_ok(&[
        w.edit_post(0, 0, 30, &post, Some("revived?"), None, None),
        w.repost(&post, w.agent(0, 0), 0, 31, "revived?"),
        w.delete_post(1, 0, 40, &post),
    ]);
    assert_eq!(report.accepted, 3);
    assert_eq!(r.int(DELETED, &post), 1);
    // The second delete did not count the post out again.
    assert_eq!(r.post_count(), 1);
    assert_eq!(r.int(DELETED, &other), 0);
}

/// A page's posts are counted once at its end (`Batch::flush`): creations and deletions of
/// one page, a duplicate among them, and a delete that waits for its post all add up to
/// the live posts.
#[test]
fn a_page_counts_its_posts_once_whatever_it_holds() {
    let w = World::new();
    let r = w.replica();
    let (a, pa) = w.post(0, 0, 2, "a");
    let (_, pb) = w.post(0, 1, 3, "b");
    let (c, pc) = w.post(1, 0, 4, "c");
    // The delete of `c` comes before `c` in the page: it waits, then applies.
    r.deliver_ok(&[
        w.created(0, 1),
        w.delete_post(1, 0, 6, &c),
        pa.clone(),
        pb,
        pa,
        pc,
        w.delete_post(0, 0, 5, &a),
    ]);
    assert_eq!(r.post_count(), 1);
    assert_eq!(
        r.count(
            "SELECT COUNT(*) FROM posts WHERE hive_id = ?1 AND deleted = 0",
            &r.hive_id
        ),
        1
    );
}

#[test]
fn only_the_author_edits_a_post() {
    let w = World::new();
    let r = w.replica();
    let (post, p) = w.post(0, 0, 2, "mine");
    r.deliver_ok(&[w.created(0, 1), p]);
    // Agent 1 of the same instance: a valid event (right namespace), but not the author.
    let edit = w.edit_post(0, 1, 10, &post, Some("theirs"), None, None);
    assert_eq!(
        r.apply(&edit),
        Outcome::Ignored {
            reason: "only the author edits a post"
        }
    );
    let before = r.ignored();
    r.deliver_ok(&[edit]);
    assert_eq!(r.ignored(), before + 1);
    assert_eq!(r.text(TITLE, &post).as_deref(), Some("mine"));
}

#[test]
fn an_edit_that_arrives_first_waits_for_its_post() {
    let w = World::new();
    let r = w.replica();
    let (post, p) = w.post(0, 0, 2, "t0");
    let edit = w.edit_post(0, 0, 10, &post, Some("edited"), None, None);
    r.deliver_ok(&[w.created(0, 1), edit]);
    assert_eq!(r.waiting(), (1, 0));
    let report = r.deliver_ok(&[p]);
    assert_eq!(report.accepted, 1);
    assert_eq!(r.waiting(), (0, 0));
    assert_eq!(r.text(TITLE, &post).as_deref(), Some("edited"));
    // The released edit is reported too.
    assert!(
        report
            .changes
            .iter()
            .any(|c| matches!(c, Change::PostUpdated { post_id, .. } if *post_id == post)),
        "{:?}",
        report.changes
    );
}

#[test]
fn an_edit_reports_a_change_only_when_it_wins_a_field() {
    let w = World::new();
    let r = w.replica();
    let (post, p) = w.post(0, 0, 2, "t0");
    let newer = w.edit_post(0, 0, 20, &post, Some("T20"), Some("C20"), None);
    r.deliver_ok(&[w.created(0, 1), p, newer]);
    let updated = |changes: &[Change]| {
        changes
            .iter()
            .any(|c| matches!(c, Change::PostUpdated { post_id, .. } if *post_id == post))
    };
    // Older in both of its fields: nothing to report, nothing written but updated_at's
    // maximum (already 20).
    let report = r.deliver_ok(&[w.edit_post(0, 0, 10, &post, Some("T10"), Some("C10"), None)]);
    assert_eq!(report.accepted, 1);
    assert!(!updated(&report.changes), "{:?}", report.changes);
    // Older in its title, the first to set the url: that one field wins, in one write.
    let report = r.deliver_ok(&[w.edit_post(
        0,
        0,
        15,
        &post,
        Some("T15"),
        None,
        Some("https://example.org/u15"),
    )]);
    assert!(updated(&report.changes), "{:?}", report.changes);
    assert_eq!(r.text(TITLE, &post).as_deref(), Some("T20"));
    assert_eq!(r.text(CONTENT, &post).as_deref(), Some("C20"));
    assert_eq!(
        r.text("SELECT url FROM posts WHERE id = ?1", &post)
            .as_deref(),
        Some("https://example.org/u15")
    );
    assert_eq!(
        r.int("SELECT updated_at FROM posts WHERE id = ?1", &post),
        20
    );
}
