//! The materializer: projects logged events into the tables the API reads.
//!
//! Invariants:
//! - the projected state is a function of the *set* of events applied: any order, any
//!   duplicates, any relaying peer give the same rows (tested by the proptest in
//!   `tests/convergence.rs`);
//! - it is the only writer of posts, comments, votes, hive settings, memberships and remote
//!   agent snapshots; local API writes reach these tables only through events;
//! - it never reads the clock; every stored time comes from an event's `origin_ts`;
//! - an event whose target is unknown is not dropped: it reports [`Outcome::Waiting`] and
//!   `ingest` parks it until the dependency is applied.
//!
//! Rules (docs/PROTOCOL.md has the full statement):
//! - content is a union keyed by origin ids; a late `*_created` never undoes a tombstone;
//! - edits: per field, last writer wins by [`order::version`] `(origin_ts, event id)`;
//! - deletes: tombstones; a deleted comment hides its subtree;
//! - votes: last writer wins per (voter, target), value 0 removes; scores, hot rank,
//!   comment counts and karma are derived from the winners;
//! - hive settings, membership, moderators, pins: owner-preferring LWW over register heads
//!   ([`order::owner_preferring_winner`]); the hive's creation: earliest wins.

use crate::engine::{Conn, DbResult, OptionalExtension, Value};
use crate::error::Result;
use crate::params;
use openhive_core::Event;
use openhive_core::order::{self, Candidate};
use openhive_core::payload::{
    self, AgentRef, MembershipAction, ModeratorAction, Payload, TargetType,
};

/// What an applied event changed, for realtime notification after commit.
#[derive(Debug, Clone, PartialEq, Eq)]
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

