//! The engine simulation's scenario (issue 8, item 6): `nodes` real engines with real
//! stores on a [`SimNet`], one shared hive, gossip discovery from one seed peer each,
//! concurrent writes, faults. See [`run`].

use super::net::{SimNet, Traffic};
use crate::admin::{self, AddPeer};
use crate::admission::TrustedHub;
use crate::engine::{LocalIdentity, OnChanges, SyncEngine, SyncHandle, SyncSettings};
use crate::hub_client::HubPeer;
use openhive_core::ids::{self, Kind};
use openhive_core::payload::{
    AgentRef, CommentCreated, HiveCreated, HiveSettings, Payload, PostCreated, TargetType,
    VoteCast, VoterRef,
};
use openhive_core::time::now_ms;
use openhive_core::{InstanceKey, Introduction, IntroductionKind, SharedKey};
use openhive_store::materialize::state_digest;
use openhive_store::sync_state::{self, LinkState, PeerSource};
use openhive_store::{Store, StoreError, hives, ingest, introductions, log};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The hive every instance shares.
pub const HIVE: &str = "sim";

/// What to simulate.
#[derive(Debug, Clone)]
pub struct EngineSimConfig {
    pub nodes: usize,
    /// Most seed pairings of one instance (the seed topology is a random tree).
    pub max_degree: usize,
    /// `[sync.gossip] max_gossip_peers`: gossip-sourced peers per hive.
    pub max_gossip_peers: usize,
    /// `[sync] heartbeat_interval`.
    pub heartbeat: Duration,
    /// Concurrent writes of the clean phase (b).
    pub writes: usize,
    /// Writes of the fault phase (e): half at its start, half in the middle of the partition.
    pub fault_writes: usize,
    /// Message loss probability during the fault phase.
    pub loss: f64,
    /// Heartbeat rounds the partition lasts (0: none).
    pub partition_rounds: u64,
    /// Instances restarted during the fault phase (each down 1-3 rounds).
    pub restarts: usize,
    /// One-way message latency, uniform in this range.
    pub latency: (Duration, Duration),
    /// Gives up after this many heartbeat rounds per phase.
    pub max_rounds: u64,
    /// Hub-seeded instead of seed-tree: every instance is registered with one MAP hub (an
    /// introduction of kind `hub` signed by the hub's key, the hub trusted by every
    /// engine), and gets the hub's peer list (every other instance, online) through the hub
    /// client's own `apply_peers` with `[sync.hub] max_peers` = `hub_max_peers`; no peer is
    /// configured. The hub's HTTP side is not simulated: the list is handed over at once.
    pub hub: bool,
    /// `[sync.hub] max_peers` of the hub-seeded variant.
    pub hub_max_peers: usize,
    /// `[sync] pull_batch`: events per pulled page (small: every pull is a chain of pages
    /// fetched ahead of the writer, some of them lost).
    pub pull_batch: i64,
    /// Prints progress lines.
    pub verbose: bool,
}

impl Default for EngineSimConfig {
    fn default() -> Self {
        EngineSimConfig {
            nodes: 30,
            max_degree: 8,
            max_gossip_peers: 8,
            heartbeat: Duration::from_secs(30),
            writes: 100,
            fault_writes: 40,
            loss: 0.05,
            partition_rounds: 3,
            restarts: 2,
            latency: (Duration::from_millis(5), Duration::from_millis(50)),
            max_rounds: 60,
            hub: false,
            hub_max_peers: crate::hub_client::DEFAULT_MAX_HUB_PEERS,
            pull_batch: crate::protocol::DEFAULT_PULL_LIMIT,
            verbose: false,
        }
    }
}

/// A duration of virtual time, and in heartbeat rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub virtual_time: Duration,
    pub rounds: f64,
}

/// Per-event traffic of one phase, over the instances.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PerEvent {
    pub messages_mean: f64,
    pub messages_max: f64,
    pub bytes_mean: f64,
    pub bytes_max: f64,
    /// Calls made during the phase, all instances, by kind.
    pub calls: Vec<(&'static str, u64)>,
}

