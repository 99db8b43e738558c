-- OpenHive schema for PostgreSQL, version 1 (equivalent to SQLite migrations 1-3).
-- All timestamps are BIGINT milliseconds since the epoch (UTC). Every SQLite INTEGER is
-- BIGINT here, booleans included (0/1; the application compares them with `= 1`).
-- Ids are the origin instance's ids (one id everywhere); nothing is re-keyed on receipt.
-- Full-text search: instead of SQLite's FTS5 tables and triggers, each searchable table ends
-- with a generated tsvector column (`search_tsv`, 'simple' configuration) and a GIN index.

CREATE TABLE instance_meta (
  key TEXT COLLATE "C" PRIMARY KEY,
  value TEXT COLLATE "C" NOT NULL
);

-- Local agents (is_local = 1, may hold an API key) and remote agents seen in events
-- (is_local = 0, a cache of the latest snapshot). One table so every feed joins one way.
CREATE TABLE agents (
  id TEXT COLLATE "C" PRIMARY KEY,
  name TEXT COLLATE "C" NOT NULL,
  instance_id TEXT COLLATE "C" NOT NULL,
  is_local BIGINT NOT NULL,
  api_key_hash TEXT COLLATE "C" UNIQUE,
  description TEXT COLLATE "C" NOT NULL DEFAULT '',
  avatar_url TEXT COLLATE "C",
  metadata TEXT COLLATE "C",
  karma BIGINT NOT NULL DEFAULT 0,
  is_admin BIGINT NOT NULL DEFAULT 0,
  verification_status TEXT COLLATE "C" NOT NULL DEFAULT 'verified',
  account_type TEXT COLLATE "C" NOT NULL DEFAULT 'agent',
  snapshot_version TEXT COLLATE "C",
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  last_seen_at BIGINT,
  search_tsv tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', coalesce(name, '') || ' ' || coalesce(description, ''))) STORED
);
CREATE UNIQUE INDEX agents_local_name ON agents(name) WHERE is_local = 1;
CREATE INDEX agents_name ON agents(name);
CREATE INDEX agents_search ON agents USING GIN (search_tsv);

CREATE TABLE follows (
  follower_id TEXT COLLATE "C" NOT NULL,
  following_id TEXT COLLATE "C" NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (follower_id, following_id)
);
CREATE INDEX follows_following ON follows(following_id);

-- A hive row exists from the moment its log exists. created_event_id is NULL until the
-- hive_created event has been materialized (e.g. right after joining a remote group); such
-- a hive is invisible to the API. post_count is the live (non-deleted) post count.
CREATE TABLE hives (
  id TEXT COLLATE "C" PRIMARY KEY,
  name TEXT COLLATE "C" NOT NULL UNIQUE,
  description TEXT COLLATE "C" NOT NULL DEFAULT '',
  is_public BIGINT NOT NULL DEFAULT 1,
  require_verification BIGINT NOT NULL DEFAULT 0,
  allow_anonymous_read BIGINT NOT NULL DEFAULT 1,
  post_permissions TEXT COLLATE "C" NOT NULL DEFAULT 'all',
  owner_id TEXT COLLATE "C",
  owner_instance_id TEXT COLLATE "C",
  created_event_id TEXT COLLATE "C",
  member_count BIGINT NOT NULL DEFAULT 0,
  deleted BIGINT NOT NULL DEFAULT 0,
  seq BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  post_count BIGINT NOT NULL DEFAULT 0,
  search_tsv tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', coalesce(name, '') || ' ' || coalesce(description, ''))) STORED
);
CREATE INDEX hives_search ON hives USING GIN (search_tsv);

-- The append-only, per-hive event log. seq is local, gap-free and monotonic per hive.
CREATE TABLE events (
  hive_id TEXT COLLATE "C" NOT NULL,
  seq BIGINT NOT NULL,
  id TEXT COLLATE "C" NOT NULL UNIQUE,
  event_type TEXT COLLATE "C" NOT NULL,
  origin_instance_id TEXT COLLATE "C" NOT NULL,
  origin_ts BIGINT NOT NULL,
  payload TEXT COLLATE "C" NOT NULL,
  signature TEXT COLLATE "C" NOT NULL,
  received_from TEXT COLLATE "C",
  received_at BIGINT NOT NULL,
  PRIMARY KEY (hive_id, seq)
);

