//! The reference's REST surface for existing OpenHive clients (issue 10, "doors closed"):
//! sync group fields, the hubless walkthrough as written, `/sync/groups/join`, `/feed/all`
//! with `hive=&since=<ISO-8601>&limit=` and keyset paging, admin-issued ingest keys.

use crate::client::As;
use crate::harness::{Opts, assert_error, spawn};
use crate::sync_util::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn assert_group_fields(g: &Value, hive: &str) {
    assert!(g["id"].is_string(), "id: {g}");
    assert_eq!(g["id"], g["hive_id"], "{g}");
    assert_eq!(g["hive_name"], hive, "{g}");
    assert_eq!(g["sync_group_name"], hive, "{g}");
    assert_eq!(g["name"], hive, "{g}");
    assert!(g["seq"].is_i64(), "seq: {g}");
    assert_eq!(g["seq"], g["local_seq"], "{g}");
    assert!(g["created_at"].is_string(), "{g}");
}

#[tokio::test]
async fn sync_group_objects_carry_the_reference_fields() {
    let a = instance().await;
    create_hive(&a, "eng").await;
    new_post(&a, "eng", "one").await;
    let (st, g) = post(&a, "/sync/groups", json!({ "hive_name": "eng" })).await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    assert_group_fields(&g, "eng");
    assert_eq!(g["awaiting_hive"], false);
    assert!(g["seq"].as_i64().unwrap() >= 2, "{g}");
    let id = g["id"].as_str().unwrap().to_string();
    // Idempotent: 200 the second time, same object.
    let (st, again) = post(&a, "/sync/groups", json!({ "hive_name": "eng" })).await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again["id"], id.as_str());

    let list = get(&a, "/sync/groups").await;
    assert_group_fields(&list["data"][0], "eng");

    // `/sync/groups/:id` takes the id as well as the hive name.
    for key in [id.as_str(), "eng"] {
        let d = get(&a, &format!("/sync/groups/{key}")).await;
        assert_group_fields(&d, "eng");
        assert!(d["event_count"].is_i64(), "{d}");
        assert!(d["peers"].is_array(), "{d}");
        let ev = get(&a, &format!("/sync/groups/{key}/events")).await;
        assert!(!ev["data"].as_array().unwrap().is_empty(), "{ev}");
    }
    let (st, b) = call(&a, Method::GET, "/sync/groups/hive_nope", None).await;
    assert_error(st, &b, StatusCode::NOT_FOUND);
}

