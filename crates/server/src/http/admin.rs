//! `/api/v1/admin/*`: the public instance description, and admin-only agent management and
//! statistics, and admin-issued scoped API keys (ingest keys). Admin routes accept an admin
//! agent or the `X-Admin-Key` header.

use super::agents::AgentPublic;
use super::auth::{AdminCaller, INGEST_KEY_PREFIX, INGEST_SCOPES};
use super::error::{ApiError, ApiResult};
use super::extract::{Json, Path, Query};
use crate::app::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use openhive_core::{ids, time, validate};
use openhive_store::agents::{self, AgentRow};
use openhive_store::ingest_keys;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/instance", get(instance))
        .route("/admin/instance/rotate-key", post(rotate_key))
        .route("/admin/instance/keys", get(instance_keys))
        .route("/admin/stats", get(stats))
        .route("/admin/agents", get(list_agents))
        .route("/admin/agents/{id}", delete(delete_agent))
        .route("/admin/agents/{id}/verify", post(verify))
        .route("/admin/agents/{id}/reject", post(reject))
        .route("/admin/agents/{id}/admin", post(set_admin))
        .route(
            "/admin/ingest-keys",
            post(create_ingest_key).get(list_ingest_keys),
        )
        .route("/admin/ingest-keys/{id}", delete(delete_ingest_key))
        .route("/admin/ingest-keys/{id}/revoke", post(revoke_ingest_key))
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

/// `POST /admin/instance/rotate-key`: a new signing key, announced to the peers with a
/// statement signed by the old and the new key (docs/PROTOCOL-sync.md, "Key rotation").
async fn rotate_key(State(state): State<AppState>, _admin: AdminCaller) -> ApiResult<Json<Value>> {
    let r = crate::rotation::rotate_key(&state)
        .await
        .map_err(|e| match e {
            crate::rotation::RotateError::Store(e) => ApiError::from(e),
            e => ApiError::Internal(e.to_string()),
        })?;
    let s = &r.statement;
    Ok(Json(json!({
        "instance_id": s.instance_id,
        "signing_key": s.new_key,
        "previous_key": s.old_key,
        "rotated_at": time::rfc3339(s.at),
        "at": s.at,
        "announced_to": r.announced_to,
    })))
}

