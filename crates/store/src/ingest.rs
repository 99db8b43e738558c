//! The one path by which any event enters a hive, whether it was created by a local API
//! call or received from a peer: append to the log, then materialize, then release what was
//! waiting for it. Callers run these inside one `Store::write` transaction, so an event is
//! either logged *and* applied (or parked) or not there at all.
//!
//! Invariants:
//! - nothing from a peer is logged before its signature verifies against the origin's key;
//!   events from an origin whose key is unknown wait in `unverified_events`, outside the log;
//! - that queue is bounded per delivering peer and in total ([`crate::WaitingLimits`], from
//!   the connection's context): beyond either bound an event is rejected with its reason and
//!   counted ([`WAITING_REFUSED`]), never stored;
//! - an event whose target is unknown is logged and parked in `pending_events`, then applied
//!   as soon as its dependency is applied;
//! - duplicates (same event id) are dropped before anything else happens.

use crate::db::counter_add;
use crate::engine::{Conn, DbResult};
use crate::error::Result;
use crate::keys;
use crate::log;
use crate::materialize::{self, Batch, Change, Outcome};
use crate::params;
use openhive_core::payload::Payload;
use openhive_core::{Event, KeyChain, PublicKey};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

/// Counter names (table `counters`).
pub const REJECTED: &str = "events_rejected";
pub const IGNORED: &str = "events_ignored";
pub const PENDING_DROPPED: &str = "pending_dropped";
/// Events refused because the queue of events waiting for a key was full.
pub const WAITING_REFUSED: &str = "waiting_refused";

/// How long an event may wait for a dependency or a key before it is dropped.
pub const PENDING_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// Result of ingesting one event.
#[derive(Debug, Default)]
pub struct Ingested {
    /// The seq assigned, or None for a duplicate.
    pub seq: Option<i64>,
    pub changes: Vec<Change>,
}

/// An event whose signature and payload have been checked: the only thing [`ingest`]
/// takes. Its fields are private, so nothing unverified can be handed to ingest: a local
/// event is made by [`Verified::sign`] (signed with our key here, its payload re-parsed and
/// checked exactly as a peer's is), a peer's by [`Verified::check`] or inside
/// [`ingest_remote`] (signature checked against the origin's key).
#[derive(Debug, Clone)]
pub struct Verified {
    event: Event,
    payload: Payload,
}

impl Verified {
    /// Signs `payload` as an event of `hive` by `instance_id`, then checks it as any event
    /// from a peer is checked (envelope, payload parse and authority rules).
    pub fn sign(
        key: &openhive_core::InstanceKey,
        instance_id: &str,
        hive: &str,
        payload: &Payload,
        origin_ts: i64,
    ) -> std::result::Result<Verified, openhive_core::event::EventError> {
        let event = Event::sign_new(
            key,
            instance_id,
            hive,
            payload.event_type(),
            origin_ts,
            payload.to_json(),
        );
        event.check_envelope()?;
        let payload = Payload::parse_and_check(&event)?;
        Ok(Verified { event, payload })
    }

    /// Checks a received event against its origin's key.
    pub fn check(
        event: Event,
        origin_key: &PublicKey,
    ) -> std::result::Result<Verified, openhive_core::event::EventError> {
        event.check_envelope()?;
        event.verify(origin_key)?;
        let payload = Payload::parse_and_check(&event)?;
        Ok(Verified { event, payload })
    }

    pub fn event(&self) -> &Event {
        &self.event
    }

    pub fn payload(&self) -> &Payload {
        &self.payload
    }
}

/// Appends a verified event and materializes it (or parks it), releasing dependents; the
/// instance's other app processes hear of it when the transaction commits.
pub fn ingest(
    conn: &Conn<'_>,
    hive_id: &str,
    v: &Verified,
    received_from: Option<&str>,
    now: i64,
) -> Result<Ingested> {
    let out = append_and_apply(
        conn,
        hive_id,
        &v.event,
        &v.payload,
        received_from,
        now,
        None,
    )?;
    if out.seq.is_some() {
        crate::notify::publish(conn, hive_id, &out.changes)?;
    }
    Ok(out)
}

