-- Introductions this instance holds for itself (docs/PROTOCOL-sync.md, "Introductions"):
-- statements by a MAP hub or by a peer sharing a hive that vouch for *this* instance, which
-- it presents in handshakes with instances that did not configure it. One per issuer and
-- kind (a newer one replaces the older); `body` is the signed statement as JSON.
CREATE TABLE own_introductions (
  kind TEXT NOT NULL,
  issuer TEXT NOT NULL,
  body TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  PRIMARY KEY (kind, issuer)
);
