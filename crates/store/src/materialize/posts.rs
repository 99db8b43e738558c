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
    pub(super) author_id: String,
    pub(super) deleted: bool,
}

pub(super) fn find_post(conn: &Conn<'_>, hive_id: &str, post_id: &str) -> Result<Option<PostRef>> {
    Ok(conn
        .prepare_cached("SELECT author_id, deleted FROM posts WHERE id = ?1 AND hive_id = ?2")?
        .query_row(params![post_id, hive_id], |r| {
            Ok(PostRef {
                author_id: r.get(0)?,
                deleted: r.get(1)?,
            })
        })
        .optional()?)
}

/// An editable field of a post, each with its own version column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Title,
    Content,
    Url,
}

impl Field {
    /// The conditional update: the field changes only if the edit's version is higher.
    fn update_sql(self) -> &'static str {
        match self {
            Field::Title => {
                "UPDATE posts SET title = ?2, title_v = ?3 WHERE id = ?1 AND title_v < ?3"
            }
            Field::Content => {
                "UPDATE posts SET content = ?2, content_v = ?3 WHERE id = ?1 AND content_v < ?3"
            }
            Field::Url => "UPDATE posts SET url = ?2, url_v = ?3 WHERE id = ?1 AND url_v < ?3",
        }
    }
}

/// The fields an edit sets, in a fixed order; an absent field is unchanged.
fn edited_fields(p: &PostUpdated) -> Vec<(Field, &str)> {
    [
        (Field::Title, p.title.as_deref()),
        (Field::Content, p.content.as_deref()),
        (Field::Url, p.url.as_deref()),
    ]
    .into_iter()
    .filter_map(|(f, v)| v.map(|v| (f, v)))
    .collect()
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
        cx.conn
            .prepare_cached("UPDATE hives SET post_count = post_count + 1 WHERE id = ?1")?
            .execute([cx.hive_id])?;
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
            cx.conn
                .prepare_cached("UPDATE hives SET post_count = post_count + 1 WHERE id = ?1")?
                .execute([cx.hive_id])?;
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

pub(super) fn updated(cx: &Ctx<'_>, p: &PostUpdated) -> Result<Outcome> {
    let Some(post) = find_post(cx.conn, cx.hive_id, &p.post_id)? else {
        return Ok(Outcome::Waiting {
            depends_on: p.post_id.clone(),
        });
    };
    if !author_may_edit(&post.author_id, &p.updated_by.agent_id) {
        return Ok(Outcome::Ignored {
            reason: "only the author edits a post",
        });
    }
    let v = cx.version();
    let mut n = 0;
    for (field, value) in edited_fields(p) {
        n += cx
            .conn
            .execute(field.update_sql(), params![p.post_id, value, v])?;
    }
    cx.conn.execute(
        "UPDATE posts SET updated_at = GREATEST(updated_at, ?2) WHERE id = ?1",
        params![p.post_id, cx.ev.origin_ts],
    )?;
    upsert_agent_snapshot(cx, &p.updated_by)?;
    let changes = if n > 0 {
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
    cx.conn.execute(
        "UPDATE hives SET post_count = post_count - 1 WHERE id = ?1",
        [cx.hive_id],
    )?;
    Ok(applied(vec![Change::PostDeleted {
        hive: cx.hive(),
        post_id: p.post_id.clone(),
    }]))
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

    #[test]
    fn an_edit_sets_only_the_fields_it_carries() {
        assert_eq!(
            edited_fields(&edit(Some("t"), None, None)),
            vec![(Field::Title, "t")]
        );
        assert_eq!(
            edited_fields(&edit(None, Some("c"), Some("u"))),
            vec![(Field::Content, "c"), (Field::Url, "u")]
        );
        assert!(edited_fields(&edit(None, None, None)).is_empty());
        // An empty string is a value (clears the field), not an absent one.
        assert_eq!(
            edited_fields(&edit(Some(""), None, None)),
            vec![(Field::Title, "")]
        );
    }

    #[test]
    fn each_field_has_its_own_version_guard() {
        for (field, col) in [
            (Field::Title, "title"),
            (Field::Content, "content"),
            (Field::Url, "url"),
        ] {
            let sql = field.update_sql();
            assert!(
                sql.contains(&format!("SET {col} = ?2, {col}_v = ?3")),
                "{sql}"
            );
            // Strictly greater: an equal version (the same event again) changes nothing.
            assert!(sql.ends_with(&format!("AND {col}_v < ?3")), "{sql}");
        }
    }
}
