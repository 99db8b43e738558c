//! Pattern 1 pull subscriptions (`hive_sync_subscriptions`) and the mirror hives they fill
//! (`mirror_hives`).
//!
//! A subscription reads a remote hive through the remote's public feed, newest first, in
//! *passes*: a pass pages down from the newest post to the watermark `since_ms` (every post
//! created at or before it has been seen), then moves the watermark to the newest
//! `created_at` of the pass. The pass in progress (`pass_cursor` or `pass_offset`,
//! `pass_max_ms`) is durable, so a restart resumes where the last committed page left off.
//!
//! Invariants:
//! - the cursor columns move only in [`record_page`], which the caller runs in the
//!   transaction that ingests the page's mirrored posts (a cursor never runs ahead of
//!   durable data);
//! - a mirror hive stays a mirror when its subscription is deleted (its posts stay
//!   read-only); a hive is the mirror of at most one subscription (`local_hive_id` UNIQUE);
//! - one subscription per remote hive (`UNIQUE (remote_url, remote_hive_name)`).

use crate::engine::{Conn, DbResult, OptionalExtension, Row};
use crate::error::Result;
use crate::params;

/// One subscription, with its local hive's name. Times are ms since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    pub id: String,
    pub remote_url: String,
    pub remote_hive_name: String,
    pub local_hive_id: String,
    pub local_hive_name: String,
    pub sync_interval_ms: i64,
    pub enabled: bool,
    pub pass: PassState,
    pub next_poll_at: i64,
    pub last_attempt_at: Option<i64>,
    pub last_sync_at: Option<i64>,
    pub last_error: Option<String>,
    pub failure_count: i64,
    pub post_count: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where a subscription is in the remote's feed (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassState {
    /// Every remote post created at or before this instant has been seen.
    pub since_ms: Option<i64>,
    /// The remote's keyset cursor of the next page of the pass in progress.
    pub pass_cursor: Option<String>,
    /// The offset of the next page of the pass in progress (remotes without cursors).
    pub pass_offset: i64,
    /// The newest `created_at` seen in the pass in progress.
    pub pass_max_ms: Option<i64>,
}

impl PassState {
    /// A pass is under way (some of its pages were taken, not all).
    pub fn in_progress(&self) -> bool {
        self.pass_cursor.is_some() || self.pass_offset > 0 || self.pass_max_ms.is_some()
    }
}

/// A subscription to store.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub id: String,
    pub remote_url: String,
    pub remote_hive_name: String,
    pub local_hive_id: String,
    pub sync_interval_ms: i64,
    pub enabled: bool,
}

const COLS: &str = "s.id, s.remote_url, s.remote_hive_name, s.local_hive_id, h.name,
    s.sync_interval_ms, s.enabled, s.since_ms, s.pass_cursor, s.pass_offset, s.pass_max_ms,
    s.next_poll_at, s.last_attempt_at, s.last_sync_at, s.last_error, s.failure_count,
    s.post_count, s.created_at, s.updated_at";

const FROM: &str = "FROM hive_sync_subscriptions s JOIN hives h ON h.id = s.local_hive_id";

fn from_row(r: &Row<'_>) -> DbResult<SubscriptionRow> {
    Ok(SubscriptionRow {
        id: r.get(0)?,
        remote_url: r.get(1)?,
        remote_hive_name: r.get(2)?,
        local_hive_id: r.get(3)?,
        local_hive_name: r.get(4)?,
        sync_interval_ms: r.get(5)?,
        enabled: r.get(6)?,
        pass: PassState {
            since_ms: r.get(7)?,
            pass_cursor: r.get(8)?,
            pass_offset: r.get(9)?,
            pass_max_ms: r.get(10)?,
        },
        next_poll_at: r.get(11)?,
        last_attempt_at: r.get(12)?,
        last_sync_at: r.get(13)?,
        last_error: r.get(14)?,
        failure_count: r.get(15)?,
        post_count: r.get(16)?,
        created_at: r.get(17)?,
        updated_at: r.get(18)?,
    })
}

/// Stores a new subscription, due at once if enabled.
pub fn insert(conn: &Conn<'_>, s: &NewSubscription, now: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO hive_sync_subscriptions (id, remote_url, remote_hive_name, local_hive_id,
           sync_interval_ms, enabled, pass_offset, next_poll_at, failure_count, post_count,
           created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, 0, 0, ?7, ?7)",
    )?
    .execute(params![
        s.id,
        s.remote_url,
        s.remote_hive_name,
        s.local_hive_id,
        s.sync_interval_ms,
        i64::from(s.enabled),
        now
    ])?;
    Ok(())
}

pub fn get(conn: &Conn<'_>, id: &str) -> Result<Option<SubscriptionRow>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLS} {FROM} WHERE s.id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

/// The id of the subscription to `remote_hive_name` on `remote_url`, if any.
pub fn id_by_remote(
    conn: &Conn<'_>,
    remote_url: &str,
    remote_hive_name: &str,
) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM hive_sync_subscriptions WHERE remote_url = ?1 AND remote_hive_name = ?2",
        )?
        .query_row([remote_url, remote_hive_name], |r| r.get(0))
        .optional()?)
}

/// The id of the subscription filling `hive_id`, if any.
pub fn id_by_local_hive(conn: &Conn<'_>, hive_id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT id FROM hive_sync_subscriptions WHERE local_hive_id = ?1")?
        .query_row([hive_id], |r| r.get(0))
        .optional()?)
}

/// A page of subscriptions ordered by id, after `after` (exclusive; "" for the first).
pub fn list(conn: &Conn<'_>, after: &str, limit: i64) -> Result<Vec<SubscriptionRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLS} {FROM} WHERE s.id > ?1 ORDER BY s.id LIMIT ?2"
        ))?
        .query_map(params![after, limit], from_row)?
        .collect::<DbResult<Vec<_>>>()?)
}

