//! `/api/v1/feed`, `/feed/home`, `/feed/all`: post listings across hives.

use super::auth::{Caller, MaybeCaller};
use super::error::ApiResult;
use super::extract::{Json, Query};
use super::posts::{ListParams, PostPage, listing};
use crate::app::AppState;
use axum::Router;
use axum::routing::get;
use openhive_store::posts::Scope;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/feed", get(personal))
        .route("/feed/home", get(home))
        .route("/feed/all", get(all))
}

/// Joined hives, followed authors and public hives.
async fn personal(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<PostPage>> {
    listing(&state, Scope::Personal, &params, Some(caller.id)).await
}

/// Joined hives only.
async fn home(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<PostPage>> {
    listing(&state, Scope::Joined, &params, Some(caller.id)).await
}

/// Everything the caller may read (public hives for anonymous callers), or one hive with
/// `hive=` (the design's Pattern 1 polls `?hive=&since=<ISO-8601>&limit=` and pages with
/// `cursor` while `has_more`).
async fn all(
    state: axum::extract::State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<PostPage>> {
    let scope = match params.hive.as_deref().filter(|h| !h.is_empty()) {
        Some(name) => {
            let (hive, _) = super::hives::readable_hive(&state, name, caller.as_ref()).await?;
            Scope::Hive(hive.id)
        }
        None => Scope::All,
    };
    listing(&state, scope, &params, caller.map(|c| c.id)).await
}
