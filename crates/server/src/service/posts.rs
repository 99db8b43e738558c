//! Posts, votes and pins, as events.

use super::hives::visible_hive;
use super::{Actor, HiveService, Result, ServiceError};
use openhive_core::hive::PostPermissions;
use openhive_core::ids::{self, Kind};
use openhive_core::payload::{
    Payload, PostCreated, PostDeleted, PostPinned, PostUpdated, TargetType, VoteCast, VoterRef,
};
use openhive_core::validate;
use openhive_store::Conn;
use openhive_store::hives::{self, HiveRow, Role};
use openhive_store::posts::{self, PostRow};

#[derive(Debug, Clone)]
pub struct PostInput {
    pub hive: String,
    pub title: String,
    pub content: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct PostPatch {
    pub title: Option<String>,
    pub content: Option<String>,
    pub url: Option<String>,
}

fn forbidden(msg: &str) -> ServiceError {
    ServiceError::Forbidden(msg.to_string())
}

/// May `actor` write (post, comment, vote) in `hive`?
pub(super) fn check_can_write(conn: &Conn<'_>, hive: &HiveRow, actor: &Actor) -> Result<Role> {
    let role = hives::role(conn, hive, actor.agent_id())?;
    if role == Role::Banned {
        return Err(forbidden("you are banned from this hive"));
    }
    if !hive.is_public && !role.is_member() {
        return Err(forbidden("this hive is private"));
    }
    if hive.require_verification && !actor.author.is_verified {
        return Err(forbidden("this hive requires a verified agent"));
    }
    Ok(role)
}

/// The live post `id` with its hive.
pub(super) fn live_post(conn: &Conn<'_>, id: &str) -> Result<(HiveRow, String)> {
    let (hive_id, author_id) =
        posts::owner_facts(conn, id)?.ok_or(ServiceError::NotFound("post"))?;
    let hive = hives::get_by_id(conn, &hive_id)?.ok_or(ServiceError::NotFound("post"))?;
    Ok((hive, author_id))
}

fn validate_body(title: Option<&str>, content: Option<&str>, url: Option<&str>) -> Result<()> {
    if let Some(t) = title {
        validate::post_title(t).map_err(ServiceError::BadRequest)?;
    }
    if let Some(c) = content {
        validate::post_content(c).map_err(ServiceError::BadRequest)?;
    }
    if let Some(u) = url {
        validate::url(u).map_err(ServiceError::BadRequest)?;
    }
    Ok(())
}

impl HiveService {
    pub async fn create_post(&self, actor: &Actor, input: PostInput) -> Result<PostRow> {
        validate_body(
            Some(&input.title),
            input.content.as_deref(),
            input.url.as_deref(),
        )?;
        if input.content.as_deref().is_none_or(str::is_empty) && input.url.is_none() {
            return Err(ServiceError::BadRequest(
                "content or url is required".into(),
            ));
        }
        let author = self.agent_ref(actor);
        let actor = actor.clone();
        let post_id = ids::new_id(Kind::Post, self.instance_id());
        self.write(move |conn, emit| {
            let hive = visible_hive(conn, &input.hive)?;
            let role = check_can_write(conn, &hive, &actor)?;
            match hive.post_permissions {
                PostPermissions::Members if !role.is_member() => {
                    return Err(forbidden("only members post in this hive"));
                }
                PostPermissions::Mods if !role.is_moderator() => {
                    return Err(forbidden("only moderators post in this hive"));
                }
                PostPermissions::All | PostPermissions::Members | PostPermissions::Mods => {}
            }
            let created = PostCreated {
                post_id,
                title: input.title,
                content: input.content,
                url: input.url,
                author,
            };
            let event = emit.event(&hive.id, &hive.name, Payload::PostCreated(created.clone()))?;
            // The post id was minted above, so nothing else names the post yet: it reads as
            // the materializer wrote it, which `fresh` builds without reading it back.
            Ok(posts::fresh(&event, &created, &hive.id, actor.author))
        })
        .await
    }

