//! Comments: `/api/v1/posts/:id/comments` and `/api/v1/comments/:id`.

use super::auth::{Caller, MaybeCaller};
use super::error::{ApiError, ApiResult};
use super::extract::{Json, Path, Query};
use super::posts::VoteBody;
use crate::app::AppState;
use crate::service::CommentInput;
use crate::views;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use openhive_core::payload::TargetType;
use openhive_store::comments::{self, CommentRow, CommentSort};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/posts/{id}/comments", get(list).post(create))
        .route("/comments/{id}", patch(update).delete(remove))
        .route("/comments/{id}/vote", post(vote))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    sort: Option<String>,
    /// `true` for a flat list; threaded otherwise. (`flat=false` means threaded.)
    flat: Option<String>,
    /// Flat lists only: page size (1–100) and keyset cursor from the previous page.
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list(
    state: axum::extract::State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path(post_id): Path<String>,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<Value>> {
    let sort = match params.sort.as_deref() {
        None => CommentSort::Top,
        Some(s) => CommentSort::parse(s)
            .ok_or_else(|| ApiError::validation("sort", "sort must be top, new or old"))?,
    };
    let flat = match params.flat.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => return Err(ApiError::validation("flat", "flat must be true or false")),
    };
    let post = super::posts::readable_post(&state, &post_id, caller.as_ref()).await?;
    let viewer = caller.map(|c| c.id);
    if params.limit.is_some() || params.cursor.is_some() {
        if !flat {
            return Err(ApiError::validation("cursor", "paging needs flat=true"));
        }
        let limit = params.limit.unwrap_or(50);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::validation(
                "limit",
                "limit must be between 1 and 100",
            ));
        }
        let cursor = params.cursor.filter(|c| !c.is_empty());
        let (rows, has_more) = state
            .store
            .read(move |c| {
                comments::page_for_post(
                    c,
                    &post.id,
                    sort,
                    viewer.as_deref(),
                    limit,
                    cursor.as_deref(),
                )
            })
            .await
            .map_err(|e| match e {
                openhive_store::StoreError::Invalid(m) => ApiError::validation("cursor", m),
                e => e.into(),
            })?;
        let next = if has_more {
            rows.last().map(|c| comments::cursor_after(c, sort))
        } else {
            None
        };
        let data: Vec<Value> = rows.iter().map(|c| views::comment(c, None)).collect();
        return Ok(Json(json!({
            "data": data,
            "total": post.comment_count,
            "limit": limit,
            "cursor": next,
            "has_more": has_more,
        })));
    }
    let rows = state
        .store
        .read(move |c| comments::for_post(c, &post.id, sort, viewer.as_deref()))
        .await?;
    let data = if flat {
        rows.iter().map(|c| views::comment(c, None)).collect()
    } else {
        views::comment_tree(&rows)
    };
    Ok(Json(json!({ "data": data, "total": rows.len() })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateComment {
    content: String,
    parent_id: Option<String>,
}

async fn create(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Path(post_id): Path<String>,
    Json(body): Json<CreateComment>,
) -> ApiResult<(StatusCode, Json<views::CommentJson<CommentRow>>)> {
    let c = state
        .hives
        .create_comment(
            &super::actor(&caller),
            CommentInput {
                post_id,
                content: body.content,
                parent_id: body.parent_id,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(views::CommentJson(c, None))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateComment {
    content: String,
}

async fn update(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(body): Json<UpdateComment>,
) -> ApiResult<Json<views::CommentJson<CommentRow>>> {
    let c = state
        .hives
        .update_comment(&super::actor(&caller), &id, body.content)
        .await?;
    Ok(Json(views::CommentJson(c, None)))
}

async fn remove(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .hives
        .delete_comment(&super::actor(&caller), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn vote(
    state: axum::extract::State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(body): Json<VoteBody>,
) -> ApiResult<Json<Value>> {
    let (score, user_vote) = state
        .hives
        .vote(&super::actor(&caller), TargetType::Comment, &id, body.value)
        .await?;
    Ok(Json(json!({ "score": score, "user_vote": user_vote })))
}
