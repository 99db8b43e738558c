//! Hive Sync on both storage engines, side by side: synced writes/s, propagation p50/p99
//! and late-joiner backfill events/s, first on SQLite, then on PostgreSQL, in one run.
//!
//! Run: `cargo bench -p openhive --bench engines_bench`
//!
//! PostgreSQL: the server at `OPENHIVE_BENCH_PG_URL` (any database of it; each instance gets
//! a scratch database of its own, dropped afterwards) or, if unset, a throwaway cluster
//! started with `scripts/pg-cluster.sh` (fsync=off) and stopped at the end, also on panic
//! (not on SIGKILL/Ctrl-C: then run `scripts/pg-cluster.sh stop /tmp/openhive-bench-pg.*`).
//!
//! Sizes (environment):
//! - `OPENHIVE_BENCH_CLIENTS` (16) concurrent clients posting on A,
//! - `OPENHIVE_BENCH_WRITE_SECS` (10) for how long they post,
//! - `OPENHIVE_BENCH_PROPAGATION` (300) sequential single writes timed A → B,
//! - `OPENHIVE_BENCH_BACKFILL` (20000) events the late joiner pulls.
//!
//! Everything (both instances, the clients, and SQLite) shares this process and the
//! machine's cores; PostgreSQL runs in its own processes on the same machine. CPU per write
//! is utime+stime from /proc: this process (instances + clients), plus the PostgreSQL
//! server's processes when the bench started the cluster itself (it knows the postmaster).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backfill, Engine, PgCluster, Propagation, SyncedWrites, env_or};
use std::time::{Duration, Instant};

struct Results {
    engine: Engine,
    writes: SyncedWrites,
    propagation: Propagation,
    backfill: Backfill,
}

