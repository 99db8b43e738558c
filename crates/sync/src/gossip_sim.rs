//! A deterministic, seeded simulation of peer discovery by gossip (issue 8, item 6): `nodes`
//! instances in a random topology of configured pairs (each instance configures one seed
//! peer, which configures it back; degree ≤ `max_degree`), virtual time in heartbeat rounds,
//! an in-memory network that loses messages, partitions and restarts instances.
//!
//! Every decision is the real one: which entries a heartbeat carries ([`gossip::select`],
//! [`gossip::Memory`] with virtual `Instant`s), what a receiver does with them
//! ([`gossip::judge`]), the TTL a peer is passed on with ([`gossip::share_ttl`]), the stale
//! cleanup rule, and the admission of an introduced handshake (an introduction by a member
//! of the responder's roster, real signatures checked). What is modelled: the transport
//! (a message is delivered or lost), the roster exchange (a heartbeat carries the sender's
//! roster of each shared hive) and the store (plain maps).
//!
//! Run it with `cargo run --release -p openhive-sync --example gossip_sim -- --help`.

use crate::gossip::{self, GossipSettings, Known, Memory, Outgoing, Verdict};
use crate::protocol::KnownPeer;
use openhive_core::{InstanceKey, Introduction, IntroductionKind, introduction::Claim};
use openhive_store::sync_state::PeerSource;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub max_degree: usize,
    /// Number of hives; each instance is in 1 or 2 of them.
    pub hives: usize,
    /// Probability that a message (heartbeat, answer, handshake) is lost.
    pub loss: f64,
    /// Rounds `[from, to)` during which the instances are cut in two halves.
    pub partition: Option<(u64, u64)>,
    /// Per round and instance, the probability that it restarts (down for 1-3 rounds, its
    /// in-memory gossip state lost).
    pub restart: f64,
    pub heartbeat: Duration,
    pub max_rounds: u64,
    pub settings: GossipSettings,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 100,
            max_degree: 8,
            hives: 3,
            loss: 0.05,
            partition: Some((3, 8)),
            restart: 0.005,
            heartbeat: Duration::from_secs(30),
            max_rounds: 400,
            settings: GossipSettings {
                // Every instance of a hive may know every other: the cap must not hide them.
                max_gossip_peers: 1000,
                exchange_interval: Duration::from_secs(30),
                ..GossipSettings::default()
            },
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    pub seed: u64,
    pub nodes: usize,
    /// The round at which every instance knew every instance it shares a hive with.
    pub discovered_at: Option<u64>,
    /// The round at which every such pair had paired (a link, both ways).
    pub paired_at: Option<u64>,
    pub heartbeat: Duration,
    /// Messages (heartbeats, answers, handshakes) sent until `paired_at` (or the end).
    pub messages: u64,
    /// Their bytes (JSON of the gossip parts plus a fixed envelope per message).
    pub bytes: u64,
    /// Gossip entries sent until `paired_at` (or the end), and in the 10 rounds after it.
    pub entries: u64,
    pub entries_idle: u64,
    pub handshakes: u64,
    pub refused: u64,
    pub removed: u64,
    /// Entries sent to the instance they are about, or back to the one that told us:
    /// always 0 (asserted by the test).
    pub loops: u64,
    /// Most configured peers of one instance.
    pub degree: usize,
    /// Links per instance at the end (mean).
    pub links_mean: f64,
}

impl SimReport {
    pub fn virtual_secs(&self, round: u64) -> u64 {
        round * self.heartbeat.as_secs()
    }
}

/// Bytes counted for one message besides its gossip part (headers, ids, groups).
const ENVELOPE_BYTES: u64 = 300;
const HANDSHAKE_BYTES: u64 = 1200;

#[derive(Debug, Clone)]
struct Peer {
    source: PeerSource,
    ttl: i64,
    via: Option<usize>,
    hives: BTreeSet<String>,
    paired: bool,
    failures: i64,
    last_contact: u64,
}

