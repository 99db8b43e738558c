//! The MAP hub: its wire types (shared with the hub's routes in the server) and the client
//! an instance runs when `[sync.hub] url` is set (docs/PROTOCOL-sync.md, "MAP hub").
//!
//! The client, one task:
//! - registers once with the preauth key (`POST /api/v1/map/swarms`, with a proof that it
//!   holds its signing key) and remembers the swarm id and token durably (sealed), so a
//!   restart does not spend the key again; the hub's identity (instance id, key) from the
//!   first answer is pinned in the same row (trust on first use, or `[sync.hub] key`) and
//!   handed to the engine ([`SyncHandle::set_trusted_hub`]) at every start, before the hub
//!   is reached: introductions by that hub are admitted even while it is down;
//! - stores the hub introduction for itself after checking it (subject, key, endpoint,
//!   signature by the pinned hub key) and renews it at every heartbeat;
//! - advertises every sync group (`POST .../hives`) and withdraws deleted ones;
//! - follows the hub's events (long poll) and, on any event, at every heartbeat and after a
//!   local group change, reads its peer list and upserts each peer sharing a hive as a peer
//!   of source `hub` (never downgrading a manual one) with a link per shared hive, so the
//!   engine handshakes it by itself. Hub peers are ordinary peer rows: sync goes on while the
//!   hub is down.
//!
//! Where several app processes serve one instance (PostgreSQL), only the one holding the
//! lease `hub_client` talks to the hub; the others read the registration it stores (and
//! trust the hub it pins) once per heartbeat.
//!
//! Invariants: the swarm token goes only to the hub, in `Authorization`, and is never
//! logged; a hub whose identity differs from the pinned one is refused (logged), never
//! re-pinned silently; manual peers (`api`, `config`) are never changed by the hub.

use crate::admission::TrustedHub;
use crate::engine::{SyncHandle, sleep_or_shutdown};
use crate::protocol::HandshakeProof;
use openhive_core::time::now_ms;
use openhive_core::{Introduction, IntroductionKind, PublicKey, validate};
use openhive_store::map_hub::{self, Registration};
use openhive_store::sync_state::{self, LinkState, PeerSource};
use openhive_store::{StoreError, introductions};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

// ── Wire types ──────────────────────────────────────────────────────────────────────────

/// Domain of the registration proof.
pub const REGISTRATION_DOMAIN: &str = "openhive-map-register/1";

/// The bytes a registering instance signs with its key: it proves the hub is given a key
/// the registrant holds (nobody registers another instance's identity).
pub fn registration_proof_bytes(
    instance_id: &str,
    signing_key: &str,
    sync_endpoint: &str,
    at: i64,
) -> Vec<u8> {
    format!("{REGISTRATION_DOMAIN}\n{instance_id}\n{signing_key}\n{sync_endpoint}\n{at}")
        .into_bytes()
}

/// `POST /api/v1/map/swarms`. Unknown fields of the reference's shape (`map_transport`,
/// `auth_method`, `metadata`, ...) are accepted and ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_endpoint: Option<String>,
    pub sync_endpoint: String,
    pub instance_id: String,
    pub signing_key: String,
    /// Kept whole (`hive_sync` included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Value>,
    /// Or the `X-Preauth-Key` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preauth_key: Option<String>,
    /// The registrant's signature over [`registration_proof_bytes`].
    pub proof: HandshakeProof,
}

/// The hub's own identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubIdentity {
    pub instance_id: String,
    pub signing_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwarmView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub instance_id: String,
    pub signing_key: String,
    pub sync_endpoint: String,
    pub map_endpoint: Option<String>,
    pub capabilities: Value,
    pub status: String,
    pub hives: Vec<String>,
    pub last_seen_at: String,
    pub created_at: String,
    pub updated_at: String,
}

/// 201 (200 for a re-registration of the same instance).
#[derive(Clone, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub swarm: SwarmView,
    /// The swarm's bearer token for its later calls (shown once; stored hashed by the hub).
    pub token: String,
    pub introduction: Introduction,
    pub hub: HubIdentity,
}

/// `POST /api/v1/map/swarms/:id/heartbeat` (and the answer to an update).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub status: String,
    pub timestamp: String,
    pub introduction: Introduction,
    pub hives: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HivesResponse {
    pub message: String,
    pub hives: Vec<String>,
}