struct Ctx<'a> {
    conn: &'a Conn<'a>,
    hive_id: &'a str,
    ev: &'a Event,
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
    let cx = Ctx { conn, hive_id, ev };
    match p {
        Payload::HiveCreated(p) => hive_created(&cx, p),
        Payload::HiveDeleted(_) => {
            if !hive_exists(&cx)? {
                return Ok(Outcome::Waiting {
                    depends_on: hive_dep(hive_id),
                });
            }
            conn.execute("UPDATE hives SET deleted = 1 WHERE id = ?1", [hive_id])?;
            Ok(applied(vec![Change::HiveDeleted { hive: cx.hive() }]))
        }
        Payload::HiveSettingChanged(p) => {
            if !hive_exists(&cx)? {
                return Ok(Outcome::Waiting {
                    depends_on: hive_dep(hive_id),
                });
            }
            add_candidate(
                &cx,
                &format!("setting:{}", p.key),
                p.prev.as_deref(),
                &p.value.to_string(),
            )?;
            recompute_setting(conn, hive_id, &p.key)?;
            touch_hive(&cx)?;
            Ok(applied(vec![Change::HiveUpdated { hive: cx.hive() }]))
        }
        Payload::MembershipChanged(p) => agent_register(
            &cx,
            "member",
            &p.agent,
            p.prev.as_deref(),
            &p.action,
            recompute_membership,
        ),
        Payload::ModeratorChanged(p) => agent_register(
            &cx,
            "moderator",
            &p.agent,
            p.prev.as_deref(),
            &p.action,
            recompute_moderator,
        ),
        Payload::PostCreated(p) => post_created(&cx, p),
        Payload::PostUpdated(p) => post_updated(&cx, p),
        Payload::PostDeleted(p) => {
            let Some(post) = find_post(conn, hive_id, &p.post_id)? else {
                return Ok(Outcome::Waiting {
                    depends_on: p.post_id.clone(),
                });
            };
            if post.deleted {
                return Ok(applied(Vec::new()));
            }
            conn.execute("UPDATE posts SET deleted = 1 WHERE id = ?1", [&p.post_id])?;
            conn.execute(
                "UPDATE hives SET post_count = post_count - 1 WHERE id = ?1",
                [hive_id],
            )?;
            Ok(applied(vec![Change::PostDeleted {
                hive: cx.hive(),
                post_id: p.post_id.clone(),
            }]))
        }
        Payload::PostPinned(p) => {
            if find_post(conn, hive_id, &p.post_id)?.is_none() {
                return Ok(Outcome::Waiting {
                    depends_on: p.post_id.clone(),
                });
            }
            if !hive_exists(&cx)? {
                return Ok(Outcome::Waiting {
                    depends_on: hive_dep(hive_id),
                });
            }
            add_candidate(
                &cx,
                &format!("pin:{}", p.post_id),
                p.prev.as_deref(),
                &p.pinned.to_string(),
            )?;
            recompute_pin(conn, hive_id, &p.post_id)?;
            Ok(applied(vec![Change::PostUpdated {
                hive: cx.hive(),
                post_id: p.post_id.clone(),
            }]))
        }
        Payload::CommentCreated(p) => comment_created(&cx, p),
        Payload::CommentUpdated(p) => {
            let Some(c) = find_comment(conn, hive_id, &p.comment_id)? else {
                return Ok(Outcome::Waiting {
                    depends_on: p.comment_id.clone(),
                });
            };
            if c.author_id != p.updated_by.agent_id {
                return Ok(Outcome::Ignored {
                    reason: "only the author edits a comment",
                });
            }
            let v = cx.version();
            let n = conn.execute(
                "UPDATE comments SET content = ?2, content_v = ?3, updated_at = GREATEST(updated_at, ?4)
                 WHERE id = ?1 AND content_v < ?3",
                params![p.comment_id, p.content, v, ev.origin_ts],
            )?;
            upsert_agent_snapshot(&cx, &p.updated_by)?;
            let changes = if n > 0 {
                vec![Change::CommentUpdated {
                    hive: cx.hive(),
                    post_id: c.post_id,
                    comment_id: p.comment_id.clone(),
                }]
            } else {
                Vec::new()
            };
            Ok(applied(changes))
        }
        Payload::CommentDeleted(p) => {
            let Some(c) = find_comment(conn, hive_id, &p.comment_id)? else {
                return Ok(Outcome::Waiting {
                    depends_on: p.comment_id.clone(),
                });
            };
            if c.deleted {
                return Ok(applied(Vec::new()));
            }
            // The comment and its visible descendants stop counting; O(subtree), not O(post).
            // Paths are `<root>/<child>/...`; '0' is the byte after '/'.
            let vanishing: i64 = conn.query_row(
                "SELECT COUNT(*) FROM comments
                 WHERE post_id = ?1 AND deleted = 0 AND hidden = 0
                   AND (id = ?3 OR (path > ?2 || '/' AND path < ?2 || '0'))",
                params![c.post_id, c.path, p.comment_id],
                |r| r.get(0),
            )?;
            conn.execute(
                "UPDATE comments SET deleted = 1 WHERE id = ?1",
                [&p.comment_id],
            )?;
            conn.execute(
                "UPDATE comments SET hidden = 1
                 WHERE post_id = ?1 AND path > ?2 || '/' AND path < ?2 || '0'",
                params![c.post_id, c.path],
            )?;
            add_comment_count(conn, &c.post_id, -vanishing)?;
            Ok(applied(vec![Change::CommentDeleted {
                hive: cx.hive(),
                post_id: c.post_id,
                comment_id: p.comment_id.clone(),
            }]))
        }
        Payload::VoteCast(p) => vote_cast(&cx, p),
    }
}

// ── Hive ────────────────────────────────────────────────────────────────────

fn hive_exists(cx: &Ctx<'_>) -> Result<bool> {
    Ok(cx
        .conn
        .prepare_cached("SELECT created_event_id IS NOT NULL FROM hives WHERE id = ?1")?
        .query_row([cx.hive_id], |r| r.get::<_, bool>(0))
        .optional()?
        .unwrap_or(false))
}

/// `hives.updated_at` = the latest `origin_ts` of the hive's creation and setting events
/// (a maximum over the event set, so every instance agrees).
fn touch_hive(cx: &Ctx<'_>) -> Result<()> {
    cx.conn
        .prepare_cached("UPDATE hives SET updated_at = GREATEST(updated_at, ?2) WHERE id = ?1")?
        .execute(params![cx.hive_id, cx.ev.origin_ts])?;
    Ok(())
}

