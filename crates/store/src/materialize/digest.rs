//! The state digest: a canonical text dump of everything the materializer derives for one
//! hive, which convergence tests compare across replicas.
//!
//! Invariants:
//! - two replicas that applied the same set of events have equal digests, on either engine:
//!   rows are ordered by ids (bytewise on both engines), values are rendered the same way
//!   whatever their engine (integers in decimal, reals with 9 decimals, text quoted);
//! - it includes only derived state that is a function of the event set: never `seq`,
//!   `received_at`, local row ids, or the raw candidates of registers;
//! - it only reads; it never writes.

use crate::engine::{Conn, DbResult, Value};
use crate::error::Result;
use std::fmt::Write;

/// Appends one column value, canonically rendered, followed by `|`.
fn render(out: &mut String, v: &Value) {
    // Writing into a String cannot fail.
    let _ = match v {
        Value::Null => {
            out.push_str("null");
            Ok(())
        }
        Value::Int(i) => write!(out, "{i}"),
        Value::Real(f) => write!(out, "{f:.9}"),
        Value::Text(t) => write!(out, "{t:?}"),
        Value::Blob(b) => write!(out, "{b:?}"),
    };
    out.push('|');
}

/// A canonical dump of everything the materializer derives for one hive. Two replicas that
/// applied the same set of events have equal digests.
pub fn state_digest(conn: &Conn<'_>, hive_id: &str) -> Result<String> {
    let mut out = String::new();
    let mut dump = |sql: &str, cols: usize| -> Result<()> {
        let rows = conn.prepare(sql)?.query_map([hive_id], |r| {
            (0..cols)
                .map(|i| r.get::<_, Value>(i))
                .collect::<DbResult<Vec<_>>>()
        })?;
        for r in rows {
            for v in r? {
                render(&mut out, &v);
            }
            out.push('\n');
        }
        out.push_str("--\n");
        Ok(())
    };
    dump(
        "SELECT name, description, is_public, require_verification, allow_anonymous_read,
                post_permissions, owner_id, owner_instance_id, created_event_id, member_count,
                post_count, deleted, created_at, updated_at, owner_succession_secs,
                deciding_instance_id
         FROM hives WHERE id = ?1",
        16,
    )?;
    dump(
        "SELECT id, author_id, title, content, url, score, hot, comment_count,
                is_pinned, deleted, created_at, updated_at
         FROM posts WHERE hive_id = ?1 ORDER BY id",
        12,
    )?;
    dump(
        "SELECT id, post_id, parent_id, author_id, content, score, depth, path, deleted, hidden,
                created_at, updated_at
         FROM comments WHERE hive_id = ?1 ORDER BY id",
        12,
    )?;
    dump(
        "SELECT target_id, voter_id, value FROM votes WHERE hive_id = ?1 AND value <> 0
         ORDER BY target_id, voter_id",
        3,
    )?;
    dump(
        "SELECT agent_id, state, is_moderator, joined_at FROM memberships WHERE hive_id = ?1
         ORDER BY agent_id",
        4,
    )?;
    // Remote agents named by this hive's content (their snapshots are global rows).
    dump(
        "SELECT id, name, avatar_url, created_at, updated_at FROM agents a
         WHERE a.is_local = 0 AND CAST(?1 AS TEXT) IS NOT NULL ORDER BY id",
        5,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(vs: &[Value]) -> String {
        let mut out = String::new();
        for v in vs {
            render(&mut out, v);
        }
        out
    }

    #[test]
    fn values_render_canonically() {
        assert_eq!(
            rendered(&[
                Value::Null,
                Value::Int(-3),
                Value::Real(0.5),
                Value::Text("a|b\"c".into()),
                Value::Blob(vec![1, 2]),
            ]),
            "null|-3|0.500000000|\"a|b\\\"c\"|[1, 2]|"
        );
    }

    #[test]
    fn text_is_quoted_so_it_cannot_forge_a_separator_or_null() {
        // A title "null" and a NULL title, or "1" and 1, must not render alike.
        assert_ne!(
            rendered(&[Value::Text("null".into())]),
            rendered(&[Value::Null])
        );
        assert_ne!(
            rendered(&[Value::Text("1".into())]),
            rendered(&[Value::Int(1)])
        );
        assert_ne!(
            rendered(&[Value::Text("a|b".into())]),
            rendered(&[Value::Text("a".into()), Value::Text("b".into())])
        );
    }

    #[test]
    fn reals_render_at_a_fixed_precision() {
        // A fixed number of decimals, whatever the value's shortest representation.
        assert_eq!(rendered(&[Value::Real(1.0 / 3.0)]), "0.333333333|");
        assert_eq!(rendered(&[Value::Real(2.0)]), "2.000000000|");
    }
}
