-- The MAP hub (SQLite's version 11; see there).
CREATE TABLE map_swarms (
  id TEXT COLLATE "C" PRIMARY KEY,
  name TEXT COLLATE "C" NOT NULL,
  description TEXT COLLATE "C" NOT NULL DEFAULT '',
  instance_id TEXT COLLATE "C" NOT NULL UNIQUE,
  signing_key TEXT COLLATE "C" NOT NULL,
  sync_endpoint TEXT COLLATE "C" NOT NULL UNIQUE,
  map_endpoint TEXT COLLATE "C",
  capabilities TEXT COLLATE "C" NOT NULL,
  token_hash TEXT COLLATE "C" NOT NULL UNIQUE,
  status TEXT COLLATE "C" NOT NULL,
  last_seen_at BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX map_swarms_status ON map_swarms(status, last_seen_at);
CREATE TABLE map_swarm_hives (
  swarm_id TEXT COLLATE "C" NOT NULL REFERENCES map_swarms(id) ON DELETE CASCADE,
  hive_name TEXT COLLATE "C" NOT NULL,
  joined_at BIGINT NOT NULL,
  PRIMARY KEY (swarm_id, hive_name)
);
CREATE INDEX map_swarm_hives_hive ON map_swarm_hives(hive_name);
CREATE TABLE map_preauth_keys (
  id TEXT COLLATE "C" PRIMARY KEY,
  key_hash TEXT COLLATE "C" NOT NULL UNIQUE,
  uses_left BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  last_used_at BIGINT
);
CREATE TABLE map_events (
  id BIGINT PRIMARY KEY,
  kind TEXT COLLATE "C" NOT NULL,
  swarm_id TEXT COLLATE "C" NOT NULL,
  hive_name TEXT COLLATE "C",
  at BIGINT NOT NULL
);
CREATE INDEX map_events_at ON map_events(at);
-- The client side: this instance's registration with a MAP hub ([sync.hub] url). The hub's
-- identity is pinned on first registration (trust on first use); the swarm token is sealed
-- like peer tokens.
CREATE TABLE hub_registration (
  hub_url TEXT COLLATE "C" PRIMARY KEY,
  swarm_id TEXT COLLATE "C" NOT NULL,
  token TEXT COLLATE "C" NOT NULL,
  hub_instance_id TEXT COLLATE "C" NOT NULL,
  hub_key TEXT COLLATE "C" NOT NULL,
  registered_at BIGINT NOT NULL
);
