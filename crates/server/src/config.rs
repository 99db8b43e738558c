//! Server configuration.
//!
//! Sources, highest precedence first:
//! 1. command-line flags (`--data-dir`, `--listen`);
//! 2. environment variables `OPENHIVE_<SECTION>__<KEY>` (e.g. `OPENHIVE_SERVER__LISTEN`,
//!    `OPENHIVE_SYNC__ALLOWED_CIDRS='["10.0.0.0/8"]'`); variables without `__` after the
//!    prefix are ignored;
//! 3. the TOML file given with `--config FILE`;
//! 4. built-in defaults.
//!
//! Every section rejects unknown keys, so a typo is a start-up error naming the key and the
//! source it came from rather than a silently ignored setting.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Prefix of the environment variables read as configuration.
pub const ENV_PREFIX: &str = "OPENHIVE_";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub instance: InstanceConfig,
    pub auth: AuthConfig,
    pub storage: StorageConfig,
    pub sync: SyncConfig,
    pub metrics: MetricsConfig,
    pub subscriptions: SubscriptionsConfig,
    pub map_hub: MapHubConfig,
}

/// The MAP hub (`[map_hub]`, docs/PROTOCOL-sync.md "MAP hub"): this instance serves
/// `/api/v1/map/*` so other instances register, advertise their sync groups and find each
/// other. Off by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MapHubConfig {
    pub enabled: bool,
    /// A swarm silent (no heartbeat or call) for longer than this goes `offline`.
    pub stale_after_secs: u64,
    /// How long the hub introductions it hands out stay valid (renewed at every heartbeat).
    pub introduction_ttl_secs: u64,
}

impl Default for MapHubConfig {
    fn default() -> Self {
        MapHubConfig {
            enabled: false,
            stale_after_secs: 300,
            introduction_ttl_secs: 24 * 3600,
        }
    }
}

/// How an instance finds its sync peers (`[sync] discovery`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discovery {
    /// `[[sync.peers]]` and the admin API only.
    Manual,
    /// The MAP hub at `[sync.hub] url` only (`[[sync.peers]]` are not seeded; the admin API
    /// still works).
    Hub,
    /// Both (the design's default): the hub when `[sync.hub] url` is set.
    #[default]
    Both,
}

/// The MAP hub this instance registers with (`[sync.hub]`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubClientConfig {
    /// The hub's base URL (`http://hub:3000`); unset: no hub.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The preauth key to register with (spent once: the registration is remembered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preauth_key: Option<String>,
    /// The hub's signing key (standard base64 SPKI), if it should be pinned from the start
    /// rather than on first registration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Most hub peers this instance opens links with per hive (besides its successor on the
    /// hive's ring, which keeps the mesh connected): the hub lists every instance sharing
    /// the hive, and linking them all makes traffic per event grow with the mesh.
    pub max_peers: usize,
}

impl Default for HubClientConfig {
    fn default() -> Self {
        HubClientConfig {
            url: None,
            preauth_key: None,
            key: None,
            max_peers: openhive_sync::hub_client::DEFAULT_MAX_HUB_PEERS,
        }
    }
}

impl std::fmt::Debug for HubClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClientConfig")
            .field("url", &self.url)
            .field("preauth_key", &self.preauth_key.as_ref().map(|_| "***"))
            .field("key", &self.key)
            .field("max_peers", &self.max_peers)
            .finish()
    }
}

/// The `allowed_cidrs` preset for a Tailscale (or Headscale) mesh: its IPv4 CGNAT range and
/// its IPv6 ULA range.
pub const TAILSCALE_CIDRS: [&str; 2] = ["100.64.0.0/10", "fd7a:115c:a1e0::/48"];

/// `allowed_cidrs` with the presets expanded (`"tailscale"` → [`TAILSCALE_CIDRS`]).
pub fn expand_cidrs(list: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for c in list {
        if c.trim().eq_ignore_ascii_case("tailscale") {
            out.extend(TAILSCALE_CIDRS.iter().map(|s| s.to_string()));
        } else {
            out.push(c.clone());
        }
    }
    out
}

