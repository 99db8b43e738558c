//! The SQLite engine of the storage port: bundled SQLite in WAL mode, one file in the data
//! directory, one writer connection and an r2d2 pool of read-only connections.
//!
//! Traps: `synchronous = NORMAL` survives a process crash, not a power loss; the writer and
//! readers each set `busy_timeout` because a checkpoint may briefly hold the lock.
//! `GREATEST`/`LEAST` are registered here (SQLite only has two-argument `MAX`/`MIN`), so the
//! shared SQL can use PostgreSQL's names. rusqlite 0.40 and sqlx cannot share a build (both
//! link sqlite3): PostgreSQL goes through `postgres`/tokio-postgres.
//!
//! Invariants: one process owns the file (two `serve` on one data directory is not a
//! supported setup on SQLite); the database and its WAL are readable by the owner only.

use openhive_store::engine::{
    Backend, ColRef, DbError, DbErrorKind, DbResult, Engine, Param, RowRef, Session, WriterSession,
};
use openhive_store::{Store, StoreError, StoreOptions, schema};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod agents_watch;
mod checkpointer;
mod journal;
mod page_cache;

/// Applies the process-wide SQLite settings (`journal`, `page_cache`) once, before the
/// process's first connection. Returns whether SQLite took them all; if SQLite was started
/// before (another library opened a database first) it keeps its defaults: slower, never
/// incorrect.
pub(crate) fn configure_process_once() -> bool {
    static TAKEN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TAKEN.get_or_init(|| {
        let codes = [journal::set_spill_threshold(), page_cache::no_first_block()];
        let taken = codes.iter().all(|rc| *rc == rusqlite::ffi::SQLITE_OK);
        if !taken {
            tracing::debug!(
                ?codes,
                "SQLite already initialized: its process-wide defaults stay"
            );
        }
        taken
    })
}

/// Opens (creating and migrating if needed) the database file at `path`.
pub fn open(path: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
    let backend = SqliteBackend::open(path, opts)?;
    Store::new(Arc::new(backend), opts)
}

fn db_err(e: rusqlite::Error) -> DbError {
    let kind = match &e {
        rusqlite::Error::QueryReturnedNoRows => DbErrorKind::NoRows,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            DbErrorKind::UniqueViolation
        }
        _ => DbErrorKind::Other,
    };
    DbError::engine(kind, e)
}

fn store_err(e: rusqlite::Error) -> StoreError {
    StoreError::Db(db_err(e))
}

/// A parameter as rusqlite binds it.
struct Bind<'a>(Param<'a>);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Param::Null => ValueRef::Null,
            Param::Int(i) => ValueRef::Integer(i),
            Param::Real(f) => ValueRef::Real(f),
            Param::Text(s) => ValueRef::Text(s.as_bytes()),
            Param::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

struct SqliteRow<'a, 'b>(&'a rusqlite::Row<'b>);

impl RowRef for SqliteRow<'_, '_> {
    fn col(&self, i: usize) -> DbResult<ColRef<'_>> {
        Ok(match self.0.get_ref(i).map_err(db_err)? {
            ValueRef::Null => ColRef::Null,
            ValueRef::Integer(v) => ColRef::Int(v),
            ValueRef::Real(v) => ColRef::Real(v),
            ValueRef::Text(t) => ColRef::Text(
                std::str::from_utf8(t)
                    .map_err(|e| DbError::decode(i, format!("bad UTF-8: {e}")))?,
            ),
            ValueRef::Blob(b) => ColRef::Blob(b),
        })
    }
}

/// A connection (owned by the writer, borrowed from the pool by readers) as the port sees it.
struct SqliteSession<C>(C);

