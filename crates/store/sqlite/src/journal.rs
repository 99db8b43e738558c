//! Where SQLite keeps the sub-journal of a savepoint: in memory up to
//! [`SUBJOURNAL_IN_MEMORY`], in a temporary file past it.
//!
//! The writer runs each job of a batch inside a savepoint (`openhive_store::db`), and a
//! savepoint makes SQLite copy every page a job first touches into the sub-journal, so it
//! can roll that one job back. SQLite's default keeps only 64 KiB of it in memory: one API
//! post (post row, seven feed indexes, event row, full-text queue) touches more, so every
//! batch of two or more writes created a temporary file, wrote each touched page to it with
//! `pwrite` and deleted it at the commit: ~9 % of an origin's CPU per synced post (perf,
//! `scripts/profile-synced-writes.sh`).
//!
//! Trap (why not `temp_store = MEMORY`): that keeps the journal in memory without a bound,
//! in 1 KiB chunks that SQLite walks from the first each time a statement ends inside the
//! savepoint: quadratic in a large job (a batched sync ingest of hundreds of hives). A
//! spill threshold instead gives the in-memory journal ONE chunk of the threshold's size
//! (no walk) and moves it to a file past it, where large jobs were before.
//!
//! Invariant: a process-wide setting, applied once before SQLite's first connection of the
//! process; if SQLite was initialized before (another library opened a database first), it
//! refuses and SQLite's default stays: slower, never incorrect.

use std::sync::OnceLock;

/// Bytes of a savepoint's sub-journal kept in memory (SQLite's default: 64 KiB).
pub const SUBJOURNAL_IN_MEMORY: i32 = 4 << 20;

/// Sets the threshold, once per process, before the first connection. Returns whether
/// SQLite took it.
pub fn configure_once() -> bool {
    static TAKEN: OnceLock<bool> = OnceLock::new();
    *TAKEN.get_or_init(|| {
        // SAFETY: `sqlite3_config` is called before any connection of this process is
        // opened by us, with the one `int` argument SQLITE_CONFIG_STMTJRNL_SPILL takes; if
        // SQLite is already initialized it returns SQLITE_MISUSE and changes nothing.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_STMTJRNL_SPILL,
                SUBJOURNAL_IN_MEMORY as std::ffi::c_int,
            )
        };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::debug!(
                rc,
                "SQLite already initialized: sub-journal threshold left at its default"
            );
        }
        rc == rusqlite::ffi::SQLITE_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The setting is accepted before SQLite starts, and asking again changes nothing (a
    /// second `sqlite3_config` after a connection opened would be refused).
    #[test]
    fn the_threshold_is_taken_before_the_first_connection() {
        assert!(configure_once());
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        assert!(configure_once());
        // SQLite is now initialized: a direct second call is refused, as documented.
        // SAFETY: same call as above; SQLite refuses it without side effects.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_STMTJRNL_SPILL, 1)
        };
        assert_eq!(rc, rusqlite::ffi::SQLITE_MISUSE);
        drop(conn);
    }
}
