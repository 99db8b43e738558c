//! Compaction benchmark: snapshot size and the time to join a hive from its compacted log
//! (snapshot + tail) versus from the full log.
//!
//! Run: `cargo bench -p openhive --bench compaction_bench`
//! (`OPENHIVE_BENCH_EVENTS=100000` sets the log size; default 100 000.)
//!
//! A's hive gets a realistic mix of signed events through the store (10 % posts, 10 %
//! comments, 40 % post edits, 10 % comment edits, 30 % votes by five voters that change
//! their minds). B1 joins from the full log; then A compacts (`POST
//! /api/v1/sync/groups/big/compact`), and B2 joins from the compacted log. A join is
//! timed from the pairing until the joiner's pull cursor reaches A's head; both joiners
//! then show A's state digest. All instances run in this process on 127.0.0.1:0 over real
//! HTTP (SQLite), so the figures include both ends sharing the cores; CPU seconds are the
//! process's (utime + stime from /proc/self/stat).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{CpuMeter, Engine, Inst, env_or, pair, wait_until};
use std::time::{Duration, Instant};

const HIVE: &str = "big";

/// `(events, approximate bytes)` of A's log of `HIVE` (the measure of `snapshot_bytes`).
async fn log_size(s: &Inst) -> (i64, i64) {
    let id = s.hive_id(HIVE).await.unwrap();
    s.srv
        .state
        .store
        .read(move |c| -> Result<(i64, i64), openhive_store::StoreError> {
            Ok(c.query_row(
                "SELECT COUNT(*), CAST(COALESCE(SUM(LENGTH(id) + LENGTH(event_type)
                   + LENGTH(origin_instance_id) + LENGTH(payload) + LENGTH(signature) + 20), 0)
                   AS BIGINT) FROM events WHERE hive_id = ?1",
                [&id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await
        .unwrap()
}

/// The state digest of `HIVE` without the remote-agent section (an instance's own agents
/// are local there and remote elsewhere).
async fn digest(s: &Inst) -> String {
    let id = s.hive_id(HIVE).await.unwrap_or_default();
    let d = s
        .srv
        .state
        .store
        .read(move |c| openhive_store::materialize::state_digest(c, &id))
        .await
        .unwrap();
    d.split("--\n").take(5).collect::<Vec<_>>().join("--\n")
}

/// The joiner's pull cursor on A's log of `HIVE`.
async fn cursor(b: &Inst) -> i64 {
    let Some(id) = b.hive_id(HIVE).await else {
        return 0;
    };
    b.srv
        .state
        .store
        .read(move |c| openhive_store::sync_state::links_for_hive(c, &id))
        .await
        .unwrap()
        .iter()
        .map(|l| l.last_seq_received)
        .max()
        .unwrap_or(0)
}

/// Pairs a new instance with `a` and times it until its cursor reaches A's head.
async fn join(http: &reqwest::Client, a: &Inst, head: i64, what: &str) -> Inst {
    let b = Inst::new(&Engine::Sqlite).await;
    let cpu = CpuMeter::start(&Engine::Sqlite);
    let t = Instant::now();
    pair(http, a, &b, HIVE).await;
    let ok = wait_until(Duration::from_secs(900), || async {
        cursor(&b).await >= head
    })
    .await;
    let took = t.elapsed();
    let cpu = cpu.stop();
    assert!(ok, "{what}: join did not finish");
    println!(
        "join from {what}: {head} seqs covered, {} events in B's log, {:.2} s wall, {:.2} s CPU (process)",
        b.head(HIVE).await,
        took.as_secs_f64(),
        cpu.process_secs
    );
    b
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    openhive_sync::client::install_crypto_provider();
    let n: usize = env_or("OPENHIVE_BENCH_EVENTS", 100_000);
    let http = reqwest::Client::new();
    let a = Inst::new(&Engine::Sqlite).await;
    a.shared_hive(&http, HIVE).await;
    let t = Instant::now();
    common::load_mixed(&a, HIVE, n, common::Mix::Mixed).await;
    let head = a.head(HIVE).await;
    let (events, bytes) = log_size(&a).await;
    println!(
        "setup: {head} signed events on A in {:.1} s; full log {events} events, {:.1} MB",
        t.elapsed().as_secs_f64(),
        bytes as f64 / 1e6
    );
    let want = digest(&a).await;

    let b1 = join(&http, &a, head, "the full log").await;
    assert_eq!(digest(&b1).await, want, "B1 differs from A");
    // B1's outbox cursor on A (the low-water mark) reaches the head once B1 acknowledged.
    let hid = a.hive_id(HIVE).await.unwrap();
    wait_until(Duration::from_secs(120), || async {
        let h = hid.clone();
        a.srv
            .state
            .store
            .read(move |c| openhive_store::consumers::low_water_mark(c, &h))
            .await
            .unwrap()
            .is_none_or(|m| m >= head)
    })
    .await;
    b1.shutdown().await;

    let cpu = CpuMeter::start(&Engine::Sqlite);
    let t = Instant::now();
    let r = a
        .post(&http, "/sync/groups/big/compact", serde_json::json!({}))
        .await;
    let took = t.elapsed();
    let cpu = cpu.stop();
    println!(
        "compaction: through seq {}, snapshot {} events ({:.1} MB) of {events} ({:.1} MB): {:.0} % of the events dropped, in {:.2} s wall, {:.2} s CPU",
        r["compacted_through_seq"],
        r["snapshot_size"],
        r["snapshot_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        bytes as f64 / 1e6,
        r["dropped"].as_f64().unwrap_or(0.0) * 100.0 / events as f64,
        took.as_secs_f64(),
        cpu.process_secs
    );
    let b2 = join(&http, &a, head, "the snapshot").await;
    assert_eq!(digest(&b2).await, want, "B2 differs from A");
    println!("both joiners show A's state digest");
    b2.shutdown().await;
    a.shutdown().await;
}
