-- Key rotation (SQLite's version 7). An instance's keys form a chain: the first key learned
-- (`instance_keys`, first key wins, unchanged) and then one rotation statement per step,
-- signed by the old key and by the new one. A statement is stored even before its instance's
-- first key is known (bounded); only statements chained from that first key count.
CREATE TABLE key_rotations (
  instance_id TEXT COLLATE "C" NOT NULL,
  old_key TEXT COLLATE "C" NOT NULL,
  new_key TEXT COLLATE "C" NOT NULL,
  rotated_at BIGINT NOT NULL,
  old_signature TEXT COLLATE "C" NOT NULL,
  new_signature TEXT COLLATE "C" NOT NULL,
  learned_from TEXT COLLATE "C",
  learned_at BIGINT NOT NULL,
  PRIMARY KEY (instance_id, old_key)
);
CREATE INDEX key_rotations_new ON key_rotations(instance_id, new_key);
-- Token rotation: a token we issued stops authenticating at `expires_at` (NULL: never).
ALTER TABLE peer_tokens ADD COLUMN expires_at BIGINT;