/// A membership or moderator change: one register per (kind, agent).
fn agent_register<A: serde::Serialize>(
    cx: &Ctx<'_>,
    kind: &str,
    agent: &AgentRef,
    prev: Option<&str>,
    action: &A,
    recompute: fn(&Conn<'_>, &str, &str) -> Result<()>,
) -> Result<Outcome> {
    if !hive_exists(cx)? {
        return Ok(Outcome::Waiting {
            depends_on: hive_dep(cx.hive_id),
        });
    }
    upsert_agent_snapshot(cx, agent)?;
    let action = serde_json::to_string(action).unwrap_or_default();
    add_candidate(cx, &format!("{kind}:{}", agent.agent_id), prev, &action)?;
    recompute(cx.conn, cx.hive_id, &agent.agent_id)?;
    Ok(applied(vec![Change::MembershipChanged {
        hive: cx.hive(),
        agent_id: agent.agent_id.clone(),
    }]))
}

fn hive_created(cx: &Ctx<'_>, p: &payload::HiveCreated) -> Result<Outcome> {
    let conn = cx.conn;
    touch_hive(cx)?;
    let value = serde_json::to_string(p).unwrap_or_default();
    add_candidate(cx, "hive", None, &value)?;
    // Earliest creation wins.
    let (winner_id, winner_value, winner_origin, winner_ts): (String, String, String, i64) = conn
        .query_row(
        "SELECT event_id, value, origin_instance_id, origin_ts FROM state_candidates
             WHERE hive_id = ?1 AND register = 'hive' ORDER BY origin_ts ASC, event_id ASC LIMIT 1",
        [cx.hive_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let current: Option<String> = conn.query_row(
        "SELECT created_event_id FROM hives WHERE id = ?1",
        [cx.hive_id],
        |r| r.get(0),
    )?;
    upsert_agent_snapshot(cx, &p.owner)?;
    if current.as_deref() == Some(winner_id.as_str()) {
        return Ok(applied(Vec::new()));
    }
    let first = current.is_none();
    let w: payload::HiveCreated = serde_json::from_str(&winner_value)
        .map_err(|e| crate::StoreError::Invalid(e.to_string()))?;
    conn.execute(
        "UPDATE hives SET created_event_id = ?2, owner_id = ?3, owner_instance_id = ?4,
                          created_at = ?5
         WHERE id = ?1",
        params![
            cx.hive_id,
            winner_id,
            w.owner.agent_id,
            winner_origin,
            winner_ts
        ],
    )?;
    // The owner's instance changed (or became known): every register's winner may change.
    recompute_all_registers(conn, cx.hive_id)?;
    recompute_member_count(conn, cx.hive_id)?;
    let change = if first {
        Change::HiveCreated { hive: cx.hive() }
    } else {
        Change::HiveUpdated { hive: cx.hive() }
    };
    Ok(Outcome::Applied {
        changes: vec![change],
        provides: vec![hive_dep(cx.hive_id)],
    })
}

fn add_candidate(cx: &Ctx<'_>, register: &str, prev: Option<&str>, value: &str) -> Result<()> {
    cx.conn
        .prepare_cached(
            "INSERT INTO state_candidates
               (hive_id, register, event_id, prev, origin_instance_id, origin_ts, value)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            cx.hive_id,
            register,
            cx.ev.id,
            prev,
            cx.ev.origin_instance_id,
            cx.ev.origin_ts,
            value
        ])?;
    Ok(())
}

/// The owner-preferring winner of a register: (value, origin_ts), or None if no candidate.
fn register_winner(
    conn: &Conn<'_>,
    hive_id: &str,
    register: &str,
) -> Result<Option<(String, i64)>> {
    Ok(register_winner_full(conn, hive_id, register)?.map(|(c, v)| (v, c.origin_ts)))
}

/// The event id of the owner-preferring winner of a register.
pub fn register_winner_event(
    conn: &Conn<'_>,
    hive_id: &str,
    register: &str,
) -> Result<Option<String>> {
    Ok(register_winner_full(conn, hive_id, register)?.map(|(c, _)| c.event_id))
}

fn register_winner_full(
    conn: &Conn<'_>,
    hive_id: &str,
    register: &str,
) -> Result<Option<(Candidate, String)>> {
    let owner: Option<String> = conn.query_row(
        "SELECT owner_instance_id FROM hives WHERE id = ?1",
        [hive_id],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare_cached(
        "SELECT event_id, prev, origin_instance_id, origin_ts, value FROM state_candidates
         WHERE hive_id = ?1 AND register = ?2",
    )?;
    let rows = stmt
        .query_map(params![hive_id, register], |r| {
            Ok((
                Candidate {
                    event_id: r.get(0)?,
                    prev: r.get(1)?,
                    origin_instance_id: r.get(2)?,
                    origin_ts: r.get(3)?,
                },
                r.get::<_, String>(4)?,
            ))
        })?
        .collect::<DbResult<Vec<_>>>()?;
    let cands: Vec<Candidate> = rows.iter().map(|(c, _)| c.clone()).collect();
    Ok(
        order::owner_preferring_winner(&cands, owner.as_deref().unwrap_or(""))
            .and_then(|i| rows.into_iter().nth(i)),
    )
}

fn recompute_all_registers(conn: &Conn<'_>, hive_id: &str) -> Result<()> {
    // Base values come from the winning creation; registers override them.
    for key in payload::SETTING_KEYS {
        recompute_setting(conn, hive_id, key)?;
    }
    let registers: Vec<String> = conn
        .prepare("SELECT DISTINCT register FROM state_candidates WHERE hive_id = ?1 AND register <> 'hive'")?
        .query_map([hive_id], |r| r.get(0))?
        .collect::<DbResult<_>>()?;
    for reg in registers {
        if let Some(agent) = reg.strip_prefix("member:") {
            recompute_membership(conn, hive_id, agent)?;
        } else if let Some(agent) = reg.strip_prefix("moderator:") {
            recompute_moderator(conn, hive_id, agent)?;
        } else if let Some(post) = reg.strip_prefix("pin:") {
            recompute_pin(conn, hive_id, post)?;
        }
    }
    Ok(())
}

fn recompute_setting(conn: &Conn<'_>, hive_id: &str, key: &str) -> Result<()> {
    let value: serde_json::Value = match register_winner(conn, hive_id, &format!("setting:{key}"))?
    {
        Some((v, _)) => serde_json::from_str(&v).unwrap_or(serde_json::Value::Null),
        None => {
            // The base value from the hive's winning creation.
            let created: Option<String> = conn
                .query_row(
                    "SELECT c.value FROM hives h JOIN state_candidates c
                       ON c.hive_id = h.id AND c.register = 'hive' AND c.event_id = h.created_event_id
                     WHERE h.id = ?1",
                    [hive_id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(created) = created else {
                return Ok(());
            };
            let w: payload::HiveCreated = serde_json::from_str(&created)
                .map_err(|e| crate::StoreError::Invalid(e.to_string()))?;
            match key {
                "description" => serde_json::Value::String(w.description),
                "is_public" => serde_json::Value::Bool(w.is_public),
                "require_verification" => serde_json::Value::Bool(w.settings.require_verification),
                "allow_anonymous_read" => serde_json::Value::Bool(w.settings.allow_anonymous_read),
                "post_permissions" => serde_json::Value::String(w.settings.post_permissions),
                _ => return Ok(()),
            }
        }
    };
    let sql = match key {
        "description" => "UPDATE hives SET description = ?2 WHERE id = ?1",
        "is_public" => "UPDATE hives SET is_public = ?2 WHERE id = ?1",
        "require_verification" => "UPDATE hives SET require_verification = ?2 WHERE id = ?1",
        "allow_anonymous_read" => "UPDATE hives SET allow_anonymous_read = ?2 WHERE id = ?1",
        "post_permissions" => "UPDATE hives SET post_permissions = ?2 WHERE id = ?1",
        _ => return Ok(()),
    };
    match value {
        serde_json::Value::String(s) => conn.execute(sql, params![hive_id, s])?,
        serde_json::Value::Bool(b) => conn.execute(sql, params![hive_id, b])?,
        _ => 0,
    };
    Ok(())
}

fn ensure_membership_row(conn: &Conn<'_>, hive_id: &str, agent_id: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO memberships (hive_id, agent_id, state, is_moderator, joined_at)
         VALUES (?1, ?2, 'left', 0, 0) ON CONFLICT DO NOTHING",
    )?
    .execute(params![hive_id, agent_id])?;
    Ok(())
}

fn recompute_membership(conn: &Conn<'_>, hive_id: &str, agent_id: &str) -> Result<()> {
    ensure_membership_row(conn, hive_id, agent_id)?;
    let (state, ts) = match register_winner(conn, hive_id, &format!("member:{agent_id}"))? {
        Some((v, ts)) => {
            let action: MembershipAction =
                serde_json::from_str(&v).unwrap_or(MembershipAction::Leave);
            let state = match action {
                MembershipAction::Join => "member",
                MembershipAction::Ban => "banned",
                MembershipAction::Leave | MembershipAction::Unban => "left",
            };
            (state, ts)
        }
        None => ("left", 0),
    };
    conn.execute(
        "UPDATE memberships SET state = ?3, joined_at = ?4 WHERE hive_id = ?1 AND agent_id = ?2",
        params![hive_id, agent_id, state, ts],
    )?;
    recompute_member_count(conn, hive_id)
}

fn recompute_moderator(conn: &Conn<'_>, hive_id: &str, agent_id: &str) -> Result<()> {
    ensure_membership_row(conn, hive_id, agent_id)?;
    let is_mod = match register_winner(conn, hive_id, &format!("moderator:{agent_id}"))? {
        Some((v, _)) => {
            serde_json::from_str::<ModeratorAction>(&v).ok() == Some(ModeratorAction::Add)
        }
        None => false,
    };
    conn.execute(
        "UPDATE memberships SET is_moderator = ?3 WHERE hive_id = ?1 AND agent_id = ?2",
        params![hive_id, agent_id, is_mod],
    )?;
    Ok(())
}

/// Members are the agents whose membership register says `member`, plus the owner.
fn recompute_member_count(conn: &Conn<'_>, hive_id: &str) -> Result<()> {
    conn.execute(
        "UPDATE hives SET member_count =
           (SELECT COUNT(*) FROM memberships m
             WHERE m.hive_id = hives.id AND m.state = 'member'
               AND m.agent_id IS DISTINCT FROM hives.owner_id)
           + CASE WHEN owner_id IS NOT NULL THEN 1 ELSE 0 END
         WHERE id = ?1",
        [hive_id],
    )?;
    Ok(())
}

fn recompute_pin(conn: &Conn<'_>, hive_id: &str, post_id: &str) -> Result<()> {
    let pinned = register_winner(conn, hive_id, &format!("pin:{post_id}"))?
        .map(|(v, _)| v == "true")
        .unwrap_or(false);
    conn.execute(
        "UPDATE posts SET is_pinned = ?2 WHERE id = ?1",
        params![post_id, pinned],
    )?;
    Ok(())
}

// ── Agents ──────────────────────────────────────────────────────────────────

/// Caches a remote agent's snapshot; the newest snapshot (by event version) wins. Local
/// agents are authoritative here and never overwritten.
fn upsert_agent_snapshot(cx: &Ctx<'_>, a: &AgentRef) -> Result<()> {
    // created_at = the earliest event that named the agent, updated_at = the latest: both
    // functions of the event set, like the snapshot itself (newest version wins).
    cx.conn
        .prepare_cached(
            "INSERT INTO agents (id, name, instance_id, is_local, avatar_url, snapshot_version,
                                 created_at, updated_at)
             VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?6)
             ON CONFLICT(id) DO UPDATE SET
               name = CASE WHEN excluded.snapshot_version > agents.snapshot_version
                           THEN excluded.name ELSE agents.name END,
               avatar_url = CASE WHEN excluded.snapshot_version > agents.snapshot_version
                                 THEN excluded.avatar_url ELSE agents.avatar_url END,
               snapshot_version = GREATEST(agents.snapshot_version, excluded.snapshot_version),
               created_at = LEAST(agents.created_at, excluded.created_at),
               updated_at = GREATEST(agents.updated_at, excluded.updated_at)
             WHERE agents.is_local = 0",
        )?
        .execute(params![
            a.agent_id,
            a.name,
            a.instance_id,
            a.avatar_url,
            cx.version(),
            cx.ev.origin_ts
        ])?;
    Ok(())
}

// ── Posts ───────────────────────────────────────────────────────────────────

struct PostRef {
    author_id: String,
    deleted: bool,
}

fn find_post(conn: &Conn<'_>, hive_id: &str, post_id: &str) -> Result<Option<PostRef>> {
    Ok(conn
        .prepare_cached("SELECT author_id, deleted FROM posts WHERE id = ?1 AND hive_id = ?2")?
        .query_row(params![post_id, hive_id], |r| {
            Ok(PostRef {
                author_id: r.get(0)?,
                deleted: r.get(1)?,
            })
        })
        .optional()?)
}

fn post_created(cx: &Ctx<'_>, p: &payload::PostCreated) -> Result<Outcome> {
    let v = cx.version();
    upsert_agent_snapshot(cx, &p.author)?;
    let n = cx
        .conn
        .prepare_cached(
            "INSERT INTO posts (id, hive_id, author_id, origin_instance_id, title, content,
               url, title_v, content_v, url_v, score, hot, comment_count, is_pinned, deleted,
               created_event_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8, 0, ?9, 0, 0, 0, ?10, ?11, ?11) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            p.post_id,
            cx.hive_id,
            p.author.agent_id,
            cx.ev.origin_instance_id,
            p.title,
            p.content,
            p.url,
            v,
            order::hot_rank(0, cx.ev.origin_ts),
            cx.ev.id,
            cx.ev.origin_ts
        ])?;
    if n > 0 {
        cx.conn
            .prepare_cached("UPDATE hives SET post_count = post_count + 1 WHERE id = ?1")?
            .execute([cx.hive_id])?;
    }
    let changes = if n > 0 {
        vec![Change::PostCreated {
            hive: cx.hive(),
            post_id: p.post_id.clone(),
        }]
    } else {
        Vec::new()
    };
    Ok(Outcome::Applied {
        changes,
        provides: vec![p.post_id.clone()],
    })
}

