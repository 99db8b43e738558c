//! Peer gossip (design §3.14; docs/PROTOCOL-sync.md, "Gossip"): heartbeats carry
//! `known_peers`, the peers the sender knows that share a hive with the receiver, and an
//! introduction of the receiver signed by the sender; a receiver adds the peers it did not
//! know (source `gossip`), links them for the hives it shares, and the engine handshakes them,
//! presenting an introduction by a member of their roster (`crate::admission`).
//!
//! Two halves:
//! - **decisions, without I/O** ([`share_ttl`], [`select`], [`judge`], [`Memory`]): which
//!   entries go to which peer (filtered to the hives the receiver shares, TTL, never back to
//!   where they came from, only what changed, capped), what a receiver does with an entry,
//!   and when a message carries gossip or an introduction. Time is a parameter
//!   (`Instant`), so a simulation drives them with virtual time;
//! - **the store side** ([`outgoing`], [`incoming`], [`remove_stale`]): the same decisions
//!   over the database, inside the heartbeat's transactions.
//!
//! Invariants:
//! - an entry carries public facts only (id, name, endpoint, key, hives, ttl), never a token;
//! - a peer is passed on only if we paired with it (its key is known, its status `active`,
//!   its last contact a success),
//!   with `ttl ≥ 1`, for hives both it and the receiver share with us, never to the instance
//!   that told us about it nor to itself;
//! - a receiver never changes a peer of another source (manual > hub > gossip), never learns
//!   a key from gossip (the handshake does), and links a gossiped peer only for hives it shares
//!   with the sender, at most `max_gossip_peers` gossip-sourced peers per hive;
//! - an introduction is taken only if its issuer is the sender, its subject is this instance
//!   with its current key and endpoint, and it verifies with the sender's key;
//! - an idle mesh exchanges no gossip: a message carries entries only when our knowledge
//!   changed since that peer last got it (at most once per `exchange_interval`), and all of it
//!   with the hourly full heartbeat ([`crate::news`]).

use crate::protocol::KnownPeer;
use openhive_core::{Introduction, IntroductionKind, PublicKey};
use openhive_store::sync_state::{self, PeerSource, PeerStatus};
use openhive_store::{Conn, StoreError, introductions, keys};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long an introduction we issue is valid.
pub const INTRODUCTION_TTL_MS: i64 = 24 * 3600 * 1000;

/// An introduction we gave a peer is given again after this long (well within its TTL).
pub const INTRODUCTION_REFRESH: Duration = Duration::from_secs(3600);

/// At most this many `known_peers` entries of one message are looked at.
pub const MAX_KNOWN_PEERS: usize = 1000;

/// The largest TTL an entry may carry (more is read as this).
pub const MAX_TTL: u8 = 8;

/// `[sync.gossip]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipSettings {
    pub enabled: bool,
    /// TTL of the peers configured here (admin API, `[[sync.peers]]`).
    pub default_ttl: u8,
    /// TTL of the peers found through the MAP hub.
    pub hub_peer_ttl: u8,
    /// Least time between two gossip messages to one peer (changes wait for it).
    pub exchange_interval: Duration,
    /// At most this many entries per message, and gossip-sourced peers per hive.
    pub max_gossip_peers: usize,
    /// A gossip-sourced peer silent this long is removed.
    pub stale_timeout: Duration,
    /// A gossip-sourced peer with this many consecutive failures is removed.
    pub max_failures: i64,
}

impl Default for GossipSettings {
    fn default() -> Self {
        GossipSettings {
            enabled: true,
            default_ttl: 2,
            hub_peer_ttl: 1,
            exchange_interval: Duration::from_secs(60),
            max_gossip_peers: 50,
            stale_timeout: Duration::from_secs(300),
            max_failures: 3,
        }
    }
}

// ── Decisions ───────────────────────────────────────────────────────────────────────────