/// The loop checks of one phase.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoopCheck {
    /// Receptions of an event the instance already held, all instances.
    pub duplicates: u64,
    /// The most duplicates of one instance.
    pub duplicates_max: u64,
    /// Instances where one event arrived more often than the instance has links.
    pub over_links: Vec<(usize, u32, usize)>,
    /// Events received twice over the same link (instance, from).
    pub repeated_on_a_link: usize,
    /// The first few of them: (instance, from, event id, calls that carried it).
    pub repeated_examples: Vec<(usize, usize, String, Vec<&'static str>)>,
    /// Events pushed to the peer they came from.
    pub pushed_back: usize,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSimReport {
    pub seed: u64,
    pub nodes: usize,
    /// Until every instance's roster of the hive holds every instance.
    pub discovery: Span,
    /// Links per instance after discovery: min, mean, max.
    pub links: (usize, f64, usize),
    /// Phase (b): from the writes until all state digests are equal.
    pub convergence: Span,
    pub per_event: PerEvent,
    pub loops: LoopCheck,
    /// Phase (e): from the heal until all state digests are equal, and from its start.
    pub fault_convergence: Span,
    pub fault_total: Span,
    pub fault_loops: LoopCheck,
    /// Messages lost, calls cut (partition, down instance), restarts done.
    pub faults: (u64, u64, usize),
    /// Events in the hive's log at the end (every instance holds them all).
    pub events: i64,
    pub wall: Duration,
}

struct Node {
    store: Store,
    me: LocalIdentity,
    agent: AgentRef,
    hive_id: String,
    handle: Option<SyncHandle>,
    /// Posts this instance can comment and vote on.
    posts: Vec<String>,
    last_ts: i64,
}

fn endpoint(i: usize) -> String {
    format!("http://sim-{i}.test/sync/v1")
}

fn fail(seed: u64, msg: impl std::fmt::Display) -> String {
    format!("engine simulation failed (seed {seed}, replay with --seed {seed}): {msg}")
}

fn settings(cfg: &EngineSimConfig) -> SyncSettings {
    let mut s = SyncSettings {
        heartbeat_interval: cfg.heartbeat,
        pull_batch: cfg.pull_batch,
        ..SyncSettings::default()
    };
    s.gossip.enabled = true;
    s.gossip.max_gossip_peers = cfg.max_gossip_peers;
    s
}

async fn start(
    net: &Arc<SimNet>,
    i: usize,
    node: &Node,
    cfg: &EngineSimConfig,
    hub: Option<&TrustedHub>,
) -> Result<SyncHandle, String> {
    let s = settings(cfg);
    let transport = net.transport(i, s.handshake_secret.clone());
    let on_changes: OnChanges = Arc::new(|_| {});
    let h = SyncEngine::start_with_transport(
        node.store.clone(),
        node.me.clone(),
        s,
        on_changes,
        transport,
    )
    .await
    .map_err(|e| format!("starting instance {i}: {e}"))?;
    // As the hub client does at every start, from the stored registration.
    h.set_trusted_hub(hub.cloned());
    net.up(i, h.clone());
    Ok(h)
}

/// Signs and ingests `payload` as a local event of instance `i` (the write path of the
/// API: sign, check as a peer's event, `ingest::ingest`), then wakes its links as the
/// server's commit fan-out does.
async fn write_local(
    net: &SimNet,
    i: usize,
    node: &mut Node,
    payload: Payload,
) -> Result<String, String> {
    let h = node
        .handle
        .clone()
        .ok_or_else(|| format!("instance {i} is down"))?;
    let ts = now_ms().max(node.last_ts + 1);
    node.last_ts = ts;
    let key = node.me.key.get();
    let (iid, hive_id) = (node.me.instance_id.clone(), node.hive_id.clone());
    let id = node
        .store
        .write(move |tx| -> Result<String, StoreError> {
            let v = ingest::Verified::sign(&key, &iid, HIVE, &payload, ts)
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            ingest::ingest(tx, &hive_id, &v, None, now_ms())?;
            Ok(v.event().id.clone())
        })
        .await
        .map_err(|e| format!("local write on instance {i}: {e}"))?;
    net.note_local(i, &id);
    h.notify(&node.hive_id);
    Ok(id)
}

/// One random write on instance `i`: a post, or a comment or vote on a post it has.
async fn random_write(
    net: &SimNet,
    rng: &mut StdRng,
    i: usize,
    node: &mut Node,
    k: usize,
) -> Result<(), String> {
    let kind = if node.posts.is_empty() {
        0
    } else {
        rng.random_range(0..3u8)
    };
    let target = if node.posts.is_empty() {
        String::new()
    } else {
        node.posts[rng.random_range(0..node.posts.len())].clone()
    };
    let iid = node.me.instance_id.clone();
    let payload = match kind {
        0 => {
            let post_id = ids::new_id(Kind::Post, &iid);
            node.posts.push(post_id.clone());
            Payload::PostCreated(PostCreated {
                post_id,
                title: format!("post {k} from instance {i}"),
                content: Some(format!("write {k}")),
                url: None,
                author: node.agent.clone(),
            })
        }
        1 => Payload::CommentCreated(CommentCreated {
            comment_id: ids::new_id(Kind::Comment, &iid),
            post_id: target,
            parent_comment_id: None,
            content: format!("comment {k} from instance {i}"),
            author: node.agent.clone(),
        }),
        _ => Payload::VoteCast(VoteCast {
            target_type: TargetType::Post,
            target_id: target,
            voter: VoterRef {
                instance_id: iid,
                agent_id: node.agent.agent_id.clone(),
            },
            value: if rng.random_bool(0.7) { 1 } else { -1 },
        }),
    };
    write_local(net, i, node, payload).await.map(|_| ())
}

/// True once every instance's roster of the hive holds all `n` instances.
async fn discovered(nodes: &[Node]) -> Result<bool, String> {
    let n = nodes.len();
    for node in nodes {
        let hive = node.hive_id.clone();
        let members = node
            .store
            .read(move |c| sync_state::roster(c, &hive))
            .await
            .map_err(|e| e.to_string())?;
        if members.len() < n {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Every instance's (state digest, log head) if they are all equal and the log holds at
/// least `events`.
async fn converged(nodes: &[Node], events: i64) -> Result<Option<i64>, String> {
    let mut first: Option<(String, i64)> = None;
    for node in nodes {
        let hive = node.hive_id.clone();
        let got = node
            .store
            .read(move |c| -> Result<_, StoreError> {
                Ok((state_digest(c, &hive)?, log::head(c, &hive)?))
            })
            .await
            .map_err(|e| e.to_string())?;
        if got.1 < events {
            return Ok(None);
        }
        match &first {
            None => first = Some(got),
            Some(f) if *f != got => return Ok(None),
            Some(_) => {}
        }
    }
    Ok(first.map(|f| f.1))
}

/// Live links of each instance.
async fn links(nodes: &[Node]) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for node in nodes {
        let hive = node.hive_id.clone();
        let l = node
            .store
            .read(move |c| sync_state::links_for_hive(c, &hive))
            .await
            .map_err(|e| e.to_string())?;
        out.push(l.iter().filter(|l| l.state != LinkState::Left).count());
    }
    Ok(out)
}

fn span(from: Instant, heartbeat: Duration) -> Span {
    let d = from.elapsed();
    Span {
        virtual_time: d,
        rounds: d.as_secs_f64() / heartbeat.as_secs_f64(),
    }
}

fn per_event(before: &[Traffic], after: &[Traffic], events: usize) -> PerEvent {
    let ev = events.max(1) as f64;
    let diffs: Vec<Traffic> = after.iter().zip(before).map(|(a, b)| a.since(b)).collect();
    let n = diffs.len().max(1) as f64;
    let msgs: Vec<f64> = diffs.iter().map(|t| t.messages as f64 / ev).collect();
    let bytes: Vec<f64> = diffs.iter().map(|t| t.bytes as f64 / ev).collect();
    let mut calls = std::collections::BTreeMap::new();
    for t in &diffs {
        for (k, v) in &t.calls {
            *calls.entry(*k).or_insert(0u64) += v;
        }
    }
    PerEvent {
        messages_mean: msgs.iter().sum::<f64>() / n,
        messages_max: msgs.iter().copied().fold(0.0, f64::max),
        bytes_mean: bytes.iter().sum::<f64>() / n,
        bytes_max: bytes.iter().copied().fold(0.0, f64::max),
        calls: calls.into_iter().collect(),
    }
}

/// The loop checks over what the network recorded since the phase began. An event went
/// back to the peer it came from if the sender's log says it received it from that peer.
async fn loop_check(net: &SimNet, nodes: &[Node], links: &[usize]) -> Result<LoopCheck, String> {
    let n = links.len();
    let pushes: Vec<(usize, usize, String)> = net.with_deliveries(|d| d.pushes().to_vec());
    let mut came_from: HashMap<(usize, String), String> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let hive = node.hive_id.clone();
        let logged = node
            .store
            .read(move |c| log::since(c, &hive, 0, 1_000_000))
            .await
            .map_err(|e| e.to_string())?;
        for e in logged {
            if let Some(f) = e.received_from {
                came_from.insert((i, e.event.id), f);
            }
        }
    }
    let pushed_back = pushes
        .iter()
        .filter(|(from, to, id)| {
            came_from.get(&(*from, id.clone())) == Some(&nodes[*to].me.instance_id)
        })
        .count();
    Ok(net.with_deliveries(|d| {
        let dups = d.duplicates(n);
        let over_links = d
            .max_receptions(n)
            .iter()
            .enumerate()
            .filter(|(i, m)| **m as usize > links[*i])
            .map(|(i, m)| (i, *m, links[i]))
            .collect();
        LoopCheck {
            duplicates: dups.iter().sum(),
            duplicates_max: dups.iter().copied().max().unwrap_or(0),
            over_links,
            repeated_on_a_link: d.repeated_on_a_link().len(),
            repeated_examples: d.repeated_on_a_link().into_iter().take(8).collect(),
            pushed_back,
        }
    }))
}

/// Waits (virtual time, checking every `step`) until all digests are equal over at least
/// `events` events; `None` after `limit`.
async fn await_convergence(
    nodes: &[Node],
    events: i64,
    step: Duration,
    limit: Duration,
) -> Result<Option<i64>, String> {
    let t0 = Instant::now();
    loop {
        if let Some(head) = converged(nodes, events).await? {
            return Ok(Some(head));
        }
        if t0.elapsed() > limit {
            return Ok(None);
        }
        tokio::time::sleep(step).await;
    }
}

/// The seed topology: a random tree of degree ≤ `max_degree`, paired both ways (each side
/// configures the other). Returns when the pairings were made.
async fn seed_tree(
    nodes: &[Node],
    rng: &mut StdRng,
    max_degree: usize,
    log: &dyn Fn(String),
) -> Result<Instant, String> {
    let n = nodes.len();
    let mut degree = vec![0usize; n];
    let mut edges = Vec::new();
    for i in 1..n {
        let open: Vec<usize> = (0..i).filter(|s| degree[*s] < max_degree.max(2)).collect();
        let s = if open.is_empty() {
            rng.random_range(0..i)
        } else {
            open[rng.random_range(0..open.len())]
        };
        degree[i] += 1;
        degree[s] += 1;
        edges.push((i, s));
    }
    log(format!(
        "{n} instances up; seed tree: {} pairings, max degree {}",
        edges.len(),
        degree.iter().max().copied().unwrap_or(0)
    ));
    let t_discovery = Instant::now();
    for (a, b) in &edges {
        for (x, y) in [(*a, *b), (*b, *a)] {
            let Some(h) = nodes[x].handle.clone() else {
                continue;
            };
            admin::add_peer_with_source(
                &h,
                AddPeer {
                    name: format!("sim-{y}"),
                    sync_endpoint: endpoint(y),
                    shared_hives: vec![HIVE.into()],
                },
                PeerSource::Config,
            )
            .await
            .map_err(|e| format!("instance {x}: adding peer {y}: {e}"))?;
        }
    }
    Ok(t_discovery)
}

/// The hub-seeded start: each instance holds the hub's introduction of itself (as its
/// registration stores it) and applies the hub's peer list (every other instance, online,
/// sharing the hive) as the hub client does, then its engine picks up the links.
async fn register_with_hub(
    nodes: &[Node],
    hub: &TrustedHub,
    hub_key: &InstanceKey,
    max_peers: usize,
) -> Result<(), String> {
    let listed: Vec<HubPeer> = nodes
        .iter()
        .map(|n| HubPeer {
            swarm_id: format!("swarm_{}", n.me.instance_id),
            instance_id: n.me.instance_id.clone(),
            name: n.me.instance_name.clone(),
            sync_endpoint: n.me.sync_endpoint.clone(),
            signing_key: n.me.key.get().public().to_base64(),
            shared_hives: vec![HIVE.into()],
            status: "online".into(),
            capabilities: serde_json::json!({ "hive_sync": true }),
            map_endpoint: None,
            last_seen_at: String::new(),
        })
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        let Some(h) = node.handle.clone() else {
            continue;
        };
        let now = now_ms();
        let intro = Introduction::sign(
            hub_key,
            IntroductionKind::Hub,
            &hub.instance_id,
            &node.me.instance_id,
            &node.me.key.get().public().to_base64(),
            &node.me.sync_endpoint,
            vec![HIVE.into()],
            now - 1000,
            now + 24 * 3600 * 1000,
        );
        let me = node.me.instance_id.clone();
        let peers: Vec<HubPeer> = listed
            .iter()
            .filter(|p| p.instance_id != me)
            .cloned()
            .collect();
        node.store
            .write(move |tx| -> Result<(), StoreError> {
                introductions::put_own(tx, &intro, now)?;
                crate::hub_client::apply_peers(tx, &me, &peers, max_peers, now)?;
                Ok(())
            })
            .await
            .map_err(|e| format!("instance {i}: registering with the hub: {e}"))?;
        h.reconcile()
            .await
            .map_err(|e| format!("instance {i}: starting the hub links: {e}"))?;
    }
    Ok(())
}

/// A fault of the fault phase, at a heartbeat round.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Write(usize),
    Cut,
    Heal,
    Down(usize),
    Up(usize),
}

