//! Post search ranking: the first page of `search::posts` (on SQLite, ranked by
//! `search::bm25` from the FTS5 index) is the first page of the engine's own full ranking
//! (`search::posts_full_rank`: `ORDER BY rank` / `ts_rank` over every match), on a corpus
//! where scores differ by term frequency and post length, with ties, prefixes, several
//! terms, deleted posts and a hive filter. On SQLite the fast scores are also compared, row
//! by row, with what FTS5's `bm25()` gives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod materialize_support;

use materialize_support::*;
use openhive_core::payload::{Payload, PostCreated};
use openhive_store::engine::Engine;
use openhive_store::error::Result;
use openhive_store::{params, search};

const WORDS: &[&str] = &[
    "lorem", "ipsum", "dolor", "honey", "amet", "comb", "wax", "bee", "queen", "drone",
];

/// A small deterministic generator (no dependency, same corpus on every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// 240 posts: "hive" in about a third (1-3 times, sometimes upper case, sometimes as
/// "hivemind" for the prefix), "honey" in about half, lengths from 2 to 40 words; every
/// tenth post deleted.
fn corpus(w: &World, r: &Replica) -> Vec<String> {
    let mut rng = Lcg(42);
    let mut events = vec![w.created(0, 1)];
    let mut ids = Vec::new();
    for i in 0..240i64 {
        let len = 2 + rng.next(39) as usize;
        let mut body: Vec<String> = (0..len)
            .map(|_| WORDS[rng.next(WORDS.len() as u64) as usize].to_string())
            .collect();
        if rng.next(3) == 0 {
            for _ in 0..=rng.next(3) {
                let word = match rng.next(4) {
                    0 => "HIVE",
                    1 => "hivemind",
                    _ => "hive",
                };
                let at = rng.next(body.len() as u64 + 1) as usize;
                body.insert(at, word.into());
            }
        }
        let split = rng.next(body.len() as u64) as usize;
        let title = format!("post {i} {}", body[..split].join(" "));
        let content = body[split..].join(" ");
        let id = openhive_core::ids::new_id(openhive_core::ids::Kind::Post, &w.insts[0].id);
        events.push(w.sign(
            0,
            10 + i,
            Payload::PostCreated(PostCreated {
                post_id: id.clone(),
                title,
                content: Some(content),
                url: None,
                author: w.agent(0, (i % 2) as usize),
            }),
        ));
        if i % 10 == 3 {
            events.push(w.delete_post(0, (i % 2) as usize, 1000 + i, &id));
        }
        ids.push(id);
    }
    r.deliver_ok(&events);
    ids
}

type Page = (Vec<String>, i64);

fn pages(r: &Replica, q: &str, hive: Option<&str>, limit: i64) -> (Page, Page) {
    let (q, hive) = (q.to_string(), hive.map(str::to_string));
    r.store
        .read_blocking(move |c| -> Result<(Page, Page)> {
            let ids = |(rows, total): (Vec<openhive_store::posts::PostRow>, i64)| {
                (rows.into_iter().map(|p| p.id).collect::<Vec<_>>(), total)
            };
            Ok((
                ids(search::posts(c, &q, None, hive.as_deref(), limit)?),
                ids(search::posts_full_rank(
                    c,
                    &q,
                    None,
                    hive.as_deref(),
                    limit,
                )?),
            ))
        })
        .unwrap()
}

#[test]
fn first_page_equals_full_bm25() {
    let w = World::new();
    let r = w.replica();
    corpus(&w, &r);
    let mut compared = 0;
    for q in [
        "hive",
        "HIVE",
        "hiv",
        "hivemind",
        "honey",
        "hive honey",
        "honey hive",
        "comb wax hive",
        "hive hive",
        "post",
        "1",
        "zzz",
        "bee-keeping",
        "café",
    ] {
        for limit in [1, 7, 20, 100] {
            let (fast, full) = pages(&r, q, None, limit);
            assert_eq!(fast, full, "q={q} limit={limit}");
            compared += fast.0.len();
        }
    }
    // The comparison is not vacuous: common queries fill their pages.
    let ((page, total), _) = pages(&r, "hive", None, 20);
    assert_eq!(page.len(), 20);
    assert!(total > 20, "{total}");
    assert!(compared > 500, "{compared}");

    let hive_id = r.hive_id.clone();
    let (fast, full) = pages(&r, "hive", Some(&hive_id), 20);
    assert_eq!(fast, full);
    assert_eq!(fast.0.len(), 20);
    let (fast, full) = pages(&r, "hive", Some("hive_elsewhere"), 20);
    assert_eq!(fast, full);
    assert!(fast.0.is_empty());
}

/// SQLite only: `bm25::rank_posts` gives every matching row FTS5's own `bm25()` score,
/// exactly, in `ORDER BY rank, rowid DESC` order (deleted posts included: they stay in the
/// index, and the page filter drops them).
#[test]
fn fast_scores_are_fts5_bm25_scores() {
    let w = World::new();
    let r = w.replica();
    if r.store.engine() != Engine::Sqlite {
        return;
    }
    corpus(&w, &r);
    for q in [
        "hive",
        "hiv",
        "honey",
        "hive honey",
        "comb wax hive",
        "hive hive",
        "zzz",
    ] {
        let q = q.to_string();
        let (fast, fts5) = r
            .store
            .read_blocking(move |c| -> Result<_> {
                let terms = search::bm25::plain_terms(&q).unwrap();
                let fast = search::bm25::rank_posts(c, &terms)?;
                let fts5: Vec<(f64, i64)> = c
                    .prepare(
                        "SELECT bm25(posts_fts), rowid FROM posts_fts WHERE posts_fts MATCH ?1
                         ORDER BY rank, rowid DESC",
                    )?
                    .query_map(params![search::fts_query(&q).unwrap()], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect::<std::result::Result<_, _>>()?;
                Ok((fast, fts5))
            })
            .unwrap();
        assert_eq!(fast, fts5, "{}", fast.len());
    }
}
