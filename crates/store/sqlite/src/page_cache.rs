//! No first block of pages for each new page cache.
//!
//! By default SQLite gives every page cache it creates a first block of 20 pages (~86 KiB,
//! `SQLITE_DEFAULT_PCACHE_INITSZ`), allocated and threaded into a free list at once. A
//! statement that needs a temporary b-tree (the rows of a `RETURNING` clause, the keys a
//! `DELETE` collects, a sort that spills) opens one with a page cache of its own, so each
//! such statement allocated that block, touched all of it and freed it when done; the
//! allocator then gave the memory back to the kernel, and the next statement paid 20 page
//! faults again. On an origin writing posts, the `DELETE … RETURNING` of the pending-event
//! check alone was ~5 % of the CPU per post (docs/PERFORMANCE.md, "CPU per synced write").
//! Without the block, a cache allocates its pages one at a time as it fills.
//!
//! Invariant: a process-wide setting, applied with the others once before SQLite's first
//! connection (`crate::configure_process_once`); refused (SQLite's default kept) if SQLite
//! was initialized before.

/// Turns the first block off (SQLite's return code).
pub(crate) fn no_first_block() -> std::ffi::c_int {
    // SAFETY: called before any connection of this process is opened by us, with the three
    // arguments SQLITE_CONFIG_PAGECACHE takes (memory: none, line size, line count 0 = no
    // first block); if SQLite is already initialized it returns SQLITE_MISUSE and changes
    // nothing.
    unsafe {
        rusqlite::ffi::sqlite3_config(
            rusqlite::ffi::SQLITE_CONFIG_PAGECACHE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            0 as std::ffi::c_int,
            0 as std::ffi::c_int,
        )
    }
}
