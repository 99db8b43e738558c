//! Key rotation and token rotation (issue 9 item 2), black-box: real instances on loopback.
//!
//! - After `rotate-key` on A, A's new posts reach and verify on B and C (full mesh), A's old
//!   events still verify on instances that meet A only now (D through B: relayed events and
//!   chain; E directly: the handshake's chain), and nothing is rejected anywhere.
//! - A forged rotation statement (wrong signature) and a second rotation of A's old key (what
//!   a thief holding that key would try) are refused; an event signed by the old key with a
//!   time after the rotation is refused; a backdated one is not (the documented limit).
//! - The rotated key survives a restart, and a second rotation works.
//! - A token rotated out keeps working within its grace period and is refused after it; real
//!   peers exchange fresh tokens by handshaking again and keep syncing.

use crate::harness::{TestServer, json as body_of};
use crate::sync_util::*;
use openhive_core::ids::{self, Kind};
use openhive_core::payload::{AgentRef, Payload, PostCreated};
use openhive_core::{Event, InstanceKey, RotationStatement, time};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const SECRET: &str = "rotation-mesh-secret";
const T: Duration = Duration::from_secs(60);

async fn identity_key(s: &TestServer) -> String {
    let r = reqwest::get(s.url("/sync/v1/identity")).await.unwrap();
    let (st, b) = body_of(r).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["signing_key"].as_str().unwrap().to_string()
}

