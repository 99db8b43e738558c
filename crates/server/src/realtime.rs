//! The realtime hub: after a commit, materialized changes (local or from peers) become
//! WebSocket messages on `hive:<name>` and `post:<id>` channels.
//!
//! Invariants:
//! - messages are published only after the transaction that produced them committed;
//! - a message carries no more than the REST API would show a reader of that channel;
//!   access to private hives is checked when a client subscribes (see `http::ws`).

use crate::views;
use openhive_core::payload::TargetType;
use openhive_store::materialize::Change;
use openhive_store::{Store, StoreError, comments, posts};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::broadcast;

/// One message for the clients subscribed to `channel`.
#[derive(Debug, Clone)]
pub struct Message {
    pub channel: String,
    pub kind: &'static str,
    pub data: Value,
}

/// Fan-out of messages to every WebSocket connection. Cheap to clone.
#[derive(Clone)]
pub struct Realtime {
    tx: broadcast::Sender<Arc<Message>>,
}

impl Default for Realtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Realtime {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Realtime { tx }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.tx.subscribe()
    }

    fn send(&self, channel: String, kind: &'static str, data: Value) {
        // No receivers is not an error: nobody is listening.
        let _ = self.tx.send(Arc::new(Message {
            channel,
            kind,
            data,
        }));
    }

    /// Turns committed changes into messages (reading the committed rows).
    pub fn publish(&self, store: &Store, changes: Vec<Change>) {
        if changes.is_empty() || self.tx.receiver_count() == 0 {
            return;
        }
        let hub = self.clone();
        let store = store.clone();
        tokio::spawn(async move {
            let msgs = store
                .read(
                    move |conn| -> Result<Vec<(String, &'static str, Value)>, StoreError> {
                        let mut out = Vec::new();
                        for c in changes {
                            render(conn, c, &mut out)?;
                        }
                        Ok(out)
                    },
                )
                .await;
            match msgs {
                Ok(msgs) => {
                    for (channel, kind, data) in msgs {
                        hub.send(channel, kind, data);
                    }
                }
                Err(e) => tracing::error!(error = %e, "rendering realtime messages"),
            }
        });
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
