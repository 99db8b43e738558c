//! Hive rows: the log anchor of each hive and the hive read model.

use crate::engine::{Conn, DbResult, OptionalExtension, Row};
use crate::error::{Result, StoreError};
use crate::params;
use openhive_core::hive::{MembershipState, PostPermissions};

/// The local id of the hive named `name`, if its log exists.
pub fn id_by_name(conn: &Conn<'_>, name: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT id FROM hives WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

/// Returns the id of the hive named `name`, creating its (empty, not yet visible) row and
/// log if needed. Its times come from its events (0 until the creation is applied).
pub fn ensure_log(conn: &Conn<'_>, name: &str) -> Result<String> {
    if let Some(id) = id_by_name(conn, name)? {
        return Ok(id);
    }
    let id = format!(
        "hive_{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    );
    conn.execute(
        "INSERT INTO hives (id, name, created_at, updated_at) VALUES (?1, ?2, 0, 0)",
        params![id, name],
    )?;
    crate::log::create(conn, &id)?;
    Ok(id)
}

/// A visible hive (created, not deleted).
#[derive(Debug, Clone)]
pub struct HiveRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub is_public: bool,
    pub require_verification: bool,
    pub allow_anonymous_read: bool,
    pub post_permissions: PostPermissions,
    pub owner_id: Option<String>,
    pub owner_instance_id: Option<String>,
    /// The instance whose changes win concurrent register conflicts now: the owner's, or
    /// its successor once the owner has been silent past `owner_succession_secs`.
    pub deciding_instance_id: Option<String>,
    pub owner_succession_secs: i64,
    pub member_count: i64,
    /// The head of the hive's log (last assigned seq).
    pub seq: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const HIVE_COLS: &str = "id, name, description, is_public, require_verification, \
    allow_anonymous_read, post_permissions, owner_id, owner_instance_id, member_count, \
    COALESCE((SELECT l.head_seq FROM hive_logs l WHERE l.hive_id = hives.id), 0), \
    created_at, updated_at, deciding_instance_id, owner_succession_secs";

/// A `hives` row as read: a column that does not decode is a database error, a stored
/// value outside its vocabulary is [`StoreError::Corrupt`] (the inner result).
fn hive_row(r: &Row<'_>) -> DbResult<Result<HiveRow>> {
    let id: String = r.get(0)?;
    let post_permissions: String = r.get(6)?;
    let post_permissions = match PostPermissions::parse(&post_permissions) {
        Ok(p) => p,
        Err(e) => return Ok(Err(StoreError::Corrupt(format!("hives row {id}: {e}")))),
    };
    Ok(Ok(HiveRow {
        id,
        name: r.get(1)?,
        description: r.get(2)?,
        is_public: r.get(3)?,
        require_verification: r.get(4)?,
        allow_anonymous_read: r.get(5)?,
        post_permissions,
        owner_id: r.get(7)?,
        owner_instance_id: r.get(8)?,
        member_count: r.get(9)?,
        seq: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
        deciding_instance_id: r.get(13)?,
        owner_succession_secs: r.get(14)?,
    }))
}

/// The visible hive named `name`.
pub fn get_by_name(conn: &Conn<'_>, name: &str) -> Result<Option<HiveRow>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {HIVE_COLS} FROM hives
             WHERE name = ?1 AND created_event_id IS NOT NULL AND deleted = 0"
        )
    });
    conn.prepare_cached(&SQL)?
        .query_row([name], hive_row)
        .optional()?
        .transpose()
}

/// The visible hive with local id `id`.
pub fn get_by_id(conn: &Conn<'_>, id: &str) -> Result<Option<HiveRow>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {HIVE_COLS} FROM hives
             WHERE id = ?1 AND created_event_id IS NOT NULL AND deleted = 0"
        )
    });
    conn.prepare_cached(&SQL)?
        .query_row([id], hive_row)
        .optional()?
        .transpose()
}

/// Hives `viewer` may see (public, or private ones it belongs to), most members first.
pub fn list(
    conn: &Conn<'_>,
    viewer: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<HiveRow>, i64)> {
    let filter = "created_event_id IS NOT NULL AND deleted = 0 AND (is_public = 1 OR owner_id = ?1
        OR EXISTS (SELECT 1 FROM memberships m WHERE m.hive_id = hives.id AND m.agent_id = ?1
                   AND (m.state = 'member' OR m.is_moderator = 1)))";
    let viewer = viewer.unwrap_or("");
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {HIVE_COLS} FROM hives WHERE {filter}
             ORDER BY member_count DESC, name ASC LIMIT ?2 OFFSET ?3"
        ))?
        .query_map(params![viewer, limit, offset], hive_row)?
        .collect::<DbResult<Vec<_>>>()?
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let total = conn.query_row(
        &format!("SELECT COUNT(*) FROM hives WHERE {filter}"),
        [viewer],
        |r| r.get(0),
    )?;
    Ok((rows, total))
}

/// An agent's standing in a hive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Banned,
    None,
    Member,
    Moderator,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Banned => "banned",
            Role::None => "none",
            Role::Member => "member",
            Role::Moderator => "moderator",
            Role::Owner => "owner",
        }
    }
    /// Member, moderator or owner.
    pub fn is_member(self) -> bool {
        self >= Role::Member
    }
    /// Moderator or owner.
    pub fn is_moderator(self) -> bool {
        self >= Role::Moderator
    }
}

