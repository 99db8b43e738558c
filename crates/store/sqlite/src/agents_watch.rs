//! Which write transactions changed which rows of `agents`, the table credentials resolve to.
//!
//! The writer connection's update hook notes the rowid of every row of `agents` the open
//! transaction inserts or updates (directly or by a trigger), and that it deleted one. When
//! the transaction ends (COMMIT or ROLLBACK,
//! [`WriterSession::ended`](openhive_store::engine::WriterSession::ended)) the version moves
//! on, and each noted row's agent id is marked changed at the new version (a delete, or too
//! many rows, marks every agent). A cache of agents by credential that keeps each row with
//! the version read before it (`openhive_server`'s caller cache) serves it while its agent
//! was not marked after that version: a vote's karma update empties only its author's entry.
//!
//! Invariants:
//! - marks are written before the version moves on, and both only *after* the transaction
//!   ended: a reader that read the version and then the old row cannot keep that row under
//!   a version at or after the change's mark;
//! - a mark is never missed, only widened: ids share [`SLOTS`] slots by hash, deletes and
//!   unreadable rows mark everything, a rolled-back change marks its row (one needless
//!   refill each);
//! - one process owns a SQLite file, so the writer's hook sees every change to it.
//!
//! Traps (SQLite's update hook):
//! - it is not called for a `DELETE` without `WHERE` on a table without triggers (the
//!   truncate optimization), nor for rows deleted by `ON CONFLICT REPLACE`. `agents` has
//!   triggers (its full-text queue), and no statement here deletes every agent or replaces
//!   one; the replacing row's insert would be seen anyway (it keeps the id);
//! - it gives the rowid, not the id: the ids are read on the writer connection when the
//!   transaction ends. An `UPDATE` of `agents.id` would mark the new id only; none exists.

use rusqlite::hooks::Action;
use rusqlite::{Connection, OptionalExtension};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Slots agent ids share their marks in (by hash).
pub(crate) const SLOTS: usize = 1024;

/// Rows noted in one transaction beyond which it marks every agent instead.
const MAX_NOTED: usize = 64;

/// The version, the marks, and what the open transaction touched.
#[derive(Debug)]
pub(crate) struct AgentsWatch {
    version: AtomicU64,
    /// The version of the last change that marked every agent.
    all_at: AtomicU64,
    /// The version of the last change to an agent whose id hashes here.
    slots: Box<[AtomicU64]>,
    /// Written by the hook and taken when the transaction ends, on the writer's thread.
    open: Mutex<Touched>,
}

#[derive(Debug, Default)]
struct Touched {
    rowids: Vec<i64>,
    all: bool,
}

impl Default for AgentsWatch {
    fn default() -> Self {
        AgentsWatch {
            version: AtomicU64::new(0),
            all_at: AtomicU64::new(0),
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            open: Mutex::new(Touched::default()),
        }
    }
}

fn slot(id: &str) -> usize {
    // Fixed keys: the same id hashes alike in every call (not across builds; never stored).
    let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(id);
    (h % SLOTS as u64) as usize
}

impl AgentsWatch {
    /// Installs the update hook on the writer connection.
    pub(crate) fn register(self: &Arc<Self>, writer: &Connection) -> rusqlite::Result<()> {
        let watch = Arc::clone(self);
        writer.update_hook(Some(
            move |action: Action, _db: &str, table: &str, rowid: i64| {
                if table == "agents" {
                    watch.touched(action, rowid);
                }
            },
        ))
    }

    fn touched(&self, action: Action, rowid: i64) {
        let Ok(mut t) = self.open.lock() else {
            // Poisoned (a panic on the writer's thread): nothing is kept by rowid any more.
            self.all_at.store(u64::MAX, Ordering::Release);
            return;
        };
        if t.all {
            return;
        }
        match action {
            Action::SQLITE_INSERT | Action::SQLITE_UPDATE if t.rowids.len() < MAX_NOTED => {
                if !t.rowids.contains(&rowid) {
                    t.rowids.push(rowid);
                }
            }
            _ => {
                t.all = true;
                t.rowids.clear();
            }
        }
    }

