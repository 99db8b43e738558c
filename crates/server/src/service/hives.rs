//! Hive lifecycle, settings, membership, moderators and bans, as events.

use super::{Actor, HiveService, Result, ServiceError};
use openhive_core::hive::{PostPermissions, Setting};
use openhive_core::payload::{
    AgentRef, HiveCreated, HiveDeleted, HiveSettingChanged, HiveSettings, MembershipAction,
    MembershipChanged, ModeratorAction, ModeratorChanged, Payload,
};
use openhive_core::validate;
use openhive_store::Conn;
use openhive_store::hives::{self, HiveRow, Role};

/// A new hive.
#[derive(Debug, Clone)]
pub struct HiveInput {
    pub name: String,
    pub description: String,
    pub is_public: bool,
    pub settings: HiveSettings,
    /// `owner_succession_secs` (not part of the creation payload): if given and not the
    /// protocol default, set by a setting event right after the creation.
    pub owner_succession_secs: Option<i64>,
}

/// A settings change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct HivePatch {
    pub description: Option<String>,
    pub is_public: Option<bool>,
    pub require_verification: Option<bool>,
    pub allow_anonymous_read: Option<bool>,
    pub post_permissions: Option<PostPermissions>,
    pub owner_succession_secs: Option<i64>,
}

pub(super) fn visible_hive(conn: &Conn<'_>, name: &str) -> Result<HiveRow> {
    hives::get_by_name(conn, name)?.ok_or(ServiceError::NotFound("hive"))
}

fn forbidden(msg: &str) -> ServiceError {
    ServiceError::Forbidden(msg.to_string())
}

/// An agent (local or remote) by name, as events name it.
fn agent_named(conn: &Conn<'_>, name: &str) -> Result<AgentRef> {
    hives::find_agent(conn, name)?.ok_or(ServiceError::NotFound("agent"))
}

impl HiveService {
    pub async fn create_hive(&self, actor: &Actor, input: HiveInput) -> Result<HiveRow> {
        validate::hive_name(&input.name).map_err(ServiceError::BadRequest)?;
        validate::hive_description(&input.description).map_err(ServiceError::BadRequest)?;
        let owner = self.agent_ref(actor);
        self.write(move |conn, emit| {
            if hives::id_by_name(conn, &input.name)?.is_some() {
                return Err(ServiceError::Conflict(format!(
                    "hive {} already exists",
                    input.name
                )));
            }
            let hive_id = hives::ensure_log(conn, &input.name)?;
            emit.event(
                &hive_id,
                &input.name,
                Payload::HiveCreated(HiveCreated {
                    name: input.name.clone(),
                    description: input.description,
                    is_public: input.is_public,
                    settings: input.settings,
                    owner: owner.clone(),
                }),
            )?;
            if let Some(secs) = input
                .owner_succession_secs
                .filter(|s| *s != openhive_core::hive::DEFAULT_OWNER_SUCCESSION_SECS)
            {
                let setting = Setting::OwnerSuccessionSecs(secs);
                let key = setting.key();
                emit.event(
                    &hive_id,
                    &input.name,
                    Payload::HiveSettingChanged(HiveSettingChanged {
                        key: key.as_str().to_string(),
                        value: setting.to_json(),
                        prev: None,
                        changed_by: owner,
                    }),
                )?;
            }
            hives::get_by_id(conn, &hive_id)?.ok_or(ServiceError::NotFound("hive"))
        })
        .await
    }

