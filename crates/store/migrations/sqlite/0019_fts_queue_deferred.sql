-- The full-text queue (0017) is no longer applied at every commit: it waits until it holds
-- enough rows, or until a search asks for it (openhive_store_sqlite::FTS_QUEUE_ROWS,
-- Store::read_search). A queued `delete` therefore no longer changes a post's indexed
-- length when it is queued: the flush that applies it records the rowid in
-- posts_fts_changes (0018), so the post-length cache never reads a length the index is
-- about to change.
DROP TRIGGER posts_fts_changes_ai;
