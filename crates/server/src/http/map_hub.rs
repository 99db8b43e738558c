//! `/api/v1/map/*`: the MAP hub's routes (mounted only with `[map_hub] enabled`; otherwise
//! they answer 404 like any unknown route). docs/PROTOCOL-sync.md, "MAP hub".
//!
//! - `POST /map/swarms`: register with a preauth key (`preauth_key` in the body or the
//!   `X-Preauth-Key` header) and a proof of key possession; 201 `{swarm, token,
//!   introduction, hub}` (200 when the instance re-registers: same swarm, new token).
//! - Swarm routes (`Authorization: Bearer <swarm token>`, for that swarm only):
//!   `PUT|PATCH /map/swarms/:id`, `POST /map/swarms/:id/heartbeat`,
//!   `POST /map/swarms/:id/hives {hive_name}`, `DELETE /map/swarms/:id/hives/:name`,
//!   `GET /map/peers/:swarmId`, `GET /map/swarms/:id/events?since=&wait_ms=` (long poll).
//! - Admin (`X-Admin-Key` required, whatever the auth mode): `POST|GET /map/preauth-keys`,
//!   `GET /map/swarms`, `DELETE /map/swarms/:id`.
//!
//! No response carries a token hash; the swarm token and a preauth key appear once, in the
//! response that created them, and never in logs.

use super::auth::ADMIN_KEY_HEADER;
use super::error::{ApiError, ApiResult};
use super::extract::{Json, Path, Query};
use crate::app::AppState;
use crate::map_hub::MapHub;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use openhive_core::introduction::HANDSHAKE_PROOF_WINDOW_MS;
use openhive_core::time::{now_ms, rfc3339};
use openhive_core::{PublicKey, ids, validate};
use openhive_store::StoreError;
use openhive_store::map_hub::{self, SwarmRow};
use openhive_sync::hub_client::{
    EventsResponse, HeartbeatResponse, HivesResponse, HubEvent, HubIdentity, HubPeer, MAX_WAIT_MS,
    PeerList, RegisterRequest, RegisterResponse, SwarmView, registration_proof_bytes,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Header that may carry the preauth key instead of the body.
pub const PREAUTH_KEY_HEADER: &str = "x-preauth-key";
/// Prefix of swarm tokens and of preauth keys.
pub const SWARM_TOKEN_PREFIX: &str = "ohmap_";
pub const PREAUTH_KEY_PREFIX: &str = "ohpak_";
/// Largest `capabilities` object accepted, serialized.
const MAX_CAPABILITIES_BYTES: usize = 4096;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/map/swarms", post(register).get(list_swarms))
        .route(
            "/map/swarms/{id}",
            axum::routing::put(update)
                .patch(update)
                .delete(delete_swarm)
                .get(get_swarm),
        )
        .route("/map/swarms/{id}/heartbeat", post(heartbeat))
        .route("/map/swarms/{id}/hives", post(join_hive))
        .route("/map/swarms/{id}/hives/{name}", delete(leave_hive))
        .route("/map/swarms/{id}/events", get(events))
        .route("/map/peers/{id}", get(peers))
        .route(
            "/map/preauth-keys",
            post(create_preauth_key).get(list_preauth_keys),
        )
}

fn hub(state: &AppState) -> ApiResult<Arc<MapHub>> {
    state
        .map_hub
        .clone()
        .ok_or_else(|| ApiError::NotFound("no such route".into()))
}

