-- Owner succession (SQLite's version 13; docs/PROTOCOL.md, "Owner succession"). The hive
-- setting owner_succession_secs (its projected value; the base when no event set it is the
-- protocol default, 30 days) and the instance that decides owner-preferring conflicts now.
ALTER TABLE hives ADD COLUMN owner_succession_secs BIGINT NOT NULL DEFAULT 2592000;
ALTER TABLE hives ADD COLUMN deciding_instance_id TEXT COLLATE "C";
-- Per hive and origin instance, the newest origin_ts among the hive's logged events.
CREATE TABLE hive_instance_activity (
  hive_id TEXT COLLATE "C" NOT NULL,
  instance_id TEXT COLLATE "C" NOT NULL,
  last_ts BIGINT NOT NULL,
  PRIMARY KEY (hive_id, instance_id)
);
INSERT INTO hive_instance_activity (hive_id, instance_id, last_ts)
  SELECT hive_id, origin_instance_id, MAX(origin_ts) FROM events
  GROUP BY hive_id, origin_instance_id;
UPDATE hives SET deciding_instance_id = owner_instance_id;
