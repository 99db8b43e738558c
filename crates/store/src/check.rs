//! Consistency checks an operator (or a crash test) runs over a whole database: the engine's
//! own integrity check, a gap-free log per hive, and every projected row backed by its event.

use crate::engine::{Conn, Engine};
use crate::error::Result;

/// What [`consistency`] found. A healthy database has `integrity == "ok"`, `log_gaps == 0`,
/// `orphan_posts == 0` and equal event and row counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consistency {
    /// SQLite's `PRAGMA integrity_check` answer; `"ok"` on PostgreSQL (the server checks
    /// its own pages).
    pub integrity: String,
    /// Hives whose log is not exactly seqs `1..=head` (less the seqs compaction dropped, all
    /// at or below the hive's compaction point).
    pub log_gaps: i64,
    /// Posts whose `post_created` event is missing from the log.
    pub orphan_posts: i64,
    pub post_events: i64,
    pub posts: i64,
    pub comment_events: i64,
    pub comments: i64,
    /// SQLite: rows of posts, comments, agents and hives missing from (or extra in) their
    /// full-text index, plus index writes still queued (migration 0017: a running store
    /// applies them in batches or before a search, an opened one has applied them all);
    /// 0 on PostgreSQL (its search vectors are generated columns).
    pub search_index_gaps: i64,
}

impl Consistency {
    pub fn is_healthy(&self) -> bool {
        self.integrity == "ok"
            && self.log_gaps == 0
            && self.orphan_posts == 0
            && self.post_events == self.posts
            && self.comment_events == self.comments
            && self.search_index_gaps == 0
    }
}

/// Runs every check (reads only).
pub fn consistency(conn: &Conn<'_>) -> Result<Consistency> {
    let integrity = match conn.engine() {
        Engine::Sqlite => conn.query_row("PRAGMA integrity_check", (), |r| r.get(0))?,
        Engine::Postgres => "ok".to_string(),
    };
    let count = |sql: &str| -> Result<i64> { Ok(conn.query_row(sql, (), |r| r.get(0))?) };
    Ok(Consistency {
        integrity,
        log_gaps: count(
            // Gap-free above the compaction point; below it, exactly `dropped` seqs missing.
            "SELECT COUNT(*) FROM hive_logs l LEFT JOIN log_compactions k ON k.hive_id = l.hive_id
             WHERE l.head_seq <> (SELECT COUNT(*) FROM events e WHERE e.hive_id = l.hive_id)
                                 + COALESCE(k.dropped, 0)
               OR l.head_seq - COALESCE(k.through_seq, 0) <> (SELECT COUNT(*) FROM events e
                    WHERE e.hive_id = l.hive_id AND e.seq > COALESCE(k.through_seq, 0))
               OR EXISTS (SELECT 1 FROM events e WHERE e.hive_id = l.hive_id AND e.seq > l.head_seq)",
        )?,
        orphan_posts: count(
            "SELECT COUNT(*) FROM posts p
             WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = p.created_event_id)",
        )?,
        post_events: count("SELECT COUNT(*) FROM events WHERE event_type = 'post_created'")?,
        posts: count("SELECT COUNT(*) FROM posts")?,
        comment_events: count("SELECT COUNT(*) FROM events WHERE event_type = 'comment_created'")?,
        comments: count("SELECT COUNT(*) FROM comments")?,
        search_index_gaps: match conn.engine() {
            Engine::Sqlite => count(
                "SELECT ABS((SELECT COUNT(*) FROM posts) - (SELECT COUNT(*) FROM posts_fts_docsize))
                      + ABS((SELECT COUNT(*) FROM comments)
                            - (SELECT COUNT(*) FROM comments_fts_docsize))
                      + ABS((SELECT COUNT(*) FROM agents) - (SELECT COUNT(*) FROM agents_fts_docsize))
                      + ABS((SELECT COUNT(*) FROM hives) - (SELECT COUNT(*) FROM hives_fts_docsize))
                      + (SELECT COUNT(*) FROM fts_queue)",
            )?,
            Engine::Postgres => 0,
        },
    })
}