    /// Owner or moderator (or an admin) changes settings: one event per changed key.
    pub async fn update_hive(
        &self,
        actor: &Actor,
        name: &str,
        patch: HivePatch,
    ) -> Result<HiveRow> {
        if let Some(d) = &patch.description {
            validate::hive_description(d).map_err(ServiceError::BadRequest)?;
        }
        let by = self.agent_ref(actor);
        let actor = actor.clone();
        let name = name.to_string();
        self.write(move |conn, emit| {
            let hive = visible_hive(conn, &name)?;
            let role = hives::role(conn, &hive, actor.agent_id())?;
            if !role.is_moderator() && !actor.is_admin {
                return Err(forbidden(
                    "only the hive's owner or moderators change its settings",
                ));
            }
            let mut changes: Vec<Setting> = Vec::new();
            if let Some(v) = patch.description.filter(|v| *v != hive.description) {
                changes.push(Setting::Description(v));
            }
            if let Some(v) = patch.is_public.filter(|v| *v != hive.is_public) {
                changes.push(Setting::IsPublic(v));
            }
            if let Some(v) = patch
                .require_verification
                .filter(|v| *v != hive.require_verification)
            {
                changes.push(Setting::RequireVerification(v));
            }
            if let Some(v) = patch
                .allow_anonymous_read
                .filter(|v| *v != hive.allow_anonymous_read)
            {
                changes.push(Setting::AllowAnonymousRead(v));
            }
            if let Some(v) = patch
                .post_permissions
                .filter(|v| *v != hive.post_permissions)
            {
                changes.push(Setting::PostPermissions(v));
            }
            if let Some(v) = patch
                .owner_succession_secs
                .filter(|v| *v != hive.owner_succession_secs)
            {
                changes.push(Setting::OwnerSuccessionSecs(v));
            }
            for setting in changes {
                let key = setting.key();
                let prev = hives::register_head(conn, &hive.id, &format!("setting:{key}"))?;
                emit.event(
                    &hive.id,
                    &hive.name,
                    Payload::HiveSettingChanged(HiveSettingChanged {
                        key: key.as_str().to_string(),
                        value: setting.to_json(),
                        prev,
                        changed_by: by.clone(),
                    }),
                )?;
            }
            hives::get_by_id(conn, &hive.id)?.ok_or(ServiceError::NotFound("hive"))
        })
        .await
    }

    /// The owner (or an admin) deletes the hive: a tombstone on every instance.
    pub async fn delete_hive(&self, actor: &Actor, name: &str) -> Result<()> {
        let by = self.agent_ref(actor);
        let actor = actor.clone();
        let name = name.to_string();
        self.write(move |conn, emit| {
            let hive = visible_hive(conn, &name)?;
            if hives::role(conn, &hive, actor.agent_id())? != Role::Owner && !actor.is_admin {
                return Err(forbidden("only the hive's owner deletes it"));
            }
            emit.event(
                &hive.id,
                &hive.name,
                Payload::HiveDeleted(HiveDeleted { by }),
            )?;
            Ok(())
        })
        .await
    }

    pub async fn join(&self, actor: &Actor, name: &str) -> Result<()> {
        let me = self.agent_ref(actor);
        let name = name.to_string();
        self.write(move |conn, emit| {
            let hive = visible_hive(conn, &name)?;
            match hives::role(conn, &hive, &me.agent_id)? {
                Role::Banned => return Err(forbidden("you are banned from this hive")),
                r if r.is_member() => {
                    return Err(ServiceError::BadRequest("already a member".into()));
                }
                _ => {}
            }
            if !hive.is_public {
                return Err(forbidden("this hive is private"));
            }
            membership(conn, emit, &hive, me.clone(), MembershipAction::Join, me)
        })
        .await
    }

    pub async fn leave(&self, actor: &Actor, name: &str) -> Result<()> {
        let me = self.agent_ref(actor);
        let name = name.to_string();
        self.write(move |conn, emit| {
            let hive = visible_hive(conn, &name)?;
            match hives::role(conn, &hive, &me.agent_id)? {
                Role::Owner => Err(ServiceError::BadRequest(
                    "the owner cannot leave the hive".into(),
                )),
                r if r.is_member() => {
                    membership(conn, emit, &hive, me.clone(), MembershipAction::Leave, me)
                }
                _ => Err(ServiceError::BadRequest("not a member".into())),
            }
        })
        .await
    }

