//! Authentication.
//!
//! - `Authorization: Bearer <api key>`: the key's SHA-256 is looked up through the UNIQUE
//!   index on `agents.api_key_hash`. A present but unknown or malformed header is a 401,
//!   whatever the auth mode.
//! - No header: in local mode (loopback only, see `config::effective_auth_mode`) the caller
//!   is the built-in admin agent `local`; in token mode there is no caller.
//! - `X-Admin-Key: <admin key>` (contents of `<data_dir>/admin.key`) is accepted by
//!   [`AdminCaller`] only, compared in constant time.
//!
//! - `Authorization: Bearer ohk_…`: an admin-issued ingest key (`/admin/ingest-keys`),
//!   looked up by hash like an API key; the request acts as the key's agent, limited to the
//!   key's scopes (see [`required_scope`]): out of scope is a 403, a revoked or expired key
//!   a 401.
//!
//! Agents an admin rejected get 403 on every authenticated request.

use super::agents::AgentPublic;
use super::error::{ApiError, ApiResult};
use super::extract::Json;
use crate::app::AppState;
use crate::config::AuthMode;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Router, http::header};
use openhive_core::{ids, time};
use openhive_store::agents::{self, AgentRow};
use openhive_store::engine::Conn;
use serde_json::{Value, json};

/// Header carrying the admin key.
pub const ADMIN_KEY_HEADER: &str = "x-admin-key";

/// How often (ms) `last_seen_at` is written for one agent at most.
const LAST_SEEN_EVERY_MS: i64 = 60_000;

/// An authenticated agent (401 if there is none).
#[derive(Debug, Clone)]
pub struct Caller(pub AgentRow);

/// An agent if the request is authenticated; an invalid `Authorization` header is still 401.
#[derive(Debug, Clone)]
pub struct MaybeCaller(pub Option<AgentRow>);

/// An administrator: an admin agent, or any request bearing the valid admin key (then
/// `agent` is the bearer-authenticated agent, if any, else `None`).
#[derive(Debug, Clone)]
pub struct AdminCaller {
    pub agent: Option<AgentRow>,
}

fn bearer_token(parts: &Parts) -> ApiResult<Option<String>> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::Unauthorized("malformed Authorization header; expected Bearer <api key>".into())
    };
    let s = value.to_str().map_err(|_| bad())?.trim();
    let (scheme, token) = s.split_once(' ').ok_or_else(bad)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(bad());
    }
    Ok(Some(token.to_string()))
}

/// Prefix of ingest keys.
pub const INGEST_KEY_PREFIX: &str = "ohk_";

/// The scopes an ingest key may carry (the reference's names): `map`, `sessions`,
/// `resources`, `admin`, and `*` (everything).
pub const INGEST_SCOPES: [&str; 5] = ["map", "sessions", "resources", "admin", "*"];

/// The scope a request path needs, by its first segment under `/api/v1` (the reference's
/// rule): `map`/`coordination` → `map`, `sessions` → `sessions`,
/// `resources`/`resource-content`/`memory-banks` → `resources`, `admin` → `admin`; any
/// other route needs `*`.
pub fn required_scope(path: &str) -> &'static str {
    let rest = path.strip_prefix("/api/v1").unwrap_or(path);
    match rest.trim_start_matches('/').split('/').next().unwrap_or("") {
        "map" | "coordination" => "map",
        "sessions" => "sessions",
        "resources" | "resource-content" | "memory-banks" => "resources",
        "admin" => "admin",
        _ => "*",
    }
}

/// The agent of the ingest key `token`, if the key is usable and covers `path`.
pub(super) async fn resolve_ingest_key(
    state: &AppState,
    token: &str,
    path: &str,
) -> ApiResult<AgentRow> {
    let hash = ids::hash_secret(token);
    let found = state
        .store
        .read_point(move |c| -> Result<_, openhive_store::StoreError> {
            let Some(k) = openhive_store::ingest_keys::by_hash(c, &hash)? else {
                return Ok(None);
            };
            let agent = agents::get_by_id(c, &k.agent_id)?;
            Ok(Some((k, agent)))
        })
        .await?;
    let Some((key, agent)) = found else {
        return Err(ApiError::Unauthorized("invalid API key".into()));
    };
    if !key.is_usable(time::now_ms()) {
        return Err(ApiError::Unauthorized(
            "this ingest key has been revoked or has expired".into(),
        ));
    }
    let need = required_scope(path);
    if !key.scopes.iter().any(|s| s == "*" || s == need) {
        return Err(ApiError::Forbidden(format!(
            "this ingest key's scopes ({}) do not cover this route (needs {need:?})",
            key.scopes.join(", ")
        )));
    }
    agent
        .filter(|a| a.is_local)
        .ok_or_else(|| ApiError::Unauthorized("the ingest key's agent no longer exists".into()))
}

