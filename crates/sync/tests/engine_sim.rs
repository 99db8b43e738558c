//! The engine simulation at CI size (issue 8, item 6): 8 real engines and stores on the
//! in-memory network, virtual time, gossip discovery from one seed peer each, 20
//! concurrent writes, then message loss, one partition and one restart. Asserts
//! convergence of the state digests after each phase and the no-loop bounds (each event
//! arrives at most once per link, never pushed back to the peer it came from). The seed is
//! printed first, and in any failure.
//!
//! Stores: SQLite in a temp dir, or fresh PostgreSQL databases when `OPENHIVE_TEST_PG_URL`
//! is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openhive_store::{Store, StoreOptions};
use openhive_sync::sim::{EngineSimConfig, EngineSimReport, run};
use std::time::Duration;

/// Opens store `i`; on PostgreSQL its scratch database comes along, to be dropped at the end.
fn open_store(
    root: &std::path::Path,
    i: usize,
) -> Result<(Option<openhive_store_postgres::ScratchDatabase>, Store), String> {
    let opts = StoreOptions {
        readers: 2,
        ..StoreOptions::default()
    };
    match std::env::var("OPENHIVE_TEST_PG_URL") {
        Ok(admin) if !admin.is_empty() => {
            let db = openhive_store_postgres::ScratchDatabase::create(&admin, "oh_sim")
                .map_err(|e| e.to_string())?;
            let store =
                openhive_store_postgres::open(db.url(), &opts).map_err(|e| e.to_string())?;
            Ok((Some(db), store))
        }
        _ => openhive_store_sqlite::open(&root.join(format!("sim-{i}.sqlite")), &opts)
            .map(|store| (None, store))
            .map_err(|e| e.to_string()),
    }
}

/// Runs the scenario at CI size (seed from `OPENHIVE_SIM_SEED`, default 8) and checks what
/// holds for every seed: convergence of each phase, no loop, the faults happened, traffic
/// within the links.
fn simulate(cfg: EngineSimConfig) -> EngineSimReport {
    let seed: u64 = std::env::var("OPENHIVE_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    println!("engine simulation seed {seed} (replay: OPENHIVE_SIM_SEED={seed})");
    // Opened before the runtime starts: the PostgreSQL client runs its own.
    let dir = tempfile::tempdir().unwrap();
    let mut databases = Vec::new();
    let mut stores: Vec<std::sync::Mutex<Option<Store>>> = Vec::new();
    for i in 0..cfg.nodes {
        let (database, store) = open_store(dir.path(), i).unwrap();
        databases.extend(database);
        stores.push(std::sync::Mutex::new(Some(store)));
    }
    let open = move |i: usize| {
        stores
            .get(i)
            .and_then(|s| s.lock().unwrap().take())
            .ok_or_else(|| format!("no store {i}"))
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let r = match rt.block_on(run(seed, &cfg, &open)) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    println!("{r:#?}");
    let ctx = format!("seed {seed}: {r:?}");
    // Every phase converged (`run` fails otherwise) over the 2 setup events and every write.
    assert_eq!(
        r.events,
        2 + (cfg.writes + cfg.fault_writes) as i64,
        "{ctx}"
    );
    // No loop: each event at most once per link, none pushed back where it came from.
    assert!(r.loops.over_links.is_empty(), "{ctx}");
    assert_eq!(r.loops.repeated_on_a_link, 0, "{ctx}");
    assert_eq!(r.loops.pushed_back, 0, "{ctx}");
    assert_eq!(r.fault_loops.pushed_back, 0, "{ctx}");
    // The faults happened.
    let (lost, cut, restarts) = r.faults;
    assert!(lost > 0 && cut > 0 && restarts == cfg.restarts, "{ctx}");
    // Traffic per event per instance stays within the links: an event crosses each link
    // at most once, and each call has one answer.
    assert!(
        r.per_event.messages_max <= 2.0 * r.links.2 as f64 + 2.0,
        "{ctx}"
    );
    r
}

fn ci_size() -> EngineSimConfig {
    EngineSimConfig {
        nodes: 8,
        max_degree: 3,
        max_gossip_peers: 8,
        heartbeat: Duration::from_secs(30),
        writes: 20,
        fault_writes: 10,
        loss: 0.1,
        partition_rounds: 2,
        restarts: 1,
        max_rounds: 40,
        verbose: true,
        ..EngineSimConfig::default()
    }
}

#[test]
fn eight_engines_discover_converge_without_loops_and_heal_after_loss_partition_and_restart() {
    simulate(ci_size());
}

/// The hub-seeded variant: nobody configures a peer; the hub lists everyone, and each
/// instance links at most `[sync.hub] max_peers` of them (its ring successor first), gossip
/// adding at most `max_gossip_peers` more (both 1 here). The mesh still converges through
/// every fault, and it is not the full mesh the hub's list would give: each link is opened
/// by one of its ends, each instance opens at most 1 + 1, so the mean number of links per
/// instance is at most 4 (7 each when every listed peer was linked).
#[test]
fn eight_engines_seeded_by_a_hub_link_a_bounded_mesh_and_converge() {
    let cfg = EngineSimConfig {
        hub: true,
        hub_max_peers: 1,
        max_gossip_peers: 1,
        ..ci_size()
    };
    let r = simulate(cfg);
    assert!(r.links.1 <= 4.0, "mean links {}: {r:?}", r.links.1);
}

/// Pulls in pages of two events: every catch-up after the partition and the restart is a
/// chain of pages fetched and checked ahead of the writer (`pull_ahead`), with messages
/// lost mid-chain. Still converges, and still no event twice on a link.
#[test]
fn eight_engines_converge_when_every_pull_is_a_chain_of_small_pages() {
    let cfg = EngineSimConfig {
        pull_batch: 2,
        ..ci_size()
    };
    simulate(cfg);
}
