//! Opens a store for a test on the suite's engine: SQLite in a temp dir by default, a fresh
//! PostgreSQL database when `OPENHIVE_TEST_PG_URL` is set.
#![allow(dead_code, clippy::unwrap_used)]

use openhive_store::{Store, StoreOptions};

pub fn open_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions::default();
    let store = match std::env::var("OPENHIVE_TEST_PG_URL") {
        Ok(admin) if !admin.is_empty() => {
            let url = openhive_store_postgres::create_scratch_database(&admin, "oh_store").unwrap();
            openhive_store_postgres::open(&url, &opts).unwrap()
        }
        _ => openhive_store_sqlite::open(&dir.path().join("db.sqlite"), &opts).unwrap(),
    };
    (dir, store)
}

/// A SQLite store with a pool of one reader (tests of what a reader sees and where it runs).
pub fn sqlite_with_one_reader() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        readers: 1,
        ..StoreOptions::default()
    };
    let store = openhive_store_sqlite::open(&dir.path().join("db.sqlite"), &opts).unwrap();
    (dir, store)
}
