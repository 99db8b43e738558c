//! Opens a store for a test on the suite's engine: SQLite in a temp dir by default, a fresh
//! PostgreSQL database when `OPENHIVE_TEST_PG_URL` is set.
#![allow(dead_code, clippy::unwrap_used)]

use openhive_store::{Store, StoreOptions};

/// What a test's store lives in: a temp dir, and on PostgreSQL a scratch database that is
/// dropped with this. Declare it before the store (`let (_dir, store) = ...`) so the store
/// closes first.
pub struct Scratch {
    _dir: tempfile::TempDir,
    _database: Option<openhive_store_postgres::ScratchDatabase>,
}

pub fn open_store() -> (Scratch, Store) {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions::default();
    let (database, store) = match std::env::var("OPENHIVE_TEST_PG_URL") {
        Ok(admin) if !admin.is_empty() => {
            let db = openhive_store_postgres::ScratchDatabase::create(&admin, "oh_store").unwrap();
            let store = openhive_store_postgres::open(db.url(), &opts).unwrap();
            (Some(db), store)
        }
        _ => (
            None,
            openhive_store_sqlite::open(&dir.path().join("db.sqlite"), &opts).unwrap(),
        ),
    };
    let scratch = Scratch {
        _dir: dir,
        _database: database,
    };
    (scratch, store)
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
