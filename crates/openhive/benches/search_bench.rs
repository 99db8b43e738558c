//! Post search on a large hive, on both storage engines: p50/p99 of a common term (in 12% of
//! the posts) and of a rare one (1%), through the HTTP API, and at the store for the page
//! query alone, next to the engine's full ranking (`search::posts_full_rank`: `ORDER BY rank`
//! over every match on SQLite, which is what `/search` ran before `search::bm25`).
//!
//! Run: `cargo bench -p openhive --bench search_bench`
//!
//! Environment: `OPENHIVE_BENCH_POSTS` (100000) posts, `OPENHIVE_BENCH_SAMPLES` (300)
//! sequential requests per figure, `OPENHIVE_BENCH_ENGINES` (`sqlite,postgres`);
//! PostgreSQL: `OPENHIVE_BENCH_PG_URL`, or a throwaway cluster (`scripts/pg-cluster.sh`).
//!
//! The corpus: post `i` has a title of 3 to 8 words and a body of 5 to 60 words drawn from a
//! 20-word vocabulary; "hive" is added 1 to 3 times to 12% of the posts, "zanzibar" once to
//! 1%. Scores therefore differ by term frequency and length, and many tie.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Engine, Inst, PgCluster, env_or};
use openhive_core::ids::{self, Kind};
use openhive_core::payload::{AgentRef, Payload, PostCreated};
use openhive_core::time;
use std::time::{Duration, Instant};

const WORDS: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "eiusmod",
    "tempor",
    "incididunt",
    "labore",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "minim",
    "veniam",
    "nostrud",
];

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
    fn words(&mut self, min: u64, max: u64) -> Vec<&'static str> {
        let n = min + self.next(max - min + 1);
        (0..n)
            .map(|_| WORDS[self.next(WORDS.len() as u64) as usize])
            .collect()
    }
}

/// Signs and ingests `n` posts into `hive` through the store, 2000 per transaction.
async fn seed(s: &Inst, hive: &str, n: usize) -> (usize, usize) {
    let state = s.srv.state.clone();
    let hive = hive.to_string();
    let hive_id = s.hive_id(&hive).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let inst = state.identity.instance_id.clone();
        let author = AgentRef {
            instance_id: inst.clone(),
            agent_id: state.identity.local_agent_id.clone(),
            name: "local".into(),
            avatar_url: None,
        };
        let mut rng = Lcg(7);
        let (mut common, mut rare) = (0, 0);
        let t0 = time::now_ms();
        for chunk in 0..n.div_ceil(2000) {
            let (start, end) = (chunk * 2000, ((chunk + 1) * 2000).min(n));
            let mut events = Vec::new();
            for i in start..end {
                let title = rng.words(3, 8);
                let mut body = rng.words(5, 60);
                if rng.next(100) < 12 {
                    common += 1;
                    for _ in 0..=rng.next(3) {
                        let at = rng.next(body.len() as u64 + 1) as usize;
                        body.insert(at, "hive");
                    }
                }
                if i % 100 == 37 {
                    rare += 1;
                    let at = rng.next(body.len() as u64 + 1) as usize;
                    body.insert(at, "zanzibar");
                }
                let p = Payload::PostCreated(PostCreated {
                    post_id: ids::new_id(Kind::Post, &inst),
                    title: format!("{} {i}", title.join(" ")),
                    content: Some(body.join(" ")),
                    url: None,
                    author: author.clone(),
                });
                events.push(
                    openhive_store::ingest::Verified::sign(
                        &state.identity.key.get(),
                        &inst,
                        &hive,
                        &p,
                        t0 + i as i64,
                    )
                    .unwrap(),
                );
            }
            common::ingest_signed(&state, &hive_id, events);
        }
        (common, rare)
    })
    .await
    .unwrap()
}

fn p(d: &mut [Duration], q: f64) -> f64 {
    d.sort();
    common::percentile(d, q).as_secs_f64() * 1e3
}

async fn http_figure(http: &reqwest::Client, url: &str, n: usize) -> (f64, f64) {
    let mut d = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = http.get(url).send().await.unwrap();
        assert!(r.status().is_success(), "{url}: {}", r.status());
        r.bytes().await.unwrap();
        d.push(t.elapsed());
    }
    (p(&mut d, 0.5), p(&mut d, 0.99))
}