/// The role of `agent_id` in `hive`.
pub fn role(conn: &Conn<'_>, hive: &HiveRow, agent_id: &str) -> Result<Role> {
    if hive.owner_id.as_deref() == Some(agent_id) {
        return Ok(Role::Owner);
    }
    let row: Option<(String, bool)> = conn
        .prepare_cached(
            "SELECT state, is_moderator FROM memberships WHERE hive_id = ?1 AND agent_id = ?2",
        )?
        .query_row(params![hive.id, agent_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((state, is_moderator)) = row else {
        return Ok(Role::None);
    };
    let state = membership_state(&hive.id, agent_id, &state)?;
    Ok(role_of(state, is_moderator))
}

/// The role a (non-owner) membership row gives: a ban outranks the moderator flag.
fn role_of(state: MembershipState, is_moderator: bool) -> Role {
    match (state, is_moderator) {
        (MembershipState::Banned, _) => Role::Banned,
        (_, true) => Role::Moderator,
        (MembershipState::Member, false) => Role::Member,
        (MembershipState::Left, false) => Role::None,
    }
}

/// A stored `memberships.state`; anything else is [`StoreError::Corrupt`].
fn membership_state(hive_id: &str, agent_id: &str, stored: &str) -> Result<MembershipState> {
    MembershipState::parse(stored)
        .map_err(|e| StoreError::Corrupt(format!("memberships row ({hive_id}, {agent_id}): {e}")))
}

/// A member listing entry.
#[derive(Debug, Clone)]
pub struct MemberRow {
    pub agent_id: String,
    pub role: Role,
    pub joined_at: i64,
}

/// Members (owner, moderators, members) of a hive, owner first, then by join time.
pub fn members(
    conn: &Conn<'_>,
    hive: &HiveRow,
    limit: i64,
    offset: i64,
) -> Result<(Vec<MemberRow>, i64)> {
    let owner = hive.owner_id.clone().unwrap_or_default();
    let (member, banned) = (
        MembershipState::Member.as_str(),
        MembershipState::Banned.as_str(),
    );
    let sql = "SELECT agent_id, state, is_moderator, joined_at FROM (
                 SELECT CAST(?2 AS TEXT) AS agent_id, CAST(?6 AS TEXT) AS state,
                        0 AS is_moderator, CAST(?3 AS BIGINT) AS joined_at, 0 AS o
                 WHERE ?2 <> ''
                 UNION ALL
                 SELECT agent_id, state, is_moderator, joined_at, 1 AS o FROM memberships
                 WHERE hive_id = ?1 AND agent_id <> ?2 AND state <> ?7
                   AND (state = ?6 OR is_moderator = 1)) AS members
               ORDER BY o, joined_at, agent_id LIMIT ?4 OFFSET ?5";
    let rows = conn
        .prepare_cached(sql)?
        .query_map(
            params![
                hive.id,
                owner,
                hive.created_at,
                limit,
                offset,
                member,
                banned
            ],
            |r| {
                let agent_id: String = r.get(0)?;
                let state: String = r.get(1)?;
                let is_mod: bool = r.get(2)?;
                Ok((agent_id, state, is_mod, r.get::<_, i64>(3)?))
            },
        )?
        .collect::<DbResult<Vec<_>>>()?;
    let total: i64 = conn.query_row(
        "SELECT COUNT(*) FROM memberships WHERE hive_id = ?1 AND agent_id <> ?2
           AND state <> ?4 AND (state = ?3 OR is_moderator = 1)",
        params![hive.id, owner, member, banned],
        |r| r.get(0),
    )?;
    let out = rows
        .into_iter()
        .map(|(agent_id, state, is_mod, joined_at)| {
            let role = if agent_id == owner {
                Role::Owner
            } else {
                role_of(membership_state(&hive.id, &agent_id, &state)?, is_mod)
            };
            Ok(MemberRow {
                agent_id,
                role,
                joined_at,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((out, total + i64::from(!owner.is_empty())))
}

/// The event id of the current winner of a state register (what a new change supersedes).
pub fn register_head(conn: &Conn<'_>, hive_id: &str, register: &str) -> Result<Option<String>> {
    crate::materialize::register_winner_event(conn, hive_id, register)
}

/// An agent (local first, else a cached remote one) by name, as events name it.
pub fn find_agent(conn: &Conn<'_>, name: &str) -> Result<Option<openhive_core::payload::AgentRef>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, name, instance_id, avatar_url FROM agents WHERE name = ?1
             ORDER BY is_local DESC, id LIMIT 1",
        )?
        .query_row([name], |r| {
            Ok(openhive_core::payload::AgentRef {
                agent_id: r.get(0)?,
                name: r.get(1)?,
                instance_id: r.get(2)?,
                avatar_url: r.get(3)?,
            })
        })
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_membership_row_gives_a_role_and_a_ban_outranks_the_moderator_flag() {
        use MembershipState as S;
        for (state, is_moderator, role) in [
            (S::Member, false, Role::Member),
            (S::Member, true, Role::Moderator),
            (S::Left, false, Role::None),
            (S::Left, true, Role::Moderator),
            (S::Banned, false, Role::Banned),
            (S::Banned, true, Role::Banned),
        ] {
            assert_eq!(role_of(state, is_moderator), role, "{state} {is_moderator}");
        }
    }

    #[test]
    fn a_stored_state_outside_the_vocabulary_is_corrupt() {
        assert_eq!(
            membership_state("hive_1", "agt_a_1", "banned").ok(),
            Some(MembershipState::Banned)
        );
        for bad in ["", "joined", "Member"] {
            let e = membership_state("hive_1", "agt_a_1", bad).unwrap_err();
            assert!(matches!(e, StoreError::Corrupt(_)), "{bad:?}: {e:?}");
        }
    }
}
