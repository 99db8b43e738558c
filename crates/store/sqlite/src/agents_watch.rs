//! Which write transactions changed a row of `agents`, the table credentials resolve to.
//!
//! The writer connection's update hook marks the open transaction when any row of `agents`
//! is inserted, updated or deleted (directly or by a trigger); when the transaction ends
//! (COMMIT or ROLLBACK, [`WriterSession::ended`](openhive_store::engine::WriterSession::ended))
//! a marked one moves the version on. A cache of agents by credential keyed by the version
//! it was filled at (`openhive_server`'s caller cache) is therefore never served after a
//! change to an agent has been answered.
//!
//! Invariants: the version moves only *after* the transaction ended, so a reader that read
//! the version and then the old row cannot store that row under the new version; a rolled
//! back change moves it too (harmless: one needless refill). One process owns a SQLite file,
//! so the writer's hook sees every change to it.
//!
//! Trap: SQLite calls no update hook for a `DELETE` without `WHERE` on a table without
//! triggers (the truncate optimization). `agents` has triggers (its full-text queue), and no
//! statement here deletes every agent; a new one that does must keep a trigger or a `WHERE`.

use rusqlite::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The version and the open transaction's mark.
#[derive(Debug, Default)]
pub(crate) struct AgentsWatch {
    changed: AtomicBool,
    version: AtomicU64,
}

impl AgentsWatch {
    /// Installs the update hook on the writer connection.
    pub(crate) fn register(self: &Arc<Self>, writer: &Connection) -> rusqlite::Result<()> {
        let watch = Arc::clone(self);
        writer.update_hook(Some(
            move |_action: rusqlite::hooks::Action, _db: &str, table: &str, _rowid: i64| {
                if table == "agents" {
                    watch.changed.store(true, Ordering::Relaxed);
                }
            },
        ))
    }

    /// The writer's transaction ended: a marked one moves the version on.
    pub(crate) fn transaction_ended(&self) {
        if self.changed.swap(false, Ordering::Relaxed) {
            // Release: a reader that sees the new version sees the committed rows.
            self.version.fetch_add(1, Ordering::Release);
        }
    }

    /// The number of ended transactions that changed `agents`, since the process started.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
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

    #[test]
    fn a_transaction_that_changed_agents_moves_the_version_when_it_ends_only() {
        let (c, w) = watched();
        c.execute_batch("BEGIN; INSERT INTO agents VALUES ('a', 'x');")
            .unwrap();
        assert_eq!(w.version(), 0, "not before the transaction ends");
        c.execute_batch("COMMIT").unwrap();
        w.transaction_ended();
        assert_eq!(w.version(), 1);
        // Ending again without a change does not move it.
        w.transaction_ended();
        assert_eq!(w.version(), 1);
    }

    #[test]
    fn other_tables_leave_it_and_rollbacks_and_updates_move_it() {
        let (c, w) = watched();
        c.execute_batch("BEGIN; INSERT INTO posts VALUES ('p'); COMMIT")
            .unwrap();
        w.transaction_ended();
        assert_eq!(w.version(), 0, "posts are not agents");
        c.execute_batch("BEGIN; INSERT INTO agents VALUES ('a', 'x'); ROLLBACK")
            .unwrap();
        w.transaction_ended();
        assert_eq!(
            w.version(),
            1,
            "a rolled back change counts (one needless refill)"
        );
        c.execute_batch("INSERT INTO agents VALUES ('b', 'y'); UPDATE agents SET name = 'z'")
            .unwrap();
        w.transaction_ended();
        assert_eq!(w.version(), 2);
        c.execute_batch("DELETE FROM agents WHERE id = 'b'")
            .unwrap();
        w.transaction_ended();
        assert_eq!(w.version(), 3, "a delete counts too");
    }
}
