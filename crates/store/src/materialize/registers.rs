//! State registers: the hive's creation and deletion, hive settings (per key), membership
//! (per agent), moderators (per agent) and pins (per post). Every candidate value is kept in
//! `state_candidates`; the projected value (`hives` columns, `memberships`,
//! `posts.is_pinned`) is recomputed from them.
//!
//! Invariants:
//! - a register's value is the owner-preferring winner over its *heads*
//!   ([`order::owner_preferring_winner`]): a change that names another as `prev`
//!   supersedes it; among concurrent heads the hive owner's instance wins, then the later
//!   `origin_ts`, then the smaller event id. Never arrival order;
//! - the hive's creation: the earliest `hive_created` (then the smaller event id) wins; its
//!   origin is the owner's instance and its values are the base of every setting; when the
//!   winner changes, every register is recomputed;
//! - owner succession: rule 1 prefers the *deciding* instance, the owner's unless it has
//!   been silent in the hive longer than `owner_succession_secs` ([`order::deciding_instance`]
//!   over `hive_instance_activity`, the newest `origin_ts` per origin among the hive's
//!   events, noted for every event [`note_activity`] sees); when the decider changes every
//!   register is recomputed. The `owner_succession_secs` register itself always prefers the
//!   owner (the period cannot depend on who it makes decide);
//! - the owner (of the winning creation) is always a member; `member_count` counts the
//!   members plus the owner;
//! - a state event before the hive's creation (or a pin of an unknown post) waits
//!   ([`Outcome::Waiting`]);
//! - a stored candidate (value or register name) that does not decode is
//!   [`StoreError::Corrupt`], never a default such as "left", "not a moderator", "not
//!   pinned" or "unchanged". Candidates are written only here, from payloads `ingest`
//!   already validated, so a bad one is corruption, not peer input.

use super::agents::upsert_agent_snapshot;
use super::posts::find_post;
use super::{Change, Ctx, Outcome, applied, hive_dep, to_json};
use crate::engine::{Conn, DbResult, OptionalExtension, Value, params_from_iter};
use crate::error::{Result, StoreError};
use crate::params;
use openhive_core::hive::{MembershipState, Setting, SettingKey};
use openhive_core::order::{self, Candidate};
use openhive_core::payload::{
    AgentRef, HiveCreated, HiveSettingChanged, MembershipAction, MembershipChanged,
    ModeratorAction, ModeratorChanged, PostPinned,
};

// ── Pure rules ──────────────────────────────────────────────────────────────

/// A stored value that does not decode as what its register holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored value is not {expected} ({detail})")]
struct Undecodable {
    expected: &'static str,
    detail: String,
}

fn undecodable(expected: &'static str, detail: impl std::fmt::Display) -> Undecodable {
    Undecodable {
        expected,
        detail: detail.to_string(),
    }
}

/// The error for a bad candidate of `register` in hive `hive_id`.
fn corrupt(hive_id: &str, register: &str, e: Undecodable) -> StoreError {
    StoreError::Corrupt(format!(
        "state_candidates of hive {hive_id}, register {register}: {e}"
    ))
}

/// What a register's name says it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Register<'a> {
    /// `hive`: the candidates of the hive's creation.
    Creation,
    /// `setting:<key>`.
    Setting(SettingKey),
    /// `member:<agent id>`.
    Member(&'a str),
    /// `moderator:<agent id>`.
    Moderator(&'a str),
    /// `pin:<post id>`.
    Pin(&'a str),
}

/// Parses a stored register name; None for a name this binary never writes.
fn parse_register(name: &str) -> Option<Register<'_>> {
    if name == "hive" {
        return Some(Register::Creation);
    }
    let (kind, id) = name.split_once(':')?;
    if id.is_empty() {
        return None;
    }
    match kind {
        "setting" => SettingKey::parse(id).ok().map(Register::Setting),
        "member" => Some(Register::Member(id)),
        "moderator" => Some(Register::Moderator(id)),
        "pin" => Some(Register::Pin(id)),
        _ => None,
    }
}

/// The owner-preferring winner among a register's candidates, with its stored value.
fn pick_winner(
    rows: Vec<(Candidate, String)>,
    owner_instance: &str,
) -> Option<(Candidate, String)> {
    let cands: Vec<Candidate> = rows.iter().map(|(c, _)| c.clone()).collect();
    order::owner_preferring_winner(&cands, owner_instance).and_then(|i| rows.into_iter().nth(i))
}

/// What the winning creation did to the hive row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CreationEffect {
    /// The winner is the one already projected: nothing to recompute.
    Unchanged,
    /// The hive had no creation yet: it appears.
    First,
    /// An earlier creation displaced the projected one: owner and base settings change.
    Replaced,
}

