-- No query finds posts or comments by their author: every read of `author_id` reads the
-- row found by its id. Yet each index on it cost every post and comment a b-tree leaf of
-- its own per transaction (one per author, wherever that author's range is): 24 % of the
-- WAL frames a transaction of synced posts wrote (docs/PERFORMANCE.md, "Pages per
-- transaction"). An index must have a reader; these had none.
DROP INDEX IF EXISTS posts_author;
DROP INDEX IF EXISTS comments_author;
