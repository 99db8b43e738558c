//! SQLite's `bm25()` ranking of posts, computed here from FTS5's own index instead of by
//! FTS5 for every match: the same scores, bit for bit, at a fraction of the cost.
//!
//! Why: `ORDER BY rank` makes FTS5 call `bm25()` once per matching row, and each call reads
//! the row's instance list and its `%_docsize` record through a statement of its own. A term
//! in 12% of 100k posts is 12k calls before the first row comes out. Here each query term
//! costs one scan of its doclist through the `posts_fts_instances` vocabulary table (one row
//! per occurrence); the rows' lengths come from [`post_lengths`] (held in memory: reading
//! each matching row's `%_docsize` record was half the time of a common-term search); the
//! formula then runs in Rust.
//!
//! Exactness: the formula, its constants and the order of its floating-point operations are
//! those of `fts5Bm25Function` / `fts5Bm25GetData` (SQLite 3.53, `ext/fts5/fts5_aux.c`):
//!
//! ```text
//! avgdl  = total tokens / rows                       (the %_data "averages" record)
//! idf_i  = ln((rows - nHit_i + 0.5) / (nHit_i + 0.5)), at least 1e-6
//! rank   = -Σ_i idf_i · f_i·(k1+1) / (f_i + k1·(1 - b + b·D/avgdl)),  k1 = 1.2, b = 0.75
//! ```
//!
//! where `f_i` is the number of occurrences of query term `i` in the row (all columns,
//! weight 1), `nHit_i` the number of rows containing it and `D` the row's token count.
//! Only queries whose terms are plain ASCII letters and digits take this path: each is then
//! exactly one token for the `unicode61` tokenizer (which folds ASCII case as
//! `to_ascii_lowercase` does), and FTS5's `"term"*` matches exactly the tokens in
//! `[term, next(term))`. Anything else (accents, `-`, `_`, other scripts: FTS5 may split or
//! fold those) is left to FTS5 itself (`None`).
//!
//! It reads two of FTS5's shadow tables (`%_data` row 1 and `%_docsize`): their format is
//! part of FTS5's on-disk format, which SQLite keeps compatible. The
//! `first_page_equals_full_bm25` tests compare this ranking with FTS5's on every run.

use super::fts5_record::{corrupt, sum_varints, varint};
use super::post_lengths;
use crate::engine::{Conn, OptionalExtension};
use crate::error::Result;
use crate::params;

const K1: f64 = 1.2;
const B: f64 = 0.75;

/// The query's terms if every one is a plain ASCII word (lowercased), else `None`.
pub fn plain_terms(q: &str) -> Option<Vec<String>> {
    let terms: Vec<String> = super::terms(q).collect();
    if terms.is_empty()
        || !terms
            .iter()
            .all(|t| t.bytes().all(|c| c.is_ascii_alphanumeric()))
    {
        return None;
    }
    Some(terms.iter().map(|t| t.to_ascii_lowercase()).collect())
}

/// The smallest string above every string that starts with `term` (ASCII alphanumerics):
/// the last byte plus one (`'9'` → `':'`, `'z'` → `'{'`), so `[term, upper)` is the prefix.
fn upper(term: &str) -> String {
    let mut b = term.as_bytes().to_vec();
    if let Some(last) = b.last_mut() {
        *last += 1;
    }
    // Plain ASCII in, plain ASCII out.
    String::from_utf8_lossy(&b).into_owned()
}

/// `(rowid, occurrences)` of the prefix `term` in `posts_fts`, by rowid.
fn occurrences(conn: &Conn<'_>, term: &str) -> Result<Vec<(i64, u32)>> {
    let mut docs: Vec<i64> = conn
        .prepare_cached("SELECT doc FROM posts_fts_instances WHERE term >= ?1 AND term < ?2")?
        .query_map(params![term, upper(term)], |r| r.get::<_, i64>(0))?
        .collect::<std::result::Result<_, _>>()?;
    // A row's occurrences of one token come together, by rowid; of several tokens (a
    // prefix), one run per token.
    docs.sort_unstable();
    let mut out: Vec<(i64, u32)> = Vec::new();
    for d in docs {
        match out.last_mut() {
            Some((doc, n)) if *doc == d => *n += 1,
            _ => out.push((d, 1)),
        }
    }
    Ok(out)
}

