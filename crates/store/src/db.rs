//! The store handle: one writer thread and a pool of readers, over either engine.
//!
//! Invariants:
//! - exactly one writer per process, and on PostgreSQL one writer at a time across every
//!   process of the instance (each write transaction holds an advisory lock), so a hive's
//!   seq is assigned by one writer at a time on both engines;
//! - every `write` closure is atomic: all of it commits or none of it does, and its caller
//!   hears back only after the commit. The first closure of a transaction needs nothing
//!   more (a failure rolls the transaction back before any other ran); each later one runs
//!   in its own savepoint, which costs a sub-journal copy of every page it first touches;
//! - a bulk write ([`Store::write_bulk_if`], a batched sync step touching thousands of pages)
//!   always runs first in its transaction, so it never pays that copy;
//! - writes queued at the same time share one transaction and one commit (group commit);
//! - the write queue is bounded: [`Store::write`] waits for room, [`Store::try_write`]
//!   (API writes) fails fast with [`StoreError::Overloaded`] instead of queueing more;
//! - reads run on tokio's blocking pool, one hop per closure, never per statement.

use crate::context::StoreContext;
use crate::engine::{Backend, Conn, Engine, WriterSession};
use crate::error::{Result, StoreError};
use crate::params;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How the database is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// SQLite `synchronous` pragma: `NORMAL` (default; committed data survives a process
    /// crash, the last transactions may be lost on power loss) or `FULL`.
    pub synchronous_full: bool,
    /// Size of the reader pool.
    pub readers: u32,
    /// Most write closures waiting for the writer; beyond it [`Store::try_write`] refuses.
    pub write_queue: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            synchronous_full: false,
            readers: 8,
            write_queue: 4096,
        }
    }
}

struct Inner {
    /// Commands for the writer thread, which owns the only writing connection.
    writer: std::sync::mpsc::Sender<Command>,
    /// Room in the write queue (one permit per queued write).
    room: Arc<tokio::sync::Semaphore>,
    capacity: usize,
    refused: AtomicU64,
    /// What the writer committed, since start.
    committed: Arc<Committed>,
    /// Async writes wait for the writer on a blocking-pool thread ([`Store::hold_paused_clock`]).
    wait_on_blocking_pool: AtomicBool,
    /// One permit per pooled reader: an async read waits here, not on a blocking thread, so
    /// the blocking threads reads use stay bounded by the pool whatever the concurrency.
    reads: Arc<tokio::sync::Semaphore>,
    backend: Arc<dyn Backend>,
    /// Settings and secrets the connections carry (see [`crate::context`]); shared with the
    /// writer thread, which takes the current one per transaction.
    ctx: SharedContext,
}

/// Transactions the writer committed and the jobs they held (group commit: a transaction
/// holds every job queued when it began, up to `MAX_BATCH`), and how long each took.
#[derive(Debug, Default)]
struct Committed {
    transactions: AtomicU64,
    jobs: AtomicU64,
    /// Committed transactions by duration, one count per bucket of
    /// [`TRANSACTION_SECONDS_BUCKETS`] and a last one for longer ones.
    by_duration: [AtomicU64; TRANSACTION_SECONDS_BUCKETS.len() + 1],
    /// Their summed duration, in microseconds.
    micros: AtomicU64,
}

/// Upper bounds, in seconds, of the buckets the writer counts its committed transactions
/// in by duration (from its `BEGIN` to the end of its `COMMIT`). A synced post's
/// transaction takes 0.1-1 ms of work; longer ones waited for the CPU or for the disk
/// (`GET /metrics`, `openhive_store_write_transaction_seconds`; docs/PERFORMANCE.md).
pub const TRANSACTION_SECONDS_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

impl Committed {
    fn record(&self, jobs: usize, took: std::time::Duration) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.jobs.fetch_add(jobs as u64, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let bucket = TRANSACTION_SECONDS_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(TRANSACTION_SECONDS_BUCKETS.len());
        self.by_duration[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::Relaxed);
    }
}