    /// The writer's transaction ended: marks the agents it touched at a new version, then
    /// publishes that version. `writer` is the connection the hook is on.
    pub(crate) fn transaction_ended(&self, writer: &Connection) {
        let touched = match self.open.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => Touched {
                rowids: Vec::new(),
                all: true,
            },
        };
        if touched.rowids.is_empty() && !touched.all {
            return;
        }
        // Only this thread writes the version.
        let v = self.version.load(Ordering::Relaxed) + 1;
        let mut all = touched.all;
        for rowid in touched.rowids {
            let id = writer
                .prepare_cached("SELECT id FROM agents WHERE rowid = ?1")
                .and_then(|mut st| st.query_row([rowid], |r| r.get::<_, String>(0)).optional());
            match id {
                Ok(Some(id)) => self.slots[slot(&id)].store(v, Ordering::Release),
                // Gone: an insert rolled back, so nothing can have been kept for it.
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "reading a changed agent's id: marking all");
                    all = true;
                }
            }
        }
        if all {
            self.all_at.store(v, Ordering::Release);
        }
        // Release: a reader that sees the new version sees the committed rows and the marks.
        self.version.store(v, Ordering::Release);
    }

    /// The number of ended transactions that changed `agents`, since the process started.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The version of the last ended transaction that may have changed agent `id` (0: none
    /// since the process started). A row of `id` read after version `v` was current is
    /// still current while this is at most `v`.
    pub(crate) fn changed_at(&self, id: &str) -> u64 {
        let one = self.slots[slot(id)].load(Ordering::Acquire);
        one.max(self.all_at.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A database with `agents` and `posts`, and a watch on it.
    fn watched() -> (Connection, Arc<AgentsWatch>) {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE agents (id TEXT PRIMARY KEY, name TEXT);
             CREATE TABLE posts (id TEXT PRIMARY KEY);",
        )
        .unwrap();
        let w = Arc::new(AgentsWatch::default());
        w.register(&c).unwrap();
        (c, w)
    }

    /// Two ids in different slots.
    fn apart() -> (String, String) {
        let a = "agent-a".to_string();
        let b = (0..)
            .map(|i| format!("agent-b{i}"))
            .find(|b| slot(b) != slot(&a))
            .unwrap();
        (a, b)
    }

    #[test]
    fn a_transaction_that_changed_agents_moves_the_version_when_it_ends_only() {
        let (c, w) = watched();
        c.execute_batch("BEGIN; INSERT INTO agents VALUES ('a', 'x');")
            .unwrap();
        assert_eq!(w.version(), 0, "not before the transaction ends");
        assert_eq!(w.changed_at("a"), 0);
        c.execute_batch("COMMIT").unwrap();
        w.transaction_ended(&c);
        assert_eq!(w.version(), 1);
        assert_eq!(w.changed_at("a"), 1);
        // Ending again without a change does not move it.
        w.transaction_ended(&c);
        assert_eq!(w.version(), 1);
    }

    #[test]
    fn an_update_marks_its_agent_only() {
        let (c, w) = watched();
        let (a, b) = apart();
        c.execute("INSERT INTO agents VALUES (?1, 'x'), (?2, 'y')", [&a, &b])
            .unwrap();
        w.transaction_ended(&c);
        assert_eq!((w.changed_at(&a), w.changed_at(&b)), (1, 1));
        c.execute("UPDATE agents SET name = 'z' WHERE id = ?1", [&b])
            .unwrap();
        w.transaction_ended(&c);
        assert_eq!(w.version(), 2);
        assert_eq!(w.changed_at(&a), 1, "a was not touched");
        assert_eq!(w.changed_at(&b), 2);
    }

    #[test]
    fn other_tables_leave_it_and_rollbacks_and_deletes_mark() {
        let (c, w) = watched();
        let (a, b) = apart();
        c.execute_batch("BEGIN; INSERT INTO posts VALUES ('p'); COMMIT")
            .unwrap();
        w.transaction_ended(&c);
        assert_eq!(w.version(), 0, "posts are not agents");
        c.execute("INSERT INTO agents VALUES (?1, 'x'), (?2, 'y')", [&a, &b])
            .unwrap();
        w.transaction_ended(&c);
        c.execute_batch("BEGIN").unwrap();
        c.execute("UPDATE agents SET name = 'q' WHERE id = ?1", [&a])
            .unwrap();
        c.execute_batch("ROLLBACK").unwrap();
        w.transaction_ended(&c);
        assert_eq!(w.version(), 2);
        assert_eq!(
            w.changed_at(&a),
            2,
            "a rolled back change marks its row (one needless refill)"
        );
        assert_eq!(w.changed_at(&b), 1);
        c.execute("DELETE FROM agents WHERE id = ?1", [&a]).unwrap();
        w.transaction_ended(&c);
        assert_eq!(w.version(), 3);
        assert_eq!(w.changed_at(&b), 3, "a delete marks every agent");
    }

    #[test]
    fn many_rows_in_one_transaction_mark_every_agent() {
        let (c, w) = watched();
        let (a, _) = apart();
        c.execute("INSERT INTO agents VALUES (?1, 'x')", [&a])
            .unwrap();
        w.transaction_ended(&c);
        c.execute_batch("BEGIN").unwrap();
        for i in 0..=MAX_NOTED {
            c.execute("INSERT INTO agents VALUES (?1, 'n')", [format!("n{i}")])
                .unwrap();
        }
        c.execute_batch("COMMIT").unwrap();
        w.transaction_ended(&c);
        assert_eq!(w.changed_at(&a), 2);
    }
}
