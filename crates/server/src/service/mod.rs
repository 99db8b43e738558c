//! The local write path: every change an API caller makes to a hive.
//!
//! Each operation checks the caller's authority against the current state, builds the
//! event's payload, signs it with the instance key and hands it to
//! `openhive_store::ingest::ingest` — the same path remote events take — inside one write
//! transaction. After the commit it reports the materialized changes to the [`CommitSink`]
//! (realtime fan-out and the sync outboxes).
//!
//! Invariants:
//! - handlers never write hive content except through this module;
//! - this module never talks to peers; it only signals that a hive's log grew;
//! - checks and the write happen in the same transaction (no check-then-act race).

mod comments;
mod hives;
mod mirror;
mod posts;

use openhive_core::payload::AgentRef;
use openhive_core::{Event, SharedKey};
use openhive_store::Conn;
use openhive_store::agents::AgentRow;
use openhive_store::materialize::Change;
use openhive_store::posts::Author;
use openhive_store::{Store, StoreError, ingest};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

pub use comments::CommentInput;
pub use hives::{HiveInput, HivePatch};
pub use mirror::{MirrorPage, MirroredPost, NewSubscriptionInput};
pub use posts::{PostInput, PostPatch};

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<openhive_store::DbError> for ServiceError {
    fn from(e: openhive_store::DbError) -> Self {
        ServiceError::Store(StoreError::Db(e))
    }
}

pub type Result<T> = std::result::Result<T, ServiceError>;

/// Who acts: a local agent, as read when its request began.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The agent as its posts show it (what a created post's `author` is).
    pub author: Author,
    pub is_admin: bool,
}

impl Actor {
    pub fn new(agent: &AgentRow) -> Actor {
        Actor {
            author: Author::from(agent),
            is_admin: agent.is_admin,
        }
    }

    pub fn agent_id(&self) -> &str {
        &self.author.id
    }
}

/// Receives what a commit changed. Called after the transaction committed, never before.
pub trait CommitSink: Send + Sync {
    fn committed(&self, hive_id: &str, changes: Vec<Change>);
}

/// Signs and ingests local changes. Cheap to clone.
#[derive(Clone)]
pub struct HiveService {
    store: Store,
    instance_id: Arc<str>,
    /// The current signing key (a key rotation replaces it, on the writer thread).
    key: SharedKey,
    sink: Arc<dyn CommitSink>,
    /// Last origin_ts handed out: timestamps of this instance never go backwards or repeat,
    /// so two quick edits by one author are ordered as they were made.
    clock: Arc<AtomicI64>,
}

impl HiveService {
    pub fn new(store: Store, instance_id: &str, key: SharedKey, sink: Arc<dyn CommitSink>) -> Self {
        HiveService {
            store,
            instance_id: instance_id.into(),
            key,
            sink,
            clock: Arc::new(AtomicI64::new(0)),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Moves the clock to at least `ts` (at start: the time of our last key rotation, so no
    /// event is ever signed with a time before it).
    pub fn observe_ts(&self, ts: i64) {
        self.clock.fetch_max(ts, Ordering::SeqCst);
    }

    /// The next origin timestamp: wall-clock ms, but strictly increasing on this instance.
    /// A key rotation takes its time from here too (on the writer thread), so every event
    /// signed before it has an earlier time and every event signed after it a later one.
    pub(crate) fn tick(&self) -> i64 {
        let now = openhive_core::time::now_ms();
        let mut cur = self.clock.load(Ordering::SeqCst);
        loop {
            let next = now.max(cur + 1);
            match self
                .clock
                .compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(actual) => cur = actual,
            }
        }
    }

    fn agent_ref(&self, a: &Actor) -> AgentRef {
        AgentRef {
            instance_id: self.instance_id.to_string(),
            agent_id: a.author.id.clone(),
            name: a.author.name.clone(),
            avatar_url: a.author.avatar_url.clone(),
        }
    }

    /// Runs `f` in a write transaction; `f` returns the events to sign and ingest (via
    /// [`Emit`]) and a value; after commit, changes go to the sink.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn<'_>, &mut Emit<'_>) -> Result<T> + Send + 'static,
    {
        // API writes fail fast with 503 when the write queue is full (bounded memory).
        self.write_with(false, f).await
    }

    /// [`HiveService::write`]; `wait`: wait for room in the write queue (background
    /// workers) instead of failing fast (API calls).
    async fn write_with<T, F>(&self, wait: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn<'_>, &mut Emit<'_>) -> Result<T> + Send + 'static,
    {
        let svc = self.clone();
        let run = move |tx: &Conn<'_>| -> Result<(T, HiveChanges)> {
            let mut emit = Emit {
                svc: &svc,
                conn: tx,
                changes: Vec::new(),
            };
            let out = f(tx, &mut emit)?;
            Ok((out, emit.changes))
        };
        let (out, hive_changes) = if wait {
            self.store.write(run).await?
        } else {
            self.store.try_write(run).await?
        };
        for (hive_id, changes) in hive_changes {
            self.sink.committed(&hive_id, changes);
        }
        Ok(out)
    }
}

/// Changes per local hive id, in commit order.
type HiveChanges = Vec<(String, Vec<Change>)>;

/// Signs and ingests events inside a write transaction.
pub struct Emit<'a> {
    svc: &'a HiveService,
    conn: &'a Conn<'a>,
    changes: HiveChanges,
}

impl Emit<'_> {
    /// Signs `payload` as an event of hive `hive_name` (local id `hive_id`) and ingests it.
    pub fn event(
        &mut self,
        hive_id: &str,
        hive_name: &str,
        payload: openhive_core::payload::Payload,
    ) -> Result<Event> {
        check_mirror_rule(self.conn, hive_id, hive_name, &payload)?;
        // Signed here, then checked exactly as a peer's event would be.
        let v = ingest::Verified::sign(
            &self.svc.key.get(),
            &self.svc.instance_id,
            hive_name,
            &payload,
            self.svc.tick(),
        )
        .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let now = openhive_core::time::now_ms();
        let out = ingest::ingest(self.conn, hive_id, &v, None, now)?;
        let ev = v.event().clone();
        match self.changes.iter_mut().find(|(h, _)| h == hive_id) {
            Some((_, c)) => c.extend(out.changes),
            None => self.changes.push((hive_id.to_string(), out.changes)),
        }
        Ok(ev)
    }
}

/// A mirror hive (filled by a pull subscription) is read-only: the only local events it
/// takes are the subscription's `post_mirrored` copies, and agents joining or leaving it
/// (following a mirror writes nothing into it). `post_mirrored` goes into mirror hives only.
fn check_mirror_rule(
    conn: &Conn<'_>,
    hive_id: &str,
    hive_name: &str,
    payload: &openhive_core::payload::Payload,
) -> Result<()> {
    use openhive_core::payload::{MembershipAction, Payload};
    let mirror = openhive_store::subscriptions::mirror_of(conn, hive_id)?;
    match (payload, mirror) {
        (Payload::PostMirrored(_), Some(_)) => Ok(()),
        (Payload::PostMirrored(_), None) => Err(ServiceError::Forbidden(format!(
            "hive {hive_name} is not a mirror hive"
        ))),
        (Payload::MembershipChanged(m), Some(_))
            if matches!(m.action, MembershipAction::Join | MembershipAction::Leave) =>
        {
            Ok(())
        }
        (_, Some((url, remote))) => Err(ServiceError::Forbidden(format!(
            "hive {hive_name} is a read-only mirror of hive {remote} on {url}; write there instead"
        ))),
        (_, None) => Ok(()),
    }
}