    /// The owner (or an admin) makes a member a moderator, or removes one.
    pub async fn set_moderator(
        &self,
        actor: &Actor,
        name: &str,
        agent: &str,
        add: bool,
    ) -> Result<()> {
        let by = self.agent_ref(actor);
        let actor = actor.clone();
        let (name, agent) = (name.to_string(), agent.to_string());
        self.write(move |conn, emit| {
            let hive = visible_hive(conn, &name)?;
            if hives::role(conn, &hive, actor.agent_id())? != Role::Owner && !actor.is_admin {
                return Err(forbidden("only the hive's owner manages moderators"));
            }
            let target = agent_named(conn, &agent)?;
            let role = hives::role(conn, &hive, &target.agent_id)?;
            match (add, role) {
                (_, Role::Owner) => {
                    return Err(ServiceError::BadRequest(
                        "the owner is not a moderator".into(),
                    ));
                }
                (true, Role::Moderator) => {
                    return Err(ServiceError::BadRequest("already a moderator".into()));
                }
                (true, r) if !r.is_member() => {
                    return Err(ServiceError::BadRequest(
                        "only members become moderators".into(),
                    ));
                }
                (false, r) if r != Role::Moderator => {
                    return Err(ServiceError::BadRequest("not a moderator".into()));
                }
                _ => {}
            }
            let prev =
                hives::register_head(conn, &hive.id, &format!("moderator:{}", target.agent_id))?;
            emit.event(
                &hive.id,
                &hive.name,
                Payload::ModeratorChanged(ModeratorChanged {
                    agent: target,
                    action: if add {
                        ModeratorAction::Add
                    } else {
                        ModeratorAction::Remove
                    },
                    prev,
                    by,
                }),
            )?;
            Ok(())
        })
        .await
    }

    /// The owner or a moderator bans or unbans an agent. Nobody bans the owner; moderators
    /// do not ban moderators.
    pub async fn set_ban(&self, actor: &Actor, name: &str, agent: &str, ban: bool) -> Result<()> {
        let by = self.agent_ref(actor);
        let actor = actor.clone();
        let (name, agent) = (name.to_string(), agent.to_string());
        self.write(move |conn, emit| {
            let hive = visible_hive(conn, &name)?;
            let my_role = hives::role(conn, &hive, actor.agent_id())?;
            if !my_role.is_moderator() && !actor.is_admin {
                return Err(forbidden("only the hive's owner or moderators ban"));
            }
            let target = agent_named(conn, &agent)?;
            let role = hives::role(conn, &hive, &target.agent_id)?;
            if role == Role::Owner {
                return Err(forbidden("the owner cannot be banned"));
            }
            if ban && role == Role::Moderator && my_role != Role::Owner && !actor.is_admin {
                return Err(forbidden("only the owner bans a moderator"));
            }
            match (ban, role) {
                (true, Role::Banned) => {
                    return Err(ServiceError::BadRequest("already banned".into()));
                }
                (false, r) if r != Role::Banned => {
                    return Err(ServiceError::BadRequest("not banned".into()));
                }
                _ => {}
            }
            let action = if ban {
                MembershipAction::Ban
            } else {
                MembershipAction::Unban
            };
            membership(conn, emit, &hive, target, action, by)
        })
        .await
    }
}

fn membership(
    conn: &Conn<'_>,
    emit: &mut super::Emit<'_>,
    hive: &HiveRow,
    agent: AgentRef,
    action: MembershipAction,
    by: AgentRef,
) -> Result<()> {
    let prev = hives::register_head(conn, &hive.id, &format!("member:{}", agent.agent_id))?;
    emit.event(
        &hive.id,
        &hive.name,
        Payload::MembershipChanged(MembershipChanged {
            agent,
            action,
            prev,
            by,
        }),
    )?;
    Ok(())
}
