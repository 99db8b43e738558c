//! API benchmark (issue #3): signed-write throughput and feed/search latency.
//!
//! Run: `cargo bench -p openhive --bench api_bench`
//! (`OPENHIVE_BENCH_POSTS=100000` sets the size of the feed hive; default 100 000.)
//!
//! Everything runs on this machine: the server in-process on 127.0.0.1:0, the clients as
//! tokio tasks sharing the same cores, so the figures are lower bounds for a dedicated
//! server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openhive_server::config::{AuthMode, Config};
use openhive_server::service::{Actor, PostInput};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Bench {
    base: String,
    http: reqwest::Client,
    keys: Vec<String>,
}

impl Bench {
    async fn post(&self, key: &str, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/api/v1{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }
}

/// Runs `total` requests with `clients` concurrent clients; returns requests per second.
async fn throughput<F, Fut>(clients: usize, total: usize, f: F) -> f64
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (f, next) = (f.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                f(c, i).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn percentiles(mut d: Vec<Duration>) -> (f64, f64) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1000.0;
    (
        ms(d[d.len() / 2]),
        ms(d[(d.len() * 99 / 100).min(d.len() - 1)]),
    )
}

async fn latency(http: &reqwest::Client, url: &str, n: usize) -> (f64, f64) {
    let mut d = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = http.get(url).send().await.unwrap();
        assert!(r.status().is_success(), "{url}: {}", r.status());
        r.bytes().await.unwrap();
        d.push(t.elapsed());
    }
    percentiles(d)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    openhive_sync::client::install_crypto_provider();
    let big: usize = std::env::var("OPENHIVE_BENCH_POSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.server.data_dir = dir.path().to_path_buf();
    config.auth.mode = AuthMode::Token;
    let server = openhive::start(config).await.unwrap();
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();

    let mut keys = Vec::new();
    for i in 0..16 {
        let r: Value = http
            .post(format!("{base}/api/v1/agents/register"))
            .json(&json!({ "name": format!("bench{i}") }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        keys.push(r["api_key"].as_str().unwrap().to_string());
    }
    let b = Arc::new(Bench {
        base: base.clone(),
        http: http.clone(),
        keys,
    });
    b.post(&b.keys[0], "/hives", json!({ "name": "bench" }))
        .await;
    let seed = b
        .post(
            &b.keys[0],
            "/posts",
            json!({ "hive": "bench", "title": "seed", "content": "x" }),
        )
        .await;
    let seed_id = seed["id"].as_str().unwrap().to_string();

    println!("== API write throughput (signed events, one transaction each; HTTP on loopback) ==");
    for clients in [1usize, 16] {
        let n = if clients == 1 { 2_000 } else { 6_000 };
        let bb = b.clone();
        let posts = throughput(clients, n, move |c, i| {
            let bb = bb.clone();
            async move {
                bb.post(&bb.keys[c % 16], "/posts", json!({ "hive": "bench", "title": format!("t{i}"), "content": "benchmark body" })).await;
            }
        })
        .await;
        let (bb, sid) = (b.clone(), seed_id.clone());
        let comments = throughput(clients, n, move |c, i| {
            let (bb, sid) = (bb.clone(), sid.clone());
            async move {
                bb.post(
                    &bb.keys[c % 16],
                    &format!("/posts/{sid}/comments"),
                    json!({ "content": format!("c{i}") }),
                )
                .await;
            }
        })
        .await;
        let (bb, sid) = (b.clone(), seed_id.clone());
        let votes = throughput(clients, n, move |c, i| {
            let (bb, sid) = (bb.clone(), sid.clone());
            async move {
                let v = if i % 2 == 0 { 1 } else { -1 };
                bb.post(
                    &bb.keys[c % 16],
                    &format!("/posts/{sid}/vote"),
                    json!({ "value": v }),
                )
                .await;
            }
        })
        .await;
        println!(
            "clients={clients:>2}  posts {posts:>7.0}/s   comments {comments:>7.0}/s   votes {votes:>7.0}/s"
        );
    }

    println!("== feed and search latency on a hive with {big} posts ==");
    // Seed through the same local write path as the API (signed events), minus HTTP.
    let hives = server.state.hives.clone();
    let actor = {
        let store = server.state.store.clone();
        let key = openhive_core::ids::hash_secret(&b.keys[1]);
        let a = store
            .read(move |c| openhive_store::agents::get_by_api_key_hash(c, &key))
            .await
            .unwrap()
            .unwrap();
        Actor::new(&a)
    };
    b.post(&b.keys[1], "/hives", json!({ "name": "big" })).await;
    let t = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (hives, actor, next) = (hives.clone(), actor.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let words = [
                "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
            ];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= big {
                    break;
                }
                let rare = if i % 100 == 0 { " zanzibar" } else { "" };
                hives
                    .create_post(
                        &actor,
                        PostInput {
                            hive: "big".into(),
                            title: format!(
                                "{} {} post {i}{rare}",
                                words[i % 8],
                                words[(i / 8) % 8]
                            ),
                            content: Some(format!(
                                "content of post {i} about {}",
                                words[(i / 64) % 8]
                            )),
                            url: None,
                        },
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "seeded {big} posts through the write path in {:.1} s ({:.0} posts/s)",
        t.elapsed().as_secs_f64(),
        big as f64 / t.elapsed().as_secs_f64()
    );
    // Some votes so that top and hot differ from new.
    let page: Value = http
        .get(format!("{base}/api/v1/posts?hive=big&sort=new&limit=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (i, p) in page["data"].as_array().unwrap().iter().enumerate() {
        let id = p["id"].as_str().unwrap();
        for k in 0..(i % 5) {
            b.post(
                &b.keys[k],
                &format!("/posts/{id}/vote"),
                json!({ "value": 1 }),
            )
            .await;
        }
    }

    let n = 300;
    for (label, path) in [
        (
            "/posts?hive=big&sort=hot",
            "/api/v1/posts?hive=big&sort=hot&limit=25",
        ),
        (
            "/posts?hive=big&sort=new",
            "/api/v1/posts?hive=big&sort=new&limit=25",
        ),
        (
            "/posts?hive=big&sort=top",
            "/api/v1/posts?hive=big&sort=top&limit=25",
        ),
        ("/feed/all?sort=hot", "/api/v1/feed/all?sort=hot&limit=25"),
        (
            "/search?q=zanzibar (1% of posts)",
            "/api/v1/search?q=zanzibar&type=posts&limit=20",
        ),
        (
            "/search?q=alpha (12% of posts)",
            "/api/v1/search?q=alpha&type=posts&limit=20",
        ),
        (
            "/search?q=zanz (prefix, all types)",
            "/api/v1/search?q=zanz&limit=20",
        ),
    ] {
        let (p50, p99) = latency(&http, &format!("{base}{path}"), n).await;
        println!("{label:<40} p50 {p50:>7.2} ms   p99 {p99:>7.2} ms   ({n} sequential requests)");
    }
    // Deep keyset paging stays flat.
    let mut cursor = String::new();
    let mut d = Vec::new();
    for _ in 0..200 {
        let url = format!("{base}/api/v1/posts?hive=big&sort=hot&limit=25&cursor={cursor}");
        let t = Instant::now();
        let v: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        d.push(t.elapsed());
        cursor = v["cursor"].as_str().unwrap_or_default().to_string();
    }
    let (p50, p99) = percentiles(d);
    println!(
        "{:<40} p50 {p50:>7.2} ms   p99 {p99:>7.2} ms   (pages 1-200)",
        "/posts?sort=hot&cursor=… (deep paging)"
    );
    server.shutdown().await.unwrap();
}
