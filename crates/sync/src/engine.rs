//! The sync engine: owns the outbound workers and the state the inbound handlers share.
//!
//! - A fixed pool of workers runs the steps of every live (peer, hive) link
//!   ([`crate::scheduler`] decides which link runs when; [`crate::link`] is one step:
//!   handshake, pull, push through the generic [`crate::outbox`]). An idle link costs no
//!   task, no timer and no wake-up.
//! - One heartbeat task ([`crate::heartbeat`]): liveness, lag checks, roster exchange,
//!   `unreachable` marking, expiry of events that waited too long.
//! - [`SyncHandle::notify`] wakes the links of a hive after a local commit or a received
//!   batch (that is how events are relayed onward).
//! - [`SyncHandle::reconcile`] starts workers for new links and stops those of links that
//!   were deleted or left; admin and handshake paths call it after changing links.
//!
//! Bounded: one step per link at a time, `max_in_flight` workers, and a global semaphore over
//! all outbound requests; the number of tasks does not depend on the number of links.

use crate::backoff::BackoffPolicy;
use crate::client::SyncClient;
use crate::error::SyncError;
use crate::news::News;
use crate::protocol::MAX_BATCH_GROUPS;
use crate::ratelimit::RateLimiter;
use crate::scheduler::{After, Scheduler, SchedulerStats};
use crate::transport::Transport;
use openhive_core::time::now_ms;
use openhive_core::{RotationStatement, SharedKey};
use openhive_store::materialize::Change;
use openhive_store::{Store, StoreError, keys, sync_state};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// Who this instance is, as peers see it.
#[derive(Debug, Clone)]
pub struct LocalIdentity {
    pub instance_id: String,
    pub instance_name: String,
    /// The current signing key (replaced by a key rotation, shared with the write path).
    pub key: SharedKey,
    /// This instance's base URL + `/sync/v1`.
    pub sync_endpoint: String,
}

/// Tunables (from the `[sync]` configuration section).
#[derive(Clone)]
pub struct SyncSettings {
    pub enabled: bool,
    pub heartbeat_interval: Duration,
    pub peer_timeout: Duration,
    pub handshake_secret: Option<String>,
    pub rate_limit_events_per_sec: u32,
    pub rate_limit_burst: u32,
    pub backoff: BackoffPolicy,
    /// Outbound requests in flight across all links.
    pub max_in_flight: usize,
    /// Consecutive failures after which a peer's status becomes `error`.
    pub error_after_failures: i64,
    pub push_batch: i64,
    pub pull_batch: i64,
    /// Most links of one peer one step covers (one batched call); 1: a call per link.
    pub batch_groups: usize,
    /// How often a long pull logs its progress ([`crate::progress`]).
    pub progress_log: Duration,
    /// Peer gossip (`[sync.gossip]`).
    pub gossip: crate::gossip::GossipSettings,
}

impl std::fmt::Debug for SyncSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncSettings")
            .field("enabled", &self.enabled)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("peer_timeout", &self.peer_timeout)
            .field(
                "handshake_secret",
                &self.handshake_secret.as_ref().map(|_| "***"),
            )
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            enabled: true,
            heartbeat_interval: Duration::from_secs(30),
            peer_timeout: Duration::from_secs(300),
            handshake_secret: None,
            rate_limit_events_per_sec: 20_000,
            rate_limit_burst: 100_000,
            backoff: BackoffPolicy::default(),
            max_in_flight: 8,
            error_after_failures: 10,
            push_batch: crate::protocol::PUSH_BATCH,
            pull_batch: crate::protocol::MAX_PULL_LIMIT,
            batch_groups: crate::protocol::BATCH_GROUPS,
            progress_log: Duration::from_secs(5),
            gossip: crate::gossip::GossipSettings::default(),
        }
    }
}

/// Receives the materialized changes of every batch the engine commits (realtime fan-out).
pub type OnChanges = Arc<dyn Fn(Vec<Change>) + Send + Sync>;

/// A link: (peer id, hive id).
pub(crate) type LinkKey = (String, String);