/// `X-Admin-Key` only (local auth mode does not open the hub's admin routes).
fn require_admin_key(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let Some(v) = headers.get(ADMIN_KEY_HEADER) else {
        return Err(ApiError::Unauthorized(
            "X-Admin-Key required for the MAP hub's admin routes".into(),
        ));
    };
    if v.to_str()
        .is_ok_and(|k| state.identity.admin_key_matches(k.trim()))
    {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("invalid admin key".into()))
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The swarm `id` if the request bears its token (401 without a valid token, 403 for
/// another swarm's).
async fn swarm_caller(hub: &MapHub, headers: &HeaderMap, id: &str) -> ApiResult<SwarmRow> {
    let Some(token) = bearer(headers) else {
        return Err(ApiError::Unauthorized(
            "swarm token required: Authorization: Bearer <token from registration>".into(),
        ));
    };
    let hash = ids::hash_secret(&token);
    let found = hub
        .store
        .read(move |c| map_hub::swarm_by_token(c, &hash))
        .await?;
    let Some(s) = found else {
        return Err(ApiError::Unauthorized("invalid swarm token".into()));
    };
    if s.id != id {
        return Err(ApiError::Forbidden(
            "this token belongs to another swarm".into(),
        ));
    }
    Ok(s)
}

async fn swarm_view(hub: &MapHub, s: SwarmRow) -> ApiResult<SwarmView> {
    let id = s.id.clone();
    let hives = hub.store.read(move |c| map_hub::hives_of(c, &id)).await?;
    Ok(view_of(s, hives))
}

fn view_of(s: SwarmRow, hives: Vec<String>) -> SwarmView {
    SwarmView {
        capabilities: serde_json::from_str(&s.capabilities).unwrap_or(Value::Null),
        id: s.id,
        name: s.name,
        description: s.description,
        instance_id: s.instance_id,
        signing_key: s.signing_key,
        sync_endpoint: s.sync_endpoint,
        map_endpoint: s.map_endpoint,
        status: s.status,
        hives,
        last_seen_at: rfc3339(s.last_seen_at),
        created_at: rfc3339(s.created_at),
        updated_at: rfc3339(s.updated_at),
    }
}

fn check_capabilities(c: Option<&Value>) -> ApiResult<Option<String>> {
    let Some(c) = c else {
        return Ok(None);
    };
    if !c.is_object() {
        return Err(ApiError::validation(
            "capabilities",
            "capabilities must be an object",
        ));
    }
    let text = c.to_string();
    if text.len() > MAX_CAPABILITIES_BYTES {
        return Err(ApiError::validation(
            "capabilities",
            format!("capabilities must be at most {MAX_CAPABILITIES_BYTES} bytes"),
        ));
    }
    Ok(Some(text))
}

fn check_endpoint(field: &str, e: &str) -> ApiResult<String> {
    validate::url(e)
        .map_err(|_| ApiError::validation(field, format!("{field} must be an http(s) URL")))?;
    Ok(openhive_sync::protocol::normalize_endpoint(e))
}

fn check_description(d: Option<&str>) -> ApiResult<()> {
    if d.is_some_and(|d| d.chars().count() > 500 || d.chars().any(char::is_control)) {
        return Err(ApiError::validation(
            "description",
            "description must be at most 500 characters, without control characters",
        ));
    }
    Ok(())
}

/// `POST /api/v1/map/swarms`.
async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<RegisterRequest>,
) -> ApiResult<Response> {
    let hub = hub(&state)?;
    let preauth = body
        .preauth_key
        .clone()
        .or_else(|| {
            headers
                .get(PREAUTH_KEY_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_string())
        })
        .filter(|k| !k.is_empty());
    let Some(preauth) = preauth else {
        return Err(ApiError::Unauthorized(
            "a preauth key is required to register (preauth_key or X-Preauth-Key)".into(),
        ));
    };
    validate::display_name(&body.name, "name").map_err(|m| ApiError::validation("name", m))?;
    check_description(body.description.as_deref())?;
    if ids::instance_suffix(&body.instance_id).is_none() {
        return Err(ApiError::validation("instance_id", "not an instance id"));
    }
    let key = PublicKey::from_base64(&body.signing_key)
        .map_err(|_| ApiError::validation("signing_key", "not an Ed25519 public key"))?;
    let sync_endpoint = check_endpoint("sync_endpoint", &body.sync_endpoint)?;
    let map_endpoint = body
        .map_endpoint
        .as_deref()
        .map(|e| check_endpoint("map_endpoint", e))
        .transpose()?;
    let capabilities =
        check_capabilities(body.capabilities.as_ref())?.unwrap_or_else(|| "{}".into());
    let now = now_ms();
    if (now - body.proof.at).abs() > HANDSHAKE_PROOF_WINDOW_MS {
        return Err(ApiError::Forbidden(
            "the registration proof is too old or from the future".into(),
        ));
    }
    let bytes = registration_proof_bytes(
        &body.instance_id,
        &body.signing_key,
        &body.sync_endpoint,
        body.proof.at,
    );
    key.verify(&bytes, &body.proof.signature).map_err(|_| {
        ApiError::Forbidden("the registration proof does not verify with signing_key".into())
    })?;
    if body.instance_id == hub.instance_id && body.signing_key != hub.signing_key() {
        return Err(ApiError::Conflict(
            "this instance id is the hub's own, with another key".into(),
        ));
    }
    let token = ids::new_secret_token(SWARM_TOKEN_PREFIX);
    let new = map_hub::NewSwarm {
        name: body.name.trim().to_string(),
        description: body.description.clone().unwrap_or_default(),
        instance_id: body.instance_id.clone(),
        signing_key: body.signing_key.clone(),
        sync_endpoint,
        map_endpoint,
        capabilities,
        token_hash: ids::hash_secret(&token),
    };
    let preauth_hash = ids::hash_secret(&preauth);
    let (row, created, hives) = hub
        .store
        .write(move |tx| -> Result<_, ApiError> {
            if let Err(why) = map_hub::spend_preauth_key(tx, &preauth_hash, now)? {
                return Err(ApiError::Unauthorized(format!(
                    "invalid preauth key: {}",
                    why.as_str()
                )));
            }
            let (row, created) = map_hub::register(tx, &new, now)?;
            let hives = map_hub::hives_of(tx, &row.id)?;
            Ok((row, created, hives))
        })
        .await?;
    hub.events_committed();
    tracing::info!(swarm = %row.id, instance = %row.instance_id, endpoint = %row.sync_endpoint, created, "MAP hub: swarm registered");
    let introduction = hub.introduction_for(&row);
    let resp = RegisterResponse {
        swarm: view_of(row, hives),
        token,
        introduction,
        hub: HubIdentity {
            instance_id: hub.instance_id.clone(),
            signing_key: hub.signing_key(),
        },
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(resp)).into_response())
}

