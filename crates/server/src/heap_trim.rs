//! Gives the heap's free memory back to the kernel after a burst, and keeps the heap from
//! spreading over many arenas (glibc targets).
//!
//! glibc's `malloc` keeps what a burst freed: a thread's arena shrinks only from its top,
//! and large blocks raise the threshold under which freed memory is kept. After pairing
//! 10,000 hives an instance held ~100 MB of free heap that no later work reused (RSS 167 MB,
//! 65 MB after one `malloc_trim(0)`; docs/PERFORMANCE.md, "Many hives per link"). Every
//! [`EVERY`], this task reads how much free memory the arenas hold (`mallinfo2`, a walk of
//! the arenas' bins) and, past [`KEEP_FREE`], calls `malloc_trim(0)`, which returns every
//! free whole page of every arena (`MADV_DONTNEED`), not only the tops.
//!
//! [`limit_arenas`] (called by the binary's `main`) caps the arenas at one per core.
//!
//! Invariants:
//! - never runs on the async workers: both calls take the arenas' locks and walk them, so
//!   they run on the blocking pool;
//! - costs nothing an idle instance would notice: one `mallinfo2` per interval, a trim only
//!   after memory was freed in bulk;
//! - a no-op on targets without glibc (other allocators return memory on their own terms).

use std::time::Duration;
use tokio::task::JoinHandle;

/// Caps glibc's malloc arenas at one per core (glibc's default is eight per core), unless
/// `MALLOC_ARENA_MAX` is set (the operator's choice wins). Call it first thing in `main`,
/// before any thread starts. Every thread that allocates while the others hold their
/// arenas gets an arena of its own, and a burst leaves each one with free pages that are
/// only partly empty (beyond what [`spawn`]'s trim can return): with 5 peers sharing
/// 10,000 hives, RSS after the pairings was 119 MB with the default, 86 MB with 2 arenas.
/// Returns the cap set, if any.
pub fn limit_arenas() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            return None;
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let cap = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: `mallopt` changes an allocator parameter; called before other threads
        // exist, and M_ARENA_MAX only bounds how many arenas later threads may create.
        let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, cap) };
        (ok == 1).then_some(cores)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// How often the free heap is looked at.
pub const EVERY: Duration = Duration::from_secs(10);

/// Free heap kept without trimming: what steady work reuses at once.
pub const KEEP_FREE: usize = 8 << 20;

/// Starts the task (none where the allocator is not glibc's).
pub fn spawn() -> Option<JoinHandle<()>> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        Some(tokio::spawn(async {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut watch = Watch::default();
            loop {
                tick.tick().await;
                if !watch.grew(resident_anon_bytes(), openhive_store::db::cache_releases()) {
                    continue;
                }
                match tokio::task::spawn_blocking(|| trim_if_above(KEEP_FREE)).await {
                    Ok(Some(freed)) => tracing::debug!(free_before = freed, "trimmed the heap"),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "heap trim task"),
                }
                watch.looked(resident_anon_bytes());
            }
        }))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// When the heap is worth a look: after the process's resident anonymous memory grew by
/// [`KEEP_FREE`] since the last look (or since it last fell), or after the store's writer
/// freed its page cache (`openhive_store::db::cache_releases`: freed memory stays resident
/// until a trim, so resident memory alone would not show it). `mallinfo2` walks every
/// free chunk of every arena, and the free bytes it reports still count what an earlier
/// trim gave back to the kernel, so looking every tick cost an idle instance more than all
/// its heartbeats (28 % of its samples with 5 peers and 10,000 hives) and trimmed again
/// each time; reading `/proc/self/statm` costs microseconds.
#[derive(Debug, Default)]
struct Watch {
    /// Resident anonymous bytes after the last look (or the lowest seen since).
    baseline: u64,
    /// The writer's cache releases seen at the last look.
    releases: u64,
}

impl Watch {
    /// Whether to look at the heap now, given the resident anonymous bytes and the count
    /// of the writer's cache releases.
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

    /// After a look (trimmed or not): what is resident now is the new baseline.
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

/// Free bytes the heap's arenas hold (not returned to the kernel).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn free_heap_bytes() -> usize {
    // SAFETY: `mallinfo2` only reads the allocator's own statistics under its locks and
    // returns a plain struct by value.
    let info = unsafe { libc::mallinfo2() };
    info.fordblks
}

/// Trims the heap if it holds more than `keep` free bytes; returns the free bytes it found
/// then, or `None` if it did not trim.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim_if_above(keep: usize) -> Option<usize> {
    let free = free_heap_bytes();
    if free <= keep {
        return None;
    }
    // SAFETY: `malloc_trim` is thread-safe (it takes each arena's lock) and only releases
    // pages no allocation uses.
    unsafe { libc::malloc_trim(0) };
    Some(free)
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// The heap is looked at only after resident memory grew by more than `KEEP_FREE`
    /// since the last look (a fall lowers the mark) or the writer freed its cache. Before,
    /// every tick walked the arenas.
    #[test]
    fn the_heap_is_looked_at_only_after_resident_memory_grew() {
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

    #[test]
    fn arenas_are_capped_at_one_per_core_unless_the_operator_chose() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let expected = match std::env::var_os("MALLOC_ARENA_MAX") {
            Some(_) => None,
            None => Some(cores),
        };
        // `mallopt` accepted the cap (it returns 0 for a parameter it refuses).
        assert_eq!(limit_arenas(), expected);
    }

    #[test]
    fn memory_freed_below_a_live_block_is_returned() {
        // Small blocks (below the mmap threshold: they live in the arena), then one that
        // stays: freeing the first ones leaves 80 MB free *under* a live block, which
        // `free` cannot give back (it only shrinks an arena from its top).
        let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8 | 1; 4096]).collect();
        let pin = vec![1u8; 4096];
        assert!(blocks.iter().all(|b| b[0] & 1 == 1));
        drop(blocks);
        let free = free_heap_bytes();
        assert!(
            free >= 40 << 20,
            "the freed 80 MB stay in the arena: {free}"
        );
        assert!(trim_if_above(free + 1).is_none(), "not above the threshold");
        let before = rss_kib();
        assert_eq!(trim_if_above(1 << 20), Some(free));
        let after = rss_kib();
        assert!(
            after + 40 * 1024 < before,
            "RSS {before} KiB before the trim, {after} KiB after"
        );
        assert_eq!(pin[0], 1);
    }
}
