//! The readers of a hive's log. A *consumer* is (consumer id, hive, cursor, typed state):
//! the cursor is the last seq of that hive's log the consumer has durably taken. A peer
//! link's outbox is one kind; pull subscriptions and federation delivery are others, and
//! each is driven by the same outbox logic (read the log after the cursor, deliver, advance
//! after the acknowledgement).
//!
//! The *low-water mark* of a hive is the lowest cursor of its live consumers: everything at
//! or below it has been taken by every reader, which is what compaction needs to know.
//!
//! Invariants:
//! - a cursor only moves forward, and never beyond the log's head (it cannot run ahead of
//!   durable data: it is advanced in the caller's transaction, after the acknowledgement);
//! - only live consumers hold the low-water mark down; a link that left stops counting.

use crate::engine::{Conn, DbResult, OptionalExtension, Row};
use crate::error::Result;
use crate::params;

openhive_core::closed_vocabulary! {
    /// What reads the log.
    pub enum ConsumerKind ("consumer kind", expected "peer_link") {
        /// The outbox of a Hive Sync link to a peer.
        PeerLink = "peer_link",
    }
}

crate::engine::text_column!(ConsumerKind);

/// A consumer's id (unique per hive), with its kind's prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsumerId(String);

impl ConsumerId {
    /// The outbox of the link to `peer_id`.
    pub fn peer(peer_id: &str) -> ConsumerId {
        ConsumerId(format!("peer:{peer_id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One consumer of one hive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub id: String,
    pub hive_id: String,
    pub kind: ConsumerKind,
    pub cursor: i64,
    pub live: bool,
    /// Kind-specific state (JSON), if any.
    pub state: Option<String>,
    pub updated_at: i64,
}

const COLS: &str = "id, hive_id, kind, cursor_seq, live, state, updated_at";

fn consumer_row(r: &Row<'_>) -> DbResult<Consumer> {
    Ok(Consumer {
        id: r.get(0)?,
        hive_id: r.get(1)?,
        kind: r.get(2)?,
        cursor: r.get(3)?,
        live: r.get(4)?,
        state: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

/// Registers the consumer if missing (cursor 0) and marks it live.
pub fn ensure(conn: &Conn<'_>, id: &ConsumerId, hive_id: &str, kind: ConsumerKind) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO consumers (id, hive_id, kind, cursor_seq, live) VALUES (?1, ?2, ?3, 0, 1)
         ON CONFLICT (id, hive_id) DO UPDATE SET live = 1",
    )?
    .execute(params![id.as_str(), hive_id, kind.as_str()])?;
    Ok(())
}

/// Moves the cursor forward to `seq` (never back, never beyond the log's head).
pub fn advance(conn: &Conn<'_>, id: &ConsumerId, hive_id: &str, seq: i64, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE consumers SET cursor_seq = GREATEST(cursor_seq,
             LEAST(?3, COALESCE((SELECT l.head_seq FROM hive_logs l WHERE l.hive_id = ?2), 0))),
           updated_at = ?4
         WHERE id = ?1 AND hive_id = ?2",
    )?
    .execute(params![id.as_str(), hive_id, seq, now])?;
    Ok(())
}

/// A consumer that stops (or resumes) reading: only live ones hold the low-water mark.
pub fn set_live(conn: &Conn<'_>, id: &ConsumerId, hive_id: &str, live: bool) -> Result<()> {
    conn.prepare_cached("UPDATE consumers SET live = ?3 WHERE id = ?1 AND hive_id = ?2")?
        .execute(params![id.as_str(), hive_id, live])?;
    Ok(())
}

/// Forgets the consumer for one hive, or for every hive.
pub fn remove(conn: &Conn<'_>, id: &ConsumerId, hive_id: Option<&str>) -> Result<()> {
    match hive_id {
        Some(h) => conn.execute(
            "DELETE FROM consumers WHERE id = ?1 AND hive_id = ?2",
            params![id.as_str(), h],
        )?,
        None => conn.execute("DELETE FROM consumers WHERE id = ?1", [id.as_str()])?,
    };
    Ok(())
}

/// Forgets every consumer of a hive.
pub fn remove_hive(conn: &Conn<'_>, hive_id: &str) -> Result<()> {
    conn.execute("DELETE FROM consumers WHERE hive_id = ?1", [hive_id])?;
    Ok(())
}

/// Moves `from`'s rows to `into` where `into` has none for that hive (peer merge), then
/// drops the rest of `from`.
pub fn merge(conn: &Conn<'_>, from: &ConsumerId, into: &ConsumerId) -> Result<()> {
    conn.execute(
        "UPDATE consumers SET id = ?2 WHERE id = ?1 AND NOT EXISTS
           (SELECT 1 FROM consumers c WHERE c.id = ?2 AND c.hive_id = consumers.hive_id)",
        params![from.as_str(), into.as_str()],
    )?;
    remove(conn, from, None)
}

pub fn get(conn: &Conn<'_>, id: &ConsumerId, hive_id: &str) -> Result<Option<Consumer>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLS} FROM consumers WHERE id = ?1 AND hive_id = ?2"
        ))?
        .query_row(params![id.as_str(), hive_id], consumer_row)
        .optional()?)
}

/// The cursor of a consumer (0 if it never took anything or does not exist).
pub fn cursor(conn: &Conn<'_>, id: &ConsumerId, hive_id: &str) -> Result<i64> {
    Ok(get(conn, id, hive_id)?.map_or(0, |c| c.cursor))
}

/// Every consumer of a hive, by id.
pub fn for_hive(conn: &Conn<'_>, hive_id: &str) -> Result<Vec<Consumer>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLS} FROM consumers WHERE hive_id = ?1 ORDER BY id"
        ))?
        .query_map([hive_id], consumer_row)?
        .collect::<DbResult<_>>()?)
}

/// The lowest cursor of the hive's live consumers; `None` if nothing reads the hive.
pub fn low_water_mark(conn: &Conn<'_>, hive_id: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT MIN(cursor_seq) FROM consumers WHERE hive_id = ?1 AND live = 1")?
        .query_row([hive_id], |r| r.get(0))?)
}
