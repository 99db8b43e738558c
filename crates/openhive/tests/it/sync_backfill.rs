//! A new instance joining late backfills a long log (10k+ events) by pull, verifying and
//! materializing every event, with bounded batches.

use crate::harness::spawn_binary_env;
use crate::sync_util::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn sync_late_joiner_backfills_ten_thousand_events() {
    let a = instance().await;
    create_hive(&a, "big").await;
    enable_group(&a, "big").await;
    bulk_posts(&a, "big", 10_000).await;
    new_post(&a, "big", "the last one").await;
    let a_seq = local_seq(&a, "big").await;
    assert!(a_seq > 10_000, "{a_seq}");

    let b = instance().await;
    let start = Instant::now();
    add_peer(&b, "A", &a, &["big"]).await;
    add_peer(&a, "B", &b, &["big"]).await;
    wait_for(Duration::from_secs(120), "B caught up", || async {
        (local_seq(&b, "big").await >= a_seq).then_some(())
    })
    .await;
    let took = start.elapsed();
    eprintln!("backfilled {a_seq} events in {took:?}");
    assert_eq!(post_total(&b, "big").await, 10_001);
    assert_eq!(post_total(&a, "big").await, 10_001);
    // A writes once more: steady-state push after backfill.
    new_post(&a, "big", "after backfill").await;
    wait_for(Duration::from_secs(30), "steady push", || async {
        (post_total(&b, "big").await == 10_002).then_some(())
    })
    .await;
    let st = get(&b, "/sync/status").await;
    let p = &st["groups"][0]["peers"][0];
    assert_eq!(p["state"], "active", "{st}");
    assert_eq!(st["counters"]["events_rejected"], 0);
}

/// `kill -9` of a joiner in the middle of its backfill, then a restart on the same data.
/// The joiner had fetched pages ahead of its writer, and each fetch told the peer it held
/// everything before it (`sync::pull_ahead`); the pages not committed at the kill come
/// again after the restart, and the joiner ends with the whole log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_killed_mid_backfill_has_the_whole_log_after_a_restart() {
    let a = instance_with(fast_sync).await;
    create_hive(&a, "long").await;
    enable_group(&a, "long").await;
    bulk_posts(&a, "long", 2_000).await;
    let a_seq = local_seq(&a, "long").await;
    let a_posts = post_total(&a, "long").await;

    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("OPENHIVE_SYNC__HEARTBEAT_INTERVAL_SECS", "1"),
        ("OPENHIVE_SYNC__PEER_TIMEOUT_SECS", "30"),
        ("OPENHIVE_SYNC__BACKOFF_INITIAL_MS", "100"),
        ("OPENHIVE_SYNC__BACKOFF_MAX_SECS", "1"),
        // Pages of five: the backfill is hundreds of pages, so the kill lands in it.
        ("OPENHIVE_SYNC__PULL_BATCH", "5"),
    ];
    let b = spawn_binary_env(dir.path(), &env);
    add_peer(&b, "A", &a, &["long"]).await;
    add_peer(&a, "B", &b, &["long"]).await;
    let at_kill = wait_for(
        Duration::from_secs(120),
        "B's backfill under way",
        || async {
            let s = local_seq(&b, "long").await;
            (s >= 200).then_some(s)
        },
    )
    .await;
    let mut child = b.child;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    eprintln!("killed at seq {at_kill} of {a_seq}");
    assert!(
        at_kill < a_seq,
        "the backfill ended before the kill ({at_kill} of {a_seq}): nothing was tested"
    );

    let b = spawn_binary_env(dir.path(), &env);
    wait_for(
        Duration::from_secs(180),
        "B caught up after the restart",
        || async {
            (local_seq(&b, "long").await >= a_seq && post_total(&b, "long").await == a_posts)
                .then_some(())
        },
    )
    .await;
    assert_eq!(post_total(&b, "long").await, a_posts);
}
