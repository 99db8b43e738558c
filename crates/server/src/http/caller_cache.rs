//! Agents by credential, remembered between requests.
//!
//! Every authenticated request resolves its agent by a point read of `agents` (by the API
//! key's hash, or the built-in local agent by id). On a busy origin that read was ~14 µs of
//! the ~240 of CPU per synced write (docs/PERFORMANCE.md), most of it starting a read
//! transaction whose page cache SQLite drops after every commit of the writer. Where the
//! engine tells when `agents` changed ([`Store::agents_version`](openhive_store::Store),
//! SQLite), the row is kept with the version it was read at and served while that version
//! is current; elsewhere (PostgreSQL, where other processes write too) nothing is kept.
//!
//! Invariants:
//! - an entry is served only while the version it was filled at is current, and the
//!   version is read *before* the row: a change to an agent (rejected, deleted, admin flag,
//!   `last_seen_at`) is seen by every request that starts after the change was answered;
//! - unknown credentials are never kept (guessing keys costs no memory);
//! - at most [`MAX_ENTRIES`] rows; full, it starts again empty;
//! - keys are what the database already holds (the API key's SHA-256, or the agent id),
//!   never a secret.

use openhive_store::agents::AgentRow;
use std::collections::HashMap;
use std::sync::Mutex;

/// Rows kept at most (a few hundred bytes each).
pub const MAX_ENTRIES: usize = 4096;

/// The rows and the version they were read at.
#[derive(Debug, Default)]
pub struct CallerCache {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    version: u64,
    rows: HashMap<String, AgentRow>,
}

impl Entries {
    /// Moves to `version` if it is newer, dropping every row read before it; whether the
    /// rows now kept are of `version`.
    fn at(&mut self, version: u64) -> bool {
        if version > self.version {
            self.version = version;
            self.rows.clear();
        }
        version == self.version
    }
}

impl CallerCache {
    /// The row kept for `key`, if it was read at `version` (the current one).
    pub fn get(&self, version: u64, key: &str) -> Option<AgentRow> {
        let mut e = self.inner.lock().ok()?;
        if !e.at(version) {
            return None;
        }
        e.rows.get(key).cloned()
    }

    /// Keeps `row` for `key`, read after `version` was current. A row read at an older
    /// version than the newest seen is not kept.
    pub fn put(&self, version: u64, key: String, row: AgentRow) {
        let Ok(mut e) = self.inner.lock() else {
            return;
        };
        if !e.at(version) {
            return;
        }
        if e.rows.len() >= MAX_ENTRIES && !e.rows.contains_key(&key) {
            e.rows.clear();
        }
        e.rows.insert(key, row);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn kept(c: &CallerCache) -> usize {
        c.inner.lock().unwrap().rows.len()
    }

    fn row(name: &str) -> AgentRow {
        AgentRow {
            id: format!("id-{name}"),
            name: name.into(),
            instance_id: "i".into(),
            is_local: true,
            description: String::new(),
            avatar_url: None,
            metadata: None,
            karma: 0,
            is_admin: false,
            verification_status: "verified".into(),
            account_type: "agent".into(),
            created_at: 0,
            updated_at: 0,
            last_seen_at: None,
        }
    }

    #[test]
    fn a_row_is_served_while_its_version_holds_only() {
        let c = CallerCache::default();
        c.put(3, "k".into(), row("a"));
        assert_eq!(c.get(3, "k").map(|r| r.name), Some("a".into()));
        assert!(c.get(3, "other").is_none());
        assert!(c.get(4, "k").is_none(), "agents changed: read again");
        assert_eq!(kept(&c), 0, "and the old rows are gone");
    }

    #[test]
    fn a_row_read_before_a_newer_version_was_seen_is_not_kept() {
        let c = CallerCache::default();
        assert!(c.get(5, "k").is_none());
        c.put(4, "k".into(), row("stale"));
        assert!(c.get(5, "k").is_none());
        assert!(c.get(4, "k").is_none());
        c.put(5, "k".into(), row("fresh"));
        assert_eq!(c.get(5, "k").map(|r| r.name), Some("fresh".into()));
    }

    #[test]
    fn it_holds_at_most_max_entries() {
        let c = CallerCache::default();
        for i in 0..MAX_ENTRIES + 10 {
            c.put(1, format!("k{i}"), row("a"));
        }
        assert!(kept(&c) <= MAX_ENTRIES);
        assert!(c.get(1, &format!("k{}", MAX_ENTRIES + 9)).is_some());
    }
}
