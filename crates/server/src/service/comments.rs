//! Comments, as events.

use super::posts::{check_can_write, live_post};
use super::{Actor, HiveService, Result, ServiceError};
use openhive_core::ids::{self, Kind};
use openhive_core::payload::{CommentCreated, CommentDeleted, CommentUpdated, Payload};
use openhive_core::validate;
use openhive_store::Conn;
use openhive_store::comments::{self, CommentRow};
use openhive_store::hives::{self, HiveRow};

#[derive(Debug, Clone)]
pub struct CommentInput {
    pub post_id: String,
    pub content: String,
    pub parent_id: Option<String>,
}

/// The live comment `id` with its hive.
pub(super) fn live_comment(conn: &Conn<'_>, id: &str) -> Result<(HiveRow, CommentRow)> {
    let c = comments::get(conn, id, None)?.ok_or(ServiceError::NotFound("comment"))?;
    let hive = hives::get_by_id(conn, &c.hive_id)?.ok_or(ServiceError::NotFound("comment"))?;
    if openhive_store::posts::owner_facts(conn, &c.post_id)?.is_none() {
        return Err(ServiceError::NotFound("comment"));
    }
    Ok((hive, c))
}

impl HiveService {
    pub async fn create_comment(&self, actor: &Actor, input: CommentInput) -> Result<CommentRow> {
        validate::comment_content(&input.content).map_err(ServiceError::BadRequest)?;
        let author = self.agent_ref(actor);
        let actor = actor.clone();
        let comment_id = ids::new_id(Kind::Comment, self.instance_id());
        self.write(move |conn, emit| {
            let (hive, _) = live_post(conn, &input.post_id)?;
            check_can_write(conn, &hive, &actor)?;
            if let Some(parent) = &input.parent_id {
                let p = comments::get(conn, parent, None)?
                    .ok_or_else(|| ServiceError::BadRequest("parent comment not found".into()))?;
                if p.post_id != input.post_id {
                    return Err(ServiceError::BadRequest(
                        "parent comment belongs to another post".into(),
                    ));
                }
            }
            emit.event(
                &hive.id,
                &hive.name,
                Payload::CommentCreated(CommentCreated {
                    comment_id: comment_id.clone(),
                    post_id: input.post_id,
                    parent_comment_id: input.parent_id,
                    content: input.content,
                    author,
                }),
            )?;
            comments::get(conn, &comment_id, Some(actor.agent_id()))?
                .ok_or(ServiceError::NotFound("comment"))
        })
        .await
    }

    /// The author edits a comment.
    pub async fn update_comment(
        &self,
        actor: &Actor,
        id: &str,
        content: String,
    ) -> Result<CommentRow> {
        validate::comment_content(&content).map_err(ServiceError::BadRequest)?;
        let by = self.agent_ref(actor);
        let id = id.to_string();
        self.write(move |conn, emit| {
            let (hive, c) = live_comment(conn, &id)?;
            if c.author.id != by.agent_id {
                return Err(ServiceError::Forbidden(
                    "only the author edits a comment".into(),
                ));
            }
            emit.event(
                &hive.id,
                &hive.name,
                Payload::CommentUpdated(CommentUpdated {
                    comment_id: id.clone(),
                    content,
                    updated_by: by.clone(),
                }),
            )?;
            comments::get(conn, &id, Some(&by.agent_id))?.ok_or(ServiceError::NotFound("comment"))
        })
        .await
    }

    /// The author, a moderator or owner, or an admin deletes a comment (and hides its
    /// replies).
    pub async fn delete_comment(&self, actor: &Actor, id: &str) -> Result<()> {
        let by = self.agent_ref(actor);
        let actor = actor.clone();
        let id = id.to_string();
        self.write(move |conn, emit| {
            let (hive, c) = live_comment(conn, &id)?;
            let role = hives::role(conn, &hive, actor.agent_id())?;
            if c.author.id != actor.agent_id() && !role.is_moderator() && !actor.is_admin {
                return Err(ServiceError::Forbidden(
                    "only the author, a moderator or an admin deletes a comment".into(),
                ));
            }
            emit.event(
                &hive.id,
                &hive.name,
                Payload::CommentDeleted(CommentDeleted {
                    comment_id: id,
                    deleted_by: by,
                    reason: None,
                }),
            )?;
            Ok(())
        })
        .await
    }
}
