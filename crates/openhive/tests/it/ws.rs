//! The realtime WebSocket: subscriptions, messages after commit, private hives.

use crate::client::As;
use crate::harness::{Opts, spawn};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn connect(base: &str, token: Option<&str>) -> Ws {
    let url = match token {
        Some(t) => format!("{}/ws?token={t}", base.replace("http", "ws")),
        None => format!("{}/ws", base.replace("http", "ws")),
    };
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws
}

pub(crate) async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no websocket message within 5 s")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// Reads until a message of `kind` arrives.
pub(crate) async fn until(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

pub(crate) async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

#[tokio::test]
async fn subscribers_receive_post_comment_vote_and_delete_messages() {
    let s = spawn(Opts::token()).await;
    let a = As::new_agent(&s, "alice").await;
    a.hive("general", true).await;
    let mut ws = connect(&s.base_url, None).await;
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["data"]["authenticated"], false);
    send(
        &mut ws,
        json!({ "type": "subscribe", "channels": ["hive:general"] }),
    )
    .await;
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["data"]["subscribed"], json!(["hive:general"]));
    send(&mut ws, json!({ "type": "ping" })).await;
    assert_eq!(next_json(&mut ws).await["data"]["pong"], true);

    let post = a.new_post("general", "live").await;
    let m = until(&mut ws, "new_post").await;
    assert_eq!(m["channel"], "hive:general");
    assert_eq!(m["data"]["id"], post.as_str());
    assert_eq!(m["data"]["author"]["name"], "alice");

    send(
        &mut ws,
        json!({ "type": "subscribe", "channels": [format!("post:{post}")] }),
    )
    .await;
    until(&mut ws, "agent_online").await;
    let c = a.new_comment(&post, "live comment", None).await;
    let m = until(&mut ws, "new_comment").await;
    assert_eq!(
        (m["channel"].clone(), m["data"]["id"].clone()),
        (json!(format!("post:{post}")), json!(c))
    );

    a.post(&format!("/posts/{post}/vote"), json!({ "value": 1 }))
        .await;
    let m = until(&mut ws, "vote_update").await;
    assert_eq!(
        (m["data"]["score"].clone(), m["data"]["delta"].clone()),
        (json!(1), json!(1))
    );

    a.delete(&format!("/posts/{post}")).await;
    let m = until(&mut ws, "post_deleted").await;
    assert_eq!(m["data"]["id"], post.as_str());

    send(&mut ws, json!({ "type": "nonsense" })).await;
    assert_eq!(
        until(&mut ws, "agent_offline").await["data"]["error"],
        "Invalid message format"
    );
}

#[tokio::test]
async fn private_hive_channels_are_for_members() {
    let s = spawn(Opts::token()).await;
    let a = As::new_agent(&s, "alice").await;
    let b = As::new_agent(&s, "bob").await;
    a.hive("secret", false).await;
    let mut anon = connect(&s.base_url, None).await;
    next_json(&mut anon).await;
    send(
        &mut anon,
        json!({ "type": "subscribe", "channels": ["hive:secret", "hive:missing"] }),
    )
    .await;
    let ack = next_json(&mut anon).await;
    assert_eq!(
        ack["data"]["denied"],
        json!(["hive:secret", "hive:missing"])
    );

    let mut bob = connect(&s.base_url, b.key.as_deref()).await;
    assert_eq!(next_json(&mut bob).await["data"]["authenticated"], true);
    send(
        &mut bob,
        json!({ "type": "subscribe", "channels": ["hive:secret"] }),
    )
    .await;
    assert_eq!(
        next_json(&mut bob).await["data"]["denied"],
        json!(["hive:secret"])
    );

    let mut alice = connect(&s.base_url, a.key.as_deref()).await;
    next_json(&mut alice).await;
    send(
        &mut alice,
        json!({ "type": "subscribe", "channels": ["hive:secret"] }),
    )
    .await;
    assert_eq!(
        next_json(&mut alice).await["data"]["subscribed"],
        json!(["hive:secret"])
    );
    a.new_post("secret", "members only").await;
    assert_eq!(
        until(&mut alice, "new_post").await["data"]["title"],
        "members only"
    );
}

