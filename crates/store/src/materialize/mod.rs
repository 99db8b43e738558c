//! The materializer: projects logged events into the tables the API reads.
//!
//! This file owns the public face of the materializer ([`apply`], [`Change`], [`Outcome`],
//! [`hive_dep`], and the re-exported [`register_winner_event`] and [`state_digest`]) and
//! dispatches each payload to the file of its aggregate:
//! - `posts`: `post_created`, `post_updated`, `post_deleted`, `post_mirrored`;
//! - `comments`: `comment_created`, `comment_updated`, `comment_deleted`;
//! - `votes`: `vote_cast`, scores, hot rank, karma;
//! - `registers`: the hive's creation and deletion, settings, membership, moderators, pins
//!   (the owner-preferring state registers);
//! - `agents`: remote agent snapshots named by events;
//! - `digest`: [`state_digest`], the canonical dump convergence tests compare.
//!
//! Invariants (every file of this module keeps them):
//! - the projected state is a function of the *set* of events applied: any order, any
//!   duplicates, any relaying peer give the same rows (tested by the proptest in
//!   `tests/convergence.rs`);
//! - it is the only writer of posts, comments, votes, hive settings, memberships and remote
//!   agent snapshots; local API writes reach these tables only through events;
//! - it never reads the clock; every stored time comes from an event's `origin_ts`;
//! - an event whose target is unknown is not dropped: it reports [`Outcome::Waiting`] and
//!   `ingest` parks it until the dependency is applied;
//! - a stored value that does not decode is never replaced by a default: it is
//!   [`StoreError::Corrupt`](crate::StoreError::Corrupt), naming what failed (never a
//!   secret). A peer's event that fails validation never gets this far (`ingest` rejects
//!   it), and one without effect is [`Outcome::Ignored`], not an error;
//! - the SQL is written in the dialect SQLite and PostgreSQL share (see `crate::engine`).
//!
//! Rules (docs/PROTOCOL.md has the full statement):
//! - content is a union keyed by origin ids; a late `*_created` never undoes a tombstone;
//! - edits: per field, last writer wins by [`order::version`] `(origin_ts, event id)`;
//! - deletes: tombstones; a deleted comment hides its subtree;
//! - votes: last writer wins per (voter, target), value 0 removes; scores, hot rank,
//!   comment counts and karma are derived from the winners;
//! - hive settings, membership, moderators, pins: owner-preferring LWW over register heads
//!   ([`order::owner_preferring_winner`]), the owner replaced by its successor once it has
//!   been silent past `owner_succession_secs` ([`order::deciding_instance`]); the hive's
//!   creation: earliest wins.

mod agents;
mod comments;
mod digest;
mod posts;
mod registers;
mod votes;

use agents::AgentSnapshots;
pub use digest::state_digest;
pub use registers::register_winner_event;

use crate::engine::Conn;
use crate::error::{Result, StoreError};
use openhive_core::Event;
use openhive_core::order;
use openhive_core::payload::{Payload, TargetType};
use std::cell::RefCell;

/// What an applied event changed, for realtime notification after commit (serializable:
/// it also travels between app processes, see [`crate::notify`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Change {
    HiveCreated {
        hive: String,
    },
    HiveUpdated {
        hive: String,
    },
    HiveDeleted {
        hive: String,
    },
    MembershipChanged {
        hive: String,
        agent_id: String,
    },
    PostCreated {
        hive: String,
        post_id: String,
    },
    PostUpdated {
        hive: String,
        post_id: String,
    },
    PostDeleted {
        hive: String,
        post_id: String,
    },
    CommentCreated {
        hive: String,
        post_id: String,
        comment_id: String,
    },
    CommentUpdated {
        hive: String,
        post_id: String,
        comment_id: String,
    },
    CommentDeleted {
        hive: String,
        post_id: String,
        comment_id: String,
    },
    VoteUpdated {
        hive: String,
        target_type: TargetType,
        target_id: String,
        post_id: String,
        score: i64,
        delta: i64,
    },
}

/// The result of applying one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied; `provides` are the dependency keys this event satisfies.
    Applied {
        changes: Vec<Change>,
        provides: Vec<String>,
    },
    /// Its target is not known yet; retry when `depends_on` is provided.
    Waiting { depends_on: String },
    /// Well-formed and signed, but without effect (e.g. an edit by someone who is not the
    /// author, a reply whose parent is on another post). Logged, never applied.
    Ignored { reason: &'static str },
}

fn applied(changes: Vec<Change>) -> Outcome {
    Outcome::Applied {
        changes,
        provides: Vec::new(),
    }
}

/// The dependency key of a hive's creation.
pub fn hive_dep(hive_id: &str) -> String {
    format!("hive:{hive_id}")
}

/// Authority rule 3 (docs/PROTOCOL.md): an edit has an effect only when it comes from the
/// target's (immutable) author.
fn author_may_edit(author_id: &str, updated_by: &str) -> bool {
    author_id == updated_by
}