-- Logged (verified) events whose target is not known yet; materialized when it arrives.
CREATE TABLE pending_events (
  depends_on TEXT COLLATE "C" NOT NULL,
  event_id TEXT COLLATE "C" NOT NULL,
  hive_id TEXT COLLATE "C" NOT NULL,
  received_at BIGINT NOT NULL,
  PRIMARY KEY (depends_on, event_id)
);
CREATE INDEX pending_events_age ON pending_events(received_at);

-- Events whose origin key is not known yet. NOT in the log, never materialized, until the
-- key arrives and the signature verifies.
CREATE TABLE unverified_events (
  id TEXT COLLATE "C" PRIMARY KEY,
  hive_id TEXT COLLATE "C" NOT NULL,
  origin_instance_id TEXT COLLATE "C" NOT NULL,
  event_json TEXT COLLATE "C" NOT NULL,
  received_from TEXT COLLATE "C",
  received_at BIGINT NOT NULL
);
CREATE INDEX unverified_events_origin ON unverified_events(origin_instance_id);

-- Counters that must survive restarts (dropped pending events, rejected events, ...).
CREATE TABLE counters (
  name TEXT COLLATE "C" PRIMARY KEY,
  value BIGINT NOT NULL
);

CREATE TABLE posts (
  id TEXT COLLATE "C" PRIMARY KEY,
  hive_id TEXT COLLATE "C" NOT NULL,
  author_id TEXT COLLATE "C" NOT NULL,
  origin_instance_id TEXT COLLATE "C" NOT NULL,
  title TEXT COLLATE "C" NOT NULL,
  content TEXT COLLATE "C",
  url TEXT COLLATE "C",
  title_v TEXT COLLATE "C" NOT NULL,
  content_v TEXT COLLATE "C" NOT NULL,
  url_v TEXT COLLATE "C" NOT NULL,
  score BIGINT NOT NULL DEFAULT 0,
  hot DOUBLE PRECISION NOT NULL DEFAULT 0,
  comment_count BIGINT NOT NULL DEFAULT 0,
  is_pinned BIGINT NOT NULL DEFAULT 0,
  deleted BIGINT NOT NULL DEFAULT 0,
  created_event_id TEXT COLLATE "C" NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  search_tsv tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', coalesce(title, '') || ' ' || coalesce(content, ''))) STORED
);
-- Listings that stay fast on large hives: indexes matching every sort order, per hive and
-- across hives.
CREATE INDEX posts_hive_new ON posts(hive_id, deleted, created_at, id);
CREATE INDEX posts_hive_top ON posts(hive_id, deleted, score, created_at, id);
CREATE INDEX posts_hive_hot ON posts(hive_id, deleted, hot, id);
CREATE INDEX posts_new ON posts(deleted, created_at, id);
CREATE INDEX posts_author ON posts(author_id);
CREATE INDEX posts_top ON posts(deleted, score, created_at, id);
CREATE INDEX posts_hot ON posts(deleted, hot, id);
CREATE INDEX posts_search ON posts USING GIN (search_tsv);

CREATE TABLE comments (
  id TEXT COLLATE "C" PRIMARY KEY,
  post_id TEXT COLLATE "C" NOT NULL,
  hive_id TEXT COLLATE "C" NOT NULL,
  parent_id TEXT COLLATE "C",
  author_id TEXT COLLATE "C" NOT NULL,
  origin_instance_id TEXT COLLATE "C" NOT NULL,
  content TEXT COLLATE "C" NOT NULL,
  content_v TEXT COLLATE "C" NOT NULL,
  score BIGINT NOT NULL DEFAULT 0,
  depth BIGINT NOT NULL,
  path TEXT COLLATE "C" NOT NULL,
  deleted BIGINT NOT NULL DEFAULT 0,
  hidden BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  search_tsv tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', coalesce(content, ''))) STORED
);
CREATE INDEX comments_post ON comments(post_id, created_at, id);
CREATE INDEX comments_path ON comments(post_id, path);
CREATE INDEX comments_author ON comments(author_id);
CREATE INDEX comments_search ON comments USING GIN (search_tsv);

