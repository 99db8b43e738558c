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
//! process (`crate::configure_process_once`); if SQLite was initialized before (another
//! library opened a database first), it refuses and SQLite's default stays: slower, never
//! incorrect.

/// Bytes of a savepoint's sub-journal kept in memory (SQLite's default: 64 KiB): about 31
/// pages of 4 KiB with their page numbers, more than one API post touches.
///
/// Trap: never above 128 KiB − 1. The in-memory journal is one chunk of this size, and
/// when it spills SQLite writes that chunk to the file in one call, which its unix VFS
/// masks to 17 bits (`seekAndWriteFd`: `nBuf &= 0x1ffff`): a chunk of 4 MiB became a
/// 0-byte write, reported as SQLITE_FULL ("database or disk is full") for every job whose
/// sub-journal outgrew it, such as a batched pull of a few hundred hives.
pub const SUBJOURNAL_IN_MEMORY: i32 = (128 << 10) - 1;

const _: () = assert!(SUBJOURNAL_IN_MEMORY > 0 && SUBJOURNAL_IN_MEMORY <= 0x1ffff);

/// Sets the threshold (SQLite's return code). Only [`crate::configure_process_once`] calls
/// it, before the process's first connection.
pub(crate) fn set_spill_threshold() -> std::ffi::c_int {
    // SAFETY: called before any connection of this process is opened by us, with the one
    // `int` argument SQLITE_CONFIG_STMTJRNL_SPILL takes; if SQLite is already initialized
    // it returns SQLITE_MISUSE and changes nothing.
    unsafe {
        rusqlite::ffi::sqlite3_config(
            rusqlite::ffi::SQLITE_CONFIG_STMTJRNL_SPILL,
            SUBJOURNAL_IN_MEMORY as std::ffi::c_int,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::configure_process_once;

    /// A savepoint whose sub-journal outgrows the threshold spills to a file and commits.
    /// With a threshold of 4 MiB, SQLite's first write to the file was one 4 MiB chunk,
    /// which its unix VFS masks to 0 bytes (see [`SUBJOURNAL_IN_MEMORY`]): every such job
    /// failed with "database or disk is full" (a batched pull of 256 hives, for one).
    #[test]
    fn a_sub_journal_past_the_threshold_spills_to_a_file_and_commits() {
        assert!(configure_process_once());
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("db.sqlite")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);",
        )
        .unwrap();
        // ~10 MiB of committed pages, then a savepoint that rewrites every one of them: its
        // sub-journal holds each page once, more than twice the old threshold.
        conn.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
             INSERT INTO t(v) SELECT zeroblob(500) FROM n;",
        )
        .unwrap();
        conn.execute_batch(
            "BEGIN IMMEDIATE; SAVEPOINT job; UPDATE t SET v = zeroblob(501);
             RELEASE job; COMMIT;",
        )
        .unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t WHERE length(v) = 501", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 20000);
    }
}