#[derive(Debug, Deserialize)]
struct UpdateSwarm {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    sync_endpoint: Option<String>,
    #[serde(default)]
    map_endpoint: Option<String>,
    #[serde(default)]
    capabilities: Option<Value>,
}

/// `PUT|PATCH /api/v1/map/swarms/:id`: `{swarm, introduction}` (a new endpoint needs a new
/// introduction).
async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<UpdateSwarm>,
) -> ApiResult<Json<Value>> {
    let hub = hub(&state)?;
    let s = swarm_caller(&hub, &headers, &id).await?;
    if let Some(n) = &body.name {
        validate::display_name(n, "name").map_err(|m| ApiError::validation("name", m))?;
    }
    check_description(body.description.as_deref())?;
    let patch = map_hub::SwarmPatch {
        name: body.name.map(|n| n.trim().to_string()),
        description: body.description,
        sync_endpoint: body
            .sync_endpoint
            .as_deref()
            .map(|e| check_endpoint("sync_endpoint", e))
            .transpose()?,
        map_endpoint: body
            .map_endpoint
            .as_deref()
            .map(|e| check_endpoint("map_endpoint", e))
            .transpose()?,
        capabilities: check_capabilities(body.capabilities.as_ref())?,
    };
    let row = hub
        .store
        .write(move |tx| map_hub::update(tx, &s.id, &patch, now_ms()))
        .await?;
    hub.events_committed();
    let introduction = hub.introduction_for(&row);
    let view = swarm_view(&hub, row).await?;
    Ok(Json(json!({ "swarm": view, "introduction": introduction })))
}

