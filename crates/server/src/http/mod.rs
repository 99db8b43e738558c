//! The HTTP API. One module per concern, each exposing `routes() -> Router<AppState>`;
//! [`router`] assembles them.
//!
//! Rules for handlers:
//! - use [`extract::Json`], [`extract::Path`], [`extract::Query`] (not axum's), so every
//!   rejection comes out in the JSON error shape of [`error::ApiError`];
//! - authenticate with [`auth::Caller`], [`auth::MaybeCaller`] or [`auth::AdminCaller`];
//! - return `ApiResult<...>`; store errors convert with `?`.

pub mod admin;
pub mod agents;
pub mod auth;
pub mod comments;
pub mod error;
pub mod extract;
pub mod feeds;
pub mod hives;
pub mod meta;
pub mod posts;
pub mod search;
pub mod sync_admin;
pub mod sync_protocol;
pub mod ws;

use crate::app::AppState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use error::ApiError;

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.server.body_limit_bytes;

    // Routes under /api/v1.
    let api = Router::new()
        .merge(agents::routes())
        .merge(auth::routes())
        .merge(admin::routes())
        .merge(hives::routes())
        .merge(posts::routes())
        .merge(comments::routes())
        .merge(feeds::routes())
        .merge(search::routes())
        .merge(sync_admin::routes());
    // ── Other /api/v1 routers go here ────────────────────────────────────────────────
    // e.g. .merge(hives::routes()).merge(posts::routes()).merge(comments::routes())
    //      .merge(feeds::routes()).merge(search::routes())
    // ─────────────────────────────────────────────────────────────────────────────────

    let app = Router::new()
        .nest("/api/v1", api)
        .merge(meta::routes())
        .merge(ws::routes())
        .merge(
            sync_protocol::routes().route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                sync_protocol::cidr_gate,
            )),
        );
    // ── Routers outside /api/v1 go here ──────────────────────────────────────────────
    // e.g. .merge(ws::routes()).merge(sync_protocol::routes())
    // ─────────────────────────────────────────────────────────────────────────────────

    app.fallback(not_found)
        .layer(axum::middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// The acting agent of a local write.
pub(crate) fn actor(a: &openhive_store::agents::AgentRow) -> crate::service::Actor {
    crate::service::Actor {
        agent_id: a.id.clone(),
        name: a.name.clone(),
        avatar_url: a.avatar_url.clone(),
        is_admin: a.is_admin,
        is_verified: a.is_verified(),
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// Rewrites error responses that are not JSON (axum's own rejections, 405 from the router,
/// plain-text errors of any handler) into the API's error shape.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(b) if status != StatusCode::INTERNAL_SERVER_ERROR => {
            String::from_utf8_lossy(&b).trim().to_string()
        }
        _ => String::new(),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        text
    };
    let mut out = if status == StatusCode::INTERNAL_SERVER_ERROR {
        ApiError::Other {
            status,
            message: "internal server error".into(),
        }
        .into_response()
    } else {
        ApiError::Other { status, message }.into_response()
    };
    // Keep headers such as Allow and Retry-After.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out
}
