//! The storage engines behind one connection type.
//!
//! Every module of this crate talks to the database through [`Conn`], whatever the engine:
//! `execute`, `query_row`, `prepare_cached(..).query_map(..)`, rows read with
//! [`Row::get`]. The SQL is written once, in the dialect both engines share (SQLite ≥ 3.35
//! and PostgreSQL ≥ 13 agree on `ON CONFLICT`, `RETURNING`, `GREATEST`/`LEAST` (registered as
//! functions on SQLite), `COALESCE`, keyset comparisons); placeholders are `?N` and the
//! PostgreSQL engine rewrites them to `$N`. The few queries that differ (full-text search,
//! the state digest's float rendering) branch on [`Conn::engine`].
//!
//! Invariants:
//! - no type of `rusqlite` or `postgres` appears in this module's public API: callers see
//!   [`Conn`], [`Row`], [`Stmt`], [`Param`], [`Value`] and [`DbError`] only;
//! - integers travel as `i64` and booleans as `0`/`1` integers on both engines (the
//!   PostgreSQL schema uses `BIGINT` for both), so a query means the same on each;
//! - text compares bytewise on both (SQLite's default, `COLLATE "C"` on PostgreSQL), which the
//!   materializer's last-writer-wins comparisons rely on.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::cell::RefCell;

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

/// A database error from either engine. Opaque: callers ask it questions.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DbError(Repr);

#[derive(Debug, thiserror::Error)]
enum Repr {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("query returned no rows")]
    NoRows,
    #[error("column {index}: {message}")]
    Decode { index: usize, message: String },
}

impl DbError {
    pub(crate) fn decode(index: usize, message: impl Into<String>) -> DbError {
        DbError(Repr::Decode {
            index,
            message: message.into(),
        })
    }

    pub(crate) fn no_rows() -> DbError {
        DbError(Repr::NoRows)
    }

    /// True if the statement returned no row where one was required.
    pub fn is_no_rows(&self) -> bool {
        matches!(
            self.0,
            Repr::NoRows | Repr::Sqlite(rusqlite::Error::QueryReturnedNoRows)
        )
    }

    /// True if the statement violated a UNIQUE or PRIMARY KEY constraint.
    pub fn is_unique_violation(&self) -> bool {
        match &self.0 {
            Repr::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
                f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            Repr::Postgres(e) => e.code() == Some(&::postgres::error::SqlState::UNIQUE_VIOLATION),
            _ => false,
        }
    }

    /// True if the connection itself is gone (PostgreSQL server restarted, socket closed).
    pub fn is_connection_lost(&self) -> bool {
        matches!(&self.0, Repr::Postgres(e) if e.is_closed())
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError(Repr::Sqlite(e))
    }
}

impl From<::postgres::Error> for DbError {
    fn from(e: ::postgres::Error) -> Self {
        DbError(Repr::Postgres(e))
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

/// A column index (kept generic so `r.get::<_, T>(i)` reads as it does in rusqlite).
pub trait ColIndex {
    fn index(&self) -> usize;
}

impl ColIndex for usize {
    fn index(&self) -> usize {
        *self
    }
}

/// One result row.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a ::postgres::Row),
}

impl Row<'_> {
    /// Column `idx` decoded as `T`.
    pub fn get<I: ColIndex, T: FromCol>(&self, idx: I) -> DbResult<T> {
        let i = idx.index();
        match self {
            Row::Sqlite(r) => T::from_col(sqlite::col(r, i)?, i),
            Row::Postgres(r) => postgres::with_col(r, i, |c| T::from_col(c, i)),
        }
    }
}

// ── Connections ─────────────────────────────────────────────────────────────

/// A connection (inside a write transaction, or a pooled reader) of either engine.
pub struct Conn<'a>(ConnKind<'a>);

enum ConnKind<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a RefCell<postgres::PgSession>),
}

impl<'a> Conn<'a> {
    pub(crate) fn sqlite(c: &'a rusqlite::Connection) -> Self {
        Conn(ConnKind::Sqlite(c))
    }

