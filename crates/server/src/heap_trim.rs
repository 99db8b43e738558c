//! Gives the heap's free memory back to the kernel: mimalloc's settings, and a collection
//! after a burst.
//!
//! The allocator of every binary that links this crate is mimalloc, built with `override`
//! (`crates/openhive/src/main.rs`, ARCHITECTURE.md "Allocator"): it serves Rust's
//! allocations and C's `malloc` alike, so SQLite's page caches come from it too. mimalloc 3
//! gives a free page back to the kernel (`MADV_DONTNEED`) `purge_delay` after it was freed
//! (1 s by default) and only when the allocator is next entered, so a burst that ends in
//! silence (a pairing of 10,000 hives, then heartbeats every few seconds) left its free
//! pages resident. [`configure_allocator`] sets the delay to 0 ([`PURGE_DELAY_MS`]). Every
//! [`EVERY`], a task reads the process's resident anonymous memory and, after it grew by
//! [`KEEP_FREE`] or after the store's writer freed its page cache, runs a forced collection
//! ([`collect`]): it gives back the calling thread's free pages and every purge still
//! pending in the arenas (the arenas are process-wide; what other threads hold is theirs
//! to free). With no delay little is pending; the collection is for an operator who sets
//! `MIMALLOC_PURGE_DELAY`.
//!
//! Invariants:
//! - never runs on the async workers: a forced collection visits the arenas, so it runs on
//!   the blocking pool;
//! - costs nothing an idle instance would notice: one read of `/proc/self/statm` per
//!   interval, a collection only after memory grew or was freed in bulk.

use std::time::Duration;
use tokio::task::JoinHandle;

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h`, mimalloc 3: the 16th option).
const PURGE_DELAY_OPTION: libmimalloc_sys::mi_option_t = 15;

/// How long a page freed to mimalloc's arenas stays committed before it is given back
/// (milliseconds). mimalloc 3 waits 1,000 ms, and only gives pages back when the allocator
/// is next entered after that: an instance sharing 10,000 hives with 5 peers then held
/// 123-131 MB, against 86-93 MB with no delay (docs/PERFORMANCE.md, "The allocator:
/// mimalloc adopted").
pub const PURGE_DELAY_MS: std::ffi::c_long = 0;

/// Sets mimalloc's options that differ from its defaults, unless the operator set them in
/// the environment (`MIMALLOC_PURGE_DELAY`). Call it first thing in `main`.
pub fn configure_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` stores a value in mimalloc's option table (atomically);
        // the option is read at each purge, so setting it after start-up takes effect.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY_OPTION, PURGE_DELAY_MS) };
    }
}

/// How often resident memory is looked at.
pub const EVERY: Duration = Duration::from_secs(10);

/// Growth of resident memory that steady work reuses at once, without a collection.
pub const KEEP_FREE: usize = 8 << 20;

/// Starts the task.
pub fn spawn() -> JoinHandle<()> {
    tokio::spawn(async {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch = Watch::default();
        loop {
            tick.tick().await;
            let before = resident_anon_bytes();
            if !watch.grew(before, openhive_store::db::cache_releases()) {
                continue;
            }
            match tokio::task::spawn_blocking(collect).await {
                Ok(()) => {
                    let after = resident_anon_bytes();
                    tracing::debug!(before, after, "collected the heap");
                    watch.looked(after);
                }
                Err(e) => tracing::warn!(error = %e, "heap collection task"),
            }
        }
    })
}

