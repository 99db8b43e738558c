-- Hive Sync, version 2: per-link counters and the last error of each link.
ALTER TABLE peer_groups ADD COLUMN events_received INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peer_groups ADD COLUMN events_rejected INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peer_groups ADD COLUMN last_error TEXT;
ALTER TABLE peer_groups ADD COLUMN last_sync_at INTEGER;
CREATE INDEX peer_groups_hive ON peer_groups(hive_id);
