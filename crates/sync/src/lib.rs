//! Hive Sync: replication of hive event logs between OpenHive instances over `/sync/v1`.
//!
//! The store owns the data (event log, cursors, tokens: `openhive_store::sync_state`); this
//! crate owns the movement: who talks to whom, when, and what is trusted. It knows nothing
//! about axum; the server maps [`SyncError`] to HTTP statuses.
//!
//! # Layout
//! - [`protocol`]: the wire messages (docs/PROTOCOL-sync.md).
//! - [`transport`]: the [`transport::Transport`] trait, every outbound call the engine makes
//!   (the engine never calls reqwest directly); [`client`] implements it over HTTP (pooled
//!   reqwest, per-call timeouts, TLS), [`sim`] over an in-memory network.
//! - [`engine`]: [`SyncEngine::start`] and the [`SyncHandle`] the server keeps.
//! - [`scheduler`]: which link runs when, on a fixed pool of workers (idle links cost
//!   nothing).
//! - `link`: one step of a (peer, hive) link: handshake, pull, or push.
//! - `pull_ahead`: the pages of a pull fetched and their signatures checked ahead of the
//!   writer (a few pages deep).
//! - `outbox`: the generic delivery of a hive's log to one consumer after its cursor (a
//!   link's push is one sink; later consumers reuse it).
//! - `news`: per peer, the shared hives that changed since it last heard from us (what a
//!   heartbeat carries).
//! - `heartbeat`: liveness, lag detection, roster exchange, `unreachable` marking.
//! - [`inbound`]: the server side of each `/sync/v1` endpoint.
//! - [`admission`]: who may handshake (mesh secret, configured endpoint, or an introduction
//!   by the trusted hub or a hive member, with a proof of key possession).
//! - `accept`: handshake acceptance, both roles (responder in `inbound`, initiator in `link`).
//! - `groups`: heartbeat group processing, both directions (received in `inbound`, answered
//!   in `heartbeat`).
//! - `tokens`: token refusal, both directions (401 to unknown tokens; forgetting ours when a
//!   peer refuses it, so the link handshakes again).
//! - [`error`]: [`SyncError`] at the boundary, peer-input and link-step errors inside.
//! - [`admin`]: the local `/api/v1/sync/*` admin operations; [`paging`]: their pages and
//!   filters.
//! - [`backoff`], [`ratelimit`]: retry delays and the per-peer event token bucket.
//! - [`hub_client`]: the MAP hub's wire types and the client that registers this instance,
//!   advertises its sync groups and turns the hub's peer list into peers of source `hub`.
//! - [`trust`]: roster-based key trust (first key wins).

mod accept;
pub mod admin;
pub mod admission;
pub mod backoff;
pub mod client;
pub mod engine;
pub mod error;
pub mod gossip;
pub mod gossip_sim;
mod groups;
mod heartbeat;
pub mod hub_client;
pub mod inbound;
pub mod inbound_batch;
mod link;
mod link_batch;
mod news;
mod outbox;
pub mod paging;
pub mod progress;
pub mod protocol;
mod pull_ahead;
pub mod ratelimit;
pub mod scheduler;
pub mod sim;
mod tokens;
pub mod transport;
pub mod trust;

pub use engine::{LocalIdentity, OnChanges, SyncEngine, SyncHandle, SyncSettings};
pub use error::SyncError;

/// A store on a fresh SQLite file, for the unit tests of this crate (the directory goes
/// with the returned guard).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn temp_store() -> (tempfile::TempDir, openhive_store::Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = openhive_store_sqlite::open(
        &dir.path().join("test.sqlite"),
        &openhive_store::StoreOptions::default(),
    )
    .unwrap();
    (dir, store)
}
