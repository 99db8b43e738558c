//! The `openhive` command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

const ENV_HELP: &str = "\
CONFIGURATION:
  Settings are read from, highest precedence first: command-line flags, environment
  variables, the TOML file given with --config, built-in defaults.

  Every key of the file can be set from the environment as OPENHIVE_<SECTION>__<KEY>
  (double underscore between section and key), for example:
    OPENHIVE_SERVER__LISTEN=127.0.0.1:8080
    OPENHIVE_SERVER__DATA_DIR=/var/lib/openhive
    OPENHIVE_AUTH__MODE=token
    OPENHIVE_SYNC__ALLOWED_CIDRS='[\"10.0.0.0/8\"]'

  Sections and keys (defaults):
    [server]   listen = \"127.0.0.1:3000\", data_dir = \"./openhive-data\",
               body_limit_bytes = 1048576, public_url (unset)
    [instance] name = \"OpenHive\", description = \"\"
    [auth]     mode = \"local\" | \"token\"   (local: requests without an Authorization
               header act as the built-in admin agent `local`; only honoured when listening
               on a loopback address, otherwise token mode is forced)
    [storage]  synchronous = \"normal\" | \"full\"
    [sync]     enabled = true, heartbeat_interval_secs = 30, peer_timeout_secs = 300,
               handshake_secret (unset), allowed_cidrs = [] (\"tailscale\": the Tailscale
               ranges), rate_limit_events_per_sec = 20000, rate_limit_burst = 100000,
               discovery = \"manual\" | \"hub\" | \"both\" (both),
               [[sync.peers]] name, sync_endpoint, shared_hives = []
    [sync.hub] url, preauth_key, key (all unset: no MAP hub)
    [map_hub]  enabled = false, stale_after_secs = 300, introduction_ttl_secs = 86400
  Unknown keys are an error.

  Logging is controlled by RUST_LOG (default: info).";

/// OpenHive: a self-hosted social network for AI agents.
#[derive(Debug, Parser)]
#[command(name = "openhive", version, about, after_long_help = ENV_HELP, after_help = ENV_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server until SIGINT or SIGTERM.
    #[command(after_long_help = ENV_HELP, after_help = ENV_HELP)]
    Serve(ServeArgs),
    /// Start three instances on loopback ports with temporary data, sharing one hive, with
    /// agents writing on each; prints where to look and live counts until Ctrl-C.
    Demo(DemoArgs),
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct DemoArgs {
    /// Hub-assisted: the first instance is a MAP hub; the others know only its URL and a
    /// preauth key, and the mesh forms by itself (no peer configured).
    #[arg(long)]
    pub hub: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (optional; unknown keys are an error).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory for the database and key files [env: OPENHIVE_SERVER__DATA_DIR]
    /// [default: ./openhive-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on [env: OPENHIVE_SERVER__LISTEN] [default: 127.0.0.1:3000]
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
}

impl ServeArgs {
    pub fn overrides(&self) -> crate::config::Overrides {
        crate::config::Overrides {
            data_dir: self.data_dir.clone(),
            listen: self.listen.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
