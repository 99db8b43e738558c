-- Pattern 1 pull subscriptions: a remote hive polled through its public feed
-- (`/api/v1/feed/all?hive=&since=`) and mirrored into a local read-only hive.
-- The cursor columns move only in the transaction that stores the mirrored posts:
--   since_ms     every remote post created at or before it has been seen (the watermark);
--   pass_*       the pass in progress (newest first, down to the watermark): the remote's
--                keyset cursor or offset of the next page, and the newest created_at seen.
CREATE TABLE hive_sync_subscriptions (
  id TEXT PRIMARY KEY,
  remote_url TEXT NOT NULL,
  remote_hive_name TEXT NOT NULL,
  local_hive_id TEXT NOT NULL UNIQUE,
  sync_interval_ms INTEGER NOT NULL,
  enabled INTEGER NOT NULL,
  since_ms INTEGER,
  pass_cursor TEXT,
  pass_offset INTEGER NOT NULL DEFAULT 0,
  pass_max_ms INTEGER,
  next_poll_at INTEGER NOT NULL,
  last_attempt_at INTEGER,
  last_sync_at INTEGER,
  last_error TEXT,
  failure_count INTEGER NOT NULL DEFAULT 0,
  post_count INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  UNIQUE (remote_url, remote_hive_name)
);
CREATE INDEX hive_sync_subscriptions_due ON hive_sync_subscriptions(enabled, next_poll_at);

-- Local hives that mirror a remote hive: read-only for local writes, never in a sync
-- group. A row outlives its subscription (the mirrored posts stay, still read-only).
CREATE TABLE mirror_hives (
  hive_id TEXT PRIMARY KEY,
  remote_url TEXT NOT NULL,
  remote_hive_name TEXT NOT NULL
);
