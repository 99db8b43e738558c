//! The clients: each owns one keep-alive connection and one agent, draws operations from
//! the mix and records their latency. A phase runs every client until a deadline or an
//! operation count, closed loop (as fast as responses come back) or open loop (each client
//! sends on a fixed schedule; latency counts from the scheduled time, so a slow server is
//! not hidden by the clients waiting for it: no coordinated omission).

use crate::cli::{Mix, OpKind};
use crate::http::{Conn, HttpError};
use crate::propagate::{Phase, Tracker};
use crate::stats::{Stats, StatsError};
use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderValue;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Words of generated text. Each post has [`POST_WORDS`] of them, so a word is in about one
/// post of eight: `search` looks for a common term.
const VOCAB: [&str; 96] = [
    "agent",
    "hive",
    "signal",
    "memory",
    "vector",
    "token",
    "prompt",
    "model",
    "tensor",
    "graph",
    "planner",
    "critic",
    "reward",
    "policy",
    "dataset",
    "latency",
    "cache",
    "index",
    "shard",
    "replica",
    "ledger",
    "event",
    "cursor",
    "commit",
    "quorum",
    "gossip",
    "beacon",
    "oracle",
    "sensor",
    "kernel",
    "thread",
    "socket",
    "buffer",
    "stream",
    "packet",
    "router",
    "schema",
    "query",
    "filter",
    "ranking",
    "summary",
    "outline",
    "draft",
    "review",
    "patch",
    "branch",
    "merge",
    "rebase",
    "deploy",
    "rollout",
    "canary",
    "metric",
    "trace",
    "profile",
    "budget",
    "quota",
    "limit",
    "window",
    "bucket",
    "sample",
    "batch",
    "epoch",
    "gradient",
    "weight",
    "bias",
    "layer",
    "neuron",
    "attention",
    "context",
    "meadow",
    "horizon",
    "archive",
    "journal",
    "notebook",
    "sketch",
    "theorem",
    "lemma",
    "proof",
    "axiom",
    "corpus",
    "lexicon",
    "syntax",
    "grammar",
    "parser",
    "compiler",
    "linker",
    "loader",
    "daemon",
    "service",
    "gateway",
    "bridge",
    "tunnel",
    "harbor",
    "lantern",
    "compass",
    "orchard",
];
const POST_WORDS: usize = 12;
const COMMENT_WORDS: usize = 8;
/// Recent posts and comments kept per instance as targets.
const POOL_SIZE: usize = 4096;

/// A small, fast PRNG (xorshift64*), one per client.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Spread nearby seeds (splitmix64), never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`; 0 for `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Multiply-shift: unbiased enough for load generation, no division.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }
}

/// `n` random words of the vocabulary, separated by spaces.
pub fn words(rng: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(n * 8);
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(VOCAB[rng.index(VOCAB.len())]);
    }
    s
}

/// A bounded ring of recent items to pick targets from.
#[derive(Debug)]
struct Ring<T> {
    items: Vec<T>,
    next: usize,
}

impl<T: Clone> Ring<T> {
    fn new() -> Self {
        Ring {
            items: Vec::new(),
            next: 0,
        }
    }

    fn push(&mut self, item: T) {
        if self.items.len() < POOL_SIZE {
            self.items.push(item);
        } else if let Some(slot) = self.items.get_mut(self.next) {
            *slot = item;
        }
        self.next = (self.next + 1) % POOL_SIZE;
    }

    fn pick(&self, rng: &mut Rng) -> Option<T> {
        if self.items.is_empty() {
            return None;
        }
        self.items.get(rng.index(self.items.len())).cloned()
    }
}

/// A comment target: (post id, comment id).
type CommentRef = (Arc<str>, Arc<str>);

