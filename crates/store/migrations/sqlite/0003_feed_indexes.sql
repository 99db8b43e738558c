-- Listings that stay fast on large hives (measured by benches/api_bench.rs):
-- indexes matching every sort order, per hive and across hives, and a live post count
-- per hive so a page does not count 100k rows.
DROP INDEX posts_hive_top;
CREATE INDEX posts_hive_top ON posts(hive_id, deleted, score, created_at, id);
CREATE INDEX posts_top ON posts(deleted, score, created_at, id);
CREATE INDEX posts_hot ON posts(deleted, hot, id);
ALTER TABLE hives ADD COLUMN post_count INTEGER NOT NULL DEFAULT 0;
UPDATE hives SET post_count = (SELECT COUNT(*) FROM posts p WHERE p.hive_id = hives.id AND p.deleted = 0);