/// The TTL we pass a peer on with, by how we know it: configured peers `default_ttl`, hub
/// peers `hub_peer_ttl`, peers that paired with us on their own (`handshake`) 1 (our direct
/// peers hear of them, nobody further), gossiped peers what they arrived with minus one.
pub fn share_ttl(source: PeerSource, stored: i64, s: &GossipSettings) -> u8 {
    let t = match source {
        PeerSource::Api | PeerSource::Config => s.default_ttl,
        PeerSource::Hub => s.hub_peer_ttl,
        PeerSource::Handshake => s.default_ttl.min(1),
        PeerSource::Gossip => stored.clamp(0, i64::from(MAX_TTL)) as u8,
    };
    t.min(MAX_TTL)
}

/// A peer the sender may tell others about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub instance_id: String,
    pub name: String,
    pub endpoint: String,
    pub signing_key: String,
    /// Hive names it shares with us (live links).
    pub hives: BTreeSet<String>,
    /// The TTL it is passed on with ([`share_ttl`]); 0: never passed on.
    pub ttl: u8,
    /// The instance that told us about it (never told back).
    pub via: Option<String>,
}

/// A stable digest of an entry: what the receiver last got of that peer.
pub fn fingerprint(e: &KnownPeer) -> u64 {
    // `DefaultHasher::new()` has fixed keys: the same entry digests the same everywhere.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&e.sync_endpoint, &e.signing_key, &e.hives, e.ttl, &e.name).hash(&mut h);
    h.finish()
}

/// The entries for the peer `receiver` (instance id), which shares `shared` (hive names)
/// with us: every known peer except the receiver and the peers it told us about, with
/// `ttl ≥ 1`, restricted to the hives it shares with the receiver (none: left out), minus
/// what the receiver already got (`sent`: instance id → [`fingerprint`]). Highest TTL first,
/// then by instance id; at most `cap`.
pub fn select(
    known: &[Known],
    receiver: &str,
    shared: &BTreeSet<String>,
    sent: &HashMap<String, u64>,
    cap: usize,
) -> Vec<KnownPeer> {
    let mut out: Vec<KnownPeer> = known
        .iter()
        .filter(|k| k.ttl >= 1 && k.instance_id != receiver)
        .filter(|k| k.via.as_deref() != Some(receiver))
        .filter_map(|k| {
            let hives: Vec<String> = k.hives.intersection(shared).cloned().collect();
            if hives.is_empty() {
                return None;
            }
            let e = KnownPeer {
                instance_id: k.instance_id.clone(),
                name: Some(k.name.clone()),
                sync_endpoint: k.endpoint.clone(),
                signing_key: k.signing_key.clone(),
                hives,
                ttl: k.ttl,
            };
            (sent.get(&e.instance_id) != Some(&fingerprint(&e))).then_some(e)
        })
        .collect();
    out.sort_by(|a, b| b.ttl.cmp(&a.ttl).then(a.instance_id.cmp(&b.instance_id)));
    out.truncate(cap);
    out
}

/// What a receiver does with one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Skip(&'static str),
    /// Learn the peer: store `ttl` (the entry's minus one), link it for `hives`.
    Learn {
        ttl: u8,
        hives: Vec<String>,
    },
}

/// Judges an entry from the peer `sender` (instance id) that shares `shared` (hive names)
/// with us: well-formed, not about us or the sender, for hives we share with the sender.
pub fn judge(
    e: &KnownPeer,
    me: &str,
    my_endpoint: &str,
    sender: &str,
    shared: &BTreeSet<String>,
) -> Verdict {
    if openhive_core::ids::instance_suffix(&e.instance_id).is_none() {
        return Verdict::Skip("malformed instance_id");
    }
    if e.instance_id == me || e.instance_id == sender {
        return Verdict::Skip("about us or the sender");
    }
    if openhive_core::validate::url(&e.sync_endpoint).is_err() || e.sync_endpoint.len() > 2048 {
        return Verdict::Skip("malformed sync_endpoint");
    }
    if crate::protocol::normalize_endpoint(&e.sync_endpoint) == my_endpoint {
        return Verdict::Skip("our own endpoint");
    }
    if PublicKey::from_base64(&e.signing_key).is_err() {
        return Verdict::Skip("malformed signing_key");
    }
    if e.ttl == 0 {
        return Verdict::Skip("ttl 0");
    }
    let hives: Vec<String> = e
        .hives
        .iter()
        .take(openhive_core::introduction::MAX_INTRODUCTION_HIVES)
        .filter(|h| shared.contains(*h))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if hives.is_empty() {
        return Verdict::Skip("no hive shared with the sender");
    }
    Verdict::Learn {
        ttl: e.ttl.min(MAX_TTL) - 1,
        hives,
    }
}

