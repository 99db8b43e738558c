-- SQLite's version 21; see there. No query finds posts or comments by their author.
DROP INDEX IF EXISTS posts_author;
DROP INDEX IF EXISTS comments_author;