/// [`ingest`] without the commit notice (batches publish one notice for the batch).
///
/// With `page` (one of a page of remote events), the caller has just found (in this
/// transaction) that the log does not hold the event, so the append skips that lookup, and
/// the seq and what the materializer defers are the page's ([`Page::finish`]).
fn append_and_apply(
    conn: &Conn<'_>,
    hive_id: &str,
    ev: &Event,
    payload: &Payload,
    received_from: Option<&str>,
    now: i64,
    page: Option<&Page>,
) -> Result<Ingested> {
    let seq = match page {
        Some(page) => {
            Some(
                page.seqs
                    .borrow_mut()
                    .append_new(conn, hive_id, ev, received_from, now)?,
            )
        }
        None => log::append(conn, hive_id, ev, received_from, now)?,
    };
    let batch = page.map(|p| &p.batch);
    let Some(seq) = seq else {
        return Ok(Ingested::default());
    };
    let mut changes = Vec::new();
    let mut queue = VecDeque::from([(ev.clone(), payload.clone())]);
    while let Some((ev, p)) = queue.pop_front() {
        match materialize::apply_in(conn, hive_id, &ev, &p, batch)? {
            Outcome::Applied {
                changes: c,
                provides,
            } => {
                changes.extend(c);
                for dep in provides {
                    queue.extend(take_pending(conn, &dep)?);
                }
            }
            Outcome::Waiting { depends_on } => {
                tracing::debug!(event = %ev.id, %depends_on, "event waits for its dependency");
                conn.prepare_cached(
                    "INSERT INTO pending_events (depends_on, event_id, hive_id, received_at)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )?
                .execute(params![depends_on, ev.id, hive_id, now])?;
            }
            Outcome::Ignored { reason } => {
                tracing::info!(event = %ev.id, reason, "event logged without effect");
                counter_add(conn, IGNORED, 1)?;
            }
        }
    }
    Ok(Ingested {
        seq: Some(seq),
        changes,
    })
}

/// What a page of remote events (one `ingest_remote_checked`, one transaction) defers to its
/// end: the log's head and what the materializer merges ([`materialize::Batch`]).
#[derive(Default)]
struct Page {
    seqs: RefCell<log::SeqRun>,
    batch: RefCell<Batch>,
}

impl Page {
    /// Writes what the page deferred; returns the changes that makes.
    fn finish(self, conn: &Conn<'_>, hive_id: &str) -> Result<Vec<Change>> {
        self.seqs.into_inner().finish(conn, hive_id)?;
        self.batch.into_inner().flush(conn)
    }
}

/// Removes and returns the logged events that waited for `dep`.
fn take_pending(conn: &Conn<'_>, dep: &str) -> Result<Vec<(Event, Payload)>> {
    // Read, then delete only if something waited: almost nothing waits, and a `DELETE …
    // RETURNING` gathers its rows in a temporary table every time (~5 % of an origin's CPU
    // per post when each temporary table also allocated a page-cache block).
    let ids: Vec<String> = conn
        .prepare_cached("SELECT event_id FROM pending_events WHERE depends_on = ?1")?
        .query_map([dep], |r| r.get(0))?
        .collect::<DbResult<_>>()?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    conn.prepare_cached("DELETE FROM pending_events WHERE depends_on = ?1")?
        .execute([dep])?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some((_, logged)) = log::get(conn, &id)? {
            // Logged events were checked on the way in: one that no longer parses is a
            // corrupted row, reported (skipping it would silently lose its dependents).
            let p = Payload::parse_and_check(&logged.event).map_err(|e| {
                crate::StoreError::Corrupt(format!("logged event {id} no longer parses: {e}"))
            })?;
            out.push((logged.event, p));
        }
    }
    // Deterministic release order (the result does not depend on it, the logs read nicer).
    out.sort_by(|a, b| (a.0.origin_ts, &a.0.id).cmp(&(b.0.origin_ts, &b.0.id)));
    Ok(out)
}

