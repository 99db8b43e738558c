//! The storage port: what an engine provides, and the connection type every query uses.
//!
//! Every module of this crate talks to the database through [`Conn`], whatever the engine:
//! `execute`, `query_row`, `prepare_cached(..).query_map(..)`, rows read with
//! [`Row::get`]. The SQL is written once, in the dialect both engines share (SQLite ≥ 3.35
//! and PostgreSQL ≥ 13 agree on `ON CONFLICT`, `RETURNING`, `COALESCE`, keyset comparisons;
//! the SQLite engine registers PostgreSQL's `GREATEST`/`LEAST`); placeholders are `?N` and
//! the PostgreSQL engine rewrites them to `$N`. The few queries that differ (full-text
//! search) branch on [`Conn::engine`].
//!
//! Engines live in their own crates (`openhive-store-sqlite`, `openhive-store-postgres`) and
//! implement [`Backend`], [`WriterSession`], [`Session`] and [`RowRef`]; this crate and its
//! callers never name an engine's types.
//!
//! Invariants:
//! - integers travel as `i64` and booleans as `0`/`1` integers on both engines (the
//!   PostgreSQL schema uses `BIGINT` for both), so a query means the same on each;
//! - text compares bytewise on both (SQLite's default, `COLLATE "C"` on PostgreSQL), which
//!   the materializer's last-writer-wins comparisons rely on;
//! - an engine error never leaves this layer as the engine's type: [`DbError`] carries a
//!   [`DbErrorKind`] and a message.

use std::path::Path;

/// Which engine a connection belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// What kind of database error happened: the questions callers may ask of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// A statement returned no row where one was required.
    NoRows,
    /// A UNIQUE or PRIMARY KEY constraint was violated.
    UniqueViolation,
    /// The connection to the server is gone.
    ConnectionLost,
    /// A column did not decode into the requested type.
    Decode,
    /// Anything else the engine reported.
    Other,
}

/// A database error from any engine: a kind, a message, and the engine's own error as the
/// source (its type is not part of this API).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    kind: DbErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl DbError {
    pub fn new(kind: DbErrorKind, message: impl Into<String>) -> DbError {
        DbError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Wraps an engine's error.
    pub fn engine(
        kind: DbErrorKind,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> DbError {
        DbError {
            kind,
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// The same error with a clearer message.
    pub fn with_message(mut self, message: impl Into<String>) -> DbError {
        self.message = message.into();
        self
    }

    pub fn decode(index: usize, message: impl Into<String>) -> DbError {
        DbError::new(
            DbErrorKind::Decode,
            format!("column {index}: {}", message.into()),
        )
    }

    pub fn no_rows() -> DbError {
        DbError::new(DbErrorKind::NoRows, "query returned no rows")
    }

    pub fn kind(&self) -> DbErrorKind {
        self.kind
    }

    pub fn is_no_rows(&self) -> bool {
        self.kind == DbErrorKind::NoRows
    }

    pub fn is_unique_violation(&self) -> bool {
        self.kind == DbErrorKind::UniqueViolation
    }
}

pub type DbResult<T> = std::result::Result<T, DbError>;

/// `rusqlite`'s `optional()`: "no rows" becomes `None`.
pub trait OptionalExtension<T> {
    fn optional(self) -> DbResult<Option<T>>;
}

impl<T> OptionalExtension<T> for DbResult<T> {
    fn optional(self) -> DbResult<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_no_rows() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

// ── Parameters ──────────────────────────────────────────────────────────────

/// A bound parameter, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// An owned value: dynamic parameter lists and untyped column reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// Anything that binds as a parameter.
pub trait ToParam {
    fn to_param(&self) -> Param<'_>;
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl ToParam for $t {
            fn to_param(&self) -> Param<'_> {
                Param::Int(i64::from(*self))
            }
        }
    )*};
}
int_param!(i64, i32, i16, i8, u32, u16, u8, bool);

impl ToParam for usize {
    fn to_param(&self) -> Param<'_> {
        Param::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToParam for u64 {
    fn to_param(&self) -> Param<'_> {
        Param::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToParam for f64 {
    fn to_param(&self) -> Param<'_> {
        Param::Real(*self)
    }
}

impl ToParam for str {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for String {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for [u8] {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}

impl ToParam for Vec<u8> {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}

impl ToParam for Value {
    fn to_param(&self) -> Param<'_> {
        match self {
            Value::Null => Param::Null,
            Value::Int(i) => Param::Int(*i),
            Value::Real(f) => Param::Real(*f),
            Value::Text(s) => Param::Text(s),
            Value::Blob(b) => Param::Blob(b),
        }
    }
}

impl<T: ToParam + ?Sized> ToParam for &T {
    fn to_param(&self) -> Param<'_> {
        (**self).to_param()
    }
}

impl<T: ToParam> ToParam for Option<T> {
    fn to_param(&self) -> Param<'_> {
        match self {
            Some(v) => v.to_param(),
            None => Param::Null,
        }
    }
}

/// A parameter list: `params![a, b]`, `[a]`, `()` or [`params_from_iter`].
pub trait Params {
    fn collect(&self) -> Vec<Param<'_>>;
}

impl Params for () {
    fn collect(&self) -> Vec<Param<'_>> {
        Vec::new()
    }
}

