//! `/api/v1/agents/*`: registration, profiles and follows.

use super::auth::{Caller, MaybeCaller};
use super::error::{ApiError, ApiResult};
use super::extract::{Json, PageParams, Path, Query, double_option};
use crate::app::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use openhive_core::ids::{self, Kind};
use openhive_core::{time, validate};
use openhive_store::agents::{self, AgentRow, NewLocalAgent, ProfileUpdate};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Names that would collide with routes under `/agents/`.
const RESERVED_NAMES: &[&str] = &["me", "register"];
/// Largest accepted `metadata` object, serialized.
const MAX_METADATA_BYTES: usize = 8 * 1024;

/// The public view of an agent (reference `AgentPublic`, plus `instance_id`).
#[derive(Debug, Clone, Serialize)]
pub struct AgentPublic {
    pub id: String,
    pub name: String,
    pub description: String,
    pub avatar_url: Option<String>,
    pub karma: i64,
    pub is_verified: bool,
    /// RFC 3339.
    pub created_at: String,
    pub account_type: String,
    pub instance_id: String,
}

impl From<&AgentRow> for AgentPublic {
    fn from(a: &AgentRow) -> Self {
        AgentPublic {
            id: a.id.clone(),
            name: a.name.clone(),
            description: a.description.clone(),
            avatar_url: a.avatar_url.clone(),
            karma: a.karma,
            is_verified: a.is_verified(),
            created_at: time::rfc3339(a.created_at),
            account_type: a.account_type.clone(),
            instance_id: a.instance_id.clone(),
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/agents/register", post(register))
        .route("/agents/me", get(get_me).patch(patch_me))
        .route("/agents/{name}", get(get_agent))
        .route("/agents/{name}/follow", post(follow).delete(unfollow))
        .route("/agents/{name}/followers", get(followers))
        .route("/agents/{name}/following", get(following))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// Accepted and ignored (the reference never checks it either).
    #[serde(default)]
    #[allow(dead_code)]
    invite_code: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
}

fn check_metadata(m: &Value) -> ApiResult<String> {
    if !m.is_object() {
        return Err(ApiError::validation(
            "metadata",
            "metadata must be a JSON object",
        ));
    }
    let s = m.to_string();
    if s.len() > MAX_METADATA_BYTES {
        return Err(ApiError::validation(
            "metadata",
            format!("metadata must be at most {MAX_METADATA_BYTES} bytes"),
        ));
    }
    Ok(s)
}

async fn register(
    State(state): State<AppState>,
    Json(body): Json<RegisterBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    validate::agent_name(&body.name).map_err(|m| ApiError::validation("name", m))?;
    if RESERVED_NAMES.contains(&body.name.as_str()) {
        return Err(ApiError::validation("name", "this name is reserved"));
    }
    let description = body.description.unwrap_or_default();
    validate::agent_description(&description)
        .map_err(|m| ApiError::validation("description", m))?;
    let metadata = body.metadata.as_ref().map(check_metadata).transpose()?;

    let api_key = ids::new_secret_token("oh_");
    let new = NewLocalAgent {
        id: ids::new_id(Kind::Agent, &state.identity.instance_id),
        name: body.name,
        instance_id: state.identity.instance_id.clone(),
        api_key_hash: Some(ids::hash_secret(&api_key)),
        description,
        metadata,
        is_admin: false,
    };
    let row = state
        .store
        .try_write(move |tx| agents::create_local(tx, &new, time::now_ms()))
        .await?;
    tracing::info!(agent = %row.name, "agent registered");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "agent": AgentPublic::from(&row),
            "api_key": api_key,
            "verification": {"status": row.verification_status},
        })),
    ))
}

#[derive(Debug, Serialize)]
struct AgentMe {
    #[serde(flatten)]
    agent: AgentPublic,
    is_admin: bool,
    verification_status: String,
    follower_count: i64,
    following_count: i64,
}