/// What one message to a peer carries besides its groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// `Some(full)`: carry gossip; `full` resends everything (the hourly refresh).
    pub gossip: Option<bool>,
    /// Carry a fresh introduction of the receiver.
    pub introduction: bool,
    /// The knowledge generation the gossip is computed at.
    pub generation: u64,
}

#[derive(Debug, Default, Clone)]
struct PeerMemory {
    /// What the peer last got, per instance id.
    sent: HashMap<String, u64>,
    /// The generation it was computed at (`None`: never).
    sent_generation: Option<u64>,
    last_gossip: Option<Instant>,
    /// When it last got an introduction, its hives (ids), and our generation then.
    introduced_at: Option<Instant>,
    introduced_hives: HashSet<String>,
    introduced_generation: Option<u64>,
}

/// Per peer, what it has heard from us (in memory: after a restart everything is sent
/// again once), and the generation of our peer knowledge (bumped whenever peers or links
/// change).
#[derive(Debug, Default)]
pub struct Memory {
    peers: Mutex<HashMap<String, PeerMemory>>,
    generation: AtomicU64,
}

impl Memory {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PeerMemory>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Our peer knowledge changed (a peer or link added or removed, a handshake completed).
    pub fn bump(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// What the next message to `peer` carries, given the groups it is due: `None` every
    /// shared hive (the first message, the hourly refresh), else the hive ids in its news.
    pub fn plan(
        &self,
        peer: &str,
        due: Option<&HashSet<String>>,
        s: &GossipSettings,
        now: Instant,
    ) -> Plan {
        let generation = self.generation();
        let all = self.lock();
        let m = all.get(peer);
        let full = due.is_none();
        let gossip = if !s.enabled {
            None
        } else if full || m.is_none_or(|m| m.sent_generation.is_none()) {
            Some(true)
        } else if m.is_some_and(|m| {
            m.sent_generation != Some(generation)
                && m.last_gossip
                    .is_none_or(|t| now.saturating_duration_since(t) >= s.exchange_interval)
        }) {
            Some(false)
        } else {
            None
        };
        let introduction = s.enabled
            && (full
                || match m {
                    None => true,
                    Some(m) => {
                        // Stale, or links came since: a link created at run time is not
                        // in the peer's news (`crate::news`), so `due` may not name it.
                        m.introduced_at.is_none_or(|t| {
                            now.saturating_duration_since(t) >= INTRODUCTION_REFRESH
                        }) || m.introduced_generation != Some(generation)
                            || due.is_none_or(|h| h.iter().any(|h| !m.introduced_hives.contains(h)))
                    }
                });
        Plan {
            gossip,
            introduction,
            generation,
        }
    }

    /// What `peer` already got (empty for a full resend).
    pub fn sent(&self, peer: &str, plan: &Plan) -> HashMap<String, u64> {
        if plan.gossip != Some(false) {
            return HashMap::new();
        }
        self.lock()
            .get(peer)
            .map(|m| m.sent.clone())
            .unwrap_or_default()
    }

    /// Records a message built by `plan` as sent to `peer`.
    pub fn record(&self, peer: &str, plan: &Plan, out: &Outgoing, now: Instant) {
        let mut all = self.lock();
        let m = all.entry(peer.to_string()).or_default();
        if let Some(full) = plan.gossip {
            if full {
                m.sent.clear();
            }
            for e in &out.known_peers {
                m.sent.insert(e.instance_id.clone(), fingerprint(e));
            }
            m.sent_generation = Some(plan.generation);
            m.last_gossip = Some(now);
        }
        if let Some(hives) = &out.introduced_hives {
            m.introduced_at = Some(now);
            m.introduced_hives = hives.clone();
            m.introduced_generation = Some(plan.generation);
        }
    }

    /// A message to `peer` did not get through: it gets everything again next time.
    pub fn give_back(&self, peer: &str) {
        self.lock().remove(peer);
    }

    /// Forgets a peer (deleted).
    pub fn forget(&self, peer: &str) {
        self.lock().remove(peer);
    }
}

// ── The store side ──────────────────────────────────────────────────────────────────────

/// Our gossip part of a message to one peer.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub known_peers: Vec<KnownPeer>,
    pub introduction: Option<Introduction>,
    /// The hive ids the introduction covers (`None`: none was made).
    pub introduced_hives: Option<HashSet<String>>,
}

