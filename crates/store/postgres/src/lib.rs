//! The PostgreSQL engine of the storage port: the synchronous `postgres` client (tokio-postgres underneath, each
//! client driving its connection on its own small runtime), so that the store keeps one
//! programming model for both engines: closures run on the writer thread or on a blocking
//! reader thread and see a `Conn`. Several app processes may share one database: writers
//! take turns under an advisory lock, `LISTEN/NOTIFY` carries commits between processes,
//! and session advisory locks are leases that die with their process.
//!
//! Traps:
//! - the shared SQL uses `?N` placeholders; [`translate`] rewrites them to `$N` (outside
//!   string literals) once per statement, and statements are cached per session;
//! - PostgreSQL infers parameter types from context: an integer bound where `TEXT` was
//!   inferred is sent as its decimal text, a text bound where an integer was inferred is an
//!   error; a parameter with no context (`SELECT ?1`) needs a `CAST` in the SQL;
//! - `SUM` of `BIGINT` is `NUMERIC`: cast it back (`CAST(SUM(x) AS BIGINT)`), `NUMERIC` is
//!   refused on read;
//! - after an error inside a transaction, PostgreSQL refuses every statement until
//!   `ROLLBACK [TO SAVEPOINT]`; store code therefore never catches an SQL error and goes on
//!   in the same transaction (the writer rolls the job's savepoint back);
//! - the connection is plain TCP (`NoTls`): keep the database on loopback or a private
//!   network;
//! - the database should be created with `C` collation; the schema declares `COLLATE "C"`
//!   on text keys anyway, so ordering matches SQLite's bytewise order.
//!
//! Chosen over `deadpool-postgres`: the store's closures are synchronous and run on the
//! writer thread or the blocking pool, so the synchronous client (the same tokio-postgres
//! underneath, no second SQLite link, no sqlx) keeps one model for both engines.

use bytes::BytesMut;
use openhive_store::engine::{
    Backend, ColRef, DbError, DbErrorKind, DbResult, Engine, Notifications, Param, RowRef, Session,
    WriterSession,
};
use openhive_store::{Store, StoreError, StoreOptions, schema};
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

mod scratch;
pub use scratch::ScratchDatabase;

/// Advisory lock keys (one namespace for this application).
const LOCK_MIGRATE: i64 = 0x0e4e_4976_0001;
/// Held for the duration of every write transaction: writers of all app processes take
/// turns, as SQLite's single writer does, so a hive's seq is assigned by one writer at a time.
const LOCK_WRITER: i64 = 0x0e4e_4976_0002;

/// Opens (migrating if needed) the database at `url`.
pub fn open(url: &str, opts: &StoreOptions) -> Result<Store, StoreError> {
    let backend = PgBackend::open(url, opts)?;
    Store::new(Arc::new(backend), opts)
}

fn db_err(e: postgres::Error) -> DbError {
    // `postgres::Error` displays as "db error": name the server's code and message instead.
    let message = match e.as_db_error() {
        Some(d) => format!("{} {}: {}", d.severity(), d.code().code(), d.message()),
        None => e.to_string(),
    };
    let kind = if e.is_closed() {
        DbErrorKind::ConnectionLost
    } else if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) {
        DbErrorKind::UniqueViolation
    } else {
        DbErrorKind::Other
    };
    DbError::engine(kind, e).with_message(message)
}

fn store_err(e: postgres::Error) -> StoreError {
    StoreError::Db(db_err(e))
}

/// One client and its prepared statements.
struct PgClient {
    client: Client,
    stmts: HashMap<String, Statement>,
}

/// A client as the port sees it (`&self` methods; one user at a time).
struct PgSession {
    inner: RefCell<PgClient>,
}

/// A parameter as the client binds it.
#[derive(Debug)]
struct Bind<'a>(Param<'a>);

impl ToSql for Bind<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                Type::FLOAT4 => (i as f32).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    i.to_string().as_str().to_sql(&Type::TEXT, out)
                }
                _ => Err(format!("cannot bind an integer to a {ty} parameter").into()),
            },
            Param::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                _ => Err(format!("cannot bind a real to a {ty} parameter").into()),
            },
            Param::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    s.to_sql(&Type::TEXT, out)
                }
                Type::TS_VECTOR | Type::TSQUERY => s.to_sql(&Type::TEXT, out),
                _ => Err(format!("cannot bind text to a {ty} parameter").into()),
            },
            Param::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

