//! `GET /ws`: realtime updates over WebSocket (the reference's protocol).
//!
//! Client → server: `{"type":"subscribe","channels":[...]}`, `{"type":"unsubscribe",...}`,
//! `{"type":"ping"}`. Server → client: `{type, data, channel?, timestamp}`. Channels:
//! `hive:<name>` and `post:<id>`; a private hive's channels are granted to members only.
//! The optional `?token=<api key>` authenticates the connection.

use crate::app::AppState;
use crate::realtime::{Channels, Message as HubMessage};
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use futures::SinkExt as _;
use openhive_core::ids::hash_secret;
use openhive_store::agents::{self, AgentRow};
use openhive_store::{hives, posts};
use serde::Deserialize;
use serde_json::{Value, json};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// A client that sends nothing for this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The server pings this often.
const PING_EVERY: Duration = Duration::from_secs(30);
/// At most this many of the hub's queued messages go out in one write ([`forward`]): a
/// session drains that many before it looks at its socket and its ping again.
const FRAMES_PER_WRITE: usize = 256;
/// At most this many channels per connection.
const MAX_CHANNELS: usize = 200;

/// Bytes tungstenite reads into at most per read of a session's socket.
///
/// Trap: tungstenite zero-fills that much of its buffer before *every* read attempt, and a
/// session polls its socket each time the hub hands it a message (the `select!` below). At
/// the default 128 KiB a replica spent ~131 k instructions per message fanned out, 20 % of
/// its instructions per applied post with one subscriber (callgrind). Clients send small
/// control messages; a larger one (up to the 64 KiB limit) takes a few reads.
const WS_READ_BUFFER: usize = 4 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

#[derive(Debug, Deserialize)]
struct Params {
    token: Option<String>,
}

async fn upgrade(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    ws: WebSocketUpgrade,
) -> Result<Response, super::error::ApiError> {
    let agent = match params.token {
        // An ingest key: needs the `*` scope (the WebSocket is no scoped route).
        Some(t) if t.starts_with(super::auth::INGEST_KEY_PREFIX) => {
            Some(super::auth::resolve_ingest_key(&state, &t, "/ws").await?)
        }
        Some(t) if !t.is_empty() => {
            let hash = hash_secret(&t);
            let a = state
                .store
                .read(move |c| agents::get_by_api_key_hash(c, &hash))
                .await?;
            Some(a.ok_or_else(|| super::error::ApiError::Unauthorized("invalid token".into()))?)
        }
        _ => None,
    };
    Ok(ws
        .max_message_size(64 * 1024)
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| session(state, agent, socket)))
}

fn envelope(kind: &str, data: Value, channel: Option<&str>) -> Message {
    Message::Text(crate::realtime::envelope(kind, data, channel).into())
}

#[derive(Debug, Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    channels: Vec<String>,
}

