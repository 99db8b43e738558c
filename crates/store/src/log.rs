//! The append-only event log of each hive.
//!
//! Invariants:
//! - an event id appears at most once in the whole log (duplicates are dropped, they never
//!   get a second seq);
//! - `seq` is assigned here and only here: the log's header (`hive_logs.head_seq`) + 1, in
//!   the same transaction as the insert, so it is gap-free and monotonic per hive (the
//!   header row is locked by the update until the commit, on both engines);
//! - the log knows nothing of the `hives` read model: the header is its own table;
//! - rows are never updated; they are deleted only when a whole hive is dropped locally or
//!   by compaction ([`crate::compact`]), which drops only superseded events at or below the
//!   hive's compaction point and keeps their ids (`compacted_events`), so seqs below that
//!   point may have gaps and a dropped id is still a duplicate.

use crate::engine::{Conn, DbResult, OptionalExtension, Row};
use crate::error::Result;
use crate::params;
use openhive_core::{Event, EventType};
use serde::Serialize;

/// An event as this instance logged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggedEvent {
    pub seq: i64,
    #[serde(flatten)]
    pub event: Event,
    /// Peer instance that delivered it; None for events created here.
    #[serde(skip)]
    pub received_from: Option<String>,
    #[serde(skip)]
    pub received_at: i64,
}

/// Appends `ev` to the log of `hive_id`. Returns the assigned seq, or None if an event with
/// this id is already logged (anywhere).
pub fn append(
    conn: &Conn<'_>,
    hive_id: &str,
    ev: &Event,
    received_from: Option<&str>,
    now: i64,
) -> Result<Option<i64>> {
    if contains(conn, &ev.id)? {
        return Ok(None);
    }
    append_new(conn, hive_id, ev, received_from, now).map(Some)
}

/// [`append`] of an event the caller has just checked, in this transaction, the log does
/// not hold ([`contains`] is false): no second lookup.
pub(crate) fn append_new(
    conn: &Conn<'_>,
    hive_id: &str,
    ev: &Event,
    received_from: Option<&str>,
    now: i64,
) -> Result<i64> {
    let seq = match conn.engine() {
        // SQLite gathers a RETURNING statement's rows in a temporary table first: a read
        // and a plain update by key cost about half (callgrind, an API write's append).
        // The write transaction holds the database's one write lock between the two.
        crate::Engine::Sqlite => {
            let head: i64 = conn
                .prepare_cached("SELECT head_seq FROM hive_logs WHERE hive_id = ?1")?
                .query_row([hive_id], |r| r.get(0))
                .optional()?
                .ok_or(crate::StoreError::NotFound("hive log"))?;
            conn.prepare_cached("UPDATE hive_logs SET head_seq = ?2 WHERE hive_id = ?1")?
                .execute(params![hive_id, head + 1])?;
            head + 1
        }
        // One round trip to the server, and the row lock taken by the update.
        crate::Engine::Postgres => conn
            .query_row(
                "UPDATE hive_logs SET head_seq = head_seq + 1 WHERE hive_id = ?1 RETURNING head_seq",
                [hive_id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(crate::StoreError::NotFound("hive log"))?,
    };
    insert_at(conn, hive_id, seq, ev, received_from, now)?;
    Ok(seq)
}

/// Seqs for a run of appends in one transaction (a page of remote events): the head is read
/// at the first append and written once by [`SeqRun::finish`], instead of an
/// `UPDATE … RETURNING` per event (which also gathers its row in a temporary table). Every
/// append of the run must go through it, and `finish` must run before the transaction ends
/// and before anything in it reads the head.
#[derive(Debug, Default)]
pub(crate) struct SeqRun {
    /// The last seq handed out, once the head was read.
    last: Option<i64>,
}

impl SeqRun {
    /// Appends an event the caller has just checked the log does not hold (like
    /// [`append_new`]) at the run's next seq.
    pub(crate) fn append_new(
        &mut self,
        conn: &Conn<'_>,
        hive_id: &str,
        ev: &Event,
        received_from: Option<&str>,
        now: i64,
    ) -> Result<i64> {
        let last = match self.last {
            Some(s) => s,
            None => conn
                .prepare_cached("SELECT head_seq FROM hive_logs WHERE hive_id = ?1")?
                .query_row([hive_id], |r| r.get(0))
                .optional()?
                .ok_or(crate::StoreError::NotFound("hive log"))?,
        };
        let seq = last + 1;
        insert_at(conn, hive_id, seq, ev, received_from, now)?;
        self.last = Some(seq);
        Ok(seq)
    }

    /// Writes the head the run reached (nothing if it appended nothing).
    pub(crate) fn finish(self, conn: &Conn<'_>, hive_id: &str) -> Result<()> {
        if let Some(last) = self.last {
            conn.prepare_cached("UPDATE hive_logs SET head_seq = ?2 WHERE hive_id = ?1")?
                .execute(params![hive_id, last])?;
        }
        Ok(())
    }
}

fn insert_at(
    conn: &Conn<'_>,
    hive_id: &str,
    seq: i64,
    ev: &Event,
    received_from: Option<&str>,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO events (hive_id, seq, id, event_type, origin_instance_id, origin_ts,
                             payload, signature, received_from, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        hive_id,
        seq,
        ev.id,
        ev.event_type.as_str(),
        ev.origin_instance_id,
        ev.origin_ts,
        ev.payload,
        ev.signature,
        received_from,
        now
    ])?;
    Ok(())
}

/// Whether an event of this id is known: logged, or logged once and dropped by compaction
/// (a dropped event arriving again is a duplicate; it never gets a second seq).
pub fn contains(conn: &Conn<'_>, event_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM events WHERE id = ?1
             UNION ALL SELECT 1 FROM compacted_events WHERE id = ?1",
        )?
        .query_row([event_id], |_| Ok(()))
        .optional()?
        .is_some())
}

