//! Opening the database: pragmas, migrations, one writer and a pool of readers.
//!
//! Invariants:
//! - exactly one connection writes (SQLite allows one writer; we never contend for the lock);
//! - every `write` closure is atomic (its own savepoint): all of it commits or none of it
//!   does, and its caller hears back only after the commit;
//! - writes queued at the same time share one transaction and one commit (group commit);
//! - reads run on tokio's blocking pool, one hop per closure, never per statement.

use crate::error::{Result, StoreError};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Migrations, applied in order; `PRAGMA user_version` records the last applied one.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_sync_links.sql")),
    (3, include_str!("../migrations/0003_feed_indexes.sql")),
];

/// How the database is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `synchronous` pragma: `NORMAL` (default; committed data survives a process crash,
    /// the last transactions may be lost on power loss) or `FULL`.
    pub synchronous_full: bool,
    /// Size of the reader pool.
    pub readers: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            synchronous_full: false,
            readers: 8,
        }
    }
}

struct Inner {
    /// Commands for the writer thread, which owns the only writing connection.
    writer: std::sync::mpsc::Sender<Command>,
    readers: r2d2::Pool<SqliteConnectionManager>,
    path: PathBuf,
}

/// Most write closures committed together in one transaction (group commit).
const MAX_BATCH: usize = 64;

enum Command {
    Write(Box<dyn Job>),
    Checkpoint(std::sync::mpsc::Sender<Result<()>>),
}

/// A write closure with its reply channel, type-erased for the writer thread.
trait Job: Send {
    /// Runs the closure (inside its own savepoint); true if it returned `Ok`.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Marks the job failed (its savepoint could not be released).
    fn fail(&mut self, e: StoreError);
    /// Delivers the result once the transaction's fate is known: a job's `Ok` becomes the
    /// commit error if the commit failed.
    fn finish(self: Box<Self>, commit: std::result::Result<(), String>);
}

struct TypedJob<F, T, E> {
    f: Option<F>,
    out: Option<std::result::Result<T, E>>,
    reply: tokio::sync::oneshot::Sender<std::result::Result<T, E>>,
}

impl<F, T, E> Job for TypedJob<F, T, E>
where
    F: FnOnce(&Connection) -> std::result::Result<T, E> + Send,
    T: Send,
    E: From<StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
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
}

/// The writer thread: takes every queued write (up to [`MAX_BATCH`]), runs each in its own
/// savepoint inside one transaction, commits once, then answers each caller. A failing
/// closure rolls back only its own savepoint. Nobody is answered before the commit.
fn writer_loop(conn: Connection, rx: std::sync::mpsc::Receiver<Command>) {
    let mut jobs: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Write(j) => jobs.push(j),
                Command::Checkpoint(reply) => {
                    run_batch(&conn, std::mem::take(&mut jobs));
                    let r = conn
                        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                        .map_err(StoreError::from);
                    let _ = reply.send(r);
                }
            }
            if jobs.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        run_batch(&conn, std::mem::take(&mut jobs));
    }
}

