//! Application state and start-up.
//!
//! [`start`] opens the data directory, database and identity, binds the listener (port 0
//! allowed) and serves in a background task. The returned [`RunningServer`] knows the bound
//! address and shuts the server down gracefully (drain connections, then checkpoint the
//! WAL). `openhive serve` and the integration tests both go through it.

use crate::config::{AuthMode, Config, effective_auth_mode};
use crate::identity::Identity;
use crate::realtime::Realtime;
use crate::service::{CommitSink, HiveService};
use anyhow::Context as _;
use openhive_store::Store;
use openhive_store::materialize::Change;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Shared state of every handler: one `Arc`, so the clones axum makes for each extractor
/// of each request cost one reference count (a struct of a dozen handles cost ~2 % of an
/// origin's CPU per synced post in clones and drops). Fields are read through `Deref`.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// What [`AppState`] shares. Add new subsystems (realtime hub, sync handle, ...) as further
/// `pub` fields and initialise them in [`start`].
pub struct AppStateInner {
    pub store: Store,
    /// The effective configuration (`auth.mode` already forced to `token` off loopback).
    pub config: Arc<Config>,
    pub identity: Arc<Identity>,
    /// The address the server is bound to.
    pub addr: SocketAddr,
    /// The local write path (signs and ingests hive events).
    pub hives: HiveService,
    /// WebSocket fan-out.
    pub realtime: Realtime,
    /// What runs after every commit that changed a hive.
    pub fanout: Arc<FanOut>,
    /// Hive Sync engine (outbound workers; state shared with the `/sync/v1` handlers).
    pub sync: openhive_sync::SyncHandle,
    /// HTTP request counts and latencies (`GET /metrics`).
    pub http_metrics: Arc<crate::metrics::HttpMetrics>,
    /// Wakes the pull-subscription worker (`crate::subscriptions`).
    pub subscriptions: crate::subscriptions::Wake,
    /// The MAP hub, with `[map_hub] enabled` (its routes are mounted only then).
    pub map_hub: Option<Arc<crate::map_hub::MapHub>>,
    /// Agents by credential, kept between requests (`http::caller_cache`).
    pub callers: Arc<crate::http::caller_cache::CallerCache>,
}

/// Callback run with a hive id after its log grew.
pub type LogGrew = Box<dyn Fn(&str) + Send + Sync>;

/// Runs after every commit that changed a hive, local or remote: realtime messages, and
/// whatever else registered (the sync engine registers its outbox wake-up here).
pub struct FanOut {
    store: Store,
    realtime: Realtime,
    /// Called with the local hive id after each commit that appended to its log.
    log_grew: std::sync::OnceLock<LogGrew>,
}

impl FanOut {
    /// Registers the callback run when a hive's log grew (set once, e.g. by the sync engine).
    pub fn on_log_grew(&self, f: LogGrew) {
        if self.log_grew.set(f).is_err() {
            tracing::error!("on_log_grew registered twice; keeping the first");
        }
    }

    /// Publishes changes that were committed and wakes the outboxes of `hive_id` (local
    /// writes, and commits of the instance's other app processes).
    pub fn committed_changes(&self, hive_id: &str, changes: Vec<Change>) {
        if let Some(f) = self.log_grew.get() {
            f(hive_id);
        }
        self.publish(changes);
    }

    /// Renders committed changes for WebSocket subscribers, in commit order.
    pub fn publish(&self, changes: Vec<Change>) {
        self.realtime.publish(&self.store, changes);
    }
}

impl CommitSink for FanOut {
    fn committed(&self, hive_id: &str, changes: Vec<Change>) {
        self.committed_changes(hive_id, changes);
    }
}

impl AppState {
    pub fn auth_mode(&self) -> AuthMode {
        self.config.auth.mode
    }
}

/// How long [`RunningServer::shutdown`] waits for open connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A server running in the background.
pub struct RunningServer {
    /// The address actually bound.
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown_tx: Option<oneshot::Sender<()>>,
    join: JoinHandle<std::io::Result<()>>,
    /// Background tasks of this server (stopped on shutdown).
    background: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting connections, lets open ones finish (up to a grace period), then
    /// checkpoints the database.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.join).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "server stopped with an error"),
            Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
            Err(_) => {
                tracing::warn!("connections still open after the grace period; closing them");
                self.join.abort();
            }
        }
        self.state.sync.shutdown(Duration::from_secs(5)).await;
        for task in self.background.drain(..) {
            task.abort();
        }
        let store = self.state.store.clone();
        // Leases (outboxes, heartbeat) go to another app process at once.
        let backend = store.backend().clone();
        match tokio::task::spawn_blocking(move || backend.release_all()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing leases"),
            Err(e) => tracing::warn!(error = %e, "lease release task failed"),
        }
        tokio::task::spawn_blocking(move || store.checkpoint())
            .await
            .context("checkpoint task")?
            .context("checkpointing the database")?;
        Ok(())
    }
}

