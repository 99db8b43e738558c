//! Posts: `post_created`, `post_updated`, `post_deleted` projected into `posts` (and the
//! hive's live `post_count`). Pins are a state register and live in `registers`; votes and
//! the score/hot columns they derive live in `votes`.
//!
//! Invariants:
//! - a post is keyed by its origin id: a second `post_created` with the same id (a
//!   duplicate, or a re-signed copy) changes nothing and counts nothing;
//! - edits are per field (`title`, `content`, `url`): a field changes only when the edit's
//!   version `(origin_ts, event id)` is higher than the field's stored version, so an older
//!   edit never overwrites a newer one; an absent field is left unchanged; only the post's
//!   (immutable) author edits, anyone else's edit is [`Outcome::Ignored`];
//! - an edit writes the post's row once (the winning fields and `updated_at` together),
//!   so the full-text queue gets one delete and one insert per edit, not per field;
//! - a delete is a tombstone: nothing that arrives later clears `deleted`, and deleting a
//!   deleted post changes nothing (the live count drops once);
//! - an event on an unknown post waits for it ([`Outcome::Waiting`]).

use super::agents::upsert_agent_snapshot;
use super::{Change, Ctx, Outcome, applied, author_may_edit};
use crate::engine::{Conn, OptionalExtension};
use crate::error::Result;
use crate::params;
use openhive_core::order;
use openhive_core::payload::{PostCreated, PostDeleted, PostMirrored, PostUpdated};

/// What the materializer needs to know about an existing post.
pub(super) struct PostRef {
    pub(super) deleted: bool,
}

pub(super) fn find_post(conn: &Conn<'_>, hive_id: &str, post_id: &str) -> Result<Option<PostRef>> {
    Ok(conn
        .prepare_cached("SELECT deleted FROM posts WHERE id = ?1 AND hive_id = ?2")?
        .query_row(params![post_id, hive_id], |r| {
            Ok(PostRef { deleted: r.get(0)? })
        })
        .optional()?)
}

/// What an edit of a post competes with: the post's author and its field versions.
struct EditedPost {
    author_id: String,
    title_v: String,
    content_v: String,
    url_v: String,
}

/// What an edit writes: for each field, its new value when the edit's version is higher
/// than the field's (`None`: the field is absent from the edit, or a newer edit holds it).
#[derive(Debug, PartialEq, Eq)]
struct Winners<'a> {
    title: Option<&'a str>,
    content: Option<&'a str>,
    url: Option<&'a str>,
}

impl Winners<'_> {
    fn count(&self) -> usize {
        [self.title, self.content, self.url]
            .iter()
            .filter(|f| f.is_some())
            .count()
    }
}

/// The fields of `p` that win over the stored ones: a field is written only when the edit
/// carries it and its version `v` is strictly higher than the field's (an equal version is
/// the same event again). Versions are compared as bytes, as the columns (`COLLATE "C"` on
/// PostgreSQL, BINARY on SQLite) compare them.
fn winners<'a>(p: &'a PostUpdated, stored: &EditedPost, v: &str) -> Winners<'a> {
    let newer = |field_v: &str| v > field_v;
    Winners {
        title: p.title.as_deref().filter(|_| newer(&stored.title_v)),
        content: p.content.as_deref().filter(|_| newer(&stored.content_v)),
        url: p.url.as_deref().filter(|_| newer(&stored.url_v)),
    }
}

pub(super) fn created(cx: &Ctx<'_>, p: &PostCreated) -> Result<Outcome> {
    let v = cx.version();
    upsert_agent_snapshot(cx, &p.author)?;
    let n = cx
        .conn
        .prepare_cached(
            "INSERT INTO posts (id, hive_id, author_id, origin_instance_id, title, content,
               url, title_v, content_v, url_v, score, hot, comment_count, is_pinned, deleted,
               created_event_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8, 0, ?9, 0, 0, 0, ?10, ?11, ?11) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            p.post_id,
            cx.hive_id,
            p.author.agent_id,
            cx.ev.origin_instance_id,
            p.title,
            p.content,
            p.url,
            v,
            order::hot_rank(0, cx.ev.origin_ts),
            cx.ev.id,
            cx.ev.origin_ts
        ])?;
    if n > 0 {
        count_post(cx, 1)?;
    }
    let changes = if n > 0 {
        vec![Change::PostCreated {
            hive: cx.hive(),
            post_id: p.post_id.clone(),
        }]
    } else {
        Vec::new()
    };
    Ok(Outcome::Applied {
        changes,
        provides: vec![p.post_id.clone()],
    })
}

