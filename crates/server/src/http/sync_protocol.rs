//! `/sync/v1/*`: the peer-to-peer Hive Sync protocol (docs/PROTOCOL-sync.md). Thin: each
//! handler extracts the token / secret / body and calls `openhive_sync::inbound`.
//!
//! Access: optional `sync.allowed_cidrs` check on the source address (every route), then a
//! sync token on every route except the handshake, checked first ([`SyncPeer`] is the first
//! extractor): an unauthenticated call is a 401 before its path, query or body is read. Sync tokens are not API keys: they are
//! looked up only in `peer_tokens` and are bound to one peer and one hive.

use super::error::{ApiError, ApiResult};
use super::extract::{Json, Path, Query};
use crate::app::AppState;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use openhive_sync::SyncError;
use openhive_sync::inbound::{self, PeerAuth};
use openhive_sync::inbound_batch;
use openhive_sync::protocol::*;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use tracing::Instrument as _;

/// Pushed batches are capped by the sender at 4 MiB; leave room.
pub const SYNC_BODY_LIMIT: usize = 16 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sync/v1/handshake", post(handshake))
        .route("/sync/v1/identity", get(identity))
        .route("/sync/v1/heartbeat", post(heartbeat))
        .route("/sync/v1/batch/handshake", post(batch_handshake))
        .route("/sync/v1/batch/pull", post(batch_pull))
        .route("/sync/v1/batch/push", post(batch_push))
        .route("/sync/v1/keys", post(keys))
        .route(
            "/sync/v1/groups/{hive}/events",
            get(pull_events).post(push_events),
        )
        .route("/sync/v1/groups/{hive}/status", get(status))
        .route("/sync/v1/groups/{hive}/leave", post(leave))
        .layer(DefaultBodyLimit::max(SYNC_BODY_LIMIT))
}

async fn identity(State(state): State<AppState>) -> Json<IdentityDoc> {
    Json(inbound::identity(&state.sync))
}

/// The CIDR gate, applied by [`super::router`] to the sync routes only.
pub async fn cidr_gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let cidrs = &state.config.sync.allowed_cidrs;
    if !cidrs.is_empty() {
        let ip = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let allowed = ip.is_some_and(|ip| cidrs.iter().any(|c| cidr_contains(c, ip)));
        if !allowed {
            return axum::response::IntoResponse::into_response(ApiError::Forbidden(
                "source address not allowed to use the sync protocol".into(),
            ));
        }
    }
    next.run(req).await
}

/// True if `ip` is inside `cidr` (`10.0.0.0/8`, `::1/128`, or a bare address).
pub fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    let (addr, prefix) = match cidr.split_once('/') {
        Some((a, p)) => (a.trim(), p.trim().parse::<u32>().ok()),
        None => (cidr.trim(), None),
    };
    let Ok(net) = addr.parse::<IpAddr>() else {
        return false;
    };
    // Compare IPv4-mapped IPv6 sources as IPv4.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let p = prefix.unwrap_or(32).min(32);
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            (u32::from(n) & mask) == (u32::from(i) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let p = prefix.unwrap_or(128).min(128);
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            (u128::from(n) & mask) == (u128::from(i) & mask)
        }
        _ => false,
    }
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Unauthorized(m) => ApiError::Unauthorized(m),
            SyncError::Forbidden(m) => ApiError::Forbidden(m),
            SyncError::NotFound(m) => ApiError::NotFound(m),
            SyncError::Conflict(m) => ApiError::Conflict(m),
            SyncError::BadRequest(m) => ApiError::bad_request(m),
            SyncError::RateLimited { retry_after_secs } => ApiError::TooManyRequests {
                message: "Sync rate limit exceeded".into(),
                retry_after_secs,
            },
            SyncError::Full(message) => ApiError::Unavailable {
                message,
                retry_after_secs: 60,
            },
            SyncError::Store(e) => ApiError::from(e),
        }
    }
}

fn bearer(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::Unauthorized(
            "malformed Authorization header; expected Bearer <sync token>".into(),
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    let (scheme, token) = s.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(bad());
    }
    Ok(Some(token.trim().to_string()))
}

/// The authenticated peer of a `/sync/v1` call. An extractor, and the first one of every
/// handler that takes it: the token is checked before the path, the query or the body is
/// read, so an unauthenticated call is a 401 whatever else is wrong with it.
struct SyncPeer(PeerAuth);

impl FromRequestParts<AppState> for SyncPeer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let token = bearer(&parts.headers)?;
        Ok(SyncPeer(
            inbound::authenticate(&state.sync, token.as_deref()).await?,
        ))
    }
}

