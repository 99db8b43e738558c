//! `/api/v1/admin/*`: the public instance description, and admin-only agent management and
//! statistics. Admin routes accept an admin agent or the `X-Admin-Key` header.

use super::agents::AgentPublic;
use super::auth::AdminCaller;
use super::error::{ApiError, ApiResult};
use super::extract::{Json, Path, Query};
use crate::app::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use openhive_core::time;
use openhive_store::agents::{self, AgentRow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/instance", get(instance))
        .route("/admin/stats", get(stats))
        .route("/admin/agents", get(list_agents))
        .route("/admin/agents/{id}", delete(delete_agent))
        .route("/admin/agents/{id}/verify", post(verify))
        .route("/admin/agents/{id}/reject", post(reject))
        .route("/admin/agents/{id}/admin", post(set_admin))
}

/// Public description of the instance.
async fn instance(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let st = state.store.read(agents::stats).await?;
    let cfg = &state.config;
    Ok(Json(json!({
        "name": cfg.instance.name,
        "description": cfg.instance.description,
        "url": cfg.server.public_url,
        "version": env!("CARGO_PKG_VERSION"),
        "instance_id": state.identity.instance_id,
        "agent_count": st.agents_total,
        "hive_count": st.hives_total,
        "post_count": st.posts_total,
        "federation_enabled": false,
        "sync_enabled": cfg.sync.enabled,
        "registration_open": true,
        "auth_mode": state.auth_mode().as_str(),
    })))
}

async fn stats(State(state): State<AppState>, _admin: AdminCaller) -> ApiResult<Json<Value>> {
    let st = state.store.read(agents::stats).await?;
    Ok(Json(json!({
        "agents": {"total": st.agents_total, "verified": st.agents_verified},
        "hives": {"total": st.hives_total},
        "posts": {"total": st.posts_total},
    })))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<i64>,
    offset: Option<i64>,
    #[serde(default)]
    verified_only: Option<bool>,
}

#[derive(Debug, Serialize)]
struct AdminAgent {
    #[serde(flatten)]
    agent: AgentPublic,
    is_admin: bool,
    verification_status: String,
    last_seen_at: Option<String>,
}

impl From<&AgentRow> for AdminAgent {
    fn from(a: &AgentRow) -> Self {
        AdminAgent {
            agent: AgentPublic::from(a),
            is_admin: a.is_admin,
            verification_status: a.verification_status.clone(),
            last_seen_at: a.last_seen_at.map(time::rfc3339),
        }
    }
}

async fn list_agents(
    State(state): State<AppState>,
    _admin: AdminCaller,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = super::extract::PageParams {
        limit: p.limit,
        offset: p.offset,
    }
    .resolve(50)?;
    let verified_only = p.verified_only.unwrap_or(false);
    let page = state
        .store
        .read(move |c| agents::admin_list(c, limit, offset, verified_only))
        .await?;
    let data: Vec<AdminAgent> = page.data.iter().map(AdminAgent::from).collect();
    Ok(Json(json!({
        "data": data,
        "total": page.total,
        "limit": limit,
        "offset": offset,
    })))
}

async fn set_status(state: &AppState, id: String, status: &'static str) -> ApiResult<Json<Value>> {
    if id == state.identity.local_agent_id && status != "verified" {
        return Err(ApiError::bad_request(
            "the built-in local agent cannot be rejected",
        ));
    }
    state
        .store
        .write(move |tx| agents::set_verification(tx, &id, status, time::now_ms()))
        .await?;
    Ok(Json(json!({"success": true})))
}

async fn verify(
    State(state): State<AppState>,
    _admin: AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    set_status(&state, id, "verified").await
}

async fn reject(
    State(state): State<AppState>,
    _admin: AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    set_status(&state, id, "rejected").await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetAdminBody {
    is_admin: bool,
}

async fn set_admin(
    State(state): State<AppState>,
    _admin: AdminCaller,
    Path(id): Path<String>,
    Json(body): Json<SetAdminBody>,
) -> ApiResult<Json<Value>> {
    if id == state.identity.local_agent_id && !body.is_admin {
        return Err(ApiError::bad_request(
            "the built-in local agent is always an administrator",
        ));
    }
    state
        .store
        .write(move |tx| agents::set_admin(tx, &id, body.is_admin, time::now_ms()))
        .await?;
    Ok(Json(json!({"success": true})))
}

async fn delete_agent(
    State(state): State<AppState>,
    _admin: AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if id == state.identity.local_agent_id {
        return Err(ApiError::bad_request(
            "the built-in local agent cannot be deleted",
        ));
    }
    state
        .store
        .write(move |tx| agents::delete_local(tx, &id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