pub(crate) struct Inner {
    pub store: Store,
    pub me: LocalIdentity,
    pub settings: SyncSettings,
    /// Every outbound `/sync/v1` call goes through this ([`SyncClient`] in production).
    pub client: Arc<dyn Transport>,
    /// The pooled HTTP client (same TLS roots), for the MAP hub client only.
    pub http: SyncClient,
    pub on_changes: OnChanges,
    pub limiter: RateLimiter,
    pub in_flight: Arc<Semaphore>,
    pub sched: Scheduler,
    /// Per peer, the shared hives it has not heard about yet (what heartbeats carry).
    pub news: News,
    /// Groups our heartbeats and heartbeat answers carried, since start.
    pub heartbeat_groups_sent: std::sync::atomic::AtomicU64,
    /// Per peer, the gossip it has heard from us; the generation of our peer knowledge.
    pub gossip: crate::gossip::Memory,
    /// Held while reconciling; whether a reconcile completed (the first, at start, marks
    /// every live link as news: see [`SyncHandle::reconcile`]).
    pub reconcile_lock: tokio::sync::Mutex<bool>,
    pub shutdown_tx: watch::Sender<bool>,
    pub tasks: Mutex<Vec<JoinHandle<()>>>,
    /// When each (peer, hive) last pulled from us: the pull's `since`, and the seq the page
    /// we served ran to (what the peer fetched, not yet acknowledged).
    /// (`tokio::time::Instant`: the same clock as `std` in production, virtual in the
    /// simulation.)
    pub pulled: Mutex<HashMap<LinkKey, Pulled>>,
    /// Handshake initiators recently confirmed at their configured endpoint:
    /// (endpoint, instance id, signing key) → when.
    pub confirmed: Mutex<HashMap<(String, String, String), tokio::time::Instant>>,
    /// The MAP hub whose introductions we accept (set by the hub client once it knows the
    /// hub's key).
    pub trusted_hub: Mutex<Option<crate::admission::TrustedHub>>,
    /// Progress of the links pulling now (in memory, this process only).
    pub progress: crate::progress::Tracker,
    /// Outbox ranges held as all skipped, so steps do not read them again.
    pub held: crate::outbox::Held,
    /// Wakes the MAP hub client (`hub_client`) after a local sync group change.
    pub hub_wake: tokio::sync::Notify,
}

/// The `since` recorded by [`SyncHandle::expect_pull`]: a pull announced by a handshake.
const AWAITING_FIRST_PULL: i64 = -1;

/// The last pull of one (peer, hive) from us.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pulled {
    at: tokio::time::Instant,
    /// The pull's `since` ([`AWAITING_FIRST_PULL`]: only announced by a handshake).
    since: i64,
    /// Where the page we served ended: what the peer fetched, not yet acknowledged.
    through: i64,
}

/// [`SyncHandle::peer_fetched_through`] for one recorded pull at `now`.
fn fetched_through(pull: Option<&Pulled>, now: tokio::time::Instant) -> Option<(i64, Duration)> {
    let p = pull?;
    if p.since == AWAITING_FIRST_PULL {
        return None;
    }
    let left = AWAITED_PULL.checked_sub(now.saturating_duration_since(p.at))?;
    (!left.is_zero()).then_some((p.through, left))
}

/// How long a handshake's announced pull holds our push back if it does not come.
const AWAITED_PULL: Duration = Duration::from_secs(10);

/// How long a confirmation of an initiator at its configured endpoint is reused.
const IDENTITY_CONFIRMATION_TTL: Duration = Duration::from_secs(30);

/// Handle to the running engine; cheap to clone.
#[derive(Clone)]
pub struct SyncHandle {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for SyncHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHandle")
            .field("instance_id", &self.inner.me.instance_id)
            .finish_non_exhaustive()
    }
}

pub struct SyncEngine;

impl SyncEngine {
    /// Records our own key, starts the heartbeat task and one worker per live link.
    /// With `settings.enabled == false` nothing runs and the `/sync/v1` handlers answer 404.
    pub async fn start(
        store: Store,
        me: LocalIdentity,
        settings: SyncSettings,
        on_changes: OnChanges,
    ) -> Result<SyncHandle, SyncError> {
        let client = SyncClient::new(settings.handshake_secret.clone())
            .map_err(|e| SyncError::Store(StoreError::Invalid(e.to_string())))?;
        let transport: Arc<dyn Transport> = Arc::new(client.clone());
        Self::start_inner(store, me, settings, on_changes, transport, client).await
    }

