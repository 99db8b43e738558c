//! Helpers of the multi-instance Hive Sync tests: instances with fast heartbeats and short
//! backoff caps, admin calls (local auth mode: no header = the local admin), and a
//! normalized snapshot of the API-visible state of a hive for convergence checks.

use crate::harness::{Opts, TestServer, json, spawn, spawn_with, test_config};
use openhive_server::config::{AuthMode, Config};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Something with an HTTP API: an in-process test server or a spawned binary.
pub trait Api: Sync {
    /// `http://127.0.0.1:<port>`
    fn base(&self) -> String;
    /// `base` + `/api/v1` + `path`.
    fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base())
    }
}

impl<T: Api + ?Sized> Api for &T {
    fn base(&self) -> String {
        (**self).base()
    }
}

impl Api for TestServer {
    fn base(&self) -> String {
        self.base_url.clone()
    }
}

impl Api for crate::harness::BinaryServer {
    fn base(&self) -> String {
        self.base.clone()
    }
}

/// Sync settings fast enough for tests.
pub fn fast_sync(c: &mut Config) {
    c.sync.heartbeat_interval_secs = 1;
    c.sync.peer_timeout_secs = 30;
    c.sync.backoff_initial_ms = 100;
    c.sync.backoff_max_secs = 1;
}

/// No peer gossip: for tests about a topology that gossip would fill in (relay through a
/// chain, an instance that meets one peer only).
pub fn without_gossip(c: &mut Config) {
    c.sync.gossip.enabled = false;
}

pub async fn instance() -> TestServer {
    instance_with(|_| {}).await
}

pub async fn instance_with(f: impl FnOnce(&mut Config) + Send + 'static) -> TestServer {
    spawn(Opts {
        auth_mode: AuthMode::Local,
        configure: Some(Box::new(move |c| {
            fast_sync(c);
            c.instance.name = "test".into();
            f(c);
        })),
    })
    .await
}

/// A fresh instance whose config is built by `f` from the temp dir (for config peers).
pub async fn instance_in(dir: tempfile::TempDir, f: impl FnOnce(&mut Config)) -> TestServer {
    let mut c = test_config(&dir, AuthMode::Local);
    fast_sync(&mut c);
    f(&mut c);
    spawn_with(dir, c).await
}

pub fn endpoint(s: &(impl Api + ?Sized)) -> String {
    format!("{}/sync/v1", s.base())
}