type SharedContext = Arc<std::sync::RwLock<Arc<StoreContext>>>;

fn current(ctx: &SharedContext) -> Arc<StoreContext> {
    ctx.read()
        .map_or_else(|e| e.into_inner().clone(), |g| g.clone())
}

/// Most write closures committed together in one transaction (group commit).
const MAX_BATCH: usize = 64;

/// A pause in the writes this long lets the writer free its cache
/// ([`WriterSession::release_memory`]), at most once per [`RELEASE_EVERY`] and only if it
/// wrote since: an instance that synced a burst does not keep the burst's pages (up to the
/// 8 MiB of SQLite's cache on that engine) while it idles between heartbeats. The next
/// write reads what it needs again from the OS (a full cache is a few ms of reads).
pub const RELEASE_GAP: std::time::Duration = std::time::Duration::from_secs(2);

/// See [`RELEASE_GAP`].
pub const RELEASE_EVERY: std::time::Duration = std::time::Duration::from_secs(20);

/// A cache release freeing less than this does not count in [`CACHE_RELEASES`]: with 5
/// peers and 10,000 hives, the trim's look after every release of an idle instance's few
/// heartbeat pages was a fifth of its idle CPU.
pub const RELEASE_WORTH_A_TRIM: usize = 1 << 20;

/// How many times a writer of this process freed its cache (of at least
/// [`RELEASE_WORTH_A_TRIM`]): freed memory stays resident until the allocator gives it
/// back, so the server's heap trim looks when this moves.
static CACHE_RELEASES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// See [`CACHE_RELEASES`].
pub fn cache_releases() -> u64 {
    CACHE_RELEASES.load(std::sync::atomic::Ordering::Relaxed)
}

enum Command {
    Write(Box<dyn Job>),
    Checkpoint(std::sync::mpsc::Sender<Result<()>>),
}

/// A write closure with its reply channel, type-erased for the writer thread.
trait Job: Send {
    /// Runs the closure; true if it returned `Ok`.
    fn run(&mut self, conn: &Conn<'_>) -> bool;
    /// Marks the job failed (its savepoint could not be released).
    fn fail(&mut self, e: StoreError);
    /// Delivers the result once the transaction's fate is known: a job's `Ok` becomes the
    /// commit error if the commit failed.
    fn finish(self: Box<Self>, commit: std::result::Result<(), String>);
    /// Whether the job must run first in its transaction ([`Store::write_bulk_if`]).
    fn bulk(&self) -> bool;
}

struct TypedJob<F, T, E> {
    f: Option<F>,
    out: Option<std::result::Result<T, E>>,
    reply: tokio::sync::oneshot::Sender<std::result::Result<T, E>>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    bulk: bool,
}

impl<F, T, E> Job for TypedJob<F, T, E>
where
    F: FnOnce(&Conn<'_>) -> std::result::Result<T, E> + Send,
    T: Send,
    E: From<StoreError> + Send,
{
    fn run(&mut self, conn: &Conn<'_>) -> bool {
        let Some(f) = self.f.take() else { return false };
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)))
            .unwrap_or_else(|_| Err(E::from(StoreError::Task("write closure panicked".into()))));
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn fail(&mut self, e: StoreError) {
        self.out = Some(Err(E::from(e)));
    }

    fn finish(self: Box<Self>, commit: std::result::Result<(), String>) {
        let out = match (self.out, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (Some(Ok(_)), Err(msg)) | (None, Err(msg)) => Err(E::from(StoreError::Task(msg))),
            (None, Ok(())) => Err(E::from(StoreError::Task("write was not run".into()))),
        };
        // The caller may have gone away (request cancelled); its write stands anyway.
        let _ = self.reply.send(out);
    }

    fn bulk(&self) -> bool {
        self.bulk
    }
}