struct Node {
    id: String,
    endpoint: String,
    key: InstanceKey,
    public: String,
    hives: BTreeSet<String>,
    peers: BTreeMap<usize, Peer>,
    /// Introductions held for ourselves, by issuer.
    intros: BTreeMap<usize, Introduction>,
    roster: BTreeMap<String, BTreeSet<usize>>,
    memory: Memory,
    down_until: u64,
    /// Rounds since the last full heartbeat to each peer (the hourly refresh).
    last_full: HashMap<usize, u64>,
}

struct Net {
    nodes: Vec<Node>,
    rng: StdRng,
    cfg: SimConfig,
    base: Instant,
    round: u64,
    report: SimReport,
    counting: bool,
    idle_window: bool,
    by_id: HashMap<String, usize>,
}

/// Runs one simulation.
pub fn run(seed: u64, cfg: &SimConfig) -> SimReport {
    let mut net = Net::new(seed, cfg.clone());
    while net.round < cfg.max_rounds {
        net.round += 1;
        net.step();
        let (known, paired) = net.complete();
        if known && net.report.discovered_at.is_none() {
            net.report.discovered_at = Some(net.round);
        }
        if paired && net.report.paired_at.is_none() {
            net.report.paired_at = Some(net.round);
            net.counting = false;
            net.idle_window = true;
        }
        if net.report.paired_at.is_some_and(|at| net.round >= at + 10) {
            break;
        }
    }
    let links: usize = net
        .nodes
        .iter()
        .map(|n| n.peers.values().filter(|p| p.paired).count())
        .sum();
    net.report.links_mean = links as f64 / net.nodes.len().max(1) as f64;
    net.report
}

impl Net {
    fn new(seed: u64, cfg: SimConfig) -> Net {
        let mut rng = StdRng::seed_from_u64(seed);
        let names: Vec<String> = (0..cfg.hives.max(1)).map(|h| format!("hive{h}")).collect();
        let mut nodes = Vec::with_capacity(cfg.nodes);
        for i in 0..cfg.nodes {
            let mut seed_bytes = [0u8; 32];
            seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
            seed_bytes[8..16].copy_from_slice(&(i as u64).to_le_bytes());
            let key = InstanceKey::from_seed(&seed_bytes);
            let mut hives = BTreeSet::new();
            hives.insert(names[rng.random_range(0..names.len())].clone());
            if rng.random_bool(0.3) {
                hives.insert(names[rng.random_range(0..names.len())].clone());
            }
            nodes.push(Node {
                id: format!("inst_{:0>12}", base32(i)),
                endpoint: format!("http://10.0.{}.{}:3000/sync/v1", i / 250, i % 250),
                public: key.public().to_base64(),
                key,
                roster: hives
                    .iter()
                    .map(|h| (h.clone(), BTreeSet::from([i])))
                    .collect(),
                hives,
                peers: BTreeMap::new(),
                intros: BTreeMap::new(),
                memory: Memory::default(),
                down_until: 0,
                last_full: HashMap::new(),
            });
        }
        let by_id = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect();
        let mut net = Net {
            nodes,
            rng,
            report: SimReport {
                seed,
                nodes: cfg.nodes,
                discovered_at: None,
                paired_at: None,
                heartbeat: cfg.heartbeat,
                messages: 0,
                bytes: 0,
                entries: 0,
                entries_idle: 0,
                handshakes: 0,
                refused: 0,
                removed: 0,
                loops: 0,
                degree: 0,
                links_mean: 0.0,
            },
            cfg,
            base: Instant::now(),
            round: 0,
            counting: true,
            idle_window: false,
            by_id,
        };
        net.topology();
        net
    }

    /// For each of its hives, each instance configures one seed among the earlier instances
    /// of that hive with room left (none: it is the hive's first), which configures it back.
    fn topology(&mut self) {
        let mut degree = vec![0usize; self.nodes.len()];
        for i in 1..self.nodes.len() {
            for hive in self.nodes[i].hives.clone() {
                let candidates: Vec<usize> = (0..i)
                    .filter(|&j| {
                        degree[j] < self.cfg.max_degree
                            && self.nodes[j].hives.contains(&hive)
                            && !self.nodes[i].peers.contains_key(&j)
                    })
                    .collect();
                if candidates.is_empty() {
                    continue;
                }
                let j = candidates[self.rng.random_range(0..candidates.len())];
                self.configure(i, j, &mut degree);
            }
        }
        self.report.degree = degree.into_iter().max().unwrap_or(0);
    }