async fn handshake(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<HandshakeRequest>,
) -> ApiResult<Json<HandshakeResponse>> {
    let secret = headers
        .get(HANDSHAKE_SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let span = tracing::info_span!("sync.in.handshake", peer = %req.instance_id, hive = %req.hive, seq = req.current_seq);
    Ok(Json(
        inbound::handshake(&state.sync, secret.as_deref(), req)
            .instrument(span)
            .await?,
    ))
}

async fn batch_handshake(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<BatchHandshakeRequest>,
) -> ApiResult<Json<BatchHandshakeResponse>> {
    let secret = headers
        .get(HANDSHAKE_SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let span = tracing::info_span!("sync.in.batch_handshake", peer = %req.instance_id, groups = req.groups.len());
    Ok(Json(
        inbound_batch::handshake(&state.sync, secret.as_deref(), req)
            .instrument(span)
            .await?,
    ))
}

async fn batch_pull(
    SyncPeer(auth): SyncPeer,
    State(state): State<AppState>,
    Json(req): Json<BatchPullRequest>,
) -> ApiResult<Json<BatchPullResponse>> {
    let span = tracing::info_span!("sync.in.batch_pull", peer = %auth.peer_instance_id, groups = req.groups.len());
    Ok(Json(
        inbound_batch::pull(&state.sync, &auth, req)
            .instrument(span)
            .await?,
    ))
}

async fn batch_push(
    SyncPeer(auth): SyncPeer,
    State(state): State<AppState>,
    Json(req): Json<BatchPushRequest>,
) -> ApiResult<Json<BatchPushResponse>> {
    let span = tracing::info_span!("sync.in.batch_push", peer = %auth.peer_instance_id, groups = req.groups.len());
    Ok(Json(
        inbound_batch::push(&state.sync, &auth, req)
            .instrument(span)
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
struct PullQuery {
    since: Option<i64>,
    limit: Option<i64>,
}

async fn pull_events(
    SyncPeer(auth): SyncPeer,
    State(state): State<AppState>,
    Path(hive): Path<String>,
    Query(q): Query<PullQuery>,
) -> ApiResult<Json<EventsPage>> {
    let span = tracing::info_span!("sync.in.pull", peer = %auth.peer_instance_id, hive = %hive, seq = q.since.unwrap_or(0));
    Ok(Json(
        inbound::pull_events(&state.sync, &auth, &hive, q.since, q.limit)
            .instrument(span)
            .await?,
    ))
}

async fn push_events(
    SyncPeer(auth): SyncPeer,
    State(state): State<AppState>,
    Path(hive): Path<String>,
    Json(req): Json<PushRequest>,
) -> ApiResult<Json<PushResponse>> {
    let span = tracing::info_span!("sync.in.push", peer = %auth.peer_instance_id, hive = %hive, seq = req.last_seq);
    Ok(Json(
        inbound::push_events(&state.sync, &auth, &hive, req)
            .instrument(span)
            .await?,
    ))
}

async fn heartbeat(
    SyncPeer(auth): SyncPeer,
    State(state): State<AppState>,
    Json(req): Json<Heartbeat>,
) -> ApiResult<Json<Heartbeat>> {
    let span = tracing::info_span!("sync.in.heartbeat", peer = %auth.peer_instance_id, groups = req.groups.len());
    Ok(Json(
        inbound::heartbeat(&state.sync, &auth, req)
            .instrument(span)
            .await?,
    ))
}

async fn keys(
    SyncPeer(auth): SyncPeer,
    State(state): State<AppState>,
    Json(req): Json<KeysRequest>,
) -> ApiResult<Json<KeysResponse>> {
    let span = tracing::info_span!("sync.in.keys", peer = %auth.peer_instance_id, statements = req.key_rotations.len());
    Ok(Json(
        inbound::keys(&state.sync, &auth, req)
            .instrument(span)
            .await?,
    ))
}

async fn status(
    SyncPeer(auth): SyncPeer,
    State(state): State<AppState>,
    Path(hive): Path<String>,
) -> ApiResult<Json<GroupStatus>> {
    Ok(Json(inbound::status(&state.sync, &auth, &hive).await?))
}

async fn leave(
    SyncPeer(auth): SyncPeer,
    State(state): State<AppState>,
    Path(hive): Path<String>,
) -> ApiResult<Json<LeaveResponse>> {
    Ok(Json(inbound::leave(&state.sync, &auth, &hive).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert!(cidr_contains("10.0.0.0/8", ip("10.1.2.3")));
        assert!(!cidr_contains("10.0.0.0/8", ip("11.1.2.3")));
        assert!(cidr_contains("127.0.0.1", ip("127.0.0.1")));
        assert!(cidr_contains("0.0.0.0/0", ip("8.8.8.8")));
        assert!(cidr_contains("127.0.0.0/8", ip("::ffff:127.0.0.1")));
        assert!(cidr_contains("fd00::/8", ip("fd12::1")));
        assert!(!cidr_contains("fd00::/8", ip("fe80::1")));
        assert!(!cidr_contains("garbage", ip("10.0.0.1")));
    }
}