/// Returns every free page of the allocator's arenas to the kernel now, and the calling
/// thread's free pages to the arenas first.
pub fn collect() {
    // SAFETY: `mi_collect` takes no pointers; it is safe to call from any thread at any
    // time (it collects the calling thread's heap and purges the shared arenas under their
    // own synchronization).
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// When the heap is worth a collection: after the process's resident anonymous memory grew
/// by [`KEEP_FREE`] since the last look (or since it last fell), or after the store's writer
/// freed its page cache (`openhive_store::db::cache_releases`: freed memory can stay
/// resident until a purge, so resident memory alone would not show it). Looking is a read
/// of `/proc/self/statm` (microseconds); a collection at every tick would cost an idle
/// instance with thousands of hives more than its heartbeats.
#[derive(Debug, Default)]
struct Watch {
    /// Resident anonymous bytes after the last look (or the lowest seen since).
    baseline: u64,
    /// The writer's cache releases seen at the last look.
    releases: u64,
}

impl Watch {
    /// Whether to collect now, given the resident anonymous bytes and the count of the
    /// writer's cache releases.
    fn grew(&mut self, resident: u64, releases: u64) -> bool {
        if resident < self.baseline {
            self.baseline = resident;
        }
        if releases != self.releases {
            self.releases = releases;
            return true;
        }
        resident > self.baseline.saturating_add(KEEP_FREE as u64)
    }

    /// After a collection: what is resident now is the new baseline.
    fn looked(&mut self, resident: u64) {
        self.baseline = resident;
    }
}

/// Resident anonymous memory of this process (`/proc/self/statm`: resident minus shared
/// pages), 0 if unreadable.
fn resident_anon_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let mut fields = statm
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<u64>().ok());
    match (fields.next().flatten(), fields.next().flatten()) {
        (Some(resident), Some(shared)) => resident.saturating_sub(shared).saturating_mul(4096),
        _ => 0,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A collection is due only after resident memory grew by more than `KEEP_FREE` since
    /// the last look (a fall lowers the mark) or the writer freed its cache.
    #[test]
    fn the_heap_is_collected_only_after_resident_memory_grew() {
        let keep = KEEP_FREE as u64;
        let mb = |n: u64| n << 20;
        let mut w = Watch::default();
        w.looked(mb(100));
        assert!(!w.grew(mb(100), 0), "idle: nothing grew");
        assert!(!w.grew(mb(100) + keep, 0), "what steady work reuses");
        assert!(w.grew(mb(101) + keep, 0), "a burst");
        w.looked(mb(101));
        assert!(!w.grew(mb(101), 0), "the level after a look is the mark");
        assert!(!w.grew(mb(60), 0), "memory fell");
        assert!(w.grew(mb(61) + keep, 0), "counted from the lowest level");
        w.looked(mb(61));
        assert!(w.grew(mb(61), 1), "the writer freed its cache");
        w.looked(mb(61));
        assert!(!w.grew(mb(61), 1), "that release was looked at");
        assert!(resident_anon_bytes() > 0, "/proc/self/statm is readable");
    }

    /// Rust's allocations and C's `malloc` (SQLite's) both come from mimalloc: the
    /// `override` feature is what routes C's. Without it both checks fail here, since this
    /// test binary's Rust allocator is the system's, i.e. C's `malloc`.
    #[test]
    fn rust_and_c_allocations_come_from_mimalloc() {
        let boxed = Box::new([7u8; 100]);
        // SAFETY: `mi_is_in_heap_region` only compares the address with mimalloc's regions.
        let rust_in_mimalloc =
            unsafe { libmimalloc_sys::mi_is_in_heap_region(boxed.as_ptr().cast()) };
        assert!(rust_in_mimalloc, "Rust's allocations are not mimalloc's");
        // SAFETY: a plain malloc/free pair of 100 bytes.
        unsafe {
            let p = libc::malloc(100);
            assert!(!p.is_null());
            assert!(
                libmimalloc_sys::mi_is_in_heap_region(p.cast()),
                "C's malloc is not mimalloc's"
            );
            libc::free(p);
        }
    }

    /// The option number is mimalloc 3's `mi_option_purge_delay`: its default is 1,000 ms
    /// (no other option defaults to 1,000), and `configure_allocator` sets it.
    #[test]
    fn the_purge_delay_option_is_the_one_configured() {
        // SAFETY: reads and writes of mimalloc's option table.
        unsafe {
            if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
                assert_eq!(libmimalloc_sys::mi_option_get(PURGE_DELAY_OPTION), 1000);
            }
            configure_allocator();
            if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
                assert_eq!(
                    libmimalloc_sys::mi_option_get(PURGE_DELAY_OPTION),
                    PURGE_DELAY_MS
                );
            }
        }
    }

    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Memory a burst freed is resident until mimalloc's delayed purge; a collection
    /// returns it at once.
    #[test]
    fn memory_freed_by_a_burst_is_returned_by_a_collection() {
        let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8 | 1; 4096]).collect();
        let pin = vec![1u8; 4096];
        assert!(blocks.iter().all(|b| b[0] & 1 == 1));
        let held = rss_kib();
        drop(blocks);
        collect();
        let after = rss_kib();
        assert!(
            after + 40 * 1024 < held,
            "RSS {held} KiB with the blocks, {after} KiB after freeing them and a collection"
        );
        assert_eq!(pin[0], 1);
    }
}
