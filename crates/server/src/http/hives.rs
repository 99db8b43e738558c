//! `/api/v1/hives`: hives, membership, moderators, bans.

use super::auth::{Caller, MaybeCaller};
use super::error::{ApiError, ApiResult};
use super::extract::{Json, PageParams, Path, Query};
use crate::app::AppState;
use crate::service::{HiveInput, HivePatch};
use crate::views;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use openhive_core::hive::{PostPermissions, Setting, SettingKey};
use openhive_core::payload::HiveSettings;
use openhive_store::hives::{self, Role};
use openhive_store::posts::author_by_id;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hives", get(list).post(create))
        .route("/hives/{name}", get(show).patch(update).delete(remove))
        .route("/hives/{name}/join", post(join))
        .route("/hives/{name}/leave", delete(leave).post(leave))
        .route("/hives/{name}/members", get(members))
        .route("/hives/{name}/moderators", post(add_moderator))
        .route("/hives/{name}/moderators/{agent}", delete(remove_moderator))
        .route("/hives/{name}/bans", post(ban))
        .route("/hives/{name}/bans/{agent}", delete(unban))
}

async fn list(
    state: axum::extract::State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = page.resolve(50)?;
    let viewer = caller.map(|c| c.id);
    let (rows, total) = state
        .store
        .read(move |c| hives::list(c, viewer.as_deref(), limit, offset))
        .await?;
    let data: Vec<Value> = rows.iter().map(views::hive).collect();
    Ok(Json(
        json!({ "data": data, "total": total, "limit": limit, "offset": offset }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateHive {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    is_public: Option<bool>,
    #[serde(default)]
    settings: Option<SettingsBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    require_verification: Option<bool>,
    allow_anonymous_read: Option<bool>,
    post_permissions: Option<String>,
    owner_succession_secs: Option<Value>,
}

impl SettingsBody {
    /// `post_permissions`, if given: a value outside the vocabulary is a 400 with the
    /// vocabulary's message ("post_permissions must be all, members or mods").
    fn post_permissions(&self) -> ApiResult<Option<PostPermissions>> {
        self.post_permissions
            .as_deref()
            .map(PostPermissions::parse)
            .transpose()
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    /// `owner_succession_secs`, if given: an integer from 0 to 10 years, else a 400.
    fn owner_succession_secs(&self) -> ApiResult<Option<i64>> {
        let Some(v) = &self.owner_succession_secs else {
            return Ok(None);
        };
        match Setting::from_json(SettingKey::OwnerSuccessionSecs, v) {
            Ok(Setting::OwnerSuccessionSecs(n)) => Ok(Some(n)),
            Ok(_) => Err(ApiError::bad_request(
                "invalid setting owner_succession_secs",
            )),
            Err(e) => Err(ApiError::bad_request(e)),
        }
    }
}

async fn create(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Json(body): Json<CreateHive>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let s = body.settings.unwrap_or_default();
    let defaults = HiveSettings::default();
    let input = HiveInput {
        name: body.name.to_lowercase(),
        description: body.description.unwrap_or_default(),
        is_public: body.is_public.unwrap_or(true),
        settings: HiveSettings {
            require_verification: s
                .require_verification
                .unwrap_or(defaults.require_verification),
            allow_anonymous_read: s
                .allow_anonymous_read
                .unwrap_or(defaults.allow_anonymous_read),
            post_permissions: s.post_permissions()?.unwrap_or(defaults.post_permissions),
        },
        owner_succession_secs: s.owner_succession_secs()?,
    };
    let hive = state
        .hives
        .create_hive(&super::actor(&caller), input)
        .await?;
    Ok((StatusCode::CREATED, Json(views::hive(&hive))))
}

/// The hive, if `viewer` may read it (private hives: members and admins only). One point
/// read ([`openhive_store::Store::read_point`]: on SQLite it runs here when a reader is
/// idle, without two thread hand-offs).
pub(super) async fn readable_hive(
    state: &AppState,
    name: &str,
    viewer: Option<&openhive_store::agents::AgentRow>,
) -> ApiResult<(hives::HiveRow, Role)> {
    let name = name.to_string();
    let viewer_id = viewer.map(|v| v.id.clone());
    let (hive, role) = state
        .store
        .read_point(move |c| hive_and_role(c, &name, viewer_id.as_deref()))
        .await?;
    check_readable(&hive, role, viewer)?;
    Ok((hive, role))
}

/// The hive `name` and the role of `viewer_id` in it (404 if there is no such hive).
pub(super) fn hive_and_role(
    c: &openhive_store::engine::Conn<'_>,
    name: &str,
    viewer_id: Option<&str>,
) -> ApiResult<(hives::HiveRow, Role)> {
    let hive = hives::get_by_name(c, name)?.ok_or_else(|| ApiError::not_found("hive"))?;
    let role = match viewer_id {
        Some(id) => hives::role(c, &hive, id)?,
        None => Role::None,
    };
    Ok((hive, role))
}

/// 403 unless the hive is public, or `viewer` (whose role in it is `role`) is a member or
/// an admin.
pub(super) fn check_readable(
    hive: &hives::HiveRow,
    role: Role,
    viewer: Option<&openhive_store::agents::AgentRow>,
) -> ApiResult<()> {
    let is_admin = viewer.is_some_and(|v| v.is_admin);
    if !hive.is_public && !role.is_member() && !is_admin {
        return Err(ApiError::Forbidden("this hive is private".into()));
    }
    Ok(())
}

async fn show(
    state: axum::extract::State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let (hive, role) = readable_hive(&state, &name, caller.as_ref()).await?;
    let owner_id = hive.owner_id.clone();
    let owner = state
        .store
        .read(move |c| match owner_id {
            Some(id) => author_by_id(c, &id),
            None => Ok(None),
        })
        .await?;
    let mut v = views::hive(&hive);
    v["owner"] = owner.as_ref().map(views::author).unwrap_or(Value::Null);
    v["user_membership"] = if caller.is_some() && role != Role::None {
        json!({ "role": role.as_str() })
    } else {
        Value::Null
    };
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateHive {
    description: Option<String>,
    is_public: Option<bool>,
    settings: Option<SettingsBody>,
}

async fn update(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Json(body): Json<UpdateHive>,
) -> ApiResult<Json<Value>> {
    let s = body.settings.unwrap_or_default();
    let patch = HivePatch {
        description: body.description,
        is_public: body.is_public,
        require_verification: s.require_verification,
        allow_anonymous_read: s.allow_anonymous_read,
        post_permissions: s.post_permissions()?,
        owner_succession_secs: s.owner_succession_secs()?,
    };
    let hive = state
        .hives
        .update_hive(&super::actor(&caller), &name, patch)
        .await?;
    Ok(Json(views::hive(&hive)))
}

async fn remove(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .hives
        .delete_hive(&super::actor(&caller), &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn join(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    state.hives.join(&super::actor(&caller), &name).await?;
    Ok((StatusCode::CREATED, Json(json!({ "success": true }))))
}

async fn leave(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    state.hives.leave(&super::actor(&caller), &name).await?;
    Ok(Json(json!({ "success": true })))
}

async fn members(
    state: axum::extract::State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path(name): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = page.resolve(50)?;
    let (hive, _) = readable_hive(&state, &name, caller.as_ref()).await?;
    let data = state
        .store
        .read(move |c| -> ApiResult<_> {
            let (rows, total) = hives::members(c, &hive, limit, offset)?;
            let mut data = Vec::with_capacity(rows.len());
            for m in rows {
                let agent = author_by_id(c, &m.agent_id)?;
                data.push(json!({
                    "agent": agent.as_ref().map(views::author),
                    "role": m.role.as_str(),
                    "joined_at": openhive_core::time::rfc3339(m.joined_at),
                }));
            }
            Ok(json!({ "data": data, "total": total, "limit": limit, "offset": offset }))
        })
        .await?;
    Ok(Json(data))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentBody {
    /// The agent's name.
    agent: String,
}

async fn add_moderator(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Json(body): Json<AgentBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    state
        .hives
        .set_moderator(&super::actor(&caller), &name, &body.agent, true)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "success": true }))))
}

async fn remove_moderator(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Path((name, agent)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    state
        .hives
        .set_moderator(&super::actor(&caller), &name, &agent, false)
        .await?;
    Ok(Json(json!({ "success": true })))
}

async fn ban(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Json(body): Json<AgentBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    state
        .hives
        .set_ban(&super::actor(&caller), &name, &body.agent, true)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "success": true }))))
}

async fn unban(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Path((name, agent)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    state
        .hives
        .set_ban(&super::actor(&caller), &name, &agent, false)
        .await?;
    Ok(Json(json!({ "success": true })))
}
