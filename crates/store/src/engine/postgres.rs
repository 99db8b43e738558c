//! The PostgreSQL engine: the synchronous `postgres` client (tokio-postgres underneath, each
//! client driving its connection on its own small runtime), so that the store keeps one
//! programming model for both engines: closures run on the writer thread or on a blocking
//! reader thread and see a [`super::Conn`].
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
//!   network.

use super::{ColRef, DbError, DbResult, Param};
use ::postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use ::postgres::{Client, NoTls, Statement};
use bytes::BytesMut;
use std::cell::RefCell;
use std::collections::HashMap;

/// Migrations, applied in order; the `schema_migrations` table records applied versions.
const MIGRATIONS: &[(u32, &str)] = &[(1, include_str!("../../migrations/postgres/0001_init.sql"))];

/// Advisory lock keys (one namespace for this application).
pub(crate) const LOCK_MIGRATE: i64 = 0x0e4e_4976_0001;
/// Held for the duration of every write transaction: writers of all app processes take
/// turns, as SQLite's single writer does, so a hive's seq is assigned by one writer at a time.
pub(crate) const LOCK_WRITER: i64 = 0x0e4e_4976_0002;

/// One client and its prepared statements.
pub struct PgSession {
    client: Client,
    stmts: HashMap<String, Statement>,
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
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

/// Calls `f` with column `i` of `r` as a [`ColRef`].
pub(crate) fn with_col<T>(
    r: &::postgres::Row,
    i: usize,
    f: impl FnOnce(ColRef<'_>) -> DbResult<T>,
) -> DbResult<T> {
    let ty = r
        .columns()
        .get(i)
        .ok_or_else(|| DbError::decode(i, "no such column"))?
        .type_()
        .clone();
    let c = match ty {
        Type::INT8 => opt(r.try_get::<_, Option<i64>>(i)?.map(ColRef::Int)),
        Type::INT4 => opt(r
            .try_get::<_, Option<i32>>(i)?
            .map(|v| ColRef::Int(v.into()))),
        Type::INT2 => opt(r
            .try_get::<_, Option<i16>>(i)?
            .map(|v| ColRef::Int(v.into()))),
        Type::BOOL => opt(r
            .try_get::<_, Option<bool>>(i)?
            .map(|v| ColRef::Int(v.into()))),
        Type::FLOAT8 => opt(r.try_get::<_, Option<f64>>(i)?.map(ColRef::Real)),
        Type::FLOAT4 => opt(r
            .try_get::<_, Option<f32>>(i)?
            .map(|v| ColRef::Real(v.into()))),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            opt(r.try_get::<_, Option<&str>>(i)?.map(ColRef::Text))
        }
        Type::BYTEA => opt(r.try_get::<_, Option<&[u8]>>(i)?.map(ColRef::Blob)),
        other => {
            return Err(DbError::decode(
                i,
                format!("unsupported column type {other} (cast it in the query)"),
            ));
        }
    };
    f(c)
}

fn opt(o: Option<ColRef<'_>>) -> ColRef<'_> {
    o.unwrap_or(ColRef::Null)
}

/// Rewrites `?N` placeholders to `$N`, leaving string literals and identifiers alone.
pub(crate) fn translate(sql: &str) -> String {
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
    pub(crate) fn connect(url: &str) -> DbResult<PgSession> {
        let client = Client::connect(url, NoTls)?;
        Ok(PgSession {
            client,
            stmts: HashMap::new(),
        })
    }

    fn statement(&mut self, sql: &str) -> DbResult<Statement> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&translate(sql))?;
        if self.stmts.len() > 2048 {
            self.stmts.clear();
        }
        self.stmts.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    fn bind<'p>(params: &'p [Param<'p>]) -> Vec<&'p (dyn ToSql + Sync)> {
        params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
    }

    pub(crate) fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> DbResult<usize> {
        let st = self.statement(sql)?;
        let n = self.client.execute(&st, &Self::bind(params))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> DbResult<Vec<::postgres::Row>> {
        let st = self.statement(sql)?;
        Ok(self.client.query(&st, &Self::bind(params))?)
    }

    pub(crate) fn batch(&mut self, sql: &str) -> DbResult<()> {
        Ok(self.client.batch_execute(sql)?)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Applies pending migrations under an advisory lock (several app processes may start
    /// at once).
    pub(crate) fn migrate(&mut self) -> Result<(), crate::StoreError> {
        use crate::StoreError;
        self.batch(&format!(
            "SELECT pg_advisory_lock({LOCK_MIGRATE});
             CREATE TABLE IF NOT EXISTS schema_migrations (
               version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)"
        ))?;
        let result = (|| -> Result<(), StoreError> {
            let rows = self
                .client
                .query(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                    &[],
                )
                .map_err(DbError::from)?;
            let current: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
            let supported = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
            if current > i64::from(supported) {
                return Err(StoreError::SchemaTooNew {
                    found: u32::try_from(current).unwrap_or(u32::MAX),
                    supported,
                });
            }
            for (version, sql) in MIGRATIONS.iter().filter(|m| i64::from(m.0) > current) {
                let mut tx = self.client.transaction().map_err(DbError::from)?;
                tx.batch_execute(sql)
                    .and_then(|_| {
                        tx.execute(
                            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                            &[&i64::from(*version), &openhive_core::time::now_ms()],
                        )
                    })
                    .map_err(|e| StoreError::Migration {
                        version: *version,
                        source: e.into(),
                    })?;
                tx.commit().map_err(DbError::from)?;
                tracing::info!(version, engine = "postgres", "applied database migration");
            }
            Ok(())
        })();
        let unlock = self.batch(&format!("SELECT pg_advisory_unlock({LOCK_MIGRATE})"));
        result?;
        unlock?;
        Ok(())
    }
}

/// Pools [`PgSession`]s for readers.
pub(crate) struct PgManager {
    pub(crate) url: String,
}

impl r2d2::ManageConnection for PgManager {
    type Connection = RefCell<PgSession>;
    type Error = DbError;

    fn connect(&self) -> Result<Self::Connection, Self::Error> {
        PgSession::connect(&self.url).map(RefCell::new)
    }

    fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        conn.get_mut().batch("")
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.get_mut().is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::translate;

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
