//! Where the floor of a write is (issue 11): the CPU one post costs at each layer of the
//! origin's path, measured in one run.
//!
//! Run: `cargo bench -p openhive --bench write_floor_bench`
//! (`OPENHIVE_BENCH_FLOOR_POSTS=20000` sets the posts per layer; `OPENHIVE_BENCH_FLOOR_BATCH=16`
//! the posts per write job of the `rows` and `ingest` layers.)
//!
//! The layers, each a number of posts into a hive of one server (SQLite, in-process):
//! - `sign`: `Event::sign_new` of a post as the load generator writes it, on one thread.
//! - `rows:log`, `rows:row`, `rows`: the fewest statements that store a signed post, in jobs
//!   of `BATCH` posts, one transaction each, durable at the commit (WAL,
//!   `synchronous=NORMAL`, as served): the log's head (read once and written once per
//!   transaction, as a page of remote events moves it) and the event's row; then also
//!   the post's row (with its feed indexes) and the hive's post count (added once per
//!   transaction), without a full-text entry (the queue's trigger dropped for the layer);
//!   then with it (the queue applied as the writer applies it).
//! - `ingest`: signed events through `ingest::ingest` (the log append with its duplicate
//!   check, then the materializer), jobs of `BATCH` posts.
//! - `service`: `HiveService::create_post` from 16 tasks (validation, sign, ingest, the
//!   answer built, fan-out after the commit, the writer's group commit): the API's write path
//!   without HTTP.
//! - `health` and `http`: `GET /health` (the HTTP exchange alone) and `POST /api/v1/posts`
//!   from 16 keep-alive clients. The clients run on a runtime of their own (threads named
//!   `floor-client`) whose CPU is left out: the figures are the server's alone.
//! - `verify` and `rows@P`: a replica's share of an applied post, `P` posts at a time
//!   (`OPENHIVE_BENCH_FLOOR_PUSH=32`, about what one push carries in the synced closed loop):
//!   the signatures checked in one batch (`Event::verify_each`), then the same rows as `rows`
//!   in transactions of `P`.
//!
//! Last, the floors these add up to: a synced write's on the origin (`sign` + `rows` +
//! `health`: its signature, its rows, the HTTP exchange) and an applied event's on a replica
//! (`verify` + `rows@P`), each beside issue 11's target. Neither counts the push between them,
//! the JSON of the request, nor the bookkeeping of the service: they are floors, not estimates.
//!
//! CPU is this process's user and system time over the layer (`getrusage`), less the client
//! threads' for `health` and `http`. Each line also gives the writer's jobs and posts per
//! committed transaction (`Store::queue_stats`): most of a post's cost is its
//! transaction's. No peer is linked: what a push to a peer adds is in the synced closed loop
//! of `openhive-bench` (docs/PERFORMANCE.md, "Transactions, not posts").
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{CLK_TCK, env_or};
use openhive_core::event::Event;
use openhive_core::ids::{self, Kind};
use openhive_core::payload::{AgentRef, Payload, PostCreated};
use openhive_server::config::{AuthMode, Config};
use openhive_server::service::{Actor, PostInput};
use openhive_store::StoreError;
use openhive_store::ingest::Verified;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Twelve words of the load generator's vocabulary, as its posts have.
const CONTENT: &str =
    "agent hive signal memory gossip ledger vector prompt relay quorum cursor shard";

struct Layer {
    name: &'static str,
    posts: usize,
    cpu_us: f64,
    secs: f64,
    /// Write transactions committed during the layer, and the jobs they held.
    transactions: u64,
    jobs: u64,
}

impl Layer {
    /// Prints the layer, and what it adds to the sum of the layers it is made of.
    fn print(&self, below: &[&Layer]) {
        let us = self.us_per_post();
        let added = if below.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = below.iter().map(|b| format!("`{}`", b.name)).collect();
            let sum: f64 = below.iter().map(|b| b.us_per_post()).sum();
            format!("  (+{:.1} µs over {})", us - sum, names.join(" + "))
        };
        let per_tx = if self.transactions == 0 {
            "      -".to_string()
        } else {
            format!(
                "{:>4.1}/{:<4.1}",
                self.jobs as f64 / self.transactions as f64,
                self.posts as f64 / self.transactions as f64
            )
        };
        println!(
            "{:<8} {:>6} posts {:>7.0} posts/s  jobs/posts per tx {per_tx}  {:>6.1} µs CPU per post{added}",
            self.name,
            self.posts,
            self.posts as f64 / self.secs,
            us
        );
    }

    fn us_per_post(&self) -> f64 {
        self.cpu_us / self.posts as f64
    }
}

/// CPU ticks of this process's threads whose name starts with `prefix`.
fn threads_cpu_ticks(prefix: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            if !comm.starts_with(prefix) {
                return None;
            }
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 1..];
            let mut f = rest.split_ascii_whitespace().skip(11);
            Some(f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?)
        })
        .sum()
}