fn run_batch(conn: &Connection, mut jobs: Vec<Box<dyn Job>>) {
    if jobs.is_empty() {
        return;
    }
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let msg = format!("could not begin a transaction: {e}");
        for j in jobs {
            j.finish(Err(msg.clone()));
        }
        return;
    }
    if jobs.len() == 1 {
        // Alone in its transaction: no savepoint needed (they cost a sub-journal copy of
        // every page touched); a failure rolls the whole transaction back.
        let ok = jobs.iter_mut().all(|j| j.run(conn));
        let end = if ok {
            conn.execute_batch("COMMIT").map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                tracing::error!(error = %e, "commit failed");
                format!("commit failed: {e}")
            })
        } else {
            let _ = conn.execute_batch("ROLLBACK");
            Ok(())
        };
        for j in jobs {
            j.finish(end.clone());
        }
        return;
    }
    for j in jobs.iter_mut() {
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            j.fail(e.into());
            continue;
        }
        let end = if j.run(conn) {
            conn.execute_batch("RELEASE job")
        } else {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")
        };
        if let Err(e) = end {
            j.fail(e.into());
        }
    }
    let commit = conn.execute_batch("COMMIT").map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        tracing::error!(error = %e, "commit failed");
        format!("commit failed: {e}")
    });
    for j in jobs {
        j.finish(commit.clone());
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn configure(conn: &Connection, sync_full: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        if sync_full { "FULL" } else { "NORMAL" },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -32_000)?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let supported = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if current > supported {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .and_then(|_| tx.pragma_update(None, "user_version", version))
            .map_err(|source| StoreError::Migration {
                version: *version,
                source,
            })?;
        tx.commit()?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}

impl Store {
    /// Opens (creating and migrating if needed) the database file at `path`.
    pub fn open(path: &Path, opts: &StoreOptions) -> Result<Store> {
        let mut writer = Connection::open(path)?;
        configure(&writer, opts.synchronous_full)?;
        migrate(&mut writer)?;
        let sync_full = opts.synchronous_full;
        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(move |c| {
                c.busy_timeout(std::time::Duration::from_secs(10))?;
                c.pragma_update(
                    None,
                    "synchronous",
                    if sync_full { "FULL" } else { "NORMAL" },
                )?;
                Ok(())
            });
        let readers = r2d2::Pool::builder()
            .max_size(opts.readers.max(1))
            .build(manager)?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("openhive-writer".into())
            .spawn(move || writer_loop(writer, rx))
            .map_err(|e| StoreError::Task(format!("starting the writer thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                writer: tx,
                readers,
                path: path.to_path_buf(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn submit<T, E, F>(&self, f: F) -> tokio::sync::oneshot::Receiver<std::result::Result<T, E>>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> std::result::Result<T, E> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = TypedJob {
            f: Some(f),
            out: None,
            reply,
        };
        if let Err(std::sync::mpsc::SendError(Command::Write(job))) =
            self.inner.writer.send(Command::Write(Box::new(job)))
        {
            job.finish(Err("the writer thread has stopped".into()));
        }
        rx
    }

    /// Runs `f` on the writer connection, atomically: its changes commit if it returns `Ok`
    /// and are rolled back if it returns `Err`. Concurrent writes are committed together
    /// (group commit); this returns only after the commit.
    pub async fn write<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> std::result::Result<T, E> + Send + 'static,
    {
        self.submit(f)
            .await
            .unwrap_or_else(|_| Err(E::from(StoreError::Task("writer dropped the reply".into()))))
    }

    /// [`Store::write`] for code off the async runtime (tests, benches, blocking tasks).
    pub fn write_blocking<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> std::result::Result<T, E> + Send + 'static,
    {
        self.submit(f)
            .blocking_recv()
            .unwrap_or_else(|_| Err(E::from(StoreError::Task("writer dropped the reply".into()))))
    }

    /// Runs `f` on a pooled read-only connection on the blocking pool.
    pub async fn read<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> std::result::Result<T, E> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(f))
            .await
            .map_err(|e| E::from(StoreError::Task(e.to_string())))?
    }

    /// [`Store::read`] for code already off the async runtime.
    pub fn read_blocking<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(&Connection) -> std::result::Result<T, E>,
    {
        let conn = self.inner.readers.get().map_err(StoreError::from)?;
        f(&conn)
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
pub fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT value FROM instance_meta WHERE key = ?1",
            [key],
            |r| r.get(0),
        )
        .optional()?)
}

/// Writes a value of the `instance_meta` table.
pub fn meta_set(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO instance_meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

/// Adds `delta` to a persistent counter.
pub fn counter_add(conn: &Connection, name: &str, delta: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO counters(name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        rusqlite::params![name, delta],
    )?;
    Ok(())
}

/// Reads a persistent counter (0 if never written).
pub fn counter_get(conn: &Connection, name: &str) -> Result<i64> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_migrates_and_reopens() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Task(e.to_string()))?;
        let path = dir.path().join("db.sqlite");
        {
            let store = Store::open(&path, &StoreOptions::default())?;
            store.write_blocking(|tx| meta_set(tx, "k", "v"))?;
        }
        let store = Store::open(&path, &StoreOptions::default())?;
        let v = store.read_blocking(|c| meta_get(c, "k"))?;
        assert_eq!(v.as_deref(), Some("v"));
        Ok(())
    }

    #[test]
    fn a_failed_closure_rolls_back() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Task(e.to_string()))?;
        let store = Store::open(&dir.path().join("db.sqlite"), &StoreOptions::default())?;
        let r: Result<()> = store.write_blocking(|tx| {
            meta_set(tx, "a", "1")?;
            Err(StoreError::Invalid("boom".into()))
        });
        assert!(r.is_err());
        assert_eq!(store.read_blocking(|c| meta_get(c, "a"))?, None);
        Ok(())
    }

    #[test]
    fn concurrent_writes_commit_together_but_fail_alone() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Task(e.to_string()))?;
        let store = Store::open(&dir.path().join("db.sqlite"), &StoreOptions::default())?;
        let handles: Vec<_> = (0..200)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store.write_blocking(move |tx| {
                        meta_set(tx, &format!("k{i}"), "v")?;
                        if i % 2 == 1 {
                            return Err(StoreError::Invalid("odd".into()));
                        }
                        if i == 100 {
                            panic!("a panicking closure only loses its own write");
                        }
                        Ok(i)
                    })
                })
            })
            .collect();
        let mut ok = 0;
        for h in handles {
            if h.join()
                .map_err(|_| StoreError::Task("join".into()))?
                .is_ok()
            {
                ok += 1;
            }
        }
        assert_eq!(ok, 99);
        for i in 0..200 {
            let k = format!("k{i}");
            let v = store.read_blocking(move |c| meta_get(c, &k))?;
            assert_eq!(v.is_some(), i % 2 == 0 && i != 100, "k{i}");
        }
        Ok(())
    }
}
