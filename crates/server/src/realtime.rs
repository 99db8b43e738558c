//! The realtime hub: after a commit, materialized changes (local or from peers) become
//! WebSocket messages on `hive:<name>` and `post:<id>` channels.
//!
//! Invariants:
//! - messages are published only after the transaction that produced them committed;
//! - a message is rendered to its WebSocket text once, here, whatever the number of
//!   subscribers: sessions only filter by channel and send the shared frame;
//! - a message carries no more than the REST API would show a reader of that channel;
//!   access to private hives is checked when a client subscribes (see `http::ws`).

use crate::views;
use axum::extract::ws::Utf8Bytes;
use openhive_core::payload::TargetType;
use openhive_store::materialize::Change;
use openhive_store::{Store, StoreError, comments, posts};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// Changes of one commit rendered on the fan-out task's own thread ([`Store::read_point`]):
/// one API write makes one or two; a sync page makes hundreds (then a blocking thread).
const POINT_READ_CHANGES: usize = 4;

/// One message for the clients subscribed to `channel`.
#[derive(Debug, Clone)]
pub struct Message {
    pub channel: String,
    /// The whole text frame ([`envelope`]), shared by every session that sends it.
    pub text: Utf8Bytes,
}

/// The JSON text of a WebSocket message: `{"channel"?, "data", "timestamp", "type"}`.
pub fn envelope(kind: &str, data: Value, channel: Option<&str>) -> String {
    let mut v = json!({
        "type": kind,
        "data": data,
        "timestamp": openhive_core::time::rfc3339(openhive_core::time::now_ms()),
    });
    if let Some(c) = channel {
        v["channel"] = json!(c);
    }
    v.to_string()
}

/// Fan-out of messages to every WebSocket connection. Cheap to clone.
///
/// Committed change batches go through one queue to one rendering task, so subscribers get
/// messages in commit order (a task per batch could render a later commit first).
#[derive(Clone)]
pub struct Realtime {
    tx: broadcast::Sender<Arc<Message>>,
    batches: mpsc::UnboundedSender<(Store, Vec<Change>)>,
}

impl Realtime {
    /// Starts the rendering task (call inside the tokio runtime).
    pub fn start() -> Self {
        let (tx, _) = broadcast::channel(4096);
        let (batches, mut rx) = mpsc::unbounded_channel::<(Store, Vec<Change>)>();
        let hub = tx.clone();
        tokio::spawn(async move {
            while let Some((store, changes)) = rx.recv().await {
                if hub.receiver_count() == 0 {
                    continue;
                }
                // A commit of a few changes (one post) is a few point reads, done on this
                // task's thread; a batch (a sync page) goes to a blocking thread.
                let few = changes.len() <= POINT_READ_CHANGES;
                let msgs = store
                    .read_point_if(few, move |conn| -> Result<Vec<_>, StoreError> {
                        let mut out = Vec::new();
                        for c in changes {
                            render(conn, c, &mut out)?;
                        }
                        Ok(out)
                    })
                    .await;
                match msgs {
                    Ok(msgs) => {
                        for (channel, kind, data) in msgs {
                            let text = envelope(kind, data, Some(&channel)).into();
                            // No receivers is not an error: nobody is listening.
                            let _ = hub.send(Arc::new(Message { channel, text }));
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "rendering realtime messages"),
                }
            }
        });
        Realtime { tx, batches }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.tx.subscribe()
    }

    /// Queues committed changes for rendering (reading the committed rows) and sending.
    pub fn publish(&self, store: &Store, changes: Vec<Change>) {
        if changes.is_empty() || self.tx.receiver_count() == 0 {
            return;
        }
        if self.batches.send((store.clone(), changes)).is_err() {
            tracing::error!("the realtime rendering task has stopped");
        }
    }
}

fn render(
    conn: &openhive_store::Conn<'_>,
    change: Change,
    out: &mut Vec<(String, &'static str, Value)>,
) -> Result<(), StoreError> {
    match change {
        Change::PostCreated { hive, post_id } => {
            if let Some(p) = posts::get(conn, &post_id, None)? {
                out.push((format!("hive:{hive}"), "new_post", views::post(&p)));
            }
        }
        Change::PostUpdated { hive, post_id } => {
            if let Some(p) = posts::get(conn, &post_id, None)? {
                let v = views::post(&p);
                out.push((format!("hive:{hive}"), "post_updated", v.clone()));
                out.push((format!("post:{post_id}"), "post_updated", v));
            }
        }
        Change::PostDeleted { hive, post_id } => {
            out.push((
                format!("hive:{hive}"),
                "post_deleted",
                json!({ "id": post_id }),
            ));
            out.push((
                format!("post:{post_id}"),
                "post_deleted",
                json!({ "id": post_id }),
            ));
        }
        Change::CommentCreated {
            post_id,
            comment_id,
            ..
        } => {
            if let Some(c) = comments::get(conn, &comment_id, None)? {
                out.push((
                    format!("post:{post_id}"),
                    "new_comment",
                    views::comment(&c, None),
                ));
            }
        }
        Change::CommentUpdated {
            post_id,
            comment_id,
            ..
        } => {
            if let Some(c) = comments::get(conn, &comment_id, None)? {
                out.push((
                    format!("post:{post_id}"),
                    "comment_updated",
                    views::comment(&c, None),
                ));
            }
        }
        Change::CommentDeleted {
            post_id,
            comment_id,
            ..
        } => {
            out.push((
                format!("post:{post_id}"),
                "comment_deleted",
                json!({ "id": comment_id, "post_id": post_id }),
            ));
        }
        Change::VoteUpdated {
            hive,
            target_type,
            target_id,
            post_id,
            score,
            delta,
        } => {
            let data = json!({
                "target_type": target_type.as_str(),
                "target_id": target_id,
                "score": score,
                "delta": delta,
            });
            let channel = match target_type {
                TargetType::Post => format!("hive:{hive}"),
                TargetType::Comment => format!("post:{post_id}"),
            };
            out.push((channel, "vote_update", data.clone()));
            if target_type == TargetType::Post {
                out.push((format!("post:{post_id}"), "vote_update", data));
            }
        }
        Change::HiveCreated { .. }
        | Change::HiveUpdated { .. }
        | Change::HiveDeleted { .. }
        | Change::MembershipChanged { .. } => {}
    }
    Ok(())
}
