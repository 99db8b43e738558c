//! The MAP hub (`[map_hub] enabled`): the state its routes share (`http::map_hub`), the
//! introductions it signs, the wake-up of long-polling followers, and the one background
//! task that marks silent swarms `offline` and prunes old events.
//!
//! Invariants: the hub never stores or relays hive content (it keeps hive *names* a swarm
//! advertised, and who is online); an introduction is signed only for a swarm registered
//! with a preauth key, about the identity (instance id, key, endpoint) the swarm proved it
//! holds, for at most `introduction_ttl_secs`; swarm tokens and preauth keys are stored
//! hashed, returned once, never logged.

use crate::config::MapHubConfig;
use openhive_core::time::now_ms;
use openhive_core::{Introduction, IntroductionKind, SharedKey};
use openhive_store::Store;
use openhive_store::map_hub::{self, SwarmRow};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long events are kept (followers further behind read the peer list again anyway).
const EVENT_RETENTION_MS: i64 = 24 * 3600 * 1000;

pub struct MapHub {
    pub store: Store,
    pub instance_id: String,
    key: SharedKey,
    pub config: MapHubConfig,
    /// Bumped after each commit that added events (long polls wait on it).
    events: watch::Sender<u64>,
}

impl MapHub {
    pub fn new(store: Store, instance_id: String, key: SharedKey, config: MapHubConfig) -> Self {
        MapHub {
            store,
            instance_id,
            key,
            config,
            events: watch::channel(0).0,
        }
    }

    /// The hub's public key (standard base64 SPKI).
    pub fn signing_key(&self) -> String {
        self.key.public().to_base64()
    }

    /// A hub introduction for `swarm`, valid for `introduction_ttl_secs` from now, covering
    /// every hive.
    pub fn introduction_for(&self, swarm: &SwarmRow) -> Introduction {
        let now = now_ms();
        let ttl = i64::try_from(self.config.introduction_ttl_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        Introduction::sign(
            &self.key.get(),
            IntroductionKind::Hub,
            &self.instance_id,
            &swarm.instance_id,
            &swarm.signing_key,
            &swarm.sync_endpoint,
            vec![openhive_core::introduction::ANY_HIVE.to_string()],
            now,
            now.saturating_add(ttl),
        )
    }

    /// Wakes the long polls (call after a commit that may have added events).
    pub fn events_committed(&self) {
        self.events.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver to wait for the next [`MapHub::events_committed`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.events.subscribe()
    }

    /// Marks silent swarms offline and prunes old events, every `stale_after / 4` (at least
    /// every second, at most every 30 s).
    pub fn spawn_stale_task(self: &Arc<Self>) -> JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            let stale_ms =
                i64::try_from(hub.config.stale_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            let every = Duration::from_millis((stale_ms / 4).clamp(1000, 30_000) as u64);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = now_ms();
                let res = hub
                    .store
                    .write(move |tx| -> Result<_, openhive_store::StoreError> {
                        let stale = map_hub::mark_stale(tx, now.saturating_sub(stale_ms), now)?;
                        map_hub::prune_events(tx, now.saturating_sub(EVENT_RETENTION_MS))?;
                        Ok(stale)
                    })
                    .await;
                match res {
                    Ok(stale) if stale.is_empty() => {}
                    Ok(stale) => {
                        for id in &stale {
                            tracing::info!(swarm = %id, "MAP hub: swarm went offline (no heartbeat)");
                        }
                        hub.events_committed();
                    }
                    Err(e) => tracing::warn!(error = %e, "MAP hub: stale detection failed"),
                }
            }
        })
    }
}
