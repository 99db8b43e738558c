//! Cost per link: instances sharing many hives (issue: "cost that grows with activity, not
//! with links"). Every instance is its own `openhive serve` process, so CPU, threads and RSS
//! are each instance's own, read from /proc.
//!
//! For each size N (`LINKS_BENCH_HIVES`, default "2500,5000"): instance A holds N hives of
//! one post each, then A and B pair for all of them in one admin call each; printed:
//! - the time until B holds every hive and post (and the ratio between sizes: linear means
//!   2× hives ≈ 2× time), and until A's outboxes are acknowledged too ("quiet"),
//! - idle CPU of each instance over `LINKS_BENCH_IDLE_SECS` (default 30) with heartbeats
//!   every 5 s, threads and RSS,
//! - the size of a default `/api/v1/sync/status` page.
//!
//! Then, with `LINKS_BENCH_PEERS` (default 5) peers sharing the largest N with A, A's idle
//! CPU, threads and RSS, measured `LINKS_BENCH_SETTLE_SECS` (default 70) after A's outboxes
//! are acknowledged (the pairings' tail is over).
//!
//! `LINKS_BENCH_BATCH` (default "256") lists `[sync] batch_groups` values to run each size
//! with ("256,1" compares batched calls with one call per hive, in one run); "pair CPU s" is
//! the CPU time each instance spent until B held everything (independent of how busy the
//! machine is), "calls" the `/sync/v1` requests both answered meanwhile.
//!
//! `OPENHIVE_BENCH_PERF_DIR`: `perf record` of A and B during each pairing
//! (`pair-<N>-a.data`, `pair-<N>-b.data`).
//!
//! `OPENHIVE_BENCH_BIN` runs another build of `openhive` (say, a copy of the binary before a
//! change): alternating two builds in one sitting is how a change is measured here, since
//! this machine's speed drifts by 15 % and more over an hour.
//!
//! `LINKS_BENCH_REPEAT` (default 1) runs the sizes that many times, alternating them
//! (2500, 5000, 2500, 5000, ...), and prints the median pairing time and CPU of each size
//! and the ratios of the medians: one stalled pairing on this shared machine then moves
//! no ratio.
//!
//! `LINKS_BENCH_LOG_DIR` keeps each instance's log there (`LINKS_BENCH_RUST_LOG` sets its
//! filter, default "info").
//!
//! Run: `cargo bench -p openhive --bench links_bench`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Proc = common::serve_process::ServeProcess;

async fn spawn(http: &reqwest::Client) -> Proc {
    spawn_batched(http, 256).await
}

async fn spawn_batched(http: &reqwest::Client, batch: usize) -> Proc {
    // `LINKS_BENCH_LOG_DIR`: each instance logs (`LINKS_BENCH_RUST_LOG`, default "info")
    // to `<dir>/<port>.log`, for a timeline of the pairing.
    let log_dir = std::env::var("LINKS_BENCH_LOG_DIR").ok();
    let log_filter = match &log_dir {
        Some(_) => std::env::var("LINKS_BENCH_RUST_LOG").unwrap_or_else(|_| "info".into()),
        None => "warn".to_string(),
    };
    let env = [
        ("OPENHIVE_SYNC__HEARTBEAT_INTERVAL_SECS", "5".to_string()),
        ("OPENHIVE_SYNC__BATCH_GROUPS", batch.to_string()),
        ("RUST_LOG", log_filter),
    ];
    let output = |port: u16| {
        let stdout = match &log_dir {
            Some(d) => Stdio::from(std::fs::File::create(format!("{d}/{port}.log")).unwrap()),
            None => Stdio::null(),
        };
        (stdout, Stdio::null())
    };
    Proc::spawn(http, &env, output, Duration::from_secs(30)).await
}

impl Proc {
    async fn post(&self, http: &reqwest::Client, path: &str, body: Value) -> Value {
        self.call(http, reqwest::Method::POST, path, Some(body))
            .await
    }