    /// [`SyncEngine::start`] with outbound calls going through `transport` instead of HTTP
    /// (the simulation's in-memory network, `crate::sim`). The MAP hub client, if started,
    /// still speaks HTTP.
    pub async fn start_with_transport(
        store: Store,
        me: LocalIdentity,
        settings: SyncSettings,
        on_changes: OnChanges,
        transport: Arc<dyn Transport>,
    ) -> Result<SyncHandle, SyncError> {
        let http = SyncClient::new(settings.handshake_secret.clone())
            .map_err(|e| SyncError::Store(StoreError::Invalid(e.to_string())))?;
        Self::start_inner(store, me, settings, on_changes, transport, http).await
    }

    async fn start_inner(
        store: Store,
        me: LocalIdentity,
        settings: SyncSettings,
        on_changes: OnChanges,
        client: Arc<dyn Transport>,
        http: SyncClient,
    ) -> Result<SyncHandle, SyncError> {
        let (shutdown_tx, _) = watch::channel(false);
        let progress_log = settings.progress_log;
        let handle = SyncHandle {
            inner: Arc::new(Inner {
                limiter: RateLimiter::new(
                    settings.rate_limit_events_per_sec,
                    settings.rate_limit_burst,
                ),
                in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
                store,
                me,
                settings,
                client,
                http,
                on_changes,
                sched: Scheduler::default(),
                news: News::default(),
                gossip: crate::gossip::Memory::default(),
                reconcile_lock: tokio::sync::Mutex::new(false),
                heartbeat_groups_sent: Default::default(),
                shutdown_tx,
                tasks: Mutex::new(Vec::new()),
                pulled: Mutex::new(HashMap::new()),
                confirmed: Mutex::new(HashMap::new()),
                trusted_hub: Mutex::new(None),
                progress: crate::progress::Tracker::new(progress_log),
                held: crate::outbox::Held::default(),
                hub_wake: tokio::sync::Notify::new(),
            }),
        };
        let me_id = handle.inner.me.instance_id.clone();
        let me_key = handle.inner.me.key.public();
        handle
            .inner
            .store
            .write(move |tx| -> Result<(), SyncError> {
                let now = now_ms();
                if keys::learn(tx, &me_id, &me_key, None, now)? == keys::Learned::Conflict {
                    return Err(SyncError::Conflict(format!(
                        "instance_keys holds another key for this instance ({me_id})"
                    )));
                }
                for g in sync_state::list_groups(tx)? {
                    sync_state::add_member(tx, &g.hive_id, &me_id)?;
                }
                Ok(())
            })
            .await?;
        if !handle.inner.settings.enabled {
            tracing::info!("hive sync is disabled");
            return Ok(handle);
        }
        let hb = tokio::spawn(crate::heartbeat::run(handle.clone(), handle.shutdown_rx()));
        handle.lock_tasks().push(hb);
        let timers = {
            let h = handle.clone();
            let rx = handle.shutdown_rx();
            tokio::spawn(async move { h.inner.sched.run_timers(rx).await })
        };
        handle.lock_tasks().push(timers);
        for _ in 0..handle.inner.settings.max_in_flight.max(1) {
            let w = tokio::spawn(link_worker(handle.clone(), handle.shutdown_rx()));
            handle.lock_tasks().push(w);
        }
        handle.reconcile().await?;
        tracing::info!(
            instance_id = %handle.inner.me.instance_id,
            sync_endpoint = %handle.inner.me.sync_endpoint,
            "hive sync engine started"
        );
        Ok(handle)
    }
}

impl SyncHandle {
    /// Announces rotation statements (`POST /sync/v1/keys`) to every peer we hold a token
    /// for, except `except` (the peer we learned them from), in the background. Nothing to
    /// do for an empty list. Best effort: a peer missed here gets the statements with the
    /// next events of the rotated instance, or at its next handshake.
    pub fn announce_keys(&self, statements: Vec<RotationStatement>, except: Option<String>) {
        if statements.is_empty() || !self.enabled() {
            return;
        }
        let h = self.clone();
        tokio::spawn(async move {
            h.send_keys(&statements, except.as_deref()).await;
        });
    }

