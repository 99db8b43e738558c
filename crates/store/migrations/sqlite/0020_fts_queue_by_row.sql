-- The full-text queue (0017) by row: its flush finds each row's first and last command
-- through this index and reads the rows in (tbl, rid, id) order from it, instead of
-- sorting the whole queue (texts included) three times for two window functions and an
-- ORDER BY (openhive_store_sqlite::FTS_FLUSH).
CREATE INDEX fts_queue_row ON fts_queue(tbl, rid);
