//! Hive rows: the log anchor of each hive and the hive read model.

use crate::error::Result;
use rusqlite::{Connection, OptionalExtension, params};

/// The local id of the hive named `name`, if its log exists.
pub fn id_by_name(conn: &Connection, name: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT id FROM hives WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

/// Returns the id of the hive named `name`, creating its (empty, not yet visible) row and
/// log if needed.
pub fn ensure_log(conn: &Connection, name: &str, now: i64) -> Result<String> {
    if let Some(id) = id_by_name(conn, name)? {
        return Ok(id);
    }
    let id = format!(
        "hive_{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    );
    conn.execute(
        "INSERT INTO hives (id, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
        params![id, name, now],
    )?;
    Ok(id)
}
