-- Post search keeps every post's indexed length (its posts_fts_docsize record, in tokens) in
-- memory, as a search engine keeps its norms (store::search::post_lengths). It learns new
-- posts from the rowids above the ones it holds; this table tells it which lengths it holds
-- may have changed: the rowid of every post whose index entry was deleted (an edit of its
-- title or content, or the row's deletion), queued in the same transaction as the change.
-- Only the last 1000 are kept; a cache further behind reloads every length.
CREATE TABLE posts_fts_changes (
  seq INTEGER PRIMARY KEY,
  rid INTEGER NOT NULL
);

CREATE TRIGGER posts_fts_changes_ai AFTER INSERT ON fts_queue
WHEN new.tbl = 1 AND new.cmd = 'delete' BEGIN
  INSERT INTO posts_fts_changes (rid) VALUES (new.rid);
  DELETE FROM posts_fts_changes
   WHERE seq <= (SELECT max(seq) FROM posts_fts_changes) - 1000;
END;
