//! Point reads (`Store::read_point`): on SQLite they run on the calling thread when a pooled
//! reader is idle, and otherwise wait for one like any read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use openhive_store::StoreError;
use openhive_store::db::{meta_get, meta_set};
use std::thread::ThreadId;

type Result<T> = std::result::Result<T, StoreError>;

fn here_and_value(c: &openhive_store::Conn<'_>) -> Result<(ThreadId, Option<String>)> {
    Ok((std::thread::current().id(), meta_get(c, "k")?))
}

#[test]
fn a_point_read_runs_here_when_a_reader_is_idle_and_waits_its_turn_otherwise() -> Result<()> {
    let (_dir, store) = common::sqlite_with_one_reader();
    // One runtime thread: a task runs on it, a blocking read on another thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Task(e.to_string()))?;
    rt.block_on(async move {
        store.write(|tx| meta_set(tx, "k", "v")).await?;
        let here = std::thread::current().id();
        let (ran_on, v) = store.read_point(here_and_value).await?;
        assert_eq!(
            ran_on, here,
            "an idle reader: the read ran on the caller's thread"
        );
        assert_eq!(v.as_deref(), Some("v"));

        // The only reader is busy: the point read waits for it, then runs like any read.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, holding) = tokio::sync::oneshot::channel::<()>();
        let s = store.clone();
        let holder = tokio::spawn(async move {
            s.read(move |_| -> Result<()> {
                let _ = started.send(());
                let _ = held.recv();
                Ok(())
            })
            .await
        });
        holding.await.map_err(|e| StoreError::Task(e.to_string()))?;
        let s = store.clone();
        let point = tokio::spawn(async move { s.read_point(here_and_value).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!point.is_finished(), "no reader was free: it must wait");
        release
            .send(())
            .map_err(|e| StoreError::Task(e.to_string()))?;
        holder
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        let (ran_on, v) = point.await.map_err(|e| StoreError::Task(e.to_string()))??;
        assert_ne!(ran_on, here, "it waited for a reader on a blocking thread");
        assert_eq!(v.as_deref(), Some("v"));
        Ok(())
    })
}
