#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use openhive_store::db::{meta_get, meta_set};
use openhive_store::{StoreError, StoreOptions};

type Result<T> = std::result::Result<T, StoreError>;

#[test]
fn opens_migrates_and_reopens() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| StoreError::Task(e.to_string()))?;
    let path = dir.path().join("db.sqlite");
    {
        let store = openhive_store_sqlite::open(&path, &StoreOptions::default())?;
        store.write_blocking(|tx| meta_set(tx, "k", "v"))?;
    }
    let store = openhive_store_sqlite::open(&path, &StoreOptions::default())?;
    let v = store.read_blocking(|c| meta_get(c, "k"))?;
    assert_eq!(v.as_deref(), Some("v"));
    Ok(())
}

#[test]
fn a_failed_closure_rolls_back() -> Result<()> {
    let (_dir, store) = common::open_store();
    let r: Result<()> = store.write_blocking(|tx| {
        meta_set(tx, "a", "1")?;
        Err(StoreError::Invalid("boom".into()))
    });
    assert!(r.is_err());
    assert_eq!(store.read_blocking(|c| meta_get(c, "a"))?, None);
    Ok(())
}

#[test]
fn concurrent_writes_commit_together_but_fail_alone() -> Result<()> {
    let (_dir, store) = common::open_store();
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                store.write_blocking(move |tx| {
                    meta_set(tx, &format!("k{i}"), "v")?;
                    if i % 2 == 1 {
                        return Err(StoreError::Invalid("odd".into()));
                    }
                    if i == 100 {
                        panic!("a panicking closure only loses its own write");
                    }
                    Ok(i)
                })
            })
        })
        .collect();
    let mut ok = 0;
    for h in handles {
        if h.join()
            .map_err(|_| StoreError::Task("join".into()))?
            .is_ok()
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 99);
    for i in 0..200 {
        let k = format!("k{i}");
        let v = store.read_blocking(move |c| meta_get(c, &k))?;
        assert_eq!(v.is_some(), i % 2 == 0 && i != 100, "k{i}");
    }
    Ok(())
}

/// The queue's figures count committed transactions, the writes they held (the group
/// commit's size, `GET /metrics`) and the transactions by duration; a rolled-back
/// transaction counts in none.
#[test]
fn committed_transactions_and_their_writes_are_counted() -> Result<()> {
    let (_dir, store) = common::open_store();
    let before = store.queue_stats();
    store.write_blocking(|tx| meta_set(tx, "one", "1"))?;
    let r: Result<()> = store.write_blocking(|tx| {
        meta_set(tx, "rolled", "back")?;
        Err(StoreError::Invalid("no".into()))
    });
    assert!(r.is_err());
    let after_one = store.queue_stats();
    assert_eq!(after_one.transactions - before.transactions, 1);
    assert_eq!(after_one.jobs - before.jobs, 1);
    let timed = |q: &openhive_store::QueueStats| q.transactions_by_duration.iter().sum::<u64>();
    assert_eq!(timed(&after_one) - timed(&before), 1);
    assert!(after_one.transaction_seconds > before.transaction_seconds);
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                store.write_blocking(move |tx| meta_set(tx, &format!("c{i}"), "v"))
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| StoreError::Task("join".into()))??;
    }
    let after = store.queue_stats();
    let (txs, jobs) = (
        after.transactions - after_one.transactions,
        after.jobs - after_one.jobs,
    );
    assert_eq!(jobs, 50, "every write committed once");
    assert!((1..=50).contains(&txs), "{txs} transactions");
    assert_eq!(timed(&after), after.transactions, "each commit timed once");
    Ok(())
}

