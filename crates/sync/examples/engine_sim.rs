//! The engine simulation (`openhive_sync::sim`) as a benchmark: the real sync engine and
//! stores (SQLite in a temp dir) of `--nodes` instances on an in-memory network, virtual
//! time.
//!
//! ```text
//! cargo run --release -p openhive-sync --example engine_sim -- [--nodes 100] [--seed 1]
//!     [--writes 100] [--fault-writes 40] [--loss 0.05] [--partition-rounds 3]
//!     [--restarts 2] [--heartbeat-secs 30] [--max-gossip-peers 8] [--max-degree 8]
//!     [--max-rounds 60] [--hub] [--hub-max-peers 8] [--quiet]
//! ```
//!
//! Prints the seed first, then per phase: rounds and virtual seconds to full discovery
//! (every roster complete) and to equal state digests after the concurrent writes, messages
//! and bytes sent per event per instance, duplicates and the loop checks, and convergence
//! after the faults heal. Exits non-zero (printing the seed) if a run fails. `--hub` seeds
//! discovery from a MAP hub (every instance registered, the hub client's choice of
//! `--hub-max-peers` links per hive) instead of a random tree of configured pairings.

use openhive_store::StoreOptions;
use openhive_sync::sim::{EngineSimConfig, run};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let mut cfg = EngineSimConfig {
        verbose: true,
        ..EngineSimConfig::default()
    };
    let mut seed: u64 = 1;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--nodes" => cfg.nodes = val().parse().unwrap_or(cfg.nodes),
            "--seed" => seed = val().parse().unwrap_or(seed),
            "--writes" => cfg.writes = val().parse().unwrap_or(cfg.writes),
            "--fault-writes" => cfg.fault_writes = val().parse().unwrap_or(cfg.fault_writes),
            "--loss" => cfg.loss = val().parse().unwrap_or(cfg.loss),
            "--partition-rounds" => {
                cfg.partition_rounds = val().parse().unwrap_or(cfg.partition_rounds)
            }
            "--restarts" => cfg.restarts = val().parse().unwrap_or(cfg.restarts),
            "--heartbeat-secs" => {
                cfg.heartbeat = Duration::from_secs(val().parse().unwrap_or(30).max(1))
            }
            "--max-gossip-peers" => {
                cfg.max_gossip_peers = val().parse().unwrap_or(cfg.max_gossip_peers)
            }
            "--max-degree" => cfg.max_degree = val().parse().unwrap_or(cfg.max_degree),
            "--max-rounds" => cfg.max_rounds = val().parse().unwrap_or(cfg.max_rounds),
            "--hub" => cfg.hub = true,
            "--hub-max-peers" => cfg.hub_max_peers = val().parse().unwrap_or(cfg.hub_max_peers),
            "--quiet" => cfg.verbose = false,
            _ => {
                eprintln!(
                    "usage: engine_sim [--nodes N] [--seed S] [--writes K] [--fault-writes K] [--loss P] [--partition-rounds R] [--restarts N] [--heartbeat-secs S] [--max-gossip-peers N] [--max-degree D] [--max-rounds R] [--hub] [--hub-max-peers N] [--quiet]"
                );
                return ExitCode::from(2);
            }
        }
    }
    println!(
        "engine simulation: seed {seed}, {} instances, seed-tree degree <= {}, max_gossip_peers {}, heartbeat {} s, {} writes, then {} writes with loss {}, a {}-round partition, {} restarts",
        cfg.nodes,
        cfg.max_degree,
        cfg.max_gossip_peers,
        cfg.heartbeat.as_secs(),
        cfg.writes,
        cfg.fault_writes,
        cfg.loss,
        cfg.partition_rounds,
        cfg.restarts
    );
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("temp dir: {e}");
            return ExitCode::FAILURE;
        }
    };
    let root = dir.path().to_path_buf();
    let open = move |i: usize| {
        let opts = StoreOptions {
            readers: 2,
            ..StoreOptions::default()
        };
        openhive_store_sqlite::open(&root.join(format!("sim-{i}.sqlite")), &opts)
            .map_err(|e| e.to_string())
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .max_blocking_threads(1024)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(seed, &cfg, &open)) {
        Ok(r) => {
            println!(
                "seed {}: {} instances, {} events",
                r.seed, r.nodes, r.events
            );
            println!(
                "  discovery (every roster complete): {:.1} rounds, {:.0} virtual s; links per instance min {} mean {:.1} max {}",
                r.discovery.rounds,
                r.discovery.virtual_time.as_secs_f64(),
                r.links.0,
                r.links.1,
                r.links.2
            );
            println!(
                "  {} concurrent writes: equal digests after {:.2} rounds, {:.2} virtual s",
                cfg.writes,
                r.convergence.rounds,
                r.convergence.virtual_time.as_secs_f64()
            );
            println!(
                "  per event per instance: {:.2} messages (max {:.2}), {:.0} bytes (max {:.0}); calls {:?}",
                r.per_event.messages_mean,
                r.per_event.messages_max,
                r.per_event.bytes_mean,
                r.per_event.bytes_max,
                r.per_event.calls
            );
            println!(
                "  loops: {} duplicate receptions (max {} on one instance), {} over an instance's links, {} repeated on a link, {} pushed back",
                r.loops.duplicates,
                r.loops.duplicates_max,
                r.loops.over_links.len(),
                r.loops.repeated_on_a_link,
                r.loops.pushed_back
            );
            println!(
                "  faults: {} messages lost, {} calls cut, {} restarts; equal digests {:.2} rounds ({:.1} virtual s) after healing, {:.1} rounds after the fault phase began; {} duplicates, {} repeated on a link (retries of lost answers), {} pushed back",
                r.faults.0,
                r.faults.1,
                r.faults.2,
                r.fault_convergence.rounds,
                r.fault_convergence.virtual_time.as_secs_f64(),
                r.fault_total.rounds,
                r.fault_loops.duplicates,
                r.fault_loops.repeated_on_a_link,
                r.fault_loops.pushed_back
            );
            println!("  wall time {:.1} s", r.wall.as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("FAILED: seed {seed}");
            ExitCode::FAILURE
        }
    }
}