async fn run(
    http: &reqwest::Client,
    engine: Engine,
    clients: usize,
    secs: u64,
    samples: usize,
    n: usize,
) -> Results {
    let name = engine.name();
    println!("-- {name} --");

    let writes = common::synced_writes(http, &engine, clients, Duration::from_secs(secs)).await;
    println!(
        "[{name}] synced writes: {} posts by {clients} clients in {:.2} s = {:.0}/s accepted on A ({} × 503 retried); B had them all {:.0} ms after the last write ({:.0}/s end to end); CPU {:.1} s process{}",
        writes.writes,
        writes.took.as_secs_f64(),
        writes.writes_per_sec(),
        writes.rejected,
        writes.catch_up.as_secs_f64() * 1e3,
        writes.synced_per_sec(),
        writes.cpu.process_secs,
        writes
            .cpu
            .server_secs
            .map(|s| format!(" + {s:.1} s database server"))
            .unwrap_or_default(),
    );

    let propagation = common::propagation(http, &engine, samples).await;
    println!(
        "[{name}] propagation A→B (A's answer → visible through B's API), {samples} sequential posts: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(propagation.p(0.5)),
        ms(propagation.p(0.99)),
        ms(propagation.max()),
    );

    let backfill = common::backfill(http, &engine, n).await;
    println!(
        "[{name}] backfill: {n} events bulk-loaded on A in {:.1} s; B pulled {} log entries in {:.2} s = {:.0} events/s; CPU {:.1} s process{}",
        backfill.setup.as_secs_f64(),
        backfill.events,
        backfill.took.as_secs_f64(),
        backfill.events_per_sec(),
        backfill.cpu.process_secs,
        backfill
            .cpu
            .server_secs
            .map(|s| format!(" + {s:.1} s database server"))
            .unwrap_or_default(),
    );

    Results {
        engine,
        writes,
        propagation,
        backfill,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `12345.6` → `"12,346"`.
fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn table(rows: &[Results], clients: usize, secs: u64, samples: usize, n: usize) {
    let cell = |f: &dyn Fn(&Results) -> String| -> String {
        rows.iter().map(f).collect::<Vec<_>>().join(" | ")
    };
    let per_write = |r: &Results, secs: Option<f64>| -> String {
        secs.map_or("n/a".into(), |s| {
            format!("{:.0}", s * 1e6 / r.writes.writes.max(1) as f64)
        })
    };
    let per_event = |r: &Results, secs: Option<f64>| -> String {
        secs.map_or("n/a".into(), |s| {
            format!("{:.0}", s * 1e6 / r.backfill.events.max(1) as f64)
        })
    };
    println!();
    println!(
        "| measure | {} |",
        rows.iter()
            .map(|r| r.engine.name())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(rows.len()));
    let line = |label: String, f: &dyn Fn(&Results) -> String| {
        println!("| {label} | {} |", cell(f));
    };
    line(
        format!("synced writes/s accepted on A ({clients} clients, {secs} s)"),
        &|r| thousands(r.writes.writes_per_sec()),
    );
    line("B has them all (ms after the last write)".into(), &|r| {
        format!("{:.0}", ms(r.writes.catch_up))
    });
    line(
        "synced writes/s, end to end (until B has them all)".into(),
        &|r| thousands(r.writes.synced_per_sec()),
    );
    line(
        "CPU per synced write, this process: A + B + clients (µs)".into(),
        &|r| per_write(r, Some(r.writes.cpu.process_secs)),
    );
    line(
        "CPU per synced write, PostgreSQL server processes (µs)".into(),
        &|r| match r.engine {
            Engine::Sqlite => "(in process)".into(),
            Engine::Postgres { .. } => per_write(r, r.writes.cpu.server_secs),
        },
    );
    line(
        format!("propagation p50 / p99 (ms, {samples} single writes)"),
        &|r| {
            format!(
                "{:.1} / {:.1}",
                ms(r.propagation.p(0.5)),
                ms(r.propagation.p(0.99))
            )
        },
    );
    line(
        format!("backfill events/s ({} events)", thousands(n as f64)),
        &|r| thousands(r.backfill.events_per_sec()),
    );
    line(
        "CPU per backfilled event, process / PostgreSQL server (µs)".into(),
        &|r| {
            format!(
                "{} / {}",
                per_event(r, Some(r.backfill.cpu.process_secs)),
                match r.engine {
                    Engine::Sqlite => "-".into(),
                    Engine::Postgres { .. } => per_event(r, r.backfill.cpu.server_secs),
                }
            )
        },
    );
    line("bulk load on A through the store (events/s)".into(), &|r| {
        thousands(n as f64 / r.backfill.setup.as_secs_f64())
    });
}

fn main() {
    openhive_sync::client::install_crypto_provider();
    let clients: usize = env_or("OPENHIVE_BENCH_CLIENTS", 16).max(1);
    let secs: u64 = env_or("OPENHIVE_BENCH_WRITE_SECS", 10).max(1);
    let samples: usize = env_or("OPENHIVE_BENCH_PROPAGATION", 300).max(1);
    let n: usize = env_or("OPENHIVE_BENCH_BACKFILL", 20_000).max(1);
    let t = Instant::now();

    // Declared before the runtime, so dropped after it: the servers are gone by then.
    let mut _cluster = None;
    let postgres = match std::env::var("OPENHIVE_BENCH_PG_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        Some(url) => {
            println!("PostgreSQL: OPENHIVE_BENCH_PG_URL (server CPU not measured)");
            Engine::Postgres {
                admin_url: url.trim().to_string(),
                server_pid: None,
            }
        }
        None => {
            let c = PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
            println!(
                "PostgreSQL: throwaway cluster from scripts/pg-cluster.sh (fsync=off), postmaster pid {}",
                c.pid.map_or("?".into(), |p| p.to_string())
            );
            let engine = Engine::Postgres {
                admin_url: c.url.clone(),
                server_pid: c.pid,
            };
            _cluster = Some(c);
            engine
        }
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "== Hive Sync on both engines ({} CPUs; {clients} clients × {secs} s, {samples} propagation samples, {n}-event backfill) ==",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let rows = rt.block_on(async {
        let http = reqwest::Client::new();
        let mut rows = Vec::new();
        for engine in [Engine::Sqlite, postgres] {
            rows.push(run(&http, engine, clients, secs, samples, n).await);
        }
        rows
    });
    drop(rt);
    table(&rows, clients, secs, samples, n);
    println!();
    println!("total bench time {:.1} s", t.elapsed().as_secs_f64());
}
