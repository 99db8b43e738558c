//! Progress of long pulls (a backfill, a resync, a snapshot transfer: all arrive as pulled
//! pages): per link, the peer-log seq range covered since the pull started against the
//! peer's head, the rate and an ETA. Shown in sync status ([`LinkProgress`] on each link
//! while it pulls), in the web UI's dashboard, and in the log every
//! `[sync] progress_log_secs` per pulling link.
//!
//! Invariants:
//! - in memory only, in the process running the link (with several app processes, only the
//!   one holding the link's lease knows; the others show no progress); nothing here is
//!   durable or moves a cursor: it only watches pages already committed;
//! - a link is tracked from its first page that says more follows until a page says none
//!   does (or its entry goes stale: [`STALE`]); a one-page catch-up is never tracked;
//! - units are seqs of the peer's log (`done` = cursor − cursor at start, `total` = peer
//!   head − cursor at start): events the peer skips for us (ours, or relayed by us) count
//!   as covered, as the cursor does;
//! - cheap: one small map update per page, one log line per interval per link.

use crate::engine::LinkKey;
use openhive_core::time::rfc3339;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An entry not updated for this long is dropped (its pull failed or the link went away;
/// a retried pull starts a new one).
pub const STALE: Duration = Duration::from_secs(300);

/// A link's progress as sync status shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkProgress {
    /// Peer-log seqs covered since the pull started.
    pub done: i64,
    /// Peer-log seqs to cover in all (the peer's head when last heard − cursor at start).
    pub total: i64,
    /// `done` per second since the start (events/s).
    pub rate: f64,
    /// Seconds left at `rate`; `null` until the rate is known.
    pub eta_secs: Option<i64>,
    /// RFC 3339.
    pub started_at: String,
}

/// `(done, total, rate, eta_secs)` of a pull that started at seq `start`, is at `at`, knows
/// the peer's head `head`, after `elapsed`. `total` is never below `done` (the head may be
/// learned late); the ETA rounds up and is None while nothing was done yet.
pub fn figures(start: i64, at: i64, head: i64, elapsed: Duration) -> (i64, i64, f64, Option<i64>) {
    let done = (at - start).max(0);
    let total = (head - start).max(done);
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let eta = (rate > 0.0).then(|| ((total - done) as f64 / rate).ceil() as i64);
    (done, total, rate, eta)
}

struct Entry {
    hive_name: String,
    peer_label: String,
    start: i64,
    at: i64,
    head: i64,
    started: Instant,
    started_at_ms: i64,
    updated: Instant,
    logged: Instant,
}

impl Entry {
    fn view(&self, now: Instant) -> LinkProgress {
        let (done, total, rate, eta_secs) =
            figures(self.start, self.at, self.head, now - self.started);
        LinkProgress {
            done,
            total,
            rate: (rate * 10.0).round() / 10.0,
            eta_secs,
            started_at: rfc3339(self.started_at_ms),
        }
    }
}

/// One pulled page, as [`Tracker::page`] takes it.
pub struct Page<'a> {
    pub peer_label: &'a str,
    pub hive_name: &'a str,
    /// The link's cursor before the page.
    pub since: i64,
    /// The cursor after it (committed).
    pub next: i64,
    /// The peer's head, if the page or the link row told it.
    pub head: Option<i64>,
    pub has_more: bool,
}

/// The progress of every pulling link of this process.
pub struct Tracker {
    log_every: Duration,
    links: Mutex<HashMap<LinkKey, Entry>>,
}

