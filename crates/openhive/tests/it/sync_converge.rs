//! Convergence of several instances over real HTTP: concurrent writers on three instances,
//! an instance stopped and restarted while the others write, and a chain A–B–C without an
//! A–C link (relay plus roster-based key learning).

use crate::harness::TestServer;
use crate::sync_util::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// Ids of the posts `s` currently shows in `hive`.
async fn visible_posts(s: &TestServer, hive: &str) -> Vec<(String, String)> {
    let page = get(s, &format!("/posts?hive={hive}&sort=new&limit=100")).await;
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["origin_instance_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// One instance's writer: posts, replies to any visible post (its own or others'), vote
/// flips, edits and deletes of its own posts, and hive setting changes.
async fn writer(s: &TestServer, idx: usize, hive: &str, rounds: usize) {
    let me = s.running.state.identity.instance_id.clone();
    let mut mine: Vec<String> = Vec::new();
    for r in 0..rounds {
        let id = new_post(s, hive, &format!("i{idx} r{r}")).await;
        mine.push(id);
        let visible = visible_posts(s, hive).await;
        // Reply to someone else's post when there is one, else to ours.
        if let Some((pid, _)) = visible
            .iter()
            .find(|(_, o)| *o != me)
            .or_else(|| visible.first())
        {
            let (st, c) = post(
                s,
                &format!("/posts/{pid}/comments"),
                json!({ "content": format!("reply from i{idx} r{r}") }),
            )
            .await;
            // The post may have been deleted by its author meanwhile.
            assert!(
                st == StatusCode::CREATED || st == StatusCode::NOT_FOUND,
                "{st} {c}"
            );
            // Vote flips on that post: +1, then -1, or +1 again (which toggles it off).
            let v2 = if r % 2 == 0 { -1 } else { 1 };
            for v in [1, v2] {
                let (st, b) = post(s, &format!("/posts/{pid}/vote"), json!({ "value": v })).await;
                assert!(
                    st == StatusCode::OK || st == StatusCode::NOT_FOUND,
                    "{st} {b}"
                );
            }
        }
        if r % 3 == 1 {
            let target = &mine[mine.len() - 2];
            let (st, b) = call(
                s,
                Method::PATCH,
                &format!("/posts/{target}"),
                json!({ "title": format!("edited by i{idx} r{r}") }).into(),
            )
            .await;
            assert_eq!(st, StatusCode::OK, "{b}");
        }
        if r % 4 == 3 {
            let target = mine.remove(0);
            let (st, b) = call(s, Method::DELETE, &format!("/posts/{target}"), None).await;
            assert!(st.is_success(), "{st} {b}");
        }
        if r % 5 == 2 {
            let (st, b) = call(
                s,
                Method::PATCH,
                &format!("/hives/{hive}"),
                json!({ "description": format!("set by i{idx} r{r}") }).into(),
            )
            .await;
            assert_eq!(st, StatusCode::OK, "{b}");
        }
    }
}

#[tokio::test]
async fn sync_three_instances_with_concurrent_writers_converge() {
    let a = instance().await;
    let b = instance().await;
    let c = instance().await;
    create_hive(&a, "lab").await;
    enable_group(&a, "lab").await;
    mesh(&[&a, &b, &c], "lab").await;
    for s in [&b, &c] {
        wait_visible(s, "/hives/lab").await;
    }
    let rounds = 12;
    tokio::join!(
        writer(&a, 0, "lab", rounds),
        writer(&b, 1, "lab", rounds),
        writer(&c, 2, "lab", rounds)
    );
    // 3 × 12 posts, 3 deleted per writer.
    let snap = wait_converged(&[&a, &b, &c], "lab", T, |s| post_count(s) == 27).await;
    // The winner of the concurrent description changes is the same everywhere (checked by
    // equality) and is one of the values written.
    assert!(
        snap["hive"]["description"]
            .as_str()
            .unwrap()
            .starts_with("set by")
    );
    let comments: usize = snap["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["post"]["comment_count"].as_u64().unwrap() as usize)
        .sum();
    assert!(comments > 0);
    // Nothing was rejected or left waiting anywhere.
    for s in [&a, &b, &c] {
        let st = get(s, "/sync/status").await;
        assert_eq!(st["counters"]["events_rejected"], 0, "{st}");
        assert_eq!(st["groups"][0]["unverified"], 0, "{st}");
    }
}

#[tokio::test]
async fn sync_stopped_instance_catches_up_after_restart() {
    let a = instance().await;
    let b = instance().await;
    let c = instance().await;
    create_hive(&a, "ops").await;
    enable_group(&a, "ops").await;
    mesh(&[&a, &b, &c], "ops").await;
    new_post(&a, "ops", "before").await;
    wait_converged(&[&a, &b, &c], "ops", T, |s| post_count(s) == 1).await;

    let c_port = c.running.addr;
    let c = {
        // Stop C while A and B write.
        let TestServer {
            data_dir,
            running,
            config,
            base_url,
        } = c;
        running.shutdown().await.unwrap();
        for i in 0..10 {
            new_post(&a, "ops", &format!("A while C down {i}")).await;
            new_post(&b, "ops", &format!("B while C down {i}")).await;
        }
        // A notices C is gone (pushes fail, retried with backoff).
        wait_for(T, "A records failures for C", || async {
            let p = get(&a, "/sync/peers").await;
            let bad = p["data"].as_array().unwrap().iter().any(|p| {
                p["sync_endpoint"] == format!("{base_url}/sync/v1")
                    && p["failure_count"].as_i64().unwrap_or(0) > 0
            });
            bad.then_some(())
        })
        .await;
        // Start C again on its data directory and port.
        let mut cfg = config.clone();
        cfg.server.listen = c_port.to_string();
        TestServer {
            data_dir,
            running: openhive::start(cfg).await.unwrap(),
            config,
            base_url,
        }
    };
    assert_eq!(c.running.addr, c_port);
    // C writes too, right after restart.
    new_post(&c, "ops", "C after restart").await;
    wait_converged(&[&a, &b, &c], "ops", T, |s| post_count(s) == 22).await;
    // A second restart on the same port, then a third on a new port: C's heartbeats tell
    // A and B where it moved.
    let c = restart_same_port(c).await;
    new_post(&b, "ops", "after second restart").await;
    wait_converged(&[&a, &b, &c], "ops", T, |s| post_count(s) == 23).await;
    let mut c = c;
    c.config.server.listen = "127.0.0.1:0".into();
    let c = c.restart().await;
    assert_ne!(c.running.addr, c_port);
    let new_ep = endpoint(&c);
    wait_for(T, "A and B learn C's new endpoint", || async {
        let mut ok = true;
        for s in [&a, &b] {
            let p = get(s, "/sync/peers").await;
            ok &= p["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["sync_endpoint"] == new_ep.as_str());
        }
        ok.then_some(())
    })
    .await;
    new_post(&a, "ops", "after the move").await;
    wait_converged(&[&a, &b, &c], "ops", T, |s| post_count(s) == 24).await;
    wait_for(T, "peers active again", || async {
        let p = get(&a, "/sync/peers").await;
        p["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["status"] == "active")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn sync_chain_without_direct_link_converges() {
    // Gossip would link A and C (see sync_gossip.rs): this is about relaying.
    let a = instance_with(without_gossip).await;
    let b = instance_with(without_gossip).await;
    let c = instance_with(without_gossip).await;
    create_hive(&b, "chain").await;
    enable_group(&b, "chain").await;
    // A–B and B–C only.
    add_peer(&a, "B", &b, &["chain"]).await;
    add_peer(&b, "A", &a, &["chain"]).await;
    add_peer(&b, "C", &c, &["chain"]).await;
    add_peer(&c, "B", &b, &["chain"]).await;
    for s in [&a, &c] {
        wait_visible(s, "/hives/chain").await;
    }
    let pa = new_post(&a, "chain", "from A").await;
    let pc = new_post(&c, "chain", "from C").await;
    // Cross replies: C replies to A's post and A to C's, through B.
    wait_visible(&c, &format!("/posts/{pa}")).await;
    wait_visible(&a, &format!("/posts/{pc}")).await;
    new_comment(&c, &pa, "C on A", None).await;
    new_comment(&a, &pc, "A on C", None).await;
    let snap: Value = wait_converged(&[&a, &b, &c], "chain", T, |s| {
        post_count(s) == 2
            && s["posts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["post"]["comment_count"] == 1)
    })
    .await;
    assert_eq!(post_count(&snap), 2);
    // A and C never talked: neither has the other as a peer, yet both know its key (roster).
    for (s, other) in [(&a, &c), (&c, &a)] {
        let peers = get(s, "/sync/peers").await;
        assert_eq!(peers["data"].as_array().unwrap().len(), 1, "{peers}");
        let other_id = other.running.state.identity.instance_id.clone();
        let detail = get(s, "/sync/groups/chain").await;
        assert!(
            detail["roster"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == &Value::String(other_id.clone())),
            "{detail}"
        );
    }
}
