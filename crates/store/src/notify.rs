//! Commit notices between the app processes of one instance (PostgreSQL `LISTEN/NOTIFY`).
//!
//! Every event that enters a hive publishes, in the same transaction, a notice naming the
//! hive and what the materializer changed. PostgreSQL delivers notices only when (and if)
//! the transaction commits, in commit order, to every listening process; each process then
//! wakes its outboxes for that hive and renders the changes for its WebSocket subscribers.
//! The publishing process ignores its own notices (it fans out in-process).
//!
//! Invariants: a notice never carries event content or secrets (ids and counts only); a
//! notice too large for `NOTIFY` (8000 bytes) is sent without its changes, which still wakes
//! the outboxes; on SQLite nothing is sent (one process owns the data).

use crate::engine::Conn;
use crate::error::Result;
use crate::materialize::Change;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// The channel every process listens on.
pub const CHANNEL: &str = "openhive_commits";

/// Largest payload sent (PostgreSQL refuses 8000 bytes and more).
const MAX_PAYLOAD: usize = 7900;

/// This process's random token, so that it can tell its own notices from others'.
pub fn process_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| ulid::Ulid::new().to_string())
}

/// One commit notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The publishing process.
    pub p: String,
    /// The local hive id whose log grew.
    pub h: String,
    /// What changed (empty if it did not fit).
    pub c: Vec<Change>,
}

impl Notice {
    /// True if another process published it.
    pub fn is_foreign(&self) -> bool {
        self.p != process_token()
    }
}

/// Publishes a notice for `hive_id` in the current transaction (no-op on SQLite).
pub fn publish(conn: &Conn<'_>, hive_id: &str, changes: &[Change]) -> Result<()> {
    if conn.engine() == crate::Engine::Sqlite {
        return Ok(());
    }
    let mut notice = Notice {
        p: process_token().to_string(),
        h: hive_id.to_string(),
        c: changes.to_vec(),
    };
    let mut payload = serde_json::to_string(&notice)
        .map_err(|e| crate::StoreError::Task(format!("encoding a commit notice: {e}")))?;
    if payload.len() > MAX_PAYLOAD {
        notice.c.clear();
        payload = serde_json::to_string(&notice)
            .map_err(|e| crate::StoreError::Task(format!("encoding a commit notice: {e}")))?;
    }
    conn.notify(CHANNEL, &payload)?;
    Ok(())
}

/// Changes per notice of a batch (each change is ~100-200 bytes of JSON).
const BATCH_CHUNK: usize = 32;

/// [`publish`] for a batch: the changes in chunks, at least one notice.
pub fn publish_batch(conn: &Conn<'_>, hive_id: &str, changes: &[Change]) -> Result<()> {
    if changes.is_empty() {
        return publish(conn, hive_id, changes);
    }
    for chunk in changes.chunks(BATCH_CHUNK) {
        publish(conn, hive_id, chunk)?;
    }
    Ok(())
}

/// Reads a notice (None if it is not one).
pub fn decode(payload: &str) -> Option<Notice> {
    serde_json::from_str(payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_know_their_process() {
        let n = Notice {
            p: process_token().into(),
            h: "hive_1".into(),
            c: vec![Change::PostCreated {
                hive: "general".into(),
                post_id: "post_x".into(),
            }],
        };
        let back = decode(&serde_json::to_string(&n).unwrap_or_default());
        assert_eq!(back.as_ref(), Some(&n));
        assert!(!n.is_foreign());
        assert!(decode("not json").is_none());
    }
}