/// Resolves the calling agent from the request (see the module docs).
async fn resolve(parts: &Parts, state: &AppState) -> ApiResult<Option<AgentRow>> {
    let agent = match bearer_token(parts)? {
        Some(token) if token.starts_with(INGEST_KEY_PREFIX) => {
            Some(resolve_ingest_key(state, &token, parts.uri.path()).await?)
        }
        Some(token) => {
            let hash = ids::hash_secret(&token);
            let found = remembered(state, hash.clone(), move |c| {
                agents::get_by_api_key_hash(c, &hash)
            })
            .await?;
            Some(found.ok_or_else(|| ApiError::Unauthorized("invalid API key".into()))?)
        }
        None if state.auth_mode() == AuthMode::Local => {
            let id = state.identity.local_agent_id.clone();
            // Hashes are 64 hex digits: an "id:" key never meets one.
            let found = remembered(state, format!("id:{id}"), move |c| {
                agents::get_by_id(c, &id)
            })
            .await?;
            Some(found.ok_or_else(|| ApiError::internal("the built-in local agent is missing"))?)
        }
        None => None,
    };
    if let Some(a) = &agent {
        if a.verification_status == "rejected" {
            return Err(ApiError::Forbidden(
                "this agent has been rejected by an administrator".into(),
            ));
        }
        touch(state, a);
    }
    Ok(agent)
}

/// The agent `read` finds, from the caller cache while that agent has not changed since it
/// was read (`super::caller_cache`); a found agent is kept under `key`.
async fn remembered<F>(state: &AppState, key: String, read: F) -> ApiResult<Option<AgentRow>>
where
    F: FnOnce(&Conn<'_>) -> Result<Option<AgentRow>, openhive_store::StoreError> + Send + 'static,
{
    // Read before the row: a change committed after this read moves it on.
    let version = state.store.agents_version();
    if version.is_some()
        && let Some(agent) = state
            .callers
            .get(&key, |id| state.store.agent_changed_at(id))
    {
        return Ok(Some(agent));
    }
    let found = state.store.read_point(read).await?;
    if let (Some(v), Some(agent)) = (version, &found) {
        state.callers.put(v, key, agent.clone());
    }
    Ok(found)
}

/// Records activity at most once a minute per agent, off the request path.
fn touch(state: &AppState, a: &AgentRow) {
    let now = time::now_ms();
    if a.last_seen_at.is_some_and(|t| now - t < LAST_SEEN_EVERY_MS) {
        return;
    }
    let store = state.store.clone();
    let id = a.id.clone();
    tokio::spawn(async move {
        if let Err(e) = store
            .write(move |tx| agents::touch_last_seen(tx, &id, now))
            .await
        {
            tracing::warn!(error = %e, "could not record last_seen_at");
        }
    });
}

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        Ok(MaybeCaller(resolve(parts, state).await?))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        resolve(parts, state).await?.map(Caller).ok_or_else(|| {
            ApiError::Unauthorized(
                "authentication required: Authorization: Bearer <api key>".into(),
            )
        })
    }
}

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        if let Some(v) = parts.headers.get(ADMIN_KEY_HEADER) {
            let ok = v
                .to_str()
                .is_ok_and(|k| state.identity.admin_key_matches(k.trim()));
            if !ok {
                return Err(ApiError::Unauthorized("invalid admin key".into()));
            }
            // The key alone is enough; a bearer token, if any, only names the acting agent.
            let agent = resolve(parts, state).await.ok().flatten();
            return Ok(AdminCaller { agent });
        }
        match resolve(parts, state).await? {
            Some(a) if a.is_admin => Ok(AdminCaller { agent: Some(a) }),
            Some(_) => Err(ApiError::Forbidden("administrator rights required".into())),
            None => Err(ApiError::Unauthorized(
                "authentication required: an admin agent's API key or X-Admin-Key".into(),
            )),
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/mode", get(mode))
        .route("/auth/me", get(me))
}

/// `{mode:"local", agent}` in local mode, else `{mode:"token"}`.
async fn mode(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    match state.auth_mode() {
        AuthMode::Local => {
            let id = state.identity.local_agent_id.clone();
            let agent = state
                .store
                .read_point(move |c| agents::get_by_id(c, &id))
                .await?
                .ok_or_else(|| ApiError::internal("the built-in local agent is missing"))?;
            Ok(Json(
                json!({"mode": "local", "agent": AgentPublic::from(&agent)}),
            ))
        }
        AuthMode::Token => Ok(Json(json!({"mode": "token"}))),
    }
}

async fn me(Caller(agent): Caller) -> Json<AgentPublic> {
    Json(AgentPublic::from(&agent))
}
