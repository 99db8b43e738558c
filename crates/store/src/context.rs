//! What the SQL modules need besides the database: settings of this instance and secrets
//! the database must not hold. Every [`crate::Conn`] a [`crate::Store`] lends carries its
//! store's context ([`crate::Conn::context`]); a bare connection carries [`DEFAULT`].
//!
//! - [`WaitingLimits`]: bounds of the queue of events waiting for an unknown origin key
//!   (`ingest`), per delivering peer and in total;
//! - the [`SealKey`] that seals the tokens this instance presents to its peers
//!   (`sync_state`): derived from the instance key file, never stored in the database;
//! - the [`LagAlert`] thresholds that make a peer link `lagging` in sync status;
//! - the post lengths search ranking holds in memory
//!   ([`PostLengths`](crate::search::post_lengths::PostLengths)).

use openhive_core::seal::SealKey;

/// Bounds of the queue of events waiting for their origin's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitingLimits {
    /// Most events one peer may have delivered that still wait.
    pub per_peer: i64,
    /// Most events waiting in all.
    pub total: i64,
}

impl WaitingLimits {
    pub const DEFAULT: WaitingLimits = WaitingLimits {
        per_peer: 10_000,
        total: 100_000,
    };
}

impl Default for WaitingLimits {
    fn default() -> Self {
        WaitingLimits::DEFAULT
    }
}

/// When a peer link counts as `lagging` (`[sync] lag_alert_events`, `lag_alert_secs`): its
/// peer has not taken more than `events` events of the hive's log, or has not been heard
/// from for more than `silence_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagAlert {
    pub events: i64,
    pub silence_ms: i64,
}

impl LagAlert {
    pub const DEFAULT: LagAlert = LagAlert {
        events: 10_000,
        silence_ms: 300_000,
    };

    /// True if a link `lag` events behind whose peer has been silent for `silent_ms`
    /// passes either threshold.
    pub fn lagging(&self, lag: i64, silent_ms: i64) -> bool {
        lag > self.events || silent_ms > self.silence_ms
    }
}

impl Default for LagAlert {
    fn default() -> Self {
        LagAlert::DEFAULT
    }
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct StoreContext {
    pub waiting: WaitingLimits,
    /// Seals outbound peer tokens; `None` stores them in clear (stores opened without an
    /// instance key: tools and store tests).
    pub seal_key: Option<SealKey>,
    /// Thresholds of the `lagging` flag of sync status.
    pub lag_alert: LagAlert,
    /// Post lengths held for search ranking (shared by the store's connections).
    pub post_lengths: crate::search::post_lengths::PostLengths,
}

/// The context of a connection no store configured.
pub static DEFAULT: StoreContext = StoreContext {
    waiting: WaitingLimits::DEFAULT,
    seal_key: None,
    lag_alert: LagAlert::DEFAULT,
    post_lengths: crate::search::post_lengths::PostLengths::DISABLED,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lagging_passes_either_threshold() {
        let a = LagAlert {
            events: 10,
            silence_ms: 1000,
        };
        assert!(!a.lagging(10, 1000));
        assert!(a.lagging(11, 0));
        assert!(a.lagging(0, 1001));
        assert!(!a.lagging(0, 0));
    }
}