    async fn get(&self, http: &reqwest::Client, path: &str) -> Value {
        self.call(http, reqwest::Method::GET, path, None).await
    }

    fn endpoint(&self) -> String {
        format!("{}/sync/v1", self.base)
    }

    /// (total CPU ticks, threads, RSS KiB) from /proc.
    fn proc_figures(&self) -> (u64, u64, u64) {
        (
            self.cpu_ticks(),
            self.status("Threads:"),
            self.status("VmRSS:"),
        )
    }
}

fn ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Creates `n` hives of one post each on `a` (8 requests in flight).
async fn fill(http: &reqwest::Client, a: &Proc, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("h{i:05}")).collect();
    let chunks: Vec<Vec<String>> = names
        .chunks(n.div_ceil(8).max(1))
        .map(<[String]>::to_vec)
        .collect();
    futures::future::join_all(chunks.into_iter().map(|chunk| async move {
        for h in chunk {
            a.post(http, "/hives", json!({"name": h, "description": "d"}))
                .await;
            a.post(http, "/sync/groups", json!({"hive_name": h})).await;
            a.post(
                http,
                "/posts",
                json!({"hive": h, "title": "one post", "content": "x"}),
            )
            .await;
        }
    }))
    .await;
    names
}

async fn pair(http: &reqwest::Client, a: &Proc, b: &Proc, names: &[String], name: &str) {
    a.post(
        http,
        "/sync/peers",
        json!({"name": name, "sync_endpoint": b.endpoint(), "shared_hives": names}),
    )
    .await;
    b.post(
        http,
        "/sync/peers",
        json!({"name": "A", "sync_endpoint": a.endpoint(), "shared_hives": names}),
    )
    .await;
}

async fn post_total(http: &reqwest::Client, p: &Proc) -> u64 {
    p.get(http, "/posts?limit=1").await["total"]
        .as_u64()
        .unwrap_or(0)
}

