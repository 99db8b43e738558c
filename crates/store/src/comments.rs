//! The comments read model.

use crate::error::Result;
use crate::posts::{AUTHOR_COLS, Author, author_at};
use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, Clone)]
pub struct CommentRow {
    pub id: String,
    pub post_id: String,
    pub hive_id: String,
    pub parent_id: Option<String>,
    pub author: Author,
    pub origin_instance_id: String,
    pub content: String,
    pub score: i64,
    pub depth: i64,
    pub path: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub user_vote: Option<i64>,
}

/// Comment orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentSort {
    Top,
    New,
    Old,
}

impl CommentSort {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "top" => Some(CommentSort::Top),
            "new" => Some(CommentSort::New),
            "old" => Some(CommentSort::Old),
            _ => None,
        }
    }
}

fn select() -> String {
    format!(
        "SELECT c.id, c.post_id, c.hive_id, c.parent_id, c.origin_instance_id, c.content, c.score,
                c.depth, c.path, c.created_at, c.updated_at,
                (SELECT v.value FROM votes v WHERE v.target_id = c.id AND v.voter_id = ?1
                   AND v.value <> 0),
                {AUTHOR_COLS}
         FROM comments c JOIN agents a ON a.id = c.author_id"
    )
}

fn comment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CommentRow> {
    Ok(CommentRow {
        id: r.get(0)?,
        post_id: r.get(1)?,
        hive_id: r.get(2)?,
        parent_id: r.get(3)?,
        origin_instance_id: r.get(4)?,
        content: r.get(5)?,
        score: r.get(6)?,
        depth: r.get(7)?,
        path: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        user_vote: r.get(11)?,
        author: author_at(r, 12)?,
    })
}

/// Visible comments of a post (not deleted, not under a deleted comment), sorted.
pub fn for_post(
    conn: &Connection,
    post_id: &str,
    sort: CommentSort,
    viewer: Option<&str>,
) -> Result<Vec<CommentRow>> {
    let order = match sort {
        CommentSort::Top => "c.score DESC, c.created_at ASC, c.id ASC",
        CommentSort::New => "c.created_at DESC, c.id DESC",
        CommentSort::Old => "c.created_at ASC, c.id ASC",
    };
    let sql = format!(
        "{} WHERE c.post_id = ?2 AND c.deleted = 0 AND c.hidden = 0 ORDER BY {order}",
        select()
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params![viewer.unwrap_or(""), post_id], comment_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// One visible comment.
pub fn get(conn: &Connection, id: &str, viewer: Option<&str>) -> Result<Option<CommentRow>> {
    let sql = format!(
        "{} WHERE c.id = ?2 AND c.deleted = 0 AND c.hidden = 0",
        select()
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![viewer.unwrap_or(""), id], comment_row)
        .optional()?)
}
