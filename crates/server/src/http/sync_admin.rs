//! `/api/v1/sync/*`: local administration of Hive Sync (groups, peers, status), and
//! the legacy `/api/v1/federation/status` (with its `sync` section) and
//! `/api/v1/federation/peers[/:id]` over the sync peers. Every route needs [`AdminCaller`].
//! Logic lives in `openhive_sync::admin`; no response carries a token or a private key.

use super::auth::AdminCaller;
use super::error::ApiResult;
use super::extract::{Json, Path, Query};
use crate::app::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use openhive_sync::admin::{self, AddPeer, PatchPeer};
use openhive_sync::paging::{ListQuery, Page};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sync/groups", post(create_group).get(list_groups))
        .route("/sync/groups/join", post(join_group))
        .route("/sync/groups/{id}", get(get_group).delete(delete_group))
        .route("/sync/groups/{id}/resync", post(resync))
        .route("/sync/groups/{id}/compact", post(compact))
        .route("/sync/groups/{id}/events", get(group_events))
        .route("/sync/peers", post(add_peer).get(list_peers))
        .route(
            "/sync/peers/{id}",
            get(get_peer).patch(update_peer).delete(delete_peer),
        )
        .route("/sync/peers/{id}/test", post(test_peer))
        .route("/sync/peers/{id}/rotate-token", post(rotate_token))
        .route("/sync/status", get(status))
        .route("/federation/status", get(federation_status))
        .route("/federation/peers", get(federation_peers))
        .route("/federation/peers/{id}", get(federation_peer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroup {
    hive_name: String,
    /// The reference's body may carry it; accepted and ignored (groups pair by hive name
    /// here, and a group's `sync_group_name` is its hive name).
    #[serde(default)]
    sync_group_name: Option<String>,
}

async fn create_group(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Json(body): Json<CreateGroup>,
) -> ApiResult<Response> {
    if let Some(n) = &body.sync_group_name {
        openhive_core::validate::display_name(n, "sync_group_name")
            .map_err(|m| super::error::ApiError::validation("sync_group_name", m))?;
    }
    let (view, created) = admin::create_group(&state.sync, &body.hive_name).await?;
    Ok(created_or_ok(created, view))
}

/// `POST /sync/groups/join`: 201 `{group, peer}` when the group or the peer is new, 200
/// when both already existed.
async fn join_group(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Json(body): Json<admin::JoinGroup>,
) -> ApiResult<Response> {
    let (view, created) = admin::join_group(&state.sync, body).await?;
    Ok(created_or_ok(created, view))
}

async fn list_groups(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Page<admin::GroupView>>> {
    Ok(Json(admin::list_groups(&state.sync, &q).await?))
}

async fn get_group(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<admin::GroupDetail>> {
    Ok(Json(admin::get_group(&state.sync, &id).await?))
}

async fn delete_group(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    admin::delete_group(&state.sync, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn resync(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let r = admin::resync(&state.sync, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(r)).into_response())
}

/// `POST /sync/groups/:id/compact`: 200 `{hive, compacted_through_seq, snapshot_size, ...}`.
async fn compact(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<admin::CompactResult>> {
    Ok(Json(admin::compact(&state.sync, &id).await?))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    limit: Option<i64>,
    before: Option<i64>,
}

async fn group_events(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Json<admin::EventsView>> {
    Ok(Json(
        admin::group_events(&state.sync, &id, q.limit, q.before).await?,
    ))
}

async fn add_peer(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Json(body): Json<AddPeer>,
) -> ApiResult<Response> {
    let (view, created) = admin::add_peer(&state.sync, body).await?;
    Ok(created_or_ok(created, view))
}

async fn list_peers(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Page<admin::PeerView>>> {
    Ok(Json(admin::list_peers(&state.sync, &q).await?))
}

async fn get_peer(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<admin::PeerView>> {
    Ok(Json(admin::get_peer(&state.sync, &id).await?))
}

async fn update_peer(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<PatchPeer>,
) -> ApiResult<Json<admin::PeerView>> {
    Ok(Json(admin::update_peer(&state.sync, &id, body).await?))
}

async fn delete_peer(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    admin::delete_peer(&state.sync, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Optional body of `rotate-token`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateTokenBody {
    /// Overrides `[sync] token_grace_secs` for this rotation (0: the old tokens stop now).
    grace_secs: Option<u64>,
}

async fn rotate_token(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<admin::TokenRotation>> {
    let body: RotateTokenBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateTokenBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| super::error::ApiError::BadRequest {
            message: format!("invalid body: {e}"),
            details: None,
        })?
    };
    let grace = body
        .grace_secs
        .unwrap_or(state.config.sync.token_grace_secs);
    if grace > crate::config::MAX_TOKEN_GRACE_SECS {
        return Err(super::error::ApiError::BadRequest {
            message: format!(
                "grace_secs must be at most {}",
                crate::config::MAX_TOKEN_GRACE_SECS
            ),
            details: Some(json!({"field": "grace_secs"})),
        });
    }
    Ok(Json(
        admin::rotate_token(&state.sync, &id, std::time::Duration::from_secs(grace)).await?,
    ))
}

async fn test_peer(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<admin::TestResult>> {
    Ok(Json(admin::test_peer(&state.sync, &id).await?))
}

async fn status(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<admin::StatusView>> {
    Ok(Json(admin::status(&state.sync, &q).await?))
}

/// The reference's legacy federation instance row, for one of our sync peers: `url` is
/// its sync endpoint; every peer here was configured by an admin or accepted by
/// handshake, hence `is_trusted`; blocking does not exist (a peer is deleted instead).
fn federation_peer_row(p: &admin::PeerView) -> Value {
    json!({
        "id": p.id,
        "url": p.sync_endpoint,
        "name": p.name,
        "status": p.status,
        "is_trusted": true,
        "instance_id": p.instance_id,
        "source": p.source,
        "shared_hives": p.shared_hives,
        "last_seen_at": p.last_contact_at,
        "last_error": p.last_error,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    })
}

/// `GET /federation/status`: the reference's shape (`enabled, policy, peers_count,
/// stats{total,active,blocked}, recent_peers`) over our sync peers, plus `instance_id` and
/// the `sync` section. Admin only here (it lists peer endpoints).
async fn federation_status(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<Json<Value>> {
    let sync = admin::federation_section(&state.sync).await?;
    let mut peers = admin::all_peers(&state.sync).await?;
    let active = peers
        .iter()
        .filter(|p| p.status == openhive_store::sync_state::PeerStatus::Active)
        .count();
    let total = peers.len();
    peers.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
    let recent: Vec<Value> = peers
        .iter()
        .take(10)
        .map(|p| {
            json!({
                "id": p.id,
                "url": p.sync_endpoint,
                "name": p.name,
                "status": p.status,
                "is_trusted": true,
            })
        })
        .collect();
    Ok(Json(json!({
        "enabled": state.sync.enabled(),
        "policy": "configured",
        "peers_count": total,
        "stats": { "total": total, "active": active, "blocked": 0 },
        "recent_peers": recent,
        "instance_id": state.identity.instance_id,
        "sync": {
            "enabled": state.sync.enabled(),
            "groups": sync.groups,
        },
    })))
}

#[derive(Debug, Deserialize)]
struct FederationPeersQuery {
    status: Option<String>,
    trusted: Option<bool>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /federation/peers?status&trusted&limit&offset`: `{data, total}` (legacy shape, over
/// our sync peers).
async fn federation_peers(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Query(q): Query<FederationPeersQuery>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = super::extract::PageParams {
        limit: q.limit,
        offset: q.offset,
    }
    .resolve(50)?;
    let peers: Vec<admin::PeerView> = admin::all_peers(&state.sync)
        .await?
        .into_iter()
        .filter(|p| q.status.as_deref().is_none_or(|s| p.status.as_str() == s))
        .filter(|_| q.trusted != Some(false))
        .collect();
    let total = peers.len();
    let data: Vec<Value> = peers
        .iter()
        .skip(usize::try_from(offset).unwrap_or(0))
        .take(usize::try_from(limit).unwrap_or(0))
        .map(federation_peer_row)
        .collect();
    Ok(Json(json!({ "data": data, "total": total })))
}

/// `GET /federation/peers/:id`: one peer's legacy row.
async fn federation_peer(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let p = admin::get_peer(&state.sync, &id).await?;
    Ok(Json(federation_peer_row(&p)))
}

/// 201 with `view` when the call created something, 200 when it all existed already.
fn created_or_ok(created: bool, view: impl serde::Serialize) -> Response {
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (code, Json(view)).into_response()
}
