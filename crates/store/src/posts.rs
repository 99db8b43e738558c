//! The posts read model: single posts, hive listings and feeds with offset and keyset
//! (cursor) pagination, all joined with their author (local or remote, one table).

use crate::error::{Result, StoreError};

use crate::engine::{Conn, DbResult, OptionalExtension, Row, Value, params_from_iter};
use crate::params;

/// The author columns every content row carries.
#[derive(Debug, Clone)]
pub struct Author {
    pub id: String,
    pub name: String,
    pub description: String,
    pub avatar_url: Option<String>,
    pub karma: i64,
    pub is_verified: bool,
    pub created_at: i64,
    pub account_type: String,
    pub instance_id: String,
    pub is_local: bool,
}

#[derive(Debug, Clone)]
pub struct PostRow {
    pub id: String,
    pub hive_id: String,
    pub hive_name: String,
    pub author: Author,
    pub origin_instance_id: String,
    pub title: String,
    pub content: Option<String>,
    pub url: Option<String>,
    pub score: i64,
    pub hot: f64,
    pub comment_count: i64,
    pub is_pinned: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub user_vote: Option<i64>,
}

/// Sort orders of listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    New,
    Top,
    Hot,
}

impl Sort {
    pub fn parse(s: &str) -> Option<Sort> {
        match s {
            "new" => Some(Sort::New),
            "top" => Some(Sort::Top),
            "hot" => Some(Sort::Hot),
            _ => None,
        }
    }
}

/// Which posts a listing covers.
#[derive(Debug, Clone)]
pub enum Scope {
    /// One hive (visibility already checked by the caller).
    Hive(String),
    /// Every hive the viewer may read.
    All,
    /// Hives the viewer belongs to.
    Joined,
    /// Hives the viewer belongs to, authors it follows, and public hives.
    Personal,
}

/// A page request: offset paging, or keyset paging when `cursor` is set.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
    pub cursor: Option<String>,
    /// Only posts created strictly after this instant (ms).
    pub since: Option<i64>,
}

pub(crate) const AUTHOR_COLS: &str = "a.id, a.name, a.description, a.avatar_url, a.karma, \
    a.verification_status = 'verified', a.created_at, a.account_type, a.instance_id, a.is_local";

impl From<&crate::agents::AgentRow> for Author {
    /// The agent as [`AUTHOR_COLS`] reads it.
    fn from(a: &crate::agents::AgentRow) -> Self {
        Author {
            id: a.id.clone(),
            name: a.name.clone(),
            description: a.description.clone(),
            avatar_url: a.avatar_url.clone(),
            karma: a.karma,
            is_verified: a.is_verified(),
            created_at: a.created_at,
            account_type: a.account_type.clone(),
            instance_id: a.instance_id.clone(),
            is_local: a.is_local,
        }
    }
}

pub(crate) fn author_at(r: &Row<'_>, i: usize) -> DbResult<Author> {
    Ok(Author {
        id: r.get(i)?,
        name: r.get(i + 1)?,
        description: r.get(i + 2)?,
        avatar_url: r.get(i + 3)?,
        karma: r.get(i + 4)?,
        is_verified: r.get(i + 5)?,
        created_at: r.get(i + 6)?,
        account_type: r.get(i + 7)?,
        instance_id: r.get(i + 8)?,
        is_local: r.get(i + 9)?,
    })
}

/// The columns of [`post_row`]; the viewer's vote from parameter `viewer_param`, or NULL
/// without a viewer (no lookup in `votes`).
fn select(viewer_param: Option<usize>) -> String {
    let user_vote = match viewer_param {
        Some(n) => format!(
            "(SELECT v.value FROM votes v WHERE v.target_id = p.id AND v.voter_id = ?{n}
                   AND v.value <> 0)"
        ),
        None => "CAST(NULL AS BIGINT)".to_string(),
    };
    format!(
        "SELECT p.id, p.hive_id, h.name, p.origin_instance_id, p.title, p.content, p.url, p.score,
                p.hot, p.comment_count, p.is_pinned, p.created_at, p.updated_at,
                {user_vote},
                {AUTHOR_COLS}
         FROM posts p JOIN hives h ON h.id = p.hive_id JOIN agents a ON a.id = p.author_id"
    )
}

fn post_row(r: &Row<'_>) -> DbResult<PostRow> {
    Ok(PostRow {
        id: r.get(0)?,
        hive_id: r.get(1)?,
        hive_name: r.get(2)?,
        origin_instance_id: r.get(3)?,
        title: r.get(4)?,
        content: r.get(5)?,
        url: r.get(6)?,
        score: r.get(7)?,
        hot: r.get(8)?,
        comment_count: r.get(9)?,
        is_pinned: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
        user_vote: r.get(13)?,
        author: author_at(r, 14)?,
    })
}

