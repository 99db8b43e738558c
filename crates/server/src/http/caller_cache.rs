//! Agents by credential, remembered between requests.
//!
//! Every authenticated request resolves its agent by a point read of `agents` (by the API
//! key's hash, or the built-in local agent by id). On a busy origin that read was ~14 µs of
//! the ~240 of CPU per synced write (docs/PERFORMANCE.md), most of it starting a read
//! transaction whose page cache SQLite drops after every commit of the writer. Where the
//! engine tells which agents changed and when ([`Store::agents_version`] and
//! [`Store::agent_changed_at`], SQLite), each row is kept with the version read before it
//! and served while its agent has not changed since; elsewhere (PostgreSQL, where other
//! processes write too) nothing is kept. A vote (its author's karma) or an agent's
//! `last_seen_at` empties that agent's entries only.
//!
//! Invariants:
//! - an entry is served only while its agent's last change is not after the version read
//!   before the row: a change to an agent (rejected, deleted, admin flag, karma,
//!   `last_seen_at`) is seen by every request that starts after the change was answered;
//! - unknown credentials are never kept (guessing keys costs no memory);
//! - at most [`MAX_ENTRIES`] rows; full, it starts again empty;
//! - keys are what the database already holds (the API key's SHA-256, or the agent id),
//!   never a secret.
//!
//! [`Store::agents_version`]: openhive_store::Store::agents_version
//! [`Store::agent_changed_at`]: openhive_store::Store::agent_changed_at

use openhive_store::agents::AgentRow;
use std::collections::HashMap;
use std::sync::Mutex;

/// Rows kept at most (a few hundred bytes each).
pub const MAX_ENTRIES: usize = 4096;

/// Each kept row with the version read before it.
#[derive(Debug, Default)]
pub struct CallerCache {
    rows: Mutex<HashMap<String, (u64, AgentRow)>>,
}

impl CallerCache {
    /// The row kept for `key`, if its agent has not changed since it was read:
    /// `changed_at(id)` is the version of agent `id`'s last change (the engine's).
    pub fn get(&self, key: &str, changed_at: impl Fn(&str) -> Option<u64>) -> Option<AgentRow> {
        let mut rows = self.rows.lock().ok()?;
        let (read_at, row) = rows.get(key)?;
        if changed_at(&row.id).is_some_and(|c| c <= *read_at) {
            return Some(row.clone());
        }
        rows.remove(key);
        None
    }

    /// Keeps `row` for `key`, read after version `read_at` was current.
    pub fn put(&self, read_at: u64, key: String, row: AgentRow) {
        let Ok(mut rows) = self.rows.lock() else {
            return;
        };
        if rows.len() >= MAX_ENTRIES && !rows.contains_key(&key) {
            rows.clear();
        }
        rows.insert(key, (read_at, row));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn kept(c: &CallerCache) -> usize {
        c.rows.lock().unwrap().len()
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

    /// Agent `id-b` changed at version 5, every other one at 2.
    fn changes(id: &str) -> Option<u64> {
        Some(if id == "id-b" { 5 } else { 2 })
    }

    #[test]
    fn a_row_is_served_while_its_agent_has_not_changed_since_it_was_read() {
        let c = CallerCache::default();
        c.put(3, "ka".into(), row("a"));
        c.put(3, "kb".into(), row("b"));
        assert_eq!(c.get("ka", changes).map(|r| r.name), Some("a".into()));
        assert!(c.get("other", changes).is_none());
        assert!(
            c.get("kb", changes).is_none(),
            "b changed after: read again"
        );
        assert_eq!(kept(&c), 1, "and its row is gone");
        c.put(5, "kb".into(), row("b"));
        assert_eq!(c.get("kb", changes).map(|r| r.name), Some("b".into()));
    }

    #[test]
    fn nothing_is_served_where_the_engine_cannot_tell() {
        let c = CallerCache::default();
        c.put(3, "ka".into(), row("a"));
        assert!(c.get("ka", |_| None).is_none());
    }

    #[test]
    fn it_holds_at_most_max_entries() {
        let c = CallerCache::default();
        for i in 0..MAX_ENTRIES + 10 {
            c.put(3, format!("k{i}"), row("a"));
        }
        assert!(kept(&c) <= MAX_ENTRIES);
        assert!(c.get(&format!("k{}", MAX_ENTRIES + 9), changes).is_some());
    }
}