impl Params for &[&dyn ToParam] {
    fn collect(&self) -> Vec<Param<'_>> {
        self.iter().map(|p| p.to_param()).collect()
    }
}

impl<const N: usize> Params for &[&dyn ToParam; N] {
    fn collect(&self) -> Vec<Param<'_>> {
        self.iter().map(|p| p.to_param()).collect()
    }
}

impl<T: ToParam, const N: usize> Params for [T; N] {
    fn collect(&self) -> Vec<Param<'_>> {
        self.iter().map(|p| p.to_param()).collect()
    }
}

/// Parameters from a runtime list.
pub struct ParamsFromIter<'a>(Vec<Param<'a>>);

impl Params for ParamsFromIter<'_> {
    fn collect(&self) -> Vec<Param<'_>> {
        self.0.clone()
    }
}

pub fn params_from_iter<'a, T: ToParam + 'a>(
    items: impl IntoIterator<Item = &'a T>,
) -> ParamsFromIter<'a> {
    ParamsFromIter(items.into_iter().map(|p| p.to_param()).collect())
}

/// `params![a, b, c]`: a parameter list of mixed types.
#[macro_export]
macro_rules! params {
    () => { &[] as &[&dyn $crate::engine::ToParam; 0] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::engine::ToParam),+] };
}
pub use crate::params;

// ── Columns ─────────────────────────────────────────────────────────────────