struct PgRow<'a>(&'a postgres::Row);

impl RowRef for PgRow<'_> {
    fn col(&self, i: usize) -> DbResult<ColRef<'_>> {
        let r = self.0;
        let ty = r
            .columns()
            .get(i)
            .ok_or_else(|| DbError::decode(i, "no such column"))?
            .type_()
            .clone();
        let e = |e: postgres::Error| DbError::decode(i, e.to_string());
        Ok(match ty {
            Type::INT8 => opt(r.try_get::<_, Option<i64>>(i).map_err(e)?.map(ColRef::Int)),
            Type::INT4 => opt(r
                .try_get::<_, Option<i32>>(i)
                .map_err(e)?
                .map(|v| ColRef::Int(v.into()))),
            Type::INT2 => opt(r
                .try_get::<_, Option<i16>>(i)
                .map_err(e)?
                .map(|v| ColRef::Int(v.into()))),
            Type::BOOL => opt(r
                .try_get::<_, Option<bool>>(i)
                .map_err(e)?
                .map(|v| ColRef::Int(v.into()))),
            Type::FLOAT8 => opt(r.try_get::<_, Option<f64>>(i).map_err(e)?.map(ColRef::Real)),
            Type::FLOAT4 => opt(r
                .try_get::<_, Option<f32>>(i)
                .map_err(e)?
                .map(|v| ColRef::Real(v.into()))),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => opt(r
                .try_get::<_, Option<&str>>(i)
                .map_err(e)?
                .map(ColRef::Text)),
            Type::BYTEA => opt(r
                .try_get::<_, Option<&[u8]>>(i)
                .map_err(e)?
                .map(ColRef::Blob)),
            other => {
                return Err(DbError::decode(
                    i,
                    format!("unsupported column type {other} (cast it in the query)"),
                ));
            }
        })
    }
}

fn opt(o: Option<ColRef<'_>>) -> ColRef<'_> {
    o.unwrap_or(ColRef::Null)
}

/// Rewrites `?N` placeholders to `$N`, leaving string literals and identifiers alone.
fn translate(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    out.push(c);
                }
                '?' if chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
                _ => out.push(c),
            },
        }
    }
    out
}

impl PgSession {
    fn connect(url: &str) -> DbResult<PgSession> {
        let client = Client::connect(url, NoTls).map_err(db_err)?;
        Ok(PgSession {
            inner: RefCell::new(PgClient {
                client,
                stmts: HashMap::new(),
            }),
        })
    }

    fn is_closed(&self) -> bool {
        self.inner.borrow().client.is_closed()
    }
}

impl PgClient {
    fn statement(&mut self, sql: &str) -> DbResult<Statement> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&translate(sql)).map_err(db_err)?;
        if self.stmts.len() > 2048 {
            self.stmts.clear();
        }
        self.stmts.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