pub async fn call(
    s: &(impl Api + ?Sized),
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let http = reqwest::Client::new();
    let mut req = http.request(method, s.api(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    json(req.send().await.unwrap()).await
}

pub async fn get(s: &(impl Api + ?Sized), path: &str) -> Value {
    let (st, b) = call(s, Method::GET, path, None).await;
    assert_eq!(st, StatusCode::OK, "GET {path}: {b}");
    b
}

pub async fn post(s: &(impl Api + ?Sized), path: &str, body: Value) -> (StatusCode, Value) {
    call(s, Method::POST, path, Some(body)).await
}

pub async fn create_hive(s: &(impl Api + ?Sized), name: &str) {
    let (st, b) = post(s, "/hives", json!({ "name": name, "description": "d" })).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
}

pub async fn enable_group(s: &(impl Api + ?Sized), hive: &str) {
    let (st, b) = post(s, "/sync/groups", json!({ "hive_name": hive })).await;
    assert!(
        st == StatusCode::CREATED || st == StatusCode::OK,
        "{st} {b}"
    );
}

pub async fn add_peer(
    s: &(impl Api + ?Sized),
    name: &str,
    other: &(impl Api + ?Sized),
    hives: &[&str],
) -> Value {
    let (st, b) = post(
        s,
        "/sync/peers",
        json!({ "name": name, "sync_endpoint": endpoint(other), "shared_hives": hives }),
    )
    .await;
    assert!(
        st == StatusCode::CREATED || st == StatusCode::OK,
        "{st} {b}"
    );
    b
}

pub async fn new_post(s: &(impl Api + ?Sized), hive: &str, title: &str) -> String {
    let (st, b) = post(
        s,
        "/posts",
        json!({ "hive": hive, "title": title, "content": format!("body of {title}") }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    b["id"].as_str().unwrap().to_string()
}

pub async fn new_comment(
    s: &TestServer,
    post_id: &str,
    content: &str,
    parent: Option<&str>,
) -> String {
    let (st, b) = post(
        s,
        &format!("/posts/{post_id}/comments"),
        json!({ "content": content, "parent_id": parent }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    b["id"].as_str().unwrap().to_string()
}

/// Removes fields that legitimately differ between instances (local ids, viewer state).
fn scrub(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in [
                "user_vote",
                "hive_id",
                "is_remote",
                "your_role",
                "role",
                "is_member",
                "karma",
                "last_seen_at",
                "user_membership",
                // Remote agent snapshots carry no profile (created_at, description...).
                "author_created_at",
                "author_description",
                "author_account_type",
                "author_avatar_url",
                "author_is_verified",
                "author_karma",
            ] {
                m.remove(k);
            }
            // Embedded agent snapshots: remote instances only know id, name and instance.
            for k in ["owner", "author"] {
                if let Some(Value::Object(a)) = m.get_mut(k) {
                    a.retain(|f, _| f == "id" || f == "name" || f == "instance_id");
                }
            }
            for (_, x) in m.iter_mut() {
                scrub(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(scrub),
        _ => {}
    }
}

/// The API-visible state of a hive: its settings, all posts (newest first) with their
/// comments. Panics on unexpected statuses.
pub async fn snapshot(s: &(impl Api + ?Sized), hive: &str) -> Value {
    let (st, mut h) = call(s, Method::GET, &format!("/hives/{hive}"), None).await;
    if st != StatusCode::OK {
        return json!({ "missing": st.as_u16() });
    }
    if let Some(m) = h.as_object_mut() {
        m.remove("id");
    }
    let mut posts = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/posts?hive={hive}&sort=new&limit=100");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = get(s, &path).await;
        for p in page["data"].as_array().cloned().unwrap_or_default() {
            let id = p["id"].as_str().unwrap().to_string();
            let path = format!("/posts/{id}/comments?sort=old");
            let (st, comments) = call(s, Method::GET, &path, None).await;
            if st == StatusCode::NOT_FOUND {
                // Deleted (by a concurrent or synced event) between the listing and now: this
                // snapshot is torn; callers poll again.
                return json!({ "torn": id });
            }
            assert_eq!(st, StatusCode::OK, "GET {path}: {comments}");
            posts.push(json!({ "post": p, "comments": comments["data"] }));
        }
        match page["cursor"].as_str() {
            Some(c) if page["has_more"] == true => cursor = Some(c.to_string()),
            _ => break,
        }
    }
    posts.sort_by(|a, b| a["post"]["id"].as_str().cmp(&b["post"]["id"].as_str()));
    let mut out = json!({ "hive": h, "posts": posts });
    scrub(&mut out);
    out
}

/// Polls until every server shows the same snapshot of `hive` (and `check` accepts it).
pub async fn wait_converged(
    servers: &[&dyn Api],
    hive: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let mut snaps = Vec::new();
        for s in servers {
            snaps.push(snapshot(s, hive).await);
        }
        let same = snaps.windows(2).all(|w| w[0] == w[1]);
        if same && check(&snaps[0]) {
            return snaps.swap_remove(0);
        }
        if Instant::now() > deadline {
            for (i, s) in servers.iter().enumerate() {
                let st = get(s, "/sync/status").await;
                eprintln!("--- instance {i} sync status: {st:#}");
            }
            for (i, w) in snaps.iter().enumerate() {
                eprintln!(
                    "--- instance {i}: {} posts, hive {}",
                    w["posts"].as_array().map_or(0, Vec::len),
                    w["hive"]
                );
            }
            if snaps.len() > 1 {
                diff_hint(&snaps[0], &snaps[1]);
            }
            panic!("instances did not converge on {hive} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn diff_hint(a: &Value, b: &Value) {
    let (pa, pb) = (
        a["posts"].as_array().cloned().unwrap_or_default(),
        b["posts"].as_array().cloned().unwrap_or_default(),
    );
    for x in &pa {
        match pb.iter().find(|y| y["post"]["id"] == x["post"]["id"]) {
            None => eprintln!("only on 0: {}", x["post"]["id"]),
            Some(y) if y != x => eprintln!("differs:\n  0: {x}\n  1: {y}"),
            _ => {}
        }
    }
    for y in &pb {
        if !pa.iter().any(|x| x["post"]["id"] == y["post"]["id"]) {
            eprintln!("only on 1: {}", y["post"]["id"]);
        }
    }
}

/// Number of posts in a snapshot.
pub fn post_count(v: &Value) -> usize {
    v["posts"].as_array().map_or(0, Vec::len)
}

/// Polls `f` until it returns Some, or panics after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `path` answers 200 on `s` (an entity arrived by sync).
pub async fn wait_visible(s: &(impl Api + ?Sized), path: &str) {
    wait_for(Duration::from_secs(30), path, || async {
        let (st, _) = call(s, Method::GET, path, None).await;
        (st == StatusCode::OK).then_some(())
    })
    .await
}

/// Appends `n` `post_created` events to `hive` on `s` directly through the store, signed by
/// the instance exactly as its write path would (fast way to build a long log).
pub async fn bulk_posts(s: &TestServer, hive: &str, n: usize) {
    use openhive_core::ids::{self, Kind};
    use openhive_core::payload::{AgentRef, Payload, PostCreated};
    use openhive_core::time;
    let state = s.running.state.clone();
    let hive = hive.to_string();
    let hive_id = tokio::task::spawn_blocking(move || {
        let inst = state.identity.instance_id.clone();
        let author = AgentRef {
            instance_id: inst.clone(),
            agent_id: state.identity.local_agent_id.clone(),
            name: "local".into(),
            avatar_url: None,
        };
        let hive_id = state
            .store
            .read_blocking(|c| openhive_store::hives::id_by_name(c, &hive))
            .unwrap()
            .unwrap();
        // Dated one per millisecond up to now, never ahead of the clock: a post dated in
        // the future sorts above every post written after it, and a feed reader that pages
        // by date (a subscription) stops on the page that reaches its watermark. With the
        // dates running ahead, the subscription test missed the post it wrote next whenever
        // it got there in under n ms.
        let t0 = time::now_ms() - n as i64;
        for chunk in 0..n.div_ceil(1000) {
            let start = chunk * 1000;
            let end = (start + 1000).min(n);
            let events: Vec<openhive_store::ingest::Verified> = (start..end)
                .map(|i| {
                    let p = Payload::PostCreated(PostCreated {
                        post_id: ids::new_id(Kind::Post, &inst),
                        title: format!("bulk {i}"),
                        content: Some(format!("bulk body {i} {}", "x".repeat(200))),
                        url: None,
                        author: author.clone(),
                    });
                    openhive_store::ingest::Verified::sign(
                        &state.identity.key.get(),
                        &inst,
                        &hive,
                        &p,
                        t0 + i as i64,
                    )
                    .unwrap()
                })
                .collect();
            let hid = hive_id.clone();
            state
                .store
                .write_blocking(move |tx| -> Result<(), openhive_store::StoreError> {
                    for v in &events {
                        openhive_store::ingest::ingest(tx, &hid, v, None, time::now_ms())?;
                    }
                    Ok(())
                })
                .unwrap();
        }
        hive_id
    })
    .await
    .unwrap();
    s.running.state.sync.notify(&hive_id);
}

/// `total` of the post listing of `hive` (0 if the hive is not visible).
pub async fn post_total(s: &(impl Api + ?Sized), hive: &str) -> i64 {
    let (st, b) = call(s, Method::GET, &format!("/posts?hive={hive}&limit=1"), None).await;
    if st != StatusCode::OK {
        return 0;
    }
    b["total"].as_i64().unwrap_or(0)
}

/// The local seq of `hive` as the sync status reports it.
pub async fn local_seq(s: &(impl Api + ?Sized), hive: &str) -> i64 {
    let st = get(s, "/sync/status").await;
    st["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["hive"] == hive)
        .and_then(|g| g["local_seq"].as_i64())
        .unwrap_or(0)
}

/// Restarts `s` on its data directory and the same port (so peers keep its endpoint).
pub async fn restart_same_port(s: TestServer) -> TestServer {
    let TestServer {
        data_dir,
        running,
        mut config,
        ..
    } = s;
    let addr = running.addr;
    running.shutdown().await.unwrap();
    config.server.listen = addr.to_string();
    let mut tries = 0;
    loop {
        match openhive::start(config.clone()).await {
            Ok(running) => {
                return TestServer {
                    base_url: format!("http://{}", running.addr),
                    data_dir,
                    running,
                    config,
                };
            }
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("restart on {addr} failed ({e:#}); retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("restart failed: {e:#}"),
        }
    }
}

/// Pairs every two of `servers` for `hive` through the admin API (full mesh).
pub async fn mesh(servers: &[&TestServer], hive: &str) {
    for (i, s) in servers.iter().enumerate() {
        for (j, o) in servers.iter().enumerate() {
            if i != j {
                add_peer(s, &format!("peer{j}"), o, &[hive]).await;
            }
        }
    }
}
