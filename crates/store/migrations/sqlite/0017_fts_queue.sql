-- Full-text index writes are queued and applied once per write transaction, just before
-- its COMMIT (SqliteWriter::before_commit), instead of by the triggers of 0001 as each row
-- changes. FTS5 keeps pending index data in memory and flushes it to a new segment at
-- every savepoint and every statement transaction that follows (the writer runs each job
-- of a batch in a savepoint, and most statements open a statement transaction), so direct
-- triggers turned one batch into dozens of one-row segments and merges.
--
-- tbl: 1 posts (a = title, b = content), 2 comments (a = content), 3 agents (a = name,
-- b = description), 4 hives (a = name, b = description). cmd: 'delete' (with the values
-- the row was indexed with) or NULL (index the row). Applied in id order.
CREATE TABLE fts_queue (
  id INTEGER PRIMARY KEY,
  tbl INTEGER NOT NULL,
  cmd TEXT,
  rid INTEGER NOT NULL,
  a TEXT,
  b TEXT
);

DROP TRIGGER posts_fts_ai;
DROP TRIGGER posts_fts_ad;
DROP TRIGGER posts_fts_au;
DROP TRIGGER comments_fts_ai;
DROP TRIGGER comments_fts_ad;
DROP TRIGGER comments_fts_au;
DROP TRIGGER agents_fts_ai;
DROP TRIGGER agents_fts_ad;
DROP TRIGGER agents_fts_au;
DROP TRIGGER hives_fts_ai;
DROP TRIGGER hives_fts_ad;
DROP TRIGGER hives_fts_au;

CREATE TRIGGER posts_fts_ai AFTER INSERT ON posts BEGIN
  INSERT INTO fts_queue (tbl, cmd, rid, a, b) VALUES (1, NULL, new.rowid, new.title, new.content);
END;
CREATE TRIGGER posts_fts_ad AFTER DELETE ON posts BEGIN
  INSERT INTO fts_queue (tbl, cmd, rid, a, b) VALUES (1, 'delete', old.rowid, old.title, old.content);
END;
CREATE TRIGGER posts_fts_au AFTER UPDATE OF title, content ON posts
WHEN old.title IS NOT new.title OR old.content IS NOT new.content BEGIN
  INSERT INTO fts_queue (tbl, cmd, rid, a, b) VALUES (1, 'delete', old.rowid, old.title, old.content);
  INSERT INTO fts_queue (tbl, cmd, rid, a, b) VALUES (1, NULL, new.rowid, new.title, new.content);
END;

CREATE TRIGGER comments_fts_ai AFTER INSERT ON comments BEGIN
  INSERT INTO fts_queue (tbl, cmd, rid, a) VALUES (2, NULL, new.rowid, new.content);
END;
CREATE TRIGGER comments_fts_ad AFTER DELETE ON comments BEGIN
  INSERT INTO fts_queue (tbl, cmd, rid, a) VALUES (2, 'delete', old.rowid, old.content);
END;
CREATE TRIGGER comments_fts_au AFTER UPDATE OF content ON comments
WHEN old.content IS NOT new.content BEGIN
  INSERT INTO fts_queue (tbl, cmd, rid, a) VALUES (2, 'delete', old.rowid, old.content);
  INSERT INTO fts_queue (tbl, cmd, rid, a) VALUES (2, NULL, new.rowid, new.content);
END;

CREATE TRIGGER agents_fts_ai AFTER INSERT ON agents BEGIN
  INSERT INTO fts_queue (tbl, cmd, rid, a, b) VALUES (3, NULL, new.rowid, new.name, new.description);
END;
CREATE TRIGGER agents_fts_ad AFTER DELETE ON agents BEGIN
  INSERT INTO fts_queue (tbl, cmd, rid, a, b) VALUES (3, 'delete', old.rowid, old.name, old.description);
END;
CREATE TRIGGER agents_fts_au AFTER UPDATE OF name, description ON agents
WHEN old.name IS NOT new.name OR old.description IS NOT new.description BEGIN
  INSERT INTO fts_queue (tbl, cmd, rid, a, b) VALUES (3, 'delete', old.rowid, old.name, old.description);
  INSERT INTO fts_queue (tbl, cmd, rid, a, b) VALUES (3, NULL, new.rowid, new.name, new.description);
END;

CREATE TRIGGER hives_fts_ai AFTER INSERT ON hives BEGIN
  INSERT INTO fts_queue (tbl, cmd, rid, a, b) VALUES (4, NULL, new.rowid, new.name, new.description);
END;
CREATE TRIGGER hives_fts_ad AFTER DELETE ON hives BEGIN
  INSERT INTO fts_queue (tbl, cmd, rid, a, b) VALUES (4, 'delete', old.rowid, old.name, old.description);
END;
CREATE TRIGGER hives_fts_au AFTER UPDATE OF name, description ON hives
WHEN old.name IS NOT new.name OR old.description IS NOT new.description BEGIN
  INSERT INTO fts_queue (tbl, cmd, rid, a, b) VALUES (4, 'delete', old.rowid, old.name, old.description);
  INSERT INTO fts_queue (tbl, cmd, rid, a, b) VALUES (4, NULL, new.rowid, new.name, new.description);
END;