    /// [`SyncHandle::announce_keys`], awaited. Returns how many peers accepted the call.
    pub async fn send_keys(&self, statements: &[RotationStatement], except: Option<&str>) -> usize {
        let except = except.map(str::to_string);
        let targets = self
            .store()
            .read(
                move |c| -> Result<Vec<(String, String, String)>, StoreError> {
                    let mut out = Vec::new();
                    for p in sync_state::list_peers(c)? {
                        if p.instance_id.is_none() || except.as_deref() == Some(p.id.as_str()) {
                            continue;
                        }
                        if let Some(l) = sync_state::heartbeat_link(c, &p.id)?
                            && let Some(t) = l.token_out
                        {
                            out.push((p.id, p.endpoint, t));
                        }
                    }
                    Ok(out)
                },
            )
            .await;
        let targets = match targets {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "listing peers to announce a key rotation");
                return 0;
            }
        };
        let body = crate::protocol::KeysRequest {
            key_rotations: statements.to_vec(),
        };
        let mut ok = 0;
        for (peer_id, endpoint, token) in targets {
            match self.client().keys(&endpoint, &token, &body).await {
                Ok(r) => {
                    ok += 1;
                    tracing::info!(peer = %peer_id, accepted = r.accepted, refused = r.refused, "key rotation announced");
                }
                Err(e) => {
                    tracing::info!(peer = %peer_id, error = %e, "announcing a key rotation failed; the peer gets it with the next events or handshake");
                }
            }
        }
        ok
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn me(&self) -> &LocalIdentity {
        &self.inner.me
    }

    /// The MAP hub whose introductions handshakes may carry (`None`: hub introductions are
    /// refused).
    pub fn trusted_hub(&self) -> Option<crate::admission::TrustedHub> {
        self.inner
            .trusted_hub
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sets (or clears) the MAP hub whose introductions are accepted.
    pub fn set_trusted_hub(&self, hub: Option<crate::admission::TrustedHub>) {
        *self
            .inner
            .trusted_hub
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = hub;
    }

    /// Progress of the links pulling now in this process ([`crate::progress`]).
    pub fn progress(&self) -> &crate::progress::Tracker {
        &self.inner.progress
    }

    /// A sync group was enabled or deleted: the MAP hub client (if any) advertises or
    /// withdraws it at once.
    pub fn groups_changed(&self) {
        self.inner.hub_wake.notify_one();
    }

    pub(crate) fn hub_wake(&self) -> &tokio::sync::Notify {
        &self.inner.hub_wake
    }

    pub fn settings(&self) -> &SyncSettings {
        &self.inner.settings
    }

    pub fn enabled(&self) -> bool {
        self.inner.settings.enabled
    }

    /// The outbound calls (the engine's transport).
    pub(crate) fn client(&self) -> &Arc<dyn Transport> {
        &self.inner.client
    }

    /// The pooled HTTP client, for the MAP hub client.
    pub(crate) fn http(&self) -> &SyncClient {
        &self.inner.http
    }

    pub(crate) fn shutdown_rx(&self) -> watch::Receiver<bool> {
        self.inner.shutdown_tx.subscribe()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown_tx.borrow()
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reports materialized changes to the realtime sink.
    pub(crate) fn emit(&self, changes: Vec<Change>) {
        if !changes.is_empty() {
            (self.inner.on_changes)(changes);
        }
    }

    /// Wakes the outbound links of `hive_id`: call after a commit appended to its log.
    pub fn notify(&self, hive_id: &str) {
        let peers = self.inner.sched.peers_of(hive_id);
        self.inner.news.mark(hive_id, &peers);
        for p in peers {
            self.inner.sched.wake(&(p, hive_id.to_string()));
        }
    }

    /// Something changed in `hive_id` that its peers should hear of at their next heartbeat
    /// (a roster that grew), without waking the outboxes.
    pub(crate) fn mark_news(&self, hive_id: &str) {
        let peers = self.inner.sched.peers_of(hive_id);
        self.inner.news.mark(hive_id, &peers);
    }

    /// [`SyncHandle::mark_news`] for every peer of `hive_id` but `peer_id` (the roster grew
    /// by what that peer's own handshake told us: it knows).
    pub(crate) fn mark_news_except(&self, hive_id: &str, peer_id: &str) {
        let peers = self.inner.sched.peers_of(hive_id);
        self.inner
            .news
            .mark(hive_id, peers.iter().filter(|p| *p != peer_id));
    }

    /// Wakes the link (peer, hive) only (e.g. to handshake again at once).
    pub(crate) fn wake_link(&self, peer_id: &str, hive_id: &str) {
        self.inner
            .sched
            .wake(&(peer_id.to_string(), hive_id.to_string()));
    }

    /// Asks the link (peer, hive) to pull from the peer as soon as possible.
    pub fn request_pull(&self, peer_id: &str, hive_id: &str) {
        self.inner
            .sched
            .request_pull(&(peer_id.to_string(), hive_id.to_string()));
    }

    /// The peer completed a handshake with the link and has nothing for it to pull: the link
    /// runs now, even if it was backing off ([`crate::scheduler::Scheduler::handshook`]).
    pub(crate) fn handshook(&self, peer_id: &str, hive_id: &str) {
        self.inner
            .sched
            .handshook(&(peer_id.to_string(), hive_id.to_string()));
    }

    /// Schedules the link (peer, hive) if it is live and not scheduled yet.
    pub(crate) async fn schedule_link(
        &self,
        peer_id: &str,
        hive_id: &str,
    ) -> Result<(), SyncError> {
        if !self.enabled() || self.is_shutting_down() {
            return Ok(());
        }
        let (p, hv) = (peer_id.to_string(), hive_id.to_string());
        let live = self
            .inner
            .store
            .read(move |c| sync_state::link(c, &p, &hv))
            .await?
            .is_some_and(|l| l.state != sync_state::LinkState::Left);
        if live {
            self.schedule_live_link(peer_id, hive_id);
        }
        Ok(())
    }

    /// Schedules the link (peer, hive), known live (a transaction that committed just now
    /// created or reopened it: an accepted inbound handshake), without reading it again. If
    /// it was left meanwhile, its first step finds it so and forgets it.
    pub(crate) fn schedule_live_link(&self, peer_id: &str, hive_id: &str) {
        if !self.enabled() || self.is_shutting_down() {
            return;
        }
        // (Not news for the peer: the handshake that created the link told it our head
        // and roster.)
        if self
            .inner
            .sched
            .insert((peer_id.to_string(), hive_id.to_string()))
        {
            self.inner.gossip.bump();
        }
    }

    /// Schedules live links that are not scheduled yet, forgets links that are gone.
    pub fn reconcile(&self) -> futures::future::BoxFuture<'static, Result<(), SyncError>> {
        let h = self.clone();
        Box::pin(async move { h.reconcile_inner().await })
    }

    async fn reconcile_inner(&self) -> Result<(), SyncError> {
        if !self.enabled() || self.is_shutting_down() {
            return Ok(());
        }
        let mut reconciled = self.inner.reconcile_lock.lock().await;
        let live = self.inner.store.read(sync_state::live_link_keys).await?;
        let (removed, added) = self.inner.sched.reconcile(live);
        // The first reconcile, at start, schedules every live link: each is news for its
        // peer (what it heard before we stopped is unknown). A link added later is new, and
        // its first handshake tells the peer our head and roster: a heartbeat in the middle
        // of a pairing need not carry it again.
        if !*reconciled {
            for (peer, hive) in &added {
                self.inner.news.mark(hive, [peer]);
            }
            *reconciled = true;
        }
        let changed = removed || !added.is_empty();
        if changed {
            // Links came or went: what we can tell peers by gossip changed.
            self.inner.gossip.bump();
        }
        Ok(())
    }

    /// Stops every worker: signals them, waits up to `grace`, then aborts the rest.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.inner.shutdown_tx.send(true);
        let joins: Vec<JoinHandle<()>> = self.lock_tasks().drain(..).collect();
        let aborts: Vec<_> = joins.iter().map(|j| j.abort_handle()).collect();
        if tokio::time::timeout(grace, futures::future::join_all(joins))
            .await
            .is_err()
        {
            for a in aborts {
                a.abort();
            }
        }
    }

    fn lock_confirmed(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String, String), tokio::time::Instant>> {
        self.inner
            .confirmed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// True if `instance_id` with `signing_key` answered at `endpoint` within the last
    /// [`IDENTITY_CONFIRMATION_TTL`].
    pub(crate) fn identity_recently_confirmed(
        &self,
        endpoint: &str,
        instance_id: &str,
        signing_key: &str,
    ) -> bool {
        let key = (
            endpoint.to_string(),
            instance_id.to_string(),
            signing_key.to_string(),
        );
        self.lock_confirmed()
            .get(&key)
            .is_some_and(|at| at.elapsed() < IDENTITY_CONFIRMATION_TTL)
    }

    /// Records a confirmation (expired ones are dropped as new ones come).
    pub(crate) fn identity_confirmed(&self, endpoint: &str, instance_id: &str, signing_key: &str) {
        let mut m = self.lock_confirmed();
        m.retain(|_, at| at.elapsed() < IDENTITY_CONFIRMATION_TTL);
        m.insert(
            (
                endpoint.to_string(),
                instance_id.to_string(),
                signing_key.to_string(),
            ),
            tokio::time::Instant::now(),
        );
    }

    /// Records a pull of our log of `hive_id` from `since` by the peer (inbound). A pull
    /// that found nothing after `since` ends its pulling: what we commit next is pushed at
    /// once.
    pub(crate) fn note_pull(
        &self,
        peer_id: &str,
        hive_id: &str,
        since: i64,
        through: i64,
        caught_up: bool,
    ) {
        if caught_up {
            let was = self
                .inner
                .pulled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(peer_id.to_string(), hive_id.to_string()));
            if was.is_some() {
                // Its push may be paused until this pull ends.
                self.inner
                    .sched
                    .resume(&(peer_id.to_string(), hive_id.to_string()));
            }
        } else {
            self.note_pulled(peer_id, hive_id, since, through);
        }
    }

    /// Records that the peer pulled our log of `hive_id` from `since`, and was served a page
    /// that ran to `through` (inbound GET).
    fn note_pulled(&self, peer_id: &str, hive_id: &str, since: i64, through: i64) {
        self.inner
            .pulled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (peer_id.to_string(), hive_id.to_string()),
                Pulled {
                    at: tokio::time::Instant::now(),
                    since,
                    through,
                },
            );
    }

    /// If the peer fetched our log of `hive_id` through some seq by a pull within
    /// [`AWAITED_PULL`], that seq and how much of the window is left. A push whose batch ends
    /// there would send what the peer already holds or is committing: its acknowledging pull
    /// follows (and resumes the push, [`SyncHandle::note_pull`]). Time-bounded, so a peer that
    /// fetched a page and never came back is pushed to as before.
    pub(crate) fn peer_fetched_through(
        &self,
        peer_id: &str,
        hive_id: &str,
    ) -> Option<(i64, Duration)> {
        let pulled = self.inner.pulled.lock().unwrap_or_else(|p| p.into_inner());
        fetched_through(
            pulled.get(&(peer_id.to_string(), hive_id.to_string())),
            tokio::time::Instant::now(),
        )
    }

    /// Records that the peer and we just completed a handshake for `hive_id`: whichever
    /// side we were, the peer pulls next (the initiator after the answer, the responder
    /// at once), so until its first pull arrives (at most [`AWAITED_PULL`]) it counts as
    /// pulling.
    pub(crate) fn expect_pull(&self, peer_id: &str, hive_id: &str) {
        self.note_pulled(peer_id, hive_id, AWAITING_FIRST_PULL, AWAITING_FIRST_PULL);
    }

    /// True if the peer pulled this hive from us within `window` (or a handshake announced
    /// its pull, see [`SyncHandle::expect_pull`]): it is backfilling or catching up by
    /// itself, and pushing the same events concurrently would send them twice.
    /// Returns how long it may still take: the push waits that long at most, and is woken
    /// earlier when the pull catches up ([`SyncHandle::note_pull`]).
    pub(crate) fn peer_is_pulling(
        &self,
        peer_id: &str,
        hive_id: &str,
        window: Duration,
    ) -> Option<Duration> {
        self.inner
            .pulled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(peer_id.to_string(), hive_id.to_string()))
            .and_then(|Pulled { at, since, .. }| {
                let w = if *since == AWAITING_FIRST_PULL {
                    AWAITED_PULL
                } else {
                    window
                };
                w.checked_sub(at.elapsed()).filter(|left| !left.is_zero())
            })
    }

    /// True if this process holds the lease `name` (taking it if free). Where one process
    /// owns the data (SQLite) every lease is held; on PostgreSQL, app processes of one
    /// instance share the work: a link's outbox, and the heartbeat, run in exactly one of
    /// them at a time, and move to another when that process dies.
    pub(crate) async fn holds_lease(&self, name: String) -> bool {
        if self.inner.store.engine() == openhive_store::Engine::Sqlite {
            return true;
        }
        let store = self.inner.store.clone();
        let got = tokio::task::spawn_blocking(move || store.backend().try_lease(&name)).await;
        match got {
            Ok(Ok(held)) => held,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not check a lease; assuming another process holds it");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease task failed");
                false
            }
        }
    }

    /// Number of links scheduled (for tests and status).
    pub fn worker_count(&self) -> usize {
        self.inner.sched.stats().links
    }

    /// The scheduler's figures (links, queued, running, waiting).
    pub fn scheduler_stats(&self) -> SchedulerStats {
        self.inner.sched.stats()
    }

    /// Groups our heartbeats and heartbeat answers carried, since start (what the news
    /// costs: an idle mesh sends none).
    pub fn heartbeat_groups_sent(&self) -> u64 {
        self.inner
            .heartbeat_groups_sent
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts the groups of a heartbeat or answer we send.
    pub(crate) fn count_heartbeat_groups(&self, n: usize) {
        self.inner
            .heartbeat_groups_sent
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One worker of the pool: runs link steps as the scheduler hands them out. The link it
/// takes brings the other queued links of the same peer ([`crate::link_batch`]: one call for
/// many hives). A step that panics is contained: its links back off and run again.
async fn link_worker(h: SyncHandle, mut shutdown: watch::Receiver<bool>) {
    use futures::FutureExt as _;
    while let Some((key, job)) = h.inner.sched.next(&mut shutdown).await {
        let siblings = h.inner.sched.claim_siblings(
            &key.0,
            h.settings().batch_groups.clamp(1, MAX_BATCH_GROUPS) - 1,
        );
        if siblings.is_empty() {
            let mut work = job.clone();
            let run = std::panic::AssertUnwindSafe(crate::link::run_step(&h, &key, &mut work));
            let after = match run.catch_unwind().await {
                Ok(after) => after,
                Err(_) => {
                    tracing::error!(peer = %key.0, hive = %key.1, "a sync link step panicked");
                    work = job;
                    After::Backoff(h.settings().backoff.max)
                }
            };
            h.inner.sched.done(key, work, after);
            continue;
        }
        let mut links = vec![(key, job)];
        links.extend(siblings);
        let keep = links.clone();
        let run = std::panic::AssertUnwindSafe(crate::link_batch::run(&h, links));
        match run.catch_unwind().await {
            Ok(done) => {
                for (key, job, after) in done {
                    h.inner.sched.done(key, job, after);
                }
            }
            Err(_) => {
                tracing::error!(peer = %keep[0].0.0, links = keep.len(), "a batched sync step panicked");
                for (key, job) in keep {
                    h.inner
                        .sched
                        .done(key, job, After::Backoff(h.settings().backoff.max));
                }
            }
        }
    }
}

/// Sleeps for `d` unless shutdown is signalled first; returns true on shutdown.
pub(crate) async fn sleep_or_shutdown(d: Duration, rx: &mut watch::Receiver<bool>) -> bool {
    if *rx.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        r = rx.wait_for(|v| *v) => { let _ = r; true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a peer fetched by a pull holds our push back for [`AWAITED_PULL`] at most, and
    /// only a real pull does (not one a handshake merely announced).
    #[test]
    fn a_fetched_page_holds_the_push_back_for_a_bounded_time() {
        let t0 = tokio::time::Instant::now();
        let later = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(fetched_through(None, t0), None);
        let pulled = Pulled {
            at: t0,
            since: 0,
            through: 40,
        };
        assert_eq!(
            fetched_through(Some(&pulled), later(3)),
            Some((40, AWAITED_PULL - Duration::from_secs(3)))
        );
        assert_eq!(fetched_through(Some(&pulled), later(10)), None);
        assert_eq!(fetched_through(Some(&pulled), later(60)), None);
        let announced = Pulled {
            at: t0,
            since: AWAITING_FIRST_PULL,
            through: AWAITING_FIRST_PULL,
        };
        assert_eq!(fetched_through(Some(&announced), later(1)), None);
    }
}
