//! Compaction and snapshot backfill (`POST /api/v1/sync/groups/:id/compact`): a new instance
//! joining after a compaction, and a peer offline across one, end with the state digest of
//! the compacting instance; the route is admin-only, 404 for an unknown group, idempotent.

use crate::harness::{Opts, TestServer, assert_error, client, json, register, spawn};
use crate::sync_util::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// The state digest of `hive` (crates/store/src/materialize/digest.rs) without its last
/// section: remote agent snapshots, where an instance's own agents (local there, remote
/// everywhere else) legitimately differ.
async fn digest(s: &TestServer, hive: &str) -> String {
    let hive = hive.to_string();
    s.running
        .state
        .store
        .read(move |c| -> Result<String, openhive_store::StoreError> {
            let Some(id) = openhive_store::hives::id_by_name(c, &hive)? else {
                return Ok(String::new());
            };
            let d = openhive_store::materialize::state_digest(c, &id)?;
            Ok(d.split("--\n").take(5).collect::<Vec<_>>().join("--\n"))
        })
        .await
        .unwrap()
}

async fn wait_same_digest(a: &TestServer, b: &TestServer, hive: &str) -> String {
    wait_for(Duration::from_secs(60), "the same state digest", || async {
        let (da, db) = (digest(a, hive).await, digest(b, hive).await);
        (!da.is_empty() && da == db).then_some(da)
    })
    .await
}

async fn patch(s: &TestServer, path: &str, body: Value) {
    let (st, b) = call(s, reqwest::Method::PATCH, path, Some(body)).await;
    assert_eq!(st, StatusCode::OK, "PATCH {path}: {b}");
}

/// Content with much to supersede: edited posts and comments, flipping votes, setting
/// changes. Returns the post ids.
async fn churn(s: &TestServer, hive: &str, round: usize) -> Vec<String> {
    let mut posts = Vec::new();
    for i in 0..3 {
        let p = new_post(s, hive, &format!("post {round}.{i}")).await;
        let c = new_comment(s, &p, "first", None).await;
        new_comment(s, &p, "reply", Some(&c)).await;
        for e in 0..4 {
            patch(
                s,
                &format!("/posts/{p}"),
                json!({ "title": format!("t{e}") }),
            )
            .await;
            patch(
                s,
                &format!("/comments/{c}"),
                json!({ "content": format!("c{e}") }),
            )
            .await;
            let value = [1, -1][e % 2];
            let (st, b) = post(s, &format!("/posts/{p}/vote"), json!({ "value": value })).await;
            assert_eq!(st, StatusCode::OK, "{b}");
        }
        posts.push(p);
    }
    for d in 0..3 {
        patch(
            s,
            &format!("/hives/{hive}"),
            json!({ "description": format!("d{round}.{d}") }),
        )
        .await;
    }
    posts
}

