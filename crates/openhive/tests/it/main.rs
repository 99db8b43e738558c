//! Black-box integration tests: real servers on 127.0.0.1:0, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod agents;
mod backpressure;
mod client;
mod comments;
mod config;
mod crash;
mod demo;
mod feeds;
mod harness;
mod hives;
mod meta;
mod multiprocess;
mod posts;
mod skill;
mod sync_backfill;
mod sync_converge;
mod sync_fake_peer;
mod sync_pairing;
mod sync_realtime;
mod sync_security;
mod sync_util;
mod ws;
