//! The `openhive` binary's library half: the server wired to its storage engines.
//!
//! `openhive-server` knows the storage port only; this crate is where an engine is chosen
//! (`[storage] engine`), so that the server, the sync engine and everything above the store
//! build without any engine linked in. Tests and benchmarks start servers through [`start`].

use anyhow::Context as _;
use openhive_server::config::{Config, StorageEngine, Synchronous};
use openhive_server::identity::DB_FILE;
use openhive_store::{Store, StoreOptions};

pub use openhive_server::{RunningServer, config};

/// Opens the store `config` names: SQLite in the data directory, or PostgreSQL at
/// `storage.url`.
pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    let opts = StoreOptions {
        synchronous_full: config.storage.synchronous == Synchronous::Full,
        write_queue: config.storage.write_queue,
        ..StoreOptions::default()
    };
    match config.storage.engine {
        StorageEngine::Sqlite => {
            let path = config.server.data_dir.join(DB_FILE);
            openhive_store_sqlite::open(&path, &opts)
                .with_context(|| format!("opening SQLite database {}", path.display()))
        }
        StorageEngine::Postgres => {
            let url = config
                .storage
                .url
                .as_deref()
                .context("storage.url is required with engine = \"postgres\"")?;
            // The URL may carry a password: name the engine, not the URL.
            openhive_store_postgres::open(url, &opts).context("opening the PostgreSQL database")
        }
    }
}

/// Starts a server with `config` on the engine it names.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    openhive_server::start(config, open_store).await
}