/// A live (not deleted, in a visible hive) post.
pub fn get(conn: &Conn<'_>, id: &str, viewer: Option<&str>) -> Result<Option<PostRow>> {
    // Built once: every read by id, and every realtime message of a post (no viewer).
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "{} WHERE p.id = ?2 AND p.deleted = 0 AND h.deleted = 0",
            select(Some(1))
        )
    });
    static SQL_ANONYMOUS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "{} WHERE p.id = ?1 AND p.deleted = 0 AND h.deleted = 0",
            select(None)
        )
    });
    let row = match viewer {
        Some(v) => conn
            .prepare_cached(&SQL)?
            .query_row(params![v, id], post_row),
        None => conn
            .prepare_cached(&SQL_ANONYMOUS)?
            .query_row(params![id], post_row),
    };
    Ok(row.optional()?)
}

/// What a post created by event `created` reads as (`get` with its author as the viewer)
/// right after that event was materialized, when nothing else has named the post yet: a
/// post id this instance has just minted. The values are the ones
/// `materialize::posts::created` inserts; the black-box test
/// `posts::a_created_post_is_answered_as_it_reads` keeps the two in step. It spares the
/// API's write path (on the writer's thread) a read of the row it has just written.
pub fn fresh(
    created: &openhive_core::Event,
    post: &openhive_core::payload::PostCreated,
    hive_id: &str,
    author: Author,
) -> PostRow {
    let ts = created.origin_ts;
    PostRow {
        id: post.post_id.clone(),
        hive_id: hive_id.to_string(),
        hive_name: created.hive.clone(),
        author,
        origin_instance_id: created.origin_instance_id.clone(),
        title: post.title.clone(),
        content: post.content.clone(),
        url: post.url.clone(),
        score: 0,
        hot: openhive_core::order::hot_rank(0, ts),
        comment_count: 0,
        is_pinned: false,
        created_at: ts,
        updated_at: ts,
        user_vote: None,
    }
}

/// Encodes the keyset position after `p` for `sort`.
pub fn cursor_after(p: &PostRow, sort: Sort) -> String {
    match sort {
        Sort::New => format!("n:{}:{}", p.created_at, p.id),
        Sort::Top => format!("t:{}:{}:{}", p.score, p.created_at, p.id),
        Sort::Hot => format!("h:{}:{}", p.hot, p.id),
    }
}

/// The personal feed and `since` listings count matching posts up to this many (`total`
/// saturates there).
pub const TOTAL_CAP: i64 = 10_000;