async fn rotate(s: &TestServer) -> Value {
    let (st, b) = post(s, "/admin/instance/rotate-key", json!({})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b
}

fn counters(st: &Value) -> &Value {
    &st["counters"]
}

async fn wait_visible_long(s: &TestServer, path: &str) {
    wait_for(T, path, || async {
        let (st, _) = call(s, Method::GET, path, None).await;
        (st == StatusCode::OK).then_some(())
    })
    .await
}

async fn assert_nothing_rejected(s: &TestServer, hive: &str) {
    let st = get(s, "/sync/status").await;
    assert_eq!(counters(&st)["events_rejected"], 0, "{st}");
    assert_eq!(counters(&st)["key_conflicts"], 0, "{st}");
    assert_eq!(st["waiting"]["unverified"], 0, "{st}");
    let _ = hive;
}

#[tokio::test]
async fn rotation_new_posts_reach_the_mesh_and_old_events_still_verify() {
    // Without gossip, D and E meet only the peer they are given (that is the point).
    let (a, b, c) = (
        instance_with(without_gossip).await,
        instance_with(without_gossip).await,
        instance_with(without_gossip).await,
    );
    create_hive(&a, "rot").await;
    enable_group(&a, "rot").await;
    mesh(&[&a, &b, &c], "rot").await;
    let before = new_post(&a, "rot", "before the rotation").await;
    for s in [&b, &c] {
        wait_visible_long(s, &format!("/posts/{before}")).await;
    }

    let old_key = identity_key(&a).await;
    let r = rotate(&a).await;
    assert_eq!(r["previous_key"], old_key.as_str(), "{r}");
    assert_ne!(r["signing_key"], old_key.as_str(), "{r}");
    assert_eq!(
        r["instance_id"],
        a.running.state.identity.instance_id.as_str()
    );
    assert_eq!(r["announced_to"], 2, "{r}");
    let new_key = identity_key(&a).await;
    assert_eq!(r["signing_key"], new_key.as_str());
    let keys = get(&a, "/admin/instance/keys").await;
    assert_eq!(keys["signing_key"], new_key.as_str(), "{keys}");
    assert_eq!(keys["rotations"].as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(keys["rotations"][0]["old_key"], old_key.as_str(), "{keys}");
    // The private key file now holds the new key; no rotation file is left behind.
    let dir = a.data_dir.path();
    let seed = std::fs::read_to_string(dir.join("instance.key")).unwrap();
    let on_disk = InstanceKey::from_seed_hex(&seed)
        .unwrap()
        .public()
        .to_base64();
    assert_eq!(on_disk, new_key);
    assert!(!dir.join("instance.key.next").exists());

    // New posts (and a comment) from A reach B and C and verify there.
    let after = new_post(&a, "rot", "after the rotation").await;
    let cmt = new_comment(&a, &after, "signed with the new key", None).await;
    for s in [&b, &c] {
        wait_visible_long(s, &format!("/posts/{after}")).await;
        wait_for(T, "the comment", || async {
            let v = get(s, &format!("/posts/{after}/comments")).await;
            v.to_string().contains(&cmt).then_some(())
        })
        .await;
    }
    // B and C relay A's events to each other; a post of B reaches A and C as before.
    let from_b = new_post(&b, "rot", "from B").await;
    for s in [&a, &c] {
        wait_visible_long(s, &format!("/posts/{from_b}")).await;
    }

    // D meets only B after the rotation: it backfills A's whole history through B (events
    // from before and after the rotation, relayed) and verifies every one.
    let d = instance_with(without_gossip).await;
    add_peer(&d, "B", &b, &["rot"]).await;
    add_peer(&b, "D", &d, &["rot"]).await;
    // E meets only A: the handshake carries A's current key and its chain back to the
    // first key, so A's old events verify too.
    let e = instance_with(without_gossip).await;
    add_peer(&e, "A", &a, &["rot"]).await;
    add_peer(&a, "E", &e, &["rot"]).await;
    for s in [&d, &e] {
        for p in [&before, &after, &from_b] {
            wait_visible_long(s, &format!("/posts/{p}")).await;
        }
    }
    let snap = wait_converged(&[&a, &b, &c, &d, &e], "rot", T, |v| post_count(v) == 3).await;
    assert!(snap.to_string().contains(&cmt), "{snap}");
    for s in [&a, &b, &c, &d, &e] {
        assert_nothing_rejected(s, "rot").await;
    }
}

/// A hand-rolled peer "M" of B (it has B's handshake secret).
struct M {
    id: String,
    key: InstanceKey,
    http: reqwest::Client,
}

impl M {
    fn new() -> M {
        M {
            id: ids::new_instance_id(),
            key: InstanceKey::generate(),
            http: reqwest::Client::new(),
        }
    }

    async fn handshake(&self, s: &TestServer, hive: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(s.url("/sync/v1/handshake"))
            .header("X-Handshake-Secret", SECRET)
            .json(&json!({
                "protocol_version": 1,
                "hive": hive,
                "instance_id": self.id,
                "instance_name": "m",
                "signing_key": self.key.public().to_base64(),
                "sync_endpoint": format!("http://127.0.0.1:9/{}/sync/v1", self.id),
                "current_seq": 0,
                "roster": [],
                "token": ids::new_secret_token("ohs_"),
            }))
            .send()
            .await
            .unwrap();
        body_of(resp).await
    }

    async fn token(&self, s: &TestServer, hive: &str) -> String {
        let (st, b) = self.handshake(s, hive).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        b["token"].as_str().unwrap().to_string()
    }

    async fn call(
        &self,
        s: &TestServer,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.http.request(method, s.url(path)).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        body_of(r.send().await.unwrap()).await
    }
}

/// A `post_created` of `origin`'s agent, signed by `key` at `ts`.
fn post_of(origin: &str, hive: &str, key: &InstanceKey, ts: i64, title: &str) -> Event {
    let author = AgentRef {
        instance_id: origin.into(),
        agent_id: ids::new_id(Kind::Agent, origin),
        name: "someone".into(),
        avatar_url: None,
    };
    let p = Payload::PostCreated(PostCreated {
        post_id: ids::new_id(Kind::Post, origin),
        title: title.into(),
        content: Some("x".into()),
        url: None,
        author,
    });
    Event::sign_new(key, origin, hive, p.event_type(), ts, p.to_json())
}

#[tokio::test]
async fn rotation_forged_statements_and_the_retired_key_are_refused() {
    let a = instance().await;
    let b = instance_with(|c| c.sync.handshake_secret = Some(SECRET.into())).await;
    create_hive(&a, "rot").await;
    enable_group(&a, "rot").await;
    mesh(&[&a, &b], "rot").await;
    let p0 = new_post(&a, "rot", "before").await;
    wait_visible_long(&b, &format!("/posts/{p0}")).await;
    let a_id = a.running.state.identity.instance_id.clone();

    // A thief copies A's key file before the rotation.
    let stolen = std::fs::read_to_string(a.data_dir.path().join("instance.key")).unwrap();
    let stolen = InstanceKey::from_seed_hex(&stolen).unwrap();
    let r = rotate(&a).await;
    let at = r["at"].as_i64().unwrap();
    let new_key = r["signing_key"].as_str().unwrap().to_string();
    let p1 = new_post(&a, "rot", "after").await;
    wait_visible_long(&b, &format!("/posts/{p1}")).await;

    let m = M::new();
    let token = m.token(&b, "rot").await;
    let thief = InstanceKey::generate();

    // 1. A statement "A rotates from its current key to the thief's", signed by the thief
    //    in place of A's current key: the old key's signature does not verify.
    let mut forged = RotationStatement::sign(&thief, &thief_two(), &a_id, time::now_ms());
    forged.old_key = new_key.clone();
    // 2. The thief's own rotation of the stolen (old) key onto its key: both signatures are
    //    good, but A already rotated that key (first rotation wins).
    let fork = RotationStatement::sign(&stolen, &thief, &a_id, time::now_ms());
    // 3. A well-signed statement that does not start from A's current key (the thief
    //    rotating its own random key "for A").
    let stray = RotationStatement::sign(&thief, &thief_two(), &a_id, time::now_ms());
    let (st, resp) = m
        .call(
            &b,
            Method::POST,
            "/sync/v1/keys",
            &token,
            Some(json!({ "key_rotations": [forged, fork] })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    assert_eq!(resp["refused"], 2, "{resp}");
    assert_eq!(resp["accepted"], 0, "{resp}");
    let reasons = resp["rejections"].to_string();
    assert!(reasons.contains("signature does not verify"), "{reasons}");
    assert!(reasons.contains("first rotation wins"), "{reasons}");
    let (st, resp) = m
        .call(
            &b,
            Method::POST,
            "/sync/v1/keys",
            &token,
            Some(json!({ "key_rotations": [stray] })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    assert_eq!(resp["refused"], 1, "{resp}");
    assert!(
        resp["rejections"].to_string().contains("current key"),
        "{resp}"
    );
    // Malformed statements are a 400 before anything else (too many) or refused (bad key).
    let (st, resp) = m
        .call(
            &b,
            Method::POST,
            "/sync/v1/keys",
            &token,
            Some(
                json!({ "key_rotations": [{"instance_id": a_id, "old_key": "x", "new_key": "y",
                "at": 1, "old_signature": "", "new_signature": ""}] }),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    assert_eq!(resp["refused"], 1, "{resp}");
    let (st, resp) = m
        .call(
            &b,
            Method::POST,
            "/sync/v1/keys",
            &token,
            Some(json!({"nope": 1})),
        )
        .await;
    assert!(st.is_client_error(), "{st} {resp}");
    assert!(resp["error"].is_string(), "{resp}");
    let (st, _) = m
        .call(
            &b,
            Method::POST,
            "/sync/v1/keys",
            "ohs_not_a_token_at_all",
            Some(json!({"key_rotations": []})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // The stolen key signs a new event (a time after the rotation): refused, with the reason.
    let late = post_of(
        &a_id,
        "rot",
        &stolen,
        time::now_ms().max(at + 1),
        "thief, now",
    );
    // A key that is none of A's: a plain bad signature.
    let early_new = post_of(&a_id, "rot", &thief, at - 1, "not A at all");
    // The stolen key backdating an event before the rotation: accepted. Rotation cannot tell
    // it from a genuine old event (origin times are the signer's claim); documented.
    let backdated = post_of(&a_id, "rot", &stolen, at - 1, "thief, backdated");
    let (st, resp) = m
        .call(
            &b,
            Method::POST,
            "/sync/v1/groups/rot/events",
            &token,
            Some(json!({ "events": [late, early_new, backdated.clone()], "first_seq": 1, "last_seq": 3 })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    assert_eq!(resp["rejected"], 2, "{resp}");
    assert_eq!(resp["accepted"], 1, "{resp}");
    let reasons = resp["rejections"].to_string();
    assert!(reasons.contains("not valid at origin_ts"), "{reasons}");
    assert!(reasons.contains("signature does not verify"), "{reasons}");

    // B still follows A's real key: A's next post arrives and verifies.
    let p2 = new_post(&a, "rot", "still A").await;
    wait_visible_long(&b, &format!("/posts/{p2}")).await;
    let st = get(&b, "/sync/status").await;
    assert!(
        counters(&st)["key_conflicts"].as_i64().unwrap() >= 4,
        "{st}"
    );
    assert_eq!(identity_key(&a).await, new_key);
}

fn thief_two() -> InstanceKey {
    InstanceKey::generate()
}

#[tokio::test]
async fn rotation_survives_a_restart_and_rotates_again() {
    let (a, b) = (instance().await, instance().await);
    create_hive(&a, "rot").await;
    enable_group(&a, "rot").await;
    mesh(&[&a, &b], "rot").await;
    let p0 = new_post(&a, "rot", "first key").await;
    wait_visible_long(&b, &format!("/posts/{p0}")).await;
    let r1 = rotate(&a).await;
    let a = restart_same_port(a).await;
    assert_eq!(identity_key(&a).await, r1["signing_key"].as_str().unwrap());
    let keys = get(&a, "/admin/instance/keys").await;
    assert_eq!(keys["rotations"].as_array().unwrap().len(), 1, "{keys}");
    let p1 = new_post(&a, "rot", "second key, after a restart").await;
    wait_visible_long(&b, &format!("/posts/{p1}")).await;
    let r2 = rotate(&a).await;
    assert_eq!(r2["previous_key"], r1["signing_key"], "{r2}");
    assert!(r2["at"].as_i64().unwrap() > r1["at"].as_i64().unwrap());
    let p2 = new_post(&a, "rot", "third key").await;
    wait_visible_long(&b, &format!("/posts/{p2}")).await;
    // A newcomer verifies all three periods.
    let c = instance().await;
    add_peer(&c, "B", &b, &["rot"]).await;
    add_peer(&b, "C", &c, &["rot"]).await;
    for p in [&p0, &p1, &p2] {
        wait_visible_long(&c, &format!("/posts/{p}")).await;
    }
    for s in [&a, &b, &c] {
        assert_nothing_rejected(s, "rot").await;
    }
}

/// The id of `instance_id`'s peer row on `s`.
async fn peer_id(s: &TestServer, instance_id: &str) -> String {
    let peers = get(s, &format!("/sync/peers?peer={instance_id}")).await;
    peers["data"][0]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn token_rotation_old_token_works_within_grace_then_is_refused() {
    let a = instance_with(|c| c.sync.handshake_secret = Some(SECRET.into())).await;
    create_hive(&a, "tok").await;
    enable_group(&a, "tok").await;
    let m = M::new();
    let t1 = m.token(&a, "tok").await;
    let status = "/sync/v1/groups/tok/status";
    let (st, b) = m.call(&a, Method::GET, status, &t1, None).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let pid = peer_id(&a, &m.id).await;

    // Rotation with the configured grace (an hour): the old token still works.
    let (st, r) = post(&a, &format!("/sync/peers/{pid}/rotate-token"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["grace_secs"], 3600, "{r}");
    assert_eq!(r["retired_tokens"], 1, "{r}");
    assert_eq!(r["rehandshaking"], 1, "{r}");
    assert!(
        !r.to_string().contains("ohs_"),
        "no token in the answer: {r}"
    );
    let (st, b) = m.call(&a, Method::GET, status, &t1, None).await;
    assert_eq!(st, StatusCode::OK, "within the grace period: {b}");

    // A fresh handshake gives M a new token, valid for good.
    let t2 = m.token(&a, "tok").await;
    // Rotation with a 1 s grace: the old tokens stop working once it is over.
    let (st, r) = call(
        &a,
        Method::POST,
        &format!("/sync/peers/{pid}/rotate-token"),
        Some(json!({ "grace_secs": 1 })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    // t1 (its grace shortened) and t2, plus the token of A's own handshake attempt towards
    // M if its link made one meanwhile (M's endpoint is unreachable): timing decides that.
    let retired = r["retired_tokens"].as_u64().unwrap();
    assert!((2..=3).contains(&retired), "{r}");
    wait_for(
        Duration::from_secs(30),
        "the rotated-out token refused",
        || async {
            let (st, _) = m.call(&a, Method::GET, status, &t1, None).await;
            (st == StatusCode::UNAUTHORIZED).then_some(())
        },
    )
    .await;
    let (st, b) = m.call(&a, Method::GET, status, &t2, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "t2 was retired too: {b}");
    assert_eq!(b["error"], "Unauthorized", "{b}");
    let t3 = m.token(&a, "tok").await;
    let (st, b) = m.call(&a, Method::GET, status, &t3, None).await;
    assert_eq!(st, StatusCode::OK, "a token issued after the rotation: {b}");

    // Bad input: one JSON error shape.
    let (st, b) = post(&a, "/sync/peers/peer_nope/rotate-token", json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    let (st, b) = post(
        &a,
        &format!("/sync/peers/{pid}/rotate-token"),
        json!({ "grace_secs": 999_999_999 }),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["message"].as_str().unwrap().contains("grace_secs"), "{b}");
    let (st, b) = post(
        &a,
        &format!("/sync/peers/{pid}/rotate-token"),
        json!({ "grace": 1 }),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
}

#[tokio::test]
async fn token_rotation_between_real_peers_keeps_them_syncing() {
    let (a, b) = (instance().await, instance().await);
    create_hive(&a, "tok").await;
    enable_group(&a, "tok").await;
    mesh(&[&a, &b], "tok").await;
    let p0 = new_post(&a, "tok", "before").await;
    wait_visible_long(&b, &format!("/posts/{p0}")).await;
    let b_id = b.running.state.identity.instance_id.clone();
    let pid = peer_id(&a, &b_id).await;
    // No grace: B's old token for A is refused at once; the handshake A starts hands B a
    // fresh one (and B, refused, would handshake again by itself anyway).
    let (st, r) = post(
        &a,
        &format!("/sync/peers/{pid}/rotate-token"),
        json!({ "grace_secs": 0 }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let from_b = new_post(&b, "tok", "from B after the rotation").await;
    wait_visible_long(&a, &format!("/posts/{from_b}")).await;
    let from_a = new_post(&a, "tok", "from A after the rotation").await;
    wait_visible_long(&b, &format!("/posts/{from_a}")).await;
}

/// C is offline while A rotates (the announcement and B's relay of it miss C) and never talks
/// to A: it learns the rotation from the chain that comes with A's events, relayed by B.
#[tokio::test]
async fn rotation_reaches_an_offline_peer_with_the_relayed_events() {
    // Without gossip, A and C never meet (that is the point).
    let (a, b, c) = (
        instance_with(without_gossip).await,
        instance_with(without_gossip).await,
        instance_with(without_gossip).await,
    );
    create_hive(&a, "rot").await;
    enable_group(&a, "rot").await;
    // A chain A - B - C: no link between A and C.
    mesh(&[&a, &b], "rot").await;
    mesh(&[&b, &c], "rot").await;
    let p0 = new_post(&a, "rot", "before").await;
    wait_visible_long(&c, &format!("/posts/{p0}")).await;

    let TestServer {
        data_dir: c_dir,
        running: c_run,
        config: mut c_config,
        ..
    } = c;
    let c_addr = c_run.addr;
    c_run.shutdown().await.unwrap();
    let r = rotate(&a).await;
    assert_eq!(r["announced_to"], 1, "only B: {r}");
    let p1 = new_post(&a, "rot", "after, while C is away").await;
    wait_visible_long(&b, &format!("/posts/{p1}")).await;
    // B's relay of the statement to C has failed by now (C is down): wait for B to have
    // tried to push p1 to C at least once.
    wait_for(T, "B failing to reach C", || async {
        let st = get(&b, "/sync/status").await;
        let failing = st["groups"][0]["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["failure_count"].as_i64().unwrap_or(0) > 0);
        failing.then_some(())
    })
    .await;

    c_config.server.listen = c_addr.to_string();
    let c = crate::harness::spawn_with(c_dir, c_config).await;
    let p2 = new_post(&a, "rot", "after, C is back").await;
    for p in [&p1, &p2] {
        wait_visible_long(&c, &format!("/posts/{p}")).await;
    }
    assert_nothing_rejected(&c, "rot").await;
}