/// Pauses or resumes, and/or changes the interval. A resumed subscription is due at once;
/// a shorter interval applies from now. False if there is no such subscription.
pub fn update(
    conn: &Conn<'_>,
    id: &str,
    enabled: Option<bool>,
    sync_interval_ms: Option<i64>,
    now: i64,
) -> Result<bool> {
    let Some(cur) = get(conn, id)? else {
        return Ok(false);
    };
    let resumed = enabled == Some(true) && !cur.enabled;
    let enabled = enabled.unwrap_or(cur.enabled);
    let interval = sync_interval_ms.unwrap_or(cur.sync_interval_ms);
    let next = if resumed {
        now
    } else {
        cur.next_poll_at.min(now.saturating_add(interval))
    };
    conn.prepare_cached(
        "UPDATE hive_sync_subscriptions SET enabled = ?2, sync_interval_ms = ?3,
           next_poll_at = ?4, failure_count = CASE WHEN ?5 = 1 THEN 0 ELSE failure_count END,
           updated_at = ?6
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        i64::from(enabled),
        interval,
        next,
        i64::from(resumed),
        now
    ])?;
    Ok(true)
}

/// Makes an enabled subscription due now. False if there is no such subscription.
pub fn poll_now(conn: &Conn<'_>, id: &str, now: i64) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE hive_sync_subscriptions SET next_poll_at = ?2, updated_at = ?2 WHERE id = ?1",
        )?
        .execute(params![id, now])?;
    Ok(n > 0)
}

/// Deletes a subscription (its mirror hive stays, still a mirror). False if unknown.
pub fn delete(conn: &Conn<'_>, id: &str) -> Result<bool> {
    let n = conn
        .prepare_cached("DELETE FROM hive_sync_subscriptions WHERE id = ?1")?
        .execute([id])?;
    Ok(n > 0)
}

/// Enabled subscriptions due at `now`, most overdue first.
pub fn due(conn: &Conn<'_>, now: i64, limit: i64) -> Result<Vec<SubscriptionRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLS} {FROM} WHERE s.enabled = 1 AND s.next_poll_at <= ?1
             ORDER BY s.next_poll_at, s.id LIMIT ?2"
        ))?
        .query_map(params![now, limit], from_row)?
        .collect::<DbResult<Vec<_>>>()?)
}

/// When the next enabled subscription is due (None: none is enabled).
pub fn next_due_at(conn: &Conn<'_>) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT MIN(next_poll_at) FROM hive_sync_subscriptions WHERE enabled = 1")?
        .query_row(params![], |r| r.get(0))?)
}

/// Moves the cursor after a page whose `added` posts the caller ingested in this same
/// transaction; the poll succeeded. False if the subscription is gone (the caller then
/// rolls back).
pub fn record_page(
    conn: &Conn<'_>,
    id: &str,
    pass: &PassState,
    added: i64,
    now: i64,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE hive_sync_subscriptions SET since_ms = ?2, pass_cursor = ?3, pass_offset = ?4,
               pass_max_ms = ?5, post_count = post_count + ?6, last_sync_at = ?7,
               last_attempt_at = ?7, last_error = NULL, failure_count = 0, updated_at = ?7
             WHERE id = ?1",
        )?
        .execute(params![
            id,
            pass.since_ms,
            pass.pass_cursor,
            pass.pass_offset,
            pass.pass_max_ms,
            added,
            now
        ])?;
    Ok(n > 0)
}

/// Schedules the next poll after a successful round.
pub fn schedule(conn: &Conn<'_>, id: &str, next_poll_at: i64, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE hive_sync_subscriptions SET next_poll_at = ?2, last_attempt_at = ?3,
           updated_at = ?3
         WHERE id = ?1",
    )?
    .execute(params![id, next_poll_at, now])?;
    Ok(())
}

/// Records a failed poll: the error, one more consecutive failure, the retry time.
pub fn record_failure(
    conn: &Conn<'_>,
    id: &str,
    error: &str,
    next_poll_at: i64,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE hive_sync_subscriptions SET last_error = ?2, failure_count = failure_count + 1,
           next_poll_at = ?3, last_attempt_at = ?4, updated_at = ?4
         WHERE id = ?1",
    )?
    .execute(params![id, error, next_poll_at, now])?;
    Ok(())
}

/// The remote (`remote_url`, `remote_hive_name`) `hive_id` mirrors, if it is a mirror.
pub fn mirror_of(conn: &Conn<'_>, hive_id: &str) -> Result<Option<(String, String)>> {
    Ok(conn
        .prepare_cached("SELECT remote_url, remote_hive_name FROM mirror_hives WHERE hive_id = ?1")?
        .query_row([hive_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Marks `hive_id` as the mirror of a remote hive.
pub fn mark_mirror(
    conn: &Conn<'_>,
    hive_id: &str,
    remote_url: &str,
    remote_hive_name: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO mirror_hives (hive_id, remote_url, remote_hive_name) VALUES (?1, ?2, ?3)
         ON CONFLICT (hive_id) DO NOTHING",
    )?
    .execute([hive_id, remote_url, remote_hive_name])?;
    Ok(())
}

/// Of `ids`, those already used by a post (any hive): a mirrored post is taken once.
pub fn known_posts(conn: &Conn<'_>, ids: &[String]) -> Result<std::collections::HashSet<String>> {
    let mut out = std::collections::HashSet::new();
    let mut stmt = conn.prepare_cached("SELECT 1 FROM posts WHERE id = ?1")?;
    for id in ids {
        if stmt.query_row([id], |_| Ok(())).optional()?.is_some() {
            out.insert(id.clone());
        }
    }
    Ok(out)
}