/// The full-text index writes of a batch wait in a queue (SQLite, migrations 0017 and 0019)
/// until a search asks for them: what a committed job wrote is then searchable, what a
/// failed job wrote is not, an edit replaces the indexed words, and nothing stays queued.
#[test]
fn search_index_follows_each_job_of_a_batch() -> Result<()> {
    let (_dir, store) = common::open_store();
    if store.engine() != openhive_store::Engine::Sqlite {
        return Ok(()); // PostgreSQL indexes through generated columns.
    }
    let insert = |tx: &openhive_store::Conn<'_>, i: usize, name: &str| {
        tx.execute(
            "INSERT INTO agents (id, name, instance_id, is_local, created_at, updated_at)
             VALUES (?1, ?2, 'inst_x', 1, 0, 0)",
            openhive_store::params![format!("agt_{i}"), name],
        )
    };
    let handles: Vec<_> = (0..60)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                store.write_blocking(move |tx| {
                    insert(tx, i, &format!("zebra{i} common"))?;
                    if i % 3 == 1 {
                        return Err(StoreError::Invalid("fails after writing".into()));
                    }
                    if i % 3 == 2 {
                        tx.execute(
                            "UPDATE agents SET name = ?2 WHERE id = ?1",
                            openhive_store::params![format!("agt_{i}"), format!("okapi{i} common")],
                        )?;
                    }
                    Ok(())
                })
            })
        })
        .collect();
    for h in handles {
        let _ = h.join().map_err(|_| StoreError::Task("join".into()))?;
    }
    let plain = store.read_blocking(|c| -> Result<(i64, bool)> {
        let indexed = c.query_row("SELECT COUNT(*) FROM agents_fts_docsize", (), |r| r.get(0))?;
        Ok((indexed, openhive_store::search::index_pending(c)?))
    })?;
    assert_eq!(
        plain,
        (0, true),
        "fewer rows than a flush takes wait in the queue"
    );
    let found = |q: &'static str| -> Result<Vec<i64>> {
        store.read_search_blocking(move |c| {
            Ok(
                c.prepare("SELECT rowid FROM agents_fts WHERE agents_fts MATCH ?1")?
                    .query_map([q], |r| r.get(0))?
                    .collect::<std::result::Result<Vec<i64>, _>>()?,
            )
        })
    };
    assert_eq!(found("common")?.len(), 40, "jobs 0, 2, 3, 5, ... committed");
    assert_eq!(
        found("zebra1")?.len(),
        0,
        "a failed job's row is not indexed"
    );
    assert_eq!(found("zebra3")?.len(), 1);
    assert_eq!(
        found("zebra2")?.len(),
        0,
        "an edited name is no longer indexed"
    );
    assert_eq!(found("okapi2")?.len(), 1);
    let health = store.read_blocking(openhive_store::check::consistency)?;
    assert_eq!(health.search_index_gaps, 0, "{health:?}");
    Ok(())
}

/// A transaction that takes the queue to `FTS_QUEUE_ROWS` applies it at its commit, and a
/// store opened again applies what was left queued (as after a kill): the index is
/// complete without any search.
#[test]
fn a_long_queue_and_a_reopened_store_apply_the_index_writes() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| StoreError::Task(e.to_string()))?;
    let path = dir.path().join("db.sqlite");
    let insert = |tx: &openhive_store::Conn<'_>, i: i64| {
        tx.execute(
            "INSERT INTO agents (id, name, instance_id, is_local, created_at, updated_at)
             VALUES (?1, ?2, 'inst_x', 1, 0, 0)",
            openhive_store::params![format!("agt_{i}"), format!("name{i}")],
        )
    };
    let indexed = |store: &openhive_store::Store| -> Result<(i64, bool)> {
        store.read_blocking(|c| {
            let n = c.query_row("SELECT COUNT(*) FROM agents_fts_docsize", (), |r| r.get(0))?;
            Ok((n, openhive_store::search::index_pending(c)?))
        })
    };
    {
        let store = openhive_store_sqlite::open(&path, &StoreOptions::default())?;
        let rows = openhive_store_sqlite::FTS_QUEUE_ROWS;
        store.write_blocking(move |tx| {
            for i in 0..rows {
                insert(tx, i)?;
            }
            Ok::<_, StoreError>(())
        })?;
        assert_eq!(indexed(&store)?, (rows, false), "applied at the commit");
        store.write_blocking(move |tx| Ok::<_, StoreError>(insert(tx, rows)?))?;
        assert_eq!(indexed(&store)?, (rows, true), "one row waits");
    }
    let store = openhive_store_sqlite::open(&path, &StoreOptions::default())?;
    let rows = openhive_store_sqlite::FTS_QUEUE_ROWS;
    assert_eq!(
        indexed(&store)?,
        (rows + 1, false),
        "applied at the opening"
    );
    Ok(())
}

