//! The gossip discovery simulation (`openhive_sync::gossip_sim`) as a benchmark:
//!
//! ```text
//! cargo run --release -p openhive-sync --example gossip_sim -- [--nodes 100] [--seed 1]
//!     [--runs 1] [--loss 0.05] [--restart 0.005] [--no-partition] [--max-rounds 400]
//!     [--max-gossip-peers 1000] [--ttl 2]
//! ```
//!
//! Prints, per run: rounds and virtual seconds until every instance knows every instance of
//! its hives, and until every such pair has paired; messages, bytes and gossip entries per
//! instance until then; entries sent while idle afterwards; and the seed, so a failing run
//! replays exactly (`--seed <it>`). Exits non-zero if a run did not complete.

use openhive_sync::gossip_sim::{SimConfig, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut cfg = SimConfig::default();
    let mut seed: u64 = 1;
    let mut runs: u64 = 1;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--nodes" => cfg.nodes = val().parse().unwrap_or(cfg.nodes),
            "--seed" => seed = val().parse().unwrap_or(seed),
            "--runs" => runs = val().parse().unwrap_or(runs),
            "--loss" => cfg.loss = val().parse().unwrap_or(cfg.loss),
            "--restart" => cfg.restart = val().parse().unwrap_or(cfg.restart),
            "--no-partition" => cfg.partition = None,
            "--max-rounds" => cfg.max_rounds = val().parse().unwrap_or(cfg.max_rounds),
            "--max-degree" => cfg.max_degree = val().parse().unwrap_or(cfg.max_degree),
            "--hives" => cfg.hives = val().parse().unwrap_or(cfg.hives),
            "--max-gossip-peers" => {
                cfg.settings.max_gossip_peers =
                    val().parse().unwrap_or(cfg.settings.max_gossip_peers)
            }
            "--ttl" => cfg.settings.default_ttl = val().parse().unwrap_or(cfg.settings.default_ttl),
            _ => {
                eprintln!(
                    "usage: gossip_sim [--nodes N] [--seed S] [--runs K] [--loss P] [--restart P] [--no-partition] [--max-rounds R] [--max-degree D] [--hives H] [--max-gossip-peers N] [--ttl T]"
                );
                return ExitCode::from(2);
            }
        }
    }
    println!(
        "gossip simulation: {} instances, {} hives, degree <= {}, loss {}, restart {}/round, partition {:?}, heartbeat {}s",
        cfg.nodes,
        cfg.hives,
        cfg.max_degree,
        cfg.loss,
        cfg.restart,
        cfg.partition,
        cfg.heartbeat.as_secs()
    );
    let mut failed = false;
    for s in seed..seed + runs {
        let r = run(s, &cfg);
        let n = r.nodes.max(1) as f64;
        let at = |x: Option<u64>| match x {
            Some(round) => format!("round {round} ({} s virtual)", r.virtual_secs(round)),
            None => "never".to_string(),
        };
        println!(
            "seed {s}: degree {} | all known: {} | all paired: {} | per instance until paired: {:.1} messages, {:.1} KiB, {:.1} gossip entries | handshakes {} (refused {}) | removed {} | idle entries {} | loops {} | links/instance {:.1}",
            r.degree,
            at(r.discovered_at),
            at(r.paired_at),
            r.messages as f64 / n,
            r.bytes as f64 / n / 1024.0,
            r.entries as f64 / n,
            r.handshakes,
            r.refused,
            r.removed,
            r.entries_idle,
            r.loops,
            r.links_mean,
        );
        if r.paired_at.is_none() || r.loops > 0 {
            println!("FAILED: replay with --seed {s}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