    pub(crate) fn postgres(c: &'a RefCell<postgres::PgSession>) -> Self {
        Conn(ConnKind::Postgres(c))
    }

    pub fn engine(&self) -> Engine {
        match self.0 {
            ConnKind::Sqlite(_) => Engine::Sqlite,
            ConnKind::Postgres(_) => Engine::Postgres,
        }
    }

    /// Runs one statement; returns the number of rows it changed.
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> DbResult<usize> {
        self.prepare_cached(sql)?.execute(params)
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

    /// A statement, cached per connection.
    pub fn prepare_cached(&self, sql: &str) -> DbResult<Stmt<'a>> {
        match self.0 {
            ConnKind::Sqlite(c) => Ok(Stmt::Sqlite(c.prepare_cached(sql)?)),
            ConnKind::Postgres(c) => Ok(Stmt::Postgres {
                session: c,
                sql: sql.to_string(),
            }),
        }
    }

    /// [`Conn::prepare_cached`]; kept for statements run once.
    pub fn prepare(&self, sql: &str) -> DbResult<Stmt<'a>> {
        self.prepare_cached(sql)
    }

    /// Runs several statements without parameters.
    pub fn execute_batch(&self, sql: &str) -> DbResult<()> {
        match self.0 {
            ConnKind::Sqlite(c) => Ok(c.execute_batch(sql)?),
            ConnKind::Postgres(c) => c.borrow_mut().batch(sql),
        }
    }
}

/// A prepared statement.
pub enum Stmt<'a> {
    Sqlite(rusqlite::CachedStatement<'a>),
    Postgres {
        session: &'a RefCell<postgres::PgSession>,
        sql: String,
    },
}

fn sqlite_params<'p>(p: &'p [Param<'p>]) -> rusqlite::ParamsFromIter<&'p [Param<'p>]> {
    rusqlite::params_from_iter(p)
}

impl Stmt<'_> {
    pub fn execute<P: Params>(&mut self, params: P) -> DbResult<usize> {
        let p = params.collect();
        match self {
            Stmt::Sqlite(s) => Ok(s.execute(sqlite_params(&p))?),
            Stmt::Postgres { session, sql } => session.borrow_mut().execute(sql, &p),
        }
    }

    pub fn query_row<P: Params, T>(
        &mut self,
        params: P,
        f: impl FnOnce(&Row<'_>) -> DbResult<T>,
    ) -> DbResult<T> {
        let p = params.collect();
        match self {
            Stmt::Sqlite(s) => {
                let mut rows = s.query(sqlite_params(&p))?;
                match rows.next()? {
                    Some(r) => f(&Row::Sqlite(r)),
                    None => Err(DbError::no_rows()),
                }
            }
            Stmt::Postgres { session, sql } => {
                let rows = session.borrow_mut().query(sql, &p)?;
                match rows.first() {
                    Some(r) => f(&Row::Postgres(r)),
                    None => Err(DbError::no_rows()),
                }
            }
        }
    }

    /// Every row, mapped by `f`, collected (so `f` may itself query the connection).
    pub fn query_map<P: Params, T>(
        &mut self,
        params: P,
        mut f: impl FnMut(&Row<'_>) -> DbResult<T>,
    ) -> DbResult<std::vec::IntoIter<DbResult<T>>> {
        let p = params.collect();
        let out: Vec<DbResult<T>> = match self {
            Stmt::Sqlite(s) => {
                let mut rows = s.query(sqlite_params(&p))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(f(&Row::Sqlite(r)));
                }
                out
            }
            Stmt::Postgres { session, sql } => {
                let rows = session.borrow_mut().query(sql, &p)?;
                rows.iter().map(|r| f(&Row::Postgres(r))).collect()
            }
        };
        Ok(out.into_iter())
    }

    /// True if the query returns at least one row.
    pub fn exists<P: Params>(&mut self, params: P) -> DbResult<bool> {
        self.query_row(params, |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
    }
}
