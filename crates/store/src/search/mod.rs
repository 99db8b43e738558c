//! Full-text search over posts, comments, agents and hives, remote content included: SQLite
//! FTS5 tables, or PostgreSQL `tsvector` columns with GIN indexes ('simple' configuration).
//! User input never reaches either query syntax: each term is reduced to letters, digits,
//! `_` and `-`, quoted, and prefix-matched.
//!
//! Post search on SQLite ranks with [`bm25`]: FTS5's `bm25()` scores computed from the FTS5
//! index in one pass per term, instead of one `bm25()` call per matching row (a common term
//! matches tens of thousands of posts); the page is then the first readable posts in that
//! order. Same scores, same order: `posts_full_rank` is the plain `ORDER BY rank` query, kept
//! as the fallback and as the reference the tests compare with.

pub mod bm25;
mod fts5_record;
pub mod post_lengths;

use crate::comments::CommentRow;
use crate::engine::{Conn, DbResult, Engine, OptionalExtension};
use crate::error::Result;
use crate::hives::HiveRow;
use crate::params;
use crate::posts::{Author, PostRow};

/// SQLite: whether the full-text queue holds writes not yet in the index. The writer applies
/// the queue once it is long enough (`openhive_store_sqlite::FTS_QUEUE_ROWS`), so a search
/// first asks for it ([`crate::Store::read_search`]). Always false on PostgreSQL, whose
/// search vectors are generated columns.
pub fn index_pending(conn: &Conn<'_>) -> Result<bool> {
    Ok(match conn.engine() {
        Engine::Sqlite => conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM fts_queue)")?
            .query_row((), |r| r.get(0))?,
        Engine::Postgres => false,
    })
}

/// SQLite: makes the commit of this write transaction apply the whole full-text queue (a
/// row of id -1 and table 0, which the flush statements skip and delete). Nothing on
/// PostgreSQL.
pub fn request_index_flush(conn: &Conn<'_>) -> Result<()> {
    if conn.engine() == Engine::Sqlite {
        conn.execute(
            "INSERT INTO fts_queue (id, tbl, cmd, rid) VALUES (-1, 0, NULL, 0) ON CONFLICT DO NOTHING",
            (),
        )?;
    }
    Ok(())
}

/// Turns free text into a safe FTS5 query: `"term"*` per term, ANDed. None if no terms.
pub fn fts_query(q: &str) -> Option<String> {
    let terms: Vec<String> = terms(q).map(|t| format!("\"{t}\"*")).collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

/// Turns free text into a safe PostgreSQL tsquery: `'term':*` per term, ANDed.
pub fn ts_query(q: &str) -> Option<String> {
    let terms: Vec<String> = terms(q).map(|t| format!("'{t}':*")).collect();
    (!terms.is_empty()).then(|| terms.join(" & "))
}

fn terms(q: &str) -> impl Iterator<Item = String> + '_ {
    q.split_whitespace()
        .map(|t| {
            t.chars()
                .filter(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
                .collect::<String>()
        })
        .filter(|t| !t.is_empty())
        .take(16)
}

/// The engine's pieces of a full-text query over `table` (aliased `alias`); the query text
/// is parameter `?1`.
struct Fts {
    query: String,
    from: String,
    matches: String,
    rank: String,
}

fn fts(conn: &Conn<'_>, q: &str, table: &str, alias: &str) -> Option<Fts> {
    Some(match conn.engine() {
        Engine::Sqlite => Fts {
            query: fts_query(q)?,
            from: format!("{table}_fts f JOIN {table} {alias} ON {alias}.rowid = f.rowid"),
            matches: format!("{table}_fts MATCH ?1"),
            // Ties (equal scores are common for one-word queries): newest row first, as
            // `bm25::rank_posts` orders them.
            rank: "f.rank, f.rowid DESC".into(),
        },
        Engine::Postgres => Fts {
            query: ts_query(q)?,
            from: format!("{table} {alias}"),
            matches: format!("{alias}.search_tsv @@ to_tsquery('simple', ?1)"),
            rank: format!("ts_rank({alias}.search_tsv, to_tsquery('simple', ?1)) DESC, {alias}.id"),
        },
    })
}

/// Search totals count at most this many matches.
pub const TOTAL_CAP: i64 = 1000;

const READABLE: &str = "(h.is_public = 1 OR h.owner_id = ?2 OR EXISTS (SELECT 1 FROM memberships m
    WHERE m.hive_id = h.id AND m.agent_id = ?2 AND (m.state = 'member' OR m.is_moderator = 1)))";

/// Posts matching `q`, best first, optionally within one hive; and how many match (at most
/// [`TOTAL_CAP`]).
pub fn posts(
    conn: &Conn<'_>,
    q: &str,
    viewer: Option<&str>,
    hive_id: Option<&str>,
    limit: i64,
) -> Result<(Vec<PostRow>, i64)> {
    if conn.engine() == Engine::Sqlite
        && let Some(terms) = bm25::plain_terms(q)
    {
        let ranked = bm25::rank_posts(conn, &terms)?;
        let mut ids = Vec::new();
        if !ranked.is_empty() {
            // The page: the first rows in rank order the viewer may read (deleted posts and
            // hives, other hives, private hives stay in the index).
            static READABLE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
                format!(
                    "SELECT p.id FROM posts p JOIN hives h ON h.id = p.hive_id
                 WHERE p.rowid = ?1 AND p.deleted = 0 AND h.deleted = 0 AND {READABLE}
                   AND (CAST(?3 AS TEXT) IS NULL OR p.hive_id = ?3)"
                )
            });
            let mut readable = conn.prepare_cached(&READABLE_SQL)?;
            for &(_, rowid) in &ranked {
                if ids.len() as i64 >= limit {
                    break;
                }
                if let Some(id) = readable
                    .query_row(params![rowid, viewer.unwrap_or(""), hive_id], |r| {
                        r.get::<_, String>(0)
                    })
                    .optional()?
                {
                    ids.push(id);
                }
            }
        }
        let total = if ranked.is_empty() {
            0
        } else {
            count_posts(conn, q, viewer, hive_id)?
        };
        return Ok((fetch_posts(conn, &ids, viewer)?, total));
    }
    posts_full_rank(conn, q, viewer, hive_id, limit)
}