/// One entry of `GET /api/v1/map/peers/:swarmId`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HubPeer {
    pub swarm_id: String,
    pub instance_id: String,
    pub name: String,
    pub sync_endpoint: String,
    pub signing_key: String,
    pub shared_hives: Vec<String>,
    pub status: String,
    pub capabilities: Value,
    pub map_endpoint: Option<String>,
    pub last_seen_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerList {
    pub swarm_id: String,
    pub peers: Vec<HubPeer>,
    pub generated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HubEvent {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub swarm_id: String,
    pub hive_name: Option<String>,
    pub at: String,
}

/// `GET /api/v1/map/swarms/:id/events?since=&wait_ms=`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventsResponse {
    pub events: Vec<HubEvent>,
    /// The `since` of the next call.
    pub next_since: i64,
}

/// Longest long poll the hub holds (`wait_ms` is capped to it).
pub const MAX_WAIT_MS: u64 = 30_000;

// ── Client ──────────────────────────────────────────────────────────────────────────────

/// `[sync.hub]`.
#[derive(Clone)]
pub struct HubSettings {
    /// Base URL of the hub (`http://hub:3000`).
    pub url: String,
    pub preauth_key: Option<String>,
    /// The hub's key pinned by configuration.
    pub pinned_key: Option<String>,
    /// Heartbeat period (also the longest long poll).
    pub heartbeat: Duration,
    /// `[sync.hub] max_peers`: most hub peers we open links with per hive (see
    /// [`choose_links`]).
    pub max_peers: usize,
}

/// The lease naming the app process that talks to the hub (see `SyncHandle::holds_lease`).
const HUB_LEASE: &str = "hub_client";

/// Default of `[sync.hub] max_peers`.
pub const DEFAULT_MAX_HUB_PEERS: usize = 8;

impl std::fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSettings")
            .field("url", &self.url)
            .field("heartbeat", &self.heartbeat)
            .field("max_peers", &self.max_peers)
            .finish_non_exhaustive()
    }
}