fn creation_effect(current: Option<&str>, winner_event_id: &str) -> CreationEffect {
    match current {
        Some(c) if c == winner_event_id => CreationEffect::Unchanged,
        Some(_) => CreationEffect::Replaced,
        None => CreationEffect::First,
    }
}

/// A stored `hive` candidate: the `hive_created` payload as this module encoded it.
fn decode_creation(stored: &str) -> std::result::Result<HiveCreated, Undecodable> {
    serde_json::from_str(stored).map_err(|e| undecodable("a hive_created payload", e))
}

/// Sets the columns (each named as its key) of `values` in one statement: recomputing a
/// hive's settings after its creation rewrites its row once, not once per key.
fn write_settings(conn: &Conn<'_>, hive_id: &str, values: &[Setting]) -> Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    let mut sql = String::from("UPDATE hives SET ");
    let mut args = Vec::with_capacity(values.len() + 1);
    args.push(Value::Text(hive_id.to_string()));
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("{} = ?{}", v.key(), i + 2));
        args.push(match v {
            Setting::Description(s) => Value::Text(s.clone()),
            Setting::IsPublic(b)
            | Setting::RequireVerification(b)
            | Setting::AllowAnonymousRead(b) => Value::Int(i64::from(*b)),
            Setting::PostPermissions(p) => Value::Text(p.as_str().to_string()),
            Setting::OwnerSuccessionSecs(n) => Value::Int(*n),
        });
    }
    sql.push_str(" WHERE id = ?1");
    conn.prepare_cached(&sql)?
        .execute(params_from_iter(&args))?;
    Ok(())
}