    fn configure(&mut self, i: usize, j: usize, degree: &mut [usize]) {
        {
            degree[i] += 1;
            degree[j] += 1;
            let shared: BTreeSet<String> = self.nodes[i]
                .hives
                .intersection(&self.nodes[j].hives)
                .cloned()
                .collect();
            for (a, b) in [(i, j), (j, i)] {
                self.nodes[a].peers.insert(
                    b,
                    Peer {
                        source: PeerSource::Api,
                        ttl: 0,
                        via: None,
                        hives: shared.clone(),
                        paired: false,
                        failures: 0,
                        last_contact: 0,
                    },
                );
            }
        }
    }

    fn now(&self) -> Instant {
        self.base + self.cfg.heartbeat * (self.round as u32)
    }

    fn now_ms(&self) -> i64 {
        1_800_000_000_000 + (self.round * self.cfg.heartbeat.as_millis() as u64) as i64
    }

    fn up(&self, i: usize) -> bool {
        self.nodes[i].down_until <= self.round
    }

    /// Whether a message from `a` to `b` arrives.
    fn delivered(&mut self, a: usize, b: usize) -> bool {
        if !self.up(a) || !self.up(b) {
            return false;
        }
        if let Some((from, to)) = self.cfg.partition
            && (from..to).contains(&self.round)
            && (a < self.nodes.len() / 2) != (b < self.nodes.len() / 2)
        {
            return false;
        }
        !self.rng.random_bool(self.cfg.loss)
    }

    /// Counts a message; `delta`: the entries it carries are a change, not a full resend
    /// (the first message after a start, the hourly refresh).
    fn count(&mut self, bytes: u64, entries: usize, delta: bool) {
        if self.counting {
            self.report.messages += 1;
            self.report.bytes += bytes;
            self.report.entries += entries as u64;
        } else if self.idle_window && delta {
            self.report.entries_idle += entries as u64;
        }
    }

    fn step(&mut self) {
        // Restarts: the instance is down for a few rounds and forgets what it told whom.
        for i in 0..self.nodes.len() {
            if self.up(i) && self.rng.random_bool(self.cfg.restart) {
                let down = self.rng.random_range(1..=3);
                self.nodes[i].down_until = self.round + down;
                self.nodes[i].memory = Memory::default();
                self.nodes[i].last_full.clear();
            }
        }
        // Handshakes of links without a token, then heartbeats of paired links.
        for i in 0..self.nodes.len() {
            if !self.up(i) {
                continue;
            }
            let todo: Vec<usize> = self.nodes[i]
                .peers
                .iter()
                .filter(|(_, p)| !p.paired)
                .map(|(&j, _)| j)
                .collect();
            for j in todo {
                self.handshake(i, j);
            }
        }
        for i in 0..self.nodes.len() {
            if !self.up(i) {
                continue;
            }
            let paired: Vec<usize> = self.nodes[i]
                .peers
                .iter()
                .filter(|(_, p)| p.paired)
                .map(|(&j, _)| j)
                .collect();
            for j in paired {
                self.heartbeat(i, j);
            }
        }
        self.cleanup();
    }

    fn fail(&mut self, i: usize, j: usize) {
        if let Some(p) = self.nodes[i].peers.get_mut(&j) {
            p.failures += 1;
        }
    }

    fn contact(&mut self, i: usize, j: usize) {
        let round = self.round;
        if let Some(p) = self.nodes[i].peers.get_mut(&j) {
            p.failures = 0;
            p.last_contact = round;
        }
    }

