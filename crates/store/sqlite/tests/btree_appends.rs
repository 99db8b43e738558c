//! The bundled SQLite carries one patch (vendor/libsqlite3-sys/OPENHIVE.md): an index page
//! that overflows because a key was appended after all of its keys, as the rightmost child
//! of its parent, is balanced as a sorted CREATE INDEX load is, leaving the pages behind it
//! packed. These tests fail on a stock SQLite (the first) or on a patch that breaks the
//! b-tree (the others: `PRAGMA integrity_check` after appends, interleaved ranges, deletes
//! and random inserts).

use rusqlite::{Connection, params};

/// Rows per transaction: what the origin's group commit holds with 16 writers.
const PER_COMMIT: usize = 8;

fn key(i: usize) -> String {
    // Sorts as `i` does; ~40 bytes, like a feed index's (created_at, id) pair.
    format!("{i:012}-01JZ8Q3M4ZRW5T6Y7U8I9O0P")
}

fn page_count(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row("PRAGMA page_count", [], |r| r.get(0))
}

fn integrity(c: &Connection) -> rusqlite::Result<String> {
    c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
}

fn insert_in_commits(
    c: &mut Connection,
    keys: impl IntoIterator<Item = String>,
) -> rusqlite::Result<()> {
    let keys: Vec<String> = keys.into_iter().collect();
    for chunk in keys.chunks(PER_COMMIT) {
        let tx = c.transaction()?;
        {
            let mut st = tx.prepare_cached("INSERT INTO t(k) VALUES (?1)")?;
            for k in chunk {
                st.execute(params![k])?;
            }
        }
        tx.commit()?;
    }
    Ok(())
}

/// Keys appended in order, a few per commit, leave the index as packed as CREATE INDEX
/// builds it from the same rows. Stock SQLite spreads the last three leaves evenly at each
/// overflow, so the same index takes more pages (510 against 449 here without the patch)
/// and most commits rewrite three leaves and their parent instead of one leaf.
#[test]
fn an_index_growing_at_its_right_edge_stays_packed() -> rusqlite::Result<()> {
    const ROWS: usize = 40_000;
    let mut appended = Connection::open_in_memory()?;
    appended.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT); CREATE INDEX tk ON t(k);",
    )?;
    insert_in_commits(&mut appended, (0..ROWS).map(key))?;

    let mut built = Connection::open_in_memory()?;
    built.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT);")?;
    insert_in_commits(&mut built, (0..ROWS).map(key))?;
    let table = page_count(&built)?;
    built.execute_batch("CREATE INDEX tk ON t(k);")?;

    // The table's pages are the same in both (rowid appends are packed by SQLite itself).
    let (a, b) = (page_count(&appended)? - table, page_count(&built)? - table);
    eprintln!("index pages: appended {a}, built by CREATE INDEX {b}");
    assert!(
        a * 100 <= b * 103,
        "appended index: {a} pages, built by CREATE INDEX: {b}"
    );
    assert_eq!(integrity(&appended)?, "ok");
    Ok(())
}

/// Appends at the end of several key ranges at once (a feed index's hives), a WITHOUT ROWID
/// table growing at its right edge (the log), deletions and random inserts into the packed
/// pages afterwards: the b-trees stay valid and hold exactly the rows written.
#[test]
fn packed_pages_stay_valid_under_interleaved_appends_deletes_and_random_inserts()
-> rusqlite::Result<()> {
    let mut c = Connection::open_in_memory()?;
    c.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT); CREATE INDEX tk ON t(k);
         CREATE TABLE log(h TEXT, seq INTEGER, body TEXT, PRIMARY KEY (h, seq)) WITHOUT ROWID;",
    )?;
    // Three ranges ("a", "b", "c") appended in turn: only the last one is at the right edge.
    let ranged = (0..30_000).map(|i| format!("{}{}", ["a", "b", "c"][i % 3], key(i)));
    insert_in_commits(&mut c, ranged)?;
    for commit in 0..3_000 {
        let tx = c.transaction()?;
        for j in 0..PER_COMMIT {
            let seq = (commit * PER_COMMIT + j) as i64;
            tx.execute(
                "INSERT INTO log(h, seq, body) VALUES ('hive', ?1, ?2)",
                params![seq, "x".repeat(300 + (seq % 7) as usize * 60)],
            )?;
        }
        tx.commit()?;
    }
    // Every fifth row deleted, then keys that land inside the packed pages.
    c.execute("DELETE FROM t WHERE id % 5 = 0", [])?;
    c.execute("DELETE FROM log WHERE seq % 5 = 0", [])?;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let random = (0..10_000).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        format!(
            "{}{}",
            ["a", "b", "c"][(x % 3) as usize],
            key((x % 30_000) as usize)
        )
    });
    insert_in_commits(&mut c, random)?;

    assert_eq!(integrity(&c)?, "ok");
    let count = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0));
    assert_eq!(count("SELECT COUNT(*) FROM t")?, 30_000 - 6_000 + 10_000);
    assert_eq!(
        count("SELECT COUNT(*) FROM t INDEXED BY tk WHERE k > ''")?,
        34_000
    );
    assert_eq!(count("SELECT COUNT(*) FROM log")?, 24_000 - 4_800);
    // The index returns the keys in order.
    let mut st = c.prepare("SELECT k FROM t INDEXED BY tk WHERE k > '' ORDER BY k")?;
    let keys: Vec<String> = st
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    assert!(keys.windows(2).all(|w| w[0] <= w[1]));
    Ok(())
}