impl<C: std::borrow::Borrow<Connection>> Session for SqliteSession<C> {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn execute(&self, sql: &str, params: &[Param<'_>]) -> DbResult<usize> {
        let mut st = self.0.borrow().prepare_cached(sql).map_err(db_err)?;
        st.execute(rusqlite::params_from_iter(params.iter().map(|p| Bind(*p))))
            .map_err(db_err)
    }

    fn query(
        &self,
        sql: &str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(&dyn RowRef) -> DbResult<bool>,
    ) -> DbResult<()> {
        let mut st = self.0.borrow().prepare_cached(sql).map_err(db_err)?;
        let mut rows = st
            .query(rusqlite::params_from_iter(params.iter().map(|p| Bind(*p))))
            .map_err(db_err)?;
        while let Some(r) = rows.next().map_err(db_err)? {
            if !each(&SqliteRow(r))? {
                break;
            }
        }
        Ok(())
    }

    fn batch(&self, sql: &str) -> DbResult<()> {
        let conn = self.0.borrow();
        if CACHED_CONTROL.contains(&sql) {
            return conn
                .prepare_cached(sql)
                .and_then(|mut st| st.raw_execute())
                .map(drop)
                .map_err(db_err);
        }
        conn.execute_batch(sql).map_err(db_err)
    }
}

/// The writer connection, and what its WAL hook reports to (dropped after the connection:
/// fields drop in order).
struct SqliteWriter(
    SqliteSession<Connection>,
    #[allow(
        dead_code,
        reason = "held, never read: the hook's context lives as long"
    )]
    Arc<checkpointer::Shared>,
    /// What the update hook marks; moved on when a transaction ends.
    Arc<agents_watch::AgentsWatch>,
);

impl WriterSession for SqliteWriter {
    fn session(&self) -> &dyn Session {
        &self.0
    }

    fn begin(&mut self) -> DbResult<()> {
        self.0.batch("BEGIN IMMEDIATE")
    }

    /// Frees the writer's page cache ([`WRITER_CACHE_KIB`] once the database outgrows it); the heap
    /// trim (`openhive_server::heap_trim`) then gives the pages back to the kernel.
    fn release_memory(&mut self) -> usize {
        let held = cache_used(&self.0.0);
        if let Err(e) = self.0.0.release_memory() {
            tracing::debug!(error = %e, "releasing the writer's page cache");
            return 0;
        }
        held
    }

    fn checkpoint(&mut self) -> DbResult<()> {
        self.0.batch("PRAGMA wal_checkpoint(TRUNCATE);")
    }

    fn ended(&self) {
        self.2.transaction_ended(&self.0.0);
    }

    /// Applies the full-text index writes the triggers queued (migration 0017), once they
    /// are [`FTS_QUEUE_ROWS`] or a search asked for them
    /// (`openhive_store::search::request_index_flush` queues a row of id -1): FTS5 then
    /// writes one segment per flush, not one per savepoint, statement or transaction.
    fn before_commit(&self) -> DbResult<()> {
        let conn = &self.0.0;
        let due = conn
            .prepare_cached(FTS_QUEUE_DUE)
            .and_then(|mut st| st.query_row([FTS_QUEUE_ROWS], |r| r.get::<_, Option<bool>>(0)))
            .map_err(db_err)?;
        if due != Some(true) {
            return Ok(());
        }
        flush_fts_queue(conn).map_err(db_err)
    }
}

/// Rows the full-text queue holds before a commit applies it. Applied at every commit, the
/// queue made each transaction write a small FTS5 segment, which the next merges rewrote:
/// with 8 posts per transaction (16 API clients) that was ~15 % of the origin's CPU per
/// synced write (docs/PERFORMANCE.md, "Transactions, not posts"). A search applies what is
/// queued first (`openhive_store::Store::read_search`), so it still sees every write committed before it.
pub const FTS_QUEUE_ROWS: i64 = 256;

/// Whether the queue is due (`?1`: [`FTS_QUEUE_ROWS`]): a flush request (id -1) or enough
/// rows (ids are consecutive between two flushes). Each `min` / `max` in a subquery of its
/// own reads one end of the rowid b-tree; both in one query scan the whole queue.
const FTS_QUEUE_DUE: &str = "SELECT (SELECT min(id) FROM fts_queue) < 0
     OR (SELECT max(id) FROM fts_queue) - (SELECT min(id) FROM fts_queue) + 1 >= ?1";

