//! Comments: `comment_created`, `comment_updated`, `comment_deleted` projected into
//! `comments`, and the post's `comment_count` (visible comments).
//!
//! Invariants:
//! - a comment is keyed by its origin id: a second `comment_created` with the same id
//!   changes nothing and counts nothing;
//! - its place in the tree (`depth`, `path` = `<root>/<child>/...`) is fixed by its parent
//!   when it is created and never changes; a reply whose parent is on another post is
//!   [`Outcome::Ignored`];
//! - content edits: the highest version `(origin_ts, event id)` wins; only the comment's
//!   (immutable) author edits;
//! - a delete is a tombstone that hides the whole subtree, including replies that arrive
//!   after it (they are created hidden); deleting a deleted comment changes nothing;
//! - `comment_count` equals the number of visible (neither deleted nor hidden) comments of
//!   the post, kept incrementally, never by recounting the post;
//! - an event on an unknown post, parent or comment waits for it ([`Outcome::Waiting`]).

use super::agents::upsert_agent_snapshot;
use super::posts::find_post;
use super::{Change, Ctx, Outcome, applied, author_may_edit};
use crate::engine::{Conn, OptionalExtension};
use crate::error::Result;
use crate::params;
use openhive_core::payload::{CommentCreated, CommentDeleted, CommentUpdated};

/// What the materializer needs to know about an existing comment.
struct CommentRef {
    post_id: String,
    author_id: String,
    depth: i64,
    path: String,
    deleted: bool,
    hidden: bool,
}

fn find_comment(conn: &Conn<'_>, hive_id: &str, id: &str) -> Result<Option<CommentRef>> {
    Ok(conn
        .prepare_cached(
            "SELECT post_id, author_id, depth, path, deleted, hidden FROM comments
             WHERE id = ?1 AND hive_id = ?2",
        )?
        .query_row(params![id, hive_id], |r| {
            Ok(CommentRef {
                post_id: r.get(0)?,
                author_id: r.get(1)?,
                depth: r.get(2)?,
                path: r.get(3)?,
                deleted: r.get(4)?,
                hidden: r.get(5)?,
            })
        })
        .optional()?)
}

/// Where a new comment goes in its post's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placement {
    depth: i64,
    path: String,
    /// Created under a deleted or hidden comment: hidden from the start.
    hidden: bool,
}

/// The place of comment `comment_id` on `post_id` under `parent` (None: a top-level
/// comment), or the reason it has no effect.
fn placement(
    post_id: &str,
    comment_id: &str,
    parent: Option<&CommentRef>,
) -> std::result::Result<Placement, &'static str> {
    match parent {
        None => Ok(Placement {
            depth: 0,
            path: comment_id.to_string(),
            hidden: false,
        }),
        Some(parent) if parent.post_id != post_id => Err("parent comment is on another post"),
        Some(parent) => Ok(Placement {
            depth: parent.depth + 1,
            path: format!("{}/{}", parent.path, comment_id),
            hidden: parent.deleted || parent.hidden,
        }),
    }
}

pub(super) fn created(cx: &Ctx<'_>, p: &CommentCreated) -> Result<Outcome> {
    if find_post(cx.conn, cx.hive_id, &p.post_id)?.is_none() {
        return Ok(Outcome::Waiting {
            depends_on: p.post_id.clone(),
        });
    }
    let parent = match &p.parent_comment_id {
        None => None,
        Some(parent_id) => {
            let Some(parent) = find_comment(cx.conn, cx.hive_id, parent_id)? else {
                return Ok(Outcome::Waiting {
                    depends_on: parent_id.clone(),
                });
            };
            Some(parent)
        }
    };
    let Placement {
        depth,
        path,
        hidden,
    } = match placement(&p.post_id, &p.comment_id, parent.as_ref()) {
        Ok(place) => place,
        Err(reason) => return Ok(Outcome::Ignored { reason }),
    };
    let v = cx.version();
    upsert_agent_snapshot(cx, &p.author)?;
    let n = cx
        .conn
        .prepare_cached(
            "INSERT INTO comments (id, post_id, hive_id, parent_id, author_id,
               origin_instance_id, content, content_v, score, depth, path, deleted, hidden,
               created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10, 0, ?11, ?12, ?12) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            p.comment_id,
            p.post_id,
            cx.hive_id,
            p.parent_comment_id,
            p.author.agent_id,
            cx.ev.origin_instance_id,
            p.content,
            v,
            depth,
            path,
            hidden,
            cx.ev.origin_ts
        ])?;
    if n > 0 && !hidden {
        add_comment_count(cx.conn, &p.post_id, 1)?;
    }
    let changes = if n > 0 {
        vec![Change::CommentCreated {
            hive: cx.hive(),
            post_id: p.post_id.clone(),
            comment_id: p.comment_id.clone(),
        }]
    } else {
        Vec::new()
    };
    Ok(Outcome::Applied {
        changes,
        provides: vec![p.comment_id.clone()],
    })
}

