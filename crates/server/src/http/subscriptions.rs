//! `/api/v1/sync/subscriptions`: Pattern 1 pull subscriptions (admin only, like every
//! `/api/v1/sync/*` route: [`AdminCaller`]).
//!
//! - `POST /sync/subscriptions` `{remote_url, remote_hive_name, local_hive_name?,
//!   sync_interval_ms?, enabled?}` → 201: creates the subscription and its read-only
//!   mirror hive (`local_hive_name`, default the remote hive's name), polled at once;
//! - `GET /sync/subscriptions?limit=&cursor=` → `{data, next_cursor, has_more}`;
//! - `GET /sync/subscriptions/{id}`;
//! - `PATCH /sync/subscriptions/{id}` `{enabled?, sync_interval_ms?}`: pause, resume (due
//!   at once), change the interval;
//! - `DELETE /sync/subscriptions/{id}` → 204: stops polling; the mirror hive and its posts
//!   stay, still read-only (a new subscription to the same remote hive may reuse it);
//! - `POST /sync/subscriptions/{id}/sync` → 202: poll now (409 while paused).

use super::auth::AdminCaller;
use super::error::{ApiError, ApiResult};
use super::extract::{Json, Path, Query};
use crate::app::AppState;
use crate::service::NewSubscriptionInput;
use crate::subscriptions::normalize_remote_url;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use openhive_core::time::rfc3339;
use openhive_core::validate;
use openhive_store::subscriptions::{self, SubscriptionRow};
use serde::Deserialize;
use serde_json::{Value, json};

/// Bounds of `sync_interval_ms`: one second to one day.
pub const MIN_INTERVAL_MS: i64 = 1000;
pub const MAX_INTERVAL_MS: i64 = 86_400_000;
pub const DEFAULT_INTERVAL_MS: i64 = 60_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sync/subscriptions", post(create).get(list))
        .route(
            "/sync/subscriptions/{id}",
            get(show).patch(update).delete(remove),
        )
        .route("/sync/subscriptions/{id}/sync", post(sync_now))
}

/// The JSON shape of a subscription.
pub fn view(s: &SubscriptionRow) -> Value {
    let status = if !s.enabled {
        "paused"
    } else if s.failure_count > 0 {
        "error"
    } else {
        "active"
    };
    json!({
        "id": s.id,
        "remote_url": s.remote_url,
        "remote_hive_name": s.remote_hive_name,
        "local_hive_id": s.local_hive_id,
        "local_hive_name": s.local_hive_name,
        "sync_interval_ms": s.sync_interval_ms,
        "enabled": s.enabled,
        "status": status,
        "sync_cursor": s.pass.since_ms.map(rfc3339),
        "backfill_in_progress": s.pass.in_progress(),
        "last_sync_at": s.last_sync_at.map(rfc3339),
        "last_attempt_at": s.last_attempt_at.map(rfc3339),
        "next_poll_at": s.enabled.then(|| rfc3339(s.next_poll_at)),
        "last_error": s.last_error,
        "failure_count": s.failure_count,
        "post_count": s.post_count,
        "created_at": rfc3339(s.created_at),
        "updated_at": rfc3339(s.updated_at),
    })
}