async fn wait_all_posts(http: &reqwest::Client, b: &Proc, n: usize) -> Duration {
    let t0 = Instant::now();
    loop {
        let total = post_total(http, b).await;
        if total >= n as u64 {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "pairing did not complete"
        );
        // The cross-hive count costs B ~1 ms per 1,000 posts: polled every 100 ms it was
        // 9 % of B's CPU at 10,000 hives. Seldom until 90 % are there, then often.
        let pause = if total * 10 >= n as u64 * 9 { 50 } else { 400 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Waits until no link of `p` is lagging (its outboxes acknowledged: both sides quiet).
async fn wait_quiet(http: &reqwest::Client, p: &Proc) -> Duration {
    let t0 = Instant::now();
    loop {
        let v = p.get(http, "/sync/status?state=lagging&limit=1").await;
        if v["groups"].as_array().is_some_and(Vec::is_empty) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "links did not settle"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `/sync/v1` requests `p` answered, by route, from its `/metrics`.
async fn sync_calls_by_route(
    http: &reqwest::Client,
    p: &Proc,
) -> std::collections::BTreeMap<String, u64> {
    let text = http
        .get(format!("{}/metrics", p.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut out = std::collections::BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| l.starts_with("openhive_http_requests_total{"))
    {
        let Some(route) = l.split("route=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        if !route.starts_with("/sync/v1/") {
            continue;
        }
        let n = l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        *out.entry(route.to_string()).or_insert(0) += n as u64;
    }
    out
}

/// Requests per route answered since `before`, e.g. `batch/pull 40`.
fn calls_since(
    before: &std::collections::BTreeMap<String, u64>,
    now: &std::collections::BTreeMap<String, u64>,
) -> String {
    now.iter()
        .map(|(route, n)| (route, n - before.get(route).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .map(|(route, n)| format!("{} {n}", route.trim_start_matches("/sync/v1/")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// % of one core used by each of `procs` over `secs` seconds.
async fn idle_cpu(procs: &[&Proc], secs: u64) -> Vec<f64> {
    let before: Vec<u64> = procs.iter().map(|p| p.proc_figures().0).collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let hz = ticks_per_sec();
    procs
        .iter()
        .zip(before)
        .map(|(p, b)| (p.proc_figures().0 - b) as f64 / hz / secs as f64 * 100.0)
        .collect()
}

/// The median of `v` (the mean of the middle two for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

/// Median pairing time and CPU per size, and the ratios of the last size's medians to the
/// first's.
fn print_ratios(sizes: &[usize], runs: &std::collections::BTreeMap<usize, Vec<(f64, f64)>>) {
    let (Some(&n0), Some(&n1)) = (sizes.first(), sizes.last()) else {
        return;
    };
    if n0 == n1 {
        return;
    }
    let med = |n: usize| {
        let r = &runs[&n];
        let fmt = |v: Vec<f64>| {
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let (t, c): (Vec<f64>, Vec<f64>) = r.iter().copied().unzip();
        println!(
            "{n} hives: pair {} s (median {:.2}), CPU A+B {} s (median {:.2})",
            fmt(t.clone()),
            median(t.clone()),
            fmt(c.clone()),
            median(c.clone())
        );
        (median(t), median(c))
    };
    let ((t0, c0), (t1, c1)) = (med(n0), med(n1));
    println!(
        "time ratio {:.2}, CPU ratio {:.2}, for {:.2}x the hives (medians of {} run(s) each)",
        t1 / t0,
        c1 / c0,
        n1 as f64 / n0 as f64,
        runs[&n0].len()
    );
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("LINKS_BENCH_HIVES")
        .unwrap_or_else(|_| "2500,5000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let idle_secs: u64 = env_or("LINKS_BENCH_IDLE_SECS", 30);
    let peers: usize = env_or("LINKS_BENCH_PEERS", 5);
    openhive_sync::client::install_crypto_provider();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()
        .unwrap();
    let batches: Vec<usize> = std::env::var("LINKS_BENCH_BATCH")
        .unwrap_or_else(|_| "256".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("links_bench: two instances sharing N hives of one post each (heartbeat 5 s)");
    println!(
        "{:>5} | {:>7} | {:>8} | {:>7} | {:>11} | {:>6} | {:>9} | {:>13} | {:>9} | {:>9} | {:>10}",
        "batch",
        "hives",
        "pair (s)",
        "ms/hive",
        "pair CPU s",
        "calls",
        "quiet (s)",
        "idle CPU A/B",
        "threads",
        "RSS MB",
        "status KB"
    );
    let repeat: usize = env_or("LINKS_BENCH_REPEAT", 1usize).max(1);
    // (pairing time, pair CPU of A + B) of each run of each size, with the first batch size.
    let mut runs: std::collections::BTreeMap<usize, Vec<(f64, f64)>> = Default::default();
    for _ in 0..repeat {
        for &batch in &batches {
            for &n in &sizes {
                let a = spawn_batched(&http, batch).await;
                let b = spawn_batched(&http, batch).await;
                let names = fill(&http, &a, n).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let routes0 = (
                    sync_calls_by_route(&http, &a).await,
                    sync_calls_by_route(&http, &b).await,
                );
                let calls0 = routes0.0.values().sum::<u64>() + routes0.1.values().sum::<u64>();
                let (cpu_a0, cpu_b0) = (a.proc_figures().0, b.proc_figures().0);
                let perf = [
                    common::perf::record(a.pid(), &format!("pair-{n}-a")),
                    common::perf::record(b.pid(), &format!("pair-{n}-b")),
                ];
                if perf.iter().any(Option::is_some) {
                    // perf needs a moment to attach: without it a short pairing loses its start.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                pair(&http, &a, &b, &names, "B").await;
                let took = wait_all_posts(&http, &b, n).await;
                perf.into_iter().for_each(common::perf::stop);
                let hz = ticks_per_sec();
                let pair_cpu = (
                    (a.proc_figures().0 - cpu_a0) as f64 / hz,
                    (b.proc_figures().0 - cpu_b0) as f64 / hz,
                );
                let routes = (
                    sync_calls_by_route(&http, &a).await,
                    sync_calls_by_route(&http, &b).await,
                );
                let calls =
                    routes.0.values().sum::<u64>() + routes.1.values().sum::<u64>() - calls0;
                eprintln!(
                    "{n} hives, calls answered by A: {}; by B: {}",
                    calls_since(&routes0.0, &routes.0),
                    calls_since(&routes0.1, &routes.1)
                );
                if batch == batches[0] {
                    runs.entry(n)
                        .or_default()
                        .push((took.as_secs_f64(), pair_cpu.0 + pair_cpu.1));
                }
                // Let the last pushes and acknowledgements settle, then a heartbeat or two.
                let quiet = wait_quiet(&http, &a).await;
                tokio::time::sleep(Duration::from_secs(11)).await;
                eprintln!(
                    "A {} (pid {}), B {} (pid {})",
                    a.base,
                    a.pid(),
                    b.base,
                    b.pid()
                );
                let cpu = idle_cpu(&[&a, &b], idle_secs).await;
                // For a look at the idle pair (status, profiles) before it is stopped.
                let hold: u64 = env_or("LINKS_BENCH_HOLD_SECS", 0);
                tokio::time::sleep(Duration::from_secs(hold)).await;
                let (_, threads_b, rss_b) = b.proc_figures();
                let (_, threads_a, rss_a) = a.proc_figures();
                let page = http
                    .get(format!("{}/api/v1/sync/status", a.base))
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
                    .len();
                println!(
                    "{:>5} | {:>7} | {:>8.1} | {:>7.2} | {:>5.1} {:>5.1} | {:>6} | {:>9.1} | {:>5.2}% {:>5.2}% | {:>4} {:>4} | {:>4} {:>4} | {:>10.1}",
                    batch,
                    n,
                    took.as_secs_f64(),
                    took.as_secs_f64() * 1000.0 / n as f64,
                    pair_cpu.0,
                    pair_cpu.1,
                    calls,
                    (took + quiet).as_secs_f64(),
                    cpu[0],
                    cpu[1],
                    threads_a,
                    threads_b,
                    rss_a / 1024,
                    rss_b / 1024,
                    page as f64 / 1024.0
                );
            }
        }
    }
    print_ratios(&sizes, &runs);
    if peers == 0 {
        return;
    }
    let n = sizes.iter().copied().max().unwrap_or(1000);
    println!("\nA sharing {n} hives with {peers} peers (heartbeat 5 s):");
    let a = spawn(&http).await;
    let names = fill(&http, &a, n).await;
    let mut others = Vec::new();
    for i in 0..peers {
        let p = spawn(&http).await;
        pair(&http, &a, &p, &names, &format!("P{i}")).await;
        let took = wait_all_posts(&http, &p, n).await;
        println!(
            "  peer {i} holds every hive after {:.1} s",
            took.as_secs_f64()
        );
        others.push(p);
    }
    // Every outbox acknowledged, then `LINKS_BENCH_SETTLE_SECS` (default 70): the idle
    // figure is not the pairings' tail (each peer's first heartbeats carry every shared
    // hive; gossip tells each peer what changed at most once per 60 s exchange interval).
    wait_quiet(&http, &a).await;
    tokio::time::sleep(Duration::from_secs(env_or("LINKS_BENCH_SETTLE_SECS", 70))).await;
    eprintln!("A {} (pid {})", a.base, a.pid());
    let cpu = idle_cpu(&[&a], idle_secs).await;
    let (_, threads, rss) = a.proc_figures();
    println!(
        "  A idle CPU {:.2}% of a core, {} threads, RSS {} MB ({} links)",
        cpu[0],
        threads,
        rss / 1024,
        n * peers
    );
    let hold: u64 = env_or("LINKS_BENCH_HOLD_SECS", 0);
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let per_peer = idle_cpu(&others.iter().collect::<Vec<_>>(), idle_secs.min(10)).await;
    println!(
        "  peers idle CPU: {}",
        per_peer
            .iter()
            .map(|c| format!("{c:.2}%"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}
