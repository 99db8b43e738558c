//! Persistence for OpenHive: embedded SQLite in WAL mode, one writer connection and a pool
//! of readers, versioned migrations, the per-hive event log, the materializer that projects
//! events into the tables feeds read, and the queries the API needs.
//!
//! # Boundary
//! Nothing outside this crate writes SQL. Callers run closures through [`Store::write`]
//! (one transaction on the single writer, committed if the closure returns `Ok`) or
//! [`Store::read`] (a pooled read-only connection), and inside them call the functions of
//! this crate's modules. A PostgreSQL backend would implement the same modules.
//!
//! # Layout
//! - [`db`]: opening, pragmas, migrations, the writer/reader split.
//! - [`context`]: settings and secrets (waiting-queue bounds, the token sealing key) the
//!   connections of a store carry.
//! - [`log`]: the append-only event log (its header `hive_logs`, seq assignment, dedup,
//!   paging).
//! - [`consumers`]: the readers of each log, their cursors and the low-water mark.
//! - [`ingest`]: the one path by which any event, local or remote, enters a hive.
//! - [`materialize`]: the projection of events into posts/comments/votes/hives/memberships.
//! - [`agents`], [`hives`], [`posts`], [`comments`], [`search`]: read models and local rows.
//! - [`sync_state`]: peers, group links, cursors, tokens, instance keys.
//! - [`introductions`]: the introductions this instance holds for itself (hub or peer vouchers).
//! - [`map_hub`]: the MAP hub's registry (swarms, advertised hive names, preauth keys,
//!   events) and this instance's own registration with a hub.
//! - [`subscriptions`]: Pattern 1 pull subscriptions and the mirror hives they fill.

pub mod agents;
pub mod check;
pub mod comments;
pub mod compact;
pub mod consumers;
pub mod context;
pub mod db;
pub mod engine;
pub mod error;
pub mod hives;
pub mod ingest;
pub mod ingest_keys;
pub mod introductions;
pub mod keys;
pub mod log;
pub mod map_hub;
pub mod materialize;
pub mod notify;
pub mod posts;
pub mod schema;
pub mod search;
pub mod subscriptions;
pub mod sync_state;

pub use context::{LagAlert, StoreContext, WaitingLimits};
pub use db::{QueueStats, Store, StoreOptions};
pub use engine::{Conn, DbError, Engine};
pub use error::StoreError;