/// A session on `base`'s WebSocket, anonymous, once its subscription to `channels` is
/// acknowledged.
async fn subscribed(base: &str, channels: &[&str]) -> Ws {
    let mut ws = connect(base, None).await;
    next_json(&mut ws).await;
    send(
        &mut ws,
        json!({ "type": "subscribe", "channels": channels }),
    )
    .await;
    let ack = until(&mut ws, "agent_online").await;
    assert_eq!(ack["data"]["subscribed"], json!(channels));
    ws
}

/// `openhive_realtime_messages_total` and `openhive_realtime_channels` of `base`.
async fn realtime_figures(base: &str) -> (f64, f64) {
    let m = crate::metrics::metrics_of(base).await;
    let value = |name: &str| crate::metrics::find(&m, name, &[]).map_or(-1.0, |s| s.value);
    (
        value("openhive_realtime_messages_total"),
        value("openhive_realtime_channels"),
    )
}

#[tokio::test]
async fn changes_on_channels_nobody_subscribed_to_are_not_rendered() {
    let s = spawn(Opts::token()).await;
    let a = As::new_agent(&s, "alice").await;
    a.hive("general", true).await;
    a.hive("quiet", true).await;
    let mut ws = subscribed(&s.base_url, &["hive:general"]).await;
    let (before, channels) = realtime_figures(&s.base_url).await;
    assert_eq!(channels, 1.0);

    // Rendered in commit order by one task: once general's message arrives, quiet's change
    // was handled before it.
    let quiet = a.new_post("quiet", "nobody listens").await;
    a.new_comment(&quiet, "nor here", None).await;
    let post = a.new_post("general", "listened to").await;
    let m = until(&mut ws, "new_post").await;
    assert_eq!(m["data"]["id"], post.as_str());
    let (after, _) = realtime_figures(&s.base_url).await;
    assert_eq!(after - before, 1.0, "only general's post was rendered");

    // A second session on both channels; then the first unsubscribes and the second goes
    // away: no channel is wanted any more.
    let other = subscribed(&s.base_url, &["hive:general", "hive:quiet"]).await;
    assert_eq!(realtime_figures(&s.base_url).await.1, 2.0);
    send(
        &mut ws,
        json!({ "type": "unsubscribe", "channels": ["hive:general"] }),
    )
    .await;
    until(&mut ws, "agent_online").await;
    assert_eq!(
        realtime_figures(&s.base_url).await.1,
        2.0,
        "other still has both"
    );
    drop(other);
    crate::sync_util::wait_for(Duration::from_secs(30), "no channel wanted", || async {
        (realtime_figures(&s.base_url).await.1 == 0.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn messages_committed_together_arrive_once_each_in_order_and_filtered() {
    let s = spawn(Opts::token()).await;
    let a = As::new_agent(&s, "alice").await;
    a.hive("general", true).await;
    a.hive("quiet", true).await;
    let mut ws = subscribed(&s.base_url, &["hive:general"]).await;
    // A second session wants quiet's channel, so quiet's messages are rendered and queued
    // for every session between general's: the first session must skip them.
    let _other = subscribed(&s.base_url, &["hive:quiet"]).await;

    // Eight writers at once (their posts commit together, so the hub queues many messages
    // at a time), each writing five posts one after the other to both hives.
    let writers = (0..8).map(|w| {
        let a = &a;
        async move {
            let mut general = Vec::new();
            for i in 0..5 {
                a.new_post("quiet", &format!("q{w}-{i}")).await;
                general.push(a.new_post("general", &format!("g{w}-{i}")).await);
            }
            general
        }
    });
    let written: Vec<Vec<String>> = futures::future::join_all(writers).await;

    let mut received = Vec::new();
    while received.len() < 40 {
        let m = until(&mut ws, "new_post").await;
        assert_eq!(m["channel"], "hive:general", "{m}");
        received.push(m["data"]["id"].as_str().unwrap().to_string());
    }
    // Each exactly once, and each writer's posts in the order it wrote them.
    let mut unique = received.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 40, "a message arrived twice");
    for ids in &written {
        let at: Vec<usize> = ids
            .iter()
            .map(|id| received.iter().position(|r| r == id).expect("missing"))
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "out of order: {at:?}");
    }
    // The session still answers its client after the burst, and nothing else came.
    send(&mut ws, json!({ "type": "ping" })).await;
    let pong = next_json(&mut ws).await;
    assert_eq!(pong["data"]["pong"], true, "{pong}");
}