/// Lists posts. Returns the page, whether more exist, and the total matching the filter
/// (capped at [`TOTAL_CAP`] for the personal feed and `since` queries).
pub fn list(
    conn: &Conn<'_>,
    scope: &Scope,
    sort: Sort,
    page: &Page,
    viewer: Option<&str>,
) -> Result<(Vec<PostRow>, bool, i64)> {
    let viewer = viewer.unwrap_or("");
    let mut args: Vec<Value> = vec![Value::Text(viewer.to_string())];
    let mut filter = String::from("p.deleted = 0 AND h.deleted = 0");
    let readable = "(h.is_public = 1 OR h.owner_id = ?1 OR EXISTS (SELECT 1 FROM memberships m
        WHERE m.hive_id = h.id AND m.agent_id = ?1 AND (m.state = 'member' OR m.is_moderator = 1)))";
    let joined = "(h.owner_id = ?1 OR EXISTS (SELECT 1 FROM memberships m
        WHERE m.hive_id = h.id AND m.agent_id = ?1 AND (m.state = 'member' OR m.is_moderator = 1)))";
    match scope {
        Scope::Hive(hive_id) => {
            args.push(Value::Text(hive_id.clone()));
            filter.push_str(&format!(" AND p.hive_id = ?{}", args.len()));
        }
        Scope::All => filter.push_str(&format!(" AND {readable}")),
        Scope::Joined => filter.push_str(&format!(" AND {joined}")),
        Scope::Personal => filter.push_str(&format!(
            " AND {readable} AND ({joined} OR h.is_public = 1 OR EXISTS (SELECT 1 FROM follows f
                WHERE f.follower_id = ?1 AND f.following_id = p.author_id))"
        )),
    }
    if let Some(since) = page.since {
        args.push(Value::Int(since));
        filter.push_str(&format!(" AND p.created_at > ?{}", args.len()));
    }
    // One hive: its maintained live count (O(1)). All or joined hives: the sum of those
    // counts over the hives the viewer reads (one row per hive, not per post). The personal
    // feed (followed authors) or `since`: counted, but at most TOTAL_CAP rows, so a feed
    // page never scans the whole table.
    let hives_total = |readable_hives: &str| {
        conn.query_row(
            &format!(
                "SELECT CAST(COALESCE(SUM(h.post_count), 0) AS BIGINT) FROM hives h
                 WHERE CAST(?1 AS TEXT) IS NOT NULL AND h.deleted = 0 AND {readable_hives}"
            ),
            params_from_iter(args[..1].iter()),
            |r| r.get::<_, i64>(0),
        )
    };
    let total: i64 = match (scope, page.since) {
        (Scope::Hive(hive_id), None) => conn
            .prepare_cached("SELECT post_count FROM hives WHERE id = ?1")?
            .query_row([hive_id], |r| r.get(0))
            .optional()?
            .unwrap_or(0),
        (Scope::All, None) => hives_total(readable)?,
        (Scope::Joined, None) => hives_total(joined)?,
        _ => conn.query_row(
            &format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM posts p JOIN hives h ON h.id = p.hive_id
                 WHERE CAST(?1 AS TEXT) IS NOT NULL AND {filter} LIMIT {TOTAL_CAP}) AS hits"
            ),
            params_from_iter(args.iter()),
            |r| r.get(0),
        )?,
    };
    let mut keyset = String::new();
    if let Some(c) = &page.cursor {
        let bad = || StoreError::Invalid("malformed cursor".into());
        let parts: Vec<&str> = c.splitn(4, ':').collect();
        let n = args.len();
        match (sort, parts.as_slice()) {
            (Sort::New, ["n", ts, id]) => {
                args.push(Value::Int(ts.parse().map_err(|_| bad())?));
                args.push(Value::Text((*id).to_string()));
                keyset = format!(
                    " AND (p.created_at < ?{a} OR (p.created_at = ?{a} AND p.id < ?{b}))",
                    a = n + 1,
                    b = n + 2
                );
            }
            (Sort::Top, ["t", score, ts, id]) => {
                args.push(Value::Int(score.parse().map_err(|_| bad())?));
                args.push(Value::Int(ts.parse().map_err(|_| bad())?));
                args.push(Value::Text((*id).to_string()));
                keyset = format!(
                    " AND (p.score < ?{a} OR (p.score = ?{a} AND (p.created_at < ?{b}
                       OR (p.created_at = ?{b} AND p.id < ?{c}))))",
                    a = n + 1,
                    b = n + 2,
                    c = n + 3
                );
            }
            (Sort::Hot, ["h", hot, id]) => {
                args.push(Value::Real(hot.parse().map_err(|_| bad())?));
                args.push(Value::Text((*id).to_string()));
                keyset = format!(
                    " AND (p.hot < ?{a} OR (p.hot = ?{a} AND p.id < ?{b}))",
                    a = n + 1,
                    b = n + 2
                );
            }
            _ => return Err(bad()),
        }
    }
    let order = match sort {
        Sort::New => "p.created_at DESC, p.id DESC",
        Sort::Top => "p.score DESC, p.created_at DESC, p.id DESC",
        Sort::Hot => "p.hot DESC, p.id DESC",
    };
    let offset = if page.cursor.is_some() {
        0
    } else {
        page.offset
    };
    args.push(Value::Int(page.limit + 1));
    let lim = args.len();
    args.push(Value::Int(offset));
    let off = args.len();
    let sql = format!(
        "{} WHERE {filter}{keyset} ORDER BY {order} LIMIT ?{lim} OFFSET ?{off}",
        select(Some(1))
    );
    let mut rows = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(args.iter()), post_row)?
        .collect::<DbResult<Vec<_>>>()?;
    let has_more = rows.len() as i64 > page.limit;
    rows.truncate(page.limit.max(0) as usize);
    Ok((rows, has_more, total))
}

/// The caller's current vote on a target (0 if none).
pub fn current_vote(conn: &Conn<'_>, target_id: &str, voter_id: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT value FROM votes WHERE target_id = ?1 AND voter_id = ?2")?
        .query_row([target_id, voter_id], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// The score of a post or comment.
pub fn score_of(conn: &Conn<'_>, target_id: &str) -> Result<i64> {
    let p: Option<i64> = conn
        .prepare_cached("SELECT score FROM posts WHERE id = ?1")?
        .query_row([target_id], |r| r.get(0))
        .optional()?;
    if let Some(s) = p {
        return Ok(s);
    }
    Ok(conn
        .prepare_cached("SELECT score FROM comments WHERE id = ?1")?
        .query_row([target_id], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Minimal facts about a post for authorization: (hive_id, author_id), live posts only.
pub fn owner_facts(conn: &Conn<'_>, id: &str) -> Result<Option<(String, String)>> {
    Ok(conn
        .prepare_cached("SELECT hive_id, author_id FROM posts WHERE id = ?1 AND deleted = 0")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// One agent (local or remote) in the shape content rows carry.
pub fn author_by_id(conn: &Conn<'_>, id: &str) -> Result<Option<Author>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {AUTHOR_COLS} FROM agents a WHERE a.id = ?1"
        ))?
        .query_row([id], |r| author_at(r, 0))
        .optional()?)
}
