//! End-to-end mode: when does a post written on one instance become visible through the
//! API of another?
//!
//! Writers report each post id with the instant its `201` arrived ([`Tracker::acked`]); a
//! WebSocket subscriber on the other instance (`GET /ws`, channel `hive:<name>`, see
//! `crates/server/src/http/ws.rs`) reports the instant its `new_post` message arrived
//! ([`Tracker::seen`]). The server sends that message only after the commit that made the
//! post readable, so it is the moment the post became visible there, without polling. The
//! subscriber runs on a thread of its own so its timestamps do not wait for the clients.

use crate::http::Target;
use crate::stats::{self, Latency, StatsError};
use anyhow::{Context as _, bail};
use futures::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Which phase wrote a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The load phase (steady load with the mix).
    Load,
    /// The burst after it.
    Burst,
    /// The load again, right after the burst's last write (`--after`).
    After,
}

#[derive(Debug, Default)]
struct Entry {
    acked: Option<(Instant, Phase)>,
    seen: Option<Instant>,
}

/// Write and arrival instants by post id.
#[derive(Debug, Default)]
pub struct Tracker {
    entries: Mutex<HashMap<Box<str>, Entry>>,
    /// `new_post` messages received.
    pub notices: AtomicU64,
}

/// Propagation figures of one phase.
#[derive(Debug, Clone)]
pub struct Propagation {
    /// Posts written (acknowledged by the origin).
    pub posts: u64,
    /// Of those, seen on the other instance.
    pub visible: u64,
    /// Seen before the origin's response reached the writer (counted as 0 ms).
    pub before_ack: u64,
    /// From the origin's response to the arrival; `None` if nothing arrived.
    pub latency: Option<Latency>,
    pub first_ack: Option<Instant>,
    pub last_ack: Option<Instant>,
    pub last_seen: Option<Instant>,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Entry>> {
        // A panic while holding the lock leaves plain data: keep using it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A post was acknowledged by the origin at `t`.
    pub fn acked(&self, id: &str, t: Instant, phase: Phase) {
        let mut m = self.lock();
        match m.get_mut(id) {
            Some(e) => e.acked = Some((t, phase)),
            None => {
                m.insert(
                    id.into(),
                    Entry {
                        acked: Some((t, phase)),
                        seen: None,
                    },
                );
            }
        }
    }

    /// A post arrived on the other instance at `t` (the first arrival counts).
    pub fn seen(&self, id: &str, t: Instant) {
        self.notices.fetch_add(1, Ordering::Relaxed);
        let mut m = self.lock();
        match m.get_mut(id) {
            Some(e) => {
                e.seen.get_or_insert(t);
            }
            None => {
                m.insert(
                    id.into(),
                    Entry {
                        acked: None,
                        seen: Some(t),
                    },
                );
            }
        }
    }

    /// (posts written in `phase`, of which seen).
    pub fn progress(&self, phase: Phase) -> (u64, u64) {
        let m = self.lock();
        let mut written = 0;
        let mut seen = 0;
        for e in m.values() {
            if matches!(e.acked, Some((_, p)) if p == phase) {
                written += 1;
                seen += u64::from(e.seen.is_some());
            }
        }
        (written, seen)
    }

    /// Ids written in `phase` and not seen yet (at most `limit`).
    pub fn missing(&self, phase: Phase, limit: usize) -> Vec<String> {
        let m = self.lock();
        m.iter()
            .filter(|(_, e)| matches!(e.acked, Some((_, p)) if p == phase) && e.seen.is_none())
            .take(limit)
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// The figures of `phase`.
    pub fn result(&self, phase: Phase) -> Result<Propagation, StatsError> {
        let m = self.lock();
        let mut h = stats::histogram()?;
        let mut out = Propagation {
            posts: 0,
            visible: 0,
            before_ack: 0,
            latency: None,
            first_ack: None,
            last_ack: None,
            last_seen: None,
        };
        for e in m.values() {
            let Some((acked, p)) = e.acked else { continue };
            if p != phase {
                continue;
            }
            out.posts += 1;
            out.first_ack = Some(out.first_ack.map_or(acked, |f| f.min(acked)));
            out.last_ack = Some(out.last_ack.map_or(acked, |l| l.max(acked)));
            if let Some(seen) = e.seen {
                out.visible += 1;
                out.last_seen = Some(out.last_seen.map_or(seen, |l| l.max(seen)));
                if seen < acked {
                    out.before_ack += 1;
                }
                stats::record(&mut h, seen.saturating_duration_since(acked));
            }
        }
        out.latency = Latency::of(&h);
        Ok(out)
    }

    /// Waits until every post of `phase` was seen, or `timeout`. Returns true if all were.
    pub async fn wait_all_seen(&self, phase: Phase, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let (written, seen) = self.progress(phase);
            if seen >= written {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The WebSocket subscriber on the other instance.
pub struct Subscriber {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Set if the connection ended before [`Subscriber::stop`].
    pub disconnected: Arc<AtomicBool>,
}

#[derive(Deserialize)]
struct WsMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    data: Option<WsData<'a>>,
}

#[derive(Deserialize)]
struct WsData<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    subscribed: Vec<String>,
    #[serde(default)]
    denied: Vec<String>,
}

impl Subscriber {
    /// Connects to `target`'s WebSocket, subscribes to `hive:<hive>`, and returns once the
    /// subscription is acknowledged.
    pub async fn start(
        target: &Target,
        hive: &str,
        tracker: Arc<Tracker>,
    ) -> anyhow::Result<Subscriber> {
        let url = target.ws_url("/ws");
        let channel = format!("hive:{hive}");
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let disconnected = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&disconnected);
        let thread = std::thread::Builder::new()
            .name("ws-subscriber".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("starting a runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(session(url, channel, tracker, ready_tx, stop_rx, flag));
            })
            .context("starting the WebSocket thread")?;
        let mut sub = Subscriber {
            stop: Some(stop_tx),
            thread: Some(thread),
            disconnected,
        };
        let ready = tokio::time::timeout(Duration::from_secs(15), ready_rx).await;
        match ready {
            Ok(Ok(Ok(()))) => Ok(sub),
            Ok(Ok(Err(e))) => {
                sub.stop();
                bail!("WebSocket subscription on {}: {e}", target.url)
            }
            Ok(Err(_)) => {
                sub.stop();
                bail!(
                    "WebSocket subscription on {}: the subscriber ended",
                    target.url
                )
            }
            Err(_) => {
                sub.stop();
                bail!(
                    "WebSocket subscription on {}: no acknowledgement",
                    target.url
                )
            }
        }
    }

    /// Closes the connection and waits for the thread.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn session(
    url: String,
    channel: String,
    tracker: Arc<Tracker>,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    disconnected: Arc<AtomicBool>,
) {
    // tungstenite zero-fills its read buffer's size before every read (128 KiB by default):
    // the listener reads once per message or so, so a small buffer keeps the load
    // generator's own CPU per op low.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(16 * 1024);
    let connected =
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), false).await;
    let mut ws = match connected {
        Ok((ws, _)) => ws,
        Err(e) => {
            let _ = ready.send(Err(format!("connecting to {url}: {e}")));
            return;
        }
    };
    let sub = serde_json::json!({ "type": "subscribe", "channels": [&channel] });
    if let Err(e) = ws.send(Message::Text(sub.to_string().into())).await {
        let _ = ready.send(Err(format!("subscribing: {e}")));
        return;
    }
    // Wait for the acknowledgement of the subscription.
    loop {
        let msg = match ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                let _ = ready.send(Err(format!("reading: {e}")));
                return;
            }
            None => {
                let _ = ready.send(Err("the server closed the connection".into()));
                return;
            }
        };
        let Message::Text(text) = msg else { continue };
        let Ok(m) = serde_json::from_str::<WsMessage>(text.as_str()) else {
            continue;
        };
        if let Some(d) = m.data {
            if d.subscribed.contains(&channel) {
                break;
            }
            if d.denied.contains(&channel) {
                let _ = ready.send(Err(format!(
                    "{channel} denied (a private hive, or not on this instance)"
                )));
                return;
            }
        }
    }
    if ready.send(Ok(())).is_err() {
        return;
    }
    // The server drops clients silent for 90 s: ping well within that.
    let mut ping = tokio::time::interval(Duration::from_secs(20));
    ping.tick().await;
    let ping_msg = serde_json::json!({ "type": "ping" }).to_string();
    loop {
        tokio::select! {
            _ = &mut stop => {
                let _ = ws.close(None).await;
                return;
            }
            _ = ping.tick() => {
                if ws.send(Message::Text(ping_msg.clone().into())).await.is_err() {
                    disconnected.store(true, Ordering::Relaxed);
                    return;
                }
            }
            msg = ws.next() => {
                let now = Instant::now();
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(m) = serde_json::from_str::<WsMessage>(text.as_str())
                            && m.kind == "new_post"
                            && let Some(id) = m.data.and_then(|d| d.id)
                        {
                            tracker.seen(&id, now);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        disconnected.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_pairs_acks_and_arrivals_in_either_order() {
        let t = Tracker::default();
        let t0 = Instant::now();
        t.acked("a", t0, Phase::Load);
        t.seen("a", t0 + Duration::from_millis(3));
        // Arrival before the writer heard back.
        t.seen("b", t0 + Duration::from_millis(1));
        t.acked("b", t0 + Duration::from_millis(2), Phase::Load);
        t.acked("c", t0, Phase::Load);
        t.acked("d", t0, Phase::Burst);
        // Someone else's post.
        t.seen("x", t0);
        assert_eq!(t.progress(Phase::Load), (3, 2));
        assert_eq!(t.missing(Phase::Load, 10), vec!["c".to_string()]);
        let r = t.result(Phase::Load).unwrap();
        assert_eq!((r.posts, r.visible, r.before_ack), (3, 2, 1));
        let l = r.latency.unwrap();
        assert!((2.9..=3.1).contains(&l.max), "{l:?}");
        assert_eq!(t.result(Phase::Burst).unwrap().visible, 0);
    }
}