/// Opens the store a configuration names. Engines live outside this crate (the `openhive`
/// crate wires SQLite and PostgreSQL in), so this crate never links an engine.
pub type OpenStore = fn(&Config) -> anyhow::Result<Store>;

/// Opens everything and starts serving. See the module docs.
pub async fn start(mut config: Config, open_store: OpenStore) -> anyhow::Result<RunningServer> {
    config.validate().context("invalid configuration")?;
    config.sync.allowed_cidrs = crate::config::expand_cidrs(&config.sync.allowed_cidrs);
    openhive_sync::client::install_crypto_provider();
    let data_dir = config.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    crate::identity::restrict_data_dir(&data_dir)?;

    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;

    let mode = effective_auth_mode(config.auth.mode, addr.ip());
    if mode != config.auth.mode {
        tracing::warn!(
            %addr,
            "auth.mode = \"local\" is only honoured on a loopback address; using token mode"
        );
        config.auth.mode = mode;
    }

    let cfg = config.clone();
    let (store, identity) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let store = open_store(&cfg).context("opening the database")?;
        let identity =
            Identity::load_or_create(&cfg, &store).context("loading the instance identity")?;
        configure_store(&store, &cfg, &identity)?;
        Ok((store, identity))
    })
    .await
    .context("start-up task")??;
    tracing::info!(
        instance_id = %identity.instance_id,
        auth_mode = mode.as_str(),
        data_dir = %data_dir.display(),
        "instance ready"
    );

    let realtime = Realtime::start();
    let fanout = Arc::new(FanOut {
        store: store.clone(),
        realtime: realtime.clone(),
        log_grew: std::sync::OnceLock::new(),
    });
    let hives = HiveService::new(
        store.clone(),
        &identity.instance_id,
        identity.key.clone(),
        fanout.clone(),
    );
    // Our clock never goes back before our last key rotation (a restart on a slower clock
    // must not sign with the new key at a time the old key owns).
    let me = identity.instance_id.clone();
    if let Some(at) = store
        .read(move |c| openhive_store::keys::last_rotation_at(c, &me))
        .await
        .context("reading this instance's key rotations")?
    {
        hives.observe_ts(at);
    }
    let sync = start_sync(&config, &store, &identity, addr, &fanout).await?;
    let map_hub = config.map_hub.enabled.then(|| {
        Arc::new(crate::map_hub::MapHub::new(
            store.clone(),
            identity.instance_id.clone(),
            identity.key.clone(),
            config.map_hub.clone(),
        ))
    });
    let state = AppState(Arc::new(AppStateInner {
        store,
        config: Arc::new(config),
        identity: Arc::new(identity),
        addr,
        hives,
        realtime,
        fanout,
        sync,
        http_metrics: Arc::default(),
        subscriptions: crate::subscriptions::Wake::default(),
        map_hub,
        callers: Arc::default(),
    }));
    let mut background = vec![
        spawn_expiry(state.store.clone()),
        // Once a minute, not every heartbeat: the check's query joins every link (it builds
        // rows only for the lagging ones); `lagging` in status is always live.
        spawn_lag_watch(
            state.store.clone(),
            Duration::from_secs(state.config.sync.heartbeat_interval_secs.max(60)),
        ),
        crate::heap_trim::spawn(),
    ];
    if state.config.sync.compaction_interval_secs > 0 {
        background.push(spawn_compaction(
            state.sync.clone(),
            Duration::from_secs(state.config.sync.compaction_interval_secs),
            (state.config.sync.compaction_retention_secs as i64).saturating_mul(1000),
        ));
    }
    if state.config.subscriptions.enabled {
        let worker = crate::subscriptions::Worker {
            store: state.store.clone(),
            hives: state.hives.clone(),
            config: state.config.subscriptions.clone(),
            wake: state.subscriptions.clone(),
        };
        background.push(
            worker
                .spawn()
                .context("starting the pull-subscription worker")?,
        );
    }
    if let Some(hub) = &state.map_hub {
        background.push(hub.spawn_stale_task());
        tracing::info!(
            stale_after_secs = state.config.map_hub.stale_after_secs,
            "MAP hub enabled"
        );
    }
    // Commits made by the other app processes of this instance (PostgreSQL): the same
    // fan-out as our own (outbox wake-up, WebSocket messages).
    if let Some(rx) = state
        .store
        .backend()
        .listen(openhive_store::notify::CHANNEL)
    {
        background.push(spawn_commit_listener(rx, state.fanout.clone()));
    }
    let app = crate::http::router(state.clone());
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let join = tokio::spawn(crate::http::serve::serve(listener, app, async {
        let _ = shutdown_rx.await;
    }));
    Ok(RunningServer {
        addr,
        state,
        shutdown_tx: Some(shutdown_tx),
        join,
        background,
    })
}