/// Encodes a payload part for `state_candidates.value`. These plain types always encode;
/// a failure is reported, never stored as an empty value.
fn to_json<T: serde::Serialize + ?Sized>(what: &str, v: &T) -> Result<String> {
    serde_json::to_string(v)
        .map_err(|e| StoreError::Invalid(format!("{what} does not encode: {e}")))
}

/// The event being applied, with the connection and the local hive row it applies to.
struct Ctx<'a> {
    conn: &'a Conn<'a>,
    hive_id: &'a str,
    ev: &'a Event,
    /// What the batch the event is part of defers to its end, if it is part of one.
    batch: Option<&'a RefCell<Batch>>,
}

/// What a batch of remote events (a pushed or pulled page, one transaction) defers to its
/// end: the merged agent snapshots, the targets whose votes changed, the origins'
/// activity maxima, and each hive's change of `post_count`. Flush it
/// ([`Batch::flush`]) before the transaction ends; dropping it unflushed loses them.
#[derive(Debug, Default)]
pub struct Batch {
    snapshots: AgentSnapshots,
    rescores: votes::Rescores,
    activity: std::collections::BTreeMap<(String, String), registers::Activity>,
    /// Posts created minus posts deleted, per local hive id (one `UPDATE hives` per hive
    /// instead of one per post: a count is a sum, so the order does not matter).
    post_counts: std::collections::BTreeMap<String, i64>,
}

impl Batch {
    /// Writes what the batch deferred; returns the changes that makes (hives whose deciding
    /// instance changed).
    pub fn flush(self, conn: &Conn<'_>) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        self.snapshots.flush(conn)?;
        posts::flush_counts(conn, self.post_counts)?;
        self.rescores.flush(conn, &mut changes)?;
        registers::flush_activity(conn, self.activity, &mut changes)?;
        Ok(changes)
    }
}

impl Ctx<'_> {
    fn version(&self) -> String {
        order::version(self.ev.origin_ts, &self.ev.id)
    }
    fn hive(&self) -> String {
        self.ev.hive.clone()
    }
}

/// Applies one verified, logged event to the projection.
pub fn apply(conn: &Conn<'_>, hive_id: &str, ev: &Event, p: &Payload) -> Result<Outcome> {
    apply_in(conn, hive_id, ev, p, None)
}

/// [`apply`] for one event of a batch: what [`Batch`] defers goes into `batch`, which the
/// caller flushes before the transaction ends.
pub fn apply_in(
    conn: &Conn<'_>,
    hive_id: &str,
    ev: &Event,
    p: &Payload,
    batch: Option<&RefCell<Batch>>,
) -> Result<Outcome> {
    let cx = Ctx {
        conn,
        hive_id,
        ev,
        batch,
    };
    // Every event of the hive counts as its origin's activity (owner succession), whatever
    // its outcome: the set of events that reach here is the hive's log.
    let decider_changed = registers::note_activity(&cx)?;
    let mut out = match p {
        Payload::HiveCreated(p) => registers::hive_created(&cx, p),
        Payload::HiveDeleted(_) => registers::hive_deleted(&cx),
        Payload::HiveSettingChanged(p) => registers::setting_changed(&cx, p),
        Payload::MembershipChanged(p) => registers::membership_changed(&cx, p),
        Payload::ModeratorChanged(p) => registers::moderator_changed(&cx, p),
        Payload::PostCreated(p) => posts::created(&cx, p),
        Payload::PostUpdated(p) => posts::updated(&cx, p),
        Payload::PostDeleted(p) => posts::deleted(&cx, p),
        Payload::PostPinned(p) => registers::post_pinned(&cx, p),
        Payload::CommentCreated(p) => comments::created(&cx, p),
        Payload::CommentUpdated(p) => comments::updated(&cx, p),
        Payload::CommentDeleted(p) => comments::deleted(&cx, p),
        Payload::VoteCast(p) => votes::cast(&cx, p),
        Payload::PostMirrored(p) => posts::mirrored(&cx, p),
    }?;
    if decider_changed && let Outcome::Applied { changes, .. } = &mut out {
        changes.push(Change::HiveUpdated { hive: cx.hive() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_author_may_edit() {
        assert!(author_may_edit("agt_a", "agt_a"));
        assert!(!author_may_edit("agt_a", "agt_b"));
        // Ids are compared exactly: no case folding, no prefix match.
        assert!(!author_may_edit("agt_a", "AGT_A"));
        assert!(!author_may_edit("agt_a", "agt_a2"));
    }

    #[test]
    fn hive_dependency_keys_cannot_collide_with_entity_ids() {
        assert_eq!(hive_dep("hive_1"), "hive:hive_1");
        // Posts and comments wait under their ids, which never contain ':'.
        assert!(!hive_dep("x").starts_with("post_"));
    }

    #[test]
    fn encoding_keeps_the_json_text() {
        let action = openhive_core::payload::MembershipAction::Join;
        assert_eq!(to_json("action", &action).unwrap(), "\"join\"");
    }
}
