-- (SQLite's version 7) Pattern 1 pull subscriptions: a remote hive polled through its public feed
-- (`/api/v1/feed/all?hive=&since=`) and mirrored into a local read-only hive.
-- The cursor columns move only in the transaction that stores the mirrored posts:
--   since_ms     every remote post created at or before it has been seen (the watermark);
--   pass_*       the pass in progress (newest first, down to the watermark): the remote's
--                keyset cursor or offset of the next page, and the newest created_at seen.
CREATE TABLE hive_sync_subscriptions (
  id TEXT COLLATE "C" PRIMARY KEY,
  remote_url TEXT COLLATE "C" NOT NULL,
  remote_hive_name TEXT COLLATE "C" NOT NULL,
  local_hive_id TEXT COLLATE "C" NOT NULL UNIQUE,
  sync_interval_ms BIGINT NOT NULL,
  enabled BIGINT NOT NULL,
  since_ms BIGINT,
  pass_cursor TEXT,
  pass_offset BIGINT NOT NULL DEFAULT 0,
  pass_max_ms BIGINT,
  next_poll_at BIGINT NOT NULL,
  last_attempt_at BIGINT,
  last_sync_at BIGINT,
  last_error TEXT,
  failure_count BIGINT NOT NULL DEFAULT 0,
  post_count BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  UNIQUE (remote_url, remote_hive_name)
);
CREATE INDEX hive_sync_subscriptions_due ON hive_sync_subscriptions(enabled, next_poll_at);

-- Local hives that mirror a remote hive: read-only for local writes, never in a sync
-- group. A row outlives its subscription (the mirrored posts stay, still read-only).
CREATE TABLE mirror_hives (
  hive_id TEXT COLLATE "C" PRIMARY KEY,
  remote_url TEXT COLLATE "C" NOT NULL,
  remote_hive_name TEXT COLLATE "C" NOT NULL
);