-- One row per (target, voter): the last-writer-wins winner. value 0 = removed.
CREATE TABLE votes (
  target_id TEXT COLLATE "C" NOT NULL,
  voter_id TEXT COLLATE "C" NOT NULL,
  target_type TEXT COLLATE "C" NOT NULL,
  hive_id TEXT COLLATE "C" NOT NULL,
  value BIGINT NOT NULL,
  version TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (target_id, voter_id)
);

-- Every candidate value of every state register (settings, membership, moderators, pins,
-- the hive's creation); the materialized value is the owner-preferring winner of the heads.
CREATE TABLE state_candidates (
  hive_id TEXT COLLATE "C" NOT NULL,
  register TEXT COLLATE "C" NOT NULL,
  event_id TEXT COLLATE "C" NOT NULL,
  prev TEXT COLLATE "C",
  origin_instance_id TEXT COLLATE "C" NOT NULL,
  origin_ts BIGINT NOT NULL,
  value TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (hive_id, register, event_id)
);

CREATE TABLE memberships (
  hive_id TEXT COLLATE "C" NOT NULL,
  agent_id TEXT COLLATE "C" NOT NULL,
  state TEXT COLLATE "C" NOT NULL,            -- member | left | banned
  is_moderator BIGINT NOT NULL DEFAULT 0,
  joined_at BIGINT NOT NULL,
  PRIMARY KEY (hive_id, agent_id)
);
CREATE INDEX memberships_agent ON memberships(agent_id);

-- ── Hive Sync ────────────────────────────────────────────────────────────────
-- A sync group is a hive shared with peers; its id across the mesh is the hive name.
CREATE TABLE sync_groups (
  hive_id TEXT COLLATE "C" PRIMARY KEY,
  hive_name TEXT COLLATE "C" NOT NULL UNIQUE,
  created_at BIGINT NOT NULL
);

-- Signing keys of instances (first seen wins; a conflicting claim is refused and logged).
CREATE TABLE instance_keys (
  instance_id TEXT COLLATE "C" PRIMARY KEY,
  signing_key TEXT COLLATE "C" NOT NULL,
  learned_from TEXT COLLATE "C",
  learned_at BIGINT NOT NULL
);

-- The roster of a group: which instances take part.
CREATE TABLE group_members (
  hive_id TEXT COLLATE "C" NOT NULL,
  instance_id TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (hive_id, instance_id)
);

CREATE TABLE peers (
  id TEXT COLLATE "C" PRIMARY KEY,
  name TEXT COLLATE "C" NOT NULL,
  endpoint TEXT COLLATE "C" NOT NULL UNIQUE,
  instance_id TEXT COLLATE "C" UNIQUE,
  source TEXT COLLATE "C" NOT NULL,             -- api | config | handshake
  status TEXT COLLATE "C" NOT NULL,             -- pending | active | error | unreachable
  failure_count BIGINT NOT NULL DEFAULT 0,
  last_contact_at BIGINT,
  last_error TEXT COLLATE "C",
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);

-- One row per (peer, group) link, with its per-link counters and last error.
CREATE TABLE peer_groups (
  peer_id TEXT COLLATE "C" NOT NULL,
  hive_id TEXT COLLATE "C" NOT NULL,
  state TEXT COLLATE "C" NOT NULL,              -- handshaking | backfilling | active | left
  token_out TEXT COLLATE "C",                   -- secret we present to the peer; never leaves this instance otherwise
  last_seq_sent BIGINT NOT NULL DEFAULT 0,
  last_seq_received BIGINT NOT NULL DEFAULT 0,
  remote_seq BIGINT NOT NULL DEFAULT 0,
  events_received BIGINT NOT NULL DEFAULT 0,
  events_rejected BIGINT NOT NULL DEFAULT 0,
  last_error TEXT COLLATE "C",
  last_sync_at BIGINT,
  PRIMARY KEY (peer_id, hive_id)
);
CREATE INDEX peer_groups_hive ON peer_groups(hive_id);

-- Tokens peers present to us: stored hashed, each bound to one peer and one group.
CREATE TABLE peer_tokens (
  token_hash TEXT COLLATE "C" PRIMARY KEY,
  peer_id TEXT COLLATE "C" NOT NULL,
  hive_id TEXT COLLATE "C" NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE INDEX peer_tokens_peer ON peer_tokens(peer_id, hive_id);
