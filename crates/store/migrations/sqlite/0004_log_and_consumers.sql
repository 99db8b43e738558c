-- The log and its readers, version 4.
-- The per-hive seq belongs to the log, not to the `hives` read model: `hive_logs` is the
-- header of each hive's log (its last assigned seq); `events` stays the body.
CREATE TABLE hive_logs (
  hive_id TEXT PRIMARY KEY,
  head_seq INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO hive_logs (hive_id, head_seq) SELECT id, seq FROM hives;
ALTER TABLE hives DROP COLUMN seq;

-- Readers of a hive's log: a consumer is (id, hive, cursor, typed state). A peer link's
-- outbox is one kind (`peer_link`, id `peer:<peer id>`); pull subscriptions and federation
-- delivery are others. `cursor_seq` is the last seq the consumer has durably taken (never
-- beyond the log's head); the lowest cursor of live consumers is the hive's low-water mark.
CREATE TABLE consumers (
  id TEXT NOT NULL,
  hive_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  cursor_seq INTEGER NOT NULL DEFAULT 0,
  live INTEGER NOT NULL DEFAULT 1,
  state TEXT,
  updated_at INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (id, hive_id)
) WITHOUT ROWID;
CREATE INDEX consumers_hive ON consumers(hive_id, live, cursor_seq);
INSERT INTO consumers (id, hive_id, kind, cursor_seq, live, updated_at)
  SELECT 'peer:' || peer_id, hive_id, 'peer_link', last_seq_sent,
         CASE WHEN state = 'left' THEN 0 ELSE 1 END, 0
  FROM peer_groups;
ALTER TABLE peer_groups DROP COLUMN last_seq_sent;
