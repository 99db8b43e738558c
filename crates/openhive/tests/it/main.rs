//! Black-box integration tests: real servers on 127.0.0.1:0, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// reqwest's TLS needs a process-wide crypto provider before any client is built; tests
/// build clients before (or without) starting a server, which would install it.
#[ctor::ctor]
fn install_crypto_provider() {
    openhive_sync::client::install_crypto_provider();
}

mod admin;
mod agents;
mod backpressure;
mod client;
mod comments;
mod compaction;
mod config;
mod crash;
mod demo;
mod feeds;
mod hardening;
mod harness;
mod hives;
mod map_hub;
mod meta;
mod metrics;
mod multiprocess;
mod posts;
mod reference_compat;
mod rotation;
mod skill;
mod subscriptions;
mod symbol_order;
mod sync_backfill;
mod sync_batch;
mod sync_converge;
mod sync_fake_peer;
mod sync_gossip;
mod sync_pairing;
mod sync_progress;
mod sync_realtime;
mod sync_security;
mod sync_succession;
mod sync_tls;
mod sync_util;
mod ui;
mod ws;