/// Who we are, for gossip.
pub(crate) struct Me<'a> {
    pub instance_id: &'a str,
    pub key: &'a openhive_core::InstanceKey,
}

/// Builds the gossip part of a message to the peer `peer_id` per `plan`.
pub(crate) fn outgoing(
    c: &Conn<'_>,
    me: &Me<'_>,
    peer_id: &str,
    plan: &Plan,
    sent: &HashMap<String, u64>,
    s: &GossipSettings,
    now: i64,
) -> Result<Outgoing, StoreError> {
    let mut out = Outgoing::default();
    if plan.gossip.is_none() && !plan.introduction {
        return Ok(out);
    }
    let Some(peer) = sync_state::peer_by_id(c, peer_id)? else {
        return Ok(out);
    };
    let Some(receiver) = peer.instance_id.clone() else {
        return Ok(out);
    };
    // (hive id, hive name) of the live links, by name.
    let links = sync_state::live_hives_of_peer(c, peer_id)?;
    if plan.introduction {
        let names: Vec<String> = links
            .iter()
            .take(openhive_core::introduction::MAX_INTRODUCTION_HIVES)
            .map(|(_, name)| name.clone())
            .collect();
        if let Some(chain) = keys::chain(c, &receiver)?
            && !names.is_empty()
        {
            out.introduction = Some(Introduction::sign(
                me.key,
                IntroductionKind::Peer,
                me.instance_id,
                &receiver,
                &chain.current().to_base64(),
                &peer.endpoint,
                names,
                now,
                now + INTRODUCTION_TTL_MS,
            ));
            out.introduced_hives = Some(links.iter().map(|(id, _)| id.clone()).collect());
        }
    }
    if plan.gossip.is_some() {
        let shared: BTreeSet<String> = links.iter().map(|(_, name)| name.clone()).collect();
        let mut known = Vec::new();
        for p in sync_state::gossip_peers(c)? {
            let Some(inst) = p.instance_id else { continue };
            if p.status != PeerStatus::Active || p.failing || p.id == peer_id {
                continue;
            }
            let Some(chain) = keys::chain(c, &inst)? else {
                continue;
            };
            known.push(Known {
                instance_id: inst,
                name: p.name,
                endpoint: p.endpoint,
                signing_key: chain.current().to_base64(),
                hives: p.hives.into_iter().collect(),
                ttl: share_ttl(p.source, p.gossip_ttl, s),
                via: p.discovered_via,
            });
        }
        out.known_peers = select(&known, &receiver, &shared, sent, s.max_gossip_peers);
    }
    Ok(out)
}

/// What [`incoming`] did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Learned {
    /// Links created for gossiped peers (the engine must schedule them).
    pub links: usize,
    /// An introduction for us was stored.
    pub introduced: bool,
}

