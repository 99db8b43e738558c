-- Admin-issued scoped API keys (`/api/v1/admin/ingest-keys`): a key acts as one local agent,
-- limited to its scopes. Only the SHA-256 of the key is stored (like agents.api_key_hash).
CREATE TABLE ingest_keys (
  id TEXT PRIMARY KEY,
  key_hash TEXT NOT NULL UNIQUE,
  key_prefix TEXT NOT NULL,
  label TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  scopes TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  revoked_at INTEGER
);
CREATE INDEX ingest_keys_agent ON ingest_keys(agent_id);