fn check_interval(ms: i64) -> ApiResult<()> {
    if (MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&ms) {
        Ok(())
    } else {
        Err(ApiError::validation(
            "sync_interval_ms",
            format!("sync_interval_ms must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS}"),
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSubscription {
    /// Base URL of the remote OpenHive (`https://host[:port]`; a trailing `/api/v1` is
    /// dropped).
    #[serde(alias = "remote_instance_url", alias = "instance_url")]
    remote_url: String,
    remote_hive_name: String,
    local_hive_name: Option<String>,
    sync_interval_ms: Option<i64>,
    enabled: Option<bool>,
}

async fn create(
    admin: AdminCaller,
    State(state): State<AppState>,
    Json(body): Json<CreateSubscription>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let remote_url = normalize_remote_url(&body.remote_url);
    let bad_url = || {
        ApiError::validation(
            "remote_url",
            "remote_url must be the http(s) base URL of an OpenHive instance, without credentials, query or fragment",
        )
    };
    validate::url(&remote_url).map_err(|_| bad_url())?;
    // It is shown in listings and errors: no credentials in it.
    let parsed = reqwest::Url::parse(&remote_url).map_err(|_| bad_url())?;
    if !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || parsed.host_str().is_none()
    {
        return Err(bad_url());
    }
    validate::hive_name(&body.remote_hive_name)
        .map_err(|m| ApiError::validation("remote_hive_name", m))?;
    let local_hive_name = body
        .local_hive_name
        .unwrap_or_else(|| body.remote_hive_name.clone());
    validate::hive_name(&local_hive_name)
        .map_err(|m| ApiError::validation("local_hive_name", m))?;
    let interval = body.sync_interval_ms.unwrap_or(DEFAULT_INTERVAL_MS);
    check_interval(interval)?;
    let actor = match &admin.agent {
        Some(a) => super::actor(a),
        None => {
            let id = state.identity.local_agent_id.clone();
            let local = state
                .store
                .read(move |c| openhive_store::agents::get_by_id(c, &id))
                .await?
                .ok_or_else(|| ApiError::internal("the built-in local agent is missing"))?;
            super::actor(&local)
        }
    };
    // A fresh id in our namespace: `sub_<instance suffix>_<ulid>`.
    let id = openhive_core::ids::new_id(openhive_core::ids::Kind::Event, state.hives.instance_id())
        .replacen("evt_", "sub_", 1);
    let row = state
        .hives
        .subscribe(
            &actor,
            id,
            NewSubscriptionInput {
                remote_url,
                remote_hive_name: body.remote_hive_name,
                local_hive_name,
                sync_interval_ms: interval,
                enabled: body.enabled.unwrap_or(true),
            },
        )
        .await?;
    tracing::info!(id = %row.id, remote = %row.remote_url, remote_hive = %row.remote_hive_name, hive = %row.local_hive_name, "subscription created");
    state.subscriptions.wake();
    Ok((StatusCode::CREATED, Json(view(&row))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(25);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            "limit must be between 1 and 500",
        ));
    }
    let after = q.cursor.unwrap_or_default();
    let mut rows = state
        .store
        .read(move |c| subscriptions::list(c, &after, limit + 1))
        .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if has_more {
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(Json(json!({
        "data": rows.iter().map(view).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
        "has_more": has_more,
    })))
}

async fn find(state: &AppState, id: String) -> ApiResult<SubscriptionRow> {
    state
        .store
        .read(move |c| subscriptions::get(c, &id))
        .await?
        .ok_or_else(|| ApiError::not_found("subscription"))
}

async fn show(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(view(&find(&state, id).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchSubscription {
    enabled: Option<bool>,
    sync_interval_ms: Option<i64>,
}

async fn update(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<PatchSubscription>,
) -> ApiResult<Json<Value>> {
    if let Some(ms) = body.sync_interval_ms {
        check_interval(ms)?;
    }
    let now = openhive_core::time::now_ms();
    let key = id.clone();
    let found = state
        .store
        .try_write(move |tx| {
            subscriptions::update(tx, &key, body.enabled, body.sync_interval_ms, now)
        })
        .await?;
    if !found {
        return Err(ApiError::not_found("subscription"));
    }
    state.subscriptions.wake();
    Ok(Json(view(&find(&state, id).await?)))
}

async fn remove(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let key = id.clone();
    let found = state
        .store
        .try_write(move |tx| subscriptions::delete(tx, &key))
        .await?;
    if !found {
        return Err(ApiError::not_found("subscription"));
    }
    tracing::info!(%id, "subscription deleted; its mirror hive stays (read-only)");
    Ok(StatusCode::NO_CONTENT)
}

async fn sync_now(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let sub = find(&state, id.clone()).await?;
    if !sub.enabled {
        return Err(ApiError::Conflict(
            "the subscription is paused; resume it (PATCH enabled=true) to poll".into(),
        ));
    }
    let now = openhive_core::time::now_ms();
    state
        .store
        .try_write(move |tx| subscriptions::poll_now(tx, &id, now))
        .await?;
    state.subscriptions.wake();
    let sub = find(&state, sub.id).await?;
    Ok((StatusCode::ACCEPTED, Json(view(&sub))))
}