fn post_updated(cx: &Ctx<'_>, p: &payload::PostUpdated) -> Result<Outcome> {
    let Some(post) = find_post(cx.conn, cx.hive_id, &p.post_id)? else {
        return Ok(Outcome::Waiting {
            depends_on: p.post_id.clone(),
        });
    };
    if post.author_id != p.updated_by.agent_id {
        return Ok(Outcome::Ignored {
            reason: "only the author edits a post",
        });
    }
    let v = cx.version();
    let mut n = 0;
    if let Some(t) = &p.title {
        n += cx.conn.execute(
            "UPDATE posts SET title = ?2, title_v = ?3 WHERE id = ?1 AND title_v < ?3",
            params![p.post_id, t, v],
        )?;
    }
    if let Some(c) = &p.content {
        n += cx.conn.execute(
            "UPDATE posts SET content = ?2, content_v = ?3 WHERE id = ?1 AND content_v < ?3",
            params![p.post_id, c, v],
        )?;
    }
    if let Some(u) = &p.url {
        n += cx.conn.execute(
            "UPDATE posts SET url = ?2, url_v = ?3 WHERE id = ?1 AND url_v < ?3",
            params![p.post_id, u, v],
        )?;
    }
    cx.conn.execute(
        "UPDATE posts SET updated_at = GREATEST(updated_at, ?2) WHERE id = ?1",
        params![p.post_id, cx.ev.origin_ts],
    )?;
    upsert_agent_snapshot(cx, &p.updated_by)?;
    let changes = if n > 0 {
        vec![Change::PostUpdated {
            hive: cx.hive(),
            post_id: p.post_id.clone(),
        }]
    } else {
        Vec::new()
    };
    Ok(applied(changes))
}

