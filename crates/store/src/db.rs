//! Opening the database: pragmas, migrations, one writer and a pool of readers.
//!
//! Invariants:
//! - exactly one connection writes (SQLite allows one writer; we never contend for the lock);
//! - every `write` closure runs in one transaction: all of it commits or none of it does;
//! - blocking SQLite work runs on tokio's blocking pool, one hop per closure, never per
//!   statement.

use crate::error::{Result, StoreError};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, Transaction};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Migrations, applied in order; `PRAGMA user_version` records the last applied one.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_sync_links.sql")),
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
    writer: Mutex<Connection>,
    readers: r2d2::Pool<SqliteConnectionManager>,
    path: PathBuf,
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
        Ok(Store {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers,
                path: path.to_path_buf(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in one write transaction on the blocking pool. Commits if `f` returns `Ok`.
    pub async fn write<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Transaction<'_>) -> std::result::Result<T, E> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.write_blocking(f))
            .await
            .map_err(|e| E::from(StoreError::Task(e.to_string())))?
    }

    /// [`Store::write`] for code already off the async runtime (tests, benches).
    pub fn write_blocking<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(&Transaction<'_>) -> std::result::Result<T, E>,
    {
        // A poisoned lock means a closure panicked mid-transaction; the transaction was
        // rolled back when it was dropped, so the connection itself is still sound.
        let mut conn = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tx = conn.transaction().map_err(StoreError::from)?;
        let out = f(&tx)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
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

    /// Checkpoints the WAL; called on graceful shutdown.
    pub fn checkpoint(&self) -> Result<()> {
        let conn = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
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
}
