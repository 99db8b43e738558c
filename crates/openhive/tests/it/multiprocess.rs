//! Several app processes, one instance: two `openhive serve` processes on one data directory
//! (keys) and one PostgreSQL database serve one instance to a SQLite peer. Writes on either
//! are readable on both, WebSocket subscribers of either see every change, the peer sees one
//! instance, and `kill -9` of one process loses no acknowledged write while its outbox work
//! resumes in the other. Runs when the suite runs on PostgreSQL (`OPENHIVE_TEST_PG_URL`).

use crate::harness::{BinaryServer, spawn_binary_env, test_pg_url};
use crate::sync_util::{
    Api, add_peer, create_hive, enable_group, get, instance_with, new_post, post, post_count,
    wait_converged, wait_for,
};
use crate::ws::{connect, next_json, send, until};
use openhive_server::config::StorageEngine;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

const T: Duration = Duration::from_secs(90);

const FAST_SYNC: &[(&str, &str)] = &[
    ("OPENHIVE_SYNC__HEARTBEAT_INTERVAL_SECS", "1"),
    ("OPENHIVE_SYNC__PEER_TIMEOUT_SECS", "30"),
    ("OPENHIVE_SYNC__BACKOFF_INITIAL_MS", "100"),
    ("OPENHIVE_SYNC__BACKOFF_MAX_SECS", "1"),
];

fn kill(mut p: BinaryServer) {
    p.child.kill().unwrap(); // SIGKILL
    p.child.wait().unwrap();
}