    /// `i` handshakes `j` for the hives of its link. Admitted as a configured peer (both
    /// configured each other), or on an introduction `i` holds by a member of `j`'s roster
    /// of the hive (checked with the real verification, proof of possession aside).
    fn handshake(&mut self, i: usize, j: usize) {
        let Some(link) = self.nodes[i].peers.get(&j).cloned() else {
            return;
        };
        self.report.handshakes += u64::from(self.counting);
        self.count(HANDSHAKE_BYTES, 0, false);
        if !self.delivered(i, j) {
            self.fail(i, j);
            return;
        }
        let configured = self.nodes[j]
            .peers
            .get(&i)
            .is_some_and(|p| p.source == PeerSource::Api);
        let now = self.now_ms();
        let mut admitted = BTreeSet::new();
        let mut issuer = None;
        for hive in &link.hives {
            if !self.nodes[j].hives.contains(hive) {
                continue;
            }
            if configured {
                admitted.insert(hive.clone());
                continue;
            }
            let members = self.nodes[j].roster.get(hive).cloned().unwrap_or_default();
            let vouched = self.nodes[i].intros.iter().find(|(m, intro)| {
                let claim = Claim {
                    instance_id: &self.nodes[i].id,
                    signing_key: &self.nodes[i].public,
                    sync_endpoint: &self.nodes[i].endpoint,
                    hive,
                };
                members.contains(m)
                    && **m != i
                    && intro
                        .verify(&self.nodes[**m].key.public(), claim, now)
                        .is_ok()
            });
            if let Some((&m, _)) = vouched {
                admitted.insert(hive.clone());
                issuer = Some(m);
            }
        }
        self.count(HANDSHAKE_BYTES, 0, false);
        if admitted.is_empty() {
            self.report.refused += u64::from(self.counting);
            self.fail(i, j);
            return;
        }
        if !self.delivered(j, i) {
            // The answer is lost: j paired, i did not (it retries; j's side is idempotent).
            self.accept(j, i, &admitted, issuer);
            self.fail(i, j);
            return;
        }
        self.accept(j, i, &admitted, issuer);
        self.accept(i, j, &admitted, None);
    }

    /// `me` records a completed handshake with `other` for `hives`.
    fn accept(&mut self, me: usize, other: usize, hives: &BTreeSet<String>, via: Option<usize>) {
        let round = self.round;
        let entry = self.nodes[me].peers.entry(other).or_insert(Peer {
            // A peer admitted on a peer introduction is gossip-sourced (ttl 1).
            source: if via.is_some() {
                PeerSource::Gossip
            } else {
                PeerSource::Handshake
            },
            ttl: 1,
            via,
            hives: BTreeSet::new(),
            paired: false,
            failures: 0,
            last_contact: round,
        });
        entry.paired = true;
        entry.failures = 0;
        entry.last_contact = round;
        entry.hives.extend(hives.iter().cloned());
        let their: Vec<(String, BTreeSet<usize>)> = hives
            .iter()
            .map(|h| {
                (
                    h.clone(),
                    self.nodes[other].roster.get(h).cloned().unwrap_or_default(),
                )
            })
            .collect();
        for (h, members) in their {
            let r = self.nodes[me].roster.entry(h).or_default();
            r.insert(other);
            r.extend(members);
        }
        self.nodes[me].memory.bump();
    }

    /// The gossip part of a message from `i` to `j`.
    fn outgoing(&mut self, i: usize, j: usize) -> (gossip::Plan, Outgoing) {
        let now = self.now();
        let hourly = (3600 / self.cfg.heartbeat.as_secs().max(1)).max(1);
        let full = self.nodes[i]
            .last_full
            .get(&j)
            .is_none_or(|r| self.round >= r + hourly);
        if full {
            self.nodes[i].last_full.insert(j, self.round);
        }
        let empty = Default::default();
        let node = &self.nodes[i];
        let plan = node.memory.plan(
            &self.nodes[j].id,
            (!full).then_some(&empty),
            &self.cfg.settings,
            now,
        );
        let sent = node.memory.sent(&self.nodes[j].id, &plan);
        let shared = node
            .peers
            .get(&j)
            .map(|p| p.hives.clone())
            .unwrap_or_default();
        let mut out = Outgoing::default();
        if plan.gossip.is_some() {
            let known: Vec<Known> = node
                .peers
                .iter()
                .filter(|(k, p)| p.paired && p.failures == 0 && **k != j)
                .map(|(&k, p)| Known {
                    instance_id: self.nodes[k].id.clone(),
                    name: self.nodes[k].id.clone(),
                    endpoint: self.nodes[k].endpoint.clone(),
                    signing_key: self.nodes[k].public.clone(),
                    hives: p.hives.clone(),
                    ttl: gossip::share_ttl(p.source, p.ttl, &self.cfg.settings),
                    via: p.via.map(|v| self.nodes[v].id.clone()),
                })
                .collect();
            out.known_peers = gossip::select(
                &known,
                &self.nodes[j].id,
                &shared,
                &sent,
                self.cfg.settings.max_gossip_peers,
            );
        }
        if plan.introduction && !shared.is_empty() {
            let t = self.now_ms();
            out.introduction = Some(Introduction::sign(
                &node.key,
                IntroductionKind::Peer,
                &node.id,
                &self.nodes[j].id,
                &self.nodes[j].public,
                &self.nodes[j].endpoint,
                shared.iter().cloned().collect(),
                t,
                t + gossip::INTRODUCTION_TTL_MS,
            ));
            out.introduced_hives = Some(Default::default());
        }
        (plan, out)
    }

