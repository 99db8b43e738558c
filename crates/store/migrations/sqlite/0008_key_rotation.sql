-- Key rotation (issue 9 item 2). An instance's keys form a chain: the first key learned
-- (`instance_keys`, first key wins, unchanged) and then one rotation statement per step,
-- signed by the old key and by the new one. A statement is stored even before its instance's
-- first key is known (bounded); only statements chained from that first key count.
CREATE TABLE key_rotations (
  instance_id TEXT NOT NULL,
  old_key TEXT NOT NULL,
  new_key TEXT NOT NULL,
  rotated_at INTEGER NOT NULL,
  old_signature TEXT NOT NULL,
  new_signature TEXT NOT NULL,
  learned_from TEXT,
  learned_at INTEGER NOT NULL,
  PRIMARY KEY (instance_id, old_key)
);
CREATE INDEX key_rotations_new ON key_rotations(instance_id, new_key);
-- Token rotation: a token we issued stops authenticating at `expires_at` (NULL: never).
ALTER TABLE peer_tokens ADD COLUMN expires_at INTEGER;
