//! Full-text search (SQLite FTS5) over posts, comments, agents and hives, remote content
//! included. User input never reaches FTS syntax: each term is quoted and prefix-matched.

use crate::comments::CommentRow;
use crate::engine::{Conn, DbResult};
use crate::error::Result;
use crate::hives::HiveRow;
use crate::params;
use crate::posts::{Author, PostRow};

/// Turns free text into a safe FTS5 query: `"term"*` per term, ANDed. None if no terms.
pub fn fts_query(q: &str) -> Option<String> {
    let terms: Vec<String> = q
        .split_whitespace()
        .map(|t| {
            t.chars()
                .filter(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
                .collect::<String>()
        })
        .filter(|t| !t.is_empty())
        .take(16)
        .map(|t| format!("\"{t}\"*"))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

/// Search totals count at most this many matches.
pub const TOTAL_CAP: i64 = 1000;

const READABLE: &str = "(h.is_public = 1 OR h.owner_id = ?2 OR EXISTS (SELECT 1 FROM memberships m
    WHERE m.hive_id = h.id AND m.agent_id = ?2 AND (m.state = 'member' OR m.is_moderator = 1)))";

/// Posts matching `q`, best first, optionally within one hive.
pub fn posts(
    conn: &Conn<'_>,
    q: &str,
    viewer: Option<&str>,
    hive_id: Option<&str>,
    limit: i64,
) -> Result<(Vec<PostRow>, i64)> {
    let Some(fts) = fts_query(q) else {
        return Ok((Vec::new(), 0));
    };
    // Only the page is ranked and fetched (top-k); the total is counted separately.
    let ids: Vec<String> = conn
        .prepare_cached(&format!(
            "SELECT p.id FROM posts_fts f JOIN posts p ON p.rowid = f.rowid
               JOIN hives h ON h.id = p.hive_id
             WHERE posts_fts MATCH ?1 AND p.deleted = 0 AND h.deleted = 0 AND {READABLE}
               AND (?3 IS NULL OR p.hive_id = ?3)
             ORDER BY f.rank LIMIT ?4"
        ))?
        .query_map(params![fts, viewer.unwrap_or(""), hive_id, limit], |r| {
            r.get(0)
        })?
        .collect::<DbResult<_>>()?;
    let total: i64 = conn
        .prepare_cached(&format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM posts_fts f JOIN posts p ON p.rowid = f.rowid
               JOIN hives h ON h.id = p.hive_id
             WHERE posts_fts MATCH ?1 AND p.deleted = 0 AND h.deleted = 0 AND {READABLE}
               AND (?3 IS NULL OR p.hive_id = ?3) LIMIT {TOTAL_CAP})"
        ))?
        .query_row(params![fts, viewer.unwrap_or(""), hive_id], |r| r.get(0))?;
    let mut out = Vec::new();
    for id in &ids {
        if let Some(p) = crate::posts::get(conn, id, viewer)? {
            out.push(p);
        }
    }
    Ok((out, total))
}

/// Comments matching `q`.
pub fn comments(
    conn: &Conn<'_>,
    q: &str,
    viewer: Option<&str>,
    limit: i64,
) -> Result<(Vec<CommentRow>, i64)> {
    let Some(fts) = fts_query(q) else {
        return Ok((Vec::new(), 0));
    };
    let ids: Vec<String> = conn
        .prepare_cached(&format!(
            "SELECT c.id FROM comments_fts f JOIN comments c ON c.rowid = f.rowid
               JOIN posts p ON p.id = c.post_id JOIN hives h ON h.id = c.hive_id
             WHERE comments_fts MATCH ?1 AND c.deleted = 0 AND c.hidden = 0 AND p.deleted = 0
               AND h.deleted = 0 AND {READABLE}
             ORDER BY f.rank LIMIT 1000"
        ))?
        .query_map(params![fts, viewer.unwrap_or("")], |r| r.get(0))?
        .collect::<DbResult<_>>()?;
    let total = ids.len() as i64;
    let mut out = Vec::new();
    for id in ids.iter().take(limit.max(0) as usize) {
        if let Some(c) = crate::comments::get(conn, id, viewer)? {
            out.push(c);
        }
    }
    Ok((out, total))
}

/// Agents (local and remote) matching `q`.
pub fn agents(conn: &Conn<'_>, q: &str, limit: i64) -> Result<(Vec<Author>, i64)> {
    let Some(fts) = fts_query(q) else {
        return Ok((Vec::new(), 0));
    };
    let rows: Vec<Author> = conn
        .prepare_cached(&format!(
            "SELECT {} FROM agents_fts f JOIN agents a ON a.rowid = f.rowid
             WHERE agents_fts MATCH ?1 ORDER BY f.rank LIMIT 1000",
            crate::posts::AUTHOR_COLS
        ))?
        .query_map(params![fts], |r| crate::posts::author_at(r, 0))?
        .collect::<DbResult<_>>()?;
    let total = rows.len() as i64;
    Ok((
        rows.into_iter().take(limit.max(0) as usize).collect(),
        total,
    ))
}

/// Hives matching `q` that the viewer may see.
pub fn hives(
    conn: &Conn<'_>,
    q: &str,
    viewer: Option<&str>,
    limit: i64,
) -> Result<(Vec<HiveRow>, i64)> {
    let Some(fts) = fts_query(q) else {
        return Ok((Vec::new(), 0));
    };
    let ids: Vec<String> = conn
        .prepare_cached(&format!(
            "SELECT h.id FROM hives_fts f JOIN hives h ON h.rowid = f.rowid
             WHERE hives_fts MATCH ?1 AND h.created_event_id IS NOT NULL AND h.deleted = 0
               AND {READABLE}
             ORDER BY f.rank LIMIT 1000"
        ))?
        .query_map(params![fts, viewer.unwrap_or("")], |r| r.get(0))?
        .collect::<DbResult<_>>()?;
    let total = ids.len() as i64;
    let mut out = Vec::new();
    for id in ids.iter().take(limit.max(0) as usize) {
        if let Some(h) = crate::hives::get_by_id(conn, id)? {
            out.push(h);
        }
    }
    Ok((out, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_quoted_and_prefixed() {
        assert_eq!(
            fts_query("hello wor").as_deref(),
            Some("\"hello\"* \"wor\"*")
        );
        assert_eq!(
            fts_query("a\" OR b*").as_deref(),
            Some("\"a\"* \"OR\"* \"b\"*")
        );
        assert_eq!(fts_query("  ()*\" "), None);
    }
}
