//! The realtime hub: after a commit, materialized changes (local or from peers) become
//! WebSocket messages on `hive:<name>` and `post:<id>` channels.
//!
//! Invariants:
//! - messages are published only after the transaction that produced them committed;
//! - a message is rendered to its WebSocket text once, here, whatever the number of
//!   subscribers: sessions only filter by channel and send the shared frame;
//! - a change is rendered only for channels some session subscribed to ([`Channels`]): a
//!   change nobody listens to costs no read and no text;
//! - a message carries no more than the REST API would show a reader of that channel;
//!   access to private hives is checked when a client subscribes (see `http::ws`).

use crate::views::{CommentJson, PostJson};
use axum::extract::ws::Utf8Bytes;
use openhive_core::payload::TargetType;
use openhive_store::materialize::Change;
use openhive_store::{Store, StoreError, comments, posts};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    envelope_of(kind, &data, channel)
}

/// [`envelope`] of any shape, written straight to the text (no `Value` tree first).
fn envelope_of(kind: &str, data: &impl Serialize, channel: Option<&str>) -> String {
    let e = Envelope {
        channel,
        data,
        timestamp: openhive_core::time::rfc3339(openhive_core::time::now_ms()),
        kind,
    };
    // Our shapes hold strings, numbers, booleans and nulls only: serializing cannot fail.
    serde_json::to_string(&e).unwrap_or_default()
}

/// The fields of a message, in the order clients have always seen them.
#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: &'a D,
    timestamp: String,
    #[serde(rename = "type")]
    kind: &'a str,
}

/// Fan-out of messages to every WebSocket connection. Cheap to clone.
///
/// Committed change batches go through one queue to one rendering task, so subscribers get
/// messages in commit order (a task per batch could render a later commit first).
#[derive(Clone)]
pub struct Realtime {
    tx: broadcast::Sender<Arc<Message>>,
    batches: mpsc::UnboundedSender<(Store, Vec<Change>)>,
    wanted: Arc<Wanted>,
    /// Messages rendered since start (`openhive_realtime_messages_total`).
    rendered: Arc<AtomicU64>,
}

/// The channels some session subscribed to, each with the number of sessions that did.
#[derive(Default)]
struct Wanted(std::sync::Mutex<HashMap<String, usize>>);

impl Wanted {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `channel`, if a session listens to it.
    fn channel(&self, channel: String) -> Option<String> {
        self.map().contains_key(&channel).then_some(channel)
    }
}

/// One WebSocket session's channels, counted in the hub's [`Wanted`] until dropped.
pub struct Channels {
    mine: HashSet<String>,
    wanted: Arc<Wanted>,
}

impl Channels {
    /// Adds `channel`; false if the session had it already.
    pub fn insert(&mut self, channel: String) -> bool {
        if self.mine.contains(&channel) {
            return false;
        }
        *self.wanted.map().entry(channel.clone()).or_default() += 1;
        self.mine.insert(channel)
    }

    pub fn remove(&mut self, channel: &str) {
        if self.mine.remove(channel) {
            forget(&mut self.wanted.map(), channel);
        }
    }

    pub fn contains(&self, channel: &str) -> bool {
        self.mine.contains(channel)
    }

    pub fn len(&self) -> usize {
        self.mine.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mine.is_empty()
    }

    /// The channels, sorted (for replies).
    pub fn sorted(&self) -> Vec<&String> {
        let mut v: Vec<&String> = self.mine.iter().collect();
        v.sort();
        v
    }
}

impl Drop for Channels {
    fn drop(&mut self) {
        let mut map = self.wanted.map();
        for ch in &self.mine {
            forget(&mut map, ch);
        }
    }
}

/// One session fewer listens to `channel`.
fn forget(map: &mut HashMap<String, usize>, channel: &str) {
    if let Some(n) = map.get_mut(channel) {
        *n -= 1;
        if *n == 0 {
            map.remove(channel);
        }
    }
}