/// Applies `fts_queue` to the four full-text tables, then empties it. Per row only the net
/// change is applied: the first command if it is a `delete` (the values the row was indexed
/// with before the transaction), the last if it is an insert (its values at the end); what
/// lies between cancels out. They go in rowid order, a row's `delete` before its insert.
///
/// FTS5 flushes its pending data to a new segment whenever a write's rowid is lower than
/// the one before, or equal after an insert. Applied in queue order, a transaction that
/// updated rows out of rowid order (pairing thousands of hives updates each hive's row in
/// hive id order) wrote one segment per row and merged them all again: the largest cost
/// that grew with the number of hives on the joining side.
fn flush_fts_queue(conn: &Connection) -> rusqlite::Result<()> {
    for sql in FTS_FLUSH {
        conn.prepare_cached(sql)?.execute([])?;
    }
    Ok(())
}

/// The net change of each row of one table's queue (`tbl`, with its value columns of `q`),
/// in the order FTS5 writes without flushing: by rowid, `delete` first. A row's first
/// command counts if it is a `delete`, its last if it is an insert; both are found through
/// the index `fts_queue_row` (migration 0020), whose order the rows are read in (ids grow,
/// so the `delete` comes first), with no sort of the queue and its texts.
macro_rules! fts_net {
    ($tbl:literal, $values:literal) => {
        concat!(
            "SELECT q.cmd, q.rid, ",
            $values,
            " FROM fts_queue q WHERE q.tbl = ",
            $tbl,
            " AND ((q.cmd = 'delete' AND q.id =
                     (SELECT min(id) FROM fts_queue WHERE tbl = ",
            $tbl,
            " AND rid = q.rid))
                OR (q.cmd IS NULL AND q.id =
                     (SELECT max(id) FROM fts_queue WHERE tbl = ",
            $tbl,
            " AND rid = q.rid)))
             ORDER BY q.tbl, q.rid, q.id"
        )
    };
}

const FTS_FLUSH: [&str; 7] = [
    concat!(
        "INSERT INTO posts_fts (posts_fts, rowid, title, content) ",
        fts_net!(1, "q.a, q.b")
    ),
    concat!(
        "INSERT INTO comments_fts (comments_fts, rowid, content) ",
        fts_net!(2, "q.a")
    ),
    concat!(
        "INSERT INTO agents_fts (agents_fts, rowid, name, description) ",
        fts_net!(3, "q.a, q.b")
    ),
    concat!(
        "INSERT INTO hives_fts (hives_fts, rowid, name, description) ",
        fts_net!(4, "q.a, q.b")
    ),
    // The posts whose indexed length may have changed (migrations 0018, 0019), the last
    // 1000 kept.
    "INSERT INTO posts_fts_changes (rid) SELECT rid FROM fts_queue WHERE tbl = 1 AND cmd = 'delete'",
    "DELETE FROM posts_fts_changes WHERE seq <= (SELECT max(seq) FROM posts_fts_changes) - 1000",
    "DELETE FROM fts_queue",
];

/// The SQLite engine: the file, its writer (handed out once), the reader pool and the
/// checkpointing thread.
pub struct SqliteBackend {
    path: PathBuf,
    writer: std::sync::Mutex<Option<Connection>>,
    readers: r2d2::Pool<r2d2_sqlite::SqliteConnectionManager>,
    /// What the writer's WAL hook reports to (after `writer`: dropped after it).
    checkpoints: Arc<checkpointer::Shared>,
    /// What the writer's update hook marks (after `writer`, like `checkpoints`).
    agents: Arc<agents_watch::AgentsWatch>,
    _checkpointer: checkpointer::Checkpointer,
}

impl SqliteBackend {
    /// Opens (creating and migrating) the file at `path`.
    pub fn open(path: &Path, opts: &StoreOptions) -> Result<SqliteBackend, StoreError> {
        configure_process_once();
        let writer = open_writer(path, opts.synchronous_full)?;
        let checkpoints = checkpointer::Shared::new(path);
        checkpointer::register(&writer, &checkpoints);
        let agents = Arc::new(agents_watch::AgentsWatch::default());
        agents.register(&writer).map_err(store_err)?;
        let readers = reader_pool(path, opts)?;
        Ok(SqliteBackend {
            path: path.to_path_buf(),
            writer: std::sync::Mutex::new(Some(writer)),
            readers,
            _checkpointer: checkpointer::Checkpointer(checkpoints.clone()),
            checkpoints,
            agents,
        })
    }
}

/// The pool of read-only connections.
fn reader_pool(
    path: &Path,
    opts: &StoreOptions,
) -> Result<r2d2::Pool<r2d2_sqlite::SqliteConnectionManager>, StoreError> {
    r2d2::Pool::builder()
        .max_size(opts.readers.max(1))
        // Opened on demand (each costs ~150 KiB of heap; an idle server needs one).
        .min_idle(Some(1))
        // Not tested at every checkout: r2d2_sqlite's test parses and runs `SELECT 1;` each
        // time (~2 % of an origin's CPU per synced write), and a connection to a local file
        // does not go stale; a failing read reports its own error.
        .test_on_check_out(false)
        .build(reader_manager(path, opts.synchronous_full))
        .map_err(|e| StoreError::Pool(e.to_string()))
}

impl Backend for SqliteBackend {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn writer(&self) -> Result<Box<dyn WriterSession>, StoreError> {
        let conn = self
            .writer
            .lock()
            .map_err(|_| StoreError::Task("writer lock poisoned".into()))?
            .take()
            .ok_or_else(|| StoreError::Task("the SQLite writer is already in use".into()))?;
        Ok(Box::new(SqliteWriter(
            SqliteSession(conn),
            self.checkpoints.clone(),
            self.agents.clone(),
        )))
    }

    fn read(&self, f: &mut dyn FnMut(&dyn Session)) -> Result<(), StoreError> {
        let pooled = self
            .readers
            .get()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        in_snapshot(&pooled, f);
        Ok(())
    }

    fn try_read_here(&self, f: &mut dyn FnMut(&dyn Session)) -> Result<bool, StoreError> {
        match self.readers.try_get() {
            Some(pooled) => {
                in_snapshot(&pooled, f);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn agents_version(&self) -> Option<u64> {
        Some(self.agents.version())
    }

    fn agent_changed_at(&self, id: &str) -> Option<u64> {
        Some(self.agents.changed_at(id))
    }
}

/// Runs `f` on a reader in one snapshot: its statements see the same committed state, and
/// SQLite drops a reader's page cache only when a read transaction starts after a commit of
/// the writer, so with one transaction per closure (not one per statement) the pages its
/// statements share are read from the OS once.
fn in_snapshot(conn: &Connection, f: &mut dyn FnMut(&dyn Session)) {
    let began = read_snapshot(conn, "BEGIN").is_ok();
    f(&SqliteSession(conn));
    if began && read_snapshot(conn, "COMMIT").is_err() {
        let _ = read_snapshot(conn, "ROLLBACK");
    }
}

/// Begins or ends a reader's snapshot. A connection never goes back to the pool inside a
/// transaction: a stale snapshot would hide every later commit from its next user.
fn read_snapshot(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    if sql == "BEGIN" && !conn.is_autocommit() {
        conn.prepare_cached("ROLLBACK")?.execute([])?;
    }
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
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

/// Transaction control the writer runs for every transaction and every job after the first
/// in one (`openhive_store::db::run_batch`): run from the statement cache, as the readers'
/// snapshots are ([`read_snapshot`]), not parsed again each time through `execute_batch`
/// (~9 k instructions per API post on an origin, callgrind).
const CACHED_CONTROL: [&str; 4] = [
    "BEGIN IMMEDIATE",
    "SAVEPOINT job",
    "RELEASE SAVEPOINT job",
    "COMMIT",
];

/// Prepared statements kept per connection. `rusqlite` keeps 16 by default, fewer than the
/// distinct statements one sync transaction runs per hive (ingest, the materializer, the
/// link's cursors): with 16 they evicted each other and every statement was compiled again
/// for every hive of a batch. The whole crate has a few hundred distinct statements.
const STATEMENT_CACHE: usize = 512;

/// What every connection (the writer and each reader) sets for its prepared statements.
///
/// Trap: without SQLite's query planner stability guarantee (`ENABLE_QPSG`), a statement
/// with `LIMIT ?N` (and, with STAT4 statistics, some comparisons) is planned for the value
/// bound, and SQLite marks the prepared statement expired each time that parameter is bound
/// again: every run of such a cached statement compiled it again (`sqlite3Reprepare`: the
/// token pruning of every handshake, each page served to a pulling peer, list endpoints).
/// Our statements are written for one plan whatever the values.
fn configure_statements(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
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
    // Temporary storage stays the default (a file; the sub-journal in memory up to
    // `journal::SUBJOURNAL_IN_MEMORY`): with `temp_store = MEMORY` the statement journal of
    // every write inside a writer job's savepoint is an in-memory list that SQLite walks from
    // its start each time a statement ends, so a large job (a batched sync call: hundreds of
    // hives) cost quadratic time.
    conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
    configure_statements(conn)?;
    register_functions(conn)?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(store_err)?;
    let supported = schema::latest(schema::SQLITE);
    if current > supported {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    for (version, sql) in schema::SQLITE.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction().map_err(store_err)?;
        tx.execute_batch(sql)
            .and_then(|_| tx.pragma_update(None, "user_version", version))
            .map_err(|source| StoreError::Migration {
                version: *version,
                source: db_err(source),
            })?;
        tx.commit().map_err(store_err)?;
        tracing::info!(version, engine = "sqlite", "applied database migration");
    }
    Ok(())
}

/// Opens (creating and migrating) the writer connection.
fn open_writer(path: &Path, sync_full: bool) -> Result<Connection, StoreError> {
    let mut writer = Connection::open(path).map_err(store_err)?;
    configure(&writer, sync_full).map_err(store_err)?;
    migrate(&mut writer)?;
    apply_queued_index_writes(&writer).map_err(store_err)?;
    restrict_permissions(path);
    Ok(writer)
}

/// Applies what the full-text queue still holds from before the store was closed (or
/// killed): a store opens with its index complete, as `check::consistency` expects.
fn apply_queued_index_writes(conn: &Connection) -> rusqlite::Result<()> {
    let queued: bool =
        conn.query_row("SELECT EXISTS (SELECT 1 FROM fts_queue)", [], |r| r.get(0))?;
    if queued {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        match flush_fts_queue(conn) {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(())
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

/// Page cache of the writer connection (negative: KiB, SQLite's convention).
///
/// Not large, on purpose. Trap: when a B-tree rebalance swaps two pages, SQLite parks one
/// of them at the page number of the lock byte (1 GiB / page size + 1: page 262,145 at
/// 4 KiB; `balance_nonroot`), and the cache then remembers that number as its highest key.
/// At the COMMIT it drops the pages past the end of the file, and with a highest key that
/// far away it walks its whole hash table and every cached page to do so
/// (`pcache1TruncateUnsafe`), once per write transaction that rebalanced, i.e. nearly all
/// of them. With 32 MB (~7,700 pages) that walk was 1.7 % of an origin's CPU per synced
/// write (perf). 4 MiB made the walk 0.15 % but cost the synced closed loop ~10 % (pages
/// of the full-text merges read again); 8 MiB is as fast as 32 MB there, 0-5 % faster on
/// the default mix, and halves the resident set under load (docs/PERFORMANCE.md, "The
/// writer's page cache").
const WRITER_CACHE_KIB: i64 = -8192;

/// Page cache of each reader connection (negative: KiB, SQLite's convention).
const READER_CACHE_KIB: i64 = -1024;

/// The pool manager of read-only connections.
fn reader_manager(path: &Path, sync_full: bool) -> r2d2_sqlite::SqliteConnectionManager {
    r2d2_sqlite::SqliteConnectionManager::file(path)
        .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_init(move |c| {
            c.busy_timeout(std::time::Duration::from_secs(10))?;
            configure_statements(c)?;
            // Each reader's page cache is its own (see `.cargo/config.toml`) and is dropped
            // at the first read after a commit of the writer anyway: 1 MiB each, not
            // SQLite's 2 MiB, so idle readers do not hold more than the writer's cache.
            c.pragma_update(None, "cache_size", READER_CACHE_KIB)?;
            c.pragma_update(
                None,
                "synchronous",
                if sync_full { "FULL" } else { "NORMAL" },
            )?;
            register_functions(c)?;
            Ok(())
        })
}

/// Bytes of heap the connection's page cache holds (`SQLITE_DBSTATUS_CACHE_USED`), 0 if
/// SQLite cannot tell.
fn cache_used(conn: &Connection) -> usize {
    let (mut current, mut high) = (0, 0);
    // SAFETY: the handle is this open connection's, used on its own thread; the call only
    // reads the connection's counters into the two locals.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_status(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
            &mut current,
            &mut high,
            0,
        )
    };
    if rc == rusqlite::ffi::SQLITE_OK {
        usize::try_from(current).unwrap_or(0)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_settings_are_taken_before_the_first_connection() {
        assert!(configure_process_once());
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        assert!(configure_process_once());
        // SQLite is now initialized: a direct second call is refused, as documented.
        // SAFETY: the call of `journal::set_spill_threshold`; SQLite refuses it without side
        // effects.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_STMTJRNL_SPILL, 1)
        };
        assert_eq!(rc, rusqlite::ffi::SQLITE_MISUSE);
        drop(conn);
    }

    /// A fresh store opens one reader connection, not all of them: each holds its own parse
    /// of the schema and its lookaside (~150 KiB), 1.2 MB of an idle server's heap for
    /// the 8 it opened before. More open when reads overlap, up to the configured number.
    #[test]
    fn readers_open_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            readers: 4,
            ..StoreOptions::default()
        };
        let b = SqliteBackend::open(&dir.path().join("t.sqlite"), &opts).unwrap();
        assert_eq!(b.readers.state().connections, 1);
        let held: Vec<_> = (0..3).map(|_| b.readers.get().unwrap()).collect();
        // (The pool may already be opening one more to keep one idle.)
        let n = b.readers.state().connections;
        assert!((3..=4).contains(&n), "{n}");
        drop(held);
        let all: Vec<_> = (0..4).map(|_| b.readers.get().unwrap()).collect();
        assert_eq!(b.readers.state().connections, 4);
        assert!(b.readers.try_get().is_none(), "never more than configured");
        drop(all);
        // And a checkout runs no statement (r2d2_sqlite's default test is `SELECT 1;`).
        assert!(!b.readers.test_on_check_out());
    }

    /// The schema with the full-text tables and the queue's triggers, as migrations 0001
    /// and 0017 create them.
    fn fts_schema() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(include_str!("../../migrations/sqlite/0001_init.sql"))
            .unwrap();
        for m in [
            include_str!("../../migrations/sqlite/0017_fts_queue.sql"),
            include_str!("../../migrations/sqlite/0018_post_lengths.sql"),
            include_str!("../../migrations/sqlite/0019_fts_queue_deferred.sql"),
            include_str!("../../migrations/sqlite/0020_fts_queue_by_row.sql"),
        ] {
            c.execute_batch(m).unwrap();
        }
        c
    }

    /// Checking whether the queue is due reads the ends of its rowid b-tree, never the
    /// whole queue (it runs before every commit). Fails with `min` and `max` in one query.
    #[test]
    fn the_queue_check_reads_the_ends_only() {
        let c = fts_schema();
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {FTS_QUEUE_DUE}"))
            .unwrap()
            .query_map([FTS_QUEUE_ROWS], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().all(|step| !step.starts_with("SCAN fts_queue")),
            "{plan:?}"
        );
        let due = |c: &Connection| -> Option<bool> {
            c.query_row(FTS_QUEUE_DUE, [3], |r| r.get(0)).unwrap()
        };
        assert_eq!(due(&c), None, "an empty queue");
        for rid in 1..=2 {
            c.execute("INSERT INTO fts_queue (tbl, rid) VALUES (4, ?1)", [rid])
                .unwrap();
        }
        assert_eq!(due(&c), Some(false), "2 rows of 3");
        c.execute("INSERT INTO fts_queue (tbl, rid) VALUES (4, 3)", [])
            .unwrap();
        assert_eq!(due(&c), Some(true), "3 rows of 3");
        c.execute("DELETE FROM fts_queue", []).unwrap();
        c.execute(
            "INSERT INTO fts_queue (id, tbl, cmd, rid) VALUES (-1, 0, NULL, 0)",
            [],
        )
        .unwrap();
        assert_eq!(due(&c), Some(true), "a flush request");
    }

    /// The flush reads the queue through its index, in the order it writes (fails with the
    /// window functions of migration 0019: they sorted the queue, texts and all, three
    /// times per table).
    #[test]
    fn the_flush_reads_the_queue_by_row_without_sorting_it() {
        let c = fts_schema();
        for sql in &FTS_FLUSH[..5] {
            let plan: Vec<String> = c
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter()
                    .all(|step| !step.contains("TEMP B-TREE") && !step.starts_with("SCAN")),
                "{sql}: {plan:?}"
            );
        }
    }

    /// A transaction that inserts, updates (out of rowid order, some rows twice), deletes
    /// and re-creates rows leaves the index equal to the table, written as one segment: in
    /// queue order it was one segment per row updated out of order.
    #[test]
    fn the_full_text_queue_applies_each_rows_net_change_in_one_segment() {
        let c = fts_schema();
        let segments = |c: &Connection| -> i64 {
            c.query_row("SELECT COUNT(DISTINCT segid) FROM hives_fts_idx", [], |r| {
                r.get(0)
            })
            .unwrap()
        };
        let matches = |c: &Connection, q: &str| -> i64 {
            c.query_row(
                "SELECT COUNT(*) FROM hives_fts WHERE hives_fts MATCH ?1",
                [q],
                |r| r.get(0),
            )
            .unwrap()
        };
        c.execute_batch("BEGIN").unwrap();
        for i in 1..=100 {
            c.execute(
                "INSERT INTO hives (rowid, id, name, description, created_at, updated_at)
                 VALUES (?1, 'hive_' || ?1, ?2, 'stub', 0, 0)",
                rusqlite::params![i, format!("h{i}")],
            )
            .unwrap();
        }
        flush_fts_queue(&c).unwrap();
        c.execute_batch("COMMIT").unwrap();
        let before = segments(&c);
        c.execute_batch("BEGIN").unwrap();
        // Out of rowid order, as hive ids order them; every fifth row twice.
        for i in (1..=100).rev().chain((1..=100).step_by(5)) {
            c.execute(
                "UPDATE hives SET description = ?2 WHERE rowid = ?1",
                rusqlite::params![i, format!("described {i} {}", i % 7)],
            )
            .unwrap();
        }
        c.execute("DELETE FROM hives WHERE rowid BETWEEN 41 AND 50", [])
            .unwrap();
        // A row created and deleted within the transaction, and one created then renamed.
        c.execute(
            "INSERT INTO hives (rowid, id, name, description, created_at, updated_at)
             VALUES (200, 'hive_200', 'gone', 'x', 0, 0)",
            [],
        )
        .unwrap();
        c.execute("DELETE FROM hives WHERE rowid = 200", [])
            .unwrap();
        c.execute(
            "INSERT INTO hives (rowid, id, name, description, created_at, updated_at)
             VALUES (150, 'hive_150', 'late', 'stub', 0, 0)",
            [],
        )
        .unwrap();
        c.execute(
            "UPDATE hives SET description = 'described late' WHERE rowid = 150",
            [],
        )
        .unwrap();
        flush_fts_queue(&c).unwrap();
        c.execute_batch("COMMIT").unwrap();
        assert_eq!(segments(&c), before + 1, "one segment per transaction");
        c.execute(
            "INSERT INTO hives_fts (hives_fts, rank) VALUES ('integrity-check', 1)",
            [],
        )
        .expect("the index matches the table");
        assert_eq!(matches(&c, "stub"), 0);
        assert_eq!(matches(&c, "described"), 91);
        assert_eq!(matches(&c, "gone OR x"), 0);
        assert_eq!(matches(&c, "late"), 1);
        let queued: i64 = c
            .query_row("SELECT COUNT(*) FROM fts_queue", [], |r| r.get(0))
            .unwrap();
        assert_eq!(queued, 0);
    }

    /// The writer's page cache, full after a large write, is freed when the writer pauses
    /// (`WriterSession::release_memory`, called by the store's writer loop), which reports
    /// the bytes the cache held.
    #[test]
    fn the_writer_frees_its_page_cache_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("db.sqlite")).unwrap();
        configure(&c, false).unwrap();
        c.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
             INSERT INTO t SELECT i, printf('%.200c', 'x') FROM n;",
        )
        .unwrap();
        let mut w = SqliteWriter(
            SqliteSession(c),
            checkpointer::Shared::new(&dir.path().join("db.sqlite")),
            Arc::default(),
        );
        let before = cache_used(&w.0.0);
        assert!(before > 2 << 20, "{before}");
        // It says what it freed: the writer signals the heap trim only for a release worth
        // it (`openhive_store::db::RELEASE_WORTH_A_TRIM`).
        assert_eq!(w.release_memory(), before);
        let after = cache_used(&w.0.0);
        assert!(after < 256 << 10, "{before} -> {after}");
    }

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

    /// SQLite is compiled as `.cargo/config.toml` asks (`LIBSQLITE3_FLAGS`): every page
    /// cache its own (no global mutex per page fetch), no memory statistics (no global mutex
    /// per allocation). A build without that configuration fails here.
    #[test]
    fn sqlite_is_built_without_shared_page_caches() {
        let used = |opt: &str| {
            let c = std::ffi::CString::new(opt).unwrap();
            // SAFETY: a NUL-terminated string; the function only reads it.
            unsafe { rusqlite::ffi::sqlite3_compileoption_used(c.as_ptr()) }
        };
        assert_eq!(used("ENABLE_MEMORY_MANAGEMENT"), 0);
        assert_eq!(used("DEFAULT_MEMSTATUS=0"), 1);
    }

    /// A cached statement with `LIMIT ?` runs again without being compiled again (without
    /// the planner's stability guarantee every bind of the limit expired it).
    #[test]
    fn a_cached_statement_with_a_bound_limit_is_not_compiled_again() -> rusqlite::Result<()> {
        let c = Connection::open_in_memory()?;
        configure_statements(&c)?;
        c.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT); CREATE INDEX tk ON t(k);",
        )?;
        let sql = "SELECT id FROM t WHERE k = ?1 ORDER BY id LIMIT ?2";
        for limit in [1, 5, 10] {
            let mut st = c.prepare_cached(sql)?;
            let ids: Vec<i64> = st
                .query_map(rusqlite::params!["x", limit], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            assert!(ids.is_empty());
        }
        let st = c.prepare_cached(sql)?;
        assert_eq!(st.get_status(rusqlite::StatementStatus::RePrepare), 0);
        Ok(())
    }
}
