//! What the SQL modules need besides the database: settings of this instance and secrets
//! the database must not hold. Every [`crate::Conn`] a [`crate::Store`] lends carries its
//! store's context ([`crate::Conn::context`]); a bare connection carries [`DEFAULT`].
//!
//! - [`WaitingLimits`]: bounds of the queue of events waiting for an unknown origin key
//!   (`ingest`), per delivering peer and in total;
//! - the [`SealKey`] that seals the tokens this instance presents to its peers
//!   (`sync_state`): derived from the instance key file, never stored in the database.

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

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct StoreContext {
    pub waiting: WaitingLimits,
    /// Seals outbound peer tokens; `None` stores them in clear (stores opened without an
    /// instance key: tools and store tests).
    pub seal_key: Option<SealKey>,
}

/// The context of a connection no store configured.
pub static DEFAULT: StoreContext = StoreContext {
    waiting: WaitingLimits::DEFAULT,
    seal_key: None,
};