/// The writer thread: takes every queued write (up to [`MAX_BATCH`]), runs them in one
/// transaction ([`run_batch`]), commits once, then answers each caller. A failing closure
/// rolls back only its own work. Nobody is answered before the commit. A bulk job ends the
/// batch before it and starts the next one.
fn writer_loop(
    mut wc: Box<dyn WriterSession>,
    rx: std::sync::mpsc::Receiver<Command>,
    ctx: SharedContext,
    committed: &Committed,
) {
    let mut jobs: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    // Whether a write ran since the cache was last freed, and when that was.
    let (mut wrote, mut released_at) = (false, std::time::Instant::now());
    loop {
        let first = match rx.recv_timeout(RELEASE_GAP) {
            Ok(c) => c,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if wrote && released_at.elapsed() >= RELEASE_EVERY {
                    // (An idle instance's heartbeats touch a few pages: not worth the heap
                    // trim's collection.)
                    if wc.release_memory() >= RELEASE_WORTH_A_TRIM {
                        CACHE_RELEASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    (wrote, released_at) = (false, std::time::Instant::now());
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        wrote = true;
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Write(j) => {
                    if j.bulk() && !jobs.is_empty() {
                        run_batch(
                            wc.as_mut(),
                            std::mem::take(&mut jobs),
                            &current(&ctx),
                            committed,
                        );
                    }
                    jobs.push(j);
                }
                Command::Checkpoint(reply) => {
                    run_batch(
                        wc.as_mut(),
                        std::mem::take(&mut jobs),
                        &current(&ctx),
                        committed,
                    );
                    let _ = reply.send(wc.checkpoint().map_err(StoreError::from));
                }
            }
            if jobs.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        run_batch(
            wc.as_mut(),
            std::mem::take(&mut jobs),
            &current(&ctx),
            committed,
        );
    }
}

/// Runs `jobs` in one transaction and answers them. The first job runs without a savepoint:
/// nothing else ran before it, so if it fails the whole transaction is rolled back and the
/// others run in a new one. Each later job runs in a savepoint of its own.
fn run_batch(
    wc: &mut dyn WriterSession,
    jobs: Vec<Box<dyn Job>>,
    ctx: &StoreContext,
    committed: &Committed,
) {
    let mut jobs = jobs.into_iter();
    // Each round ends with a commit, or with the rollback of a failed first job.
    while let Some(mut first) = jobs.next() {
        let began = std::time::Instant::now();
        if let Err(e) = wc.begin() {
            let msg = format!("could not begin a transaction: {e}");
            tracing::error!(error = %e, "could not begin a write transaction");
            for j in std::iter::once(first).chain(jobs) {
                j.finish(Err(msg.clone()));
            }
            return;
        }
        let wc: &dyn WriterSession = wc;
        let conn = Conn::with_context(wc.session(), ctx);
        if !first.run(&conn) {
            let _ = conn.execute_batch("ROLLBACK");
            wc.ended();
            first.finish(Ok(()));
            continue;
        }
        let mut done = vec![first];
        for mut j in jobs.by_ref() {
            let end = conn.execute_batch("SAVEPOINT job").and_then(|()| {
                if j.run(&conn) {
                    conn.execute_batch("RELEASE SAVEPOINT job")
                } else {
                    conn.execute_batch("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job")
                }
            });
            if let Err(e) = end {
                j.fail(e.into());
            }
            done.push(j);
        }
        let commit = wc
            .before_commit()
            .and_then(|()| conn.execute_batch("COMMIT"))
            .map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                tracing::error!(error = %e, "commit failed");
                format!("commit failed: {e}")
            });
        wc.ended();
        if commit.is_ok() {
            committed.record(done.len(), began.elapsed());
        }
        for j in done {
            j.finish(commit.clone());
        }
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Figures of the write queue, for status endpoints.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct QueueStats {
    pub capacity: usize,
    pub depth: usize,
    /// API writes refused because the queue was full, since start.
    pub refused: u64,
    /// Write transactions committed since start.
    pub transactions: u64,
    /// Writes (jobs) those transactions held: `jobs / transactions` is the mean group commit.
    pub jobs: u64,
    /// Those transactions by duration: one count per bucket of
    /// [`TRANSACTION_SECONDS_BUCKETS`] (not cumulative), the last for longer ones.
    pub transactions_by_duration: [u64; TRANSACTION_SECONDS_BUCKETS.len() + 1],
    /// Their summed duration, in seconds.
    pub transaction_seconds: f64,
}

impl Store {
    /// Starts the writer thread over `backend` (already opened and migrated by its engine).
    pub fn new(backend: Arc<dyn Backend>, opts: &StoreOptions) -> Result<Store> {
        let writer = backend.writer()?;
        let (tx, rx) = std::sync::mpsc::channel();
        let ctx: SharedContext = Arc::default();
        let writer_ctx = ctx.clone();
        let committed = Arc::new(Committed::default());
        let writer_committed = committed.clone();
        std::thread::Builder::new()
            .name("openhive-writer".into())
            .spawn(move || writer_loop(writer, rx, writer_ctx, &writer_committed))
            .map_err(|e| StoreError::Task(format!("starting the writer thread: {e}")))?;
        let capacity = opts.write_queue.max(1);
        Ok(Store {
            inner: Arc::new(Inner {
                writer: tx,
                room: Arc::new(tokio::sync::Semaphore::new(capacity)),
                capacity,
                refused: AtomicU64::new(0),
                committed,
                wait_on_blocking_pool: AtomicBool::new(false),
                reads: Arc::new(tokio::sync::Semaphore::new(opts.readers.max(1) as usize)),
                backend,
                ctx,
            }),
        })
    }

    /// The context the store's connections carry.
    pub fn context(&self) -> Arc<StoreContext> {
        current(&self.inner.ctx)
    }

    /// Changes the context of every connection lent from now on (call at start-up, before
    /// serving: a write already queued may still see the previous one).
    pub fn configure(&self, f: impl FnOnce(&mut StoreContext)) {
        let mut next = (*self.context()).clone();
        f(&mut next);
        let mut slot = self
            .inner
            .ctx
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Arc::new(next);
    }

    /// The SQLite file, if this store is SQLite.
    pub fn path(&self) -> Option<&Path> {
        self.inner.backend.path()
    }

    pub fn engine(&self) -> Engine {
        self.inner.backend.engine()
    }

    /// The engine, for notifications and leases between app processes.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// The write queue's figures.
    pub fn queue_stats(&self) -> QueueStats {
        let free = self.inner.room.available_permits();
        QueueStats {
            capacity: self.inner.capacity,
            depth: self.inner.capacity.saturating_sub(free),
            refused: self.inner.refused.load(Ordering::Relaxed),
            transactions: self.inner.committed.transactions.load(Ordering::Relaxed),
            jobs: self.inner.committed.jobs.load(Ordering::Relaxed),
            transactions_by_duration: std::array::from_fn(|i| {
                self.inner.committed.by_duration[i].load(Ordering::Relaxed)
            }),
            transaction_seconds: self.inner.committed.micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }

    fn submit<T, E, F>(
        &self,
        f: F,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
        bulk: bool,
    ) -> tokio::sync::oneshot::Receiver<std::result::Result<T, E>>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Conn<'_>) -> std::result::Result<T, E> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = TypedJob {
            f: Some(f),
            out: None,
            reply,
            _permit: permit,
            bulk,
        };
        if let Err(std::sync::mpsc::SendError(Command::Write(job))) =
            self.inner.writer.send(Command::Write(Box::new(job)))
        {
            job.finish(Err("the writer thread has stopped".into()));
        }
        rx
    }

    /// For simulations under tokio's paused clock (`tokio::time::pause`): from now on an
    /// async write waits for the writer thread from a blocking-pool thread instead of on a
    /// channel, so that, like a read (already on the blocking pool), a write in flight holds
    /// the clock's auto-advance back (tokio does not advance a paused clock while a blocking
    /// task runs; the writer thread is not one). Costs a blocking thread per write in
    /// flight: never set in production.
    pub fn hold_paused_clock(&self) {
        self.inner
            .wait_on_blocking_pool
            .store(true, Ordering::Relaxed);
    }

    /// Waits for a submitted write's answer (see [`Store::hold_paused_clock`]).
    async fn answer<T, E>(
        &self,
        rx: tokio::sync::oneshot::Receiver<std::result::Result<T, E>>,
    ) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let dropped = || Err(E::from(StoreError::Task("writer dropped the reply".into())));
        if self.inner.wait_on_blocking_pool.load(Ordering::Relaxed) {
            return match tokio::task::spawn_blocking(move || rx.blocking_recv()).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => dropped(),
                Err(e) => Err(E::from(StoreError::Task(e.to_string()))),
            };
        }
        rx.await.unwrap_or_else(|_| dropped())
    }

    /// Runs `f` on the writer connection, atomically: its changes commit if it returns `Ok`
    /// and are rolled back if it returns `Err`. Concurrent writes are committed together
    /// (group commit); this returns only after the commit. Waits while the queue is full.
    pub async fn write<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Conn<'_>) -> std::result::Result<T, E> + Send + 'static,
    {
        self.write_bulk_if(false, f).await
    }

    /// [`Store::write`] for a job that may touch many pages (`bulk`: a batched sync step of
    /// many hives). A bulk job runs first in a transaction of its own making, where it needs
    /// no savepoint, so SQLite does not copy every page it touches into a sub-journal (which
    /// it spills to a temporary file past 128 KiB: `openhive_store_sqlite::journal`). Jobs
    /// queued after it may join its transaction, each in its savepoint. A small job gains
    /// nothing from it and would end its group commit early: pass `false`.
    pub async fn write_bulk_if<T, E, F>(&self, bulk: bool, f: F) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Conn<'_>) -> std::result::Result<T, E> + Send + 'static,
    {
        let permit = self
            .inner
            .room
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| E::from(StoreError::Task("the write queue is closed".into())))?;
        self.answer(self.submit(f, Some(permit), bulk)).await
    }

    /// [`Store::write`] that refuses with [`StoreError::Overloaded`] when the queue is full,
    /// instead of waiting: API writes use it, so a burst meets `503`, not unbounded memory.
    pub async fn try_write<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Conn<'_>) -> std::result::Result<T, E> + Send + 'static,
    {
        let Ok(permit) = self.inner.room.clone().try_acquire_owned() else {
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
            return Err(E::from(StoreError::Overloaded));
        };
        self.answer(self.submit(f, Some(permit), false)).await
    }

    /// [`Store::write`] for code off the async runtime (tests, benches, blocking tasks).
    pub fn write_blocking<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Conn<'_>) -> std::result::Result<T, E> + Send + 'static,
    {
        self.submit(f, None, false)
            .blocking_recv()
            .unwrap_or_else(|_| Err(E::from(StoreError::Task("writer dropped the reply".into()))))
    }

    /// [`Store::read`] for a full-text search: first has the writer apply the index writes
    /// still queued (SQLite applies its queue in batches, `search::index_pending`), so the
    /// search sees every write committed before it was asked for.
    pub async fn read_search<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Conn<'_>) -> std::result::Result<T, E> + Send + 'static,
    {
        if self.engine() == Engine::Sqlite
            && self
                .read(crate::search::index_pending)
                .await
                .map_err(E::from)?
        {
            self.write(crate::search::request_index_flush)
                .await
                .map_err(E::from)?;
        }
        self.read(f).await
    }

    /// [`Store::read_search`] for code off the async runtime (tests, benches).
    pub fn read_search_blocking<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Conn<'_>) -> std::result::Result<T, E> + Send + 'static,
    {
        if self.engine() == Engine::Sqlite
            && self
                .read_blocking(crate::search::index_pending)
                .map_err(E::from)?
        {
            self.write_blocking(crate::search::request_index_flush)
                .map_err(E::from)?;
        }
        self.read_blocking(f)
    }

    /// Runs `f` on a pooled read-only connection on the blocking pool. At most one blocking
    /// thread per pooled reader is used: further reads wait (asynchronously) for a turn.
    pub async fn read<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Conn<'_>) -> std::result::Result<T, E> + Send + 'static,
    {
        let permit = self
            .inner
            .reads
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| E::from(StoreError::Task("the reader pool is closed".into())))?;
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            store.read_blocking(f)
        })
        .await
        .map_err(|e| E::from(StoreError::Task(e.to_string())))?
    }

    /// [`Backend::agents_version`](crate::engine::Backend::agents_version): read it before a
    /// read of `agents` to know later whether that read is still current.
    pub fn agents_version(&self) -> Option<u64> {
        self.inner.backend.agents_version()
    }

    /// [`Backend::agent_changed_at`](crate::engine::Backend::agent_changed_at): whether a
    /// row of agent `id` read after an [`Store::agents_version`] is still current.
    pub fn agent_changed_at(&self, id: &str) -> Option<u64> {
        self.inner.backend.agent_changed_at(id)
    }

    /// [`Store::read`] for a point read (a row or a few by a unique key, microseconds): on
    /// SQLite it runs on the calling thread when a pooled reader is idle, which saves the
    /// two thread hand-offs of a blocking-pool read (on a 2-core VM each wake of a parked
    /// thread costs more than the lookup). Anywhere else, and when no reader is idle, it is
    /// [`Store::read`]. Never for a scan or a page: it holds up the async worker meanwhile.
    pub async fn read_point<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Conn<'_>) -> std::result::Result<T, E> + Send + 'static,
    {
        self.read_point_if(true, f).await
    }

    /// [`Store::read_point`] if `point` (a read known to be small: one post's changes, a
    /// push of an event or two), else [`Store::read`].
    pub async fn read_point_if<T, E, F>(&self, point: bool, f: F) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Conn<'_>) -> std::result::Result<T, E> + Send + 'static,
    {
        if !point {
            return self.read(f).await;
        }
        let mut f = Some(f);
        let mut out = None;
        let ctx = self.context();
        let ran = self.inner.backend.try_read_here(&mut |s| {
            if let Some(f) = f.take() {
                out = Some(f(&Conn::with_context(s, &ctx)));
            }
        })?;
        match (ran, out, f) {
            (true, Some(out), _) => out,
            (_, _, Some(f)) => self.read(f).await,
            _ => Err(E::from(StoreError::Task("the read did not run".into()))),
        }
    }

    /// [`Store::read`] for code already off the async runtime.
    pub fn read_blocking<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(&Conn<'_>) -> std::result::Result<T, E>,
    {
        let mut f = Some(f);
        let mut out = None;
        let ctx = self.context();
        self.inner.backend.read(&mut |s| {
            if let Some(f) = f.take() {
                out = Some(f(&Conn::with_context(s, &ctx)));
            }
        })?;
        out.unwrap_or_else(|| Err(E::from(StoreError::Task("the read did not run".into()))))
    }

    /// Checkpoints the WAL (after every queued write); called on graceful shutdown.
    pub fn checkpoint(&self) -> Result<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.inner
            .writer
            .send(Command::Checkpoint(tx))
            .map_err(|_| StoreError::Task("the writer thread has stopped".into()))?;
        rx.recv()
            .map_err(|_| StoreError::Task("the writer thread has stopped".into()))?
    }
}

/// Reads a value of the `instance_meta` table.
pub fn meta_get(conn: &Conn<'_>, key: &str) -> Result<Option<String>> {
    use crate::engine::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT value FROM instance_meta WHERE key = ?1",
            params![key],
            |r| r.get(0),
        )
        .optional()?)
}

/// Writes a value of the `instance_meta` table.
pub fn meta_set(conn: &Conn<'_>, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO instance_meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Adds `delta` to a persistent counter.
pub fn counter_add(conn: &Conn<'_>, name: &str, delta: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO counters(name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = counters.value + excluded.value",
        params![name, delta],
    )?;
    Ok(())
}

/// Reads a persistent counter (0 if never written).
pub fn counter_get(conn: &Conn<'_>, name: &str) -> Result<i64> {
    use crate::engine::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT value FROM counters WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}
