//! Backfill benchmark (issue 11): a new instance joins a hive of N events and pulls it all
//! (verify + log + materialize), with the joiner in a process of its own so that its CPU
//! and peak RSS are its own.
//!
//! Run: `cargo bench -p openhive --bench backfill_bench`
//! - `OPENHIVE_BENCH_BACKFILL` (100000): events in A's hive (1000000 for the 1M figure);
//! - `OPENHIVE_BENCH_MIX` (`mixed`): `mixed` is 10 % posts, 10 % comments, 40 % post edits,
//!   10 % comment edits, 30 % votes; `posts` is `post_created` only (the log `sync_bench`
//!   backfills);
//! - `OPENHIVE_BENCH_PULL_BATCH` (unset: the default `[sync] pull_batch`): B's page size;
//! - `OPENHIVE_BENCH_PERF_DIR`: if set, `perf record -g` (cpu-clock) samples both sides
//!   during the backfill into `<dir>/a.data` (serving side: this process) and `<dir>/b.data`
//!   (the joiner).
//!
//! A (the holder) runs in this process (SQLite, loaded through the store: signed events of
//! A's own instance); B is the release `openhive serve` binary on its own SQLite data
//! directory. The backfill is timed from the pairing until B's log head reaches A's. CPU
//! seconds come from `/proc/<pid>/stat` (meaningful on a loaded machine): "A" is this
//! process (A serving pages, plus this driver polling B twice a second); "B" the joiner.
//! B's CPU is also split by thread name (`/proc/<pid>/task/*/schedstat`, exact): the
//! `openhive-writer` thread is the one a SQLite file has, the floor of the backfill.
//! B's peak RSS is its `VmHWM` (the process is new, so it covers its start and the
//! backfill).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{CLK_TCK, Engine, Inst, Mix, env_or, load_mixed, proc_status, self_cpu_ticks};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

const HIVE: &str = "big";

/// The joiner: the release binary on a temporary data directory; killed when dropped.
type Joiner = common::serve_process::ServeProcess;

impl Joiner {
    async fn spawn_joiner(http: &reqwest::Client) -> Joiner {
        let mut env = vec![
            ("OPENHIVE_SYNC__HEARTBEAT_INTERVAL_SECS", "1".to_string()),
            ("RUST_LOG", "warn".to_string()),
        ];
        if let Ok(b) = std::env::var("OPENHIVE_BENCH_PULL_BATCH") {
            env.push(("OPENHIVE_SYNC__PULL_BATCH", b));
        }
        let output = |_| (Stdio::null(), Stdio::inherit());
        Joiner::spawn(http, &env, output, Duration::from_secs(60)).await
    }

