//! Consumers of a hive's log: cursors, liveness and the low-water mark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use openhive_store::consumers::{self, ConsumerId, ConsumerKind};
use openhive_store::{StoreError, hives, params, sync_state};

#[test]
fn low_water_mark_is_the_lowest_live_cursor_and_cursors_never_pass_the_head() {
    let (_d, s) = common::open_store();
    s.write_blocking(|c| {
        let hive = hives::ensure_log(c, "general")?;
        sync_state::ensure_group(c, &hive, "general", "inst_self", 1)?;
        assert_eq!(
            consumers::low_water_mark(c, &hive)?,
            None,
            "nobody reads yet"
        );
        let (a, _) = sync_state::upsert_configured_peer(
            c,
            "a",
            "http://a/sync/v1",
            sync_state::PeerSource::Api,
            1,
        )?;
        let (b, _) = sync_state::upsert_configured_peer(
            c,
            "b",
            "http://b/sync/v1",
            sync_state::PeerSource::Api,
            1,
        )?;
        sync_state::ensure_link(c, &a.id, &hive, sync_state::LinkState::Active)?;
        sync_state::ensure_link(c, &b.id, &hive, sync_state::LinkState::Active)?;
        // Links are consumers of the log.
        let list = consumers::for_hive(c, &hive)?;
        assert_eq!(list.len(), 2);
        assert!(
            list.iter()
                .all(|k| k.kind == ConsumerKind::PeerLink && k.live)
        );
        assert_eq!(consumers::low_water_mark(c, &hive)?, Some(0));

        // A cursor cannot run ahead of the log.
        let ka = ConsumerId::peer(&a.id);
        consumers::advance(c, &ka, &hive, 7, 2)?;
        assert_eq!(consumers::cursor(c, &ka, &hive)?, 0);
        c.execute(
            "UPDATE hive_logs SET head_seq = 9 WHERE hive_id = ?1",
            params![hive],
        )?;
        consumers::advance(c, &ka, &hive, 7, 2)?;
        consumers::advance(c, &ka, &hive, 3, 2)?;
        assert_eq!(consumers::cursor(c, &ka, &hive)?, 7, "never back");
        consumers::advance(c, &ConsumerId::peer(&b.id), &hive, 4, 2)?;
        assert_eq!(consumers::low_water_mark(c, &hive)?, Some(4));

        // A link that left stops holding the mark down; reopening it makes it count again.
        sync_state::mark_left(c, &b.id, &hive)?;
        assert_eq!(consumers::low_water_mark(c, &hive)?, Some(7));
        sync_state::ensure_link(c, &b.id, &hive, sync_state::LinkState::Handshaking)?;
        assert_eq!(consumers::low_water_mark(c, &hive)?, Some(4));

        // Deleting a peer removes its consumers.
        sync_state::delete_peer(c, &a.id)?;
        assert_eq!(consumers::for_hive(c, &hive)?.len(), 1);
        Ok::<_, StoreError>(())
    })
    .unwrap();
}
