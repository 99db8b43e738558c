//! Scratch databases: one fresh, empty database per test or benchmark instance, on a
//! PostgreSQL server given by an admin URL (a URL to any database of it).
//!
//! A suite makes thousands of them (a property test opens three stores per case), and a
//! migrated database takes ~10 MB of disk, so none may outlive its user:
//! - [`ScratchDatabase`] drops its database when it is dropped, closing whatever
//!   connections are still open to it (`WITH (FORCE)`);
//! - what a process left behind (a panic that aborted, a kill, a guard kept for the whole
//!   process such as a test server's data directory) is dropped by the next
//!   [`ScratchDatabase::create`] on the same server once that process is gone. Each name
//!   carries its creator's pid; liveness is read from `/proc`, so this reaping only happens
//!   when the server is on this machine (a loopback or Unix-socket URL).
//!
//! Never point these at a server that holds anything but test data.

use crate::{now_ms, store_err, with_database};
use openhive_store::StoreError;
use postgres::{Client, NoTls};
use std::sync::atomic::{AtomicU64, Ordering};

/// Every scratch database's name starts with this; nothing else is ever dropped.
const MARK: &str = "scratch_";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A database made for one test or benchmark instance; dropping this drops the database.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates an empty database (`C` collation, UTF-8) named after `prefix`, this process
    /// and a counter, after dropping the scratch databases of processes that are gone.
    pub fn create(admin_url: &str, prefix: &str) -> Result<Self, StoreError> {
        let name = format!(
            "{MARK}{prefix}_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            now_ms()
        )
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_");
        let mut client = Client::connect(admin_url, NoTls).map_err(store_err)?;
        if server_is_local(admin_url) {
            reap_abandoned(&mut client);
        }
        client
            .batch_execute(&format!(
                "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' \
                 LC_COLLATE 'C' LC_CTYPE 'C'"
            ))
            .map_err(store_err)?;
        Ok(Self {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_string(),
            name,
        })
    }

    /// The URL of the database (the admin URL with its database name replaced).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        // The synchronous client runs its own runtime, which must not start inside the
        // caller's (a guard may be dropped in async code): drop from a thread of our own.
        let admin = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let mut client = Client::connect(&admin, NoTls)?;
            drop_database(&mut client, &name)
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(database = %self.name, error = %e, "could not drop a scratch database");
            }
            Err(_) => tracing::warn!(database = %self.name, "dropping a scratch database panicked"),
        }
    }
}

/// Drops database `name`, closing the connections still open to it.
fn drop_database(client: &mut Client, name: &str) -> Result<(), postgres::Error> {
    client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
}

/// True if the server of `url` runs on this machine, where `/proc` tells whether a
/// database's creator is still alive.
fn server_is_local(url: &str) -> bool {
    let Ok(config) = url.parse::<postgres::Config>() else {
        return false;
    };
    std::path::Path::new("/proc/self").exists()
        && config.get_hosts().iter().all(|h| match h {
            postgres::config::Host::Tcp(host) => {
                matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1" | "[::1]")
            }
            #[cfg(unix)]
            postgres::config::Host::Unix(_) => true,
        })
}

/// The creator pid in a scratch database's name (`scratch_PREFIX_PID_N_MILLIS`).
fn creator_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(MARK)?;
    let mut fields = rest.rsplitn(4, '_');
    let (_millis, _n, pid) = (fields.next()?, fields.next()?, fields.next()?);
    fields.next()?; // the prefix
    pid.parse().ok()
}

/// Drops the scratch databases whose creator process is gone. Best effort: a database
/// another process is dropping at the same moment, or any error, is left for next time.
fn reap_abandoned(client: &mut Client) {
    let names: Vec<String> = match client.query(
        "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
        &[&MARK],
    ) {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(e) => {
            tracing::debug!(error = %e, "could not list scratch databases");
            return;
        }
    };
    for name in names {
        let Some(pid) = creator_pid(&name) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Err(e) = drop_database(client, &name) {
            tracing::debug!(database = %name, error = %e, "could not drop an abandoned scratch database");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{creator_pid, server_is_local};

    #[test]
    fn the_creator_pid_is_read_from_the_name() {
        assert_eq!(
            creator_pid("scratch_oh_it_4242_7_1764500000000"),
            Some(4242)
        );
        assert_eq!(creator_pid("scratch_x_1_0_5"), Some(1));
        // Not ours, or not the shape we make: never touched.
        assert_eq!(creator_pid("oh_it_4242_7_1764500000000"), None);
        assert_eq!(creator_pid("scratch_4242_7_1764500000000"), None);
        assert_eq!(creator_pid("scratch_oh_x_7_1764500000000"), None);
    }

    #[test]
    fn only_servers_on_this_machine_are_reaped() {
        assert!(server_is_local(
            "postgres://postgres@127.0.0.1:54329/postgres"
        ));
        assert!(server_is_local("postgres://u@localhost/db"));
        assert!(!server_is_local("postgres://u@db.example.org:5432/db"));
        assert!(!server_is_local("postgres://u@127.0.0.1,db.example.org/db"));
        assert!(!server_is_local("not a url"));
    }
}
