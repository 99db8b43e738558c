-- Peer gossip (SQLite's version 14; see there).
ALTER TABLE peers ADD COLUMN gossip_ttl BIGINT NOT NULL DEFAULT 0;
ALTER TABLE peers ADD COLUMN discovered_via TEXT COLLATE "C";