/// Pull subscriptions (Pattern 1, `/api/v1/sync/subscriptions`): the one worker polling
/// remote feeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriptionsConfig {
    /// Run the polling worker (subscriptions can be managed either way).
    pub enabled: bool,
    /// Posts asked per feed request (1-100, the feed's own bound).
    pub page_limit: u32,
    /// Pages one subscription may take per round before the others get their turn.
    pub max_pages_per_round: u32,
    /// Subscriptions polled at once.
    pub concurrency: u32,
    /// First retry delay after a failed poll (doubles per consecutive failure).
    pub backoff_initial_ms: u64,
    /// Cap of the retry delay.
    pub backoff_max_secs: u64,
    /// Each pass re-reads this far below the watermark (posts that reached the remote late,
    /// equal timestamps); what it re-reads is skipped by id.
    pub lookback_secs: u64,
}

impl Default for SubscriptionsConfig {
    fn default() -> Self {
        SubscriptionsConfig {
            enabled: true,
            page_limit: 100,
            max_pages_per_round: 10,
            concurrency: 4,
            backoff_initial_ms: 1000,
            backoff_max_secs: 300,
            lookback_secs: 60,
        }
    }
}

/// Who may read `GET /metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// Callers on a loopback address, and administrators (admin key or admin agent).
    #[default]
    Local,
    /// Administrators only, wherever they call from.
    Admin,
    /// Anyone who can reach the server.
    Public,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub access: MetricsAccess,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on, `HOST:PORT` (port 0 picks a free port).
    pub listen: String,
    /// Directory holding the database and key files.
    pub data_dir: PathBuf,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// The public base URL of this instance, if known (advertised in discovery documents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:3000".into(),
            data_dir: PathBuf::from("./openhive-data"),
            body_limit_bytes: 1024 * 1024,
            public_url: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstanceConfig {
    pub name: String,
    pub description: String,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig {
            name: "OpenHive".into(),
            description: String::new(),
        }
    }
}

/// How requests without an `Authorization` header are treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No header means the built-in admin agent `local`. Only honoured on loopback.
    #[default]
    Local,
    /// Every authenticated request needs `Authorization: Bearer <api key>`.
    Token,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Local => "local",
            AuthMode::Token => "token",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub mode: AuthMode,
}

/// SQLite `synchronous` pragma.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    #[default]
    Normal,
    Full,
}

/// Which storage engine holds the instance's data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageEngine {
    /// `openhive.db` in the data directory (default).
    #[default]
    Sqlite,
    /// The PostgreSQL database at `storage.url`; several `serve` processes sharing the
    /// data directory (keys) and this URL serve one instance.
    Postgres,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub engine: StorageEngine,
    /// PostgreSQL connection URL (`postgres://user:password@host:port/db`); required with
    /// `engine = "postgres"`. May hold a password: never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// SQLite `synchronous` pragma.
    pub synchronous: Synchronous,
    /// Most writes waiting for the database; beyond it API writes answer `503`.
    pub write_queue: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            engine: StorageEngine::Sqlite,
            url: None,
            synchronous: Synchronous::Normal,
            write_queue: 4096,
        }
    }
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("engine", &self.engine)
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .field("synchronous", &self.synchronous)
            .field("write_queue", &self.write_queue)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    pub enabled: bool,
    pub heartbeat_interval_secs: u64,
    pub peer_timeout_secs: u64,
    /// Shared secret peers must present in a handshake, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_secret: Option<String>,
    /// Networks allowed to reach `/sync/v1` (empty: any). `"tailscale"` stands for the
    /// Tailscale ranges (100.64.0.0/10 and fd7a:115c:a1e0::/48).
    pub allowed_cidrs: Vec<String>,
    pub rate_limit_events_per_sec: u32,
    pub rate_limit_burst: u32,
    /// First retry delay after a failed sync request (doubles per failure, with jitter).
    pub backoff_initial_ms: u64,
    /// Cap of the retry delay.
    pub backoff_max_secs: u64,
    /// Most events one peer may have delivered that wait for an unknown origin key; beyond
    /// it that peer's further such events are refused (reported rejected, counted).
    pub max_waiting_per_peer: i64,
    /// Most events waiting for an unknown origin key, in all.
    pub max_waiting_total: i64,
    /// PEM file of extra CA certificates trusted for `https://` peer endpoints (besides
    /// the system's roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// A peer link more events behind than this shows `lagging` in sync status (and logs
    /// one warning when it starts lagging).
    pub lag_alert_events: i64,
    /// A peer silent (no contact) for longer than this shows `lagging` too.
    pub lag_alert_secs: u64,
    /// Most hives of one peer a single sync call covers (`/sync/v1/batch/*`); 1 makes one
    /// call per hive.
    pub batch_groups: usize,
    /// Token rotation (`POST /api/v1/sync/peers/:id/rotate-token`): how long the tokens we
    /// issued to the peer keep working after the rotation (a request may override it).
    pub token_grace_secs: u64,
    /// Scheduled compaction of every group's log (docs/PROTOCOL-sync.md, "Compaction and
    /// snapshots"): how often it runs; 0 (the default) turns it off (`POST
    /// /api/v1/sync/groups/:id/compact` still compacts on demand).
    pub compaction_interval_secs: u64,
    /// Scheduled compaction keeps every event logged more recently than this, whatever the
    /// low-water mark.
    pub compaction_retention_secs: u64,
    /// Most events one pulled page asks a peer for (1-1000).
    pub pull_batch: i64,
    /// How often a link pulling a long way (backfill, resync) logs its progress.
    pub progress_log_secs: u64,
    /// How peers are found: `manual`, `hub` or `both`.
    pub discovery: Discovery,
    pub hub: HubClientConfig,
    /// Peer gossip (`[sync.gossip]`, design §3.14).
    pub gossip: GossipConfig,
    pub peers: Vec<PeerConfig>,
}

