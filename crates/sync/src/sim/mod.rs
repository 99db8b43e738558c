//! The engine simulation (issue 8, item 6): the real sync engine ([`crate::engine`], links,
//! scheduler, heartbeat, gossip, inbound handlers, real stores) on an in-memory network
//! ([`net::SimNet`], a [`crate::transport::Transport`] per instance) under tokio's paused
//! clock.
//!
//! **Virtual time.** The scenario runs on a current-thread runtime started paused: when no
//! task can make progress, tokio moves the clock to the next timer (heartbeat intervals,
//! backoffs, the scheduler's waits, message latencies). The engine reads time for its
//! decisions through `tokio::time::Instant` (identical to `std` outside a paused runtime),
//! so an interval of 30 s costs nothing. Work off the runtime holds the clock: store reads
//! run on the blocking pool, and the stores are put in [`openhive_store::Store::hold_paused_clock`]
//! mode so a write waits from the blocking pool too (tokio does not advance a paused clock
//! while a blocking task runs). Store work itself takes no virtual time; a message takes
//! its drawn latency. What stays on the wall clock: event origin timestamps and the
//! database's `*_at` columns (contacts, failures), so rules measured in wall milliseconds
//! (`peer_timeout` → `unreachable`, gossip `stale_timeout`) do not fire during a
//! simulated run; there are no call timeouts on the in-memory network.
//!
//! Run it with `cargo run --release -p openhive-sync --example engine_sim -- --help`.

pub mod net;
pub mod scenario;

pub use net::{SimNet, SimTransport, Traffic};
pub use scenario::{EngineSimConfig, EngineSimReport, run};