/// User and system CPU time of this process (all threads), in µs.
fn self_cpu_us() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

/// The writer's committed (transactions, jobs) so far.
fn committed(store: &openhive_store::Store) -> (u64, u64) {
    let q = store.queue_stats();
    (q.transactions, q.jobs)
}

fn measure<T>(
    name: &'static str,
    posts: usize,
    store: &openhive_store::Store,
    f: impl FnOnce() -> T,
) -> (Layer, T) {
    let (t0, c0, (tx0, j0)) = (Instant::now(), self_cpu_us(), committed(store));
    let out = f();
    let (tx1, j1) = committed(store);
    let layer = Layer {
        name,
        posts,
        cpu_us: self_cpu_us() - c0,
        secs: t0.elapsed().as_secs_f64(),
        transactions: tx1 - tx0,
        jobs: j1 - j0,
    };
    (layer, out)
}

fn main() {
    openhive_server::heap_trim::configure_allocator();
    openhive_sync::client::install_crypto_provider();
    let n: usize = env_or("OPENHIVE_BENCH_FLOOR_POSTS", 20_000);
    let batch: usize = env_or("OPENHIVE_BENCH_FLOOR_BATCH", 16);
    let push: usize = env_or("OPENHIVE_BENCH_FLOOR_PUSH", 32);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.server.data_dir = dir.path().to_path_buf();
    config.auth.mode = AuthMode::Token;
    let server = rt.block_on(openhive::start(config)).unwrap();
    let base = format!("http://{}", server.addr);
    let state = server.state.clone();

    // One agent and one hive per layer, through the API.
    let http = reqwest::Client::new();
    let (key, hive_ids) = rt.block_on(async {
        let r: Value = http
            .post(format!("{base}/api/v1/agents/register"))
            .json(&json!({ "name": "floor" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let key = r["api_key"].as_str().unwrap().to_string();
        let mut ids = Vec::new();
        for h in [
            "floor-rows",
            "floor-ingest",
            "floor-service",
            "floor-http",
            "floor-replica",
        ] {
            let r = http
                .post(format!("{base}/api/v1/hives"))
                .bearer_auth(&key)
                .json(&json!({ "name": h }))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "creating {h}: {}", r.status());
            let name = h.to_string();
            let id: String = state
                .store
                .read(move |c| -> Result<String, StoreError> {
                    Ok(
                        c.query_row("SELECT id FROM hives WHERE name = ?1", [&name], |r| {
                            r.get(0)
                        })?,
                    )
                })
                .await
                .unwrap();
            ids.push(id);
        }
        (key, ids)
    });
    let agent = {
        let hash = openhive_core::ids::hash_secret(&key);
        rt.block_on(
            state
                .store
                .read(move |c| openhive_store::agents::get_by_api_key_hash(c, &hash)),
        )
        .unwrap()
        .unwrap()
    };
    let instance_id = state.identity.instance_id.clone();
    let signing_key = state.identity.key.get();
    let author = AgentRef {
        instance_id: instance_id.clone(),
        agent_id: agent.id.clone(),
        name: agent.name.clone(),
        avatar_url: None,
    };
    let payload_of = |i: usize| {
        Payload::PostCreated(PostCreated {
            post_id: ids::new_id(Kind::Post, &instance_id),
            title: format!("bench post {i} of client {}", i % 16),
            content: Some(CONTENT.to_string()),
            url: None,
            author: author.clone(),
        })
    };

    println!("== CPU per post at each layer of the origin's write path ({n} posts each) ==");

    // sign: the signature alone, of the events the rows layers store.
    let payloads: Vec<(Payload, String)> = (0..4 * n)
        .map(|i| {
            let p = payload_of(i);
            let json = p.to_json();
            (p, json)
        })
        .collect();
    let (sign, events) = measure("sign", 4 * n, &state.store, || {
        payloads
            .iter()
            .map(|(p, json)| {
                Event::sign_new(
                    &signing_key,
                    &instance_id,
                    "floor-rows",
                    p.event_type(),
                    openhive_core::time::now_ms(),
                    json.clone(),
                )
            })
            .collect::<Vec<_>>()
    });
    sign.print(&[]);
    let rows_events: Vec<(Event, Payload)> = events
        .into_iter()
        .zip(payloads.into_iter().map(|(p, _)| p))
        .collect();
    // Signed and checked as the origin does (not timed).
    let ingest_events: Vec<Verified> = (0..n)
        .map(|i| {
            Verified::sign(
                &signing_key,
                &instance_id,
                "floor-ingest",
                &payload_of(i),
                openhive_core::time::now_ms(),
            )
            .unwrap()
        })
        .collect();

    // rows: the fewest statements that keep a signed post, BATCH per transaction; first the
    // log alone, then with the post's row but no full-text entry, then everything.
    let store = state.store.clone();
    let mut rows_events = rows_events.into_iter();
    let log_only: Vec<_> = rows_events.by_ref().take(n).collect();
    let no_fts: Vec<_> = rows_events.by_ref().take(n).collect();
    let all: Vec<_> = rows_events.by_ref().take(n).collect();
    let replica: Vec<_> = rows_events.collect();
    let (rows_log, ()) = measure("rows:log", log_only.len(), &store, || {
        store_rows(&store, &hive_ids[0], log_only, batch, Rows::Log)
    });
    rows_log.print(&[]);
    store
        .write_blocking(|c| -> Result<(), StoreError> {
            Ok(c.execute_batch("DROP TRIGGER posts_fts_ai")?)
        })
        .unwrap();
    let (rows_post, ()) = measure("rows:row", no_fts.len(), &store, || {
        store_rows(&store, &hive_ids[0], no_fts, batch, Rows::Post)
    });
    rows_post.print(&[&rows_log]);
    store
        .write_blocking(|c| -> Result<(), StoreError> { Ok(c.execute_batch(POSTS_FTS_AI)?) })
        .unwrap();
    let (rows, ()) = measure("rows", all.len(), &store, || {
        store_rows(&store, &hive_ids[0], all, batch, Rows::Post)
    });
    rows.print(&[&rows_post]);

    // ingest: the store's own path for the same kind of events, BATCH per transaction.
    let hive_ingest = hive_ids[1].clone();
    let (ingest, ()) = measure("ingest", n, &store, || {
        let mut it = ingest_events.into_iter().peekable();
        while it.peek().is_some() {
            let chunk: Vec<Verified> = it.by_ref().take(batch).collect();
            let hive = hive_ingest.clone();
            store
                .write_blocking(move |c| -> Result<(), StoreError> {
                    let now = openhive_core::time::now_ms();
                    for v in &chunk {
                        openhive_store::ingest::ingest(c, &hive, v, None, now)?;
                    }
                    Ok(())
                })
                .unwrap();
        }
    });
    ingest.print(&[&rows]);

    // service: the API's write path without HTTP, 16 concurrent callers.
    let actor = Actor::new(&agent);
    let (service, ()) = measure("service", n, &store, || {
        rt.block_on(async {
            let next = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..16)
                .map(|c| {
                    let (hives, actor, next) = (state.hives.clone(), actor.clone(), next.clone());
                    tokio::spawn(async move {
                        while next.fetch_add(1, Ordering::Relaxed) < n {
                            hives
                                .create_post(
                                    &actor,
                                    PostInput {
                                        hive: "floor-service".into(),
                                        title: format!("bench post of client {c}"),
                                        content: Some(CONTENT.into()),
                                        url: None,
                                    },
                                )
                                .await
                                .unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        })
    });
    service.print(&[&sign, &ingest]);

    // health and http: the API, the clients' CPU left out. `health` is the HTTP exchange
    // alone (no authentication, no store).
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("floor-client")
        .enable_all()
        .build()
        .unwrap();
    let health = over_http(&clients, &store, "health", n, &base, None);
    health.print(&[]);
    let api = over_http(&clients, &store, "http", n, &base, Some(&key));
    api.print(&[&service, &health]);
    drop(clients);

    // verify and rows@P: a replica's share of an applied post, P at a time.
    let public = signing_key.public();
    let (verify, accepted) = measure("verify", replica.len(), &store, || {
        replica
            .chunks(push)
            .map(|chunk| {
                let items: Vec<(&Event, &_)> = chunk.iter().map(|(e, _)| (e, &public)).collect();
                Event::verify_each(&items)
                    .into_iter()
                    .filter(|ok| *ok)
                    .count()
            })
            .sum::<usize>()
    });
    assert_eq!(accepted, replica.len(), "every signature checks");
    verify.print(&[]);
    let (rows_replica, ()) = measure("rows@P", replica.len(), &store, || {
        store_rows(&store, &hive_ids[4], replica, push, Rows::Post)
    });
    rows_replica.print(&[]);

    println!("== floors (issue 11's targets beside them) ==");
    let origin = sign.us_per_post() + rows.us_per_post() + health.us_per_post();
    println!(
        "synced write, origin:   `sign` + `rows` ({batch} per tx) + `health` = {origin:.1} µs  (target ≤ 100)"
    );
    let applied = verify.us_per_post() + rows_replica.us_per_post();
    println!(
        "applied event, replica: `verify` + `rows@P` ({push} per batch) = {applied:.1} µs  (target ≤ 50)"
    );
    rt.block_on(server.shutdown()).unwrap();
}

/// The statements of the `rows` layers.
#[derive(Clone, Copy, PartialEq)]
enum Rows {
    /// The log's head and the event's row.
    Log,
    /// Those, the post's row and the hive's post count.
    Post,
}

/// `posts_fts_ai` as migration 0017 creates it.
const POSTS_FTS_AI: &str = "CREATE TRIGGER posts_fts_ai AFTER INSERT ON posts BEGIN
  INSERT INTO fts_queue (tbl, cmd, rid, a, b) VALUES (1, NULL, new.rowid, new.title, new.content);
END;";

fn store_rows(
    store: &openhive_store::Store,
    hive: &str,
    events: Vec<(Event, Payload)>,
    batch: usize,
    rows: Rows,
) {
    let mut it = events.into_iter().peekable();
    while it.peek().is_some() {
        let chunk: Vec<(Event, Payload)> = it.by_ref().take(batch).collect();
        let hive = hive.to_string();
        store
            .write_blocking(move |c| -> Result<(), StoreError> {
                // The head is read once and written once per transaction, and the hive's
                // post count added once, as a page of remote events does (`log::SeqRun`,
                // `materialize::Batch`): the least these rows cost.
                let head: i64 = c.query_row(
                    "SELECT head_seq FROM hive_logs WHERE hive_id = ?1",
                    [&hive],
                    |r| r.get(0),
                )?;
                for (i, (ev, p)) in chunk.iter().enumerate() {
                    let seq = head + 1 + i as i64;
                    c.prepare_cached(
                        "INSERT INTO events (hive_id, seq, id, event_type, origin_instance_id,
                           origin_ts, payload, signature, received_from, received_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?6)",
                    )?
                    .execute(openhive_store::params![
                        hive,
                        seq,
                        ev.id,
                        ev.event_type.as_str(),
                        ev.origin_instance_id,
                        ev.origin_ts,
                        ev.payload,
                        ev.signature
                    ])?;
                    if rows == Rows::Log {
                        continue;
                    }
                    let Payload::PostCreated(p) = p else {
                        unreachable!("only posts are written")
                    };
                    c.prepare_cached(
                        "INSERT INTO posts (id, hive_id, author_id, origin_instance_id, title,
                           content, url, title_v, content_v, url_v, score, hot, comment_count,
                           is_pinned, deleted, created_event_id, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, 1, 1, 1, 0, ?7, 0, 0, 0, ?8, ?7, ?7)",
                    )?
                    .execute(openhive_store::params![
                        p.post_id,
                        hive,
                        p.author.agent_id,
                        ev.origin_instance_id,
                        p.title,
                        p.content,
                        ev.origin_ts,
                        ev.id
                    ])?;
                }
                let n = chunk.len() as i64;
                c.prepare_cached("UPDATE hive_logs SET head_seq = ?2 WHERE hive_id = ?1")?
                    .execute(openhive_store::params![hive, head + n])?;
                if rows == Rows::Post {
                    c.prepare_cached(
                        "UPDATE hives SET post_count = post_count + ?2 WHERE id = ?1",
                    )?
                    .execute(openhive_store::params![hive, n])?;
                }
                Ok(())
            })
            .unwrap();
    }
}

/// `n` requests from 16 keep-alive clients on `clients`: `POST /api/v1/posts` with `key`,
/// `GET /health` without. The CPU of the `floor-client` threads is left out.
fn over_http(
    clients: &tokio::runtime::Runtime,
    store: &openhive_store::Store,
    name: &'static str,
    n: usize,
    base: &str,
    key: Option<&str>,
) -> Layer {
    let client_before = threads_cpu_ticks("floor-client");
    let (mut layer, ()) = measure(name, n, store, || {
        clients.block_on(async {
            let next = Arc::new(AtomicUsize::new(0));
            let http = reqwest::Client::new();
            let tasks: Vec<_> = (0..16)
                .map(|c| {
                    let (http, next) = (http.clone(), next.clone());
                    let (key, base) = (key.map(str::to_string), base.to_string());
                    let body = json!({
                        "hive": "floor-http",
                        "title": format!("bench post of client {c}"),
                        "content": CONTENT,
                    })
                    .to_string();
                    tokio::spawn(async move {
                        while next.fetch_add(1, Ordering::Relaxed) < n {
                            let r = match &key {
                                Some(key) => http
                                    .post(format!("{base}/api/v1/posts"))
                                    .bearer_auth(key)
                                    .header("content-type", "application/json")
                                    .body(body.clone()),
                                None => http.get(format!("{base}/health")),
                            }
                            .send()
                            .await
                            .unwrap();
                            assert!(r.status().is_success(), "{}", r.status());
                            r.bytes().await.unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        })
    });
    let client_ticks = threads_cpu_ticks("floor-client") - client_before;
    layer.cpu_us -= client_ticks as f64 / CLK_TCK * 1e6;
    layer
}
