//! The schema, versioned, one migration list per dialect. The SQL modules of this crate are
//! written against it; engines apply the list of their dialect in order and record the
//! last applied version.

/// One migration: its version and SQL.
pub type Migration = (u32, &'static str);

/// SQLite migrations (`PRAGMA user_version` records the last applied one).
pub const SQLITE: &[Migration] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_sync_links.sql")),
    (
        3,
        include_str!("../migrations/sqlite/0003_feed_indexes.sql"),
    ),
    (
        4,
        include_str!("../migrations/sqlite/0004_log_and_consumers.sql"),
    ),
    (
        5,
        include_str!("../migrations/sqlite/0005_waiting_bounds.sql"),
    ),
    (6, include_str!("../migrations/sqlite/0006_ingest_keys.sql")),
    (
        7,
        include_str!("../migrations/sqlite/0007_subscriptions.sql"),
    ),
    (
        8,
        include_str!("../migrations/sqlite/0008_key_rotation.sql"),
    ),
    (
        9,
        include_str!("../migrations/sqlite/0009_search_instances.sql"),
    ),
    (
        10,
        include_str!("../migrations/sqlite/0010_introductions.sql"),
    ),
    (11, include_str!("../migrations/sqlite/0011_map_hub.sql")),
    (12, include_str!("../migrations/sqlite/0012_compaction.sql")),
    (
        13,
        include_str!("../migrations/sqlite/0013_owner_succession.sql"),
    ),
    (14, include_str!("../migrations/sqlite/0014_gossip.sql")),
    (17, include_str!("../migrations/sqlite/0017_fts_queue.sql")),
    (
        18,
        include_str!("../migrations/sqlite/0018_post_lengths.sql"),
    ),
    (
        19,
        include_str!("../migrations/sqlite/0019_fts_queue_deferred.sql"),
    ),
    (
        20,
        include_str!("../migrations/sqlite/0020_fts_queue_by_row.sql"),
    ),
    (
        21,
        include_str!("../migrations/sqlite/0021_drop_author_indexes.sql"),
    ),
];

/// PostgreSQL migrations (the `schema_migrations` table records applied versions). Version
/// 1 is the whole of SQLite's versions 1-3; version 2 is SQLite's 4, version 3 SQLite's 5, version 4 SQLite's 6,
/// version 5 SQLite's 7, version 6 SQLite's 8 (SQLite's 9, the FTS5 vocabulary table, has no
/// PostgreSQL counterpart), version 7 SQLite's 10, version 8 SQLite's 11, version 9 SQLite's 12,
/// version 10 SQLite's 13, version 11 SQLite's 14 (SQLite's 17-20, the full-text queue
/// and the post-length change list, are SQLite's full-text index only), version 12 SQLite's 21.
pub const POSTGRES: &[Migration] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../migrations/postgres/0002_log_and_consumers.sql"),
    ),
    (
        3,
        include_str!("../migrations/postgres/0003_waiting_bounds.sql"),
    ),
    (
        4,
        include_str!("../migrations/postgres/0004_ingest_keys.sql"),
    ),
    (
        5,
        include_str!("../migrations/postgres/0005_subscriptions.sql"),
    ),
    (
        6,
        include_str!("../migrations/postgres/0006_key_rotation.sql"),
    ),
    (
        7,
        include_str!("../migrations/postgres/0007_introductions.sql"),
    ),
    (8, include_str!("../migrations/postgres/0008_map_hub.sql")),
    (
        9,
        include_str!("../migrations/postgres/0009_compaction.sql"),
    ),
    (
        10,
        include_str!("../migrations/postgres/0010_owner_succession.sql"),
    ),
    (11, include_str!("../migrations/postgres/0011_gossip.sql")),
    (
        12,
        include_str!("../migrations/postgres/0012_drop_author_indexes.sql"),
    ),
];

/// The newest version of a list.
pub fn latest(list: &[Migration]) -> u32 {
    list.last().map(|m| m.0).unwrap_or(0)
}
