//! Pattern 1 pull subscriptions: an instance A mirrors a remote hive of B (or of a fake
//! server answering the reference's feed shape) into a read-only local hive, through
//! `/api/v1/sync/subscriptions`.

use crate::harness::{Opts, TestServer, assert_error, spawn};
use crate::sync_util::*;
use axum::extract::{Query, State};
use axum::routing;
use axum::{Json, Router};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// An instance whose subscription worker retries fast.
async fn subscriber() -> TestServer {
    instance_with(|c| {
        c.subscriptions.backoff_initial_ms = 200;
        c.subscriptions.backoff_max_secs = 1;
    })
    .await
}

async fn subscribe(a: &TestServer, remote: &str, hive: &str, interval_ms: i64) -> Value {
    let (st, b) = post(
        a,
        "/sync/subscriptions",
        json!({ "remote_url": remote, "remote_hive_name": hive, "sync_interval_ms": interval_ms }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    b
}

async fn sub(a: &TestServer, id: &str) -> Value {
    get(a, &format!("/sync/subscriptions/{id}")).await
}

async fn patch(a: &TestServer, id: &str, body: Value) -> (StatusCode, Value) {
    call(
        a,
        Method::PATCH,
        &format!("/sync/subscriptions/{id}"),
        Some(body),
    )
    .await
}

/// Every live post id of `hive` on `s` (paging with the keyset cursor).
async fn post_ids(s: &TestServer, hive: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let b = get(
            s,
            &format!("/posts?hive={hive}&sort=new&limit=100&cursor={cursor}"),
        )
        .await;
        for p in b["data"].as_array().unwrap() {
            out.push(p["id"].as_str().unwrap().to_string());
        }
        if b["has_more"] != true {
            return out;
        }
        cursor = b["cursor"].as_str().unwrap().to_string();
    }
}

async fn wait_total(s: &TestServer, hive: &str, n: i64, timeout: Duration) {
    wait_for(timeout, &format!("{n} posts in {hive}"), || async {
        (post_total(s, hive).await == n).then_some(())
    })
    .await;
}

fn ms(v: &Value) -> i64 {
    openhive_core::time::parse_iso8601(v.as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn subscriptions_crud_and_validation() {
    let a = subscriber().await;
    let b = instance().await;
    create_hive(&b, "news").await;

    // Refused input: unknown fields, bad URL, bad hive name, bad interval.
    for body in [
        json!({ "remote_url": b.base_url, "remote_hive_name": "news", "colour": "red" }),
        json!({ "remote_url": "ftp://example.org", "remote_hive_name": "news" }),
        json!({ "remote_url": "not a url", "remote_hive_name": "news" }),
        json!({ "remote_url": "http://user:secret@example.org", "remote_hive_name": "news" }),
        json!({ "remote_url": b.base_url, "remote_hive_name": "Not A Hive!" }),
        json!({ "remote_url": b.base_url, "remote_hive_name": "news", "sync_interval_ms": 5 }),
        json!({ "remote_hive_name": "news" }),
    ] {
        let (st, e) = post(&a, "/sync/subscriptions", body.clone()).await;
        assert_error(st, &e, StatusCode::BAD_REQUEST);
        assert!(!e.to_string().contains("panic"), "{body}: {e}");
    }
    // Nothing was created by the refused calls.
    let list = get(&a, "/sync/subscriptions").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "{list}");

    // Unknown ids: 404 on every route.
    for (m, path) in [
        (Method::GET, "/sync/subscriptions/sub_nope"),
        (Method::PATCH, "/sync/subscriptions/sub_nope"),
        (Method::DELETE, "/sync/subscriptions/sub_nope"),
        (Method::POST, "/sync/subscriptions/sub_nope/sync"),
    ] {
        let body = (m == Method::PATCH).then(|| json!({ "enabled": false }));
        let (st, e) = call(&a, m.clone(), path, body).await;
        assert_error(st, &e, StatusCode::NOT_FOUND);
    }

    // Create (a trailing /api/v1 is dropped), list, get.
    let (st, s) = post(
        &a,
        "/sync/subscriptions",
        json!({ "remote_url": format!("{}/api/v1/", b.base_url), "remote_hive_name": "news",
                "local_hive_name": "news-mirror", "sync_interval_ms": 60000 }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{s}");
    let id = s["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sub_"), "{s}");
    assert_eq!(s["remote_url"], b.base_url);
    assert_eq!(s["remote_hive_name"], "news");
    assert_eq!(s["local_hive_name"], "news-mirror");
    assert_eq!(s["sync_interval_ms"], 60000);
    assert_eq!(s["enabled"], true);
    assert!(s["status"] == "active" || s["status"] == "error", "{s}");
    let list = get(&a, "/sync/subscriptions").await;
    assert_eq!(list["data"][0]["id"], id.as_str(), "{list}");
    assert_eq!(sub(&a, &id).await["local_hive_name"], "news-mirror");
    // The mirror hive exists and says what it mirrors.
    let hive = get(&a, "/hives/news-mirror").await;
    assert!(hive.to_string().contains("Read-only mirror"), "{hive}");

    // The same remote hive twice: 409; a local hive name already used: 409.
    let (st, e) = post(
        &a,
        "/sync/subscriptions",
        json!({ "remote_url": b.base_url, "remote_hive_name": "news", "local_hive_name": "other" }),
    )
    .await;
    assert_error(st, &e, StatusCode::CONFLICT);
    create_hive(&a, "taken").await;
    let (st, e) = post(
        &a,
        "/sync/subscriptions",
        json!({ "remote_url": b.base_url, "remote_hive_name": "taken" }),
    )
    .await;
    assert_error(st, &e, StatusCode::CONFLICT);

    // PATCH: unknown fields and bad intervals refused; pause; poll-now refused while paused.
    let (st, e) = patch(&a, &id, json!({ "status": "paused", "x": 1 })).await;
    assert_error(st, &e, StatusCode::BAD_REQUEST);
    let (st, e) = patch(&a, &id, json!({ "sync_interval_ms": 0 })).await;
    assert_error(st, &e, StatusCode::BAD_REQUEST);
    let (st, p) = patch(
        &a,
        &id,
        json!({ "enabled": false, "sync_interval_ms": 5000 }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["status"], "paused");
    assert_eq!(p["sync_interval_ms"], 5000);
    let (st, e) = post(&a, &format!("/sync/subscriptions/{id}/sync"), json!({})).await;
    assert_error(st, &e, StatusCode::CONFLICT);
    let (st, p) = patch(&a, &id, json!({ "enabled": true })).await;
    assert_eq!(st, StatusCode::OK, "{p}");
    let (st, p) = post(&a, &format!("/sync/subscriptions/{id}/sync"), json!({})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{p}");

    // Delete: gone, but the mirror hive stays (read-only).
    let (st, _) = call(
        &a,
        Method::DELETE,
        &format!("/sync/subscriptions/{id}"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, e) = call(&a, Method::GET, &format!("/sync/subscriptions/{id}"), None).await;
    assert_error(st, &e, StatusCode::NOT_FOUND);
    get(&a, "/hives/news-mirror").await;
    let (st, e) = post(
        &a,
        "/posts",
        json!({ "hive": "news-mirror", "title": "t", "content": "c" }),
    )
    .await;
    assert_error(st, &e, StatusCode::FORBIDDEN);
    // Subscribing again to the same remote hive may reuse its mirror.
    let (st, s2) = post(
        &a,
        "/sync/subscriptions",
        json!({ "remote_url": b.base_url, "remote_hive_name": "news", "local_hive_name": "news-mirror" }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{s2}");

    // Admin only: a token-mode server refuses anonymous callers.
    let t = spawn(Opts::token()).await;
    let (st, e) = post(
        &t,
        "/sync/subscriptions",
        json!({ "remote_url": b.base_url, "remote_hive_name": "news" }),
    )
    .await;
    assert_error(st, &e, StatusCode::UNAUTHORIZED);
    let (st, e) = call(&t, Method::GET, "/sync/subscriptions", None).await;
    assert_error(st, &e, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn subscription_mirrors_ten_thousand_posts_across_restarts_without_duplicates() {
    let b = instance().await;
    create_hive(&b, "big").await;
    bulk_posts(&b, "big", 10_000).await;
    let b_inst = b.running.state.identity.instance_id.clone();

    let a = subscriber().await;
    let s = subscribe(&a, &b.base_url, "big", 1000).await;
    let id = s["id"].as_str().unwrap().to_string();

    // Restart the subscriber as soon as the backfill has begun (the pass in progress is
    // durable: it resumes where the last committed page left off).
    wait_for(T, "backfill started", || async {
        (post_total(&a, "big").await > 0).then_some(())
    })
    .await;
    let a = a.restart().await;
    wait_total(&a, "big", 10_000, Duration::from_secs(600)).await;

    // Restart the remote (same port: the subscription's URL stays valid), then write there.
    let b = restart_same_port(b).await;
    let last = new_post(&b, "big", "after the restarts").await;
    wait_total(&a, "big", 10_001, T).await;

    // One id everywhere, no duplicates.
    let a_ids = post_ids(&a, "big").await;
    let b_ids = post_ids(&b, "big").await;
    assert_eq!(a_ids.len(), 10_001);
    let a_set: HashSet<_> = a_ids.iter().collect();
    assert_eq!(a_set.len(), 10_001, "duplicate ids on the subscriber");
    assert_eq!(a_set, b_ids.iter().collect::<HashSet<_>>());
    let s = wait_for(T, "subscription settled", || async {
        let s = sub(&a, &id).await;
        (s["post_count"] == 10_001 && s["backfill_in_progress"] == false).then_some(s)
    })
    .await;
    assert_eq!(s["status"], "active", "{s}");
    assert!(s["sync_cursor"].is_string(), "{s}");
    assert!(s["last_error"].is_null(), "{s}");

    // The remote author is shown as a remote agent of B, and the post keeps B's id.
    let p = get(&a, &format!("/posts/{last}")).await;
    assert_eq!(p["title"], "after the restarts");
    assert_eq!(p["hive_name"], "big");
    assert_eq!(p["author"]["name"], "local");
    assert_eq!(p["author"]["is_remote"], true);
    assert_eq!(p["author"]["instance_id"], b_inst.as_str(), "{p}");

    // Polling again changes nothing.
    let (st, _) = post(&a, &format!("/sync/subscriptions/{id}/sync"), json!({})).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let before = ms(&sub(&a, &id).await["last_attempt_at"]);
    wait_for(T, "another poll", || async {
        (ms(&sub(&a, &id).await["last_attempt_at"]) > before).then_some(())
    })
    .await;
    assert_eq!(post_total(&a, "big").await, 10_001);
    assert_eq!(sub(&a, &id).await["post_count"], 10_001);
}

#[tokio::test]
async fn subscription_picks_up_new_posts_pauses_resumes_and_stays_read_only() {
    let b = instance().await;
    create_hive(&b, "news").await;
    for i in 0..3 {
        new_post(&b, "news", &format!("first {i}")).await;
    }
    let a = subscriber().await;
    let s = subscribe(&a, &b.base_url, "news", 1000).await;
    let id = s["id"].as_str().unwrap().to_string();
    wait_total(&a, "news", 3, T).await;

    // New posts on the remote arrive within the interval (waited for, not timed).
    let p4 = new_post(&b, "news", "fourth").await;
    wait_total(&a, "news", 4, T).await;
    get(&a, &format!("/posts/{p4}")).await;

    // Local writes to the mirror are refused, with the one error shape.
    let (st, e) = post(
        &a,
        "/posts",
        json!({ "hive": "news", "title": "t", "content": "c" }),
    )
    .await;
    assert_error(st, &e, StatusCode::FORBIDDEN);
    assert!(e["message"].as_str().unwrap().contains("mirror"), "{e}");
    let (st, e) = post(&a, &format!("/posts/{p4}/vote"), json!({ "value": 1 })).await;
    assert_error(st, &e, StatusCode::FORBIDDEN);
    let (st, e) = post(
        &a,
        &format!("/posts/{p4}/comments"),
        json!({ "content": "hello" }),
    )
    .await;
    assert_error(st, &e, StatusCode::FORBIDDEN);
    let (st, e) = call(&a, Method::DELETE, &format!("/posts/{p4}"), None).await;
    assert_error(st, &e, StatusCode::FORBIDDEN);
    // A mirror is never shared in a sync group.
    let (st, e) = post(&a, "/sync/groups", json!({ "hive_name": "news" })).await;
    assert_error(st, &e, StatusCode::CONFLICT);
    assert_eq!(post_total(&a, "news").await, 4);

    // Pause: no more polls, new remote posts stay there.
    let (st, p) = patch(&a, &id, json!({ "enabled": false })).await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["status"], "paused");
    // A round that was under way when the pause landed may still finish: let it settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempted = sub(&a, &id).await["last_attempt_at"].clone();
    new_post(&b, "news", "while paused").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        post_total(&a, "news").await,
        4,
        "a paused subscription polled"
    );
    let s = sub(&a, &id).await;
    assert_eq!(s["last_attempt_at"], attempted, "{s}");
    assert!(s["next_poll_at"].is_null(), "{s}");

    // Resume: it carries on from its cursor.
    let (st, p) = patch(&a, &id, json!({ "enabled": true })).await;
    assert_eq!(st, StatusCode::OK, "{p}");
    wait_total(&a, "news", 5, T).await;
    let s = sub(&a, &id).await;
    assert_eq!(s["post_count"], 5, "{s}");
}

#[tokio::test]
async fn a_failing_remote_sets_last_error_and_backs_off() {
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let a = subscriber().await;
    let s = subscribe(&a, &dead, "news", 1000).await;
    let id = s["id"].as_str().unwrap().to_string();
    let s = wait_for(T, "three failures", || async {
        let s = sub(&a, &id).await;
        (s["failure_count"].as_i64().unwrap() >= 3).then_some(s)
    })
    .await;
    assert_eq!(s["status"], "error", "{s}");
    assert!(s["last_error"].as_str().unwrap().contains("connect"), "{s}");
    assert!(s["last_sync_at"].is_null(), "{s}");
    // The retry is scheduled by the backoff rule: 200 ms doubling per consecutive failure,
    // capped at 1 s (a computed schedule, not a measured time).
    let n = s["failure_count"].as_i64().unwrap();
    let expected = (200i64 << (n - 1).min(20)).min(1000);
    assert_eq!(
        ms(&s["next_poll_at"]) - ms(&s["last_attempt_at"]),
        expected,
        "{s}"
    );
    // Nothing was mirrored, and the mirror hive is there, empty.
    assert_eq!(post_total(&a, "news").await, 0);
    get(&a, "/hives/news").await;
}

/// A fake remote answering `/api/v1/feed/all` in the reference's shape: `{data, limit,
/// offset}`, newest first, offset paging, no `since`, `cursor` or `has_more`.
#[derive(Clone, Default)]
struct RefFeed(Arc<Mutex<Vec<Value>>>);

impl RefFeed {
    fn add(&self, n: usize) {
        let mut posts = self.0.lock().unwrap();
        for _ in 0..n {
            let i = posts.len();
            posts.push(json!({
                "id": format!("9f{i:06}-ref"),
                "hive_id": "h1",
                "author_id": "u1",
                "title": format!("reference post {i}"),
                "content": format!("body {i}"),
                "url": null,
                "score": 0,
                "created_at": openhive_core::time::rfc3339(1_700_000_000_000 + i as i64 * 1000),
                "author_name": "refbot",
                "author": { "id": "u1", "name": "refbot", "is_verified": true },
                "hive_name": "general",
            }));
        }
    }
}

async fn ref_feed(
    State(f): State<RefFeed>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let limit: usize = q
        .get("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
        .min(100);
    let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let posts = f.0.lock().unwrap();
    let page: Vec<Value> = posts
        .iter()
        .rev()
        .skip(offset)
        .take(limit)
        .cloned()
        .collect();
    Json(json!({ "data": page, "limit": limit, "offset": offset }))
}

#[tokio::test]
async fn subscription_reads_the_reference_feed_shape() {
    let feed = RefFeed::default();
    feed.add(250);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/api/v1/feed/all", routing::get(ref_feed))
        .with_state(feed.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let a = subscriber().await;
    let s = subscribe(&a, &base, "general", 1000).await;
    let id = s["id"].as_str().unwrap().to_string();
    wait_total(&a, "general", 250, T).await;
    feed.add(5);
    wait_total(&a, "general", 255, T).await;
    let s = wait_for(T, "pass complete", || async {
        let s = sub(&a, &id).await;
        (s["backfill_in_progress"] == false && s["post_count"] == 255).then_some(s)
    })
    .await;
    assert_eq!(s["status"], "active", "{s}");
    let ids: HashSet<String> = post_ids(&a, "general").await.into_iter().collect();
    assert_eq!(ids.len(), 255);
    assert!(ids.contains("9f000254-ref") && ids.contains("9f000000-ref"));
    let p = get(&a, "/posts/9f000254-ref").await;
    assert_eq!(p["author"]["name"], "refbot");
    assert_eq!(p["author"]["is_remote"], true);
    assert_eq!(p["author"]["instance_id"], base.as_str());
    assert_eq!(
        p["created_at"],
        openhive_core::time::rfc3339(1_700_000_000_000 + 254_000)
    );
}