/// Applies the gossip part of a message from the peer `peer_id` (instance `from`), inside the
/// caller's write transaction: the introduction of us it carries, then its entries.
#[allow(clippy::too_many_arguments)]
pub(crate) fn incoming(
    tx: &Conn<'_>,
    peer_id: &str,
    from: &str,
    me_id: &str,
    me_key: &str,
    me_endpoint: &str,
    known_peers: &[KnownPeer],
    introduction: Option<&Introduction>,
    s: &GossipSettings,
    now: i64,
) -> Result<Learned, StoreError> {
    let mut out = Learned::default();
    if let Some(i) = introduction {
        match check_own(tx, i, from, me_id, me_key, me_endpoint, now)? {
            Ok(()) => out.introduced = introductions::put_own(tx, i, now)?,
            Err(why) => tracing::debug!(peer = %from, why, "introduction from a peer not taken"),
        }
    }
    if !s.enabled || known_peers.is_empty() {
        return Ok(out);
    }
    let shared: BTreeSet<String> = sync_state::live_hives_of_peer(tx, peer_id)?
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    for e in known_peers.iter().take(MAX_KNOWN_PEERS) {
        let (ttl, hives) = match judge(e, me_id, me_endpoint, from, &shared) {
            Verdict::Skip(why) => {
                tracing::trace!(peer = %from, about = %e.instance_id, why, "gossip entry skipped");
                continue;
            }
            Verdict::Learn { ttl, hives } => (ttl, hives),
        };
        // The key is a hint, but one that contradicts the chain we know means the entry is
        // wrong (or the peer lies): skip it.
        let key = PublicKey::from_base64(&e.signing_key)
            .map_err(|_| StoreError::Invalid("gossip entry key checked by judge".into()))?;
        if keys::chain(tx, &e.instance_id)?.is_some_and(|c| !c.contains(&key)) {
            tracing::info!(peer = %from, about = %e.instance_id, "gossip entry names another key than the one we know; skipped");
            continue;
        }
        let endpoint = crate::protocol::normalize_endpoint(&e.sync_endpoint);
        let name = e
            .name
            .as_deref()
            .filter(|n| openhive_core::validate::display_name(n, "name").is_ok())
            .unwrap_or(&e.instance_id);
        let Some(pid) = sync_state::upsert_gossip_peer(
            tx,
            &e.instance_id,
            name,
            &endpoint,
            i64::from(ttl),
            from,
            now,
        )?
        else {
            continue;
        };
        for hive in &hives {
            let Some(g) = sync_state::group_by_name(tx, hive)? else {
                continue;
            };
            if sync_state::link(tx, &pid, &g.hive_id)?.is_some() {
                continue;
            }
            if sync_state::gossip_peer_count(tx, &g.hive_id)? >= s.max_gossip_peers as i64 {
                tracing::debug!(hive = %hive, about = %e.instance_id, "max_gossip_peers reached for this hive");
                continue;
            }
            sync_state::ensure_link(tx, &pid, &g.hive_id, sync_state::LinkState::Handshaking)?;
            tracing::info!(peer = %from, about = %e.instance_id, hive = %hive, ttl, "peer learned by gossip");
            out.links += 1;
        }
        // A peer learned for no hive (caps, groups gone) is not kept.
        if sync_state::links_for_peer(tx, &pid)?.is_empty() {
            sync_state::delete_peer(tx, &pid)?;
        }
    }
    Ok(out)
}

/// Whether an introduction a peer (`from`) sent us is one we hold for ourselves: kind
/// `peer`, issued by that peer and verified with its key, about this instance with its
/// current key and endpoint, not expired.
fn check_own(
    tx: &Conn<'_>,
    i: &Introduction,
    from: &str,
    me_id: &str,
    me_key: &str,
    me_endpoint: &str,
    now: i64,
) -> Result<Result<(), &'static str>, StoreError> {
    if i.kind != IntroductionKind::Peer || i.issuer != from {
        return Ok(Err("not a peer introduction by the sender"));
    }
    let Some(hive) = i.hives.first() else {
        return Ok(Err("no hive"));
    };
    let Some(chain) = keys::chain(tx, from)? else {
        return Ok(Err("the sender's key is unknown"));
    };
    let claim = openhive_core::introduction::Claim {
        instance_id: me_id,
        signing_key: me_key,
        sync_endpoint: me_endpoint,
        hive,
    };
    Ok(i.verify(&chain.key_for(i.issued_at), claim, now)
        .map_err(|_| "does not verify as an introduction of this instance"))
}