/// What happened to a batch of events from a peer.
#[derive(Debug, Default)]
pub struct BatchReport {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub waiting_for_key: usize,
    /// Of `rejected`: events from an unknown origin refused because the waiting queue was
    /// full (for the delivering peer, or in total; see [`crate::WaitingLimits`]).
    pub waiting_refused: usize,
    /// The first few rejections, `(event id, reason)`, for the response and the logs.
    pub rejections: Vec<(String, String)>,
    pub changes: Vec<Change>,
}

impl BatchReport {
    fn reject(&mut self, id: &str, reason: String) {
        self.rejected += 1;
        if self.rejections.len() < 20 {
            self.rejections.push((id.to_string(), reason));
        }
    }
}

/// Checks signatures ahead of the write transaction (on a read connection, off the writer
/// thread, so verification runs in parallel with applying the previous batch). Returns, per
/// event of `events`, the key its signature verified with (the key of its origin's chain
/// valid at its `origin_ts`), or `None`: "not checked yet" (unknown key, bad signature), which
/// `ingest_remote_checked` decides itself. `ingest_remote_checked` trusts a `Some(key)` only
/// if the chain it reads in its transaction still assigns that key to the event (a rotation
/// committed in between may not).
pub fn preverify(conn: &Conn<'_>, events: &[Event]) -> Result<Vec<Option<PublicKey>>> {
    let mut chains: HashMap<String, Option<KeyChain>> = HashMap::new();
    let mut keys = Vec::with_capacity(events.len());
    for ev in events {
        if !chains.contains_key(&ev.origin_instance_id) {
            let c = keys::chain(conn, &ev.origin_instance_id)?;
            chains.insert(ev.origin_instance_id.clone(), c);
        }
        let chain = chains.get(&ev.origin_instance_id).and_then(Option::as_ref);
        keys.push(chain.and_then(|c| ev.check_envelope().is_ok().then(|| c.key_for(ev.origin_ts))));
    }
    // One batch for the page: the same answers as `Event::verify` one by one.
    let checked: Vec<(&Event, &PublicKey)> = events
        .iter()
        .zip(&keys)
        .filter_map(|(ev, key)| key.as_ref().map(|k| (ev, k)))
        .collect();
    let mut valid = Event::verify_each(&checked).into_iter();
    Ok(keys
        .iter()
        .map(|key| key.filter(|_| valid.next().unwrap_or(false)))
        .collect())
}

/// Verifies and ingests events received from peer `from` for the hive `hive_id`/`hive_name`.
pub fn ingest_remote(
    conn: &Conn<'_>,
    hive_id: &str,
    hive_name: &str,
    events: &[Event],
    from: &str,
    now: i64,
) -> Result<BatchReport> {
    ingest_remote_checked(conn, hive_id, hive_name, events, &[], from, now)
}

