//! The SQLite engine: bundled SQLite in WAL mode, opened by path.
//!
//! Traps: `synchronous = NORMAL` survives a process crash, not a power loss; the writer
//! and readers each set `busy_timeout` because a checkpoint may briefly hold the lock.
//! `GREATEST`/`LEAST` are registered here (SQLite only has two-argument `MAX`/`MIN`), so
//! the shared SQL can use PostgreSQL's names.

use super::{ColRef, DbError, DbResult, Param};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// Migrations, applied in order; `PRAGMA user_version` records the last applied one.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (2, include_str!("../../migrations/0002_sync_links.sql")),
    (3, include_str!("../../migrations/0003_feed_indexes.sql")),
];

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Int(i) => ValueRef::Integer(i),
            Param::Real(f) => ValueRef::Real(f),
            Param::Text(s) => ValueRef::Text(s.as_bytes()),
            Param::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

pub(crate) fn col<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> DbResult<ColRef<'r>> {
    Ok(match r.get_ref(i)? {
        ValueRef::Null => ColRef::Null,
        ValueRef::Integer(v) => ColRef::Int(v),
        ValueRef::Real(v) => ColRef::Real(v),
        ValueRef::Text(t) => ColRef::Text(
            std::str::from_utf8(t).map_err(|e| DbError::decode(i, format!("bad UTF-8: {e}")))?,
        ),
        ValueRef::Blob(b) => ColRef::Blob(b),
    })
}

fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    for (name, greatest) in [("greatest", true), ("least", false)] {
        conn.create_scalar_function(name, -1, flags, move |ctx| {
            // PostgreSQL semantics: NULL arguments are ignored; NULL only if all are NULL.
            let mut best: Option<rusqlite::types::Value> = None;
            for i in 0..ctx.len() {
                let v: rusqlite::types::Value = ctx.get(i)?;
                if v == rusqlite::types::Value::Null {
                    continue;
                }
                best = Some(match best {
                    None => v,
                    Some(b) => {
                        let take = match compare(&v, &b) {
                            std::cmp::Ordering::Greater => greatest,
                            std::cmp::Ordering::Less => !greatest,
                            std::cmp::Ordering::Equal => false,
                        };
                        if take { v } else { b }
                    }
                });
            }
            Ok(best.unwrap_or(rusqlite::types::Value::Null))
        })?;
    }
    Ok(())
}

fn compare(a: &rusqlite::types::Value, b: &rusqlite::types::Value) -> std::cmp::Ordering {
    use rusqlite::types::Value as V;
    match (a, b) {
        (V::Integer(x), V::Integer(y)) => x.cmp(y),
        (V::Real(x), V::Real(y)) => x.total_cmp(y),
        (V::Integer(x), V::Real(y)) => (*x as f64).total_cmp(y),
        (V::Real(x), V::Integer(y)) => x.total_cmp(&(*y as f64)),
        (V::Text(x), V::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (V::Blob(x), V::Blob(y)) => x.cmp(y),
        // SQLite's cross-type order: NULL < numbers < text < blob.
        (x, y) => rank(x).cmp(&rank(y)),
    }
}

fn rank(v: &rusqlite::types::Value) -> u8 {
    use rusqlite::types::Value as V;
    match v {
        V::Null => 0,
        V::Integer(_) | V::Real(_) => 1,
        V::Text(_) => 2,
        V::Blob(_) => 3,
    }
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
    register_functions(conn)?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), crate::StoreError> {
    use crate::StoreError;
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
                source: source.into(),
            })?;
        tx.commit()?;
        tracing::info!(version, engine = "sqlite", "applied database migration");
    }
    Ok(())
}

/// Opens (creating and migrating) the writer connection.
pub(crate) fn open_writer(path: &Path, sync_full: bool) -> Result<Connection, crate::StoreError> {
    let mut writer = Connection::open(path)?;
    configure(&writer, sync_full)?;
    migrate(&mut writer)?;
    restrict_permissions(path);
    Ok(writer)
}

/// The database holds peer tokens: keep it (and its WAL) readable by the owner only.
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut files = vec![path.to_path_buf()];
        for suffix in ["-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            files.push(p.into());
        }
        for f in files {
            if f.exists() {
                let _ = std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600));
            }
        }
    }
}

/// The pool manager of read-only connections.
pub(crate) fn reader_manager(path: &Path, sync_full: bool) -> r2d2_sqlite::SqliteConnectionManager {
    r2d2_sqlite::SqliteConnectionManager::file(path)
        .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_init(move |c| {
            c.busy_timeout(std::time::Duration::from_secs(10))?;
            c.pragma_update(
                None,
                "synchronous",
                if sync_full { "FULL" } else { "NORMAL" },
            )?;
            register_functions(c)?;
            Ok(())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greatest_and_least_follow_postgres() -> rusqlite::Result<()> {
        let c = Connection::open_in_memory()?;
        register_functions(&c)?;
        let g: i64 = c.query_row("SELECT greatest(3, 7, NULL, 5)", [], |r| r.get(0))?;
        let l: String = c.query_row("SELECT least('b', 'a', NULL)", [], |r| r.get(0))?;
        let n: Option<i64> = c.query_row("SELECT greatest(NULL, NULL)", [], |r| r.get(0))?;
        assert_eq!((g, l.as_str(), n), (7, "a", None));
        Ok(())
    }
}
