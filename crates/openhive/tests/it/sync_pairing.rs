//! Hive Sync pairing through the admin API only (the hubless walkthrough), the join of an
//! instance that does not have the hive, config-seeded peers, and what the admin API shows.

use crate::sync_util::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn sync_two_instances_pair_through_the_admin_api() {
    let a = instance().await;
    let b = instance().await;
    // Both have the hive "eng"? No: A creates it; B creates its own group only after
    // adding A (the hive arrives by backfill). Then both add each other (walkthrough).
    create_hive(&a, "eng").await;
    let p1 = new_post(&a, "eng", "from A before pairing").await;
    enable_group(&a, "eng").await;
    add_peer(&a, "B", &b, &["eng"]).await;
    add_peer(&b, "A", &a, &["eng"]).await;

    let snap = wait_converged(&[&a, &b], "eng", T, |s| post_count(s) == 1).await;
    assert_eq!(snap["posts"][0]["post"]["id"], p1.as_str());

    // Steady state in both directions, including a reply to the other side's post.
    let p2 = new_post(&b, "eng", "from B").await;
    wait_visible(&a, &format!("/posts/{p2}")).await;
    let c1 = new_comment(&a, &p2, "A replies to B", None).await;
    wait_for(T, "A's comment on B", || async {
        let c = get(&b, &format!("/posts/{p2}/comments")).await;
        (c["data"].as_array().map_or(0, Vec::len) == 1).then_some(())
    })
    .await;
    new_comment(&b, &p2, "B replies to A's reply", Some(&c1)).await;
    let snap = wait_converged(&[&a, &b], "eng", T, |s| {
        post_count(s) == 2
            && s["posts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["post"]["comment_count"] == 2)
    })
    .await;
    assert_eq!(post_count(&snap), 2);

    // Exactly one peer row per side, active, with no token in any admin view.
    for (s, other) in [(&a, &b), (&b, &a)] {
        let peers = get(s, "/sync/peers").await;
        let list = peers["data"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{peers}");
        let text = peers.to_string();
        assert!(!text.contains("ohs_"), "token leaked: {text}");
        assert_eq!(list[0]["sync_endpoint"], endpoint(other));
        let status = get(s, "/sync/status").await;
        assert!(!status.to_string().contains("ohs_"));
        let g = &status["groups"][0];
        assert_eq!(g["hive"], "eng");
        assert_eq!(g["peers"].as_array().unwrap().len(), 1);
    }
    wait_for(T, "both peers active with zero lag", || async {
        let sa = get(&a, "/sync/status").await;
        let sb = get(&b, "/sync/status").await;
        let ok = [sa, sb].iter().all(|s| {
            let p = &s["groups"][0]["peers"][0];
            p["status"] == "active" && p["state"] == "active" && p["lag"] == 0
        });
        ok.then_some(())
    })
    .await;

    // Federation status has the sync section.
    let fed = get(&a, "/federation/status").await;
    assert_eq!(fed["sync"]["groups"][0]["name"], "eng");
    assert_eq!(fed["sync"]["groups"][0]["peers"][0]["status"], "active");
    // Admin browse of the log, newest first.
    let ev = get(&a, "/sync/groups/eng/events?limit=2").await;
    assert_eq!(ev["data"].as_array().unwrap().len(), 2);
    assert!(ev["data"][0]["seq"].as_i64() > ev["data"][1]["seq"].as_i64());
    let detail = get(&b, "/sync/groups/eng").await;
    assert_eq!(detail["roster"].as_array().unwrap().len(), 2);

    // Peer test round trip.
    let pid = get(&a, "/sync/peers").await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, t) = post(&a, &format!("/sync/peers/{pid}/test"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["reachable"], true);
    assert_eq!(t["authenticated"], true);
}

#[tokio::test]
async fn sync_instance_without_the_hive_joins_with_a_handshake_secret() {
    let secret = "mesh-secret-0123456789";
    let b = instance_with(move |c| c.sync.handshake_secret = Some(secret.into())).await;
    let a = instance_with(move |c| c.sync.handshake_secret = Some(secret.into())).await;
    // Only B has the hive; B never configures A.
    create_hive(&b, "research").await;
    for i in 0..5 {
        new_post(&b, "research", &format!("B{i}")).await;
    }
    enable_group(&b, "research").await;
    // A does not have the hive: adding the peer creates the group and an empty log.
    let (st, v) = call(&a, Method::GET, "/hives/research", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    add_peer(&a, "B", &b, &["research"]).await;
    let snap = wait_converged(&[&a, &b], "research", T, |s| post_count(s) == 5).await;
    assert_eq!(snap["hive"]["name"], "research");
    // A's posts flow back to B through the link B learned from the handshake.
    new_post(&a, "research", "from A").await;
    wait_converged(&[&a, &b], "research", T, |s| post_count(s) == 6).await;
    let peers = get(&b, "/sync/peers").await;
    assert_eq!(peers["data"][0]["source"], "handshake");
}

#[tokio::test]
async fn sync_handshake_is_refused_without_secret_or_configuration() {
    let b = instance().await;
    let a = instance().await;
    create_hive(&b, "closed").await;
    enable_group(&b, "closed").await;
    // A adds B, but B neither configured A nor has a secret: B answers 403 and A keeps
    // retrying (peer shows the error), never syncing.
    add_peer(&a, "B", &b, &["closed"]).await;
    wait_for(T, "handshake failure recorded", || async {
        let p = get(&a, "/sync/peers").await;
        let e = p["data"][0]["last_error"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (e.contains("403")).then_some(())
    })
    .await;
    let (st, _) = call(&a, Method::GET, "/hives/closed", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Once B's admin adds A, the next retry succeeds without a restart.
    add_peer(&b, "A", &a, &["closed"]).await;
    new_post(&b, "closed", "now shared").await;
    wait_converged(&[&a, &b], "closed", T, |s| post_count(s) == 1).await;
}

#[tokio::test]
async fn sync_config_peers_are_seeded_and_handshake_on_start() {
    let b = instance().await;
    create_hive(&b, "cfg").await;
    new_post(&b, "cfg", "seeded").await;
    enable_group(&b, "cfg").await;
    let dir = tempfile::tempdir().unwrap();
    let b_ep = endpoint(&b);
    let a = instance_in(dir, move |c| {
        c.sync.peers.push(openhive_server::config::PeerConfig {
            name: "B".into(),
            sync_endpoint: b_ep,
            shared_hives: vec!["cfg".into()],
        })
    })
    .await;
    // B needs to accept A: add it through B's admin API.
    add_peer(&b, "A", &a, &["cfg"]).await;
    wait_converged(&[&a, &b], "cfg", T, |s| post_count(s) == 1).await;
    let peers = get(&a, "/sync/peers").await;
    assert_eq!(peers["data"][0]["source"], "config");

    // Leaving: B deletes the group; A's link is marked left and stops.
    let (st, _) = call(&b, Method::DELETE, "/sync/groups/cfg", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    wait_for(T, "A sees B left", || async {
        let p = get(&a, "/sync/peers").await;
        (p["data"][0]["groups"][0]["state"] == "left").then_some(())
    })
    .await;
}

#[tokio::test]
async fn sync_admin_routes_require_admin_and_validate() {
    use crate::harness::{Opts, assert_error, json as body_of, spawn};
    // Token mode: no implicit local admin.
    let s = spawn(Opts::token()).await;
    let http = reqwest::Client::new();
    for (m, path) in [
        (Method::GET, "/sync/status"),
        (Method::GET, "/sync/peers"),
        (Method::POST, "/sync/groups"),
        (Method::GET, "/federation/status"),
    ] {
        let (st, b) = body_of(
            http.request(m.clone(), s.api(path))
                .json(&json!({}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(
            st == StatusCode::UNAUTHORIZED || st == StatusCode::FORBIDDEN,
            "{m} {path}: {st} {b}"
        );
    }
    let admin = s.admin_key();
    let call_admin = |m: Method, path: &str, body: serde_json::Value| {
        http.request(m, s.api(path))
            .header("X-Admin-Key", admin.clone())
            .json(&body)
            .send()
    };
    let (st, b) = body_of(
        call_admin(Method::GET, "/sync/status", json!({}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["enabled"], true);
    // Validation and not-found answers (no hanging routes).
    let (st, b) = body_of(
        call_admin(
            Method::POST,
            "/sync/peers",
            json!({"name": "x", "sync_endpoint": "ftp://nope", "shared_hives": ["eng"]}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);
    let (st, b) = body_of(
        call_admin(
            Method::POST,
            "/sync/peers",
            json!({"name": "x", "sync_endpoint": "http://h:1/sync/v1", "shared_hives": ["Bad Name"]}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);
    let (st, b) = body_of(
        call_admin(
            Method::POST,
            "/sync/groups",
            json!({"hive_name": "Bad Name"}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);
    for path in ["/sync/groups/nohive", "/sync/peers/peer_nope"] {
        let (st, b) = body_of(call_admin(Method::GET, path, json!({})).await.unwrap()).await;
        assert_error(st, &b, StatusCode::NOT_FOUND);
    }
    // A peer can be added, renamed, tested (unreachable) and deleted.
    let (st, p) = body_of(
        call_admin(
            Method::POST,
            "/sync/peers",
            json!({"name": "ghost", "sync_endpoint": "http://127.0.0.1:9/sync/v1", "shared_hives": ["ghost-hive"]}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let id = p["id"].as_str().unwrap().to_string();
    assert_eq!(p["shared_hives"], json!(["ghost-hive"]));
    let (st, p) = body_of(
        call_admin(
            Method::PATCH,
            &format!("/sync/peers/{id}"),
            json!({"name": "renamed", "shared_hives": []}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["name"], "renamed");
    assert_eq!(p["shared_hives"], json!([]));
    let (st, t) = body_of(
        call_admin(Method::POST, &format!("/sync/peers/{id}/test"), json!({}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["reachable"], false);
    let (st, _) = body_of(
        call_admin(Method::DELETE, &format!("/sync/peers/{id}"), json!({}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);

    // allowed_cidrs: a loopback caller outside the allowed networks is refused.
    let fenced = instance_with(|c| c.sync.allowed_cidrs = vec!["10.0.0.0/8".into()]).await;
    let (st, b) = body_of(
        http.post(fenced.url("/sync/v1/heartbeat"))
            .json(&json!({"instance_id": "inst_x", "groups": {}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let open = instance_with(|c| c.sync.allowed_cidrs = vec!["127.0.0.0/8".into()]).await;
    let (st, b) = body_of(
        http.post(open.url("/sync/v1/heartbeat"))
            .json(&json!({"instance_id": "inst_x", "groups": {}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);

    // With sync disabled the peer protocol answers 404.
    let off = instance_with(|c| c.sync.enabled = false).await;
    let (st, b) = body_of(
        http.post(off.url("/sync/v1/heartbeat"))
            .json(&json!({"instance_id": "inst_x", "groups": {}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::NOT_FOUND);
}

/// Idle links cost no timer: with heartbeats an hour apart, a link idle for a while still
/// delivers a new event as soon as it is committed (the commit wakes it), both ways.
#[tokio::test]
async fn sync_a_long_idle_link_delivers_a_new_event_at_once() {
    let slow = |c: &mut openhive_server::config::Config| c.sync.heartbeat_interval_secs = 3600;
    let a = instance_with(slow).await;
    let b = instance_with(slow).await;
    create_hive(&a, "idle").await;
    enable_group(&a, "idle").await;
    add_peer(&a, "B", &b, &["idle"]).await;
    add_peer(&b, "A", &a, &["idle"]).await;
    let first = new_post(&a, "idle", "before the pause").await;
    wait_visible(&b, &format!("/posts/{first}")).await;
    // Every link idle, nothing queued or waiting.
    wait_for(T, "links idle", || async {
        let s = get(&a, "/sync/status").await;
        let l = &s["links"];
        (l["links"] == 1 && l["queued"] == 0 && l["running"] == 0 && l["waiting"] == 0)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // No heartbeat will come for an hour: only the commit can wake the links.
    let p = new_post(&a, "idle", "after the pause").await;
    wait_visible(&b, &format!("/posts/{p}")).await;
    let q = new_post(&b, "idle", "and back").await;
    wait_visible(&a, &format!("/posts/{q}")).await;
}

/// The admin listings page by a cursor and filter by hive, peer and state; a page holds
/// every row once, in order, whatever the page size.
#[tokio::test]
async fn sync_status_groups_and_peers_page_and_filter() {
    let a = instance().await;
    let b = instance().await;
    let names: Vec<String> = (0..23).map(|i| format!("team-{i:02}")).collect();
    for n in &names {
        create_hive(&a, n).await;
        enable_group(&a, n).await;
    }
    let shared: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    add_peer(&a, "B", &b, &shared).await;

    for path in ["/sync/status", "/sync/groups"] {
        let key = if path == "/sync/status" {
            "groups"
        } else {
            "data"
        };
        let field = if path == "/sync/status" {
            "hive"
        } else {
            "name"
        };
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("{path}?limit=10&cursor={c}"),
                None => format!("{path}?limit=10"),
            };
            let page = get(&a, &q).await;
            let rows = page[key].as_array().unwrap();
            assert!(rows.len() <= 10, "{page}");
            seen.extend(rows.iter().map(|g| g[field].as_str().unwrap().to_string()));
            match page["next_cursor"].as_str() {
                Some(c) => {
                    assert_eq!(page["has_more"], true);
                    cursor = Some(c.to_string());
                }
                None => {
                    assert_eq!(page["has_more"], false);
                    break;
                }
            }
        }
        assert_eq!(seen, names, "{path}");
    }
    // Filters: one hive; only the groups linked with B; nothing lagging in a fresh mesh
    // except what B has not acknowledged yet, which is only ever among B's hives.
    let one = get(&a, "/sync/status?hive=team-07").await;
    assert_eq!(one["groups"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["groups"][0]["hive"], "team-07");
    let with_b = get(&a, "/sync/status?peer=B&limit=100").await;
    let hives: Vec<&str> = with_b["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["hive"].as_str().unwrap())
        .collect();
    assert_eq!(hives, shared, "{with_b}");
    let groups_with_b = get(&a, "/sync/groups?peer=B&limit=100").await;
    assert_eq!(groups_with_b["data"].as_array().unwrap().len(), 5);
    let peers = get(&a, "/sync/peers?hive=team-03").await;
    assert_eq!(peers["data"].as_array().unwrap().len(), 1, "{peers}");
    assert_eq!(peers["data"][0]["group_count"], 5);
    let none = get(&a, "/sync/peers?hive=team-20").await;
    assert!(none["data"].as_array().unwrap().is_empty(), "{none}");
    // Bad queries are 400s in the error shape.
    for q in [
        "/sync/status?state=sleepy",
        "/sync/peers?limit=0",
        "/sync/groups?bogus=1",
    ] {
        let (st, body) = call(&a, Method::GET, q, None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert!(body["error"].is_string(), "{q}: {body}");
    }
}

/// Pushes (single or batched) `s` answered, from its `/metrics` request counters.
async fn pushes_answered(s: &crate::harness::TestServer) -> u64 {
    let text = reqwest::get(format!("{}/metrics", s.base_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("openhive_http_requests_total{"))
        .filter(|l| {
            l.contains("route=\"/sync/v1/batch/push\"")
                || (l.contains("route=\"/sync/v1/groups/{hive}/events\"")
                    && l.contains("method=\"POST\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Pairing sends each event once: the side that has the hive leaves delivery to the other
/// side's pull (which the handshake announces), and the pull's last, empty page acknowledges
/// what it fetched, so nothing is pushed again afterwards. Before, the responder pushed
/// every event the initiator was pulling at the same time.
#[tokio::test]
async fn sync_pairing_pulls_each_event_once_and_pushes_none_of_them() {
    let a = instance().await;
    let b = instance().await;
    create_hive(&a, "once").await;
    bulk_posts(&a, "once", 300).await;
    enable_group(&a, "once").await;
    add_peer(&a, "B", &b, &["once"]).await;
    add_peer(&b, "A", &a, &["once"]).await;
    wait_for(T, "B holds every post", || async {
        (post_total(&b, "once").await == 300).then_some(())
    })
    .await;
    // A's push cursor for B reaches its head: everything is acknowledged.
    wait_for(T, "A's outbox acknowledged", || async {
        let s = get(&a, "/sync/status").await;
        let p = &s["groups"][0]["peers"][0];
        (p["lag"] == 0 && p["state"] == "active").then_some(())
    })
    .await;
    // A moment for a late push to show if there were one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        pushes_answered(&b).await,
        0,
        "B received pushes of events it had pulled"
    );
    // Live writes still go by push.
    let p = new_post(&a, "once", "after pairing").await;
    wait_visible(&b, &format!("/posts/{p}")).await;
}