/// `GET /api/v1/map/swarms/:id` (the swarm itself, or an admin).
async fn get_swarm(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<SwarmView>> {
    let hub = hub(&state)?;
    if require_admin_key(&state, &headers).is_err() {
        swarm_caller(&hub, &headers, &id).await?;
    }
    let sid = id.clone();
    let row = hub
        .store
        .read(move |c| map_hub::swarm(c, &sid))
        .await?
        .ok_or_else(|| ApiError::not_found("swarm"))?;
    Ok(Json(swarm_view(&hub, row).await?))
}

/// `DELETE /api/v1/map/swarms/:id` (the swarm itself, or an admin): 204.
async fn delete_swarm(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let hub = hub(&state)?;
    if require_admin_key(&state, &headers).is_err() {
        swarm_caller(&hub, &headers, &id).await?;
    }
    let gone = hub
        .store
        .write(move |tx| map_hub::delete_swarm(tx, &id, now_ms()))
        .await?;
    if !gone {
        return Err(ApiError::not_found("swarm"));
    }
    hub.events_committed();
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/map/swarms/:id/heartbeat`.
async fn heartbeat(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<HeartbeatResponse>> {
    let hub = hub(&state)?;
    let s = swarm_caller(&hub, &headers, &id).await?;
    let now = now_ms();
    let sid = s.id.clone();
    let hives = hub
        .store
        .write(move |tx| -> Result<_, StoreError> {
            map_hub::heartbeat(tx, &sid, now)?;
            map_hub::hives_of(tx, &sid)
        })
        .await?;
    if s.status != map_hub::ONLINE {
        hub.events_committed();
    }
    Ok(Json(HeartbeatResponse {
        status: "ok".into(),
        timestamp: rfc3339(now),
        introduction: hub.introduction_for(&s),
        hives,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinHive {
    hive_name: String,
}

/// `POST /api/v1/map/swarms/:id/hives {hive_name}`: the hive need not exist on the hub (it
/// never holds hive content).
async fn join_hive(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<JoinHive>,
) -> ApiResult<Json<HivesResponse>> {
    let hub = hub(&state)?;
    let s = swarm_caller(&hub, &headers, &id).await?;
    validate::hive_name(&body.hive_name).map_err(|m| ApiError::validation("hive_name", m))?;
    let name = body.hive_name.clone();
    let (new, hives) = hub
        .store
        .write(move |tx| -> Result<_, StoreError> {
            let now = now_ms();
            let new = map_hub::join_hive(tx, &s.id, &name, now)?;
            map_hub::heartbeat(tx, &s.id, now)?;
            Ok((new, map_hub::hives_of(tx, &s.id)?))
        })
        .await?;
    if new {
        hub.events_committed();
    }
    Ok(Json(HivesResponse {
        message: format!("joined hive {}", body.hive_name),
        hives,
    }))
}

/// `DELETE /api/v1/map/swarms/:id/hives/:name`.
async fn leave_hive(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Json<HivesResponse>> {
    let hub = hub(&state)?;
    let s = swarm_caller(&hub, &headers, &id).await?;
    let n = name.clone();
    let (gone, hives) = hub
        .store
        .write(move |tx| -> Result<_, StoreError> {
            let gone = map_hub::leave_hive(tx, &s.id, &n, now_ms())?;
            Ok((gone, map_hub::hives_of(tx, &s.id)?))
        })
        .await?;
    if gone {
        hub.events_committed();
    }
    Ok(Json(HivesResponse {
        message: format!("left hive {name}"),
        hives,
    }))
}

/// `GET /api/v1/map/peers/:swarmId`: every other swarm sharing a hive with it (offline ones
/// included, with their status).
async fn peers(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<PeerList>> {
    let hub = hub(&state)?;
    let s = swarm_caller(&hub, &headers, &id).await?;
    let sid = s.id.clone();
    let rows = hub.store.read(move |c| map_hub::peers_of(c, &sid)).await?;
    Ok(Json(PeerList {
        swarm_id: s.id,
        peers: rows
            .into_iter()
            .map(|p| HubPeer {
                capabilities: serde_json::from_str(&p.swarm.capabilities).unwrap_or(Value::Null),
                swarm_id: p.swarm.id,
                instance_id: p.swarm.instance_id,
                name: p.swarm.name,
                sync_endpoint: p.swarm.sync_endpoint,
                signing_key: p.swarm.signing_key,
                shared_hives: p.shared_hives,
                status: p.swarm.status,
                map_endpoint: p.swarm.map_endpoint,
                last_seen_at: rfc3339(p.swarm.last_seen_at),
            })
            .collect(),
        generated_at: rfc3339(now_ms()),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    #[serde(default)]
    since: Option<i64>,
    #[serde(default)]
    wait_ms: Option<u64>,
}

/// `GET /api/v1/map/swarms/:id/events?since=&wait_ms=`: the events after `since` that
/// concern the swarm; with `wait_ms` (at most 30 s) the call waits for one if there is none
/// yet. `since` omitted: only events from now on (answers `next_since`).
async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Json<EventsResponse>> {
    let hub = hub(&state)?;
    let s = swarm_caller(&hub, &headers, &id).await?;
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0).min(MAX_WAIT_MS));
    let deadline = tokio::time::Instant::now() + wait;
    let mut rx = hub.subscribe();
    let since = match q.since {
        Some(s) if s >= 0 => s,
        Some(_) => return Err(ApiError::validation("since", "since must be ≥ 0")),
        None => hub.store.read(map_hub::last_event_id).await?,
    };
    loop {
        rx.borrow_and_update();
        let sid = s.id.clone();
        let (rows, next) = hub
            .store
            .read(move |c| map_hub::events_for(c, &sid, since, 500))
            .await?;
        let now = tokio::time::Instant::now();
        if !rows.is_empty() || now >= deadline {
            return Ok(Json(EventsResponse {
                events: rows
                    .into_iter()
                    .map(|e| HubEvent {
                        id: e.id,
                        kind: e.kind,
                        swarm_id: e.swarm_id,
                        hive_name: e.hive_name,
                        at: rfc3339(e.at),
                    })
                    .collect(),
                next_since: next,
            }));
        }
        // Woken by a commit here, or every second (commits of other app processes).
        let nap = deadline
            .saturating_duration_since(now)
            .min(Duration::from_secs(1));
        let _ = tokio::time::timeout(nap, rx.changed()).await;
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPreauthKey {
    #[serde(default)]
    uses: Option<i64>,
    #[serde(default)]
    expires_in_hours: Option<i64>,
    /// The reference's field; accepted and ignored (a hub introduction covers every hive).
    #[serde(default)]
    hive_id: Option<String>,
}

/// `POST /api/v1/map/preauth-keys` (X-Admin-Key): 201 `{id, key, uses_left, expires_at,
/// created_at}`; the key is shown once.
async fn create_preauth_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> ApiResult<Response> {
    let hub = hub(&state)?;
    require_admin_key(&state, &headers)?;
    // The body is optional (all its fields are).
    let body: NewPreauthKey = if raw.iter().all(u8::is_ascii_whitespace) {
        NewPreauthKey::default()
    } else {
        serde_json::from_slice(&raw).map_err(|e| ApiError::BadRequest {
            message: "request body does not match the expected shape".into(),
            details: Some(json!({ "reason": e.to_string() })),
        })?
    };
    let _ = body.hive_id;
    let uses = body.uses.unwrap_or(1);
    if !(1..=1000).contains(&uses) {
        return Err(ApiError::validation("uses", "uses must be 1-1000"));
    }
    let hours = body.expires_in_hours.unwrap_or(24);
    if !(1..=8760).contains(&hours) {
        return Err(ApiError::validation(
            "expires_in_hours",
            "expires_in_hours must be 1-8760",
        ));
    }
    let key = ids::new_secret_token(PREAUTH_KEY_PREFIX);
    let hash = ids::hash_secret(&key);
    let now = now_ms();
    let row = hub
        .store
        .write(move |tx| map_hub::create_preauth_key(tx, &hash, uses, now + hours * 3_600_000, now))
        .await?;
    tracing::info!(id = %row.id, uses, hours, "MAP hub: preauth key created");
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": row.id,
            "key": key,
            "uses_left": row.uses_left,
            "expires_at": rfc3339(row.expires_at),
            "created_at": rfc3339(row.created_at),
        })),
    )
        .into_response())
}

/// `GET /api/v1/map/preauth-keys` (X-Admin-Key): the keys without their secret.
async fn list_preauth_keys(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let hub = hub(&state)?;
    require_admin_key(&state, &headers)?;
    let rows = hub.store.read(map_hub::list_preauth_keys).await?;
    let data: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id,
                "uses_left": r.uses_left,
                "expires_at": rfc3339(r.expires_at),
                "created_at": rfc3339(r.created_at),
                "last_used_at": r.last_used_at.map(rfc3339),
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

/// `GET /api/v1/map/swarms` (X-Admin-Key): every swarm with its hives.
async fn list_swarms(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let hub = hub(&state)?;
    require_admin_key(&state, &headers)?;
    let rows = hub
        .store
        .read(|c| -> Result<_, StoreError> {
            let mut out = Vec::new();
            for s in map_hub::list_swarms(c)? {
                let hives = map_hub::hives_of(c, &s.id)?;
                out.push((s, hives));
            }
            Ok(out)
        })
        .await?;
    let total = rows.len();
    let data: Vec<SwarmView> = rows.into_iter().map(|(s, h)| view_of(s, h)).collect();
    Ok(Json(json!({ "data": data, "total": total })))
}