    fn heartbeat(&mut self, i: usize, j: usize) {
        let (plan, out) = self.outgoing(i, j);
        let key = self.nodes[j].id.clone();
        self.nodes[i].memory.record(&key, &plan, &out, self.now());
        let bytes = ENVELOPE_BYTES + json_len(&out);
        self.count(bytes, out.known_peers.len(), plan.gossip == Some(false));
        self.check_loops(i, j, &out.known_peers);
        if !self.delivered(i, j) {
            self.nodes[i].memory.give_back(&key);
            self.fail(i, j);
            return;
        }
        // `j` removed `i` meanwhile (stale): the token is refused, `i` handshakes again.
        if !self.nodes[j].peers.get(&i).is_some_and(|p| p.paired) {
            if let Some(p) = self.nodes[i].peers.get_mut(&j) {
                p.paired = false;
            }
            self.fail(i, j);
            return;
        }
        self.contact(j, i);
        self.incoming(j, i, &out);
        let (plan2, answer) = self.outgoing(j, i);
        let back = self.nodes[i].id.clone();
        self.nodes[j]
            .memory
            .record(&back, &plan2, &answer, self.now());
        let bytes = ENVELOPE_BYTES + json_len(&answer);
        self.count(bytes, answer.known_peers.len(), plan2.gossip == Some(false));
        self.check_loops(j, i, &answer.known_peers);
        if !self.delivered(j, i) {
            self.nodes[j].memory.give_back(&back);
            self.nodes[i].memory.give_back(&key);
            self.fail(i, j);
            return;
        }
        self.contact(i, j);
        self.incoming(i, j, &answer);
    }

    fn check_loops(&mut self, from: usize, to: usize, entries: &[KnownPeer]) {
        for e in entries {
            let about = self.by_id.get(&e.instance_id).copied();
            let via = about.and_then(|a| self.nodes[from].peers.get(&a).and_then(|p| p.via));
            if about == Some(to) || via == Some(to) {
                self.report.loops += 1;
            }
        }
    }

