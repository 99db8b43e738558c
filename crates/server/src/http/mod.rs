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
pub mod caller_cache;
pub mod comments;
pub mod error;
pub mod extract;
pub mod feeds;
pub mod hives;
pub mod map_hub;
pub mod meta;
pub mod metrics;
pub mod posts;
pub mod search;
pub mod serve;
pub mod subscriptions;
pub mod sync_admin;
pub mod sync_protocol;
pub mod ui;
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
    let mut api = Router::new()
        .merge(agents::routes())
        .merge(auth::routes())
        .merge(admin::routes())
        .merge(hives::routes())
        .merge(posts::routes())
        .merge(comments::routes())
        .merge(feeds::routes())
        .merge(search::routes())
        .merge(sync_admin::routes())
        .merge(subscriptions::routes());
    if state.map_hub.is_some() {
        api = api.merge(map_hub::routes());
    }

    let app = Router::new()
        .nest("/api/v1", api)
        .merge(meta::routes())
        .merge(metrics::routes())
        .merge(ws::routes())
        .merge(ui::routes())
        .merge(
            sync_protocol::routes().route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                sync_protocol::cidr_gate,
            )),
        );

    app.fallback(not_found)
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::from_fn_with_state(
            body_limit,
            request_limits,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn_with_state(
            state.http_metrics.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// The acting agent of a local write.
pub(crate) fn actor(a: &openhive_store::agents::AgentRow) -> crate::service::Actor {
    crate::service::Actor::new(a)
}

/// Longest accepted request target (path and query), in bytes: beyond it, 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest accepted request header section (names, values and separators), in bytes:
/// beyond it, 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most header fields accepted: beyond it, 431.
pub const MAX_HEADER_FIELDS: usize = 100;

/// Limits of the request head and of a declared body size, answered in the API's error
/// shape before routing: 414 for a long URI, 431 for large headers, 413 for a
/// `Content-Length` over the route's body limit (bodies without a length are cut at the
/// limit as they are read: 413 too, see [`extract::Json`]).
///
/// hyper answers some malformed or oversized requests itself, before any of our code runs,
/// with an empty body, and offers no hook to shape that answer: a request line it cannot
/// parse (400), a URI over 65,534 bytes (414), more than [`serve::HYPER_MAX_HEADERS`]
/// header fields or a request head over its read buffer (~400 KiB) (431). The limits here
/// are well inside those (our server loop raises hyper's field count, see [`serve`]), so
/// every request hyper lets through and that breaks one of ours gets the JSON shape.
async fn request_limits(
    axum::extract::State(body_limit): axum::extract::State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let uri_len = req
        .uri()
        .path_and_query()
        .map_or(req.uri().path().len(), |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return ApiError::Other {
            status: StatusCode::URI_TOO_LONG,
            message: format!("the request URI is longer than {MAX_URI_BYTES} bytes"),
        }
        .into_response();
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES || req.headers().len() > MAX_HEADER_FIELDS {
        return ApiError::Other {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            message: format!(
                "the request headers exceed {MAX_HEADER_BYTES} bytes or {MAX_HEADER_FIELDS} fields"
            ),
        }
        .into_response();
    }
    let limit = if req.uri().path().starts_with("/sync/v1/") {
        sync_protocol::SYNC_BODY_LIMIT.max(body_limit)
    } else {
        body_limit
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::PayloadTooLarge(format!(
            "request body is too large (at most {limit} bytes)"
        ))
        .into_response();
    }
    next.run(req).await
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
