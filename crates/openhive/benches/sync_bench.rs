//! Hive Sync benchmark: late-joiner backfill throughput and peak RSS, steady-state
//! propagation latency, and convergence time of three instances with concurrent writers.
//!
//! Run: `cargo bench -p openhive --bench sync_bench`
//! (`OPENHIVE_BENCH_BACKFILL=100000` sets the backfill size; default 100 000.)
//! On SQLite; `engines_bench` measures both engines side by side.
//!
//! All instances run in this process on 127.0.0.1:0 and talk real HTTP to each other, so
//! every figure includes both ends sharing the same cores (2 vCPU here): the origin serving
//! pages and the joiner verifying signatures, logging and materializing.
//! Peak RSS is the process's VmHWM, reset (via /proc/self/clear_refs) just before the
//! backfill: it covers the serving and the joining instance together.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Engine, Inst, pair, wait_until};
use serde_json::json;
use std::time::{Duration, Instant};

async fn backfill(http: &reqwest::Client, n: usize) {
    let r = common::backfill(http, &Engine::Sqlite, n).await;
    println!(
        "setup: {n} signed events written on A in {:.1} s (log head {})",
        r.setup.as_secs_f64(),
        r.events
    );
    println!(
        "backfill: {} events (verify + log + materialize) in {:.2} s = {:.0} events/s",
        r.events,
        r.took.as_secs_f64(),
        r.events_per_sec()
    );
    println!(
        "backfill peak RSS (whole process: A serving + B ingesting): VmHWM {} MiB{} (sampled VmRSS max {} MiB, before {} MiB)",
        r.hwm_kib / 1024,
        if r.hwm_reset {
            ""
        } else {
            " [watermark not reset]"
        },
        r.rss_sampled_kib / 1024,
        r.rss_before_kib / 1024
    );
}

async fn latency(http: &reqwest::Client, samples: usize) {
    let r = common::propagation(http, &Engine::Sqlite, samples).await;
    println!(
        "propagation A→B (commit on A → visible through B's API), {samples} sequential posts: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        r.p(0.5).as_secs_f64() * 1e3,
        r.p(0.99).as_secs_f64() * 1e3,
        r.max().as_secs_f64() * 1e3
    );
}

async fn convergence(http: &reqwest::Client, per_writer: usize) {
    let a = Inst::new(&Engine::Sqlite).await;
    let b = Inst::new(&Engine::Sqlite).await;
    let c = Inst::new(&Engine::Sqlite).await;
    a.shared_hive(http, "mesh").await;
    pair(http, &a, &b, "mesh").await;
    pair(http, &a, &c, "mesh").await;
    pair(http, &b, &c, "mesh").await;
    let head = a.head("mesh").await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            b.head("mesh").await >= head && c.head("mesh").await >= head
        })
        .await
    );
    let insts = [&a, &b, &c];
    let start = Instant::now();
    let writers = insts.iter().enumerate().map(|(w, s)| {
        let http = http.clone();
        async move {
            let mut last = None;
            for i in 0..per_writer {
                let p = s
                    .post(
                        &http,
                        "/posts",
                        json!({"hive": "mesh", "title": format!("w{w} {i}"), "content": "c"}),
                    )
                    .await;
                let id = p["id"].as_str().unwrap().to_string();
                if i % 4 == 1
                    && let Some(prev) = &last
                {
                    s.post(
                        &http,
                        &format!("/posts/{prev}/comments"),
                        json!({"content": "re"}),
                    )
                    .await;
                    s.post(&http, &format!("/posts/{prev}/vote"), json!({"value": 1}))
                        .await;
                }
                last = Some(id);
            }
        }
    });
    futures::future::join_all(writers).await;
    let stop = Instant::now();
    let writes = start.elapsed();
    let heads = [
        a.head("mesh").await,
        b.head("mesh").await,
        c.head("mesh").await,
    ];
    let ok = wait_until(Duration::from_secs(60), || async {
        let h = [
            a.head("mesh").await,
            b.head("mesh").await,
            c.head("mesh").await,
        ];
        h[0] == h[1] && h[1] == h[2] && h[0] >= *heads.iter().max().unwrap()
    })
    .await;
    assert!(ok, "3 instances did not converge");
    let conv = stop.elapsed();
    let total = a.head("mesh").await;
    println!(
        "3 instances × {per_writer} posts (+ comments, votes) written concurrently in {:.2} s; all logs identical ({total} events) {:.0} ms after the last write",
        writes.as_secs_f64(),
        conv.as_secs_f64() * 1e3
    );
    for s in [c, b, a] {
        s.shutdown().await;
    }
}

fn main() {
    openhive_sync::client::install_crypto_provider();
    let n: usize = std::env::var("OPENHIVE_BENCH_BACKFILL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = Instant::now();
    rt.block_on(async {
        let http = reqwest::Client::new();
        println!(
            "== Hive Sync benchmark ({} CPUs) ==",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        backfill(&http, n).await;
        latency(&http, 300).await;
        convergence(&http, 300).await;
    });
    println!("total bench time {:.1} s", t.elapsed().as_secs_f64());
}