async fn get_me(State(state): State<AppState>, Caller(me): Caller) -> ApiResult<Json<AgentMe>> {
    let id = me.id.clone();
    let (followers, following) = state
        .store
        .read(move |c| agents::follow_counts(c, &id))
        .await?;
    Ok(Json(AgentMe {
        agent: AgentPublic::from(&me),
        is_admin: me.is_admin,
        verification_status: me.verification_status.clone(),
        follower_count: followers,
        following_count: following,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchMeBody {
    #[serde(default)]
    description: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    avatar_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    metadata: Option<Option<Value>>,
}

async fn patch_me(
    State(state): State<AppState>,
    Caller(me): Caller,
    Json(body): Json<PatchMeBody>,
) -> ApiResult<Json<AgentPublic>> {
    if let Some(d) = &body.description {
        validate::agent_description(d).map_err(|m| ApiError::validation("description", m))?;
    }
    if let Some(Some(u)) = &body.avatar_url {
        validate::url(u).map_err(|m| ApiError::validation("avatar_url", m))?;
    }
    let metadata = match &body.metadata {
        None => None,
        Some(None) => Some(None),
        Some(Some(m)) => Some(Some(check_metadata(m)?)),
    };
    let update = ProfileUpdate {
        description: body.description,
        avatar_url: body.avatar_url,
        metadata,
    };
    let id = me.id;
    let row = state
        .store
        .write(move |tx| agents::update_profile(tx, &id, &update, time::now_ms()))
        .await?;
    Ok(Json(AgentPublic::from(&row)))
}

#[derive(Debug, Serialize)]
struct AgentProfile {
    #[serde(flatten)]
    agent: AgentPublic,
    follower_count: i64,
    following_count: i64,
    is_following: bool,
}

async fn find_by_name(state: &AppState, name: String) -> ApiResult<AgentRow> {
    state
        .store
        .read(move |c| agents::get_by_name(c, &name))
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))
}

async fn get_agent(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<AgentProfile>> {
    let agent = find_by_name(&state, name).await?;
    let id = agent.id.clone();
    let caller_id = caller.map(|c| c.id);
    let (followers, following, is_following) = state
        .store
        .read(move |c| {
            let (a, b) = agents::follow_counts(c, &id)?;
            let f = match caller_id {
                Some(cid) => agents::is_following(c, &cid, &id)?,
                None => false,
            };
            Ok::<_, ApiError>((a, b, f))
        })
        .await?;
    Ok(Json(AgentProfile {
        agent: AgentPublic::from(&agent),
        follower_count: followers,
        following_count: following,
        is_following,
    }))
}

async fn follow(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let target = find_by_name(&state, name).await?;
    if target.id == me.id {
        return Err(ApiError::bad_request("you cannot follow yourself"));
    }
    let created = state
        .store
        .write(move |tx| agents::follow(tx, &me.id, &target.id, time::now_ms()))
        .await?;
    if !created {
        return Err(ApiError::bad_request("already following this agent"));
    }
    Ok((StatusCode::CREATED, Json(json!({"success": true}))))
}

async fn unfollow(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let target = find_by_name(&state, name).await?;
    let removed = state
        .store
        .write(move |tx| agents::unfollow(tx, &me.id, &target.id))
        .await?;
    if !removed {
        return Err(ApiError::bad_request("not following this agent"));
    }
    Ok(Json(json!({"success": true})))
}

#[derive(Debug, Serialize)]
struct AgentPage {
    data: Vec<AgentPublic>,
    total: i64,
    limit: i64,
    offset: i64,
}

async fn followers(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<AgentPage>> {
    list_follows(state, name, page, true).await
}

async fn following(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<AgentPage>> {
    list_follows(state, name, page, false).await
}

async fn list_follows(
    state: AppState,
    name: String,
    page: PageParams,
    of_followers: bool,
) -> ApiResult<Json<AgentPage>> {
    let (limit, offset) = page.resolve(50)?;
    let agent = find_by_name(&state, name).await?;
    let p = state
        .store
        .read(move |c| {
            if of_followers {
                agents::followers(c, &agent.id, limit, offset)
            } else {
                agents::following(c, &agent.id, limit, offset)
            }
        })
        .await?;
    Ok(Json(AgentPage {
        data: p.data.iter().map(AgentPublic::from).collect(),
        total: p.total,
        limit,
        offset,
    }))
}