impl Realtime {
    /// Starts the rendering task (call inside the tokio runtime).
    pub fn start() -> Self {
        let (tx, _) = broadcast::channel(4096);
        let (batches, mut rx) = mpsc::unbounded_channel::<(Store, Vec<Change>)>();
        let hub = tx.clone();
        let wanted = Arc::new(Wanted::default());
        let rendered = Arc::new(AtomicU64::new(0));
        let (task_wanted, task_rendered) = (wanted.clone(), rendered.clone());
        tokio::spawn(async move {
            while let Some((store, changes)) = rx.recv().await {
                // Nobody connected, or nobody subscribed to any channel: nothing to render.
                if hub.receiver_count() == 0 || task_wanted.map().is_empty() {
                    continue;
                }
                // A commit of a few changes (one post) is a few point reads, done on this
                // task's thread; a batch (a sync page) goes to a blocking thread.
                let few = changes.len() <= POINT_READ_CHANGES;
                let wanted = task_wanted.clone();
                let msgs = store
                    .read_point_if(few, move |conn| -> Result<Vec<_>, StoreError> {
                        let mut out = Vec::new();
                        for c in changes {
                            render(conn, &wanted, c, &mut out)?;
                        }
                        Ok(out)
                    })
                    .await;
                match msgs {
                    Ok(msgs) => {
                        task_rendered.fetch_add(msgs.len() as u64, Ordering::Relaxed);
                        for (channel, text) in msgs {
                            let text = text.into();
                            // No receivers is not an error: nobody is listening.
                            let _ = hub.send(Arc::new(Message { channel, text }));
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "rendering realtime messages"),
                }
            }
        });
        Realtime {
            tx,
            batches,
            wanted,
            rendered,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.tx.subscribe()
    }

    /// An empty set of channels for a session; what it adds is rendered until it is dropped.
    pub fn channels(&self) -> Channels {
        Channels {
            mine: HashSet::new(),
            wanted: self.wanted.clone(),
        }
    }

    /// Messages rendered since start.
    pub fn rendered(&self) -> u64 {
        self.rendered.load(Ordering::Relaxed)
    }

    /// Channels at least one session subscribed to.
    pub fn channels_wanted(&self) -> usize {
        self.wanted.map().len()
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

/// Appends the channel and text of each message `change` makes on a channel some session
/// listens to; reads a row only for such a message.
fn render(
    conn: &openhive_store::Conn<'_>,
    wanted: &Wanted,
    change: Change,
    out: &mut Vec<(String, String)>,
) -> Result<(), StoreError> {
    match change {
        Change::PostCreated { hive, post_id } => {
            if let Some(ch) = wanted.channel(format!("hive:{hive}"))
                && let Some(p) = posts::get(conn, &post_id, None)?
            {
                push(out, ch, "new_post", &PostJson(&p));
            }
        }
        Change::PostUpdated { hive, post_id } => {
            let channels = [
                wanted.channel(format!("hive:{hive}")),
                wanted.channel(format!("post:{post_id}")),
            ];
            if channels.iter().any(Option::is_some)
                && let Some(p) = posts::get(conn, &post_id, None)?
            {
                for ch in channels.into_iter().flatten() {
                    push(out, ch, "post_updated", &PostJson(&p));
                }
            }
        }
        Change::PostDeleted { hive, post_id } => {
            let data = json!({ "id": post_id });
            for ch in [format!("hive:{hive}"), format!("post:{post_id}")] {
                if let Some(ch) = wanted.channel(ch) {
                    push(out, ch, "post_deleted", &data);
                }
            }
        }
        Change::CommentCreated {
            post_id,
            comment_id,
            ..
        } => {
            if let Some(ch) = wanted.channel(format!("post:{post_id}"))
                && let Some(c) = comments::get(conn, &comment_id, None)?
            {
                push(out, ch, "new_comment", &CommentJson(&c, None));
            }
        }
        Change::CommentUpdated {
            post_id,
            comment_id,
            ..
        } => {
            if let Some(ch) = wanted.channel(format!("post:{post_id}"))
                && let Some(c) = comments::get(conn, &comment_id, None)?
            {
                push(out, ch, "comment_updated", &CommentJson(&c, None));
            }
        }
        Change::CommentDeleted {
            post_id,
            comment_id,
            ..
        } => {
            if let Some(ch) = wanted.channel(format!("post:{post_id}")) {
                push(
                    out,
                    ch,
                    "comment_deleted",
                    &json!({ "id": comment_id, "post_id": post_id }),
                );
            }
        }
        Change::VoteUpdated {
            hive,
            target_type,
            target_id,
            post_id,
            score,
            delta,
        } => {
            let channels = match target_type {
                TargetType::Post => [
                    wanted.channel(format!("hive:{hive}")),
                    wanted.channel(format!("post:{post_id}")),
                ],
                TargetType::Comment => [wanted.channel(format!("post:{post_id}")), None],
            };
            if channels.iter().any(Option::is_some) {
                let data = json!({
                    "target_type": target_type.as_str(),
                    "target_id": target_id,
                    "score": score,
                    "delta": delta,
                });
                for ch in channels.into_iter().flatten() {
                    push(out, ch, "vote_update", &data);
                }
            }
        }
        Change::HiveCreated { .. }
        | Change::HiveUpdated { .. }
        | Change::HiveDeleted { .. }
        | Change::MembershipChanged { .. } => {}
    }
    Ok(())
}

/// Appends one message: its channel and its text.
fn push(out: &mut Vec<(String, String)>, channel: String, kind: &str, data: &impl Serialize) {
    let text = envelope_of(kind, data, Some(&channel));
    out.push((channel, text));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_has_channel_data_timestamp_and_type() {
        let text = envelope_of("new_post", &json!({ "id": "p" }), Some("hive:general"));
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(v["channel"], "hive:general");
        assert_eq!(v["data"], json!({ "id": "p" }));
        assert_eq!(v["type"], "new_post");
        let ts = v["timestamp"].as_str().unwrap_or_default();
        assert!(openhive_core::time::parse_iso8601(ts).is_some(), "{ts}");
        assert_eq!(v.as_object().map(|o| o.len()), Some(4));
        // Without a channel there is no `channel` key (not a null).
        let v: Value =
            serde_json::from_str(&envelope("agent_online", json!({}), None)).unwrap_or_default();
        assert_eq!(
            v.as_object().map(|o| o.contains_key("channel")),
            Some(false)
        );
        assert_eq!(v["type"], "agent_online");
    }
}
