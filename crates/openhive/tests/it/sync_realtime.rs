//! Events that arrive from a peer reach local WebSocket subscribers exactly like local ones,
//! and remote authors are shown as remote everywhere.

use crate::sync_util::{
    add_peer, create_hive, enable_group, get, instance, new_comment, new_post, wait_visible,
};
use crate::ws::{connect, next_json, send, until};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_events_reach_websocket_subscribers() {
    let a = instance().await;
    let b = instance().await;
    create_hive(&a, "shared").await;
    enable_group(&a, "shared").await;
    add_peer(&a, "b", &b, &["shared"]).await;
    add_peer(&b, "a", &a, &["shared"]).await;
    wait_visible(&b, "/hives/shared").await;

    let mut ws = connect(&b.base_url, None).await;
    next_json(&mut ws).await;
    send(
        &mut ws,
        json!({ "type": "subscribe", "channels": ["hive:shared"] }),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await["data"]["subscribed"],
        json!(["hive:shared"])
    );

    let post = new_post(&a, "shared", "from A").await;
    let m = until(&mut ws, "new_post").await;
    assert_eq!(m["data"]["id"], post.as_str(), "same id on every instance");
    assert_eq!(m["data"]["author"]["is_remote"], true);
    assert_eq!(
        m["data"]["origin_instance_id"],
        a.running.state.identity.instance_id.as_str()
    );

    send(
        &mut ws,
        json!({ "type": "subscribe", "channels": [format!("post:{post}")] }),
    )
    .await;
    until(&mut ws, "agent_online").await;
    let c = new_comment(&a, &post, "reply from A", None).await;
    let m = until(&mut ws, "new_comment").await;
    assert_eq!(m["data"]["id"], c.as_str());

    // The remote author appears in B's search, feed and detail views.
    let detail = get(&b, &format!("/posts/{post}")).await;
    assert_eq!(detail["author"]["is_remote"], true);
    let found = get(&b, "/search?q=reply&type=comments").await;
    assert_eq!(found["results"]["comments"][0]["id"], c.as_str());
    let feed = get(&b, "/feed/all?sort=new").await;
    assert_eq!(feed["data"][0]["id"], post.as_str());
}