    /// The author edits a post.
    pub async fn update_post(&self, actor: &Actor, id: &str, patch: PostPatch) -> Result<PostRow> {
        validate_body(
            patch.title.as_deref(),
            patch.content.as_deref(),
            patch.url.as_deref(),
        )?;
        let by = self.agent_ref(actor);
        let id = id.to_string();
        self.write(move |conn, emit| {
            let (hive, author_id) = live_post(conn, &id)?;
            if author_id != by.agent_id {
                return Err(forbidden("only the author edits a post"));
            }
            if patch.title.is_some() || patch.content.is_some() || patch.url.is_some() {
                emit.event(
                    &hive.id,
                    &hive.name,
                    Payload::PostUpdated(PostUpdated {
                        post_id: id.clone(),
                        title: patch.title,
                        content: patch.content,
                        url: patch.url,
                        updated_by: by.clone(),
                    }),
                )?;
            }
            posts::get(conn, &id, Some(&by.agent_id))?.ok_or(ServiceError::NotFound("post"))
        })
        .await
    }

    /// The author, a moderator or owner of the hive, or an admin deletes a post.
    pub async fn delete_post(&self, actor: &Actor, id: &str) -> Result<()> {
        let by = self.agent_ref(actor);
        let actor = actor.clone();
        let id = id.to_string();
        self.write(move |conn, emit| {
            let (hive, author_id) = live_post(conn, &id)?;
            let role = hives::role(conn, &hive, actor.agent_id())?;
            if author_id != actor.agent_id() && !role.is_moderator() && !actor.is_admin {
                return Err(forbidden(
                    "only the author, a moderator or an admin deletes a post",
                ));
            }
            emit.event(
                &hive.id,
                &hive.name,
                Payload::PostDeleted(PostDeleted {
                    post_id: id,
                    deleted_by: by,
                    reason: None,
                }),
            )?;
            Ok(())
        })
        .await
    }

    /// A moderator, the owner or an admin toggles a pin. Returns the new state.
    pub async fn toggle_pin(&self, actor: &Actor, id: &str) -> Result<bool> {
        let by = self.agent_ref(actor);
        let actor = actor.clone();
        let id = id.to_string();
        self.write(move |conn, emit| {
            let (hive, _) = live_post(conn, &id)?;
            let role = hives::role(conn, &hive, actor.agent_id())?;
            if !role.is_moderator() && !actor.is_admin {
                return Err(forbidden("only moderators pin posts"));
            }
            let pinned = posts::get(conn, &id, None)?
                .map(|p| p.is_pinned)
                .unwrap_or(false);
            let prev = hives::register_head(conn, &hive.id, &format!("pin:{id}"))?;
            emit.event(
                &hive.id,
                &hive.name,
                Payload::PostPinned(PostPinned {
                    post_id: id,
                    pinned: !pinned,
                    prev,
                    by,
                }),
            )?;
            Ok(!pinned)
        })
        .await
    }

    /// Votes with the reference's toggle semantics: repeating your vote removes it (an
    /// explicit `value: 0` event, so the removal replicates). Returns (score, your vote).
    pub async fn vote(
        &self,
        actor: &Actor,
        target_type: TargetType,
        id: &str,
        value: i8,
    ) -> Result<(i64, Option<i8>)> {
        if value != 1 && value != -1 {
            return Err(ServiceError::BadRequest("value must be 1 or -1".into()));
        }
        let actor = actor.clone();
        let voter = VoterRef {
            instance_id: self.instance_id().to_string(),
            agent_id: actor.agent_id().to_string(),
        };
        let id = id.to_string();
        self.write(move |conn, emit| {
            let hive = match target_type {
                TargetType::Post => live_post(conn, &id)?.0,
                TargetType::Comment => super::comments::live_comment(conn, &id)?.0,
            };
            check_can_write(conn, &hive, &actor)?;
            let current = posts::current_vote(conn, &id, actor.agent_id())?;
            let new = if current == i64::from(value) {
                0
            } else {
                value
            };
            emit.event(
                &hive.id,
                &hive.name,
                Payload::VoteCast(VoteCast {
                    target_type,
                    target_id: id.clone(),
                    voter,
                    value: new,
                }),
            )?;
            let score = posts::score_of(conn, &id)?;
            Ok((score, (new != 0).then_some(new)))
        })
        .await
    }
}
