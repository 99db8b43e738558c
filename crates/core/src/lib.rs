//! Pure domain of OpenHive: identifiers, the signed event envelope, event payloads,
//! conflict-resolution ordering, input validation and time formatting.
//!
//! This crate does no I/O. It knows nothing about SQLite, HTTP or peers; everything in it
//! is a function of its arguments, which is what lets every instance agree on it.
//!
//! # Layout
//! - [`ids`]: instance ids and origin-prefixed entity ids (`post_<inst>_<ulid>`).
//! - [`signing`]: the instance's Ed25519 key, key/signature encodings, verification (ZIP-215, alone or in batches).
//! - [`event`]: the event envelope, its exact signed byte layout, event types.
//! - [`payload`]: the JSON payload of every event type.
//! - [`introduction`]: signed introductions (a hub or a peer vouching for an instance to pair).
//! - [`rotation`]: key rotation statements, an instance's chain of keys, the shared current key.
//! - [`hive`]: the closed vocabularies of a hive's state (setting keys and values, post
//!   permissions, membership states).
//! - [`order`]: versions and the conflict-resolution orderings (LWW, owner-preferring).
//! - [`validate`]: names, limits and the control-character rule, shared by the API and the
//!   materializer.
//! - [`seal`]: sealing of secrets the database holds (XChaCha20-Poly1305).
//! - [`time`]: milliseconds since the epoch and their RFC 3339 rendering.

pub mod event;
pub mod hive;
pub mod ids;
pub mod introduction;
pub mod order;
pub mod payload;
pub mod rotation;
pub mod seal;
pub mod signing;
pub mod time;
pub mod validate;

pub use event::{Event, EventError, EventType};
pub use introduction::{Introduction, IntroductionKind};
pub use rotation::{KeyChain, RotationStatement, SharedKey};
pub use signing::{InstanceKey, PublicKey};
