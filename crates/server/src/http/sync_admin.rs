//! `/api/v1/sync/*`: local administration of Hive Sync (groups, peers, status), and
//! `/api/v1/federation/status` with its `sync` section. Every route needs [`AdminCaller`].
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
        .route("/sync/groups/{id}", get(get_group).delete(delete_group))
        .route("/sync/groups/{id}/resync", post(resync))
        .route("/sync/groups/{id}/events", get(group_events))
        .route("/sync/peers", post(add_peer).get(list_peers))
        .route(
            "/sync/peers/{id}",
            get(get_peer).patch(update_peer).delete(delete_peer),
        )
        .route("/sync/peers/{id}/test", post(test_peer))
        .route("/sync/status", get(status))
        .route("/federation/status", get(federation_status))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroup {
    hive_name: String,
}

async fn create_group(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Json(body): Json<CreateGroup>,
) -> ApiResult<Response> {
    let (view, created) = admin::create_group(&state.sync, &body.hive_name).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(view)).into_response())
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
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(view)).into_response())
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

async fn federation_status(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<Json<Value>> {
    let sync = admin::federation_section(&state.sync).await?;
    Ok(Json(json!({
        "enabled": state.sync.enabled(),
        "instance_id": state.identity.instance_id,
        "sync": {
            "enabled": state.sync.enabled(),
            "groups": sync.groups,
        },
    })))
}