/// A stored `setting:<key>` candidate: the JSON text of a value `validate::setting`
/// accepted, so of the key's type (and, for a vocabulary, one of its values).
fn decode_setting(key: SettingKey, stored: &str) -> std::result::Result<Setting, Undecodable> {
    let v: serde_json::Value = serde_json::from_str(stored).map_err(|e| undecodable("JSON", e))?;
    Setting::from_json(key, &v).map_err(|e| {
        undecodable(
            "a value of the setting's type",
            format!("{e}; found {}", json_type(&v)),
        )
    })
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A setting's base value, from the hive's winning creation.
fn base_setting(key: SettingKey, created: &HiveCreated) -> Setting {
    match key {
        SettingKey::Description => Setting::Description(created.description.clone()),
        SettingKey::IsPublic => Setting::IsPublic(created.is_public),
        SettingKey::RequireVerification => {
            Setting::RequireVerification(created.settings.require_verification)
        }
        SettingKey::AllowAnonymousRead => {
            Setting::AllowAnonymousRead(created.settings.allow_anonymous_read)
        }
        SettingKey::PostPermissions => Setting::PostPermissions(created.settings.post_permissions),
        // Not part of the creation payload: the protocol default until an event sets it.
        SettingKey::OwnerSuccessionSecs => {
            Setting::OwnerSuccessionSecs(openhive_core::hive::DEFAULT_OWNER_SUCCESSION_SECS)
        }
    }
}

/// A stored `member:<agent>` candidate → the membership state it means.
fn membership_state(stored: &str) -> std::result::Result<MembershipState, Undecodable> {
    let action: MembershipAction =
        serde_json::from_str(stored).map_err(|e| undecodable("a membership action", e))?;
    Ok(MembershipState::after(action))
}

/// A stored `moderator:<agent>` candidate → whether the agent is a moderator.
fn moderator_flag(stored: &str) -> std::result::Result<bool, Undecodable> {
    let action: ModeratorAction =
        serde_json::from_str(stored).map_err(|e| undecodable("a moderator action", e))?;
    Ok(action == ModeratorAction::Add)
}

/// A stored `pin:<post>` candidate (`bool::to_string`) → whether the post is pinned.
fn pin_flag(stored: &str) -> std::result::Result<bool, Undecodable> {
    match stored {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(undecodable(
            "`true` or `false`",
            format!("{} bytes of something else", stored.len()),
        )),
    }
}

// ── Hive ────────────────────────────────────────────────────────────────────

fn hive_exists(cx: &Ctx<'_>) -> Result<bool> {
    Ok(cx
        .conn
        .prepare_cached("SELECT created_event_id IS NOT NULL FROM hives WHERE id = ?1")?
        .query_row([cx.hive_id], |r| r.get::<_, bool>(0))
        .optional()?
        // No hive row at all: nothing created yet (not a decode failure).
        .unwrap_or(false))
}

fn wait_for_hive(cx: &Ctx<'_>) -> Outcome {
    Outcome::Waiting {
        depends_on: hive_dep(cx.hive_id),
    }
}

/// `hives.updated_at` = the latest `origin_ts` of the hive's creation and setting events
/// (a maximum over the event set, so every instance agrees).
fn touch_hive(cx: &Ctx<'_>) -> Result<()> {
    cx.conn
        .prepare_cached("UPDATE hives SET updated_at = GREATEST(updated_at, ?2) WHERE id = ?1")?
        .execute(params![cx.hive_id, cx.ev.origin_ts])?;
    Ok(())
}

pub(super) fn hive_created(cx: &Ctx<'_>, p: &HiveCreated) -> Result<Outcome> {
    let conn = cx.conn;
    touch_hive(cx)?;
    let value = to_json("hive_created payload", p)?;
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
    let effect = creation_effect(current.as_deref(), &winner_id);
    if effect == CreationEffect::Unchanged {
        return Ok(applied(Vec::new()));
    }
    let w = decode_creation(&winner_value).map_err(|e| {
        StoreError::Corrupt(format!(
            "state_candidates of hive {}, register hive, event {winner_id}: {e}",
            cx.hive_id
        ))
    })?;
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
    let change = if effect == CreationEffect::First {
        Change::HiveCreated { hive: cx.hive() }
    } else {
        Change::HiveUpdated { hive: cx.hive() }
    };
    Ok(Outcome::Applied {
        changes: vec![change],
        provides: vec![hive_dep(cx.hive_id)],
    })
}

pub(super) fn hive_deleted(cx: &Ctx<'_>) -> Result<Outcome> {
    if !hive_exists(cx)? {
        return Ok(wait_for_hive(cx));
    }
    cx.conn
        .execute("UPDATE hives SET deleted = 1 WHERE id = ?1", [cx.hive_id])?;
    Ok(applied(vec![Change::HiveDeleted { hive: cx.hive() }]))
}

pub(super) fn setting_changed(cx: &Ctx<'_>, p: &HiveSettingChanged) -> Result<Outcome> {
    // `ingest` validated the key; an unknown one never becomes a register.
    let key = SettingKey::parse(&p.key).map_err(|e| {
        StoreError::Invalid(format!("hive_setting_changed in hive {}: {e}", cx.hive_id))
    })?;
    if !hive_exists(cx)? {
        return Ok(wait_for_hive(cx));
    }
    add_candidate(
        cx,
        &format!("setting:{key}"),
        p.prev.as_deref(),
        &p.value.to_string(),
    )?;
    recompute_setting(cx.conn, cx.hive_id, key)?;
    if key == SettingKey::OwnerSuccessionSecs && refresh_decider(cx.conn, cx.hive_id, None)? {
        recompute_decided_registers(cx.conn, cx.hive_id)?;
    }
    touch_hive(cx)?;
    Ok(applied(vec![Change::HiveUpdated { hive: cx.hive() }]))
}

pub(super) fn membership_changed(cx: &Ctx<'_>, p: &MembershipChanged) -> Result<Outcome> {
    agent_register(
        cx,
        "member",
        &p.agent,
        p.prev.as_deref(),
        &p.action,
        recompute_membership,
    )
}

pub(super) fn moderator_changed(cx: &Ctx<'_>, p: &ModeratorChanged) -> Result<Outcome> {
    agent_register(
        cx,
        "moderator",
        &p.agent,
        p.prev.as_deref(),
        &p.action,
        recompute_moderator,
    )
}

pub(super) fn post_pinned(cx: &Ctx<'_>, p: &PostPinned) -> Result<Outcome> {
    if find_post(cx.conn, cx.hive_id, &p.post_id)?.is_none() {
        return Ok(Outcome::Waiting {
            depends_on: p.post_id.clone(),
        });
    }
    if !hive_exists(cx)? {
        return Ok(wait_for_hive(cx));
    }
    add_candidate(
        cx,
        &format!("pin:{}", p.post_id),
        p.prev.as_deref(),
        &p.pinned.to_string(),
    )?;
    recompute_pin(cx.conn, cx.hive_id, &p.post_id)?;
    Ok(applied(vec![Change::PostUpdated {
        hive: cx.hive(),
        post_id: p.post_id.clone(),
    }]))
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
        return Ok(wait_for_hive(cx));
    }
    upsert_agent_snapshot(cx, agent)?;
    let action = to_json("membership or moderator action", action)?;
    add_candidate(cx, &format!("{kind}:{}", agent.agent_id), prev, &action)?;
    recompute(cx.conn, cx.hive_id, &agent.agent_id)?;
    Ok(applied(vec![Change::MembershipChanged {
        hive: cx.hive(),
        agent_id: agent.agent_id.clone(),
    }]))
}