    /// B's log head of `HIVE` (0 until the hive arrived).
    async fn head(&self, http: &reqwest::Client) -> i64 {
        let v = self
            .call(http, reqwest::Method::GET, "/sync/groups?limit=10", None)
            .await;
        let groups = v
            .get("data")
            .or_else(|| v.get("groups"))
            .or_else(|| v.get("items"))
            .cloned()
            .unwrap_or(v);
        groups
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["hive_name"] == HIVE)
            .and_then(|g| g["local_seq"].as_i64())
            .unwrap_or(0)
    }

    /// (CPU ticks, VmHWM KiB, VmRSS KiB) of the process.
    fn proc(&self) -> (u64, u64, u64) {
        (
            self.cpu_ticks(),
            self.status("VmHWM:"),
            self.status("VmRSS:"),
        )
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    openhive_sync::client::install_crypto_provider();
    let n: usize = env_or("OPENHIVE_BENCH_BACKFILL", 100_000);
    let mix = Mix::from_env();
    let http = reqwest::Client::new();
    println!(
        "== backfill benchmark ({} CPUs): {n} events, {} ==",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mix.name()
    );
    let a = Inst::new(&Engine::Sqlite).await;
    a.shared_hive(&http, HIVE).await;
    let t = Instant::now();
    load_mixed(&a, HIVE, n, mix).await;
    let head = a.head(HIVE).await;
    println!(
        "setup: {head} signed events in A's log in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let b = Joiner::spawn_joiner(&http).await;
    let (b_ticks0, _, b_rss_idle) = b.proc();
    let a_hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let a_ticks0 = self_cpu_ticks();
    let b_threads0 = common::thread_cpu_ns(b.pid());
    let perf_a = common::perf::record(std::process::id(), "a");
    let perf_b = common::perf::record(b.pid(), "b");
    let start = Instant::now();
    a.post(
        &http,
        "/sync/peers",
        json!({"name": "joiner", "sync_endpoint": format!("{}/sync/v1", b.base), "shared_hives": [HIVE]}),
    )
    .await;
    b.call(
        &http,
        reqwest::Method::POST,
        "/sync/peers",
        Some(json!({"name": "holder", "sync_endpoint": a.endpoint(), "shared_hives": [HIVE]})),
    )
    .await;
    let deadline = start + Duration::from_secs(3600);
    let mut b_rss_max = 0u64;
    loop {
        b_rss_max = b_rss_max.max(b.proc().2);
        if b.head(&http).await >= head {
            break;
        }
        assert!(Instant::now() < deadline, "backfill did not finish");
        // Often enough that the end is seen within 25 ms (every 500 ms quantized a 6.6 s
        // backfill to half-second steps, ±7 % of the rate); each look is one small request.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let took = start.elapsed();
    let (b_ticks1, b_hwm, b_rss_end) = b.proc();
    let a_ticks1 = self_cpu_ticks();
    let b_threads1 = common::thread_cpu_ns(b.pid());
    common::perf::stop(perf_a);
    common::perf::stop(perf_b);
    let a_cpu = a_ticks1.saturating_sub(a_ticks0) as f64 / CLK_TCK;
    let b_cpu = b_ticks1.saturating_sub(b_ticks0) as f64 / CLK_TCK;
    let rate = head as f64 / took.as_secs_f64();
    println!(
        "backfill: {head} events (verify + log + materialize) in {:.2} s = {rate:.0} events/s",
        took.as_secs_f64()
    );
    println!(
        "CPU: A (serving + driver) {a_cpu:.2} s = {:.1} µs/event; B (joiner) {b_cpu:.2} s = {:.1} µs/event; both {:.1} µs/event",
        a_cpu * 1e6 / head as f64,
        b_cpu * 1e6 / head as f64,
        (a_cpu + b_cpu) * 1e6 / head as f64
    );
    println!(
        "B's threads, µs of CPU per event (schedstat): {}",
        common::thread_cpu_per_event(&b_threads0, &b_threads1, head as u64)
    );
    println!(
        "joiner RSS: peak (VmHWM) {:.1} MB, sampled max {:.1} MB, idle before {:.1} MB, at the end {:.1} MB",
        b_hwm as f64 / 1024.0,
        b_rss_max.max(b_rss_end) as f64 / 1024.0,
        b_rss_idle as f64 / 1024.0,
        b_rss_end as f64 / 1024.0
    );
    println!(
        "A (this process) peak RSS during the backfill: {:.1} MB{}",
        proc_status("VmHWM:").unwrap_or(0) as f64 / 1024.0,
        if a_hwm_reset {
            ""
        } else {
            " [watermark not reset]"
        }
    );
    // The same content on both sides (a cheap check: post counts through the API).
    let total = |v: Value| v["total"].as_i64().unwrap_or(-1);
    let pa = total(a.get_json(&http, "/posts?limit=1").await);
    let pb = total(
        b.call(&http, reqwest::Method::GET, "/posts?limit=1", None)
            .await,
    );
    println!("posts: A {pa}, B {pb}");
    assert_eq!(pa, pb, "B's posts differ from A's");
    drop(b);
    a.shutdown().await;
}
