//! Progress of long pulls: an instance pulling a hive's log again (resync, the same pull as a
//! backfill) shows, per link, a `progress` object `{done, total, rate, eta_secs,
//! started_at}` in sync status and in the peer listing while it pulls, and none once it
//! caught up. Pages are kept small
//! (`[sync] pull_batch = 5`) so the backfill is a few hundred pages; the test waits for
//! conditions, never for a time.

use crate::sync_util::*;
use serde_json::Value;
use std::time::Duration;

/// The `progress` of `hive`'s first link in `/sync/status`, if any.
async fn status_progress(s: &(impl Api + ?Sized), hive: &str) -> Option<Value> {
    let st = get(s, "/sync/status").await;
    let g = st["groups"]
        .as_array()?
        .iter()
        .find(|g| g["hive"] == hive)?;
    let p = &g["peers"][0]["progress"];
    p.is_object().then(|| p.clone())
}

#[tokio::test]
async fn a_resync_shows_progress_while_it_pulls_and_none_after() {
    let a = instance().await;
    create_hive(&a, "long").await;
    enable_group(&a, "long").await;
    bulk_posts(&a, "long", 2_000).await;
    let a_seq = local_seq(&a, "long").await;
    assert!(a_seq > 2_000, "{a_seq}");

    let b = instance_with(|c| c.sync.pull_batch = 5).await;
    add_peer(&b, "A", &a, &["long"]).await;
    add_peer(&a, "B", &b, &["long"]).await;
    // The first backfill: A pushes part of it (its outbox starts before B's first pull), so
    // what B pulls varies; the test watches the resync, which only B's pull carries.
    wait_for(Duration::from_secs(180), "B caught up", || async {
        (local_seq(&b, "long").await >= a_seq).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(60), "B's first pull over", || async {
        status_progress(&b, "long").await.is_none().then_some(())
    })
    .await;

    // Pull the whole log again: 2,001 seqs in pages of 5.
    let (st, body) = post(&b, "/sync/groups/long/resync", serde_json::json!({})).await;
    assert!(st.is_success(), "{st} {body}");

    // While it pulls: the status and the peer listing both show the link's progress.
    let (seen, listed) = wait_for(
        Duration::from_secs(120),
        "progress during the resync",
        || async {
            let p = status_progress(&b, "long").await?;
            let peers = get(&b, "/sync/peers").await;
            let l = peers["data"][0]["groups"]
                .as_array()?
                .iter()
                .find(|g| g["hive"] == "long")?["progress"]
                .clone();
            l.is_object().then_some((p, l))
        },
    )
    .await;
    let (done, total) = (
        seen["done"].as_i64().unwrap(),
        seen["total"].as_i64().unwrap(),
    );
    assert!(done < total, "{seen}");
    // From cursor 0 to A's head (known from the pages' head_seq): the whole log.
    assert_eq!(total, a_seq, "{seen}");
    assert!(done >= 0, "{seen}");
    assert!(seen["rate"].as_f64().unwrap() >= 0.0, "{seen}");
    assert!(
        seen["eta_secs"].is_null() || seen["eta_secs"].as_i64().unwrap() >= 0,
        "{seen}"
    );
    assert!(
        seen["started_at"].as_str().unwrap().ends_with('Z'),
        "{seen}"
    );
    let (ld, lt) = (
        listed["done"].as_i64().unwrap(),
        listed["total"].as_i64().unwrap(),
    );
    assert!(ld <= lt && lt == a_seq, "{listed}");

    // Once caught up: no progress object any more.
    wait_for(Duration::from_secs(180), "the resync over", || async {
        status_progress(&b, "long").await.is_none().then_some(())
    })
    .await;
    let st = get(&b, "/sync/status").await;
    assert_eq!(
        st["groups"][0]["peers"][0]["last_seq_received"], a_seq,
        "{st}"
    );
    assert_eq!(post_total(&b, "long").await, 2_000);
    // The peer listing reads the same tracker, a moment later: it once (load 10) still
    // showed an entry there, so it too must clear within the deadline.
    wait_for(
        Duration::from_secs(60),
        "no progress in the peer listing",
        || async {
            let peers = get(&b, "/sync/peers").await;
            peers["data"][0]["groups"][0]
                .get("progress")
                .is_none()
                .then_some(())
        },
    )
    .await;
}