pub(super) fn updated(cx: &Ctx<'_>, p: &CommentUpdated) -> Result<Outcome> {
    let conn = cx.conn;
    let Some(c) = find_comment(conn, cx.hive_id, &p.comment_id)? else {
        return Ok(Outcome::Waiting {
            depends_on: p.comment_id.clone(),
        });
    };
    if !author_may_edit(&c.author_id, &p.updated_by.agent_id) {
        return Ok(Outcome::Ignored {
            reason: "only the author edits a comment",
        });
    }
    let v = cx.version();
    let n = conn.execute(
        "UPDATE comments SET content = ?2, content_v = ?3, updated_at = GREATEST(updated_at, ?4)
                 WHERE id = ?1 AND content_v < ?3",
        params![p.comment_id, p.content, v, cx.ev.origin_ts],
    )?;
    upsert_agent_snapshot(cx, &p.updated_by)?;
    let changes = if n > 0 {
        vec![Change::CommentUpdated {
            hive: cx.hive(),
            post_id: c.post_id,
            comment_id: p.comment_id.clone(),
        }]
    } else {
        Vec::new()
    };
    Ok(applied(changes))
}

pub(super) fn deleted(cx: &Ctx<'_>, p: &CommentDeleted) -> Result<Outcome> {
    let conn = cx.conn;
    let Some(c) = find_comment(conn, cx.hive_id, &p.comment_id)? else {
        return Ok(Outcome::Waiting {
            depends_on: p.comment_id.clone(),
        });
    };
    if c.deleted {
        return Ok(applied(Vec::new()));
    }
    // The comment and its visible descendants stop counting; O(subtree), not O(post).
    // Paths are `<root>/<child>/...`; '0' is the byte after '/'.
    let vanishing: i64 = conn.query_row(
        "SELECT COUNT(*) FROM comments
                 WHERE post_id = ?1 AND deleted = 0 AND hidden = 0
                   AND (id = ?3 OR (path > ?2 || '/' AND path < ?2 || '0'))",
        params![c.post_id, c.path, p.comment_id],
        |r| r.get(0),
    )?;
    conn.execute(
        "UPDATE comments SET deleted = 1 WHERE id = ?1",
        [&p.comment_id],
    )?;
    conn.execute(
        "UPDATE comments SET hidden = 1
                 WHERE post_id = ?1 AND path > ?2 || '/' AND path < ?2 || '0'",
        params![c.post_id, c.path],
    )?;
    add_comment_count(conn, &c.post_id, -vanishing)?;
    Ok(applied(vec![Change::CommentDeleted {
        hive: cx.hive(),
        post_id: c.post_id,
        comment_id: p.comment_id.clone(),
    }]))
}

/// Comment counts are kept incrementally: +1 per visible comment created, minus the visible
/// comments a delete hides. The result equals the number of visible comments, a function of
/// the event set; counting on every insert would be O(comments of the post).
fn add_comment_count(conn: &Conn<'_>, post_id: &str, delta: i64) -> Result<()> {
    if delta != 0 {
        conn.prepare_cached("UPDATE posts SET comment_count = comment_count + ?2 WHERE id = ?1")?
            .execute(params![post_id, delta])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(post: &str, path: &str, depth: i64, deleted: bool, hidden: bool) -> CommentRef {
        CommentRef {
            post_id: post.into(),
            author_id: "agt_x_1".into(),
            depth,
            path: path.into(),
            deleted,
            hidden,
        }
    }

    #[test]
    fn a_top_level_comment_is_its_own_root() {
        assert_eq!(
            placement("post_1", "cmt_1", None),
            Ok(Placement {
                depth: 0,
                path: "cmt_1".into(),
                hidden: false
            })
        );
    }

    #[test]
    fn a_reply_extends_its_parents_path() {
        let p = parent("post_1", "cmt_1/cmt_2", 1, false, false);
        assert_eq!(
            placement("post_1", "cmt_3", Some(&p)),
            Ok(Placement {
                depth: 2,
                path: "cmt_1/cmt_2/cmt_3".into(),
                hidden: false
            })
        );
    }

    #[test]
    fn a_reply_under_a_deleted_or_hidden_comment_is_hidden() {
        for (deleted, hidden) in [(true, false), (false, true), (true, true)] {
            let p = parent("post_1", "cmt_1", 0, deleted, hidden);
            let place = placement("post_1", "cmt_2", Some(&p));
            assert!(place.is_ok_and(|pl| pl.hidden), "{deleted} {hidden}");
        }
    }

    #[test]
    fn a_reply_to_a_comment_of_another_post_has_no_place() {
        let p = parent("post_1", "cmt_1", 0, false, false);
        assert_eq!(
            placement("post_2", "cmt_2", Some(&p)),
            Err("parent comment is on another post")
        );
    }
}