fn bind<'p>(params: &'p [Bind<'p>]) -> Vec<&'p (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Session for PgSession {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn execute(&self, sql: &str, params: &[Param<'_>]) -> DbResult<usize> {
        let mut c = self.inner.borrow_mut();
        let st = c.statement(sql)?;
        let b: Vec<Bind<'_>> = params.iter().map(|p| Bind(*p)).collect();
        let n = c.client.execute(&st, &bind(&b)).map_err(db_err)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn query(
        &self,
        sql: &str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(&dyn RowRef) -> DbResult<bool>,
    ) -> DbResult<()> {
        // Fetch everything first and release the client, so `each` may query again.
        let rows = {
            let mut c = self.inner.borrow_mut();
            let st = c.statement(sql)?;
            let b: Vec<Bind<'_>> = params.iter().map(|p| Bind(*p)).collect();
            c.client.query(&st, &bind(&b)).map_err(db_err)?
        };
        for r in &rows {
            if !each(&PgRow(r))? {
                break;
            }
        }
        Ok(())
    }

    fn batch(&self, sql: &str) -> DbResult<()> {
        self.inner
            .borrow_mut()
            .client
            .batch_execute(sql)
            .map_err(db_err)
    }
}

/// Applies pending migrations under an advisory lock (several app processes may start at
/// once).
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    client
        .batch_execute(&format!(
            "SELECT pg_advisory_lock({LOCK_MIGRATE});
             CREATE TABLE IF NOT EXISTS schema_migrations (
               version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)"
        ))
        .map_err(store_err)?;
    let result = (|| -> Result<(), StoreError> {
        let rows = client
            .query(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .map_err(store_err)?;
        let current: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
        let supported = schema::latest(schema::POSTGRES);
        if current > i64::from(supported) {
            return Err(StoreError::SchemaTooNew {
                found: u32::try_from(current).unwrap_or(u32::MAX),
                supported,
            });
        }
        for (version, sql) in schema::POSTGRES.iter().filter(|m| i64::from(m.0) > current) {
            let mut tx = client.transaction().map_err(store_err)?;
            tx.batch_execute(sql)
                .and_then(|_| {
                    tx.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                        &[&i64::from(*version), &now_ms()],
                    )
                })
                .map_err(|e| StoreError::Migration {
                    version: *version,
                    source: db_err(e),
                })?;
            tx.commit().map_err(store_err)?;
            tracing::info!(version, engine = "postgres", "applied database migration");
        }
        Ok(())
    })();
    let unlock = client
        .batch_execute(&format!("SELECT pg_advisory_unlock({LOCK_MIGRATE})"))
        .map_err(store_err);
    result?;
    unlock
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

struct PgWriter {
    session: PgSession,
    url: String,
}

impl WriterSession for PgWriter {
    fn session(&self) -> &dyn Session {
        &self.session
    }

    fn begin(&mut self) -> DbResult<()> {
        if self.session.is_closed() {
            tracing::warn!("the PostgreSQL writer connection was lost; reconnecting");
            self.session = PgSession::connect(&self.url)?;
        }
        self.session.batch(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({LOCK_WRITER})"
        ))
    }

    fn checkpoint(&mut self) -> DbResult<()> {
        Ok(())
    }
}

/// Pools [`PgSession`]s for readers.
struct PgManager {
    url: String,
}

impl r2d2::ManageConnection for PgManager {
    type Connection = PgSession;
    type Error = DbError;

    fn connect(&self) -> Result<Self::Connection, Self::Error> {
        PgSession::connect(&self.url)
    }

    fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        conn.batch("")
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.is_closed()
    }
}

/// Session advisory locks held by this process: leases that end with the connection.
struct Leases {
    client: Option<Client>,
    held: HashSet<i64>,
}

/// The PostgreSQL engine: URL, reader pool, lease connection.
pub struct PgBackend {
    url: String,
    /// `Option` only so that `Drop` can hand it to a plain thread.
    readers: Option<r2d2::Pool<PgManager>>,
    leases: Mutex<Leases>,
}

impl Drop for PgBackend {
    /// Each client owns a small tokio runtime, and tokio refuses to drop a runtime on an
    /// async worker thread: the last handle of a store is often dropped there, so the
    /// clients are dropped on a thread of their own.
    fn drop(&mut self) {
        let readers = self.readers.take();
        let leases = self.leases.get_mut().ok().and_then(|l| l.client.take());
        let _ = std::thread::Builder::new()
            .name("openhive-pg-close".into())
            .spawn(move || {
                drop(readers);
                drop(leases);
            });
    }
}

impl PgBackend {
    /// Connects and migrates.
    pub fn open(url: &str, opts: &StoreOptions) -> Result<PgBackend, StoreError> {
        let mut client = Client::connect(url, NoTls).map_err(store_err)?;
        migrate(&mut client)?;
        let readers = r2d2::Pool::builder()
            .max_size(opts.readers.max(1))
            .min_idle(Some(1))
            .build(PgManager {
                url: url.to_string(),
            })
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        Ok(PgBackend {
            url: url.to_string(),
            readers: Some(readers),
            leases: Mutex::new(Leases {
                client: None,
                held: HashSet::new(),
            }),
        })
    }
}

/// A stable 64-bit key for a lease name (FNV-1a; the same in every process and version).
fn lease_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

impl Backend for PgBackend {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn writer(&self) -> Result<Box<dyn WriterSession>, StoreError> {
        Ok(Box::new(PgWriter {
            session: PgSession::connect(&self.url)?,
            url: self.url.clone(),
        }))
    }

    fn read(&self, f: &mut dyn FnMut(&dyn Session)) -> Result<(), StoreError> {
        let conn = self
            .readers
            .as_ref()
            .ok_or_else(|| StoreError::Task("the store is closing".into()))?
            .get()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        f(&*conn);
        Ok(())
    }

    fn listen(&self, channel: &str) -> Option<Notifications> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let url = self.url.clone();
        let channel = channel.to_string();
        let spawned = std::thread::Builder::new()
            .name("openhive-pg-listen".into())
            .spawn(move || listen_loop(&url, &channel, &tx));
        match spawned {
            Ok(_) => Some(rx),
            Err(e) => {
                tracing::error!(error = %e, "could not start the LISTEN thread");
                None
            }
        }
    }

    fn try_lease(&self, name: &str) -> Result<bool, StoreError> {
        let key = lease_key(name);
        let mut l = self
            .leases
            .lock()
            .map_err(|_| StoreError::Task("lease lock poisoned".into()))?;
        if l.client.as_ref().is_none_or(Client::is_closed) {
            // A lost connection lost every lease with it.
            l.held.clear();
            l.client = Some(Client::connect(&self.url, NoTls).map_err(store_err)?);
        }
        if l.held.contains(&key) {
            return Ok(true);
        }
        let Some(client) = l.client.as_mut() else {
            return Ok(false);
        };
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .map_err(store_err)?
            .get(0);
        if got {
            l.held.insert(key);
        }
        Ok(got)
    }

    fn release_all(&self) -> Result<(), StoreError> {
        let mut l = self
            .leases
            .lock()
            .map_err(|_| StoreError::Task("lease lock poisoned".into()))?;
        l.held.clear();
        if let Some(mut client) = l.client.take() {
            let r = client.batch_execute("SELECT pg_advisory_unlock_all()");
            // Closing the session releases them too; do it off any async runtime.
            let _ = std::thread::Builder::new()
                .name("openhive-pg-close".into())
                .spawn(move || drop(client));
            r.map_err(store_err)?;
        }
        Ok(())
    }
}

/// Forwards notifications of `channel` until the receiver is dropped; reconnects (after a
/// pause) when the connection is lost. Notifications sent while disconnected are missed:
/// subscribers treat a reconnect as "something may have changed".
fn listen_loop(url: &str, channel: &str, tx: &tokio::sync::mpsc::UnboundedSender<String>) {
    let quoted = format!("\"{}\"", channel.replace('"', "\"\""));
    loop {
        if tx.is_closed() {
            return;
        }
        let mut client = match Client::connect(url, NoTls) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                std::thread::sleep(std::time::Duration::from_secs(1));
                continue;
            }
        };
        if let Err(e) = client.batch_execute(&format!("LISTEN {quoted}")) {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            std::thread::sleep(std::time::Duration::from_secs(1));
            continue;
        }
        loop {
            use postgres::fallible_iterator::FallibleIterator;
            let next = client
                .notifications()
                .timeout_iter(std::time::Duration::from_secs(1))
                .next();
            match next {
                Ok(Some(note)) => {
                    if tx.send(note.payload().to_string()).is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    if tx.is_closed() {
                        return;
                    }
                    if client.is_closed() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                    break;
                }
            }
        }
    }
}

/// `url` with its database name replaced by `name` (query parameters dropped).
fn with_database(url: &str, name: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    match url.rsplit_once('/') {
        Some((base, _)) if !base.ends_with('/') && !base.ends_with(':') => format!("{base}/{name}"),
        _ => format!("{url}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{translate, with_database};

    #[test]
    fn scratch_urls_replace_the_database() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/postgres?sslmode=disable", "x"),
            "postgres://u@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432", "x"),
            "postgres://u@127.0.0.1:5432/x"
        );
    }

    #[test]
    fn placeholders_are_rewritten_outside_literals() {
        assert_eq!(
            translate(
                "SELECT a FROM t WHERE x = ?1 AND y = '?2' AND z IN (?3, ?12) AND \"?4\" = ?"
            ),
            "SELECT a FROM t WHERE x = $1 AND y = '?2' AND z IN ($3, $12) AND \"?4\" = ?"
        );
    }
}