/// Posts `n` titles `prefix i` on `s` concurrently with the other writers; returns the ids
/// acknowledged with 201 (a process killed mid-way simply stops acknowledging).
async fn writer(base: String, prefix: String, n: usize, acked: Arc<Mutex<Vec<String>>>) {
    let http = reqwest::Client::new();
    for i in 0..n {
        let r = http
            .post(format!("{base}/api/v1/posts"))
            .json(&json!({ "hive": "mp", "title": format!("{prefix} {i}"), "content": "x" }))
            .send()
            .await;
        match r {
            Ok(resp) if resp.status() == StatusCode::CREATED => {
                // A 201 whose body the kill cut off is not an acknowledgement.
                let Ok(v) = resp.json::<serde_json::Value>().await else {
                    return;
                };
                acked
                    .lock()
                    .await
                    .push(v["id"].as_str().unwrap().to_string());
            }
            Ok(resp) if resp.status() == StatusCode::SERVICE_UNAVAILABLE => {}
            Ok(resp) => panic!("unexpected status {}", resp.status()),
            Err(_) => return, // the process is gone
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_processes_serve_one_instance_and_survive_kill_9() {
    if test_pg_url().is_none() {
        eprintln!("skipped: needs PostgreSQL (OPENHIVE_TEST_PG_URL); CI runs it there");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The first process creates the schema, the identity and the keys; the second joins.
    let p1 = spawn_binary_env(dir.path(), FAST_SYNC);
    let p2 = spawn_binary_env(dir.path(), FAST_SYNC);
    let id1 = get(&p1, "/admin/instance").await["instance_id"].clone();
    let id2 = get(&p2, "/admin/instance").await["instance_id"].clone();
    assert!(id1.is_string());
    assert_eq!(id1, id2, "two processes, one instance");

    // A SQLite peer, paired with the instance through process 1.
    let s = instance_with(|c| {
        c.storage.engine = StorageEngine::Sqlite;
        c.storage.url = None;
    })
    .await;
    create_hive(&p1, "mp").await;
    enable_group(&p1, "mp").await;
    add_peer(&p1, "S", &s, &["mp"]).await;
    add_peer(&s, "OH", &p1, &["mp"]).await;
    wait_for(T, "the peer holds the hive", || async {
        let (st, _) = crate::sync_util::call(&s, reqwest::Method::GET, "/hives/mp", None).await;
        (st == StatusCode::OK).then_some(())
    })
    .await;

    // A write on either process is readable on both, and reaches WebSocket subscribers of
    // the other process.
    let mut ws = connect(&p2.base(), None).await;
    next_json(&mut ws).await;
    send(
        &mut ws,
        json!({ "type": "subscribe", "channels": ["hive:mp"] }),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await["data"]["subscribed"],
        json!(["hive:mp"])
    );
    let first = new_post(&p1, "mp", "written on process 1").await;
    assert_eq!(
        get(&p2, &format!("/posts/{first}")).await["id"],
        first.as_str()
    );
    let m = until(&mut ws, "new_post").await;
    assert_eq!(m["data"]["id"], first.as_str());

    // Concurrent writers on all three converge.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let writers = [
        (p1.base(), "p1"),
        (p2.base(), "p2"),
        (s.base_url.clone(), "peer"),
    ]
    .map(|(base, name)| tokio::spawn(writer(base, name.into(), 15, acked.clone())));
    for w in writers {
        w.await.unwrap();
    }
    let expected = acked.lock().await.len() + 1;
    let all: [&dyn Api; 3] = [&p1, &p2, &s];
    wait_converged(&all, "mp", T, |v| post_count(v) == expected).await;
    let peers = get(&s, "/sync/peers").await;
    assert_eq!(
        peers["data"].as_array().map(Vec::len),
        Some(1),
        "the peer sees one instance: {peers}"
    );

    // kill -9 of process 1 under load: nothing acknowledged is lost, and the outbox work
    // (writes made on process 2 after the kill) reaches the peer from process 2.
    let before = acked.lock().await.len();
    let load = tokio::spawn(writer(
        p1.base(),
        "p1 under load".into(),
        1000,
        acked.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill(p1);
    let _ = load.await;
    let during = acked.lock().await.len() - before;
    assert!(during > 0, "the load never ran");
    for i in 0..5 {
        let (st, b) = post(
            &p2,
            "/posts",
            json!({ "hive": "mp", "title": format!("after the kill {i}"), "content": "x" }),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
        acked
            .lock()
            .await
            .push(b["id"].as_str().unwrap().to_string());
    }
    // Every acknowledged post, plus at most the one write the kill cut between its commit
    // and its answer (the writer is sequential): committed, never acknowledged.
    let expected = acked.lock().await.len() + 1;
    let pair: [&dyn Api; 2] = [&p2, &s];
    wait_converged(&pair, "mp", T, |v| {
        (expected..=expected + 1).contains(&post_count(v))
    })
    .await;
    for id in acked.lock().await.iter() {
        get(&s, &format!("/posts/{id}")).await;
    }
    kill(p2);
    s.running.shutdown().await.unwrap();
}

/// Two app processes of one instance, both configured with a MAP hub and a preauth key:
/// one of them (the holder of the `hub_client` lease) registers, once, and the other
/// follows its stored registration, also when the hub forgets the swarm. Before, a 401
/// made each process register again, each registration replaced the other's token, and
/// they took turns re-registering until the preauth key was spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_processes_register_with_the_hub_once() {
    if test_pg_url().is_none() {
        eprintln!("skipped: needs PostgreSQL (OPENHIVE_TEST_PG_URL); CI runs it there");
        return;
    }
    let hub = instance_with(|c| {
        c.storage.engine = StorageEngine::Sqlite;
        c.storage.url = None;
        c.map_hub.enabled = true;
    })
    .await;
    let (st, key) = hub_admin(
        &hub,
        reqwest::Method::POST,
        "/map/preauth-keys",
        Some(json!({ "uses": 10 })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{key}");
    let key = key["key"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut env = FAST_SYNC.to_vec();
    env.push(("OPENHIVE_SYNC__HUB__URL", hub.base_url.as_str()));
    env.push(("OPENHIVE_SYNC__HUB__PREAUTH_KEY", key.as_str()));
    let p1 = spawn_binary_env(dir.path(), &env);
    let p2 = spawn_binary_env(dir.path(), &env);
    let uses_left = || async {
        let (st, b) = hub_admin(&hub, reqwest::Method::GET, "/map/preauth-keys", None).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        b["data"][0]["uses_left"].as_i64().unwrap()
    };
    wait_for(T, "the instance registered with the hub", || async {
        (uses_left().await < 10).then_some(())
    })
    .await;
    // Both processes run several heartbeats (1 s) with the hub: nothing registers again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(uses_left().await, 9, "one registration for one instance");
    // Both processes answer for the instance the hub knows (one swarm, online).
    let (st, swarms) = hub_admin(&hub, reqwest::Method::GET, "/map/swarms", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(swarms["total"], 1, "{swarms}");
    assert_eq!(swarms["data"][0]["status"], "online", "{swarms}");
    // The hub's admin removes the swarm: its token is refused (401), and the instance
    // registers again, once (without the lease both processes did, and each registration
    // replaced the other's token: they took turns until the key was spent).
    let id = swarms["data"][0]["id"].as_str().unwrap().to_string();
    let (st, b) = hub_admin(
        &hub,
        reqwest::Method::DELETE,
        &format!("/map/swarms/{id}"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{b}");
    wait_for(T, "the instance registered again", || async {
        (uses_left().await < 9).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(uses_left().await, 8, "one registration again");
    kill(p1);
    kill(p2);
}

/// An admin call to the hub (`X-Admin-Key`).
async fn hub_admin(
    hub: &crate::harness::TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .request(method, hub.api(path))
        .header("X-Admin-Key", hub.admin_key());
    if let Some(b) = body {
        req = req.json(&b);
    }
    crate::harness::json(req.send().await.unwrap()).await
}