/// Why one round of the client failed.
#[derive(Debug, thiserror::Error)]
enum HubError {
    #[error("hub answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("hub unreachable: {0}")]
    Transport(String),
    #[error("bad answer from the hub: {0}")]
    Decode(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::error::SyncError> for HubError {
    fn from(e: crate::error::SyncError) -> Self {
        HubError::Refused(e.to_string())
    }
}

/// Loads the registration held for the hub (its pinned identity becomes the engine's trusted
/// hub at once) and starts the client task.
pub async fn start(
    h: SyncHandle,
    s: HubSettings,
) -> Result<tokio::task::JoinHandle<()>, crate::error::SyncError> {
    let url = s.url.trim_end_matches('/').to_string();
    let s = HubSettings { url, ..s };
    let u = s.url.clone();
    let reg = h
        .store()
        .read(move |c| map_hub::registration(c, &u))
        .await?;
    if let Some(r) = &reg {
        match trusted_of(r, s.pinned_key.as_deref()) {
            Ok(t) => h.set_trusted_hub(Some(t)),
            Err(e) => {
                tracing::error!(hub = %s.url, error = %e, "the stored hub identity is not usable")
            }
        }
    }
    let rx = h.shutdown_rx();
    let client = Client { h: h.clone(), s };
    Ok(tokio::spawn(async move { client.run(reg, rx).await }))
}

fn trusted_of(r: &Registration, pinned: Option<&str>) -> Result<TrustedHub, HubError> {
    if let Some(p) = pinned
        && p != r.hub_key
    {
        return Err(HubError::Refused(
            "the hub's key differs from [sync.hub] key".into(),
        ));
    }
    let key = PublicKey::from_base64(&r.hub_key)
        .map_err(|_| HubError::Refused("the hub's key is not a key".into()))?;
    Ok(TrustedHub {
        instance_id: r.hub_instance_id.clone(),
        key,
    })
}

struct Client {
    h: SyncHandle,
    s: HubSettings,
}

impl Client {
    fn api(&self, path: &str) -> String {
        format!("{}/api/v1/map{path}", self.s.url)
    }

    async fn run(
        self,
        mut reg: Option<Registration>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut since = 0i64;
        let mut failures = 0u32;
        let mut next_beat = tokio::time::Instant::now();
        let mut leading = true;
        loop {
            if *shutdown.borrow() {
                return;
            }
            // One app process of the instance speaks to the hub (on PostgreSQL several
            // may run): two would each register, and each registration replaces the
            // other's token, so they would take turns re-registering until the preauth
            // key is spent. The others follow the registration the leader stores.
            if !self.h.holds_lease(HUB_LEASE.into()).await {
                leading = false;
                reg = self.stored_registration().await;
                if sleep_or_shutdown(self.s.heartbeat, &mut shutdown).await {
                    return;
                }
                continue;
            }
            if !leading {
                // Taking over: the last leader's registration is ours.
                leading = true;
                reg = self.stored_registration().await;
                next_beat = tokio::time::Instant::now();
            }
            let round = self.round(&mut reg, &mut since, &mut next_beat, &mut shutdown);
            match round.await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let delay = self.h.settings().backoff.delay(failures);
                    tracing::warn!(hub = %self.s.url, error = %e, retry_in_ms = delay.as_millis() as u64, "MAP hub round failed");
                    if let HubError::Status { status: 401, .. } = e
                        && let Some(r) = reg.as_mut()
                    {
                        // The hub no longer knows our token: register again (the pin stays).
                        r.token.clear();
                        let u = self.s.url.clone();
                        let _ = self
                            .h
                            .store()
                            .write(move |tx| map_hub::clear_registration_token(tx, &u))
                            .await;
                    }
                    if sleep_or_shutdown(delay, &mut shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    /// The registration stored for this hub (by this or another app process), and the hub
    /// it pins trusted by the engine. `None` (and the trusted hub left as it is) if there is
    /// none or it cannot be read.
    async fn stored_registration(&self) -> Option<Registration> {
        let u = self.s.url.clone();
        let reg = match self
            .h
            .store()
            .read(move |c| map_hub::registration(c, &u))
            .await
        {
            Ok(r) => r?,
            Err(e) => {
                tracing::warn!(hub = %self.s.url, error = %e, "reading the hub registration");
                return None;
            }
        };
        match trusted_of(&reg, self.s.pinned_key.as_deref()) {
            Ok(t) => self.h.set_trusted_hub(Some(t)),
            Err(e) => {
                tracing::error!(hub = %self.s.url, error = %e, "the stored hub identity is not usable")
            }
        }
        Some(reg)
    }

    /// One round: register if needed, heartbeat when due, then wait for events (or a local
    /// group change) and refresh the peers.
    async fn round(
        &self,
        reg: &mut Option<Registration>,
        since: &mut i64,
        next_beat: &mut tokio::time::Instant,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), HubError> {
        if reg.as_ref().is_none_or(|r| r.token.is_empty()) {
            *reg = Some(self.register(reg.as_ref()).await?);
            *next_beat = tokio::time::Instant::now();
        }
        let Some(r) = reg.as_ref() else {
            return Ok(());
        };
        if tokio::time::Instant::now() >= *next_beat {
            let beat = self.heartbeat(r).await?;
            self.advertise(r, &beat.hives).await?;
            self.refresh_peers(r).await?;
            *next_beat = tokio::time::Instant::now() + self.s.heartbeat;
        }
        let wait = next_beat
            .saturating_duration_since(tokio::time::Instant::now())
            .min(Duration::from_millis(MAX_WAIT_MS));
        let wake = self.h.hub_wake();
        let events = self.events(r, *since, wait);
        enum Woke {
            Events(Result<EventsResponse, HubError>),
            Local,
            Shutdown,
        }
        let woke = tokio::select! {
            ev = events => Woke::Events(ev),
            _ = wake.notified() => Woke::Local,
            r = shutdown.wait_for(|v| *v) => { drop(r); Woke::Shutdown }
        };
        match woke {
            Woke::Events(ev) => {
                let ev = ev?;
                let changed = !ev.events.is_empty();
                *since = ev.next_since;
                if changed {
                    tracing::debug!(hub = %self.s.url, events = ev.events.len(), "MAP hub events");
                    self.refresh_peers(r).await?;
                }
            }
            // A local group was enabled or deleted: advertise at once.
            Woke::Local => *next_beat = tokio::time::Instant::now(),
            Woke::Shutdown => {}
        }
        Ok(())
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<T, HubError> {
        let resp = req
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| HubError::Transport(e.without_url().to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let message = body["message"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect();
            return Err(HubError::Status {
                status: status.as_u16(),
                message,
            });
        }
        resp.json::<T>()
            .await
            .map_err(|e| HubError::Decode(e.without_url().to_string()))
    }

    fn authed(&self, m: reqwest::Method, path: &str, r: &Registration) -> reqwest::RequestBuilder {
        self.h
            .http()
            .http()
            .request(m, self.api(path))
            .bearer_auth(&r.token)
    }

    async fn register(&self, held: Option<&Registration>) -> Result<Registration, HubError> {
        let Some(preauth) = self.s.preauth_key.clone() else {
            return Err(HubError::Refused(
                "not registered with the MAP hub and no [sync.hub] preauth_key to register with"
                    .into(),
            ));
        };
        let me = self.h.me().clone();
        let key = me.key.get();
        let signing_key = key.public().to_base64();
        let at = now_ms();
        let proof = HandshakeProof {
            at,
            signature: key.sign_b64(&registration_proof_bytes(
                &me.instance_id,
                &signing_key,
                &me.sync_endpoint,
                at,
            )),
        };
        let body = RegisterRequest {
            name: me.instance_name.clone(),
            description: None,
            map_endpoint: None,
            sync_endpoint: me.sync_endpoint.clone(),
            instance_id: me.instance_id.clone(),
            signing_key,
            capabilities: Some(serde_json::json!({ "hive_sync": true })),
            preauth_key: Some(preauth),
            proof,
        };
        let resp: RegisterResponse = self
            .send(
                self.h.http().http().post(self.api("/swarms")).json(&body),
                Duration::from_secs(10),
            )
            .await?;
        // The hub's identity: pinned by configuration, or by the first registration.
        if let Some(p) = &self.s.pinned_key
            && p != &resp.hub.signing_key
        {
            return Err(HubError::Refused(
                "the hub's key differs from [sync.hub] key".into(),
            ));
        }
        if let Some(old) = held
            && (old.hub_key != resp.hub.signing_key || old.hub_instance_id != resp.hub.instance_id)
        {
            return Err(HubError::Refused(
                "the hub answers with another identity than the one pinned at first registration"
                    .into(),
            ));
        }
        let reg = Registration {
            hub_url: self.s.url.clone(),
            swarm_id: resp.swarm.id.clone(),
            token: resp.token.clone(),
            hub_instance_id: resp.hub.instance_id.clone(),
            hub_key: resp.hub.signing_key.clone(),
            registered_at: now_ms(),
        };
        let trusted = trusted_of(&reg, self.s.pinned_key.as_deref())?;
        // Kept first: the preauth key is spent, whatever else goes wrong.
        let r2 = reg.clone();
        self.h
            .store()
            .write(move |tx| map_hub::put_registration(tx, &r2))
            .await?;
        self.h.set_trusted_hub(Some(trusted.clone()));
        self.keep_introduction(&resp.introduction, &trusted).await?;
        tracing::info!(hub = %self.s.url, swarm = %reg.swarm_id, hub_instance = %reg.hub_instance_id, "registered with the MAP hub");
        Ok(reg)
    }

    /// A hub introduction for us: by the pinned hub, about us as we are now.
    fn check_introduction(&self, i: &Introduction, hub: &TrustedHub) -> Result<(), HubError> {
        let me = self.h.me();
        if i.kind != IntroductionKind::Hub || i.issuer != hub.instance_id {
            return Err(HubError::Refused(
                "the hub's introduction is not the hub's".into(),
            ));
        }
        let claim = openhive_core::introduction::Claim {
            instance_id: &me.instance_id,
            signing_key: &me.key.public().to_base64(),
            sync_endpoint: &me.sync_endpoint,
            hive: openhive_core::introduction::ANY_HIVE,
        };
        i.check_form()
            .and_then(|()| i.verify(&hub.key, claim, now_ms()))
            .map_err(|e| HubError::Refused(format!("the hub's introduction: {e}")))
    }

    async fn heartbeat(&self, r: &Registration) -> Result<HeartbeatResponse, HubError> {
        let path = format!("/swarms/{}/heartbeat", r.swarm_id);
        let beat: HeartbeatResponse = self
            .send(
                self.authed(reqwest::Method::POST, &path, r),
                Duration::from_secs(10),
            )
            .await?;
        let trusted = trusted_of(r, self.s.pinned_key.as_deref())?;
        self.keep_introduction(&beat.introduction, &trusted).await?;
        Ok(beat)
    }

    /// Stores the hub's introduction for us if it checks out (a hub that is this very
    /// instance needs none: it trusts itself, and an instance cannot introduce itself).
    async fn keep_introduction(&self, i: &Introduction, hub: &TrustedHub) -> Result<(), HubError> {
        if hub.instance_id == self.h.me().instance_id {
            return Ok(());
        }
        match self.check_introduction(i, hub) {
            Ok(()) => {
                let intro = i.clone();
                self.h
                    .store()
                    .write(move |tx| introductions::put_own(tx, &intro, now_ms()))
                    .await?;
            }
            Err(e) => {
                tracing::warn!(hub = %self.s.url, error = %e, "ignoring the hub's introduction")
            }
        }
        Ok(())
    }

    /// Makes the hub's list of our hives the list of our sync groups.
    async fn advertise(&self, r: &Registration, on_hub: &[String]) -> Result<(), HubError> {
        let local: Vec<String> = self
            .h
            .store()
            .read(sync_state::list_groups)
            .await?
            .into_iter()
            .map(|g| g.hive_name)
            .collect();
        for name in local.iter().filter(|n| !on_hub.contains(n)) {
            let path = format!("/swarms/{}/hives", r.swarm_id);
            let _: HivesResponse = self
                .send(
                    self.authed(reqwest::Method::POST, &path, r)
                        .json(&serde_json::json!({ "hive_name": name })),
                    Duration::from_secs(10),
                )
                .await?;
            tracing::info!(hub = %self.s.url, hive = %name, "sync group advertised on the MAP hub");
        }
        for name in on_hub.iter().filter(|n| !local.contains(n)) {
            let path = format!("/swarms/{}/hives/{name}", r.swarm_id);
            let _: HivesResponse = self
                .send(
                    self.authed(reqwest::Method::DELETE, &path, r),
                    Duration::from_secs(10),
                )
                .await?;
            tracing::info!(hub = %self.s.url, hive = %name, "sync group withdrawn from the MAP hub");
        }
        Ok(())
    }

    async fn events(
        &self,
        r: &Registration,
        since: i64,
        wait: Duration,
    ) -> Result<EventsResponse, HubError> {
        let path = format!(
            "/swarms/{}/events?since={since}&wait_ms={}",
            r.swarm_id,
            wait.as_millis()
        );
        self.send(
            self.authed(reqwest::Method::GET, &path, r),
            wait + Duration::from_secs(10),
        )
        .await
    }

    /// Reads the hub's peer list and makes the hub peers match it.
    async fn refresh_peers(&self, r: &Registration) -> Result<(), HubError> {
        let path = format!("/peers/{}", r.swarm_id);
        let list: PeerList = self
            .send(
                self.authed(reqwest::Method::GET, &path, r),
                Duration::from_secs(10),
            )
            .await?;
        let me = self.h.me().clone();
        let my_endpoint = crate::protocol::normalize_endpoint(&me.sync_endpoint);
        let peers: Vec<HubPeer> = list
            .peers
            .into_iter()
            .filter(|p| {
                p.instance_id != me.instance_id
                    && openhive_core::ids::instance_suffix(&p.instance_id).is_some()
                    && validate::url(&p.sync_endpoint).is_ok()
                    && validate::display_name(&p.name, "name").is_ok()
                    && crate::protocol::normalize_endpoint(&p.sync_endpoint) != my_endpoint
            })
            .collect();
        let max_peers = self.s.max_peers;
        let changed = self
            .h
            .store()
            .write(move |tx| apply_peers(tx, &me.instance_id, &peers, max_peers, now_ms()))
            .await?;
        if changed {
            self.h.reconcile().await?;
        }
        Ok(())
    }
}

/// A hub peer as [`choose_links`] sees it for one hive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate<'a> {
    pub instance_id: &'a str,
    /// The hub reports it online.
    pub online: bool,
    /// We hold a link with it for the hive already (not `left`).
    pub linked: bool,
}

fn digest(parts: &[&str]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// Which of the hub peers sharing `hive` we keep or open a link with (their instance ids).
///
/// The hub lists every instance sharing the hive; linking them all would make every event
/// cross O(instances) links. So, per hive:
/// - every link we hold is kept (a link is never dropped for being over the cap: the peer
///   may have chosen us);
/// - the **ring successor**: members (the candidates and us) ordered by SHA-256 of
///   (hive, instance id), the first *online* one after us. Every instance links its
///   successor, so the links of all members contain a ring through the online ones and the
///   mesh is connected whatever the cap, without any coordination (every instance computes
///   the same order from the same list);
/// - then online candidates by rendezvous rank (SHA-256 of (us, them)) until `max_peers`
///   online peers are linked: stable as members come and go, and different for each
///   instance, so the links form a random graph of degree about `2 × max_peers`.
pub(crate) fn choose_links<'a>(
    me: &str,
    hive: &str,
    candidates: &[Candidate<'a>],
    max_peers: usize,
) -> Vec<&'a str> {
    let mut chosen: Vec<&'a str> = candidates
        .iter()
        .filter(|c| c.linked)
        .map(|c| c.instance_id)
        .collect();
    let mut online_linked = candidates.iter().filter(|c| c.linked && c.online).count();
    let me_pos = digest(&[hive, me]);
    let successor = candidates
        .iter()
        .filter(|c| c.online)
        .map(|c| (digest(&[hive, c.instance_id]), c))
        // The first after us on the ring: smallest position above ours, else the smallest.
        .min_by_key(|(pos, _)| (*pos <= me_pos, *pos))
        .map(|(_, c)| c);
    if let Some(c) = successor
        && !c.linked
    {
        chosen.push(c.instance_id);
        online_linked += 1;
    }
    let mut rest: Vec<([u8; 32], &Candidate<'a>)> = candidates
        .iter()
        .filter(|c| c.online && !c.linked && !chosen.contains(&c.instance_id))
        .map(|c| (digest(&[me, c.instance_id]), c))
        .collect();
    rest.sort_by_key(|(rank, _)| *rank);
    for (_, c) in rest {
        if online_linked >= max_peers {
            break;
        }
        chosen.push(c.instance_id);
        online_linked += 1;
    }
    chosen
}

/// Makes the hub-sourced peers and their links match the hub's list (one transaction):
/// every listed peer sharing a hive we sync gets a row (source `hub`, or its higher source
/// kept), and a link for each such hive where [`choose_links`] picks it. The rows of the
/// peers not picked are what keeps gossip from linking them after all (gossip never
/// changes a peer of a higher source: the hub's choice wins). Hub-sourced links of hives
/// the hub no longer lists for a peer are left. Manual peers (`api`, `config`) are not
/// touched. Returns whether anything changed.
pub(crate) fn apply_peers(
    tx: &openhive_store::Conn<'_>,
    me: &str,
    peers: &[HubPeer],
    max_peers: usize,
    now: i64,
) -> Result<bool, StoreError> {
    use std::collections::{HashMap, HashSet};
    // Per hive we sync: the listed peers sharing it, and which of them we link.
    let mut by_hive: HashMap<&str, Vec<&HubPeer>> = HashMap::new();
    for p in peers {
        for hive in &p.shared_hives {
            by_hive.entry(hive.as_str()).or_default().push(p);
        }
    }
    let mut picked: HashSet<(String, String)> = HashSet::new();
    for (hive, listed) in &by_hive {
        let Some(g) = sync_state::group_by_name(tx, hive)? else {
            continue;
        };
        let mut cands = Vec::with_capacity(listed.len());
        for p in listed {
            let linked = match sync_state::peer_by_instance(tx, &p.instance_id)? {
                Some(row) => sync_state::link(tx, &row.id, &g.hive_id)?
                    .is_some_and(|l| l.state != LinkState::Left),
                None => false,
            };
            cands.push(Candidate {
                instance_id: &p.instance_id,
                online: p.status == "online",
                linked,
            });
        }
        for id in choose_links(me, hive, &cands, max_peers) {
            picked.insert((id.to_string(), hive.to_string()));
        }
    }
    let mut changed = false;
    let mut listed = HashSet::new();
    for p in peers {
        let endpoint = crate::protocol::normalize_endpoint(&p.sync_endpoint);
        let found = match sync_state::peer_by_instance(tx, &p.instance_id)? {
            Some(row) => Some(row),
            None => sync_state::peer_by_endpoint(tx, &endpoint)?,
        };
        let is_picked = |hive: &str| picked.contains(&(p.instance_id.clone(), hive.to_string()));
        let peer_id = match found {
            Some(row) if matches!(row.source, PeerSource::Api | PeerSource::Config) => {
                listed.insert(row.id);
                continue;
            }
            Some(row) => {
                changed |= sync_state::raise_source(tx, &row.id, PeerSource::Hub)?;
                if row.endpoint != endpoint
                    && sync_state::peer_by_endpoint(tx, &endpoint)?.is_none()
                {
                    sync_state::update_peer(tx, &row.id, None, Some(&endpoint), now)?;
                    changed = true;
                }
                row.id
            }
            None => {
                let (row, _) = sync_state::upsert_configured_peer(
                    tx,
                    p.name.trim(),
                    &endpoint,
                    PeerSource::Hub,
                    now,
                )?;
                changed = true;
                row.id
            }
        };
        listed.insert(peer_id.clone());
        let mut wanted = HashSet::new();
        for hive in &p.shared_hives {
            if let Some(g) = sync_state::group_by_name(tx, hive)? {
                if is_picked(hive) {
                    changed |=
                        sync_state::ensure_link(tx, &peer_id, &g.hive_id, LinkState::Handshaking)?;
                }
                wanted.insert(g.hive_id);
            }
        }
        let Some(row) = sync_state::peer_by_id(tx, &peer_id)? else {
            continue;
        };
        if row.source == PeerSource::Hub {
            for l in sync_state::links_for_peer(tx, &peer_id)? {
                if l.state != LinkState::Left && !wanted.contains(&l.hive_id) {
                    sync_state::mark_left(tx, &peer_id, &l.hive_id)?;
                    changed = true;
                }
            }
        }
    }
    // Hub peers the hub no longer lists share nothing with us any more.
    for row in sync_state::list_peers(tx)? {
        if row.source != PeerSource::Hub || listed.contains(&row.id) {
            continue;
        }
        for l in sync_state::links_for_peer(tx, &row.id)? {
            if l.state != LinkState::Left {
                sync_state::mark_left(tx, &row.id, &l.hive_id)?;
                changed = true;
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn cands(ids: &[String], online: impl Fn(usize) -> bool) -> Vec<Candidate<'_>> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| Candidate {
                instance_id: id,
                online: online(i),
                linked: false,
            })
            .collect()
    }

    fn ids(rng: &mut StdRng, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| format!("inst_{:016x}", rng.random::<u64>()))
            .collect()
    }

    #[test]
    fn under_the_cap_every_online_peer_is_linked() {
        let mut rng = StdRng::seed_from_u64(1);
        let all = ids(&mut rng, 6);
        let (me, others) = all.split_first().unwrap();
        let c = cands(others, |i| i != 2);
        let mut got = choose_links(me, "eng", &c, 8);
        got.sort();
        let mut want: Vec<&str> = others
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, s)| s.as_str())
            .collect();
        want.sort();
        assert_eq!(got, want, "every online peer, not the offline one");
    }

    #[test]
    fn links_held_are_kept_and_only_online_ones_count() {
        let mut rng = StdRng::seed_from_u64(2);
        let all = ids(&mut rng, 12);
        let (me, others) = all.split_first().unwrap();
        let mut c = cands(others, |i| i != 0);
        // Linked: one offline (kept, not counted), two online.
        for i in [0, 1, 2] {
            c[i].linked = true;
        }
        let got = choose_links(me, "eng", &c, 3);
        for i in [0, 1, 2] {
            assert!(got.contains(&others[i].as_str()), "held link {i} kept");
        }
        // Two online held + one more (the successor, or the best ranked) = the cap of 3.
        assert_eq!(got.len(), 4, "{got:?}");
        // A cap below what is held drops nothing.
        assert_eq!(choose_links(me, "eng", &c, 1).len(), 3);
    }

    /// With the smallest cap every instance opens one link, to its ring successor: the union
    /// of everyone's choices is a ring through the online instances, so the mesh is
    /// connected whatever the ids; with a cap k nobody opens more than k links.
    #[test]
    fn every_instance_choosing_alone_gives_a_connected_mesh_of_bounded_degree() {
        let mut rng = StdRng::seed_from_u64(3);
        for round in 0..200 {
            let n = rng.random_range(2..40usize);
            let cap = if round % 2 == 0 {
                1
            } else {
                rng.random_range(1..6usize)
            };
            let all = ids(&mut rng, n);
            let offline: Vec<bool> = (0..n).map(|i| i > 0 && rng.random_bool(0.2)).collect();
            let mut edges: Vec<(usize, usize)> = Vec::new();
            for (i, me) in all.iter().enumerate() {
                if offline[i] {
                    continue;
                }
                let others: Vec<String> = all.iter().filter(|o| *o != me).cloned().collect();
                let c: Vec<Candidate<'_>> = others
                    .iter()
                    .map(|o| Candidate {
                        instance_id: o,
                        online: !offline[all.iter().position(|a| a == o).unwrap()],
                        linked: false,
                    })
                    .collect();
                let got = choose_links(me, "eng", &c, cap);
                assert!(got.len() <= cap, "n {n} cap {cap}: {} links", got.len());
                for g in got {
                    let j = all.iter().position(|a| a == g).unwrap();
                    assert!(!offline[j], "an offline peer was chosen");
                    edges.push((i, j));
                }
            }
            // Union-find over the undirected edges: one component of the online instances.
            let mut parent: Vec<usize> = (0..n).collect();
            fn find(p: &mut [usize], x: usize) -> usize {
                let mut x = x;
                while p[x] != x {
                    p[x] = p[p[x]];
                    x = p[x];
                }
                x
            }
            for (a, b) in edges {
                let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                parent[ra] = rb;
            }
            let online: Vec<usize> = (0..n).filter(|i| !offline[*i]).collect();
            let root = find(&mut parent, online[0]);
            for i in online {
                assert_eq!(
                    find(&mut parent, i),
                    root,
                    "round {round}: n {n} cap {cap} not connected"
                );
            }
        }
    }

    fn hub_peer(id: &str, hive: &str) -> HubPeer {
        HubPeer {
            swarm_id: format!("swarm_{id}"),
            instance_id: id.to_string(),
            name: "peer".into(),
            sync_endpoint: format!("http://127.0.0.1:9/{id}/sync/v1"),
            signing_key: String::new(),
            shared_hives: vec![hive.to_string()],
            status: "online".into(),
            capabilities: serde_json::json!({ "hive_sync": true }),
            map_endpoint: None,
            last_seen_at: "2026-11-29T00:00:00Z".into(),
        }
    }

    /// The hub lists 20 instances sharing the hive: with `max_peers` 3 we open 3 links; the
    /// others get a row (so that gossip does not link them) and no link (before, every
    /// listed peer got a link).
    #[test]
    fn a_long_hub_list_opens_at_most_max_peers_links() {
        let (_dir, store) = crate::temp_store();
        let me = openhive_core::ids::new_instance_id();
        let peers: Vec<HubPeer> = (0..20)
            .map(|_| hub_peer(&openhive_core::ids::new_instance_id(), "eng"))
            .collect();
        let (links, rows) = store
            .write_blocking(move |tx| -> Result<_, StoreError> {
                sync_state::ensure_group(tx, "hive_eng", "eng", &me, 1)?;
                assert!(apply_peers(tx, &me, &peers, 3, 2)?);
                // Again with the same list: nothing changes, nothing is added.
                assert!(!apply_peers(tx, &me, &peers, 3, 3)?);
                let rows = sync_state::list_peers(tx)?;
                let mut links = 0;
                for r in &rows {
                    links += sync_state::links_for_peer(tx, &r.id)?.len();
                }
                Ok((links, rows.len()))
            })
            .unwrap();
        assert_eq!(links, 3);
        assert_eq!(rows, 20);
    }
}