/// Waits (generous deadline) until `n` async writes are queued or running.
async fn queued(store: &openhive_store::Store, n: usize) {
    let t0 = std::time::Instant::now();
    while store.queue_stats().depth < n {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "write not queued"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// Writes queued while the writer is busy share its next transaction. The first job of a
/// transaction runs without a savepoint (a savepoint costs a sub-journal copy of every page
/// the job touches): if it fails, the transaction is rolled back before any other job ran,
/// and the jobs after it commit in a new one. A bulk job ends the batch before it and runs
/// first in the next, outside any savepoint, whatever is queued around it.
#[test]
fn the_first_job_of_a_transaction_and_a_bulk_job_run_without_a_savepoint() -> Result<()> {
    // Opened outside the runtime: the PostgreSQL engine's client blocks on one of its own.
    let (_dir, store) = common::open_store();
    if store.engine() != openhive_store::Engine::Sqlite {
        // The probe below (rolling back to a savepoint that may not exist) would abort a
        // PostgreSQL transaction; the batching itself is the same code on both engines.
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| StoreError::Task(e.to_string()))?
        .block_on(first_job_and_bulk_job(store))
}

async fn first_job_and_bulk_job(store: openhive_store::Store) -> Result<()> {
    // Inside a savepoint named `job`, rolling back to it succeeds (and undoes nothing yet);
    // outside one, SQLite answers "no such savepoint".
    fn in_savepoint(tx: &openhive_store::Conn<'_>) -> bool {
        tx.execute_batch("ROLLBACK TO SAVEPOINT job").is_ok()
    }
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel::<()>();
    let mut tasks = Vec::new();
    let s = store.clone();
    tasks.push(tokio::spawn(async move {
        s.write(move |tx| -> Result<bool> {
            let _ = started.send(());
            wait.recv().map_err(|e| StoreError::Task(e.to_string()))?;
            meta_set(tx, "blocker", "1")?;
            Ok(in_savepoint(tx))
        })
        .await
    }));
    // The blocker must be running, not only queued: the writer forms a batch from what is
    // queued when it takes the first job, and a job queued before that would share the
    // blocker's transaction (seen on a loaded machine).
    tokio::time::timeout(std::time::Duration::from_secs(30), running)
        .await
        .map_err(|_| StoreError::Task("the blocker never ran".into()))?
        .map_err(|e| StoreError::Task(e.to_string()))?;
    queued(&store, 1).await;
    // Queued in this order behind the blocked writer: (key, fails, bulk).
    let jobs = [
        ("fails", true, false),
        ("second", false, false),
        ("third", false, false),
        ("bulk", false, true),
        ("after_bulk", false, false),
    ];
    for (i, (key, fails, bulk)) in jobs.into_iter().enumerate() {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.write_bulk_if(bulk, move |tx| -> Result<bool> {
                let saved = in_savepoint(tx);
                meta_set(tx, key, "1")?;
                if fails {
                    return Err(StoreError::Invalid("this job fails".into()));
                }
                Ok(saved)
            })
            .await
        }));
        queued(&store, i + 2).await;
    }
    release
        .send(())
        .map_err(|e| StoreError::Task(e.to_string()))?;
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.map_err(|e| StoreError::Task(e.to_string()))?.ok());
    }
    // The blocker ran alone; "fails" was first of the next batch and rolled it back, so
    // "second" began a new transaction; "bulk" began the one after "third".
    assert_eq!(
        out,
        vec![
            Some(false),
            None,
            Some(false),
            Some(true),
            Some(false),
            Some(true)
        ]
    );
    for (key, fails, _) in jobs {
        let k = key.to_string();
        let v = store.read_blocking(move |c| meta_get(c, &k))?;
        assert_eq!(v.is_some(), !fails, "{key}");
    }
    Ok(())
}

/// On SQLite a read closure runs in one snapshot: a commit between two of its statements is
/// not seen by the second (and the pages they share are read once, see `SqliteBackend::read`).
/// Its connection goes back to the pool outside the snapshot: the next read, on the same
/// connection (a pool of one), sees the commit.
#[test]
fn a_read_closure_sees_one_snapshot_and_the_next_read_sees_the_commit() -> Result<()> {
    let (_dir, store) = common::sqlite_with_one_reader();
    store.write_blocking(|tx| meta_set(tx, "k", "before"))?;
    let writer = store.clone();
    let seen = store.read_blocking(move |c| -> Result<_> {
        let first = meta_get(c, "k")?;
        std::thread::spawn(move || writer.write_blocking(|tx| meta_set(tx, "k", "after")))
            .join()
            .map_err(|_| StoreError::Task("writer thread".into()))??;
        Ok((first, meta_get(c, "k")?))
    })?;
    assert_eq!(seen, (Some("before".into()), Some("before".into())));
    assert_eq!(
        store.read_blocking(|c| meta_get(c, "k"))?.as_deref(),
        Some("after")
    );
    Ok(())
}