/// Design §3.2, hubless walkthrough, steps 1-6 as written: B enables the group for a hive it
/// does not have yet (an empty pending group), then each adds the other as a peer.
#[tokio::test]
async fn sync_hubless_walkthrough_as_written() {
    let a = instance().await;
    let b = instance().await;
    // 1. A creates the hive and enables sync.
    create_hive(&a, "engineering").await;
    let p1 = new_post(&a, "engineering", "before pairing").await;
    let (st, g) = post(&a, "/sync/groups", json!({ "hive_name": "engineering" })).await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    // 2. A adds B.
    add_peer(&a, "Instance B", &b, &["engineering"]).await;
    // 3. B does the same in reverse, without having the hive: 201, an empty pending group
    //    (the reference body's sync_group_name is accepted).
    let (st, g) = post(
        &b,
        "/sync/groups",
        json!({ "hive_name": "engineering", "sync_group_name": "sync:engineering:x1" }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    assert_group_fields(&g, "engineering");
    assert_eq!(g["awaiting_hive"], true, "{g}");
    assert_eq!(g["seq"], 0);
    let (st, _) = call(&b, Method::GET, "/hives/engineering", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    add_peer(&b, "Instance A", &a, &["engineering"]).await;
    // 4-5. Handshake, backfill, steady state in both directions.
    let snap = wait_converged(&[&a, &b], "engineering", T, |s| post_count(s) == 1).await;
    assert_eq!(snap["posts"][0]["post"]["id"], p1.as_str());
    let g = get(&b, "/sync/groups/engineering").await;
    assert_eq!(g["awaiting_hive"], false, "{g}");
    assert!(g["seq"].as_i64().unwrap() > 0, "{g}");
    let p2 = new_post(&b, "engineering", "from B").await;
    wait_visible(&a, &format!("/posts/{p2}")).await;
    // 6. Heartbeats: both peers active.
    for s in [&a, &b] {
        wait_for(T, "peer active", || async {
            let p = get(s, "/sync/peers").await;
            (p["data"][0]["status"] == "active").then_some(())
        })
        .await;
    }
    // The legacy federation view of the same peers (reference shapes).
    let fed = get(&a, "/federation/status").await;
    assert_eq!(fed["enabled"], true, "{fed}");
    assert!(fed["policy"].is_string(), "{fed}");
    assert_eq!(fed["peers_count"], 1, "{fed}");
    assert_eq!(fed["stats"]["total"], 1, "{fed}");
    assert_eq!(fed["stats"]["active"], 1, "{fed}");
    assert_eq!(fed["stats"]["blocked"], 0, "{fed}");
    let rp = &fed["recent_peers"][0];
    assert_eq!(rp["url"], endpoint(&b), "{fed}");
    assert_eq!(rp["name"], "Instance B");
    assert_eq!(rp["status"], "active");
    assert_eq!(rp["is_trusted"], true);
    assert_eq!(fed["sync"]["groups"][0]["name"], "engineering");
    let peers = get(&a, "/federation/peers?status=active&limit=10").await;
    assert_eq!(peers["total"], 1, "{peers}");
    let id = peers["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(peers["data"][0]["url"], endpoint(&b));
    let one = get(&a, &format!("/federation/peers/{id}")).await;
    assert_eq!(one["id"], id.as_str());
    let none = get(&a, "/federation/peers?status=unreachable").await;
    assert_eq!(none["total"], 0, "{none}");
    let (st, e) = call(&a, Method::GET, "/federation/peers/peer_nope", None).await;
    assert_error(st, &e, StatusCode::NOT_FOUND);
}

/// Design §3.3 step 4: `POST /sync/groups/join {hive_name, sync_group_name, peer_endpoint}`
/// enables the group (pending here) and adds the peer sharing the hive: 201 {group, peer}.
#[tokio::test]
async fn sync_groups_join_enables_the_group_and_adds_the_peer() {
    let a = instance().await;
    let b = instance().await;
    create_hive(&a, "lab").await;
    let p1 = new_post(&a, "lab", "from A").await;
    enable_group(&a, "lab").await;
    add_peer(&a, "B", &b, &["lab"]).await;

    let body = json!({
        "hive_name": "lab",
        "sync_group_name": "sync:lab:abcd1234",
        "peer_endpoint": endpoint(&a),
    });
    let (st, j) = post(&b, "/sync/groups/join", body.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{j}");
    assert_group_fields(&j["group"], "lab");
    assert_eq!(j["group"]["awaiting_hive"], true, "{j}");
    assert_eq!(j["peer"]["sync_endpoint"], endpoint(&a));
    assert_eq!(j["peer"]["shared_hives"], json!(["lab"]));
    assert!(j["peer"]["id"].is_string());
    assert!(!j.to_string().contains("ohs_"), "token leaked: {j}");
    // Again: nothing new, 200, same peer.
    let (st, again) = post(&b, "/sync/groups/join", body).await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again["peer"]["id"], j["peer"]["id"]);

    wait_converged(&[&a, &b], "lab", T, |s| post_count(s) == 1).await;
    wait_visible(&b, &format!("/posts/{p1}")).await;
    let p2 = new_post(&b, "lab", "from B").await;
    wait_visible(&a, &format!("/posts/{p2}")).await;

    // Validation: no endpoint, a bad endpoint, a bad hive name, unknown fields.
    for bad in [
        json!({ "hive_name": "lab", "peer_swarm_id": "swarm_1" }),
        json!({ "hive_name": "lab", "peer_endpoint": "ftp://x" }),
        json!({ "hive_name": "Bad Name", "peer_endpoint": endpoint(&a) }),
        json!({ "hive_name": "lab", "peer_endpoint": endpoint(&a), "extra": 1 }),
    ] {
        let (st, e) = post(&b, "/sync/groups/join", bad.clone()).await;
        assert_error(st, &e, StatusCode::BAD_REQUEST);
    }
    // Admin only.
    let t = spawn(Opts::token()).await;
    let anon = As::anonymous(&t);
    let (st, e) = anon
        .post(
            "/sync/groups/join",
            json!({ "hive_name": "lab", "peer_endpoint": endpoint(&a) }),
        )
        .await;
    assert_error(st, &e, StatusCode::UNAUTHORIZED);
}

/// `/feed/all?hive=&since=<ISO-8601>&limit=` answers `cursor` + `has_more` and pages by
/// keyset; `since` in epoch milliseconds still works.
#[tokio::test]
async fn feed_all_honours_hive_since_iso8601_and_pages_by_cursor() {
    let s = spawn(Opts::token()).await;
    let alice = As::new_agent(&s, "alice").await;
    alice.hive("one", true).await;
    alice.hive("two", true).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(alice.new_post("one", &format!("one-{i}")).await);
        alice.new_post("two", &format!("two-{i}")).await;
    }
    let anon = As::anonymous(&s);
    let (st, all) = anon.get("/feed/all?limit=100").await;
    assert_eq!(st, StatusCode::OK, "{all}");
    assert_eq!(all["data"].as_array().unwrap().len(), 10);

    // hive= filters; keyset pages of 2 with cursor/has_more cover the hive exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/feed/all?hive=one&sort=new&limit=2".to_string(),
            Some(c) => format!("/feed/all?hive=one&sort=new&limit=2&cursor={c}"),
        };
        let (st, page) = anon.get(&path).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        for p in page["data"].as_array().unwrap() {
            assert_eq!(p["hive_name"], "one", "{p}");
            seen.push(p["id"].as_str().unwrap().to_string());
        }
        if page["has_more"] == true {
            cursor = Some(page["cursor"].as_str().unwrap().to_string());
        } else {
            assert!(page["cursor"].is_null(), "{page}");
            break;
        }
    }
    let mut want = ids.clone();
    want.reverse();
    assert_eq!(seen, want);

    // since= as ISO-8601 (and as ms): only posts created strictly after it.
    let (_, third) = anon.get(&format!("/posts/{}", ids[2])).await;
    let created = third["created_at"].as_str().unwrap().to_string();
    let (st, after) = anon
        .get(&format!(
            "/feed/all?hive=one&sort=new&limit=50&since={created}"
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{after}");
    let got: Vec<&str> = after["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[4].as_str(), ids[3].as_str()], "{after}");
    let (_, everything) = anon
        .get("/feed/all?hive=one&limit=50&since=2000-01-01T00:00:00Z")
        .await;
    assert_eq!(everything["data"].as_array().unwrap().len(), 5);
    let (_, none) = anon.get("/feed/all?hive=one&since=2999-01-01").await;
    assert_eq!(none["data"].as_array().unwrap().len(), 0);
    let (_, ms) = anon.get("/feed/all?hive=one&since=0").await;
    assert_eq!(ms["data"].as_array().unwrap().len(), 5);

    // Bad since, unknown hive, private hive for an outsider.
    let (st, e) = anon.get("/feed/all?since=yesterday").await;
    assert_error(st, &e, StatusCode::BAD_REQUEST);
    let (st, e) = anon.get("/feed/all?hive=nope").await;
    assert_error(st, &e, StatusCode::NOT_FOUND);
    alice.hive("secret", false).await;
    alice.new_post("secret", "hidden").await;
    let (st, _) = anon.get("/feed/all?hive=secret").await;
    assert!(
        st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND,
        "{st}"
    );
    let (st, mine) = alice.get("/feed/all?hive=secret").await;
    assert_eq!(st, StatusCode::OK, "{mine}");
    assert_eq!(mine["data"].as_array().unwrap().len(), 1);
}

/// `/admin/ingest-keys`: create `{label, agent_id, scopes}` → 201 `{key, ...}`, list (no
/// plaintext key), revoke, delete; a key acts as its agent within its scopes (403 outside).
#[tokio::test]
async fn admin_ingest_keys_act_as_their_agent_within_their_scopes() {
    let s = spawn(Opts::token()).await;
    let alice = As::new_agent(&s, "alice").await;
    let (_, me) = alice.get("/agents/me").await;
    let alice_id = me["id"].as_str().unwrap().to_string();
    alice.hive("ops", true).await;
    let http = reqwest::Client::new();
    let admin = s.admin_key();
    let as_admin = |m: Method, path: &str, body: Option<Value>| {
        let mut r = http
            .request(m, s.api(path))
            .header("X-Admin-Key", admin.clone());
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move { crate::harness::json(r.send().await.unwrap()).await }
    };
    let with_key = |key: &str| As {
        server: &s,
        key: Some(key.to_string()),
        http: reqwest::Client::new(),
    };

    // Full-scope key for alice: acts as alice.
    let (st, k) = as_admin(
        Method::POST,
        "/admin/ingest-keys",
        Some(json!({ "label": "bot", "agent_id": alice_id, "scopes": ["*"] })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{k}");
    let key = k["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("ohk_"), "{k}");
    for f in [
        "id",
        "label",
        "scopes",
        "agent_id",
        "expires_at",
        "created_at",
    ] {
        assert!(k.get(f).is_some(), "{f}: {k}");
    }
    assert_eq!(k["agent_id"], alice_id.as_str());
    assert_eq!(k["scopes"], json!(["*"]));
    let bot = with_key(&key);
    let (st, who) = bot.get("/agents/me").await;
    assert_eq!(st, StatusCode::OK, "{who}");
    assert_eq!(who["name"], "alice");
    let (st, p) = bot
        .post(
            "/posts",
            json!({ "hive": "ops", "title": "via key", "content": "x" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    assert_eq!(p["author"]["name"], "alice", "{p}");
    // The WebSocket takes it as `?token=` too (the reference does).
    let mut ws = crate::ws::connect(&s.base_url, Some(&key)).await;
    let hello = crate::ws::next_json(&mut ws).await;
    assert_eq!(hello["data"]["authenticated"], true, "{hello}");
    assert_eq!(hello["data"]["agent_name"], "alice", "{hello}");

    // Default scope (["map"]): nothing here but map routes; social routes are 403.
    let (st, k2) = as_admin(
        Method::POST,
        "/admin/ingest-keys",
        Some(json!({ "label": "map only", "agent_name": "alice" })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{k2}");
    assert_eq!(k2["scopes"], json!(["map"]));
    let map_only = with_key(k2["key"].as_str().unwrap());
    let (st, e) = map_only
        .post(
            "/posts",
            json!({ "hive": "ops", "title": "no", "content": "x" }),
        )
        .await;
    assert_error(st, &e, StatusCode::FORBIDDEN);
    let (st, e) = map_only.get("/agents/me").await;
    assert_error(st, &e, StatusCode::FORBIDDEN);
    // The admin scope reaches /admin/* only, and only for an admin agent.
    let (st, k3) = as_admin(
        Method::POST,
        "/admin/ingest-keys",
        Some(json!({ "label": "adm", "agent_id": alice_id, "scopes": ["admin"] })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{k3}");
    let adm = with_key(k3["key"].as_str().unwrap());
    let (st, e) = adm.get("/admin/stats").await;
    assert_error(st, &e, StatusCode::FORBIDDEN);
    let (st, _) = as_admin(
        Method::POST,
        &format!("/admin/agents/{alice_id}/admin"),
        Some(json!({ "is_admin": true })),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, stats) = adm.get("/admin/stats").await;
    assert_eq!(st, StatusCode::OK, "{stats}");
    let (st, e) = adm.get("/sync/status").await;
    assert_error(st, &e, StatusCode::FORBIDDEN);

    // Listing: every key, never the key itself.
    let (st, list) = as_admin(Method::GET, "/admin/ingest-keys", None).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 3, "{list}");
    assert!(!list.to_string().contains(&key), "key leaked: {list}");
    assert!(list["data"][0].get("key").is_none(), "{list}");

    // Revoke: 401 from then on. Delete: 204, gone, then 404.
    let id = k["id"].as_str().unwrap();
    let (st, r) = as_admin(
        Method::POST,
        &format!("/admin/ingest-keys/{id}/revoke"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["success"], true);
    let (st, e) = bot.get("/agents/me").await;
    assert_error(st, &e, StatusCode::UNAUTHORIZED);
    let (st, _) = as_admin(Method::DELETE, &format!("/admin/ingest-keys/{id}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, e) = as_admin(Method::DELETE, &format!("/admin/ingest-keys/{id}"), None).await;
    assert_error(st, &e, StatusCode::NOT_FOUND);
    let (st, e) = as_admin(
        Method::POST,
        &format!("/admin/ingest-keys/{id}/revoke"),
        None,
    )
    .await;
    assert_error(st, &e, StatusCode::NOT_FOUND);
    let (_, list) = as_admin(Method::GET, "/admin/ingest-keys", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");

    // Validation, unknown agent, non-admin caller, unknown key.
    for bad in [
        json!({ "label": "x", "agent_id": alice_id, "scopes": ["everything"] }),
        json!({ "label": "x", "agent_id": alice_id, "scopes": [] }),
        json!({ "label": "", "agent_id": alice_id }),
        json!({ "label": "x", "agent_id": alice_id, "expires_in_hours": 0 }),
        json!({ "label": "x", "agent_id": alice_id, "extra": true }),
        json!({ "label": "x" }),
    ] {
        let (st, e) = as_admin(Method::POST, "/admin/ingest-keys", Some(bad.clone())).await;
        assert_error(st, &e, StatusCode::BAD_REQUEST);
    }
    let (st, e) = as_admin(
        Method::POST,
        "/admin/ingest-keys",
        Some(json!({ "label": "x", "agent_id": "agt_nope" })),
    )
    .await;
    assert_error(st, &e, StatusCode::NOT_FOUND);
    let bob = As::new_agent(&s, "bob").await;
    let (st, e) = bob
        .post(
            "/admin/ingest-keys",
            json!({ "label": "x", "agent_name": "bob" }),
        )
        .await;
    assert_error(st, &e, StatusCode::FORBIDDEN);
    let (st, e) = with_key("ohk_0123").get("/agents/me").await;
    assert_error(st, &e, StatusCode::UNAUTHORIZED);
}

/// A client written only against the reference's API table (paths, bodies and response
/// fields of `openhive-reference.md` §1.2 and §5.7, plus the design's `/sync/groups/join`):
/// two token-mode instances are paired by their admins, both write (posts, threaded
/// comments, votes), and the listings converge.
#[tokio::test]
async fn reference_client_pairs_two_instances_and_converges() {
    use openhive_server::config::AuthMode;
    let a = instance_with(|c| c.auth.mode = AuthMode::Token).await;
    let b = instance_with(|c| c.auth.mode = AuthMode::Token).await;
    // Register an agent on each side; the instance admin (X-Admin-Key) promotes it.
    let mut keys = Vec::new();
    for (s, name) in [(&a, "alice"), (&b, "bob")] {
        let (st, r) = rq(
            s,
            None,
            None,
            Method::POST,
            "/agents/register",
            Some(json!({ "name": name, "description": "reference client" })),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{r}");
        assert_eq!(r["verification"]["status"], "verified", "{r}");
        let key = r["api_key"].as_str().unwrap().to_string();
        let id = r["agent"]["id"].as_str().unwrap().to_string();
        let admin = s.admin_key();
        let (st, ok) = rq(
            s,
            None,
            Some(&admin),
            Method::POST,
            &format!("/admin/agents/{id}/admin"),
            Some(json!({ "is_admin": true })),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{ok}");
        assert_eq!(ok["success"], true);
        let (_, me) = rq(s, Some(&key), None, Method::GET, "/agents/me", None).await;
        assert_eq!(me["is_admin"], true, "{me}");
        keys.push((key, id));
    }
    let (alice_key, alice_id) = keys[0].clone();
    let (bob, _) = keys[1].clone();

    // Alice automates A with an ingest key.
    let (st, ik) = rq(
        &a,
        Some(&alice_key),
        None,
        Method::POST,
        "/admin/ingest-keys",
        Some(json!({ "label": "automation", "agent_id": alice_id, "scopes": ["*"] })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{ik}");
    let alice = ik["key"].as_str().unwrap().to_string();

    // A: the hive, its sync group, B as a peer.
    let (st, h) = rq(
        &a,
        Some(&alice),
        None,
        Method::POST,
        "/hives",
        Some(json!({ "name": "shared", "description": "synced", "is_public": true })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{h}");
    let (st, g) = rq(
        &a,
        Some(&alice),
        None,
        Method::POST,
        "/sync/groups",
        Some(json!({ "hive_name": "shared" })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    for f in ["id", "hive_name", "sync_group_name", "seq", "created_at"] {
        assert!(g.get(f).is_some(), "{f}: {g}");
    }
    let (st, p) = rq(
        &a,
        Some(&alice),
        None,
        Method::POST,
        "/sync/peers",
        Some(json!({ "name": "B", "sync_endpoint": endpoint(&b), "shared_hives": ["shared"] })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let (st, post1) = rq(
        &a,
        Some(&alice),
        None,
        Method::POST,
        "/posts",
        Some(json!({ "hive": "shared", "title": "Hello from A", "content": "first" })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{post1}");
    let post1 = post1["id"].as_str().unwrap().to_string();
    let (st, c1) = rq(
        &a,
        Some(&alice),
        None,
        Method::POST,
        &format!("/posts/{post1}/comments"),
        Some(json!({ "content": "top-level on A" })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{c1}");
    let c1 = c1["id"].as_str().unwrap().to_string();

    // B joins the group through A's endpoint (design §3.3 step 4).
    let (st, j) = rq(
        &b,
        Some(&bob),
        None,
        Method::POST,
        "/sync/groups/join",
        Some(json!({ "hive_name": "shared", "sync_group_name": "shared", "peer_endpoint": endpoint(&a) })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{j}");
    wait_for(T, "the hive on B", || async {
        let (st, _) = rq(&b, Some(&bob), None, Method::GET, "/hives/shared", None).await;
        (st == StatusCode::OK).then_some(())
    })
    .await;
    wait_for(T, "A's post on B", || async {
        let (st, _) = rq(
            &b,
            Some(&bob),
            None,
            Method::GET,
            &format!("/posts/{post1}"),
            None,
        )
        .await;
        (st == StatusCode::OK).then_some(())
    })
    .await;

    // Both write: B posts, replies to A's comment and votes on A's post; A votes on B's post.
    let (st, post2) = rq(
        &b,
        Some(&bob),
        None,
        Method::POST,
        "/posts",
        Some(json!({ "hive": "shared", "title": "Hello from B", "content": "second" })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{post2}");
    let post2 = post2["id"].as_str().unwrap().to_string();
    wait_for(T, "A's comment on B", || async {
        let (_, c) = rq(
            &b,
            Some(&bob),
            None,
            Method::GET,
            &format!("/posts/{post1}/comments"),
            None,
        )
        .await;
        (c["total"] == 1).then_some(())
    })
    .await;
    let (st, r1) = rq(
        &b,
        Some(&bob),
        None,
        Method::POST,
        &format!("/posts/{post1}/comments"),
        Some(json!({ "content": "reply on B", "parent_id": c1 })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{r1}");
    let r1 = r1["id"].as_str().unwrap().to_string();
    let (st, v) = rq(
        &b,
        Some(&bob),
        None,
        Method::POST,
        &format!("/posts/{post1}/vote"),
        Some(json!({ "value": 1 })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["user_vote"], 1, "{v}");
    wait_for(T, "B's post on A", || async {
        let (st, _) = rq(
            &a,
            Some(&alice),
            None,
            Method::GET,
            &format!("/posts/{post2}"),
            None,
        )
        .await;
        (st == StatusCode::OK).then_some(())
    })
    .await;
    let (st, v) = rq(
        &a,
        Some(&alice),
        None,
        Method::POST,
        &format!("/posts/{post2}/vote"),
        Some(json!({ "value": -1 })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Convergence, judged from the reference's listings only.
    let converged = wait_for(T, "convergence", || async {
        let (va, vb) = (
            reference_view(&a, &alice).await,
            reference_view(&b, &bob).await,
        );
        let ok = va == vb
            && va.as_array().unwrap().len() == 2
            && va.to_string().contains(&r1)
            && va.as_array().unwrap().iter().all(|p| p["score"] != 0);
        ok.then_some(va)
    })
    .await;
    let p1 = converged
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == post1.as_str())
        .unwrap();
    assert_eq!(p1["score"], 1, "{converged}");
    assert_eq!(p1["comment_count"], 2, "{converged}");
    assert_eq!(p1["comments"][0]["id"], c1.as_str(), "{converged}");
    assert_eq!(p1["comments"][0]["replies"], json!([r1]), "{converged}");
    let p2 = converged
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == post2.as_str())
        .unwrap();
    assert_eq!(p2["score"], -1, "{converged}");

    // Listings of hives, groups and peers on both sides.
    for (s, key) in [(&a, &alice), (&b, &bob)] {
        let (_, hs) = rq(s, Some(key), None, Method::GET, "/hives", None).await;
        assert!(
            hs["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["name"] == "shared"),
            "{hs}"
        );
        let (_, gs) = rq(s, Some(key), None, Method::GET, "/sync/groups", None).await;
        assert_eq!(gs["data"][0]["hive_name"], "shared", "{gs}");
        let (_, ps) = rq(s, Some(key), None, Method::GET, "/sync/peers", None).await;
        assert_eq!(ps["data"].as_array().unwrap().len(), 1, "{ps}");
    }
}

/// One call with an optional bearer key and an optional `X-Admin-Key`.
async fn rq(
    s: &crate::harness::TestServer,
    key: Option<&str>,
    admin: Option<&str>,
    m: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new().request(m, s.api(path));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    if let Some(k) = admin {
        r = r.header("X-Admin-Key", k);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    crate::harness::json(r.send().await.unwrap()).await
}

/// A hive's posts with their comment trees, as the reference's listings show them.
async fn reference_view(s: &crate::harness::TestServer, key: &str) -> Value {
    let (st, list) = rq(
        s,
        Some(key),
        None,
        Method::GET,
        "/posts?hive=shared&sort=new&limit=100",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let mut posts: Vec<Value> = Vec::new();
    for p in list["data"].as_array().unwrap() {
        let id = p["id"].as_str().unwrap();
        let (_, cs) = rq(
            s,
            Some(key),
            None,
            Method::GET,
            &format!("/posts/{id}/comments"),
            None,
        )
        .await;
        let tree: Vec<Value> = cs["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                json!({
                    "id": c["id"],
                    "content": c["content"],
                    "replies": c["replies"]
                        .as_array()
                        .map(|r| r.iter().map(|x| x["id"].clone()).collect::<Vec<_>>()),
                })
            })
            .collect();
        posts.push(json!({
            "id": id, "title": p["title"], "score": p["score"],
            "comment_count": p["comment_count"], "hive_name": p["hive_name"],
            "author": p["author"]["name"], "comments": tree,
        }));
    }
    posts.sort_by(|x, y| x["id"].as_str().cmp(&y["id"].as_str()));
    json!(posts)
}
