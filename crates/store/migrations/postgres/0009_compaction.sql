-- Compaction (SQLite's version 12; docs/PROTOCOL-sync.md, "Compaction and snapshots"). A
-- hive's log below its compaction point keeps only the events whose materialization is the
-- state there (the snapshot); the superseded ones are deleted from `events`.
-- Per hive: how far the log is compacted and how many events were dropped in all (the log
-- holds `head_seq - dropped` events; seqs at or below `through_seq` may have gaps).
CREATE TABLE log_compactions (
  hive_id TEXT COLLATE "C" PRIMARY KEY,
  through_seq BIGINT NOT NULL,
  dropped BIGINT NOT NULL,
  compacted_at BIGINT NOT NULL
);
-- The ids of dropped events: still known (a copy arriving again is a duplicate, never logged
-- a second time), no longer stored.
CREATE TABLE compacted_events (
  id TEXT COLLATE "C" PRIMARY KEY,
  hive_id TEXT COLLATE "C" NOT NULL
);
CREATE INDEX compacted_events_hive ON compacted_events(hive_id);