/// Recent posts and comments of one instance.
#[derive(Debug)]
pub struct Pool {
    posts: Mutex<Ring<Arc<str>>>,
    comments: Mutex<Ring<CommentRef>>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            posts: Mutex::new(Ring::new()),
            comments: Mutex::new(Ring::new()),
        }
    }
}

impl Pool {
    pub fn add_post(&self, id: &str) {
        if let Ok(mut r) = self.posts.lock() {
            r.push(Arc::from(id));
        }
    }

    pub fn add_comment(&self, post: &str, id: &str) {
        if let Ok(mut r) = self.comments.lock() {
            r.push((Arc::from(post), Arc::from(id)));
        }
    }

    fn post(&self, rng: &mut Rng) -> Option<Arc<str>> {
        self.posts.lock().ok()?.pick(rng)
    }

    fn comment(&self, rng: &mut Rng) -> Option<CommentRef> {
        self.comments.lock().ok()?.pick(rng)
    }
}

/// State shared by the clients of a run.
pub struct Shared {
    /// One pool per instance (index of its `--url`).
    pub pools: Vec<Pool>,
    /// Completed operations of the current phase (for the progress line).
    pub completed: AtomicU64,
    /// Operations claimed so far in a phase bounded by a count.
    claimed: AtomicU64,
    /// Posts written are reported here in end-to-end mode.
    pub tracker: Option<Arc<Tracker>>,
}

impl Shared {
    pub fn new(instances: usize, tracker: Option<Arc<Tracker>>) -> Shared {
        Shared {
            pools: (0..instances).map(|_| Pool::default()).collect(),
            completed: AtomicU64::new(0),
            claimed: AtomicU64::new(0),
            tracker,
        }
    }
}

/// When a phase ends.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    Deadline(Instant),
    /// This many operations in total over all clients.
    Count(u64),
}

/// What the clients do in one phase.
#[derive(Debug, Clone)]
pub struct PhaseSpec {
    pub mix: Mix,
    pub until: Until,
    /// Total operations per second (open loop), or as fast as possible.
    pub rate: Option<f64>,
    /// Tag of the posts written (end-to-end mode).
    pub phase: Phase,
}

/// The result of an operation.
enum Outcome {
    Ok,
    /// A non-2xx status or an unusable body.
    Failed(String),
    Transport(HttpError),
}

/// The body of `POST /api/v1/posts`.
#[derive(Serialize)]
struct NewPost<'a> {
    hive: &'a str,
    title: &'a str,
    content: &'a str,
}

#[derive(Deserialize)]
struct Created<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
}

/// One client: a connection, an agent, a random stream, its own statistics.
pub struct Client {
    pub index: usize,
    /// Index of the instance (its `--url`).
    pub instance: usize,
    conn: Conn,
    auth: HeaderValue,
    hive: Arc<str>,
    rng: Rng,
    seq: u64,
    stats: Stats,
}

impl Client {
    pub fn new(
        index: usize,
        instance: usize,
        conn: Conn,
        auth: HeaderValue,
        hive: Arc<str>,
        seed: u64,
    ) -> Result<Client, StatsError> {
        Ok(Client {
            index,
            instance,
            conn,
            auth,
            hive,
            rng: Rng::new(seed ^ (index as u64).wrapping_mul(0x9E37_79B9)),
            seq: 0,
            stats: Stats::new()?,
        })
    }

    /// Opens the connection before the measurement.
    pub async fn connect(&mut self) -> Result<(), HttpError> {
        self.conn.connect().await
    }

    /// Takes the statistics gathered so far, leaving empty ones.
    pub fn take_stats(&mut self) -> Result<Stats, StatsError> {
        Ok(std::mem::replace(&mut self.stats, Stats::new()?))
    }