    /// `me` applies the gossip part of a message from `from`: rosters, introduction, entries.
    fn incoming(&mut self, me: usize, from: usize, out: &Outgoing) {
        let shared = self.nodes[me]
            .peers
            .get(&from)
            .map(|p| p.hives.clone())
            .unwrap_or_default();
        // The groups of a heartbeat carry the sender's rosters.
        for h in &shared {
            let theirs = self.nodes[from].roster.get(h).cloned().unwrap_or_default();
            self.nodes[me]
                .roster
                .entry(h.clone())
                .or_default()
                .extend(theirs);
        }
        if let Some(i) = &out.introduction {
            let hive = i.hives.first().cloned().unwrap_or_default();
            let claim = Claim {
                instance_id: &self.nodes[me].id,
                signing_key: &self.nodes[me].public,
                sync_endpoint: &self.nodes[me].endpoint,
                hive: &hive,
            };
            if i.verify(&self.nodes[from].key.public(), claim, self.now_ms())
                .is_ok()
            {
                self.nodes[me].intros.insert(from, i.clone());
            }
        }
        let round = self.round;
        for e in &out.known_peers {
            let n = &self.nodes[me];
            let Verdict::Learn { ttl, hives } =
                gossip::judge(e, &n.id, &n.endpoint, &self.nodes[from].id, &shared)
            else {
                continue;
            };
            let Some(&k) = self.by_id.get(&e.instance_id) else {
                continue;
            };
            let hives: BTreeSet<String> = hives
                .into_iter()
                .filter(|h| self.nodes[me].hives.contains(h))
                .collect();
            if hives.is_empty() {
                continue;
            }
            let cap = self.cfg.settings.max_gossip_peers;
            let node = &mut self.nodes[me];
            match node.peers.get_mut(&k) {
                Some(p) if p.source == PeerSource::Gossip => p.ttl = p.ttl.max(i64::from(ttl)),
                Some(_) => {}
                None => {
                    let gossiped = node
                        .peers
                        .values()
                        .filter(|p| p.source == PeerSource::Gossip)
                        .count();
                    if gossiped >= cap {
                        continue;
                    }
                    node.peers.insert(
                        k,
                        Peer {
                            source: PeerSource::Gossip,
                            ttl: i64::from(ttl),
                            via: Some(from),
                            hives,
                            paired: false,
                            failures: 0,
                            last_contact: round,
                        },
                    );
                    node.memory.bump();
                }
            }
        }
    }

    /// The real rule: gossip-sourced peers silent for `stale_timeout` or at `max_failures`.
    fn cleanup(&mut self) {
        let stale_rounds = (self.cfg.settings.stale_timeout.as_secs()
            / self.cfg.heartbeat.as_secs().max(1))
        .max(1);
        let (round, max_failures) = (self.round, self.cfg.settings.max_failures);
        let mut removed = 0;
        for n in self.nodes.iter_mut() {
            if n.down_until > round {
                continue;
            }
            let before = n.peers.len();
            n.peers.retain(|_, p| {
                p.source != PeerSource::Gossip
                    || (p.failures < max_failures
                        && round - p.last_contact.min(round) < stale_rounds)
            });
            if n.peers.len() != before {
                removed += before - n.peers.len();
                n.memory.bump();
            }
        }
        self.report.removed += removed as u64;
    }

    /// (every instance knows every instance it shares a hive with, every such pair paired)
    fn complete(&self) -> (bool, bool) {
        let mut paired = true;
        for (i, a) in self.nodes.iter().enumerate() {
            for (j, b) in self.nodes.iter().enumerate() {
                if i == j || a.hives.is_disjoint(&b.hives) {
                    continue;
                }
                match a.peers.get(&j) {
                    None => return (false, false),
                    Some(p) if !p.paired => paired = false,
                    Some(_) => {}
                }
            }
        }
        (true, paired)
    }
}

fn json_len(out: &Outgoing) -> u64 {
    let mut n = 0;
    if !out.known_peers.is_empty() {
        n += serde_json::to_vec(&out.known_peers).map_or(0, |v| v.len() as u64);
    }
    if let Some(i) = &out.introduction {
        n += serde_json::to_vec(i).map_or(0, |v| v.len() as u64);
    }
    n
}

fn base32(mut i: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut s = Vec::new();
    loop {
        s.push(ALPHABET[i % 32]);
        i /= 32;
        if i == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn small() -> SimConfig {
        SimConfig {
            nodes: 20,
            max_rounds: 200,
            ..SimConfig::default()
        }
    }

    #[test]
    fn twenty_instances_discover_and_pair_despite_loss_partitions_and_restarts() {
        for seed in [1, 2, 3] {
            let r = run(seed, &small());
            assert!(r.discovered_at.is_some(), "seed {seed}: {r:?}");
            assert!(r.paired_at.is_some(), "seed {seed}: {r:?}");
            assert_eq!(
                r.loops, 0,
                "seed {seed}: an entry went back where it came from"
            );
            assert!(r.degree <= 8);
            assert_eq!(
                r.entries_idle, 0,
                "seed {seed}: an idle mesh gossips nothing"
            );
        }
    }

    #[test]
    fn a_run_replays_exactly_from_its_seed() {
        let a = run(7, &small());
        let b = run(7, &small());
        assert_eq!(a, b);
    }
}
