//! Every post's indexed length (tokens of its `posts_fts` row, FTS5's `%_docsize` record),
//! held in memory for the [`bm25`](super::bm25) ranking, as a search engine holds its norms:
//! a common term matches tens of thousands of posts, and reading each one's length from
//! the index was half the time of such a search.
//!
//! One cache per store (in its [`StoreContext`](crate::StoreContext)), shared by its
//! readers: 4 bytes per post rowid, filled at the first search. It follows the index
//! without any work on the write path for new posts: rows above the highest rowid it holds
//! are read at the next search. Lengths it holds change only when a post's index entry is
//! deleted (an edit of its title or content, or the row's deletion): migration 0018 records
//! those rowids in `posts_fts_changes` (the last 1000), in the transaction that makes the
//! change, and the next search reads them again; a cache further behind than the changes
//! kept reloads every length.
//!
//! Invariant: a length is answered only for a snapshot at least as new as the state the
//! cache holds (same change sequence, or one it has caught up to). A reader on an older
//! snapshot (a change it does not see is already in the cache) gets `None` and reads the
//! lengths from the index itself.

use std::sync::{Arc, Mutex, PoisonError};

use super::fts5_record::{self, corrupt};
use crate::engine::{Conn, OptionalExtension};
use crate::error::Result;
use crate::params;

/// See the module docs. `Clone` shares the cache.
#[derive(Debug, Clone)]
pub struct PostLengths(Option<Arc<Mutex<Lengths>>>);

impl PostLengths {
    /// No cache: every search reads lengths from the index (bare connections).
    pub const DISABLED: PostLengths = PostLengths(None);
}

impl Default for PostLengths {
    /// An empty cache, filled at the first search.
    fn default() -> Self {
        PostLengths(Some(Arc::default()))
    }
}

/// Rowids above this are not held (the cache is indexed by rowid: 4 bytes each, 200 MB
/// here); such a store's searches read lengths from the index.
const MAX_ROWID: i64 = 50_000_000;

#[derive(Debug, Default)]
struct Lengths {
    /// Tokens by rowid, for rowids `0..=max_rowid` (0: no such row).
    by_rowid: Vec<u32>,
    max_rowid: i64,
    /// The last `posts_fts_changes.seq` the lengths include.
    seq: i64,
    loaded: bool,
}

/// The state of the index a snapshot sees.
struct Snapshot {
    /// Newest and oldest change recorded (0 and `None` without any).
    seq: i64,
    oldest: Option<i64>,
    max_rowid: i64,
}

fn snapshot(conn: &Conn<'_>) -> Result<Snapshot> {
    Ok(conn.query_row(
        "SELECT (SELECT coalesce(max(seq), 0) FROM posts_fts_changes),
                (SELECT min(seq) FROM posts_fts_changes),
                (SELECT coalesce(max(id), 0) FROM posts_fts_docsize)",
        params![],
        |r| {
            Ok(Snapshot {
                seq: r.get(0)?,
                oldest: r.get(1)?,
                max_rowid: r.get(2)?,
            })
        },
    )?)
}

/// The token counts of `docs` as `conn`'s snapshot sees them (in the same order), or
/// `None` if the cache cannot answer for this snapshot (disabled, or the snapshot is older
/// than what it holds).
pub fn lengths(conn: &Conn<'_>, docs: &[i64]) -> Result<Option<Vec<i64>>> {
    let Some(cache) = &conn.context().post_lengths.0 else {
        return Ok(None);
    };
    let snap = snapshot(conn)?;
    if snap.max_rowid > MAX_ROWID {
        return Ok(None);
    }
    let mut c = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if !c.loaded || (snap.seq > c.seq && snap.oldest.is_none_or(|o| o > c.seq + 1)) {
        // First use, or changes were pruned before this cache saw them: read them all.
        *c = Lengths {
            seq: snap.seq,
            loaded: true,
            ..Lengths::default()
        };
        extend(conn, &mut c, snap.max_rowid)?;
    } else if snap.seq < c.seq {
        return Ok(None);
    } else if snap.seq > c.seq {
        let changed: Vec<i64> = conn
            .prepare_cached("SELECT DISTINCT rid FROM posts_fts_changes WHERE seq > ?1")?
            .query_map(params![c.seq], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        for rid in changed {
            let len = read_one(conn, rid)?;
            if let Some(slot) = usize::try_from(rid)
                .ok()
                .and_then(|i| c.by_rowid.get_mut(i))
            {
                *slot = len;
            }
        }
        // Rows deleted at the top may have their rowids used again by new posts, which no
        // change records: hold only what this (newest) snapshot has.
        if snap.max_rowid < c.max_rowid {
            c.max_rowid = snap.max_rowid;
            c.by_rowid
                .truncate(usize::try_from(snap.max_rowid).unwrap_or(0) + 1);
        }
        c.seq = snap.seq;
    }
    if snap.max_rowid > c.max_rowid {
        extend(conn, &mut c, snap.max_rowid)?;
    }
    let mut out = Vec::with_capacity(docs.len());
    for &doc in docs {
        match usize::try_from(doc).ok().and_then(|i| c.by_rowid.get(i)) {
            Some(&len) if len > 0 => out.push(i64::from(len)),
            // A matching row has tokens; anything else is a state this cache does not
            // know: let the index answer.
            _ => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// Reads the lengths of rows `max_rowid+1..=upto` into the cache.
fn extend(conn: &Conn<'_>, c: &mut Lengths, upto: i64) -> Result<()> {
    let rows = conn
        .prepare_cached(
            "SELECT id, sz FROM posts_fts_docsize WHERE id > ?1 AND id <= ?2 ORDER BY id",
        )?
        .query_map(params![c.max_rowid, upto], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
    let top = usize::try_from(upto).map_err(|_| corrupt("rowid"))?;
    if c.by_rowid.len() < top + 1 {
        c.by_rowid.resize(top + 1, 0);
    }
    for row in rows {
        let (id, sz) = row?;
        let len = record_tokens(&sz)?;
        if let Some(slot) = usize::try_from(id).ok().and_then(|i| c.by_rowid.get_mut(i)) {
            *slot = len;
        }
    }
    c.max_rowid = upto;
    Ok(())
}

/// The length of one row (0 if it has none).
fn read_one(conn: &Conn<'_>, rid: i64) -> Result<u32> {
    let sz: Option<Vec<u8>> = conn
        .prepare_cached("SELECT sz FROM posts_fts_docsize WHERE id = ?1")?
        .query_row(params![rid], |r| r.get(0))
        .optional()?;
    sz.map_or(Ok(0), |sz| record_tokens(&sz))
}

/// The lengths of `docs` read from the index itself (no cache).
pub fn from_index(conn: &Conn<'_>, docs: &[i64]) -> Result<Vec<i64>> {
    let mut out = Vec::with_capacity(docs.len());
    for &doc in docs {
        let len = read_one(conn, doc)?;
        if len == 0 {
            return Err(corrupt("docsize (row missing)"));
        }
        out.push(i64::from(len));
    }
    Ok(out)
}

/// Tokens of a `%_docsize` record: the sum of its varints (one per column).
fn record_tokens(sz: &[u8]) -> Result<u32> {
    fts5_record::sum_varints(sz, 0)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| corrupt("docsize"))
}