/// `post_mirrored`: a remote post copied into a mirror hive, keyed by the remote's id. The
/// first copy inserts (and counts); a copy of the same id in the same hive replaces the
/// content only when its event version is higher (so the newest copy wins whatever the
/// order); a copy whose id is already used by a post of another hive is ignored.
pub(super) fn mirrored(cx: &Ctx<'_>, p: &PostMirrored) -> Result<Outcome> {
    let v = cx.version();
    let existing: Option<String> = cx
        .conn
        .prepare_cached("SELECT hive_id FROM posts WHERE id = ?1")?
        .query_row([&p.post_id], |r| r.get(0))
        .optional()?;
    upsert_agent_snapshot(cx, &p.author)?;
    let hot = order::hot_rank(0, p.created_at);
    match existing {
        Some(h) if h != cx.hive_id => Ok(Outcome::Ignored {
            reason: "a mirrored post id is already used in another hive",
        }),
        Some(_) => {
            let n = cx.conn.prepare_cached(
                "UPDATE posts SET author_id = ?2, origin_instance_id = ?3, title = ?4, content = ?5,
                   url = ?6, title_v = ?7, content_v = ?7, url_v = ?7, hot = ?8,
                   created_event_id = ?9, created_at = ?10, updated_at = ?10
                 WHERE id = ?1 AND title_v < ?7",
            )?
            .execute(params![
                p.post_id,
                p.author.agent_id,
                p.author.instance_id,
                p.title,
                p.content,
                p.url,
                v,
                hot,
                cx.ev.id,
                p.created_at
            ])?;
            let changes = if n > 0 {
                vec![Change::PostUpdated {
                    hive: cx.hive(),
                    post_id: p.post_id.clone(),
                }]
            } else {
                Vec::new()
            };
            Ok(Outcome::Applied {
                changes,
                provides: vec![p.post_id.clone()],
            })
        }
        None => {
            cx.conn
                .prepare_cached(
                    "INSERT INTO posts (id, hive_id, author_id, origin_instance_id, title, content,
                       url, title_v, content_v, url_v, score, hot, comment_count, is_pinned,
                       deleted, created_event_id, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8, 0, ?9, 0, 0, 0, ?10, ?11, ?11)",
                )?
                .execute(params![
                    p.post_id,
                    cx.hive_id,
                    p.author.agent_id,
                    p.author.instance_id,
                    p.title,
                    p.content,
                    p.url,
                    v,
                    hot,
                    cx.ev.id,
                    p.created_at
                ])?;
            count_post(cx, 1)?;
            Ok(Outcome::Applied {
                changes: vec![Change::PostCreated {
                    hive: cx.hive(),
                    post_id: p.post_id.clone(),
                }],
                provides: vec![p.post_id.clone()],
            })
        }
    }
}

/// `post_updated`: the winning fields and `updated_at` in one statement, so the row (and
/// the full-text queue, through its trigger) is written once per edit, not once per field.
/// The read and the write are in the writer's transaction: nothing changes between them.
pub(super) fn updated(cx: &Ctx<'_>, p: &PostUpdated) -> Result<Outcome> {
    let stored = cx
        .conn
        .prepare_cached(
            "SELECT author_id, title_v, content_v, url_v FROM posts WHERE id = ?1 AND hive_id = ?2",
        )?
        .query_row(params![p.post_id, cx.hive_id], |r| {
            Ok(EditedPost {
                author_id: r.get(0)?,
                title_v: r.get(1)?,
                content_v: r.get(2)?,
                url_v: r.get(3)?,
            })
        })
        .optional()?;
    let Some(stored) = stored else {
        return Ok(Outcome::Waiting {
            depends_on: p.post_id.clone(),
        });
    };
    if !author_may_edit(&stored.author_id, &p.updated_by.agent_id) {
        return Ok(Outcome::Ignored {
            reason: "only the author edits a post",
        });
    }
    let v = cx.version();
    let w = winners(p, &stored, &v);
    let version = |f: Option<&str>| f.map(|_| v.as_str());
    cx.conn
        .prepare_cached(
            "UPDATE posts SET title = COALESCE(?2, title), title_v = COALESCE(?3, title_v),
               content = COALESCE(?4, content), content_v = COALESCE(?5, content_v),
               url = COALESCE(?6, url), url_v = COALESCE(?7, url_v),
               updated_at = GREATEST(updated_at, ?8)
             WHERE id = ?1",
        )?
        .execute(params![
            p.post_id,
            w.title,
            version(w.title),
            w.content,
            version(w.content),
            w.url,
            version(w.url),
            cx.ev.origin_ts
        ])?;
    upsert_agent_snapshot(cx, &p.updated_by)?;
    let changes = if w.count() > 0 {
        vec![Change::PostUpdated {
            hive: cx.hive(),
            post_id: p.post_id.clone(),
        }]
    } else {
        Vec::new()
    };
    Ok(applied(changes))
}

