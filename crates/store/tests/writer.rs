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