async fn session(state: AppState, agent: Option<AgentRow>, mut socket: WebSocket) {
    let mut hub = state.realtime.subscribe();
    let mut channels = state.realtime.channels();
    let welcome = json!({
        "authenticated": agent.is_some(),
        "agent_id": agent.as_ref().map(|a| a.id.clone()),
        "agent_name": agent.as_ref().map(|a| a.name.clone()),
    });
    if socket
        .send(envelope("agent_online", welcome, None))
        .await
        .is_err()
    {
        return;
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { break };
                last_heard = tokio::time::Instant::now();
                let text = match msg {
                    Message::Text(t) => t.to_string(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                let reply = match serde_json::from_str::<ClientMessage>(&text) {
                    Ok(m) => handle(&state, agent.as_ref(), &mut channels, m).await,
                    Err(_) => envelope("agent_offline", json!({ "error": "Invalid message format" }), None),
                };
                if socket.send(reply).await.is_err() {
                    break;
                }
            }
            m = hub.recv() => {
                if forward(&mut socket, &mut hub, &channels, m).await.is_break() {
                    break;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    break;
                }
                if socket.send(envelope("agent_online", json!({ "ping": true }), None)).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Sends `first` and the hub's messages already queued behind it (up to
/// [`FRAMES_PER_WRITE`]) that this session subscribed to, in order, in one write: a sync
/// page or a push commits many posts at once, and a write per message was a `send` system
/// call per message on the server and a read per message on the client. `Break` when the
/// session must end (the socket failed or the hub closed).
async fn forward(
    socket: &mut WebSocket,
    hub: &mut tokio::sync::broadcast::Receiver<Arc<HubMessage>>,
    channels: &Channels,
    first: Result<Arc<HubMessage>, RecvError>,
) -> ControlFlow<()> {
    let (mut next, mut taken, mut unsent) = (Some(first), 0, 0);
    let mut flow = ControlFlow::Continue(());
    while let Some(m) = next.take() {
        match m {
            Ok(m) if channels.contains(&m.channel) => {
                if socket.feed(render(&m)).await.is_err() {
                    return ControlFlow::Break(());
                }
                unsent += 1;
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(skipped = n, "websocket client lagged; messages dropped");
            }
            Err(RecvError::Closed) => {
                flow = ControlFlow::Break(());
                break;
            }
        }
        taken += 1;
        if taken < FRAMES_PER_WRITE {
            next = match hub.try_recv() {
                Ok(m) => Some(Ok(m)),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
            };
        }
    }
    if unsent > 0 && socket.flush().await.is_err() {
        return ControlFlow::Break(());
    }
    flow
}

/// The hub's frame, shared (a reference count, no copy).
fn render(m: &Arc<HubMessage>) -> Message {
    Message::Text(m.text.clone())
}

async fn handle(
    state: &AppState,
    agent: Option<&AgentRow>,
    channels: &mut Channels,
    m: ClientMessage,
) -> Message {
    match m.kind.as_str() {
        "ping" => envelope("agent_online", json!({ "pong": true }), None),
        "subscribe" => {
            let mut granted = Vec::new();
            let mut denied = Vec::new();
            for ch in m.channels {
                if channels.len() < MAX_CHANNELS && may_read(state, agent, &ch).await {
                    channels.insert(ch.clone());
                    granted.push(ch);
                } else {
                    denied.push(ch);
                }
            }
            let current = channels.sorted();
            envelope(
                "agent_online",
                json!({ "subscribed": granted, "denied": denied, "current_channels": current }),
                None,
            )
        }
        "unsubscribe" => {
            for ch in &m.channels {
                channels.remove(ch);
            }
            let current = channels.sorted();
            envelope(
                "agent_online",
                json!({ "unsubscribed": m.channels, "current_channels": current }),
                None,
            )
        }
        _ => envelope(
            "agent_offline",
            json!({ "error": "Invalid message format" }),
            None,
        ),
    }
}

/// May this connection receive messages of `channel`?
async fn may_read(state: &AppState, agent: Option<&AgentRow>, channel: &str) -> bool {
    let hive_name = if let Some(name) = channel.strip_prefix("hive:") {
        Some(name.to_string())
    } else if let Some(id) = channel.strip_prefix("post:") {
        let id = id.to_string();
        state
            .store
            .read(move |c| posts::get(c, &id, None))
            .await
            .ok()
            .flatten()
            .map(|p| p.hive_name)
    } else {
        None
    };
    let Some(name) = hive_name else { return false };
    let viewer = agent.map(|a| (a.id.clone(), a.is_admin));
    state
        .store
        .read(move |c| -> Result<bool, openhive_store::StoreError> {
            let Some(hive) = hives::get_by_name(c, &name)? else {
                return Ok(false);
            };
            if hive.is_public {
                return Ok(true);
            }
            match viewer {
                Some((_, true)) => Ok(true),
                Some((id, false)) => Ok(hives::role(c, &hive, &id)?.is_member()),
                None => Ok(false),
            }
        })
        .await
        .unwrap_or(false)
}