impl Tracker {
    pub fn new(log_every: Duration) -> Tracker {
        Tracker {
            log_every,
            links: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LinkKey, Entry>> {
        // A panic while holding this lock leaves only figures behind: keep going.
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a committed page of `key`'s pull (and logs the link's progress once per
    /// interval).
    pub fn page(&self, key: &LinkKey, p: Page<'_>) {
        let now = Instant::now();
        let mut links = self.lock();
        if !p.has_more {
            if let Some(e) = links.remove(key) {
                let v = e.view(now);
                tracing::info!(peer = %e.peer_label, hive = %e.hive_name, seq = p.next, done = (p.next - e.start).max(0), rate = v.rate, secs = (now - e.started).as_secs(), "pull finished");
            }
            return;
        }
        let head = p.head.unwrap_or(p.next).max(p.next);
        let e = links.entry(key.clone()).or_insert_with(|| Entry {
            hive_name: p.hive_name.to_string(),
            peer_label: p.peer_label.to_string(),
            start: p.since,
            at: p.since,
            head,
            started: now,
            started_at_ms: openhive_core::time::now_ms(),
            updated: now,
            logged: now,
        });
        e.at = e.at.max(p.next);
        e.head = e.head.max(head);
        e.updated = now;
        if now - e.logged >= self.log_every {
            e.logged = now;
            let v = e.view(now);
            tracing::info!(peer = %e.peer_label, hive = %e.hive_name, seq = e.at, done = v.done, total = v.total, rate = v.rate, eta_secs = v.eta_secs, "pull progress");
        }
    }

    /// The progress of `peer_id`'s link of the hive named `hive_name`, if it is pulling.
    pub fn get(&self, peer_id: &str, hive_name: &str) -> Option<LinkProgress> {
        let now = Instant::now();
        let mut links = self.lock();
        links.retain(|_, e| now - e.updated < STALE);
        links
            .iter()
            .find(|((p, _), e)| p == peer_id && e.hive_name == hive_name)
            .map(|(_, e)| e.view(now))
    }

    /// Links being tracked.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_of_a_pull() {
        // 1000 of 4000 seqs in 2 s: 500/s, 6 s left.
        let (done, total, rate, eta) = figures(100, 1100, 4100, Duration::from_secs(2));
        assert_eq!((done, total, eta), (1000, 4000, Some(6)));
        assert!((rate - 500.0).abs() < 1e-9, "{rate}");
        // The ETA rounds up.
        let (_, _, _, eta) = figures(0, 3, 10, Duration::from_secs(1));
        assert_eq!(eta, Some(3)); // 7 left at 3/s = 2.33 s
        // Nothing done yet (or no time elapsed): no rate, no ETA.
        assert_eq!(figures(5, 5, 10, Duration::from_secs(1)), (0, 5, 0.0, None));
        assert_eq!(figures(5, 6, 10, Duration::ZERO), (1, 5, 0.0, None));
        // A head learned late (below the cursor): total is never below done, ETA 0.
        let (done, total, _, eta) = figures(0, 50, 20, Duration::from_secs(1));
        assert_eq!((done, total, eta), (50, 50, Some(0)));
        // A cursor behind the start (never happens; still no negative figures).
        assert_eq!(
            figures(10, 5, 10, Duration::from_secs(1)),
            (0, 0, 0.0, None)
        );
    }

    fn page<'a>(since: i64, next: i64, head: Option<i64>, has_more: bool) -> Page<'a> {
        Page {
            peer_label: "inst_b",
            hive_name: "general",
            since,
            next,
            head,
            has_more,
        }
    }

    #[test]
    fn a_link_is_tracked_while_pages_say_more_follows() {
        let t = Tracker::new(Duration::from_secs(5));
        let key = ("peer_1".to_string(), "hive_1".to_string());
        // A one-page catch-up is never tracked.
        t.page(&key, page(0, 10, Some(10), false));
        assert!(t.is_empty());
        t.page(&key, page(10, 20, Some(110), true));
        let v = t.get("peer_1", "general").unwrap();
        assert_eq!((v.done, v.total), (10, 100));
        // The head grows (heartbeats, pages): total follows; the start stays.
        t.page(&key, page(20, 60, Some(210), true));
        let v = t.get("peer_1", "general").unwrap();
        assert_eq!((v.done, v.total), (50, 200));
        // A page without a head keeps the known one.
        t.page(&key, page(60, 70, None, true));
        assert_eq!(t.get("peer_1", "general").unwrap().total, 200);
        // Other links and hives are not this one.
        assert_eq!(t.get("peer_2", "general"), None);
        assert_eq!(t.get("peer_1", "other"), None);
        // The last page ends it.
        t.page(&key, page(70, 210, Some(210), false));
        assert_eq!(t.get("peer_1", "general"), None);
        assert!(t.is_empty());
    }
}