/// The page query alone, on a reader of the store (no HTTP, no JSON).
async fn store_figure(s: &Inst, q: &str, full: bool, n: usize) -> (f64, f64, usize) {
    let mut d = Vec::with_capacity(n);
    let mut len = 0;
    // The index writes still queued applied once, outside the timed queries.
    s.srv
        .state
        .store
        .read_search(|_| Ok::<_, openhive_store::StoreError>(()))
        .await
        .unwrap();
    for _ in 0..n {
        let q = q.to_string();
        let t = Instant::now();
        let (page, _) = s
            .srv
            .state
            .store
            .read(move |c| {
                if full {
                    openhive_store::search::posts_full_rank(c, &q, None, None, 20)
                } else {
                    openhive_store::search::posts(c, &q, None, None, 20)
                }
            })
            .await
            .unwrap();
        d.push(t.elapsed());
        len = page.len();
    }
    (p(&mut d, 0.5), p(&mut d, 0.99), len)
}

async fn run(http: &reqwest::Client, engine: &Engine, n: usize, samples: usize) {
    let name = engine.name();
    let s = Inst::new(engine).await;
    s.post(http, "/hives", serde_json::json!({ "name": "big" }))
        .await;
    let t = Instant::now();
    let (common, rare) = seed(&s, "big", n).await;
    println!(
        "[{name}] seeded {n} posts in {:.1} s: \"hive\" in {common} ({:.1}%), \"zanzibar\" in {rare} ({:.1}%)",
        t.elapsed().as_secs_f64(),
        common as f64 * 100.0 / n as f64,
        rare as f64 * 100.0 / n as f64,
    );
    for (label, q) in [
        ("common term \"hive\"", "hive"),
        ("rare term \"zanzibar\"", "zanzibar"),
    ] {
        let url = format!("{}/api/v1/search?q={q}&type=posts&limit=20", s.base);
        // Warm up (statement caches, pages).
        http_figure(http, &url, 5).await;
        let (p50, p99) = http_figure(http, &url, samples).await;
        println!(
            "[{name}] GET /search {label:<24} p50 {p50:>7.2} ms   p99 {p99:>7.2} ms   ({samples} sequential requests, limit 20)"
        );
        let (p50, p99, len) = store_figure(&s, q, false, samples).await;
        println!(
            "[{name}]   store search::posts           p50 {p50:>7.2} ms   p99 {p99:>7.2} ms   ({len} rows)"
        );
        let (p50, p99, len) = store_figure(&s, q, true, samples.min(100)).await;
        println!(
            "[{name}]   store search::posts_full_rank p50 {p50:>7.2} ms   p99 {p99:>7.2} ms   ({len} rows; the full ranking)"
        );
    }
    let rss = common::proc_status("VmRSS:").unwrap_or(0);
    println!("[{name}] process RSS after the run: {} MB", rss / 1024);
    s.shutdown().await;
}

fn main() {
    openhive_sync::client::install_crypto_provider();
    let n: usize = env_or("OPENHIVE_BENCH_POSTS", 100_000).max(100);
    let samples: usize = env_or("OPENHIVE_BENCH_SAMPLES", 300).max(10);
    let engines = std::env::var("OPENHIVE_BENCH_ENGINES").unwrap_or("sqlite,postgres".into());
    let mut list = Vec::new();
    let mut _cluster = None;
    for e in engines.split(',').map(str::trim) {
        match e {
            "sqlite" => list.push(Engine::Sqlite),
            "postgres" => {
                let url = std::env::var("OPENHIVE_BENCH_PG_URL")
                    .ok()
                    .filter(|u| !u.trim().is_empty());
                let admin_url = match url {
                    Some(u) => u.trim().to_string(),
                    None => {
                        let c = PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
                        let u = c.url.clone();
                        _cluster = Some(c);
                        u
                    }
                };
                list.push(Engine::Postgres {
                    admin_url,
                    server_pid: None,
                });
            }
            other => panic!("OPENHIVE_BENCH_ENGINES: unknown engine {other}"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("== post search, {n} posts ==");
    rt.block_on(async {
        let http = reqwest::Client::new();
        for e in &list {
            run(&http, e, n, samples).await;
        }
    });
}
