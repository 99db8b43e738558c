-- Peer gossip (docs/PROTOCOL-sync.md, "Gossip"): for a peer learned from a heartbeat's
-- `known_peers` (source 'gossip'), the hops it may still travel from here (`gossip_ttl`:
-- the TTL it arrived with minus one; 0 = not passed on) and the instance that told us
-- (`discovered_via`: never told back to it, and the issuer whose introduction is presented
-- to it first). Unused (0 / NULL) for peers of other sources.
ALTER TABLE peers ADD COLUMN gossip_ttl INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peers ADD COLUMN discovered_via TEXT;