/// `[sync.gossip]`: peers learned from heartbeats (docs/PROTOCOL-sync.md, "Gossip"). Names
/// and units as in the design (§3.14): times in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GossipConfig {
    pub enabled: bool,
    /// Hops a configured peer travels (0: never passed on).
    pub default_ttl: u8,
    /// Hops a peer found through the MAP hub travels.
    pub hub_peer_ttl: u8,
    /// Least time between two gossip messages to one peer, in ms.
    pub exchange_interval: u64,
    /// Most entries per message, and most gossip-sourced peers per hive.
    pub max_gossip_peers: usize,
    /// A gossip-sourced peer without contact this long (ms) is removed.
    pub stale_timeout: u64,
    /// A gossip-sourced peer with this many consecutive failures is removed.
    pub max_failures: u32,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            enabled: true,
            default_ttl: 2,
            hub_peer_ttl: 1,
            exchange_interval: 60_000,
            max_gossip_peers: 50,
            stale_timeout: 300_000,
            max_failures: 3,
        }
    }
}

/// The longest grace period of a token rotation (30 days).
pub const MAX_TOKEN_GRACE_SECS: u64 = 30 * 24 * 3600;

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            enabled: true,
            heartbeat_interval_secs: 30,
            peer_timeout_secs: 300,
            handshake_secret: None,
            allowed_cidrs: Vec::new(),
            rate_limit_events_per_sec: 20_000,
            rate_limit_burst: 100_000,
            backoff_initial_ms: 1000,
            backoff_max_secs: 60,
            max_waiting_per_peer: 10_000,
            max_waiting_total: 100_000,
            ca_file: None,
            lag_alert_events: 10_000,
            lag_alert_secs: 300,
            batch_groups: 256,
            token_grace_secs: 3600,
            compaction_interval_secs: 0,
            compaction_retention_secs: 7 * 24 * 3600,
            pull_batch: 1000,
            progress_log_secs: 5,
            discovery: Discovery::Both,
            hub: HubClientConfig::default(),
            gossip: GossipConfig::default(),
            peers: Vec::new(),
        }
    }
}

/// A statically configured peer (`[[sync.peers]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub name: String,
    pub sync_endpoint: String,
    #[serde(default)]
    pub shared_hives: Vec<String>,
}

