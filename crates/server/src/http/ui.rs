//! The web UI: static assets embedded in the binary (`include_str!`), served under `/ui/`;
//! `/` redirects there. Plain HTML + CSS + vanilla JS modules, no build step, no CDN.
//!
//! The pages talk to the JSON API only (`/api/v1/...`, `/ws`); see `ui/app.js`. Every asset
//! is sent with its content type, `Cache-Control: no-cache` plus a strong `ETag` (a
//! revalidation costs a 304), and a strict `Content-Security-Policy`: scripts, styles and
//! connections from this origin only, no inline script or style, no framing.

use super::error::ApiError;
use crate::app::AppState;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use std::sync::OnceLock;

/// The policy of every UI response. `connect-src 'self'` covers the same-origin WebSocket.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The embedded files (`ui/`), by the name they have under `/ui/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("ui/index.html"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("ui/style.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("ui/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("ui/api.js"),
    },
    Asset {
        name: "dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("ui/dom.js"),
    },
    Asset {
        name: "browse.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("ui/browse.js"),
    },
    Asset {
        name: "sync.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("ui/sync.js"),
    },
];

/// Strong validators of the assets, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let h = openhive_core::ids::hash_secret(a.body);
                format!("\"{}\"", &h[..32])
            })
            .collect()
    })
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/ui", get(root))
        .route("/ui/", get(index))
        .route("/ui/{file}", get(file))
}

async fn root() -> Redirect {
    Redirect::to("/ui/")
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers).unwrap_or_else(IntoResponse::into_response)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers).unwrap_or_else(IntoResponse::into_response)
}

/// The asset `name` (404 in the API's error shape if there is none), or 304 when the
/// request's `If-None-Match` names its current `ETag`.
fn serve(name: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let i = ASSETS
        .iter()
        .position(|a| a.name == name)
        .ok_or_else(|| ApiError::NotFound("no such file in the web UI".into()))?;
    let asset = &ASSETS[i];
    let etag = etags()
        .get(i)
        .ok_or_else(|| ApiError::internal("web UI validators out of step"))?;
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_distinct_name_and_a_validator() {
        let mut names: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
        assert_eq!(etags().len(), ASSETS.len());
    }

    #[test]
    fn no_inline_script_or_style_and_no_html_sink() {
        let index = ASSETS
            .iter()
            .find(|a| a.name == "index.html")
            .map(|a| a.body);
        let index = index.unwrap_or_default();
        // Scripts only by src (the CSP refuses inline ones anyway).
        assert!(!index.contains("<script>"));
        assert!(!index.contains("style="));
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!a.body.contains(sink), "{} uses {sink}", a.name);
            }
        }
    }
}
