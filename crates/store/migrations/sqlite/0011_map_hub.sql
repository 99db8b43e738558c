-- The MAP hub (issue 8; docs/PROTOCOL-sync.md, "MAP hub"): swarms (instances registered with
-- this hub), the hive names each advertises, preauth keys (hash only) and the join/leave
-- events the swarms follow. The hub never stores hive content: hives here are names only.
CREATE TABLE map_swarms (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  instance_id TEXT NOT NULL UNIQUE,
  signing_key TEXT NOT NULL,
  sync_endpoint TEXT NOT NULL UNIQUE,
  map_endpoint TEXT,
  capabilities TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL,
  last_seen_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX map_swarms_status ON map_swarms(status, last_seen_at);
CREATE TABLE map_swarm_hives (
  swarm_id TEXT NOT NULL REFERENCES map_swarms(id) ON DELETE CASCADE,
  hive_name TEXT NOT NULL,
  joined_at INTEGER NOT NULL,
  PRIMARY KEY (swarm_id, hive_name)
);
CREATE INDEX map_swarm_hives_hive ON map_swarm_hives(hive_name);
CREATE TABLE map_preauth_keys (
  id TEXT PRIMARY KEY,
  key_hash TEXT NOT NULL UNIQUE,
  uses_left INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  last_used_at INTEGER
);
CREATE TABLE map_events (
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  swarm_id TEXT NOT NULL,
  hive_name TEXT,
  at INTEGER NOT NULL
);
CREATE INDEX map_events_at ON map_events(at);
-- The client side: this instance's registration with a MAP hub ([sync.hub] url). The hub's
-- identity is pinned on first registration (trust on first use); the swarm token is sealed
-- like peer tokens.
CREATE TABLE hub_registration (
  hub_url TEXT PRIMARY KEY,
  swarm_id TEXT NOT NULL,
  token TEXT NOT NULL,
  hub_instance_id TEXT NOT NULL,
  hub_key TEXT NOT NULL,
  registered_at INTEGER NOT NULL
);