/// A column value as read, borrowed from the row.
#[derive(Debug, Clone, Copy)]
pub enum ColRef<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl ColRef<'_> {
    fn kind(&self) -> &'static str {
        match self {
            ColRef::Null => "null",
            ColRef::Int(_) => "integer",
            ColRef::Real(_) => "real",
            ColRef::Text(_) => "text",
            ColRef::Blob(_) => "blob",
        }
    }

    pub fn to_value(self) -> Value {
        match self {
            ColRef::Null => Value::Null,
            ColRef::Int(i) => Value::Int(i),
            ColRef::Real(f) => Value::Real(f),
            ColRef::Text(s) => Value::Text(s.to_string()),
            ColRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

/// A Rust type a column decodes into.
pub trait FromCol: Sized {
    fn from_col(v: ColRef<'_>, index: usize) -> DbResult<Self>;
}

fn mismatch<T>(index: usize, want: &str, got: ColRef<'_>) -> DbResult<T> {
    Err(DbError::decode(
        index,
        format!("expected {want}, found {}", got.kind()),
    ))
}

impl FromCol for i64 {
    fn from_col(v: ColRef<'_>, index: usize) -> DbResult<Self> {
        match v {
            ColRef::Int(i) => Ok(i),
            other => mismatch(index, "integer", other),
        }
    }
}

macro_rules! narrow_int {
    ($($t:ty),*) => {$(
        impl FromCol for $t {
            fn from_col(v: ColRef<'_>, index: usize) -> DbResult<Self> {
                let i = i64::from_col(v, index)?;
                <$t>::try_from(i).map_err(|_| DbError::decode(index, format!("{i} out of range")))
            }
        }
    )*};
}
narrow_int!(i32, u32, u64, usize, u16, u8);

impl FromCol for bool {
    fn from_col(v: ColRef<'_>, index: usize) -> DbResult<Self> {
        Ok(i64::from_col(v, index)? != 0)
    }
}

impl FromCol for f64 {
    fn from_col(v: ColRef<'_>, index: usize) -> DbResult<Self> {
        match v {
            ColRef::Real(f) => Ok(f),
            ColRef::Int(i) => Ok(i as f64),
            other => mismatch(index, "real", other),
        }
    }
}

impl FromCol for String {
    fn from_col(v: ColRef<'_>, index: usize) -> DbResult<Self> {
        match v {
            ColRef::Text(s) => Ok(s.to_string()),
            other => mismatch(index, "text", other),
        }
    }
}

impl FromCol for Vec<u8> {
    fn from_col(v: ColRef<'_>, index: usize) -> DbResult<Self> {
        match v {
            ColRef::Blob(b) => Ok(b.to_vec()),
            ColRef::Text(s) => Ok(s.as_bytes().to_vec()),
            other => mismatch(index, "blob", other),
        }
    }
}

impl FromCol for Value {
    fn from_col(v: ColRef<'_>, _index: usize) -> DbResult<Self> {
        Ok(v.to_value())
    }
}

impl<T: FromCol> FromCol for Option<T> {
    fn from_col(v: ColRef<'_>, index: usize) -> DbResult<Self> {
        match v {
            ColRef::Null => Ok(None),
            other => T::from_col(other, index).map(Some),
        }
    }
}

/// Binds and reads a closed vocabulary (`as_str` / `parse`, e.g. one declared with
/// `openhive_core::closed_vocabulary!`) as its text; a stored value outside it fails to
/// decode (which the store reports as corruption).
#[macro_export]
macro_rules! text_column {
    ($($t:ty),+ $(,)?) => {$(
        impl $crate::engine::ToParam for $t {
            fn to_param(&self) -> $crate::engine::Param<'_> {
                $crate::engine::Param::Text(self.as_str())
            }
        }

        impl $crate::engine::FromCol for $t {
            fn from_col(
                v: $crate::engine::ColRef<'_>,
                index: usize,
            ) -> $crate::engine::DbResult<Self> {
                let s = <String as $crate::engine::FromCol>::from_col(v, index)?;
                <$t>::parse(&s).map_err(|e| $crate::engine::DbError::decode(index, e.to_string()))
            }
        }
    )+};
}
pub use crate::text_column;

/// A column index (kept generic so `r.get::<_, T>(i)` reads as it does in rusqlite).
pub trait ColIndex {
    fn index(&self) -> usize;
}

impl ColIndex for usize {
    fn index(&self) -> usize {
        *self
    }
}

// ── The engine port ─────────────────────────────────────────────────────────

/// One row as an engine hands it out.
pub trait RowRef {
    /// Column `i`, borrowed from the row.
    fn col(&self, i: usize) -> DbResult<ColRef<'_>>;
}

/// A connection of an engine: what every query of this crate runs on.
pub trait Session {
    fn engine(&self) -> Engine;
    /// Runs one statement; returns the number of rows it changed.
    fn execute(&self, sql: &str, params: &[Param<'_>]) -> DbResult<usize>;
    /// Runs a query and calls `each` for every row, in order, until it returns `false`.
    fn query(
        &self,
        sql: &str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(&dyn RowRef) -> DbResult<bool>,
    ) -> DbResult<()>;
    /// Runs several statements without parameters (transaction control, DDL).
    fn batch(&self, sql: &str) -> DbResult<()>;
}

/// The one writing connection of a process.
pub trait WriterSession: Send {
    fn session(&self) -> &dyn Session;
    /// Starts a write transaction. On PostgreSQL this also takes the instance-wide writer
    /// lock (every app process of the instance writes in turn) and reconnects first if the
    /// connection was lost.
    fn begin(&mut self) -> DbResult<()>;
    /// Makes the data durable in the main file (SQLite WAL checkpoint); a no-op elsewhere.
    fn checkpoint(&mut self) -> DbResult<()>;
    /// Work deferred to the end of the transaction, run just before its COMMIT, outside
    /// any job's savepoint (SQLite: the queued full-text index writes). A failure fails the
    /// whole transaction.
    fn before_commit(&self) -> DbResult<()> {
        Ok(())
    }
    /// The writer paused ([`crate::db::RELEASE_GAP`]): free what its cache
    /// holds (SQLite: the page cache; the pages are read again when next needed); returns
    /// about how many bytes that freed. A no-op elsewhere (0).
    fn release_memory(&mut self) -> usize {
        0
    }
    /// The transaction [`WriterSession::begin`] started has ended (its COMMIT or ROLLBACK
    /// ran); called before the jobs in it are answered. SQLite moves
    /// [`Backend::agents_version`] on here.
    fn ended(&self) {}
}

/// Messages published by one app process and heard by every process of the instance.
pub type Notifications = tokio::sync::mpsc::UnboundedReceiver<String>;

/// An engine: opens the writer, lends readers, and (where several processes share the data)
/// carries notifications and leases between them.
pub trait Backend: Send + Sync + 'static {
    fn engine(&self) -> Engine;
    /// The writer's session (called once, when the store opens).
    fn writer(&self) -> Result<Box<dyn WriterSession>, crate::StoreError>;
    /// Runs `f` on a pooled read-only session.
    fn read(&self, f: &mut dyn FnMut(&dyn Session)) -> Result<(), crate::StoreError>;
    /// Runs `f` on a pooled read-only session *on the calling thread*, if the engine answers
    /// a point read in microseconds (SQLite, in process) and a session is idle right now;
    /// `Ok(false)` without running `f` otherwise (the caller then uses [`Backend::read`] on
    /// a blocking thread). Never waits for a session.
    fn try_read_here(&self, _f: &mut dyn FnMut(&dyn Session)) -> Result<bool, crate::StoreError> {
        Ok(false)
    }
    /// The database file, for an engine that has one.
    fn path(&self) -> Option<&Path> {
        None
    }
    /// A number that moves on after every write transaction that changed a row of `agents`
    /// has ended, and before its jobs are answered: a value read before a read of `agents`
    /// and unchanged since says that read is still current. `None` where the engine cannot
    /// tell (PostgreSQL: other processes of the instance write too): then nothing may be
    /// cached by it.
    fn agents_version(&self) -> Option<u64> {
        None
    }
    /// The [`Backend::agents_version`] of the last ended write transaction that may have
    /// changed the agent `id` (it may be later than the change: engines may widen it, never
    /// narrow it). A read of `id`'s row made after version `v` was read is still current
    /// while this is at most `v`. `None` exactly where `agents_version` is.
    fn agent_changed_at(&self, _id: &str) -> Option<u64> {
        None
    }
    /// Subscribes to `channel`: every payload published with [`Conn::notify`] in a
    /// committed transaction, by any process. `None` where one process owns the data
    /// (SQLite): then the in-process fan-out is all there is.
    fn listen(&self, _channel: &str) -> Option<Notifications> {
        None
    }
    /// Tries to take the lease `key` for this process: true if this process holds it now.
    /// A lease is held until [`Backend::release_all`] or until the process dies. Where one
    /// process owns the data, every lease is granted.
    fn try_lease(&self, _key: &str) -> Result<bool, crate::StoreError> {
        Ok(true)
    }
    /// Gives every lease of this process back (graceful shutdown: another process takes
    /// over at once instead of when this one exits).
    fn release_all(&self) -> Result<(), crate::StoreError> {
        Ok(())
    }
}

/// One result row.
pub struct Row<'a>(&'a dyn RowRef);

impl Row<'_> {
    /// Column `idx` decoded as `T`.
    pub fn get<I: ColIndex, T: FromCol>(&self, idx: I) -> DbResult<T> {
        let i = idx.index();
        T::from_col(self.0.col(i)?, i)
    }
}

// ── Connections ─────────────────────────────────────────────────────────────

/// A connection (inside a write transaction, or a pooled reader) of any engine, with the
/// [`StoreContext`](crate::context::StoreContext) of the store that lent it.
#[derive(Clone, Copy)]
pub struct Conn<'a>(&'a dyn Session, &'a crate::context::StoreContext);

impl<'a> Conn<'a> {
    /// A connection with the default context (no sealing key, default bounds).
    pub fn new(session: &'a dyn Session) -> Self {
        Conn(session, &crate::context::DEFAULT)
    }

    /// A connection carrying `ctx`.
    pub fn with_context(session: &'a dyn Session, ctx: &'a crate::context::StoreContext) -> Self {
        Conn(session, ctx)
    }

    /// The settings and secrets of the store this connection belongs to.
    pub fn context(&self) -> &'a crate::context::StoreContext {
        self.1
    }

    pub fn engine(&self) -> Engine {
        self.0.engine()
    }

    /// Runs one statement; returns the number of rows it changed.
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> DbResult<usize> {
        self.0.execute(sql, &params.collect())
    }

    /// The first row of `sql`, mapped by `f`; "no rows" is an error (see
    /// [`OptionalExtension::optional`]).
    pub fn query_row<P: Params, T>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row<'_>) -> DbResult<T>,
    ) -> DbResult<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// A statement (engines cache prepared statements per connection). It borrows `sql`
    /// (a copy per statement run was ~1 % of a write's instructions).
    pub fn prepare_cached<'s>(&self, sql: &'s str) -> DbResult<Stmt<'s>>
    where
        'a: 's,
    {
        Ok(Stmt {
            session: self.0,
            sql,
        })
    }

    /// [`Conn::prepare_cached`]; kept for statements run once.
    pub fn prepare<'s>(&self, sql: &'s str) -> DbResult<Stmt<'s>>
    where
        'a: 's,
    {
        self.prepare_cached(sql)
    }

    /// Runs several statements without parameters.
    pub fn execute_batch(&self, sql: &str) -> DbResult<()> {
        self.0.batch(sql)
    }

    /// Publishes `payload` on `channel` to every app process of the instance when (and only
    /// if) the current transaction commits. A no-op on SQLite, where one process owns the
    /// data and the in-process fan-out suffices.
    pub fn notify(&self, channel: &str, payload: &str) -> DbResult<()> {
        match self.engine() {
            Engine::Sqlite => Ok(()),
            Engine::Postgres => self
                .query_row(
                    "SELECT CAST(pg_notify(?1, ?2) AS TEXT)",
                    params![channel, payload],
                    |_| Ok(()),
                )
                .map(|_| ()),
        }
    }
}

