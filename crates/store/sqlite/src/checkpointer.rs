//! WAL checkpoints on a thread of their own.
//!
//! SQLite's automatic checkpoint runs inside the commit that takes the WAL past its
//! threshold: that commit copies every page of the WAL into the database file and syncs
//! both, and every write queued behind it waits. Under a steady load of synced writes that
//! stall was the API's p99 and cost throughput (docs/PERFORMANCE.md, "CPU per synced write
//! → Checkpoints off the writer").
//!
//! Here the writer connection's WAL hook (which replaces the automatic checkpoint) only
//! notes how many frames the WAL holds and wakes this thread once [`CHECKPOINT_FRAMES`] were
//! added since its last checkpoint; the thread checkpoints (`PASSIVE`: it never waits for
//! the writer or readers) on its own connection while the writer goes on. SQLite restarts
//! the WAL from its start at the first write after a checkpoint that copied everything.
//! The thread starts at the first checkpoint due: an idle instance has no such thread.
//!
//! Invariants:
//! - a checkpoint never blocks the writer and never changes what is durable: commits are in
//!   the WAL before it runs, as before;
//! - if this thread falls behind (or is gone), the writer checkpoints itself once the WAL
//!   holds [`WRITER_CHECKPOINT_FRAMES`], so the WAL stays bounded as it did before;
//! - the hook's context (`Shared`) outlives the connection it is registered on: the writer
//!   holds an `Arc` of it, dropped after the connection.

use rusqlite::Connection;
use rusqlite::ffi;
use std::ffi::{c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};

/// Frames added to the WAL after which the thread checkpoints (SQLite's own default
/// threshold, 1,000 pages: ~4 MB). Trap: 4,000 copied fewer pages per write (~7-10 % less
/// CPU per synced write in the closed loop), but each checkpoint's copy and sync then held up
/// the writer's commits long enough to double the p99 of propagation at 500 posts/s
/// (docs/PERFORMANCE.md, "Transactions, not posts").
pub(crate) const CHECKPOINT_FRAMES: c_int = 1000;

/// Frames in the WAL at which the writer checkpoints itself after a commit, as SQLite's
/// automatic checkpoint did: only if the thread cannot keep up.
pub(crate) const WRITER_CHECKPOINT_FRAMES: c_int = 16 * CHECKPOINT_FRAMES;