pub(super) fn deleted(cx: &Ctx<'_>, p: &PostDeleted) -> Result<Outcome> {
    let Some(post) = find_post(cx.conn, cx.hive_id, &p.post_id)? else {
        return Ok(Outcome::Waiting {
            depends_on: p.post_id.clone(),
        });
    };
    if post.deleted {
        return Ok(applied(Vec::new()));
    }
    cx.conn
        .execute("UPDATE posts SET deleted = 1 WHERE id = ?1", [&p.post_id])?;
    count_post(cx, -1)?;
    Ok(applied(vec![Change::PostDeleted {
        hive: cx.hive(),
        post_id: p.post_id.clone(),
    }]))
}

/// Adds `delta` to the hive's `post_count`: at once, or at the end of the event's batch.
fn count_post(cx: &Ctx<'_>, delta: i64) -> Result<()> {
    match cx.batch {
        Some(batch) => {
            *batch
                .borrow_mut()
                .post_counts
                .entry(cx.hive_id.to_string())
                .or_default() += delta;
        }
        None => write_count(cx.conn, cx.hive_id, delta)?,
    }
    Ok(())
}

/// Writes a batch's `post_count` changes ([`super::Batch::flush`]).
pub(super) fn flush_counts(
    conn: &Conn<'_>,
    counts: std::collections::BTreeMap<String, i64>,
) -> Result<()> {
    for (hive_id, delta) in counts {
        if delta != 0 {
            write_count(conn, &hive_id, delta)?;
        }
    }
    Ok(())
}

fn write_count(conn: &Conn<'_>, hive_id: &str, delta: i64) -> Result<()> {
    conn.prepare_cached("UPDATE hives SET post_count = post_count + ?2 WHERE id = ?1")?
        .execute(params![hive_id, delta])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openhive_core::payload::AgentRef;

    fn edit(title: Option<&str>, content: Option<&str>, url: Option<&str>) -> PostUpdated {
        PostUpdated {
            post_id: "post_x_1".into(),
            title: title.map(Into::into),
            content: content.map(Into::into),
            url: url.map(Into::into),
            updated_by: AgentRef {
                instance_id: "inst_x".into(),
                agent_id: "agt_x_1".into(),
                name: "x".into(),
                avatar_url: None,
            },
        }
    }

    fn stored(title_v: &str, content_v: &str, url_v: &str) -> EditedPost {
        EditedPost {
            author_id: "agt_x_1".into(),
            title_v: title_v.into(),
            content_v: content_v.into(),
            url_v: url_v.into(),
        }
    }

    #[test]
    fn an_edit_sets_only_the_fields_it_carries() {
        let old = stored("1", "1", "1");
        let e = edit(Some("t"), None, None);
        assert_eq!(
            winners(&e, &old, "2"),
            Winners {
                title: Some("t"),
                content: None,
                url: None
            }
        );
        let e = edit(None, Some("c"), Some("u"));
        assert_eq!(
            winners(&e, &old, "2"),
            Winners {
                title: None,
                content: Some("c"),
                url: Some("u")
            }
        );
        assert_eq!(winners(&edit(None, None, None), &old, "2").count(), 0);
        // An empty string is a value (clears the field), not an absent one.
        assert_eq!(
            winners(&edit(Some(""), None, None), &old, "2").title,
            Some("")
        );
    }

    #[test]
    fn each_field_has_its_own_version_guard() {
        let e = edit(Some("t"), Some("c"), Some("u"));
        // The title holds a newer edit, the content the same one, the url an older one.
        let w = winners(&e, &stored("3", "2", "1"), "2");
        assert_eq!(
            w,
            Winners {
                title: None,
                content: None,
                url: Some("u")
            }
        );
        assert_eq!(w.count(), 1);
        // Versions compare as bytes, as the columns do.
        let w = winners(
            &e,
            &stored("0000000000002_a", "0000000000001_z", "0000000000002_b"),
            "0000000000002_b",
        );
        assert_eq!((w.title, w.content, w.url), (Some("t"), Some("c"), None));
    }
}
