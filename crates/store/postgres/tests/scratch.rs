//! Scratch databases do not pile up (CI once ran out of disk on them: the store tests alone
//! left 676, 7.1 GB): a guard drops its database, and `create` drops those whose creator
//! process is gone. Runs when the suite runs on PostgreSQL (`OPENHIVE_TEST_PG_URL`).
#![allow(clippy::unwrap_used)]

use openhive_store_postgres::ScratchDatabase;
use postgres::{Client, NoTls};

fn admin() -> Option<String> {
    let url = std::env::var("OPENHIVE_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!("skipped: needs PostgreSQL (OPENHIVE_TEST_PG_URL); CI runs it there");
    }
    url
}

fn exists(client: &mut Client, name: &str) -> bool {
    client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .unwrap()
        .is_some()
}

#[test]
fn a_dropped_guard_drops_its_database_even_with_a_connection_open() {
    let Some(admin) = admin() else { return };
    let db = ScratchDatabase::create(&admin, "oh_scratch").unwrap();
    let name = db.name().to_string();
    let mut client = Client::connect(&admin, NoTls).unwrap();
    assert!(exists(&mut client, &name));
    // A store that outlived the guard would still be connected: FORCE closes it.
    let mut user = Client::connect(db.url(), NoTls).unwrap();
    user.batch_execute("CREATE TABLE t (x INT)").unwrap();
    drop(db);
    assert!(!exists(&mut client, &name));
}

#[test]
fn create_drops_the_databases_of_processes_that_are_gone() {
    let Some(admin) = admin() else { return };
    let mut client = Client::connect(&admin, NoTls).unwrap();
    // Above Linux's largest pid (2^22), so no such process exists.
    let gone = "scratch_oh_scratch_4194305_0_1";
    let ours = ScratchDatabase::create(&admin, "oh_scratch").unwrap();
    // Not ours at all: never touched, whatever its name says.
    let foreign = "oh_scratch_4194305_0_1";
    for name in [gone, foreign] {
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
            .unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap();
    }
    let next = ScratchDatabase::create(&admin, "oh_scratch").unwrap();
    assert!(!exists(&mut client, gone));
    assert!(exists(&mut client, foreign), "not a scratch database");
    assert!(exists(&mut client, ours.name()), "its creator is alive");
    assert!(exists(&mut client, next.name()));
    client
        .batch_execute(&format!("DROP DATABASE \"{foreign}\""))
        .unwrap();
}