const COLUMNS: &str = "seq, id, hive_id, event_type, origin_instance_id, origin_ts, payload, \
                       signature, received_from, received_at";

fn row_to_logged(r: &Row<'_>, hive: &str) -> DbResult<LoggedEvent> {
    let t: String = r.get(3)?;
    let event_type = EventType::parse(&t)
        .ok_or_else(|| crate::engine::DbError::decode(3, format!("unknown event type {t}")))?;
    Ok(LoggedEvent {
        seq: r.get(0)?,
        event: Event {
            id: r.get(1)?,
            hive: hive.to_string(),
            event_type,
            origin_instance_id: r.get(4)?,
            origin_ts: r.get(5)?,
            payload: r.get(6)?,
            signature: r.get(7)?,
        },
        received_from: r.get(8)?,
        received_at: r.get(9)?,
    })
}

fn hive_name(conn: &Conn<'_>, hive_id: &str) -> Result<String> {
    Ok(conn
        .prepare_cached("SELECT name FROM hives WHERE id = ?1")?
        .query_row([hive_id], |r| r.get(0))
        .optional()?
        .unwrap_or_default())
}

/// Events of `hive_id` with `seq > since`, in seq order, at most `limit`.
pub fn since(conn: &Conn<'_>, hive_id: &str, since: i64, limit: i64) -> Result<Vec<LoggedEvent>> {
    let hive = hive_name(conn, hive_id)?;
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {COLUMNS} FROM events WHERE hive_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
        )
    });
    let mut stmt = conn.prepare_cached(&SQL)?;
    let rows = stmt.query_map(params![hive_id, since, limit], |r| row_to_logged(r, &hive))?;
    Ok(rows.collect::<DbResult<Vec<_>>>()?)
}