/// Values given on the command line; `None` leaves the lower layers in charge.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    FileNotFound(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads the configuration: flags > environment > file > defaults.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::FileNotFound(path.to_path_buf()));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(
            Env::prefixed(ENV_PREFIX)
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        if let Some(dir) = &overrides.data_dir {
            fig = fig.merge(Serialized::default("server.data_dir", dir));
        }
        if let Some(listen) = &overrides.listen {
            fig = fig.merge(Serialized::default("server.listen", listen));
        }
        let config: Config = fig.extract().map_err(|e| {
            let msgs: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
            ConfigError::Invalid(msgs.join("; "))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.server.listen.trim().is_empty() || !self.server.listen.contains(':') {
            return bad(format!(
                "server.listen must be HOST:PORT, got {:?}",
                self.server.listen
            ));
        }
        if self.storage.engine == StorageEngine::Postgres
            && self
                .storage
                .url
                .as_deref()
                .is_none_or(|u| u.trim().is_empty())
        {
            return bad("storage.url is required when storage.engine = \"postgres\"".into());
        }
        if let Err(e) = openhive_core::validate::display_name(&self.instance.name, "instance.name")
        {
            return bad(e);
        }
        if self.storage.write_queue == 0 {
            return bad("storage.write_queue must be greater than 0".into());
        }
        if self.server.body_limit_bytes == 0 {
            return bad("server.body_limit_bytes must be greater than 0".into());
        }
        if let Some(url) = &self.server.public_url
            && openhive_core::validate::url(url).is_err()
        {
            return bad(format!(
                "server.public_url must be an http(s) URL, got {url:?}"
            ));
        }
        if self.sync.heartbeat_interval_secs == 0 || self.sync.peer_timeout_secs == 0 {
            return bad(
                "sync.heartbeat_interval_secs and sync.peer_timeout_secs must be > 0".into(),
            );
        }
        let subs = &self.subscriptions;
        if !(1..=100).contains(&subs.page_limit)
            || subs.max_pages_per_round == 0
            || subs.concurrency == 0
            || subs.backoff_initial_ms == 0
            || subs.backoff_max_secs == 0
        {
            return bad("subscriptions: page_limit must be 1-100; max_pages_per_round, concurrency, backoff_initial_ms and backoff_max_secs must be > 0".into());
        }
        if self.sync.backoff_initial_ms == 0 || self.sync.backoff_max_secs == 0 {
            return bad("sync.backoff_initial_ms and sync.backoff_max_secs must be > 0".into());
        }
        if self.sync.rate_limit_events_per_sec == 0 || self.sync.rate_limit_burst == 0 {
            return bad(
                "sync.rate_limit_events_per_sec and sync.rate_limit_burst must be > 0".into(),
            );
        }
        if self.sync.max_waiting_per_peer < 1 || self.sync.max_waiting_total < 1 {
            return bad("sync.max_waiting_per_peer and sync.max_waiting_total must be > 0".into());
        }
        if !(1..=1000).contains(&self.sync.batch_groups) {
            return bad("sync.batch_groups must be 1-1000".into());
        }
        if self.sync.lag_alert_events < 1 || self.sync.lag_alert_secs == 0 {
            return bad("sync.lag_alert_events and sync.lag_alert_secs must be > 0".into());
        }
        if !(1..=1000).contains(&self.sync.pull_batch) {
            return bad("sync.pull_batch must be 1-1000".into());
        }
        if self.sync.progress_log_secs == 0 {
            return bad("sync.progress_log_secs must be > 0".into());
        }
        if self.sync.token_grace_secs > MAX_TOKEN_GRACE_SECS {
            return bad(format!(
                "sync.token_grace_secs must be at most {MAX_TOKEN_GRACE_SECS} (30 days)"
            ));
        }
        if self.sync.compaction_retention_secs > i64::MAX as u64 / 1000 {
            return bad("sync.compaction_retention_secs is too large".into());
        }
        if self.sync.compaction_interval_secs > i64::MAX as u64 / 1000 {
            return bad("sync.compaction_interval_secs is too large".into());
        }
        if self.sync.lag_alert_secs > i64::MAX as u64 / 1000 {
            return bad("sync.lag_alert_secs is too large".into());
        }
        let g = &self.sync.gossip;
        if g.default_ttl > 8 || g.hub_peer_ttl > 8 {
            return bad("sync.gossip.default_ttl and sync.gossip.hub_peer_ttl must be 0-8".into());
        }
        if g.exchange_interval == 0 || g.stale_timeout == 0 || g.max_failures == 0 {
            return bad(
                "sync.gossip.exchange_interval, stale_timeout and max_failures must be > 0".into(),
            );
        }
        if g.stale_timeout > i64::MAX as u64 / 2 || g.exchange_interval > i64::MAX as u64 / 2 {
            return bad("sync.gossip.exchange_interval or stale_timeout is too large".into());
        }
        if !(1..=1000).contains(&g.max_gossip_peers) {
            return bad("sync.gossip.max_gossip_peers must be 1-1000".into());
        }
        if let Some(f) = &self.sync.ca_file
            && !f.is_file()
        {
            return bad(format!("sync.ca_file {} is not a file", f.display()));
        }
        for cidr in &expand_cidrs(&self.sync.allowed_cidrs) {
            if !valid_cidr(cidr) {
                return bad(format!(
                    "sync.allowed_cidrs: {cidr:?} is not an IP network like 10.0.0.0/8"
                ));
            }
        }
        if let Some(url) = &self.sync.hub.url
            && openhive_core::validate::url(url).is_err()
        {
            return bad(format!("sync.hub.url must be an http(s) URL, got {url:?}"));
        }
        if !(1..=1000).contains(&self.sync.hub.max_peers) {
            return bad("sync.hub.max_peers must be 1-1000".into());
        }
        if self.sync.discovery == Discovery::Hub && self.sync.hub.url.is_none() {
            return bad("sync.discovery = \"hub\" needs sync.hub.url".into());
        }
        if let Some(k) = &self.sync.hub.key
            && openhive_core::PublicKey::from_base64(k).is_err()
        {
            return bad("sync.hub.key must be a base64 Ed25519 public key (SPKI)".into());
        }
        if self.map_hub.stale_after_secs == 0
            || self.map_hub.introduction_ttl_secs < 60
            || self.map_hub.introduction_ttl_secs > 365 * 24 * 3600
        {
            return bad(
                "map_hub.stale_after_secs must be > 0 and map_hub.introduction_ttl_secs 60 s to 1 year"
                    .into(),
            );
        }
        for p in &self.sync.peers {
            if p.name.trim().is_empty() {
                return bad("sync.peers: name must not be empty".into());
            }
            if let Err(e) = openhive_core::validate::display_name(&p.name, "name") {
                return bad(format!("sync.peers: {e}"));
            }
            if openhive_core::validate::url(&p.sync_endpoint).is_err() {
                return bad(format!(
                    "sync.peers {:?}: sync_endpoint must be an http(s) URL",
                    p.name
                ));
            }
            for h in &p.shared_hives {
                if let Err(e) = openhive_core::validate::hive_name(h) {
                    return bad(format!("sync.peers {:?}: hive {h:?}: {e}", p.name));
                }
            }
        }
        Ok(())
    }
}