/// [`posts`] by the engine's own ranking of every match (`ORDER BY rank` on SQLite,
/// `ts_rank` on PostgreSQL): the path for queries the SQLite fast ranking does not take, and
/// the reference it must agree with.
pub fn posts_full_rank(
    conn: &Conn<'_>,
    q: &str,
    viewer: Option<&str>,
    hive_id: Option<&str>,
    limit: i64,
) -> Result<(Vec<PostRow>, i64)> {
    let Some(Fts {
        query,
        from,
        matches,
        rank,
    }) = fts(conn, q, "posts", "p")
    else {
        return Ok((Vec::new(), 0));
    };
    // Only the page is ranked and fetched (top-k); the total is counted separately.
    let ids: Vec<String> = conn
        .prepare_cached(&format!(
            "SELECT p.id FROM {from}
               JOIN hives h ON h.id = p.hive_id
             WHERE {matches} AND p.deleted = 0 AND h.deleted = 0 AND {READABLE}
               AND (CAST(?3 AS TEXT) IS NULL OR p.hive_id = ?3)
             ORDER BY {rank} LIMIT ?4"
        ))?
        .query_map(params![query, viewer.unwrap_or(""), hive_id, limit], |r| {
            r.get(0)
        })?
        .collect::<DbResult<_>>()?;
    let total = count_posts(conn, q, viewer, hive_id)?;
    Ok((fetch_posts(conn, &ids, viewer)?, total))
}

/// How many posts the viewer may read match `q`, counting at most [`TOTAL_CAP`].
fn count_posts(
    conn: &Conn<'_>,
    q: &str,
    viewer: Option<&str>,
    hive_id: Option<&str>,
) -> Result<i64> {
    let Some(Fts {
        query,
        from,
        matches,
        ..
    }) = fts(conn, q, "posts", "p")
    else {
        return Ok(0);
    };
    Ok(conn
        .prepare_cached(&format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM {from}
               JOIN hives h ON h.id = p.hive_id
             WHERE {matches} AND p.deleted = 0 AND h.deleted = 0 AND {READABLE}
               AND (CAST(?3 AS TEXT) IS NULL OR p.hive_id = ?3) LIMIT {TOTAL_CAP}) AS hits"
        ))?
        .query_row(params![query, viewer.unwrap_or(""), hive_id], |r| r.get(0))?)
}

fn fetch_posts(conn: &Conn<'_>, ids: &[String], viewer: Option<&str>) -> Result<Vec<PostRow>> {
    let mut out = Vec::new();
    for id in ids {
        if let Some(p) = crate::posts::get(conn, id, viewer)? {
            out.push(p);
        }
    }
    Ok(out)
}

/// Comments matching `q`.
pub fn comments(
    conn: &Conn<'_>,
    q: &str,
    viewer: Option<&str>,
    limit: i64,
) -> Result<(Vec<CommentRow>, i64)> {
    let Some(Fts {
        query,
        from,
        matches,
        rank,
    }) = fts(conn, q, "comments", "c")
    else {
        return Ok((Vec::new(), 0));
    };
    let ids: Vec<String> = conn
        .prepare_cached(&format!(
            "SELECT c.id FROM {from}
               JOIN posts p ON p.id = c.post_id JOIN hives h ON h.id = c.hive_id
             WHERE {matches} AND c.deleted = 0 AND c.hidden = 0 AND p.deleted = 0
               AND h.deleted = 0 AND {READABLE}
             ORDER BY {rank} LIMIT 1000"
        ))?
        .query_map(params![query, viewer.unwrap_or("")], |r| r.get(0))?
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
    let Some(Fts {
        query,
        from,
        matches,
        rank,
    }) = fts(conn, q, "agents", "a")
    else {
        return Ok((Vec::new(), 0));
    };
    let rows: Vec<Author> = conn
        .prepare_cached(&format!(
            "SELECT {} FROM {from} WHERE {matches} ORDER BY {rank} LIMIT 1000",
            crate::posts::AUTHOR_COLS
        ))?
        .query_map(params![query], |r| crate::posts::author_at(r, 0))?
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
    let Some(Fts {
        query,
        from,
        matches,
        rank,
    }) = fts(conn, q, "hives", "h")
    else {
        return Ok((Vec::new(), 0));
    };
    let ids: Vec<String> = conn
        .prepare_cached(&format!(
            "SELECT h.id FROM {from}
             WHERE {matches} AND h.created_event_id IS NOT NULL AND h.deleted = 0
               AND {READABLE}
             ORDER BY {rank} LIMIT 1000"
        ))?
        .query_map(params![query, viewer.unwrap_or("")], |r| r.get(0))?
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
        assert_eq!(
            ts_query("a' | !b:* (c)").as_deref(),
            Some("'a':* & 'b':* & 'c':*")
        );
        assert_eq!(ts_query(" '&|! "), None);
    }
}