/// Removes the gossip-sourced peers silent for `stale_timeout` or at `max_failures`
/// failures (links, tokens, outbox cursors and row). Returns their ids.
pub(crate) fn remove_stale(
    tx: &Conn<'_>,
    s: &GossipSettings,
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let silent_before = now - s.stale_timeout.as_millis() as i64;
    let stale = sync_state::stale_gossip_peers(tx, silent_before, s.max_failures)?;
    for id in &stale {
        sync_state::delete_peer(tx, id)?;
    }
    Ok(stale)
}

// ── The engine side ─────────────────────────────────────────────────────────────────────

/// [`Memory::plan`] for the next message to `peer_id` carrying `due`.
pub(crate) fn plan(h: &crate::engine::SyncHandle, peer_id: &str, due: &crate::news::Due) -> Plan {
    let due = match due {
        crate::news::Due::All => None,
        crate::news::Due::Some(hives) => Some(hives),
    };
    h.inner.gossip.plan(
        peer_id,
        due,
        &h.settings().gossip,
        tokio::time::Instant::now().into_std(),
    )
}

/// [`outgoing`] with the engine's identity and settings.
pub(crate) fn outgoing_for(
    h: &crate::engine::SyncHandle,
    c: &Conn<'_>,
    peer_id: &str,
    plan: &Plan,
    sent: &HashMap<String, u64>,
) -> Result<Outgoing, StoreError> {
    let key = h.me().key.get();
    let me = Me {
        instance_id: &h.me().instance_id,
        key: &key,
    };
    outgoing(
        c,
        &me,
        peer_id,
        plan,
        sent,
        &h.settings().gossip,
        openhive_core::time::now_ms(),
    )
}

/// [`incoming`] with the engine's identity and settings.
pub(crate) fn incoming_from(
    h: &crate::engine::SyncHandle,
    tx: &Conn<'_>,
    peer_id: &str,
    from: &str,
    known_peers: &[KnownPeer],
    introduction: Option<&Introduction>,
    now: i64,
) -> Result<Learned, StoreError> {
    let me = h.me();
    incoming(
        tx,
        peer_id,
        from,
        &me.instance_id,
        &me.key.public().to_base64(),
        &me.sync_endpoint,
        known_peers,
        introduction,
        &h.settings().gossip,
        now,
    )
}

/// After the commit of [`incoming`]: the new links get their workers (which handshake).
pub(crate) async fn after_commit(h: &crate::engine::SyncHandle, learned: Learned) {
    if learned.links > 0
        && let Err(e) = h.reconcile().await
    {
        tracing::warn!(error = %e, "scheduling links to peers learned by gossip");
    }
}

