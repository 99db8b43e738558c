//! The comments read model.

use crate::engine::{Conn, DbResult, OptionalExtension, Row};
use crate::error::Result;
use crate::params;
use crate::posts::{AUTHOR_COLS, Author, author_at};

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

fn comment_row(r: &Row<'_>) -> DbResult<CommentRow> {
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
    conn: &Conn<'_>,
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
        .collect::<DbResult<Vec<_>>>()?;
    Ok(rows)
}

/// A keyset page of a post's visible comments (flat): rows after `cursor` in `sort` order,
/// at most `limit`, and whether more follow. The cursor is [`cursor_after`] of the last row.
pub fn page_for_post(
    conn: &Conn<'_>,
    post_id: &str,
    sort: CommentSort,
    viewer: Option<&str>,
    limit: i64,
    cursor: Option<&str>,
) -> Result<(Vec<CommentRow>, bool)> {
    use crate::StoreError;
    let bad = || StoreError::Invalid("malformed cursor".into());
    // ?3 = created_at, ?4 = score, ?5 = id of the cursor row.
    let (keyset, k1, k2, k3): (&str, i64, i64, String) = match (sort, cursor) {
        (_, None) => ("", 0, 0, String::new()),
        (CommentSort::Old, Some(c)) => {
            let (ts, id) = c
                .strip_prefix("o:")
                .and_then(|r| r.split_once(':'))
                .ok_or_else(bad)?;
            (
                " AND (c.created_at > ?3 OR (c.created_at = ?3 AND c.id > ?5))",
                ts.parse().map_err(|_| bad())?,
                0,
                id.to_string(),
            )
        }
        (CommentSort::New, Some(c)) => {
            let (ts, id) = c
                .strip_prefix("n:")
                .and_then(|r| r.split_once(':'))
                .ok_or_else(bad)?;
            (
                " AND (c.created_at < ?3 OR (c.created_at = ?3 AND c.id < ?5))",
                ts.parse().map_err(|_| bad())?,
                0,
                id.to_string(),
            )
        }
        (CommentSort::Top, Some(c)) => {
            let mut it = c.strip_prefix("t:").ok_or_else(bad)?.splitn(3, ':');
            let score = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
            let ts = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
            let id = it.next().ok_or_else(bad)?.to_string();
            (
                " AND (c.score < ?4 OR (c.score = ?4 AND (c.created_at > ?3 OR (c.created_at = ?3 AND c.id > ?5))))",
                ts,
                score,
                id,
            )
        }
    };
    let order = match sort {
        CommentSort::Top => "c.score DESC, c.created_at ASC, c.id ASC",
        CommentSort::New => "c.created_at DESC, c.id DESC",
        CommentSort::Old => "c.created_at ASC, c.id ASC",
    };
    // Every bound parameter is named (and typed) once, whichever keyset applies: PostgreSQL
    // cannot prepare a statement with a parameter it never sees.
    let sql = format!(
        "{} WHERE c.post_id = ?2 AND c.deleted = 0 AND c.hidden = 0{keyset}
           AND CAST(?3 AS BIGINT) IS NOT NULL AND CAST(?4 AS BIGINT) IS NOT NULL
           AND CAST(?5 AS TEXT) IS NOT NULL
         ORDER BY {order} LIMIT ?6",
        select()
    );
    let mut rows = conn
        .prepare_cached(&sql)?
        .query_map(
            params![viewer.unwrap_or(""), post_id, k1, k2, k3, limit + 1],
            comment_row,
        )?
        .collect::<DbResult<Vec<_>>>()?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    Ok((rows, more))
}

/// The keyset position after `c` for `sort`.
pub fn cursor_after(c: &CommentRow, sort: CommentSort) -> String {
    match sort {
        CommentSort::Old => format!("o:{}:{}", c.created_at, c.id),
        CommentSort::New => format!("n:{}:{}", c.created_at, c.id),
        CommentSort::Top => format!("t:{}:{}:{}", c.score, c.created_at, c.id),
    }
}

/// One visible comment.
pub fn get(conn: &Conn<'_>, id: &str, viewer: Option<&str>) -> Result<Option<CommentRow>> {
    // Built once: every API write of a comment reads it back with this.
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "{} WHERE c.id = ?2 AND c.deleted = 0 AND c.hidden = 0",
            select()
        )
    });
    Ok(conn
        .prepare_cached(&SQL)?
        .query_row(params![viewer.unwrap_or(""), id], comment_row)
        .optional()?)
}