async fn compact(s: &TestServer, hive: &str) -> Value {
    let (st, b) = post(s, &format!("/sync/groups/{hive}/compact"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b
}

#[tokio::test]
async fn compact_then_a_new_instance_joins_and_converges() {
    let a = instance().await;
    create_hive(&a, "cmp").await;
    enable_group(&a, "cmp").await;
    churn(&a, "cmp", 0).await;
    let head = local_seq(&a, "cmp").await;
    let before = digest(&a, "cmp").await;

    let r = compact(&a, "cmp").await;
    // Nothing reads the hive yet: compacted up to the head.
    assert_eq!(r["compacted_through_seq"], head, "{r}");
    let size = r["snapshot_size"].as_i64().unwrap();
    assert!(size > 0 && size < head, "{r}");
    assert_eq!(r["dropped"].as_i64().unwrap(), head - size, "{r}");
    assert_eq!(
        digest(&a, "cmp").await,
        before,
        "compaction changed A's state"
    );
    // Idempotent.
    let again = compact(&a, "cmp").await;
    assert_eq!(again["compacted_through_seq"], r["compacted_through_seq"]);
    assert_eq!(again["snapshot_size"], r["snapshot_size"]);
    assert_eq!(again["dropped"], 0, "{again}");

    let b = instance().await;
    add_peer(&b, "A", &a, &["cmp"]).await;
    add_peer(&a, "B", &b, &["cmp"]).await;
    assert_eq!(wait_same_digest(&a, &b, "cmp").await, before);
    wait_converged(&[&a, &b], "cmp", Duration::from_secs(30), |s| {
        post_count(s) == 3
    })
    .await;
    // Writes after the join still flow both ways.
    new_post(&b, "cmp", "from B").await;
    churn(&a, "cmp", 1).await;
    wait_same_digest(&a, &b, "cmp").await;
    let st = get(&b, "/sync/status").await;
    assert_eq!(st["counters"]["events_rejected"], 0, "{st}");
}

#[tokio::test]
async fn a_peer_offline_across_a_compaction_catches_up() {
    let a = instance().await;
    let b = instance().await;
    create_hive(&a, "off").await;
    enable_group(&a, "off").await;
    add_peer(&a, "B", &b, &["off"]).await;
    add_peer(&b, "A", &a, &["off"]).await;
    churn(&a, "off", 0).await;
    wait_same_digest(&a, &b, "off").await;
    // A's outbox to B has taken everything (the low-water mark is the head).
    let head = local_seq(&a, "off").await;
    wait_for(
        Duration::from_secs(30),
        "B acknowledged A's log",
        || async {
            let st = get(&a, "/sync/status").await;
            (st["groups"][0]["low_water_mark"] == head).then_some(())
        },
    )
    .await;

    // B goes offline; A churns and compacts.
    let TestServer {
        data_dir,
        running,
        mut config,
        ..
    } = b;
    let addr = running.addr;
    running.shutdown().await.unwrap();
    churn(&a, "off", 1).await;
    let r = compact(&a, "off").await;
    // Up to what B acknowledged, not beyond: B's outbox still needs the rest.
    assert_eq!(r["compacted_through_seq"], head, "{r}");
    assert!(r["dropped"].as_i64().unwrap() > 0, "{r}");

    // B comes back on the same address and catches up.
    config.server.listen = addr.to_string();
    let running = wait_for(Duration::from_secs(30), "B restarted", || {
        let config = config.clone();
        async move { openhive::start(config).await.ok() }
    })
    .await;
    let b = TestServer {
        base_url: format!("http://{}", running.addr),
        data_dir,
        running,
        config,
    };
    let want = wait_same_digest(&a, &b, "off").await;

    // B pulls A's whole log again (cursor 0, below the compaction point): the snapshot then
    // the tail, all duplicates or superseded here; the state does not move.
    let (st, body) = post(&b, "/sync/groups/off/resync", json!({})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    let a_head = local_seq(&a, "off").await;
    wait_for(
        Duration::from_secs(60),
        "B pulled A's log again",
        || async {
            let st = get(&b, "/sync/status").await;
            (st["groups"][0]["peers"][0]["last_seq_received"] == a_head).then_some(())
        },
    )
    .await;
    assert_eq!(digest(&b, "off").await, want);
    let st = get(&b, "/sync/status").await;
    assert_eq!(st["counters"]["events_rejected"], 0, "{st}");
}

#[tokio::test]
async fn compact_is_admin_only_and_knows_its_groups() {
    let s = spawn(Opts::token()).await;
    let c = client();
    let admin = s.admin_key();
    let key = register(&c, &s, "carol").await;
    let (st, b) = json(
        c.post(s.api("/hives"))
            .bearer_auth(&key)
            .json(&json!({ "name": "guarded", "description": "d" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let (st, b) = json(
        c.post(s.api("/sync/groups"))
            .header("x-admin-key", &admin)
            .json(&json!({ "hive_name": "guarded" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");

    let url = s.api("/sync/groups/guarded/compact");
    // The web UI's dashboard shows its Compact button when a GET probe of the route answers
    // 405 (present, POST only) rather than 404.
    let probe = c.get(&url).send().await.unwrap().status();
    assert_eq!(probe, StatusCode::METHOD_NOT_ALLOWED);
    let (st, b) = json(c.post(&url).send().await.unwrap()).await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);
    let (st, b) = json(c.post(&url).bearer_auth(&key).send().await.unwrap()).await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (st, b) = json(
        c.post(&url)
            .header("x-admin-key", "ohadm_wrong")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);
    let (st, b) = json(
        c.post(s.api("/sync/groups/nosuch/compact"))
            .header("x-admin-key", &admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::NOT_FOUND);
    let (st, b) = json(
        c.post(&url)
            .header("x-admin-key", &admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["hive"], "guarded");
    assert!(b["compacted_through_seq"].as_i64().unwrap() >= 1, "{b}");
    assert!(b["snapshot_size"].as_i64().unwrap() >= 1, "{b}");
}