/// [`ingest_remote`], skipping the signature check of the events [`preverify`] verified
/// (aligned with `events`) with the key the origin's chain still assigns them; every other
/// check still runs.
pub fn ingest_remote_checked(
    conn: &Conn<'_>,
    hive_id: &str,
    hive_name: &str,
    events: &[Event],
    verified: &[Option<PublicKey>],
    from: &str,
    now: i64,
) -> Result<BatchReport> {
    let mut report = BatchReport::default();
    let mut key_cache: HashMap<String, Option<KeyChain>> = HashMap::new();
    // What the page's events defer to its end (seqs, agent snapshots, activity).
    let page = Page::default();
    // How many events wait for a key (delivered by `from`, in all): read at the first event
    // that would wait, then kept up to date as this batch parks more.
    let mut waiting: Option<(i64, i64)> = None;
    for (i, ev) in events.iter().enumerate() {
        if ev.hive != hive_name {
            report.reject(&ev.id, "event belongs to another hive".into());
            continue;
        }
        if log::contains(conn, &ev.id)? {
            report.duplicates += 1;
            continue;
        }
        if let Err(e) = ev.check_envelope() {
            report.reject(&ev.id, e.to_string());
            continue;
        }
        if !key_cache.contains_key(&ev.origin_instance_id) {
            let k = keys::chain(conn, &ev.origin_instance_id)?;
            key_cache.insert(ev.origin_instance_id.clone(), k);
        }
        let Some(chain) = key_cache
            .get(&ev.origin_instance_id)
            .and_then(Option::as_ref)
        else {
            let (by_peer, total) = match waiting {
                Some(w) => w,
                None => waiting_by(conn, from)?,
            };
            if let Some(reason) = queue_full(conn.context().waiting, from, by_peer, total) {
                report.reject(&ev.id, reason);
                report.waiting_refused += 1;
                waiting = Some((by_peer, total));
                continue;
            }
            let added = park_unverified(conn, hive_id, ev, from, now)? as i64;
            waiting = Some((by_peer + added, total + added));
            report.waiting_for_key += 1;
            continue;
        };
        let signature = match verified.get(i).copied().flatten() {
            Some(k) if k == chain.key_for(ev.origin_ts) => Ok(()),
            _ => chain.verify_event(ev),
        };
        let payload = match signature.and_then(|_| Payload::parse_and_check(ev)) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(event = %ev.id, origin = %ev.origin_instance_id, peer = from, error = %e, "rejected event");
                report.reject(&ev.id, e.to_string());
                continue;
            }
        };
        // `log::contains` said no above, in this transaction.
        let out = append_and_apply(conn, hive_id, ev, &payload, Some(from), now, Some(&page))?;
        if out.seq.is_some() {
            report.accepted += 1;
        } else {
            report.duplicates += 1;
        }
        report.changes.extend(out.changes);
    }
    report.changes.extend(page.finish(conn, hive_id)?);
    if report.rejected > 0 {
        counter_add(conn, REJECTED, report.rejected as i64)?;
    }
    if report.waiting_refused > 0 {
        tracing::warn!(
            peer = from,
            refused = report.waiting_refused,
            "waiting queue full; events from unknown origins refused"
        );
        counter_add(conn, WAITING_REFUSED, report.waiting_refused as i64)?;
    }
    if report.accepted > 0 {
        // One notice per batch (in chunks), not one per event.
        crate::notify::publish_batch(conn, hive_id, &report.changes)?;
    }
    Ok(report)
}

/// How many events wait for a key: delivered by `from`, and in all.
fn waiting_by(conn: &Conn<'_>, from: &str) -> Result<(i64, i64)> {
    let by_peer = conn.query_row(
        "SELECT COUNT(*) FROM unverified_events WHERE received_from = ?1",
        [from],
        |r| r.get(0),
    )?;
    let total = conn.query_row("SELECT COUNT(*) FROM unverified_events", (), |r| r.get(0))?;
    Ok((by_peer, total))
}

/// Why one more event delivered by `from` may not wait, if the queue is full.
fn queue_full(
    limits: crate::WaitingLimits,
    from: &str,
    by_peer: i64,
    total: i64,
) -> Option<String> {
    if by_peer >= limits.per_peer {
        Some(format!(
            "waiting queue full: {by_peer} events delivered by {from} already wait for their \
             origin's key (max_waiting_per_peer = {})",
            limits.per_peer
        ))
    } else if total >= limits.total {
        Some(format!(
            "waiting queue full: {total} events already wait for their origin's key \
             (max_waiting_total = {})",
            limits.total
        ))
    } else {
        None
    }
}

/// Parks an event whose origin key is unknown. Returns 1 if it was added, 0 if it was
/// already waiting.
fn park_unverified(
    conn: &Conn<'_>,
    hive_id: &str,
    ev: &Event,
    from: &str,
    now: i64,
) -> Result<usize> {
    let json = serde_json::to_string(ev).map_err(|e| crate::StoreError::Invalid(e.to_string()))?;
    let n = conn
        .prepare_cached(
            "INSERT INTO unverified_events
           (id, hive_id, origin_instance_id, event_json, received_from, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            ev.id,
            hive_id,
            ev.origin_instance_id,
            json,
            from,
            now
        ])?;
    Ok(n)
}

