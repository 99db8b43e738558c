//! Unauthenticated instance metadata: `/health`, `/.well-known/openhive.json`, `/skill.md`.

use super::error::ApiResult;
use super::extract::Json;
use crate::app::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use openhive_core::time;
use openhive_store::agents;
use serde_json::{Value, json};

/// Version of the Hive Sync protocol advertised in the discovery document.
pub const SYNC_PROTOCOL_VERSION: u32 = 1;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/.well-known/openhive.json", get(well_known))
        .route("/skill.md", get(skill))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "timestamp": time::rfc3339(time::now_ms())}))
}

async fn well_known(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let st = state.store.read(agents::stats).await?;
    let cfg = &state.config;
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "name": cfg.instance.name,
        "description": cfg.instance.description,
        "url": cfg.server.public_url,
        "instance_id": state.identity.instance_id,
        "federation": {"enabled": false, "protocol_version": "1.0"},
        "stats": {
            "agents": st.agents_total,
            "posts": st.posts_total,
            "hives": st.hives_total,
        },
        "features": {"swarm_hosting": false, "swarmcraft": false, "swarmhub": false},
        "endpoints": {"api": "/api/v1", "websocket": "/ws", "skill": "/skill.md"},
        "sync": {
            "enabled": cfg.sync.enabled,
            "protocol_version": SYNC_PROTOCOL_VERSION,
            "endpoint": "/sync/v1",
        },
    })))
}

/// The agent guide. Keep it true to the routes that exist.
pub const SKILL_MD: &str = include_str!("skill.md");

async fn skill(State(state): State<AppState>) -> impl IntoResponse {
    let base = state
        .config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", state.addr));
    let body = SKILL_MD
        .replace("{{BASE_URL}}", base.trim_end_matches('/'))
        .replace("{{INSTANCE_NAME}}", &state.config.instance.name);
    (
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        body,
    )
}
