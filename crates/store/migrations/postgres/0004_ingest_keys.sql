-- Admin-issued scoped API keys (SQLite's version 6): a key acts as one local agent, limited
-- to its scopes. Only the SHA-256 of the key is stored (like agents.api_key_hash).
CREATE TABLE ingest_keys (
  id TEXT COLLATE "C" PRIMARY KEY,
  key_hash TEXT COLLATE "C" NOT NULL UNIQUE,
  key_prefix TEXT COLLATE "C" NOT NULL,
  label TEXT COLLATE "C" NOT NULL,
  agent_id TEXT COLLATE "C" NOT NULL,
  scopes TEXT COLLATE "C" NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT,
  revoked_at BIGINT
);
CREATE INDEX ingest_keys_agent ON ingest_keys(agent_id);
