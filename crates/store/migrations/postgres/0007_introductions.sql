-- Introductions this instance holds for itself (SQLite's version 10; see there).
CREATE TABLE own_introductions (
  kind TEXT COLLATE "C" NOT NULL,
  issuer TEXT COLLATE "C" NOT NULL,
  body TEXT COLLATE "C" NOT NULL,
  expires_at BIGINT NOT NULL,
  received_at BIGINT NOT NULL,
  PRIMARY KEY (kind, issuer)
);