// ── Comments ────────────────────────────────────────────────────────────────

struct CommentRef {
    post_id: String,
    author_id: String,
    depth: i64,
    path: String,
    deleted: bool,
    hidden: bool,
}

fn find_comment(conn: &Conn<'_>, hive_id: &str, id: &str) -> Result<Option<CommentRef>> {
    Ok(conn
        .prepare_cached(
            "SELECT post_id, author_id, depth, path, deleted, hidden FROM comments
             WHERE id = ?1 AND hive_id = ?2",
        )?
        .query_row(params![id, hive_id], |r| {
            Ok(CommentRef {
                post_id: r.get(0)?,
                author_id: r.get(1)?,
                depth: r.get(2)?,
                path: r.get(3)?,
                deleted: r.get(4)?,
                hidden: r.get(5)?,
            })
        })
        .optional()?)
}

fn comment_created(cx: &Ctx<'_>, p: &payload::CommentCreated) -> Result<Outcome> {
    if find_post(cx.conn, cx.hive_id, &p.post_id)?.is_none() {
        return Ok(Outcome::Waiting {
            depends_on: p.post_id.clone(),
        });
    }
    let (depth, path, hidden) = match &p.parent_comment_id {
        None => (0, p.comment_id.clone(), false),
        Some(parent_id) => {
            let Some(parent) = find_comment(cx.conn, cx.hive_id, parent_id)? else {
                return Ok(Outcome::Waiting {
                    depends_on: parent_id.clone(),
                });
            };
            if parent.post_id != p.post_id {
                return Ok(Outcome::Ignored {
                    reason: "parent comment is on another post",
                });
            }
            (
                parent.depth + 1,
                format!("{}/{}", parent.path, p.comment_id),
                parent.deleted || parent.hidden,
            )
        }
    };
    let v = cx.version();
    upsert_agent_snapshot(cx, &p.author)?;
    let n = cx
        .conn
        .prepare_cached(
            "INSERT INTO comments (id, post_id, hive_id, parent_id, author_id,
               origin_instance_id, content, content_v, score, depth, path, deleted, hidden,
               created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10, 0, ?11, ?12, ?12) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            p.comment_id,
            p.post_id,
            cx.hive_id,
            p.parent_comment_id,
            p.author.agent_id,
            cx.ev.origin_instance_id,
            p.content,
            v,
            depth,
            path,
            hidden,
            cx.ev.origin_ts
        ])?;
    if n > 0 && !hidden {
        add_comment_count(cx.conn, &p.post_id, 1)?;
    }
    let changes = if n > 0 {
        vec![Change::CommentCreated {
            hive: cx.hive(),
            post_id: p.post_id.clone(),
            comment_id: p.comment_id.clone(),
        }]
    } else {
        Vec::new()
    };
    Ok(Outcome::Applied {
        changes,
        provides: vec![p.comment_id.clone()],
    })
}

