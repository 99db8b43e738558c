//! The OpenHive server: configuration, instance identity, the HTTP API and start-up.
//!
//! # Layout
//! - [`config`]: the `Config` struct and its layered loading (flags > env > file > defaults).
//! - [`cli`]: the `openhive` command line.
//! - [`identity`]: the instance id, signing key and admin key persisted in the data dir.
//! - [`app`]: `AppState` and [`app::start`], which binds and serves until shut down.
//! - [`http`]: the router and one module per API concern.
//! - [`map_hub`]: the MAP hub (`[map_hub] enabled`): introductions, stale detection.
//! - [`metrics`]: the Prometheus text encoder, HTTP request figures, the lag-alert memory.

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod heap_trim;
pub mod http;
pub mod identity;
pub mod map_hub;
pub mod metrics;
pub mod realtime;
pub mod rotation;
pub mod service;
pub mod subscriptions;
pub mod views;

pub use app::{AppState, RunningServer, start};
pub use config::Config;