#[derive(Default)]
struct State {
    /// Frames the WAL held at the last checkpoint of the thread (0 after a restart).
    mark: c_int,
    /// Frames the WAL holds, as the writer last reported.
    frames: c_int,
    /// A checkpoint is due.
    due: bool,
    stop: bool,
    /// The thread, once started (at the first checkpoint due: an instance that never
    /// writes 1,000 frames never starts it).
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the writer's hook and the thread share.
pub(crate) struct Shared {
    /// The database the thread opens its connection to.
    path: PathBuf,
    /// Itself, for the thread to hold (started from the hook, which only has a reference).
    me: Weak<Shared>,
    state: Mutex<State>,
    wake: Condvar,
    /// Checkpoints the thread ran (figures and tests).
    done: AtomicU64,
    /// Checkpoints the writer ran itself because the thread was behind.
    by_writer: AtomicU64,
}

impl Shared {
    /// What a writer of the database at `path` reports to.
    pub(crate) fn new(path: &Path) -> Arc<Shared> {
        Arc::new_cyclic(|me| Shared {
            path: path.to_path_buf(),
            me: me.clone(),
            state: Mutex::default(),
            wake: Condvar::new(),
            done: AtomicU64::new(0),
            by_writer: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called after each commit with the WAL's frame count; true if the writer must
    /// checkpoint itself.
    fn committed(&self, frames: c_int) -> bool {
        let mut st = self.lock();
        if frames < st.mark {
            st.mark = 0; // the WAL restarted from its start
        }
        st.frames = frames;
        if frames - st.mark >= CHECKPOINT_FRAMES && !st.due && !st.stop {
            st.due = true;
            if st.thread.is_none() {
                st.thread = self.start();
            }
            self.wake.notify_one();
        }
        frames >= WRITER_CHECKPOINT_FRAMES
    }

    /// Starts the thread (`None` if it cannot: the writer's own checkpoint past
    /// [`WRITER_CHECKPOINT_FRAMES`] then keeps the WAL bounded).
    fn start(&self) -> Option<std::thread::JoinHandle<()>> {
        let shared = self.me.upgrade()?;
        std::thread::Builder::new()
            .name("openhive-checkpoint".into())
            .spawn(move || match Connection::open(&shared.path) {
                Ok(conn) => {
                    let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
                    run(&conn, &shared);
                }
                Err(e) => tracing::warn!(error = %e, "checkpoint thread: opening the database"),
            })
            .inspect_err(|e| tracing::warn!(error = %e, "starting the checkpoint thread"))
            .ok()
    }

    /// Checkpoints run by the thread, by the writer itself, and the frames the WAL held at
    /// the last commit.
    #[cfg(test)]
    fn figures(&self) -> (u64, u64, c_int) {
        (
            self.done.load(Ordering::Relaxed),
            self.by_writer.load(Ordering::Relaxed),
            self.lock().frames,
        )
    }
}

/// The WAL hook of the writer connection (`sqlite3_wal_hook`): runs after each commit,
/// on the writer's thread, with the number of frames in the WAL.
unsafe extern "C" fn wal_hook(
    ctx: *mut c_void,
    db: *mut ffi::sqlite3,
    name: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: `ctx` is the `Shared` the writer keeps alive for as long as its connection
    // (see `register`); it is only read here.
    let shared = unsafe { &*(ctx as *const Shared) };
    if shared.committed(frames) {
        shared.by_writer.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `db` and `name` are the connection and schema SQLite passes to the hook;
        // a checkpoint from the hook is what SQLite's own automatic checkpoint does. Its
        // result is ignored as SQLite ignores it: the commit has happened either way.
        unsafe {
            ffi::sqlite3_wal_checkpoint_v2(
                db,
                name,
                ffi::SQLITE_CHECKPOINT_PASSIVE,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    }
    ffi::SQLITE_OK
}

/// Replaces `conn`'s automatic checkpoint with the hook reporting to `shared`. The caller
/// keeps `shared` alive for as long as `conn` (drops the connection first).
pub(crate) fn register(conn: &Connection, shared: &Arc<Shared>) {
    // SAFETY: `conn.handle()` is the live connection; the context pointer stays valid for
    // its lifetime (the writer owns an `Arc<Shared>` dropped after the connection), and the
    // hook neither frees it nor keeps it beyond the call.
    unsafe {
        ffi::sqlite3_wal_hook(
            conn.handle(),
            Some(wal_hook),
            Arc::as_ptr(shared) as *mut c_void,
        );
    }
}

/// Stops and joins the checkpointing thread (if it started) when dropped: the backend holds
/// it.
pub(crate) struct Checkpointer(pub(crate) Arc<Shared>);

fn run(conn: &Connection, shared: &Shared) {
    loop {
        {
            let mut st = shared.lock();
            while !st.due && !st.stop {
                st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.stop {
                return;
            }
            st.due = false;
        }
        // (busy, frames in the WAL, frames checkpointed)
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, c_int>(0)?, r.get::<_, c_int>(1)?))
        }) {
            Ok((_, frames)) => {
                shared.done.fetch_add(1, Ordering::Relaxed);
                let mut st = shared.lock();
                // Frames added while it ran count towards the next one.
                if frames >= 0 && frames <= st.frames {
                    st.mark = frames;
                }
            }
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let thread = {
            let mut st = self.0.lock();
            st.stop = true;
            st.thread.take()
        };
        self.0.wake.notify_one();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn wal_db(dir: &Path) -> Connection {
        let conn = Connection::open(dir.join("c.sqlite")).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (b BLOB)").unwrap();
        conn
    }

    /// About `pages` pages of new rows in one commit.
    fn write(conn: &Connection, pages: usize) {
        let tx = conn.unchecked_transaction().unwrap();
        for _ in 0..pages {
            tx.execute("INSERT INTO t (b) VALUES (zeroblob(4000))", [])
                .unwrap();
        }
        tx.commit().unwrap();
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Past the threshold the thread checkpoints, not the writer; the WAL then starts
    /// again from its beginning at the next commit.
    #[test]
    fn the_thread_checkpoints_and_the_wal_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let writer = wal_db(dir.path());
        let shared = Shared::new(&dir.path().join("c.sqlite"));
        register(&writer, &shared);
        let _thread = Checkpointer(shared.clone());
        write(&writer, 10);
        assert!(shared.lock().thread.is_none(), "started only when due");
        // Just past the threshold: a commit during the checkpoint would keep the WAL going.
        for _ in 0..(CHECKPOINT_FRAMES as usize).div_ceil(400) {
            write(&writer, 400);
        }
        wait_for("the thread checkpoints", || shared.figures().0 >= 1);
        write(&writer, 1);
        let (_, by_writer, frames) = shared.figures();
        assert_eq!(by_writer, 0, "the writer never checkpointed");
        assert!(frames < 100, "the WAL started over: {frames} frames");
    }

    /// Without the thread, the writer checkpoints itself once the WAL is large, and the WAL
    /// stays bounded.
    #[test]
    fn without_the_thread_the_writer_checkpoints_itself() {
        let dir = tempfile::tempdir().unwrap();
        let writer = wal_db(dir.path());
        let shared = Shared::new(&dir.path().join("c.sqlite"));
        // As if the thread could not start.
        shared.lock().stop = true;
        register(&writer, &shared);
        let per_commit = 500;
        for _ in 0..(WRITER_CHECKPOINT_FRAMES as usize / per_commit + 2) {
            write(&writer, per_commit);
        }
        let (by_thread, by_writer, frames) = shared.figures();
        assert_eq!(by_thread, 0);
        assert!(by_writer >= 1);
        assert!(frames < WRITER_CHECKPOINT_FRAMES, "{frames} frames");
    }
}