/// Comment counts are kept incrementally: +1 per visible comment created, minus the visible
/// comments a delete hides. The result equals the number of visible comments, a function of
/// the event set; counting on every insert would be O(comments of the post).
fn add_comment_count(conn: &Conn<'_>, post_id: &str, delta: i64) -> Result<()> {
    if delta != 0 {
        conn.prepare_cached("UPDATE posts SET comment_count = comment_count + ?2 WHERE id = ?1")?
            .execute(params![post_id, delta])?;
    }
    Ok(())
}

// ── Votes ───────────────────────────────────────────────────────────────────

fn vote_cast(cx: &Ctx<'_>, p: &payload::VoteCast) -> Result<Outcome> {
    let conn = cx.conn;
    let (author_id, post_id, old_score, created_at) = match p.target_type {
        TargetType::Post => {
            let row: Option<(String, i64, i64)> = conn
                .prepare_cached(
                    "SELECT author_id, score, created_at FROM posts WHERE id = ?1 AND hive_id = ?2",
                )?
                .query_row(params![p.target_id, cx.hive_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            let Some((a, s, c)) = row else {
                return Ok(Outcome::Waiting {
                    depends_on: p.target_id.clone(),
                });
            };
            (a, p.target_id.clone(), s, c)
        }
        TargetType::Comment => {
            let row: Option<(String, String, i64, i64)> = conn
                .prepare_cached(
                    "SELECT author_id, post_id, score, created_at FROM comments WHERE id = ?1 AND hive_id = ?2",
                )?
                .query_row(params![p.target_id, cx.hive_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            let Some((a, post, s, c)) = row else {
                return Ok(Outcome::Waiting {
                    depends_on: p.target_id.clone(),
                });
            };
            (a, post, s, c)
        }
    };
    let voter_id = &p.voter.agent_id;
    let n = conn
        .prepare_cached(
            "INSERT INTO votes (target_id, voter_id, target_type, hive_id, value, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(target_id, voter_id) DO UPDATE
               SET value = excluded.value, version = excluded.version
               WHERE excluded.version > votes.version",
        )?
        .execute(params![
            p.target_id,
            voter_id,
            p.target_type.as_str(),
            cx.hive_id,
            p.value,
            cx.version()
        ])?;
    if n == 0 {
        return Ok(applied(Vec::new()));
    }
    let score: i64 = conn
        .prepare_cached(
            "SELECT CAST(COALESCE(SUM(value), 0) AS BIGINT) FROM votes WHERE target_id = ?1",
        )?
        .query_row([&p.target_id], |r| r.get(0))?;
    let delta = score - old_score;
    if delta == 0 {
        return Ok(applied(Vec::new()));
    }
    match p.target_type {
        TargetType::Post => conn
            .prepare_cached("UPDATE posts SET score = ?2, hot = ?3 WHERE id = ?1")?
            .execute(params![
                p.target_id,
                score,
                order::hot_rank(score, created_at)
            ])?,
        TargetType::Comment => conn
            .prepare_cached("UPDATE comments SET score = ?2 WHERE id = ?1")?
            .execute(params![p.target_id, score])?,
    };
    conn.prepare_cached("UPDATE agents SET karma = karma + ?2 WHERE id = ?1")?
        .execute(params![author_id, delta])?;
    Ok(applied(vec![Change::VoteUpdated {
        hive: cx.hive(),
        target_type: p.target_type,
        target_id: p.target_id.clone(),
        post_id,
        score,
        delta,
    }]))
}

// ── Digest ──────────────────────────────────────────────────────────────────

/// A canonical dump of everything the materializer derives for one hive. Two replicas that
/// applied the same set of events have equal digests.
pub fn state_digest(conn: &Conn<'_>, hive_id: &str) -> Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    let mut dump = |sql: &str, cols: usize| -> Result<()> {
        let rows = conn.prepare(sql)?.query_map([hive_id], |r| {
            (0..cols)
                .map(|i| r.get::<_, Value>(i))
                .collect::<DbResult<Vec<_>>>()
        })?;
        for r in rows {
            for v in r? {
                match v {
                    Value::Null => out.push_str("null"),
                    Value::Int(i) => {
                        let _ = write!(out, "{i}");
                    }
                    Value::Real(f) => {
                        let _ = write!(out, "{f:.9}");
                    }
                    Value::Text(t) => {
                        let _ = write!(out, "{t:?}");
                    }
                    Value::Blob(b) => {
                        let _ = write!(out, "{b:?}");
                    }
                }
                out.push('|');
            }
            out.push('\n');
        }
        out.push_str("--\n");
        Ok(())
    };
    dump(
        "SELECT name, description, is_public, require_verification, allow_anonymous_read,
                post_permissions, owner_id, owner_instance_id, created_event_id, member_count,
                post_count, deleted, created_at, updated_at
         FROM hives WHERE id = ?1",
        14,
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