    /// Runs the phase until it ends.
    pub async fn run(
        &mut self,
        shared: &Shared,
        spec: &PhaseSpec,
        clients: usize,
        start: Instant,
    ) -> Result<(), StatsError> {
        let total_weight = spec.mix.total();
        // Open loop: client i sends at start + (i/clients + k) * interval, k = 0, 1, ...
        let interval = spec
            .rate
            .map(|r| Duration::from_secs_f64((clients as f64 / r).min(3600.0)));
        let mut next = interval.map(|iv| start + iv.mul_f64(self.index as f64 / clients as f64));
        loop {
            match spec.until {
                Until::Deadline(d) if Instant::now() >= d => break,
                Until::Count(n) if shared.claimed.fetch_add(1, Ordering::Relaxed) >= n => break,
                _ => {}
            }
            let intended = match (next.as_mut(), interval) {
                (Some(t), Some(iv)) => {
                    let at = *t;
                    *t += iv;
                    if let Until::Deadline(d) = spec.until
                        && at >= d
                    {
                        break;
                    }
                    tokio::time::sleep_until(at.into()).await;
                    at
                }
                _ => Instant::now(),
            };
            let kind = spec.mix.pick(self.rng.below(total_weight));
            let outcome = self.op(kind, shared, spec.phase).await;
            let latency = intended.elapsed();
            match outcome {
                Outcome::Ok => self.stats.ok(kind, latency)?,
                Outcome::Failed(key) => self.stats.error(kind, &key)?,
                Outcome::Transport(e) => {
                    self.stats.error(kind, e.key())?;
                    if e.key() == "connect" {
                        // The server is gone or refusing: do not spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            shared.completed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Resets the operation counter of a count-bounded phase (call between phases).
    pub fn reset_phase(shared: &Shared) {
        shared.claimed.store(0, Ordering::Relaxed);
        shared.completed.store(0, Ordering::Relaxed);
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<crate::http::Response, HttpError> {
        self.conn
            .request(method, path, Some(&self.auth), None, body.map(Bytes::from))
            .await
    }

    async fn op(&mut self, kind: OpKind, shared: &Shared, phase: Phase) -> Outcome {
        let Some(pool) = shared.pools.get(self.instance) else {
            return Outcome::Failed("client".into());
        };
        // Targets: fall back to a post when there is nothing to comment on or read yet.
        let post = match kind {
            OpKind::Post | OpKind::List | OpKind::Search | OpKind::Health => None,
            _ => match pool.post(&mut self.rng) {
                Some(p) => Some(p),
                None => return self.write_post(pool, shared, phase).await,
            },
        };
        let post = post.as_deref().unwrap_or("");
        let result = match kind {
            OpKind::Post => return self.write_post(pool, shared, phase).await,
            OpKind::Comment | OpKind::Reply => {
                let parent = if kind == OpKind::Reply {
                    pool.comment(&mut self.rng)
                } else {
                    None
                };
                let (post, parent) = match &parent {
                    Some((p, c)) => (&**p, Some(&**c)),
                    None => (post, None),
                };
                let content = words(&mut self.rng, COMMENT_WORDS);
                let body = serde_json::json!({ "content": content, "parent_id": parent });
                let path = format!("/api/v1/posts/{post}/comments");
                match self.send(Method::POST, &path, Some(body.to_string())).await {
                    Ok(r) if r.status.is_success() => {
                        match serde_json::from_slice::<Created>(&r.body) {
                            Ok(c) => {
                                pool.add_comment(post, &c.id);
                                return Outcome::Ok;
                            }
                            Err(_) => return Outcome::Failed("bad body".into()),
                        }
                    }
                    other => other,
                }
            }
            OpKind::Vote => {
                let value = if self.rng.below(4) == 0 { -1 } else { 1 };
                let path = format!("/api/v1/posts/{post}/vote");
                self.send(Method::POST, &path, Some(format!("{{\"value\":{value}}}")))
                    .await
            }
            OpKind::Read => {
                self.send(Method::GET, &format!("/api/v1/posts/{post}"), None)
                    .await
            }
            OpKind::Thread => {
                self.send(Method::GET, &format!("/api/v1/posts/{post}/comments"), None)
                    .await
            }
            OpKind::List => {
                let path = format!("/api/v1/posts?hive={}&sort=new&limit=25", self.hive);
                self.send(Method::GET, &path, None).await
            }
            OpKind::Search => {
                let q = VOCAB[self.rng.index(VOCAB.len())];
                let path = format!(
                    "/api/v1/search?q={q}&type=posts&hive={}&limit=20",
                    self.hive
                );
                self.send(Method::GET, &path, None).await
            }
            OpKind::Health => self.send(Method::GET, "/health", None).await,
        };
        match result {
            Ok(r) if r.status.is_success() => Outcome::Ok,
            Ok(r) => Outcome::Failed(r.status.as_u16().to_string()),
            Err(e) => Outcome::Transport(e),
        }
    }

    async fn write_post(&mut self, pool: &Pool, shared: &Shared, phase: Phase) -> Outcome {
        self.seq += 1;
        let title = format!("bench post {} of client {}", self.seq, self.index);
        let content = words(&mut self.rng, POST_WORDS);
        let body = NewPost {
            hive: &self.hive,
            title: &title,
            content: &content,
        };
        let body = match serde_json::to_string(&body) {
            Ok(b) => b,
            Err(_) => return Outcome::Failed("client".into()),
        };
        match self.send(Method::POST, "/api/v1/posts", Some(body)).await {
            Ok(r) if r.status.is_success() => {
                let acked = Instant::now();
                match serde_json::from_slice::<Created>(&r.body) {
                    Ok(p) => {
                        pool.add_post(&p.id);
                        if let Some(t) = &shared.tracker {
                            t.acked(&p.id, acked, phase);
                        }
                        Outcome::Ok
                    }
                    Err(_) => Outcome::Failed("bad body".into()),
                }
            }
            Ok(r) => Outcome::Failed(r.status.as_u16().to_string()),
            Err(e) => Outcome::Transport(e),
        }
    }
}

/// Runs every client through one phase concurrently; returns them (with their statistics)
/// in their original order, and the phase's wall time.
pub async fn run_phase(
    clients: Vec<Client>,
    shared: &Arc<Shared>,
    spec: &Arc<PhaseSpec>,
) -> anyhow::Result<(Vec<Client>, Duration)> {
    Client::reset_phase(shared);
    let n = clients.len();
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for mut c in clients {
        let (shared, spec) = (Arc::clone(shared), Arc::clone(spec));
        handles.push(tokio::spawn(async move {
            let r = c.run(&shared, &spec, n, start).await;
            (c, r)
        }));
    }
    let mut out = Vec::with_capacity(n);
    for h in handles {
        let (c, r) = h.await?;
        r?;
        out.push(c);
    }
    Ok((out, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_uniform_enough_and_in_range() {
        let mut r = Rng::new(7);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            let i = r.below(10) as usize;
            counts[i] += 1;
        }
        assert!(
            counts.iter().all(|c| (9_000..11_000).contains(c)),
            "{counts:?}"
        );
        assert_eq!(r.below(0), 0);
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn rings_keep_the_most_recent_items() {
        let mut ring = Ring::new();
        let mut rng = Rng::new(1);
        assert_eq!(ring.pick(&mut rng), None::<u32>);
        for i in 0..(POOL_SIZE as u32 + 10) {
            ring.push(i);
        }
        assert_eq!(ring.items.len(), POOL_SIZE);
        for _ in 0..1000 {
            let v = ring.pick(&mut rng).unwrap();
            assert!(v >= 10, "{v}");
        }
    }

    #[test]
    fn generated_text_uses_the_vocabulary() {
        let mut rng = Rng::new(3);
        let w = words(&mut rng, POST_WORDS);
        assert_eq!(w.split(' ').count(), POST_WORDS);
        assert!(w.split(' ').all(|x| VOCAB.contains(&x)));
    }
}
