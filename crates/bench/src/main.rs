//! `openhive-bench`: a load generator for OpenHive, in the spirit of `redis-benchmark`.
//!
//! A black-box client: it only speaks HTTP and WebSocket to running instances (it links no
//! server crate). See `openhive-bench --help` and the README's "Load generator" section.
//!
//! - `cli`: options and the operation mix;
//! - `http`: one keep-alive HTTP/1.1 connection per client (hyper, no pool);
//! - `api`: the setup calls (agents, hive, seed content, sharing the hive);
//! - `workload`: the clients and the phases (closed or open loop);
//! - `stats`: latency histograms and counts;
//! - `procfs`: CPU time and RSS of local processes;
//! - `propagate`: end-to-end propagation through the other instance's WebSocket;
//! - `report`: the JSON document and the tables;
//! - `run`: one run from setup to report.

mod api;
mod cli;
mod http;
mod procfs;
mod propagate;
mod report;
mod run;
mod stats;
mod workload;

use anyhow::Context as _;
use clap::Parser as _;
use std::process::ExitCode;

/// mimalloc, as the server: glibc's malloc and free were ~8 % of the generator's CPU per post.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes on one line; no backtrace, whatever RUST_BACKTRACE says.
            eprintln!("openhive-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    cli.validate()?;
    let rt = if cli.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()
    }
    .context("starting the runtime")?;
    let json = cli.json;
    let report = rt.block_on(run::run(cli))?;
    if json {
        println!("{}", report.json()?);
    } else {
        print!("{}", report.text());
    }
    // Do not wait for connection tasks still parked on the runtime.
    rt.shutdown_background();
    Ok(())
}