/// Gives the store what its SQL needs besides the database: the bounds of the queue of
/// events waiting for a key (`[sync] max_waiting_*`), and the key sealing the tokens we
/// present to peers (from the 0600 `token-seal.key` of the data directory, never the database).
/// Tokens an older version stored in clear are sealed now, and keys it learned that are no
/// keys (weak, non-canonical) are forgotten.
fn configure_store(store: &Store, config: &Config, identity: &Identity) -> anyhow::Result<()> {
    let seal = openhive_core::seal::SealKey::new(identity.seal_secret());
    let waiting = openhive_store::WaitingLimits {
        per_peer: config.sync.max_waiting_per_peer,
        total: config.sync.max_waiting_total,
    };
    let lag_alert = openhive_store::LagAlert {
        events: config.sync.lag_alert_events,
        silence_ms: i64::try_from(config.sync.lag_alert_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX),
    };
    store.configure(|c| {
        c.seal_key = Some(seal);
        c.waiting = waiting;
        c.lag_alert = lag_alert;
    });
    let sealed = store
        .write_blocking(openhive_store::sync_state::reseal_tokens)
        .context("sealing stored peer tokens")?;
    if sealed > 0 {
        tracing::info!(
            tokens = sealed,
            "sealed peer tokens stored in clear by an older version"
        );
    }
    let forgotten = store
        .write_blocking(openhive_store::keys::forget_invalid)
        .context("checking stored instance keys")?;
    for instance in forgotten {
        tracing::warn!(%instance, "forgot a stored weak or non-canonical signing key");
    }
    Ok(())
}

/// Feeds the commit notices of other app processes to the fan-out, in commit order.
fn spawn_commit_listener(
    mut rx: openhive_store::engine::Notifications,
    fanout: Arc<FanOut>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(payload) = rx.recv().await {
            match openhive_store::notify::decode(&payload) {
                Some(n) if n.is_foreign() => fanout.committed_changes(&n.h, n.c),
                Some(_) => {}
                None => tracing::warn!("ignoring a malformed commit notice"),
            }
        }
    })
}

/// Hourly: drop events that waited over 24 h for a dependency or a key (logged, counted).
fn spawn_expiry(store: Store) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            let now = openhive_core::time::now_ms();
            match store
                .write(move |tx| openhive_store::ingest::expire_waiting(tx, now))
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::warn!(dropped = n, "expired events that waited over 24 h"),
                Err(e) => tracing::error!(error = %e, "expiring waiting events"),
            }
        }
    })
}

/// Every `[sync] compaction_interval_secs`: compacts every group's log up to its low-water
/// mark, keeping the events younger than `[sync] compaction_retention_secs`. The first run
/// is one interval after the start. With several app processes each runs it; a second run
/// at the same point drops nothing (compaction is one write transaction, idempotent).
fn spawn_compaction(
    sync: openhive_sync::SyncHandle,
    every: Duration,
    retention_ms: i64,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match openhive_sync::admin::compact_all(&sync, retention_ms).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(dropped = n, "scheduled compaction"),
                Err(e) => tracing::warn!(error = %e, "scheduled compaction"),
            }
        }
    })
}

/// Every heartbeat interval: the links that started lagging (`[sync] lag_alert_*`, the
/// rule of the `lagging` flag in sync status) are logged once as a warning, those that
/// recovered once as info. Runs in every app process of an instance (each logs).
fn spawn_lag_watch(store: Store, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut watch = crate::metrics::LagWatch::default();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = openhive_core::time::now_ms();
            // Only the lagging links are read (one query): the check costs nothing per
            // link that keeps up, whatever the number of links.
            let links = match store
                .read(move |c| openhive_store::sync_state::lagging_links(c, now))
                .await
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "reading sync links for the lag alert");
                    continue;
                }
            };
            let by_key: std::collections::HashMap<_, _> = links
                .iter()
                .map(|l| ((l.peer_id.clone(), l.hive_name.clone()), l))
                .collect();
            let (started, stopped) = watch.update(by_key.keys().cloned().collect());
            for key in started {
                if let Some(l) = by_key.get(&key) {
                    let (peer_id, hive) = key;
                    tracing::warn!(
                        peer = %l.peer_name,
                        %peer_id,
                        %hive,
                        lag_events = l.lag,
                        silent_secs = l.silent_ms / 1000,
                        "sync peer is lagging"
                    );
                }
            }
            for (peer_id, hive) in stopped {
                tracing::info!(%peer_id, %hive, "sync peer no longer lagging");
            }
        }
    })
}

