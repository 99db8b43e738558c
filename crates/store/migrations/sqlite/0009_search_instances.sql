-- Post search ranking (store::search::bm25): a read-only view of the posts_fts index, one
-- row per occurrence of a term (term, doc = posts.rowid, col, offset). Ranking a query from
-- it and posts_fts_docsize gives FTS5's bm25() scores without one bm25() call per match.
-- It stores nothing (fts5vocab reads posts_fts's own index).
CREATE VIRTUAL TABLE posts_fts_instances USING fts5vocab(posts_fts, instance);