/// Every row of `posts_fts` matching all of `terms` (each a prefix), as `(rank, rowid)`,
/// best first: `rank` is what FTS5's `rank` / `bm25(posts_fts)` gives the row for the query
/// `"t1"* "t2"* …`; ties by rowid, newest first.
pub fn rank_posts(conn: &Conn<'_>, terms: &[String]) -> Result<Vec<(f64, i64)>> {
    let averages: Option<Vec<u8>> = conn
        .prepare_cached("SELECT block FROM posts_fts_data WHERE id = 1")?
        .query_row(params![], |r| r.get(0))
        .optional()?;
    let Some(averages) = averages else {
        return Ok(Vec::new()); // an empty index
    };
    let mut at = 0;
    let rows = varint(&averages, &mut at)
        .and_then(|n| i64::try_from(n).ok())
        .ok_or_else(|| corrupt("averages"))?;
    let tokens = sum_varints(&averages, at).ok_or_else(|| corrupt("averages"))?;
    if rows <= 0 {
        return Ok(Vec::new());
    }
    let avgdl = tokens as f64 / rows as f64;

    let mut per_term: Vec<Vec<(i64, u32)>> = Vec::with_capacity(terms.len());
    for t in terms {
        let occ = occurrences(conn, t)?;
        if occ.is_empty() {
            return Ok(Vec::new());
        }
        per_term.push(occ);
    }
    let idf: Vec<f64> = per_term
        .iter()
        .map(|occ| {
            let hits = occ.len() as i64;
            let idf = (((rows - hits) as f64 + 0.5) / (hits as f64 + 0.5)).ln();
            if idf <= 0.0 { 1e-6 } else { idf }
        })
        .collect();

    // Rows holding every term, with each term's occurrences: walk the first term's rows,
    // advancing a cursor in the others (all sorted by rowid).
    let mut cursors = vec![0usize; per_term.len()];
    let mut docs: Vec<i64> = Vec::new();
    let mut freqs: Vec<f64> = Vec::new();
    'rows: for &(doc, n) in &per_term[0] {
        let at = freqs.len();
        freqs.push(f64::from(n));
        for (i, occ) in per_term.iter().enumerate().skip(1) {
            let c = &mut cursors[i];
            while *c < occ.len() && occ[*c].0 < doc {
                *c += 1;
            }
            match occ.get(*c) {
                Some(&(d, n)) if d == doc => freqs.push(f64::from(n)),
                _ => {
                    freqs.truncate(at);
                    continue 'rows;
                }
            }
        }
        docs.push(doc);
    }
    let lengths = match post_lengths::lengths(conn, &docs)? {
        Some(l) => l,
        None => post_lengths::from_index(conn, &docs)?,
    };

    let mut out: Vec<(f64, i64)> = docs
        .iter()
        .zip(&lengths)
        .zip(freqs.chunks_exact(terms.len()))
        .map(|((&doc, &d), f)| {
            let d = d as f64;
            let mut score = 0.0;
            for (f, idf) in f.iter().zip(&idf) {
                score += idf * ((f * (K1 + 1.0)) / (f + K1 * (1.0 - B + B * d / avgdl)));
            }
            (-score, doc) // FTS5: `-1.0 * score`, the same bits
        })
        .collect();
    out.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ascii_words_take_this_path() {
        assert_eq!(
            plain_terms("Hive  bees42"),
            Some(vec!["hive".into(), "bees42".into()])
        );
        assert_eq!(plain_terms("café"), None);
        assert_eq!(plain_terms("a-b"), None);
        assert_eq!(plain_terms("snake_case"), None);
        assert_eq!(plain_terms(" \"*() "), None);
        assert_eq!(upper("hive"), "hivf");
        assert_eq!(upper("a9"), "a:");
    }
}