/// Starts the Hive Sync engine: our sync endpoint is `server.public_url` (or the bound
/// address) + `/sync/v1`; local commits wake its outboxes; received changes go to realtime;
/// `[[sync.peers]]` are seeded (handshakes start at once and are retried until they succeed).
async fn start_sync(
    config: &Config,
    store: &Store,
    identity: &Identity,
    addr: SocketAddr,
    fanout: &Arc<FanOut>,
) -> anyhow::Result<openhive_sync::SyncHandle> {
    use openhive_sync::{LocalIdentity, SyncEngine, SyncSettings, backoff::BackoffPolicy};
    let c = &config.sync;
    let base = config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let me = LocalIdentity {
        instance_id: identity.instance_id.clone(),
        instance_name: config.instance.name.clone(),
        key: identity.key.clone(),
        sync_endpoint: format!("{}/sync/v1", base.trim_end_matches('/')),
    };
    let settings = SyncSettings {
        enabled: c.enabled,
        heartbeat_interval: Duration::from_secs(c.heartbeat_interval_secs),
        peer_timeout: Duration::from_secs(c.peer_timeout_secs),
        handshake_secret: c.handshake_secret.clone(),
        rate_limit_events_per_sec: c.rate_limit_events_per_sec,
        rate_limit_burst: c.rate_limit_burst,
        backoff: BackoffPolicy {
            initial: Duration::from_millis(c.backoff_initial_ms),
            max: Duration::from_secs(c.backoff_max_secs),
        },
        batch_groups: c.batch_groups,
        pull_batch: c.pull_batch,
        progress_log: Duration::from_secs(c.progress_log_secs),
        gossip: openhive_sync::gossip::GossipSettings {
            enabled: c.gossip.enabled,
            default_ttl: c.gossip.default_ttl,
            hub_peer_ttl: c.gossip.hub_peer_ttl,
            exchange_interval: Duration::from_millis(c.gossip.exchange_interval),
            max_gossip_peers: c.gossip.max_gossip_peers,
            stale_timeout: Duration::from_millis(c.gossip.stale_timeout),
            max_failures: i64::from(c.gossip.max_failures),
        },
        ..SyncSettings::default()
    };
    // Changes committed by the sync engine go through the same fan-out as local ones (the
    // engine wakes its own outboxes for relay).
    let fan = fanout.clone();
    let on_changes: openhive_sync::OnChanges = Arc::new(move |changes| fan.publish(changes));
    let client = openhive_sync::client::ClientOptions {
        ca_file: c.ca_file.clone(),
    };
    let sync = client
        .scope(SyncEngine::start(store.clone(), me, settings, on_changes))
        .await
        .context("starting hive sync")?;
    let notify = sync.clone();
    fanout.on_log_grew(Box::new(move |hive_id| notify.notify(hive_id)));
    use crate::config::Discovery;
    if c.enabled
        && c.discovery != Discovery::Manual
        && let Some(url) = &c.hub.url
    {
        let hub = openhive_sync::hub_client::HubSettings {
            url: url.clone(),
            preauth_key: c.hub.preauth_key.clone(),
            pinned_key: c.hub.key.clone(),
            max_peers: c.hub.max_peers,
            heartbeat: Duration::from_secs(c.heartbeat_interval_secs),
        };
        // The task stops with the engine (its shutdown signal).
        let _task = openhive_sync::hub_client::start(sync.clone(), hub)
            .await
            .context("starting the MAP hub client")?;
    }
    if c.enabled && c.discovery != Discovery::Hub && !c.peers.is_empty() {
        let peers = c
            .peers
            .iter()
            .map(|p| openhive_sync::admin::AddPeer {
                name: p.name.clone(),
                sync_endpoint: p.sync_endpoint.clone(),
                shared_hives: p.shared_hives.clone(),
            })
            .collect();
        openhive_sync::admin::seed_config_peers(&sync, peers)
            .await
            .context("seeding [[sync.peers]]")?;
    }
    Ok(sync)
}