/// Runs the scenario. Must run on a current-thread runtime with a paused clock
/// (`tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true)`);
/// `open(i)` opens instance `i`'s empty store.
///
/// 1. **Discovery**: instance `i > 0` pairs with one earlier instance (a random tree of
///    degree ≤ `max_degree`: both configure each other, as an admin would), instance 0
///    creates the hive; every instance enables its sync group. Gossip does the rest:
///    measured until every instance's roster of the hive holds every instance ("knows
///    every peer of its hives" is the roster: links are capped by `max_gossip_peers`).
/// 2. **Concurrent writes**: `writes` posts, comments and votes on random instances at the
///    same instant; measured until every state digest is equal; messages and bytes per
///    event per instance; duplicates and loop checks (each event arrives at most once per
///    link, never pushed back to the peer it came from).
/// 3. **Faults**: message loss, a partition in two random halves, restarts (a new engine on
///    the same store), writes on both sides; after healing, until the digests are equal.
///
/// Deterministic from `seed`: topology, writes (instance, kind, target), fault schedule.
/// Ids and keys are random, and the order in which concurrent tasks draw losses and
/// latencies depends on thread timing (stores run on their own threads), so a replay has the
/// same scenario, not the same interleaving.
pub async fn run(
    seed: u64,
    cfg: &EngineSimConfig,
    open: &dyn Fn(usize) -> Result<Store, String>,
) -> Result<EngineSimReport, String> {
    let wall = std::time::Instant::now();
    let n = cfg.nodes.max(2);
    let mut rng = StdRng::seed_from_u64(seed);
    let endpoints: Vec<String> = (0..n).map(endpoint).collect();
    let net = SimNet::new(&endpoints, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    net.set_latency(cfg.latency.0, cfg.latency.1);
    let hb = cfg.heartbeat;
    let t_start = Instant::now();
    let log = |m: String| {
        if cfg.verbose {
            println!(
                "  [{:>8.1}s virtual, {:>6.1}s wall] {m}",
                t_start.elapsed().as_secs_f64(),
                wall.elapsed().as_secs_f64()
            );
        }
    };
    log(format!("opening {n} stores"));
    // The MAP hub of the hub-seeded variant: an identity whose introductions every engine
    // trusts.
    let hub_key = InstanceKey::generate();
    let hub = cfg.hub.then(|| TrustedHub {
        instance_id: ids::new_instance_id(),
        key: hub_key.public(),
    });

    // Instances.
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let store = open(i).map_err(|e| fail(seed, format!("opening store {i}: {e}")))?;
        store.hold_paused_clock();
        let instance_id = ids::new_instance_id();
        let agent = AgentRef {
            instance_id: instance_id.clone(),
            agent_id: ids::new_id(Kind::Agent, &instance_id),
            name: format!("agent-{i}"),
            avatar_url: None,
        };
        let me = LocalIdentity {
            instance_id,
            instance_name: format!("sim-{i}"),
            key: SharedKey::new(InstanceKey::generate()),
            sync_endpoint: endpoint(i),
        };
        let mut node = Node {
            store,
            me,
            agent,
            hive_id: String::new(),
            handle: None,
            posts: Vec::new(),
            last_ts: 0,
        };
        node.handle = Some(
            start(&net, i, &node, cfg, hub.as_ref())
                .await
                .map_err(|e| fail(seed, e))?,
        );
        nodes.push(node);
    }

    // The hive, created on instance 0 with one post; every instance enables the group.
    let hive_id = nodes[0]
        .store
        .write(|tx| hives::ensure_log(tx, HIVE))
        .await
        .map_err(|e| fail(seed, e))?;
    nodes[0].hive_id = hive_id;
    let owner = nodes[0].agent.clone();
    write_local(
        &net,
        0,
        &mut nodes[0],
        Payload::HiveCreated(HiveCreated {
            name: HIVE.into(),
            description: "engine simulation".into(),
            is_public: true,
            settings: HiveSettings::default(),
            owner: owner.clone(),
        }),
    )
    .await
    .map_err(|e| fail(seed, e))?;
    let first_post = ids::new_id(Kind::Post, &nodes[0].me.instance_id);
    write_local(
        &net,
        0,
        &mut nodes[0],
        Payload::PostCreated(PostCreated {
            post_id: first_post.clone(),
            title: "welcome".into(),
            content: Some("first post".into()),
            url: None,
            author: owner,
        }),
    )
    .await
    .map_err(|e| fail(seed, e))?;
    for (i, node) in nodes.iter_mut().enumerate() {
        let Some(h) = node.handle.clone() else {
            continue;
        };
        admin::create_group(&h, HIVE)
            .await
            .map_err(|e| fail(seed, format!("instance {i}: enabling the group: {e}")))?;
        node.hive_id = node
            .store
            .read(|c| hives::id_by_name(c, HIVE))
            .await
            .map_err(|e| fail(seed, e))?
            .ok_or_else(|| fail(seed, format!("instance {i}: no hive log after enabling")))?;
        node.posts.push(first_post.clone());
    }

    let t_discovery = if let Some(hub) = &hub {
        register_with_hub(&nodes, hub, &hub_key, cfg.hub_max_peers)
            .await
            .map_err(|e| fail(seed, e))?;
        log(format!(
            "{n} instances up, registered with one hub (max_peers {})",
            cfg.hub_max_peers
        ));
        Instant::now()
    } else {
        seed_tree(&nodes, &mut rng, cfg.max_degree, &log)
            .await
            .map_err(|e| fail(seed, e))?
    };

    // (a) Discovery.
    let step = hb / 10;
    let limit = hb * cfg.max_rounds as u32;
    loop {
        if discovered(&nodes).await.map_err(|e| fail(seed, e))? {
            break;
        }
        if t_discovery.elapsed() > limit {
            return Err(fail(
                seed,
                format!("discovery incomplete after {} rounds", cfg.max_rounds),
            ));
        }
        tokio::time::sleep(step).await;
    }
    let discovery = span(t_discovery, hb);
    log(format!(
        "discovery: every roster complete after {:.1} rounds ({:.0} s)",
        discovery.rounds,
        discovery.virtual_time.as_secs_f64()
    ));
    let conv_step = Duration::from_millis(250);
    let mut events: i64 = 2;
    if await_convergence(&nodes, events, conv_step, limit)
        .await
        .map_err(|e| fail(seed, e))?
        .is_none()
    {
        return Err(fail(seed, "the hive did not reach every instance"));
    }
    let link_counts = links(&nodes).await.map_err(|e| fail(seed, e))?;
    let links_summary = (
        link_counts.iter().copied().min().unwrap_or(0),
        link_counts.iter().sum::<usize>() as f64 / n as f64,
        link_counts.iter().copied().max().unwrap_or(0),
    );
    log(format!(
        "links per instance: min {} mean {:.1} max {}",
        links_summary.0, links_summary.1, links_summary.2
    ));

    // (b) Concurrent writes, no faults.
    net.with_deliveries(|d| d.clear());
    let before = net.traffic();
    let t_writes = Instant::now();
    for k in 0..cfg.writes {
        let i = rng.random_range(0..n);
        random_write(&net, &mut rng, i, &mut nodes[i], k)
            .await
            .map_err(|e| fail(seed, e))?;
    }
    events += cfg.writes as i64;
    if await_convergence(&nodes, events, conv_step, limit)
        .await
        .map_err(|e| fail(seed, e))?
        .is_none()
    {
        return Err(fail(
            seed,
            format!("no convergence {} rounds after the writes", cfg.max_rounds),
        ));
    }
    let convergence = span(t_writes, hb);
    let per_event = per_event(&before, &net.traffic(), cfg.writes);
    let link_counts = links(&nodes).await.map_err(|e| fail(seed, e))?;
    let loops = loop_check(&net, &nodes, &link_counts)
        .await
        .map_err(|e| fail(seed, e))?;
    log(format!(
        "{} writes converged after {:.2} rounds ({:.1} s); per event per instance: {:.2} messages (max {:.2}), {:.0} bytes (max {:.0}); duplicates {} (max {} on one instance)",
        cfg.writes,
        convergence.rounds,
        convergence.virtual_time.as_secs_f64(),
        per_event.messages_mean,
        per_event.messages_max,
        per_event.bytes_mean,
        per_event.bytes_max,
        loops.duplicates,
        loops.duplicates_max
    ));
    if !loops.over_links.is_empty() || loops.repeated_on_a_link > 0 || loops.pushed_back > 0 {
        return Err(fail(
            seed,
            format!("event loop in the clean phase: {loops:?}"),
        ));
    }

    // (e) Faults: loss, a partition, restarts, writes on both sides; then heal.
    net.with_deliveries(|d| d.clear());
    let mut schedule: Vec<(u64, Fault)> = Vec::new();
    let first_half = cfg.fault_writes / 2;
    for _ in 0..first_half {
        schedule.push((0, Fault::Write(rng.random_range(0..n))));
    }
    let cut_at = 1;
    let heal_at = cut_at + cfg.partition_rounds;
    if cfg.partition_rounds > 0 {
        schedule.push((cut_at, Fault::Cut));
        schedule.push((heal_at, Fault::Heal));
    }
    let mid = cut_at + cfg.partition_rounds / 2;
    for _ in first_half..cfg.fault_writes {
        schedule.push((mid, Fault::Write(rng.random_range(0..n))));
    }
    let mut restarted: Vec<usize> = Vec::new();
    while restarted.len() < cfg.restarts.min(n) {
        let i = rng.random_range(0..n);
        if restarted.contains(&i) {
            continue;
        }
        restarted.push(i);
        let down = rng.random_range(0..=heal_at);
        let up = down + rng.random_range(1..=3u64);
        schedule.push((down, Fault::Down(i)));
        schedule.push((up, Fault::Up(i)));
    }
    schedule.sort();
    let sides: Vec<u8> = (0..n).map(|_| rng.random_range(0..2u8)).collect();
    let last_round = schedule.last().map(|(r, _)| *r).unwrap_or(0);
    net.set_loss(cfg.loss);
    let t_faults = Instant::now();
    let mut k = cfg.writes;
    let mut restarts_done = 0;
    for round in 0..=last_round {
        for (_, f) in schedule.iter().filter(|(r, _)| *r == round) {
            match f {
                Fault::Write(i) => {
                    // A down instance takes no writes: the next one up does.
                    let Some(i) = (0..n)
                        .map(|d| (i + d) % n)
                        .find(|j| nodes[*j].handle.is_some())
                    else {
                        continue;
                    };
                    random_write(&net, &mut rng, i, &mut nodes[i], k)
                        .await
                        .map_err(|e| fail(seed, e))?;
                    k += 1;
                    events += 1;
                }
                Fault::Cut => {
                    net.partition(Some(sides.clone()));
                    log(format!(
                        "partition: {} | {} instances",
                        sides.iter().filter(|s| **s == 0).count(),
                        sides.iter().filter(|s| **s == 1).count()
                    ));
                }
                Fault::Heal => net.partition(None),
                Fault::Down(i) => {
                    net.down(*i);
                    if let Some(h) = nodes[*i].handle.take() {
                        h.shutdown(Duration::from_secs(5)).await;
                    }
                    log(format!("instance {i} down"));
                }
                Fault::Up(i) => {
                    let h = start(&net, *i, &nodes[*i], cfg, hub.as_ref())
                        .await
                        .map_err(|e| fail(seed, e))?;
                    nodes[*i].handle = Some(h);
                    restarts_done += 1;
                    log(format!("instance {i} restarted on its store"));
                }
            }
        }
        if round < last_round {
            tokio::time::sleep(hb).await;
        }
    }
    net.set_loss(0.0);
    net.partition(None);
    let t_heal = Instant::now();
    log(format!(
        "faults over after {} rounds; {} writes in the fault phase",
        last_round + 1,
        cfg.fault_writes
    ));
    let head = await_convergence(&nodes, events, conv_step, limit)
        .await
        .map_err(|e| fail(seed, e))?
        .ok_or_else(|| {
            fail(
                seed,
                format!("no convergence {} rounds after healing", cfg.max_rounds),
            )
        })?;
    let fault_convergence = span(t_heal, hb);
    let fault_total = span(t_faults, hb);
    let link_counts = links(&nodes).await.map_err(|e| fail(seed, e))?;
    let fault_loops = loop_check(&net, &nodes, &link_counts)
        .await
        .map_err(|e| fail(seed, e))?;
    let (lost, cut) = net.faults();
    log(format!(
        "after healing: converged in {:.2} rounds ({:.1} s); {lost} messages lost, {cut} calls cut, {restarts_done} restarts; duplicates {}",
        fault_convergence.rounds,
        fault_convergence.virtual_time.as_secs_f64(),
        fault_loops.duplicates
    ));
    if fault_loops.pushed_back > 0 {
        return Err(fail(
            seed,
            format!("an event was pushed back to the peer it came from: {fault_loops:?}"),
        ));
    }
    for node in &mut nodes {
        if let Some(h) = node.handle.take() {
            h.shutdown(Duration::from_secs(5)).await;
        }
    }
    Ok(EngineSimReport {
        seed,
        nodes: n,
        discovery,
        links: links_summary,
        convergence,
        per_event,
        loops,
        fault_convergence,
        fault_total,
        fault_loops,
        faults: (lost, cut, restarts_done),
        events: head,
        wall: wall.elapsed(),
    })
}
