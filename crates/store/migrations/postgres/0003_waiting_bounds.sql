-- Waiting queues (SQLite's version 5): the queues are bounded per delivering peer and in
-- total, and counted per hive (`ingest::park_unverified`, `ingest::waiting_counts_for`);
-- these indexes keep those counts cheap.
CREATE INDEX unverified_events_from ON unverified_events(received_from);
CREATE INDEX unverified_events_hive ON unverified_events(hive_id);
CREATE INDEX pending_events_hive ON pending_events(hive_id);