/// The heartbeat round's cleanup: gossip-sourced peers gone stale are removed.
pub(crate) async fn cleanup(h: &crate::engine::SyncHandle) -> Result<(), StoreError> {
    let s = h.settings().gossip.clone();
    let removed = h
        .store()
        .write(move |tx| remove_stale(tx, &s, openhive_core::time::now_ms()))
        .await?;
    if removed.is_empty() {
        return Ok(());
    }
    for id in &removed {
        tracing::info!(peer = %id, "gossip-sourced peer removed (stale or failing)");
        h.inner.news.forget(id);
        h.inner.gossip.forget(id);
    }
    if let Err(e) = h.reconcile().await {
        tracing::warn!(error = %e, "reconciling links after removing gossip peers");
    }
    h.inner.gossip.bump();
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn key() -> String {
        openhive_core::InstanceKey::generate().public().to_base64()
    }

    fn known(id: &str, hives: &[&str], ttl: u8, via: Option<&str>) -> Known {
        Known {
            instance_id: id.into(),
            name: id.into(),
            endpoint: format!("http://{id}/sync/v1"),
            signing_key: key(),
            hives: hives.iter().map(|h| h.to_string()).collect(),
            ttl,
            via: via.map(str::to_string),
        }
    }

    fn set(h: &[&str]) -> BTreeSet<String> {
        h.iter().map(|h| h.to_string()).collect()
    }

    #[test]
    fn ttl_by_source() {
        let s = GossipSettings::default();
        assert_eq!(share_ttl(PeerSource::Api, 0, &s), 2);
        assert_eq!(share_ttl(PeerSource::Config, 0, &s), 2);
        assert_eq!(share_ttl(PeerSource::Hub, 0, &s), 1);
        assert_eq!(share_ttl(PeerSource::Handshake, 0, &s), 1);
        assert_eq!(share_ttl(PeerSource::Gossip, 1, &s), 1);
        assert_eq!(share_ttl(PeerSource::Gossip, 0, &s), 0);
        assert_eq!(share_ttl(PeerSource::Gossip, 99, &s), MAX_TTL);
        assert_eq!(share_ttl(PeerSource::Gossip, -3, &s), 0);
        let off = GossipSettings {
            default_ttl: 0,
            ..s
        };
        assert_eq!(share_ttl(PeerSource::Handshake, 0, &off), 0);
    }

    #[test]
    fn select_filters_by_shared_hives_ttl_and_origin() {
        let ks = vec![
            known("inst_c", &["eng", "ops"], 2, None),
            known("inst_d", &["ops"], 2, None),
            known("inst_e", &["eng"], 0, None),
            known("inst_f", &["eng"], 1, Some("inst_r")),
            known("inst_r", &["eng"], 2, None),
        ];
        let out = select(&ks, "inst_r", &set(&["eng"]), &HashMap::new(), 50);
        let ids: Vec<&str> = out.iter().map(|e| e.instance_id.as_str()).collect();
        // d shares no hive with r; e has ttl 0; f came from r; r is the receiver.
        assert_eq!(ids, vec!["inst_c"]);
        assert_eq!(out[0].hives, vec!["eng"], "only hives the receiver shares");
        assert_eq!(out[0].ttl, 2);
    }

    #[test]
    fn select_sends_only_what_changed_and_caps_highest_ttl_first() {
        let mut ks = vec![
            known("inst_a", &["eng"], 1, None),
            known("inst_b", &["eng"], 2, None),
            known("inst_c", &["eng"], 2, None),
        ];
        let shared = set(&["eng"]);
        let first = select(&ks, "inst_r", &shared, &HashMap::new(), 2);
        let ids: Vec<&str> = first.iter().map(|e| e.instance_id.as_str()).collect();
        assert_eq!(ids, vec!["inst_b", "inst_c"], "ttl first, then id; capped");
        let mut sent: HashMap<String, u64> = first
            .iter()
            .map(|e| (e.instance_id.clone(), fingerprint(e)))
            .collect();
        let second = select(&ks, "inst_r", &shared, &sent, 2);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].instance_id, "inst_a", "the rest follows");
        sent.insert("inst_a".into(), fingerprint(&second[0]));
        assert!(select(&ks, "inst_r", &shared, &sent, 2).is_empty(), "idle");
        ks[1].endpoint = "http://moved/sync/v1".into();
        let third = select(&ks, "inst_r", &shared, &sent, 2);
        assert_eq!(third.len(), 1, "a change is sent again");
        assert_eq!(third[0].instance_id, "inst_b");
    }

    fn entry(id: &str, hives: &[&str], ttl: u8) -> KnownPeer {
        KnownPeer {
            instance_id: id.into(),
            name: None,
            sync_endpoint: "http://10.0.0.4:3000/sync/v1".into(),
            signing_key: key(),
            hives: hives.iter().map(|h| h.to_string()).collect(),
            ttl,
        }
    }

    #[test]
    fn judge_decrements_ttl_and_filters_hives() {
        let me = "inst_aaaaaaaaaaaa";
        let from = "inst_bbbbbbbbbbbb";
        let other = "inst_cccccccccccc";
        let shared = set(&["eng", "lab"]);
        let ep = "http://10.0.0.1:3000/sync/v1";
        assert_eq!(
            judge(&entry(other, &["eng", "ops"], 2), me, ep, from, &shared),
            Verdict::Learn {
                ttl: 1,
                hives: vec!["eng".into()]
            }
        );
        assert_eq!(
            judge(&entry(other, &["eng"], 1), me, ep, from, &shared),
            Verdict::Learn {
                ttl: 0,
                hives: vec!["eng".into()]
            }
        );
        assert!(matches!(
            judge(&entry(other, &["eng"], 0), me, ep, from, &shared),
            Verdict::Skip(_)
        ));
        assert!(matches!(
            judge(&entry(other, &["ops"], 2), me, ep, from, &shared),
            Verdict::Skip(_)
        ));
        assert!(matches!(
            judge(&entry(me, &["eng"], 2), me, ep, from, &shared),
            Verdict::Skip(_)
        ));
        assert!(matches!(
            judge(&entry(from, &["eng"], 2), me, ep, from, &shared),
            Verdict::Skip(_)
        ));
        let mut bad = entry(other, &["eng"], 2);
        bad.signing_key = "AAAA".into();
        assert!(matches!(
            judge(&bad, me, ep, from, &shared),
            Verdict::Skip(_)
        ));
        let mut ours = entry(other, &["eng"], 2);
        ours.sync_endpoint = format!("{ep}/");
        assert!(matches!(
            judge(&ours, me, ep, from, &shared),
            Verdict::Skip(_)
        ));
        let mut big = entry(other, &["eng"], 200);
        big.hives.push("lab".into());
        assert_eq!(
            judge(&big, me, ep, from, &shared),
            Verdict::Learn {
                ttl: MAX_TTL - 1,
                hives: vec!["eng".into(), "lab".into()]
            }
        );
    }

    #[test]
    fn memory_sends_changes_at_most_once_per_interval_and_everything_after_a_failure() {
        let s = GossipSettings {
            exchange_interval: Duration::from_secs(60),
            ..GossipSettings::default()
        };
        let m = Memory::default();
        let t0 = Instant::now();
        let empty = HashSet::new();
        let none = Some(&empty);
        // First message: everything, with an introduction.
        let p = m.plan("p", none, &s, t0);
        assert_eq!(p.gossip, Some(true));
        assert!(p.introduction);
        let out = Outgoing {
            known_peers: vec![entry("inst_c", &["eng"], 2)],
            introduction: None,
            introduced_hives: Some(["h1".to_string()].into_iter().collect()),
        };
        m.record("p", &p, &out, t0);
        // Nothing changed: nothing to carry.
        let p = m.plan("p", none, &s, t0 + Duration::from_secs(1));
        assert_eq!((p.gossip, p.introduction), (None, false));
        // Knowledge changed: a delta, but not before the interval.
        m.bump();
        let p = m.plan("p", none, &s, t0 + Duration::from_secs(1));
        assert_eq!(p.gossip, None);
        let p = m.plan("p", none, &s, t0 + Duration::from_secs(61));
        assert_eq!(p.gossip, Some(false));
        assert_eq!(m.sent("p", &p).len(), 1, "what it has is not sent again");
        // A hive it has no introduction for yet: a new one.
        let due: HashSet<String> = ["h2".to_string()].into_iter().collect();
        assert!(
            m.plan("p", Some(&due), &s, t0 + Duration::from_secs(2))
                .introduction
        );
        // A failed message: everything again.
        m.give_back("p");
        let p = m.plan("p", none, &s, t0 + Duration::from_secs(2));
        assert_eq!(p.gossip, Some(true));
        assert!(p.introduction);
        // The hourly refresh resends everything.
        assert_eq!(
            m.plan("q", None, &s, t0).gossip,
            Some(true),
            "full on Due::All"
        );
        let off = GossipSettings {
            enabled: false,
            ..s
        };
        assert_eq!(m.plan("p", None, &off, t0).gossip, None);
    }
}