// ── Candidates and winners ──────────────────────────────────────────────────

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
    // Rule 1 prefers the deciding instance, except for the succession period itself, which
    // prefers the owner (what decides the decider cannot depend on the decider).
    let (owner, decider): (Option<String>, Option<String>) = conn
        .prepare_cached("SELECT owner_instance_id, deciding_instance_id FROM hives WHERE id = ?1")?
        .query_row([hive_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let preferred = if register == SUCCESSION_REGISTER {
        owner
    } else {
        decider
    };
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
    // owner_instance_id (and the decider) is NULL until the creation is applied (a
    // legitimate state, not a decode failure): then no candidate is preferred.
    Ok(pick_winner(rows, preferred.as_deref().unwrap_or("")))
}

// ── Recomputation ───────────────────────────────────────────────────────────

// ── Owner succession ────────────────────────────────────────────────────────

/// The register of `owner_succession_secs`, the one rule 1 of which prefers the owner.
const SUCCESSION_REGISTER: &str = "setting:owner_succession_secs";

/// Notes `cx.ev` in `hive_instance_activity` (its origin's newest `origin_ts` in the hive)
/// and, if that moved, recomputes the deciding instance, and every register when it
/// changed. Idempotent (a maximum): an event applied again after waiting changes nothing.
/// Returns whether the decider changed.
///
/// In a batch ([`super::Batch`]), an origin's first event in a hive is noted at once and its
/// later ones only raise a maximum kept in memory, noted by [`flush_activity`] before the
/// transaction ends: the activity is a maximum and the decider a function of the maxima, so
/// noting the batch's maximum once ends in the same decider, and when that differs from the
/// one the batch's registers were computed with, every register is recomputed then.
pub(super) fn note_activity(cx: &Ctx<'_>) -> Result<bool> {
    let ts = cx.ev.origin_ts;
    if let Some(batch) = cx.batch {
        let mut batch = batch.borrow_mut();
        let key = (cx.hive_id.to_string(), cx.ev.origin_instance_id.clone());
        if let Some(seen) = batch.activity.get_mut(&key) {
            if ts > seen.highest {
                seen.highest = ts;
                seen.unnoted = true;
            }
            return Ok(false);
        }
        batch.activity.insert(
            key,
            Activity {
                hive: cx.hive(),
                highest: ts,
                unnoted: false,
            },
        );
    }
    note(cx.conn, cx.hive_id, &cx.ev.origin_instance_id, ts)
}

/// One origin's newest time in one hive, as a batch saw it.
#[derive(Debug)]
pub(super) struct Activity {
    /// The hive's name (for the change notice).
    hive: String,
    highest: i64,
    /// `highest` came after the origin's first event of the batch and is not noted yet.
    unnoted: bool,
}

/// Notes what a batch's later events raised (see [`note_activity`]); the hives whose
/// decider changed get a `HiveUpdated` change.
pub(super) fn flush_activity(
    conn: &Conn<'_>,
    activity: std::collections::BTreeMap<(String, String), Activity>,
    changes: &mut Vec<super::Change>,
) -> Result<()> {
    for ((hive_id, origin), a) in activity {
        if a.unnoted && note(conn, &hive_id, &origin, a.highest)? {
            changes.push(super::Change::HiveUpdated { hive: a.hive });
        }
    }
    Ok(())
}

/// Raises `origin`'s activity in the hive to `ts`; if that moved the decider, recomputes
/// every register it decides. True if the decider changed.
fn note(conn: &Conn<'_>, hive_id: &str, origin: &str, ts: i64) -> Result<bool> {
    // One statement: it writes (and counts a row) only when `ts` raises the activity.
    let raised = conn
        .prepare_cached(
            "INSERT INTO hive_instance_activity (hive_id, instance_id, last_ts) VALUES (?1, ?2, ?3)
             ON CONFLICT (hive_id, instance_id)
             DO UPDATE SET last_ts = excluded.last_ts
             WHERE excluded.last_ts > hive_instance_activity.last_ts",
        )?
        .execute(params![hive_id, origin, ts])?;
    if raised == 0 {
        return Ok(false);
    }
    if !refresh_decider(conn, hive_id, Some(origin))? {
        return Ok(false);
    }
    recompute_decided_registers(conn, hive_id)?;
    Ok(true)
}

/// Recomputes `hives.deciding_instance_id` from the owner, the projected
/// `owner_succession_secs` and the activity; true if it changed. `raised`: the one instance
/// whose activity changed since the stored decider was computed, if that is all that did.
fn refresh_decider(conn: &Conn<'_>, hive_id: &str, raised: Option<&str>) -> Result<bool> {
    let row: Option<(Option<String>, i64, Option<String>)> = conn
        .prepare_cached(
            "SELECT owner_instance_id, owner_succession_secs, deciding_instance_id
             FROM hives WHERE id = ?1",
        )?
        .query_row([hive_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((owner, period, current)) = row else {
        return Ok(false);
    };
    // The owner's own activity never moves the decision off the owner: a newer owner event
    // only makes it less silent (`order::deciding_instance`, and the proptest
    // `raising_the_owners_activity_keeps_it_deciding` beside it). That is every event of a
    // hive's owner, so most writes skip reading every instance's activity here.
    if owner.is_some() && raised == owner.as_deref() && current == owner {
        return Ok(false);
    }
    // With succession off (period 0) the rule reads no activity: none is loaded.
    let activity: Vec<(String, i64)> = if period > 0 {
        conn.prepare_cached(
            "SELECT instance_id, last_ts FROM hive_instance_activity WHERE hive_id = ?1",
        )?
        .query_map([hive_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<DbResult<_>>()?
    } else {
        Vec::new()
    };
    let decider = order::deciding_instance(owner.as_deref(), period, &activity);
    if decider == current {
        return Ok(false);
    }
    tracing::info!(
        hive = hive_id,
        owner = owner.as_deref().unwrap_or(""),
        from = current.as_deref().unwrap_or(""),
        to = decider.as_deref().unwrap_or(""),
        "the instance deciding the hive's conflicts changed"
    );
    conn.prepare_cached("UPDATE hives SET deciding_instance_id = ?2 WHERE id = ?1")?
        .execute(params![hive_id, decider])?;
    Ok(true)
}

// ── Recomputation ───────────────────────────────────────────────────────────

fn recompute_all_registers(conn: &Conn<'_>, hive_id: &str) -> Result<()> {
    // The period first (it prefers the owner), then the decider it gives, then everything
    // the decider decides.
    let mut known = Known::read(conn, hive_id)?;
    recompute_setting_in(conn, hive_id, SettingKey::OwnerSuccessionSecs, &mut known)?;
    refresh_decider(conn, hive_id, None)?;
    recompute_decided_in(conn, hive_id, &mut known)
}

/// What recomputing many registers of one hive reads once, not once per register: which
/// registers have candidates at all, and (when first needed) the winning creation's payload.
struct Known {
    /// The registers with candidates (`hive` included), in the order stored.
    registers: Vec<String>,
    /// The winning creation's payload, decoded: `None` until read, then `Some(None)` if the
    /// hive has none.
    created: Option<Option<HiveCreated>>,
}

impl Known {
    fn read(conn: &Conn<'_>, hive_id: &str) -> Result<Known> {
        let registers = conn
            .prepare_cached("SELECT DISTINCT register FROM state_candidates WHERE hive_id = ?1")?
            .query_map([hive_id], |r| r.get(0))?
            .collect::<DbResult<_>>()?;
        Ok(Known {
            registers,
            created: None,
        })
    }

    /// The winning creation's payload (read and decoded at the first call).
    fn created(&mut self, conn: &Conn<'_>, hive_id: &str) -> Result<Option<&HiveCreated>> {
        if self.created.is_none() {
            let stored: Option<String> = conn
                .prepare_cached(
                    "SELECT c.value FROM hives h JOIN state_candidates c
                       ON c.hive_id = h.id AND c.register = 'hive' AND c.event_id = h.created_event_id
                     WHERE h.id = ?1",
                )?
                .query_row([hive_id], |r| r.get(0))
                .optional()?;
            let decoded = stored
                .map(|s| decode_creation(&s).map_err(|e| corrupt(hive_id, "hive", e)))
                .transpose()?;
            self.created = Some(decoded);
        }
        Ok(self.created.as_ref().and_then(Option::as_ref))
    }
}

/// Every register rule 1 of which prefers the deciding instance.
fn recompute_decided_registers(conn: &Conn<'_>, hive_id: &str) -> Result<()> {
    let mut known = Known::read(conn, hive_id)?;
    recompute_decided_in(conn, hive_id, &mut known)
}

fn recompute_decided_in(conn: &Conn<'_>, hive_id: &str, known: &mut Known) -> Result<()> {
    // Base values come from the winning creation; registers override them.
    let mut values = Vec::with_capacity(SettingKey::ALL.len());
    for &key in SettingKey::ALL {
        if key != SettingKey::OwnerSuccessionSecs {
            values.extend(setting_value(conn, hive_id, key, known)?);
        }
    }
    write_settings(conn, hive_id, &values)?;
    for reg in known.registers.iter().filter(|r| *r != "hive") {
        match parse_register(reg) {
            Some(Register::Member(agent)) => recompute_membership(conn, hive_id, agent)?,
            Some(Register::Moderator(agent)) => recompute_moderator(conn, hive_id, agent)?,
            Some(Register::Pin(post)) => recompute_pin(conn, hive_id, post)?,
            // Settings were recomputed above, key by key; the creation is not a register
            // this loop sees.
            Some(Register::Setting(_) | Register::Creation) => {}
            None => {
                return Err(StoreError::Corrupt(format!(
                    "state_candidates of hive {hive_id}: register name {reg:?} is of no known kind"
                )));
            }
        }
    }
    Ok(())
}

fn recompute_setting(conn: &Conn<'_>, hive_id: &str, key: SettingKey) -> Result<()> {
    // One key: its winner is looked for without listing the hive's registers first.
    let mut known = Known {
        registers: vec![format!("setting:{key}")],
        created: None,
    };
    recompute_setting_in(conn, hive_id, key, &mut known)
}

fn recompute_setting_in(
    conn: &Conn<'_>,
    hive_id: &str,
    key: SettingKey,
    known: &mut Known,
) -> Result<()> {
    let value = setting_value(conn, hive_id, key, known)?;
    write_settings(conn, hive_id, value.as_slice())
}

/// The value `key` takes: its register's winner, else the base value of the hive's winning
/// creation; `None` if the hive has neither (nothing to set).
fn setting_value(
    conn: &Conn<'_>,
    hive_id: &str,
    key: SettingKey,
    known: &mut Known,
) -> Result<Option<Setting>> {
    let register = format!("setting:{key}");
    // No candidate: no winner to look for (`register_winner` would find none).
    let winner = match known.registers.contains(&register) {
        true => register_winner(conn, hive_id, &register)?,
        false => None,
    };
    Ok(match winner {
        Some((v, _)) => Some(decode_setting(key, &v).map_err(|e| corrupt(hive_id, &register, e))?),
        None => known
            .created(conn, hive_id)?
            .map(|created| base_setting(key, created)),
    })
}

fn ensure_membership_row(conn: &Conn<'_>, hive_id: &str, agent_id: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO memberships (hive_id, agent_id, state, is_moderator, joined_at)
         VALUES (?1, ?2, ?3, 0, 0) ON CONFLICT DO NOTHING",
    )?
    .execute(params![hive_id, agent_id, MembershipState::Left.as_str()])?;
    Ok(())
}

fn recompute_membership(conn: &Conn<'_>, hive_id: &str, agent_id: &str) -> Result<()> {
    ensure_membership_row(conn, hive_id, agent_id)?;
    let register = format!("member:{agent_id}");
    let (state, ts) = match register_winner(conn, hive_id, &register)? {
        Some((v, ts)) => (
            membership_state(&v).map_err(|e| corrupt(hive_id, &register, e))?,
            ts,
        ),
        None => (MembershipState::Left, 0),
    };
    conn.execute(
        "UPDATE memberships SET state = ?3, joined_at = ?4 WHERE hive_id = ?1 AND agent_id = ?2",
        params![hive_id, agent_id, state.as_str(), ts],
    )?;
    recompute_member_count(conn, hive_id)
}

fn recompute_moderator(conn: &Conn<'_>, hive_id: &str, agent_id: &str) -> Result<()> {
    ensure_membership_row(conn, hive_id, agent_id)?;
    let register = format!("moderator:{agent_id}");
    let is_mod = match register_winner(conn, hive_id, &register)? {
        Some((v, _)) => moderator_flag(&v).map_err(|e| corrupt(hive_id, &register, e))?,
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
             WHERE m.hive_id = hives.id AND m.state = ?2
               AND m.agent_id IS DISTINCT FROM hives.owner_id)
           + CASE WHEN owner_id IS NOT NULL THEN 1 ELSE 0 END
         WHERE id = ?1",
        params![hive_id, MembershipState::Member.as_str()],
    )?;
    Ok(())
}

fn recompute_pin(conn: &Conn<'_>, hive_id: &str, post_id: &str) -> Result<()> {
    let register = format!("pin:{post_id}");
    let pinned = match register_winner(conn, hive_id, &register)? {
        Some((v, _)) => pin_flag(&v).map_err(|e| corrupt(hive_id, &register, e))?,
        None => false,
    };
    conn.execute(
        "UPDATE posts SET is_pinned = ?2 WHERE id = ?1",
        params![post_id, pinned],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openhive_core::hive::PostPermissions;
    use openhive_core::payload::HiveSettings;

    fn cand(id: &str, prev: Option<&str>, inst: &str, ts: i64, value: &str) -> (Candidate, String) {
        (
            Candidate {
                event_id: id.into(),
                prev: prev.map(Into::into),
                origin_instance_id: inst.into(),
                origin_ts: ts,
            },
            value.into(),
        )
    }

    fn winner_value(rows: Vec<(Candidate, String)>, owner: &str) -> Option<String> {
        pick_winner(rows, owner).map(|(_, v)| v)
    }

    #[test]
    fn a_concurrent_non_owner_change_loses_to_the_owners_even_if_later() {
        let rows = vec![
            cand("e1", None, "inst_owner", 10, "\"owner\""),
            cand("e2", None, "inst_other", 20, "\"other\""),
        ];
        assert_eq!(
            winner_value(rows, "inst_owner").as_deref(),
            Some("\"owner\"")
        );
    }

    #[test]
    fn a_change_that_saw_the_owners_value_supersedes_it() {
        let rows = vec![
            cand("e1", None, "inst_owner", 10, "\"owner\""),
            cand("e2", Some("e1"), "inst_other", 5, "\"other\""),
        ];
        assert_eq!(
            winner_value(rows, "inst_owner").as_deref(),
            Some("\"other\"")
        );
    }

    #[test]
    fn without_the_owner_later_wins_then_smaller_id() {
        let rows = vec![
            cand("e1", None, "inst_b", 10, "b"),
            cand("e2", None, "inst_c", 20, "c"),
        ];
        assert_eq!(winner_value(rows, "inst_a").as_deref(), Some("c"));
        let rows = vec![
            cand("e2", None, "inst_b", 10, "b"),
            cand("e1", None, "inst_c", 10, "c"),
        ];
        assert_eq!(winner_value(rows, "inst_a").as_deref(), Some("c"));
        // Before the creation is known there is no owner: the same order, no preference.
        let rows = vec![
            cand("e1", None, "inst_b", 10, "b"),
            cand("e2", None, "inst_c", 20, "c"),
        ];
        assert_eq!(winner_value(rows, "").as_deref(), Some("c"));
    }

    #[test]
    fn the_winner_carries_its_own_value_whatever_the_row_order() {
        let mut rows = vec![
            cand("e1", None, "inst_owner", 10, "one"),
            cand("e2", Some("e1"), "inst_b", 20, "two"),
            cand("e3", None, "inst_c", 30, "three"),
        ];
        let (c, v) = pick_winner(rows.clone(), "inst_x").unwrap();
        assert_eq!((c.event_id.as_str(), v.as_str()), ("e3", "three"));
        rows.reverse();
        let (c, v) = pick_winner(rows, "inst_x").unwrap();
        assert_eq!((c.event_id.as_str(), v.as_str()), ("e3", "three"));
        assert_eq!(pick_winner(Vec::new(), "inst_x"), None);
    }

    #[test]
    fn the_succession_register_is_the_settings() {
        assert_eq!(
            SUCCESSION_REGISTER,
            format!("setting:{}", SettingKey::OwnerSuccessionSecs)
        );
        assert_eq!(
            parse_register(SUCCESSION_REGISTER),
            Some(Register::Setting(SettingKey::OwnerSuccessionSecs))
        );
    }

    #[test]
    fn creation_effects() {
        assert_eq!(creation_effect(None, "e1"), CreationEffect::First);
        assert_eq!(creation_effect(Some("e1"), "e1"), CreationEffect::Unchanged);
        assert_eq!(creation_effect(Some("e2"), "e1"), CreationEffect::Replaced);
    }

    #[test]
    fn register_names_round_trip_and_unknown_ones_are_refused() {
        assert_eq!(parse_register("hive"), Some(Register::Creation));
        assert_eq!(
            parse_register("setting:description"),
            Some(Register::Setting(SettingKey::Description))
        );
        assert_eq!(
            parse_register("member:agt_a_1"),
            Some(Register::Member("agt_a_1"))
        );
        assert_eq!(
            parse_register("moderator:agt_a_1"),
            Some(Register::Moderator("agt_a_1"))
        );
        assert_eq!(
            parse_register("pin:post_a_1"),
            Some(Register::Pin("post_a_1"))
        );
        for bad in [
            "",
            "hive:",
            "member:",
            "pin",
            "owner:agt_a_1",
            "setting:colour",
        ] {
            assert_eq!(parse_register(bad), None, "{bad}");
        }
    }

    #[test]
    fn membership_values_decode_to_states() {
        for (action, state) in [
            (MembershipAction::Join, MembershipState::Member),
            (MembershipAction::Leave, MembershipState::Left),
            (MembershipAction::Ban, MembershipState::Banned),
            (MembershipAction::Unban, MembershipState::Left),
        ] {
            let stored = to_json("action", &action).unwrap();
            assert_eq!(membership_state(&stored), Ok(state));
        }
        // Not "left" by default: a bad value is an error.
        assert!(membership_state("\"joined\"").is_err());
        assert!(membership_state("").is_err());
    }

    #[test]
    fn moderator_values_decode_to_flags() {
        let add = to_json("action", &ModeratorAction::Add).unwrap();
        let remove = to_json("action", &ModeratorAction::Remove).unwrap();
        assert_eq!(moderator_flag(&add), Ok(true));
        assert_eq!(moderator_flag(&remove), Ok(false));
        assert!(moderator_flag("add").is_err());
        assert!(moderator_flag("").is_err());
    }

    #[test]
    fn pin_values_decode_to_flags() {
        assert_eq!(pin_flag(&true.to_string()), Ok(true));
        assert_eq!(pin_flag(&false.to_string()), Ok(false));
        for bad in ["", "TRUE", "1", "\"true\""] {
            assert!(pin_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn setting_values_decode_by_the_keys_type() {
        let stored = serde_json::json!("hello").to_string();
        assert_eq!(
            decode_setting(SettingKey::Description, &stored),
            Ok(Setting::Description("hello".into()))
        );
        assert_eq!(
            decode_setting(SettingKey::IsPublic, &serde_json::json!(false).to_string()),
            Ok(Setting::IsPublic(false))
        );
        assert_eq!(
            decode_setting(SettingKey::PostPermissions, "\"mods\""),
            Ok(Setting::PostPermissions(PostPermissions::Mods))
        );
        // Not JSON, JSON of the wrong type, or outside the vocabulary: never "unchanged".
        assert!(decode_setting(SettingKey::Description, "{not json").is_err());
        assert!(decode_setting(SettingKey::Description, "42").is_err());
        assert!(decode_setting(SettingKey::IsPublic, "\"true\"").is_err());
        assert!(decode_setting(SettingKey::IsPublic, "null").is_err());
        assert!(decode_setting(SettingKey::PostPermissions, "\"kings\"").is_err());
        assert!(decode_setting(SettingKey::PostPermissions, "true").is_err());
        assert_eq!(parse_register("setting:colour"), None);
    }

    #[test]
    fn every_setting_key_has_a_base_value() {
        let created = HiveCreated {
            name: "general".into(),
            description: "d".into(),
            is_public: false,
            settings: HiveSettings {
                post_permissions: PostPermissions::Members,
                ..HiveSettings::default()
            },
            owner: AgentRef {
                instance_id: "inst_a".into(),
                agent_id: "agt_a_1".into(),
                name: "a".into(),
                avatar_url: None,
            },
        };
        for &key in SettingKey::ALL {
            let base = base_setting(key, &created);
            assert_eq!(base.key(), key, "{base:?}");
            // The base value is one its register could hold.
            assert_eq!(decode_setting(key, &base.to_json().to_string()), Ok(base));
        }
        assert_eq!(
            base_setting(SettingKey::Description, &created),
            Setting::Description("d".into())
        );
        assert_eq!(
            base_setting(SettingKey::IsPublic, &created),
            Setting::IsPublic(false)
        );
        assert_eq!(
            base_setting(SettingKey::PostPermissions, &created),
            Setting::PostPermissions(PostPermissions::Members)
        );
    }

    #[test]
    fn a_stored_creation_decodes_or_is_an_error() {
        let created = HiveCreated {
            name: "general".into(),
            description: String::new(),
            is_public: true,
            settings: HiveSettings::default(),
            owner: AgentRef {
                instance_id: "inst_a".into(),
                agent_id: "agt_a_1".into(),
                name: "a".into(),
                avatar_url: None,
            },
        };
        let stored = to_json("hive_created", &created).unwrap();
        assert_eq!(decode_creation(&stored), Ok(created));
        assert!(decode_creation("").is_err());
        assert!(decode_creation("{\"name\":\"general\"}").is_err());
        // A creation whose post_permissions is outside the vocabulary does not decode.
        let bad = stored.replace(
            "\"post_permissions\":\"all\"",
            "\"post_permissions\":\"kings\"",
        );
        assert_ne!(bad, stored);
        assert!(decode_creation(&bad).is_err());
    }

    #[test]
    fn corrupt_errors_name_the_register_not_the_value() {
        let e = corrupt(
            "hive_1",
            "pin:post_a_1",
            pin_flag("s3cret-ish").unwrap_err(),
        );
        let StoreError::Corrupt(msg) = e else {
            panic!("not Corrupt: {e:?}");
        };
        assert!(
            msg.contains("hive_1") && msg.contains("pin:post_a_1"),
            "{msg}"
        );
        assert!(!msg.contains("s3cret"), "{msg}");
    }
}