/// A statement.
pub struct Stmt<'a> {
    session: &'a dyn Session,
    sql: &'a str,
}

impl Stmt<'_> {
    pub fn execute<P: Params>(&mut self, params: P) -> DbResult<usize> {
        self.session.execute(self.sql, &params.collect())
    }

    pub fn query_row<P: Params, T>(
        &mut self,
        params: P,
        f: impl FnOnce(&Row<'_>) -> DbResult<T>,
    ) -> DbResult<T> {
        let mut f = Some(f);
        let mut out = None;
        self.session.query(self.sql, &params.collect(), &mut |r| {
            if let Some(f) = f.take() {
                out = Some(f(&Row(r)));
            }
            Ok(false)
        })?;
        out.unwrap_or_else(|| Err(DbError::no_rows()))
    }

    /// Every row, mapped by `f`, collected (so `f` may itself query the connection).
    pub fn query_map<P: Params, T>(
        &mut self,
        params: P,
        mut f: impl FnMut(&Row<'_>) -> DbResult<T>,
    ) -> DbResult<std::vec::IntoIter<DbResult<T>>> {
        let mut out = Vec::new();
        self.session.query(self.sql, &params.collect(), &mut |r| {
            out.push(f(&Row(r)));
            Ok(true)
        })?;
        Ok(out.into_iter())
    }

    /// True if the query returns at least one row.
    pub fn exists<P: Params>(&mut self, params: P) -> DbResult<bool> {
        self.query_row(params, |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
    }
}
