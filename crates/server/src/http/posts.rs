//! `/api/v1/posts`: listing (offset or cursor paging), CRUD, votes, pins.

use super::auth::{Caller, MaybeCaller};
use super::error::{ApiError, ApiResult};
use super::extract::{Json, Path, Query};
use crate::app::AppState;
use crate::service::{PostInput, PostPatch};
use crate::views;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use openhive_core::payload::TargetType;
use openhive_store::posts::{self, Page, Scope, Sort};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/posts", get(list).post(create))
        .route("/posts/{id}", get(show).patch(update).delete(remove))
        .route("/posts/{id}/vote", post(vote))
        .route("/posts/{id}/pin", post(pin))
}

/// Query of every post listing (`/posts`, `/feed*`).
#[derive(Debug, Deserialize)]
pub(super) struct ListParams {
    pub(super) hive: Option<String>,
    sort: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
    /// Keyset cursor from a previous page's `cursor`.
    cursor: Option<String>,
    /// Only posts created after this instant: ISO-8601 (`2026-11-28T10:00:00Z`, as the
    /// design's Pattern 1 sends it) or milliseconds since the epoch.
    since: Option<String>,
}

impl ListParams {
    fn resolve(&self) -> ApiResult<(Sort, Page)> {
        let sort = match self.sort.as_deref() {
            None => Sort::Hot,
            Some(s) => Sort::parse(s)
                .ok_or_else(|| ApiError::validation("sort", "sort must be new, top or hot"))?,
        };
        let limit = self.limit.unwrap_or(25);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::validation(
                "limit",
                "limit must be between 1 and 100",
            ));
        }
        let offset = self.offset.unwrap_or(0);
        if offset < 0 {
            return Err(ApiError::validation("offset", "offset must be >= 0"));
        }
        let since = match self.since.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(
                v.parse::<i64>()
                    .ok()
                    .or_else(|| openhive_core::time::parse_iso8601(v))
                    .ok_or_else(|| {
                        ApiError::validation(
                            "since",
                            "since must be an ISO-8601 instant or milliseconds since the epoch",
                        )
                    })?,
            ),
        };
        Ok((
            sort,
            Page {
                limit,
                offset,
                cursor: self.cursor.clone().filter(|c| !c.is_empty()),
                since,
            },
        ))
    }
}

/// A page of posts: `{data, total, limit, offset, cursor, has_more}`.
#[derive(Serialize)]
pub(super) struct PostPage {
    data: Vec<views::PostJson<posts::PostRow>>,
    total: i64,
    limit: i64,
    offset: i64,
    cursor: Option<String>,
    has_more: bool,
}

/// Runs a listing and shapes a [`PostPage`].
pub(super) async fn listing(
    state: &AppState,
    scope: Scope,
    params: &ListParams,
    viewer: Option<String>,
) -> ApiResult<Json<PostPage>> {
    let (sort, page) = params.resolve()?;
    let (limit, offset) = (page.limit, page.offset);
    let (rows, has_more, total) = state
        .store
        .read(move |c| posts::list(c, &scope, sort, &page, viewer.as_deref()))
        .await
        .map_err(|e| match e {
            openhive_store::StoreError::Invalid(m) => ApiError::validation("cursor", m),
            e => e.into(),
        })?;
    let cursor = if has_more {
        rows.last().map(|p| posts::cursor_after(p, sort))
    } else {
        None
    };
    Ok(Json(PostPage {
        data: rows.into_iter().map(views::PostJson).collect(),
        total,
        limit,
        offset,
        cursor,
        has_more,
    }))
}

async fn list(
    state: axum::extract::State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<PostPage>> {
    let scope = match &params.hive {
        Some(name) => {
            let (hive, _) = super::hives::readable_hive(&state, name, caller.as_ref()).await?;
            Scope::Hive(hive.id)
        }
        None => Scope::All,
    };
    listing(&state, scope, &params, caller.map(|c| c.id)).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePost {
    hive: String,
    title: String,
    content: Option<String>,
    url: Option<String>,
}

async fn create(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Json(body): Json<CreatePost>,
) -> ApiResult<(StatusCode, Json<views::PostJson<posts::PostRow>>)> {
    let post = state
        .hives
        .create_post(
            &super::actor(&caller),
            PostInput {
                hive: body.hive.to_lowercase(),
                title: body.title,
                content: body.content,
                url: body.url,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(views::PostJson(post))))
}

/// A live post the viewer may read.
pub(super) async fn readable_post(
    state: &AppState,
    id: &str,
    viewer: Option<&openhive_store::agents::AgentRow>,
) -> ApiResult<posts::PostRow> {
    let (pid, vid) = (id.to_string(), viewer.map(|v| v.id.clone()));
    // One point read for the post, its hive and the viewer's role there.
    let (post, hive, role) = state
        .store
        .read_point(move |c| -> ApiResult<_> {
            let post =
                posts::get(c, &pid, vid.as_deref())?.ok_or_else(|| ApiError::not_found("post"))?;
            let (hive, role) = super::hives::hive_and_role(c, &post.hive_name, vid.as_deref())?;
            Ok((post, hive, role))
        })
        .await?;
    super::hives::check_readable(&hive, role, viewer)?;
    Ok(post)
}

async fn show(
    state: axum::extract::State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<views::PostJson<posts::PostRow>>> {
    let post = readable_post(&state, &id, caller.as_ref()).await?;
    Ok(Json(views::PostJson(post)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdatePost {
    title: Option<String>,
    content: Option<String>,
    url: Option<String>,
}

async fn update(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(body): Json<UpdatePost>,
) -> ApiResult<Json<views::PostJson<posts::PostRow>>> {
    let post = state
        .hives
        .update_post(
            &super::actor(&caller),
            &id,
            PostPatch {
                title: body.title,
                content: body.content,
                url: body.url,
            },
        )
        .await?;
    Ok(Json(views::PostJson(post)))
}

async fn remove(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.hives.delete_post(&super::actor(&caller), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VoteBody {
    pub value: i8,
}

async fn vote(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(body): Json<VoteBody>,
) -> ApiResult<Json<Value>> {
    let (score, user_vote) = state
        .hives
        .vote(&super::actor(&caller), TargetType::Post, &id, body.value)
        .await?;
    Ok(Json(json!({ "score": score, "user_vote": user_vote })))
}

async fn pin(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let pinned = state.hives.toggle_pin(&super::actor(&caller), &id).await?;
    Ok(Json(json!({ "is_pinned": pinned })))
}