/// A page of the log that covers at most `limit` seqs: the events of `hive_id` with
/// `since < seq <= covered`, where `covered = min(since + limit, head)` is returned with
/// them (the seqs a reader may move its cursor over). The head is read first, so every event
/// up to `covered` is committed; below a compaction point the range may hold fewer than
/// `limit` events (seqs of dropped events are covered, not sent), or none.
pub fn covering(
    conn: &Conn<'_>,
    hive_id: &str,
    since: i64,
    limit: i64,
) -> Result<(Vec<LoggedEvent>, i64)> {
    let head = head(conn, hive_id)?;
    let covered = head.min(since.saturating_add(limit.max(0))).max(since);
    if covered == since {
        return Ok((Vec::new(), since));
    }
    let hive = hive_name(conn, hive_id)?;
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {COLUMNS} FROM events WHERE hive_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq"
        )
    });
    let mut stmt = conn.prepare_cached(&SQL)?;
    let rows = stmt.query_map(params![hive_id, since, covered], |r| {
        row_to_logged(r, &hive)
    })?;
    Ok((rows.collect::<DbResult<Vec<_>>>()?, covered))
}

/// How far the entries after `after` hold only events `instance` originated or relayed to
/// us (what a push to it skips), looking at most `limit` seqs ahead: the last seq of that
/// run, `after` itself if the next entry is one it lacks. Reads two columns of the
/// entries, not the events.
pub fn run_known_to(
    conn: &Conn<'_>,
    hive_id: &str,
    after: i64,
    instance: &str,
    limit: i64,
) -> Result<i64> {
    let end = head(conn, hive_id)?.min(after.saturating_add(limit.max(0)));
    if end <= after {
        return Ok(after);
    }
    let first_unknown: Option<i64> = conn
        .prepare_cached(
            "SELECT seq FROM events WHERE hive_id = ?1 AND seq > ?2 AND seq <= ?3
               AND origin_instance_id <> ?4 AND COALESCE(received_from, '') <> ?4
             ORDER BY seq LIMIT 1",
        )?
        .query_row(params![hive_id, after, end, instance], |r| r.get(0))
        .optional()?;
    Ok(first_unknown.map_or(end, |s| s - 1))
}

/// Newest-first page of the log (for browsing): events with `seq < before`.
pub fn page_desc(
    conn: &Conn<'_>,
    hive_id: &str,
    before: i64,
    limit: i64,
) -> Result<Vec<LoggedEvent>> {
    let hive = hive_name(conn, hive_id)?;
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {COLUMNS} FROM events WHERE hive_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
        )
    });
    let mut stmt = conn.prepare_cached(&SQL)?;
    let rows = stmt.query_map(params![hive_id, before, limit], |r| row_to_logged(r, &hive))?;
    Ok(rows.collect::<DbResult<Vec<_>>>()?)
}

/// One logged event by id, with its hive id.
pub fn get(conn: &Conn<'_>, event_id: &str) -> Result<Option<(String, LoggedEvent)>> {
    let hive_id: Option<String> = conn
        .prepare_cached("SELECT hive_id FROM events WHERE id = ?1")?
        .query_row([event_id], |r| r.get(0))
        .optional()?;
    let Some(hive_id) = hive_id else {
        return Ok(None);
    };
    let hive = hive_name(conn, &hive_id)?;
    let ev = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE id = ?1"))?
        .query_row([event_id], |r| row_to_logged(r, &hive))
        .optional()?;
    Ok(ev.map(|e| (hive_id, e)))
}

/// Creates the (empty) log of a new hive.
pub fn create(conn: &Conn<'_>, hive_id: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO hive_logs (hive_id, head_seq) VALUES (?1, 0) ON CONFLICT DO NOTHING",
        [hive_id],
    )?;
    Ok(())
}

/// `(hive id, hive name, head seq)` of the first `limit` logs in hive-name order (the name
/// is empty for a log whose hive row is missing). One query, for metrics.
pub fn heads(conn: &Conn<'_>, limit: i64) -> Result<Vec<(String, String, i64)>> {
    Ok(conn
        .prepare_cached(
            "SELECT g.hive_id, COALESCE(h.name, ''), g.head_seq FROM hive_logs g
             LEFT JOIN hives h ON h.id = g.hive_id
             ORDER BY COALESCE(h.name, ''), g.hive_id LIMIT ?1",
        )?
        .query_map(params![limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<DbResult<_>>()?)
}

/// The last assigned seq of a hive (0 for an empty log).
pub fn head(conn: &Conn<'_>, hive_id: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT head_seq FROM hive_logs WHERE hive_id = ?1")?
        .query_row([hive_id], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}
