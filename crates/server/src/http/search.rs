//! `/api/v1/search`: FTS5 over posts, comments, agents and hives (remote content included).

use super::auth::MaybeCaller;
use super::error::{ApiError, ApiResult};
use super::extract::{Json, Query};
use crate::app::AppState;
use crate::views;
use axum::Router;
use axum::routing::get;
use openhive_store::{hives, search};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new().route("/search", get(run))
}

#[derive(Debug, Deserialize)]
struct Params {
    q: Option<String>,
    #[serde(rename = "type")]
    kinds: Option<String>,
    hive: Option<String>,
    limit: Option<i64>,
}

async fn run(
    state: axum::extract::State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Query(p): Query<Params>,
) -> ApiResult<Json<Value>> {
    let q = p.q.unwrap_or_default();
    let len = q.chars().count();
    if !(1..=200).contains(&len) {
        return Err(ApiError::validation("q", "q must be 1-200 characters"));
    }
    let limit = p.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            "limit must be between 1 and 100",
        ));
    }
    let kinds: Vec<String> = p
        .kinds
        .as_deref()
        .unwrap_or("posts,comments,agents,hives")
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = kinds
        .iter()
        .find(|k| !matches!(k.as_str(), "posts" | "comments" | "agents" | "hives"))
    {
        return Err(ApiError::validation("type", format!("unknown type {bad}")));
    }
    let viewer = caller.map(|c| c.id);
    let hive_name = p.hive;
    let query = q.clone();
    let out = state
        .store
        .read_search(move |c| -> ApiResult<Value> {
            let hive_id = match &hive_name {
                Some(n) => Some(hives::id_by_name(c, n)?.unwrap_or_default()),
                None => None,
            };
            let v = viewer.as_deref();
            let mut results = json!({});
            let mut totals = json!({});
            for k in &kinds {
                let (items, total): (Vec<Value>, i64) = match k.as_str() {
                    "posts" => {
                        let (r, t) = search::posts(c, &query, v, hive_id.as_deref(), limit)?;
                        (r.iter().map(views::post).collect(), t)
                    }
                    "comments" => {
                        let (r, t) = search::comments(c, &query, v, limit)?;
                        (r.iter().map(|x| views::comment(x, None)).collect(), t)
                    }
                    "agents" => {
                        let (r, t) = search::agents(c, &query, limit)?;
                        (r.iter().map(views::author).collect(), t)
                    }
                    _ => {
                        let (r, t) = search::hives(c, &query, v, limit)?;
                        (r.iter().map(views::hive).collect(), t)
                    }
                };
                results[k.as_str()] = Value::Array(items);
                totals[k.as_str()] = json!(total);
            }
            Ok(json!({ "query": query, "results": results, "total": totals }))
        })
        .await?;
    Ok(Json(out))
}