/// `GET /admin/instance/keys`: this instance's key chain (public keys only).
async fn instance_keys(
    State(state): State<AppState>,
    _admin: AdminCaller,
) -> ApiResult<Json<Value>> {
    let me = state.identity.instance_id.clone();
    let rotations = state
        .store
        .read(move |c| openhive_store::keys::chain_statements(c, &me))
        .await?;
    Ok(Json(json!({
        "instance_id": state.identity.instance_id,
        "signing_key": state.identity.key.public().to_base64(),
        "rotations": rotations.iter().map(|s| json!({
            "old_key": s.old_key,
            "new_key": s.new_key,
            "at": s.at,
            "rotated_at": time::rfc3339(s.at),
        })).collect::<Vec<_>>(),
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

// ── Ingest keys: admin-issued scoped API keys ──────────────────────────────────────────

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateIngestKey {
    label: String,
    agent_id: Option<String>,
    agent_name: Option<String>,
    /// Default `["map"]`, as in the reference.
    scopes: Option<Vec<String>>,
    expires_in_hours: Option<i64>,
}

/// Longest lifetime of an ingest key given with `expires_in_hours` (ten years).
const MAX_INGEST_KEY_HOURS: i64 = 24 * 365 * 10;

fn ingest_key_view(k: &ingest_keys::IngestKeyRow, agent_name: Option<&str>) -> Value {
    json!({
        "id": k.id,
        "label": k.label,
        "key_prefix": k.key_prefix,
        "scopes": k.scopes,
        "agent_id": k.agent_id,
        "agent_name": agent_name,
        "expires_at": k.expires_at.map(time::rfc3339),
        "created_at": time::rfc3339(k.created_at),
        "revoked_at": k.revoked_at.map(time::rfc3339),
        "revoked": k.revoked_at.is_some(),
    })
}

/// `POST /admin/ingest-keys`: 201 `{id, key, label, scopes, agent_id, expires_at,
/// created_at, ...}`. The key is shown once, here; only its hash is stored.
async fn create_ingest_key(
    State(state): State<AppState>,
    admin: AdminCaller,
    Json(body): Json<CreateIngestKey>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    validate::display_name(&body.label, "label").map_err(|m| ApiError::validation("label", m))?;
    let mut scopes: Vec<String> = Vec::new();
    for sc in body.scopes.unwrap_or_else(|| vec!["map".into()]) {
        if !INGEST_SCOPES.contains(&sc.as_str()) {
            return Err(ApiError::validation(
                "scopes",
                format!(
                    "unknown scope {sc:?}; expected some of {}",
                    INGEST_SCOPES.join(", ")
                ),
            ));
        }
        if !scopes.contains(&sc) {
            scopes.push(sc);
        }
    }
    if scopes.is_empty() {
        return Err(ApiError::validation("scopes", "scopes must not be empty"));
    }
    let now = time::now_ms();
    let expires_at = match body.expires_in_hours {
        None => None,
        Some(h) if (1..=MAX_INGEST_KEY_HOURS).contains(&h) => Some(now + h * 3_600_000),
        Some(_) => {
            return Err(ApiError::validation(
                "expires_in_hours",
                format!("expires_in_hours must be between 1 and {MAX_INGEST_KEY_HOURS}"),
            ));
        }
    };
    let by_id = body.agent_id.filter(|s| !s.is_empty());
    let by_name = body.agent_name.filter(|s| !s.is_empty());
    let fallback = admin.agent.map(|a| a.id);
    if by_id.is_none() && by_name.is_none() && fallback.is_none() {
        return Err(ApiError::validation(
            "agent_id",
            "agent_id or agent_name is required",
        ));
    }
    let key = ids::new_secret_token(INGEST_KEY_PREFIX);
    let new = ingest_keys::NewIngestKey {
        id: ids::new_secret_token("ik_").chars().take(27).collect(),
        key_hash: ids::hash_secret(&key),
        key_prefix: key.chars().take(INGEST_KEY_PREFIX.len() + 6).collect(),
        label: body.label.trim().to_string(),
        agent_id: String::new(),
        scopes,
        expires_at,
    };
    let (row, agent) = state
        .store
        .write(move |tx| -> ApiResult<_> {
            let agent = match (&by_id, &by_name) {
                (Some(id), _) => agents::get_by_id(tx, id)?,
                (None, Some(name)) => agents::get_by_name(tx, name)?,
                (None, None) => match &fallback {
                    Some(id) => agents::get_by_id(tx, id)?,
                    None => None,
                },
            }
            .filter(|a| a.is_local)
            .ok_or_else(|| ApiError::not_found("agent"))?;
            if let (Some(_), Some(name)) = (&by_id, &by_name)
                && *name != agent.name
            {
                return Err(ApiError::validation(
                    "agent_name",
                    "agent_id and agent_name name different agents",
                ));
            }
            let row = ingest_keys::create(
                tx,
                &ingest_keys::NewIngestKey {
                    agent_id: agent.id.clone(),
                    ..new
                },
                now,
            )?;
            Ok((row, agent))
        })
        .await?;
    let mut view = ingest_key_view(&row, Some(&agent.name));
    view["key"] = json!(key);
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /admin/ingest-keys`: `{data}`, newest first. Unlike the reference, no listing
/// shows a key (only its hash is stored); `key_prefix` identifies it.
async fn list_ingest_keys(
    State(state): State<AppState>,
    _admin: AdminCaller,
) -> ApiResult<Json<Value>> {
    let rows = state
        .store
        .read(move |c| -> ApiResult<_> {
            let mut out = Vec::new();
            for k in ingest_keys::list(c)? {
                let name = agents::get_by_id(c, &k.agent_id)?.map(|a| a.name);
                out.push(ingest_key_view(&k, name.as_deref()));
            }
            Ok(out)
        })
        .await?;
    Ok(Json(json!({ "data": rows })))
}

/// `POST /admin/ingest-keys/:id/revoke`: `{success: true}`; the key stops working at once.
async fn revoke_ingest_key(
    State(state): State<AppState>,
    _admin: AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let found = state
        .store
        .write(move |tx| ingest_keys::revoke(tx, &id, time::now_ms()))
        .await?;
    if !found {
        return Err(ApiError::not_found("ingest key"));
    }
    Ok(Json(json!({"success": true})))
}

/// `DELETE /admin/ingest-keys/:id`: 204.
async fn delete_ingest_key(
    State(state): State<AppState>,
    _admin: AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let found = state
        .store
        .write(move |tx| ingest_keys::delete(tx, &id))
        .await?;
    if !found {
        return Err(ApiError::not_found("ingest key"));
    }
    Ok(StatusCode::NO_CONTENT)
}