/// Verifies and ingests the events that waited for `instance_id`'s key (call after the key
/// was learned). Returns what they changed.
pub fn release_unverified(conn: &Conn<'_>, instance_id: &str, now: i64) -> Result<BatchReport> {
    let rows: Vec<(String, String, String, Option<String>)> = conn
        .prepare(
            "DELETE FROM unverified_events WHERE origin_instance_id = ?1
             RETURNING hive_id, event_json, id, received_from",
        )?
        .query_map([instance_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<DbResult<_>>()?;
    let mut total = BatchReport::default();
    for (hive_id, json, id, from) in rows {
        let Ok(ev) = serde_json::from_str::<Event>(&json) else {
            total.reject(&id, "unparseable parked event".into());
            continue;
        };
        let name: String =
            conn.query_row("SELECT name FROM hives WHERE id = ?1", [&hive_id], |r| {
                r.get(0)
            })?;
        let r = ingest_remote(
            conn,
            &hive_id,
            &name,
            &[ev],
            from.as_deref().unwrap_or(""),
            now,
        )?;
        total.accepted += r.accepted;
        total.duplicates += r.duplicates;
        total.rejected += r.rejected;
        total.rejections.extend(r.rejections);
        total.changes.extend(r.changes);
    }
    Ok(total)
}

/// Drops events that waited longer than [`PENDING_TTL_MS`] for a dependency or a key.
/// Returns how many were dropped; each drop is logged and counted.
pub fn expire_waiting(conn: &Conn<'_>, now: i64) -> Result<usize> {
    let cutoff = now - PENDING_TTL_MS;
    let dropped: Vec<(String, String)> = conn
        .prepare(
            "DELETE FROM pending_events WHERE received_at < ?1 RETURNING event_id, depends_on",
        )?
        .query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<DbResult<_>>()?;
    for (ev, dep) in &dropped {
        tracing::warn!(event = %ev, depends_on = %dep, "dropping event that waited over 24 h for its dependency");
    }
    let unverified: Vec<(String, String)> = conn
        .prepare(
            "DELETE FROM unverified_events WHERE received_at < ?1 RETURNING id, origin_instance_id",
        )?
        .query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<DbResult<_>>()?;
    for (ev, origin) in &unverified {
        tracing::warn!(event = %ev, %origin, "dropping event whose origin key never arrived");
    }
    let n = dropped.len() + unverified.len();
    if n > 0 {
        counter_add(conn, PENDING_DROPPED, n as i64)?;
    }
    Ok(n)
}

/// Number of events waiting for a dependency and for a key, instance-wide.
pub fn waiting_counts(conn: &Conn<'_>) -> Result<(i64, i64)> {
    let p = conn.query_row("SELECT COUNT(*) FROM pending_events", (), |r| r.get(0))?;
    let u = conn.query_row("SELECT COUNT(*) FROM unverified_events", (), |r| r.get(0))?;
    Ok((p, u))
}

/// Per hive id with waiting events: (events waiting for a dependency, events waiting for a
/// key). Two grouped queries, for metrics.
pub fn waiting_counts_by_hive(
    conn: &Conn<'_>,
) -> Result<std::collections::BTreeMap<String, (i64, i64)>> {
    let mut out = std::collections::BTreeMap::<String, (i64, i64)>::new();
    for (table, pending) in [("pending_events", true), ("unverified_events", false)] {
        let rows = conn
            .prepare_cached(&format!(
                "SELECT hive_id, COUNT(*) FROM {table} GROUP BY hive_id"
            ))?
            .query_map(params![], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<DbResult<Vec<(String, i64)>>>()?;
        for (hive, n) in rows {
            let e = out.entry(hive).or_default();
            if pending {
                e.0 = n;
            } else {
                e.1 = n;
            }
        }
    }
    Ok(out)
}

/// Number of events of the hive `hive_id` waiting for a dependency and for a key.
pub fn waiting_counts_for(conn: &Conn<'_>, hive_id: &str) -> Result<(i64, i64)> {
    let p = conn.query_row(
        "SELECT COUNT(*) FROM pending_events WHERE hive_id = ?1",
        [hive_id],
        |r| r.get(0),
    )?;
    let u = conn.query_row(
        "SELECT COUNT(*) FROM unverified_events WHERE hive_id = ?1",
        [hive_id],
        |r| r.get(0),
    )?;
    Ok((p, u))
}