/// `addr/prefix` with a prefix in range, or a bare address.
fn valid_cidr(s: &str) -> bool {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let Ok(ip) = addr.trim().parse::<IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match prefix {
        None => true,
        Some(p) => p.trim().parse::<u8>().is_ok_and(|p| p <= max),
    }
}

/// The auth mode actually used: local mode is only honoured when the server is bound to a
/// loopback address; on any other interface it falls back to token mode.
pub fn effective_auth_mode(configured: AuthMode, bound: IpAddr) -> AuthMode {
    match configured {
        AuthMode::Local if bound.is_loopback() => AuthMode::Local,
        _ => AuthMode::Token,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults() {
        Jail::expect_with(|_jail| {
            let c = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(c, Config::default());
            assert_eq!(c.server.listen, "127.0.0.1:3000");
            assert_eq!(c.server.body_limit_bytes, 1_048_576);
            assert_eq!(c.auth.mode, AuthMode::Local);
            assert!(c.sync.enabled);
            Ok(())
        });
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                r#"
                [server]
                listen = "127.0.0.1:1111"
                data_dir = "/from/file"
                body_limit_bytes = 10
                [instance]
                name = "FileName"
                [auth]
                mode = "token"
                [storage]
                synchronous = "full"
                [sync]
                allowed_cidrs = ["10.0.0.0/8"]
                [[sync.peers]]
                name = "b"
                sync_endpoint = "http://b.example:3000/sync/v1"
                shared_hives = ["general"]
                "#,
            )?;
            let file = jail.directory().join("c.toml");
            let c = Config::load(Some(&file), &Overrides::default()).unwrap();
            assert_eq!(c.server.listen, "127.0.0.1:1111");
            assert_eq!(c.instance.name, "FileName");
            assert_eq!(c.instance.description, "");
            assert_eq!(c.auth.mode, AuthMode::Token);
            assert_eq!(c.storage.synchronous, Synchronous::Full);
            assert_eq!(c.sync.peers.len(), 1);
            assert_eq!(c.sync.peers[0].shared_hives, vec!["general".to_string()]);

            jail.set_env("OPENHIVE_SERVER__LISTEN", "127.0.0.1:2222");
            jail.set_env("OPENHIVE_SERVER__DATA_DIR", "/from/env");
            jail.set_env("OPENHIVE_INSTANCE__NAME", "EnvName");
            jail.set_env("OPENHIVE_SYNC__ENABLED", "false");
            jail.set_env("OPENHIVE_SYNC__ALLOWED_CIDRS", "[\"192.168.0.0/16\"]");
            jail.set_env("OPENHIVE_UNRELATED", "ignored");
            let c = Config::load(Some(&file), &Overrides::default()).unwrap();
            assert_eq!(c.server.listen, "127.0.0.1:2222");
            assert_eq!(c.server.data_dir, PathBuf::from("/from/env"));
            assert_eq!(c.server.body_limit_bytes, 10);
            assert_eq!(c.instance.name, "EnvName");
            assert!(!c.sync.enabled);
            assert_eq!(c.sync.allowed_cidrs, vec!["192.168.0.0/16".to_string()]);

            let flags = Overrides {
                data_dir: Some("/from/flag".into()),
                listen: Some("127.0.0.1:3333".into()),
            };
            let c = Config::load(Some(&file), &flags).unwrap();
            assert_eq!(c.server.listen, "127.0.0.1:3333");
            assert_eq!(c.server.data_dir, PathBuf::from("/from/flag"));
            assert_eq!(c.instance.name, "EnvName");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_in_file_names_key_and_file() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "bad.toml",
                "[server]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n",
            )?;
            let file = jail.directory().join("bad.toml");
            let err = Config::load(Some(&file), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("listne"), "{err}");
            assert!(err.contains("bad.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_section_and_peer_key_are_errors() {
        Jail::expect_with(|jail| {
            jail.create_file("s.toml", "[srever]\nlisten = \"x:1\"\n")?;
            let err = Config::load(
                Some(&jail.directory().join("s.toml")),
                &Overrides::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("srever") && err.contains("s.toml"), "{err}");
            jail.create_file(
                "p.toml",
                "[[sync.peers]]\nname = \"a\"\nsync_endpoint = \"http://a:1\"\nshared = []\n",
            )?;
            let err = Config::load(
                Some(&jail.directory().join("p.toml")),
                &Overrides::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("shared") && err.contains("p.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_env_key_and_bad_values_are_errors() {
        Jail::expect_with(|jail| {
            jail.set_env("OPENHIVE_SERVER__LISTN", "x");
            let err = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("listn"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("OPENHIVE_AUTH__MODE", "open");
            let err = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("open"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn malformed_file_and_missing_file_are_errors() {
        Jail::expect_with(|jail| {
            jail.create_file("m.toml", "[server\nlisten=")?;
            let err = Config::load(
                Some(&jail.directory().join("m.toml")),
                &Overrides::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("m.toml"), "{err}");
            let err = Config::load(
                Some(&jail.directory().join("nope.toml")),
                &Overrides::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("nope.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn gossip_keys_from_file_and_env() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[sync.gossip]\nmax_gossip_peers = 7\nstale_timeout = 1000\n",
            )?;
            jail.set_env("OPENHIVE_SYNC__GOSSIP__ENABLED", "false");
            jail.set_env("OPENHIVE_SYNC__GOSSIP__DEFAULT_TTL", "3");
            let file = jail.directory().join("c.toml");
            let c = Config::load(Some(&file), &Overrides::default()).unwrap();
            assert!(!c.sync.gossip.enabled);
            assert_eq!(c.sync.gossip.default_ttl, 3);
            assert_eq!(c.sync.gossip.max_gossip_peers, 7);
            assert_eq!(c.sync.gossip.stale_timeout, 1000);
            assert_eq!(c.sync.gossip.max_failures, 3, "default");
            jail.set_env("OPENHIVE_SYNC__GOSSIP__MAX_FAILURES", "0");
            assert!(Config::load(Some(&file), &Overrides::default()).is_err());
            jail.set_env("OPENHIVE_SYNC__GOSSIP__MAX_FAILURES", "2");
            jail.set_env("OPENHIVE_SYNC__GOSSIP__TTL", "2");
            assert!(
                Config::load(None, &Overrides::default()).is_err(),
                "unknown key"
            );
            Ok(())
        });
    }

    #[test]
    fn metrics_access_and_lag_alert_keys() {
        Jail::expect_with(|jail| {
            let c = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(c.metrics.access, MetricsAccess::Local);
            assert_eq!(c.sync.lag_alert_events, 10_000);
            assert_eq!(c.sync.lag_alert_secs, 300);
            jail.create_file(
                "m.toml",
                "[metrics]\naccess = \"admin\"\n[sync]\nlag_alert_events = 5\nlag_alert_secs = 7\n",
            )?;
            let file = jail.directory().join("m.toml");
            let c = Config::load(Some(&file), &Overrides::default()).unwrap();
            assert_eq!(c.metrics.access, MetricsAccess::Admin);
            assert_eq!(c.sync.lag_alert_events, 5);
            assert_eq!(c.sync.lag_alert_secs, 7);
            jail.set_env("OPENHIVE_METRICS__ACCESS", "public");
            let c = Config::load(Some(&file), &Overrides::default()).unwrap();
            assert_eq!(c.metrics.access, MetricsAccess::Public);
            jail.set_env("OPENHIVE_METRICS__ACCESS", "everyone");
            assert!(Config::load(Some(&file), &Overrides::default()).is_err());
            Ok(())
        });
        let mut c = Config::default();
        c.sync.lag_alert_events = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn semantic_validation() {
        let mut c = Config::default();
        c.sync.allowed_cidrs = vec!["10.0.0.0/33".into()];
        assert!(c.validate().is_err());
        c.sync.allowed_cidrs = vec!["10.0.0.0/8".into(), "::1/128".into(), "1.2.3.4".into()];
        assert!(c.validate().is_ok());
        c.server.body_limit_bytes = 0;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.sync.hub.max_peers = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn hub_keys_and_the_tailscale_preset() {
        Jail::expect_with(|jail| {
            let c = Config::load(None, &Overrides::default()).unwrap();
            assert!(!c.map_hub.enabled);
            assert_eq!(c.sync.discovery, Discovery::Both);
            assert_eq!(c.sync.hub.max_peers, 8, "default");
            jail.set_env("OPENHIVE_MAP_HUB__ENABLED", "true");
            jail.set_env("OPENHIVE_SYNC__HUB__MAX_PEERS", "3");
            jail.set_env("OPENHIVE_SYNC__HUB__URL", "http://hub.example:3000");
            jail.set_env("OPENHIVE_SYNC__HUB__PREAUTH_KEY", "ohpak_x");
            jail.set_env("OPENHIVE_SYNC__DISCOVERY", "hub");
            jail.set_env("OPENHIVE_SYNC__ALLOWED_CIDRS", "[\"tailscale\"]");
            let c = Config::load(None, &Overrides::default()).unwrap();
            assert!(c.map_hub.enabled);
            assert_eq!(c.sync.discovery, Discovery::Hub);
            assert_eq!(c.sync.hub.url.as_deref(), Some("http://hub.example:3000"));
            assert_eq!(c.sync.hub.preauth_key.as_deref(), Some("ohpak_x"));
            assert_eq!(c.sync.hub.max_peers, 3);
            assert!(!format!("{:?}", c.sync.hub).contains("ohpak_x"));
            assert_eq!(
                expand_cidrs(&c.sync.allowed_cidrs),
                vec![
                    "100.64.0.0/10".to_string(),
                    "fd7a:115c:a1e0::/48".to_string()
                ]
            );
            Ok(())
        });
        let mut c = Config::default();
        c.sync.discovery = Discovery::Hub;
        assert!(c.validate().is_err(), "hub discovery without a hub url");
    }

    #[test]
    fn local_mode_only_on_loopback() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            effective_auth_mode(AuthMode::Local, ip("127.0.0.1")),
            AuthMode::Local
        );
        assert_eq!(
            effective_auth_mode(AuthMode::Local, ip("::1")),
            AuthMode::Local
        );
        for public in ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "2001:db8::1"] {
            assert_eq!(
                effective_auth_mode(AuthMode::Local, ip(public)),
                AuthMode::Token,
                "{public}"
            );
        }
        assert_eq!(
            effective_auth_mode(AuthMode::Token, ip("127.0.0.1")),
            AuthMode::Token
        );
    }
}
