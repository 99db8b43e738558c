//! A new instance joining late backfills a long log (10k+ events) by pull, verifying and
//! materializing every event, with bounded batches.

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
