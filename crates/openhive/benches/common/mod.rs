//! Shared by the Hive Sync benchmarks (`sync_bench`, `engines_bench`): instances on either
//! storage engine, pairing, bulk loading, and the measuring functions, each of which takes
//! the [`Engine`] its instances run on.
//!
//! All instances run in the bench's process on 127.0.0.1:0 and talk real HTTP to each
//! other; the clients are tasks of the same process. Every figure therefore includes both
//! ends (and the clients) sharing the same cores.
// Each bench uses part of this module.
#![allow(dead_code)]

pub mod perf;
pub mod serve_process;

use openhive::start;
use openhive_core::ids::{self, Kind};
use openhive_core::payload::{
    AgentRef, CommentCreated, CommentUpdated, Payload, PostCreated, PostUpdated, TargetType,
    VoteCast, VoterRef,
};
use openhive_core::time;
use openhive_server::RunningServer;
use openhive_server::config::{AuthMode, Config, StorageEngine};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The storage engine of the instances a measure starts.
#[derive(Clone, Debug)]
pub enum Engine {
    /// `openhive.db` in each instance's temporary data directory.
    Sqlite,
    /// A scratch database per instance, created through `admin_url`.
    Postgres {
        /// URL of any database of the server (scratch databases are created through it).
        admin_url: String,
        /// The postmaster's pid when the server runs on this machine and we know it: its
        /// CPU time (and its backends') is then measured too.
        server_pid: Option<u32>,
    },
}

impl Engine {
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres { .. } => "postgres",
        }
    }

    /// CPU time (clock ticks) the database server has used outside this process so far:
    /// `Some(0)` for SQLite (it runs inside this process), `None` if unknown.
    pub fn server_cpu_ticks(&self) -> Option<u64> {
        match self {
            Engine::Sqlite => Some(0),
            Engine::Postgres { server_pid, .. } => postmaster_cpu_ticks((*server_pid)?),
        }
    }
}

/// One instance on a temporary data directory (and, on PostgreSQL, its scratch database).
pub struct Inst {
    _dir: tempfile::TempDir,
    pub srv: RunningServer,
    pub base: String,
    /// Dropped (with its database) by [`Inst::shutdown`].
    scratch: Option<openhive_store_postgres::ScratchDatabase>,
}

impl Inst {
    pub async fn new(engine: &Engine) -> Inst {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.server.listen = "127.0.0.1:0".into();
        c.server.data_dir = dir.path().to_path_buf();
        c.auth.mode = AuthMode::Local;
        c.sync.heartbeat_interval_secs = 1;
        c.sync.backoff_initial_ms = 100;
        c.sync.backoff_max_secs = 2;
        let mut scratch = None;
        if let Engine::Postgres { admin_url, .. } = engine {
            // A blocking client: keep it off the async workers.
            let admin = admin_url.clone();
            let db = tokio::task::spawn_blocking(move || {
                openhive_store_postgres::ScratchDatabase::create(&admin, "oh_bench")
            })
            .await
            .unwrap()
            .unwrap();
            c.storage.engine = StorageEngine::Postgres;
            c.storage.url = Some(db.url().to_string());
            scratch = Some(db);
        }
        let srv = start(c).await.unwrap();
        let base = format!("http://{}", srv.addr);
        Inst {
            _dir: dir,
            srv,
            base,
            scratch,
        }
    }

    /// Stops the server, then drops its scratch database (if any).
    pub async fn shutdown(self) {
        self.srv.shutdown().await.unwrap();
        if let Some(db) = self.scratch {
            tokio::task::spawn_blocking(move || drop(db)).await.unwrap();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("{}/sync/v1", self.base)
    }

    pub async fn post(&self, http: &reqwest::Client, path: &str, body: Value) -> Value {
        let r = http
            .post(format!("{}/api/v1{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let st = r.status();
        let b: Value = r.json().await.unwrap_or(Value::Null);
        assert!(st.is_success(), "{path}: {st} {b}");
        b
    }

    pub async fn get_json(&self, http: &reqwest::Client, path: &str) -> Value {
        let r = http
            .get(format!("{}/api/v1{path}", self.base))
            .send()
            .await
            .unwrap();
        let st = r.status();
        let b: Value = r.json().await.unwrap_or(Value::Null);
        assert!(st.is_success(), "{path}: {st} {b}");
        b
    }

    /// Like [`Inst::post`], but retries `503 Service Unavailable` (write queue full) after a
    /// short pause; returns the body and how many times the write was turned away.
    pub async fn post_retrying(
        &self,
        http: &reqwest::Client,
        path: &str,
        body: &Value,
    ) -> (Value, u64) {
        let mut rejected = 0;
        loop {
            let r = http
                .post(format!("{}/api/v1{path}", self.base))
                .json(body)
                .send()
                .await
                .unwrap();
            let st = r.status();
            if st == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                rejected += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            let b: Value = r.json().await.unwrap_or(Value::Null);
            assert!(st.is_success(), "{path}: {st} {b}");
            return (b, rejected);
        }
    }

    /// True once `GET /api/v1/posts/{id}` answers 200.
    pub async fn api_has_post(&self, http: &reqwest::Client, id: &str) -> bool {
        let r = http
            .get(format!("{}/api/v1/posts/{id}", self.base))
            .send()
            .await
            .unwrap();
        let st = r.status();
        assert!(
            st.is_success() || st == reqwest::StatusCode::NOT_FOUND,
            "GET /posts/{id}: {st}"
        );
        st.is_success()
    }

    pub async fn hive_id(&self, hive: &str) -> Option<String> {
        let h = hive.to_string();
        self.srv
            .state
            .store
            .read(move |c| openhive_store::hives::id_by_name(c, &h))
            .await
            .unwrap()
    }

    /// The hive's log head on this instance (0 if the hive is unknown here).
    pub async fn head(&self, hive: &str) -> i64 {
        let Some(id) = self.hive_id(hive).await else {
            return 0;
        };
        self.srv
            .state
            .store
            .read(move |c| openhive_store::log::head(c, &id))
            .await
            .unwrap()
    }

    /// Creates `hive` and a sync group for it.
    pub async fn shared_hive(&self, http: &reqwest::Client, hive: &str) {
        self.post(http, "/hives", json!({"name": hive})).await;
        self.post(http, "/sync/groups", json!({"hive_name": hive}))
            .await;
    }
}

/// Makes `a` and `b` peers of each other for `hive`.
pub async fn pair(http: &reqwest::Client, a: &Inst, b: &Inst, hive: &str) {
    a.post(
        http,
        "/sync/peers",
        json!({"name": "peer", "sync_endpoint": b.endpoint(), "shared_hives": [hive]}),
    )
    .await;
    b.post(
        http,
        "/sync/peers",
        json!({"name": "peer", "sync_endpoint": a.endpoint(), "shared_hives": [hive]}),
    )
    .await;
}

/// Waits until `b`'s log of `hive` reaches `head` (panics after `timeout`: a hang guard).
pub async fn wait_head(b: &Inst, hive: &str, head: i64, timeout: Duration) {
    let ok = wait_until(timeout, || async { b.head(hive).await >= head }).await;
    assert!(ok, "{hive}: log head {head} not reached within {timeout:?}");
}

/// Appends `n` signed `post_created` events to `hive` on `s` through the store.
pub async fn bulk(s: &Inst, hive: &str, n: usize) {
    let state = s.srv.state.clone();
    let hive = hive.to_string();
    let hive_id = s.hive_id(&hive).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let inst = state.identity.instance_id.clone();
        let author = AgentRef {
            instance_id: inst.clone(),
            agent_id: state.identity.local_agent_id.clone(),
            name: "local".into(),
            avatar_url: None,
        };
        let t0 = time::now_ms();
        for chunk in 0..n.div_ceil(2000) {
            let (start, end) = (chunk * 2000, ((chunk + 1) * 2000).min(n));
            let events: Vec<openhive_store::ingest::Verified> = (start..end)
                .map(|i| {
                    let p = Payload::PostCreated(PostCreated {
                        post_id: ids::new_id(Kind::Post, &inst),
                        title: format!("bulk post number {i}"),
                        content: Some(format!(
                            "body {i}: {}",
                            "lorem ipsum dolor sit amet ".repeat(8)
                        )),
                        url: None,
                        author: author.clone(),
                    });
                    openhive_store::ingest::Verified::sign(
                        &state.identity.key.get(),
                        &inst,
                        &hive,
                        &p,
                        t0 + i as i64,
                    )
                    .unwrap()
                })
                .collect();
            ingest_signed(&state, &hive_id, events);
        }
    })
    .await
    .unwrap();
}

/// The events a bulk load writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// `post_created` only (what [`bulk`] writes).
    Posts,
    /// 10 % posts, 10 % comments, 40 % post edits, 10 % comment edits, 30 % votes by five
    /// voters that change their minds.
    Mixed,
}

impl Mix {
    /// `OPENHIVE_BENCH_MIX`: `posts` or `mixed` (the default).
    pub fn from_env() -> Mix {
        match std::env::var("OPENHIVE_BENCH_MIX").as_deref() {
            Ok("posts") => Mix::Posts,
            _ => Mix::Mixed,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mix::Posts => "posts only",
            Mix::Mixed => {
                "mixed: 10% posts, 10% comments, 40% post edits, 10% comment edits, 30% votes"
            }
        }
    }
}

/// Appends `n` signed events of `mix` to `hive` on `s`, through the store (2,000 events
/// per write transaction).
pub async fn load_mixed(s: &Inst, hive: &str, n: usize, mix: Mix) {
    let state = s.srv.state.clone();
    let hive_id = s.hive_id(hive).await.unwrap();
    let hive = hive.to_string();
    tokio::task::spawn_blocking(move || {
        let inst = state.identity.instance_id.clone();
        let author = AgentRef {
            instance_id: inst.clone(),
            agent_id: state.identity.local_agent_id.clone(),
            name: "local".into(),
            avatar_url: None,
        };
        let voters: Vec<String> = (0..5).map(|_| ids::new_id(Kind::Agent, &inst)).collect();
        let (mut posts, mut comments): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        let t0 = time::now_ms();
        let mut i = 0usize;
        while i < n {
            let end = (i + 2000).min(n);
            let mut batch = Vec::with_capacity(end - i);
            for k in i..end {
                let pick = |v: &Vec<String>| v[(k * 7919) % v.len()].clone();
                let p = match k % 10 {
                    _ if mix == Mix::Posts => Payload::PostCreated(PostCreated {
                        post_id: ids::new_id(Kind::Post, &inst),
                        title: format!("bulk post number {k}"),
                        content: Some(format!(
                            "body {k}: {}",
                            "lorem ipsum dolor sit amet ".repeat(8)
                        )),
                        url: None,
                        author: author.clone(),
                    }),
                    _ if posts.is_empty() || k % 10 == 0 => {
                        let id = ids::new_id(Kind::Post, &inst);
                        posts.push(id.clone());
                        Payload::PostCreated(PostCreated {
                            post_id: id,
                            title: format!("post {k}"),
                            content: Some(format!("body {k}: {}", "lorem ipsum ".repeat(12))),
                            url: None,
                            author: author.clone(),
                        })
                    }
                    1 => {
                        let id = ids::new_id(Kind::Comment, &inst);
                        comments.push(id.clone());
                        Payload::CommentCreated(CommentCreated {
                            comment_id: id,
                            post_id: posts[posts.len() - 1].clone(),
                            parent_comment_id: None,
                            content: format!("comment {k} {}", "dolor sit ".repeat(6)),
                            author: author.clone(),
                        })
                    }
                    2..=5 => Payload::PostUpdated(PostUpdated {
                        post_id: pick(&posts),
                        title: (k % 2 == 0).then(|| format!("edited title {k}")),
                        content: Some(format!("edited body {k}: {}", "amet ".repeat(20))),
                        url: None,
                        updated_by: author.clone(),
                    }),
                    6 if !comments.is_empty() => Payload::CommentUpdated(CommentUpdated {
                        comment_id: pick(&comments),
                        content: format!("edited comment {k}"),
                        updated_by: author.clone(),
                    }),
                    _ => Payload::VoteCast(VoteCast {
                        target_type: TargetType::Post,
                        target_id: posts[(k * 31) % posts.len().min(50)].clone(),
                        voter: VoterRef {
                            instance_id: inst.clone(),
                            agent_id: voters[k % voters.len()].clone(),
                        },
                        value: [1, -1, 0][(k / 10) % 3],
                    }),
                };
                batch.push(
                    openhive_store::ingest::Verified::sign(
                        &state.identity.key.get(),
                        &inst,
                        &hive,
                        &p,
                        t0 + k as i64,
                    )
                    .unwrap(),
                );
            }
            ingest_signed(&state, &hive_id, batch);
            i = end;
        }
    })
    .await
    .unwrap();
}

/// Ingests signed events into `hive_id` through the store, in one write transaction (the
/// path a bulk load takes instead of the API).
pub fn ingest_signed(
    state: &openhive_server::app::AppState,
    hive_id: &str,
    events: Vec<openhive_store::ingest::Verified>,
) {
    let hid = hive_id.to_string();
    state
        .store
        .write_blocking(move |tx| -> Result<(), openhive_store::StoreError> {
            for v in &events {
                openhive_store::ingest::ingest(tx, &hid, v, None, time::now_ms())?;
            }
            Ok(())
        })
        .unwrap();
}

/// A `kB` field of this process's `/proc/self/status` (`VmRSS:`, `VmHWM:`).
pub fn proc_status(field: &str) -> Option<u64> {
    proc_status_of("self", field)
}

/// A numeric field of `/proc/<pid>/status` (`pid` may be `self`).
pub fn proc_status_of(pid: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time of each thread of `pid` by thread name, in nanoseconds (the first field of
/// `/proc/<pid>/task/<tid>/schedstat`: time on a CPU, exact, not sampled). Threads of one
/// name (tokio's workers) are summed; a thread that ended before the read is missing.
pub fn thread_cpu_ns(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for t in tasks.flatten() {
        let dir = t.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        if let Some(ns) = ns {
            *by_name.entry(name.trim().to_string()).or_insert(0) += ns;
        }
    }
    by_name
}

/// "name µs/event" for each thread name whose CPU grew between two [`thread_cpu_ns`] reads,
/// largest first.
pub fn thread_cpu_per_event(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    events: u64,
) -> String {
    let mut grown: Vec<(&String, u64)> = after
        .iter()
        .map(|(name, ns)| (name, ns.saturating_sub(*before.get(name).unwrap_or(&0))))
        .filter(|(_, ns)| *ns > 0)
        .collect();
    grown.sort_by_key(|g| std::cmp::Reverse(g.1));
    grown
        .iter()
        .map(|(name, ns)| format!("{name} {:.1}", *ns as f64 / 1e3 / events.max(1) as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ: 100 on Linux).
pub const CLK_TCK: f64 = 100.0;

/// Fields of `/proc/<pid>/stat` after the command name: `[0]` is field 3 (state).
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(
        rest.split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// utime + stime of this process (all threads), in clock ticks.
pub fn self_cpu_ticks() -> u64 {
    // After the state: ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    // utime stime: indexes 10 and 11 here.
    stat_fields("self").map_or(0, |f| f[10] + f[11])
}

/// CPU time of a PostgreSQL server: the postmaster's own and its reaped children's
/// (utime, stime, cutime, cstime) plus its live children's (backends, walwriter, ...).
pub fn postmaster_cpu_ticks(pid: u32) -> Option<u64> {
    let pm = stat_fields(&pid.to_string())?;
    let mut total = pm[10] + pm[11] + pm[12] + pm[13];
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Some(f) = stat_fields(name)
            && f.first() == Some(&u64::from(pid))
        {
            total += f[10] + f[11] + f[12] + f[13];
        }
    }
    Some(total)
}

/// CPU used by this process and by the engine's server between two readings.
#[derive(Clone, Copy, Debug)]
pub struct Cpu {
    /// This process: the instances and the clients.
    pub process_secs: f64,
    /// The database server's processes (0 for SQLite; `None` if not measurable).
    pub server_secs: Option<f64>,
}

pub struct CpuMeter {
    engine: Engine,
    process: u64,
    server: Option<u64>,
}

impl CpuMeter {
    pub fn start(engine: &Engine) -> CpuMeter {
        CpuMeter {
            engine: engine.clone(),
            process: self_cpu_ticks(),
            server: engine.server_cpu_ticks(),
        }
    }

    pub fn stop(&self) -> Cpu {
        let server = match (self.server, self.engine.server_cpu_ticks()) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / CLK_TCK),
            _ => None,
        };
        Cpu {
            process_secs: self_cpu_ticks().saturating_sub(self.process) as f64 / CLK_TCK,
            server_secs: server,
        }
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn wait_until<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// `name` from the environment, parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------
// Measures
// ---------------------------------------------------------------------------------------

pub struct Backfill {
    /// Signed events written on A through the store before B joins.
    pub events: i64,
    pub setup: Duration,
    /// Pairing until B's log head reaches A's.
    pub took: Duration,
    pub cpu: Cpu,
    /// Whole-process peak RSS during the backfill (KiB), whether the watermark could be
    /// reset before it, the largest sampled VmRSS and the VmRSS before (KiB).
    pub hwm_kib: u64,
    pub hwm_reset: bool,
    pub rss_sampled_kib: u64,
    pub rss_before_kib: u64,
}

impl Backfill {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.took.as_secs_f64()
    }
}

/// A holds a hive of `n` signed events; B, a late joiner, pairs and pulls it all
/// (verify + log + materialize).
pub async fn backfill(http: &reqwest::Client, engine: &Engine, n: usize) -> Backfill {
    let a = Inst::new(engine).await;
    a.shared_hive(http, "big").await;
    let t = Instant::now();
    bulk(&a, "big", n).await;
    let setup = t.elapsed();
    let head = a.head("big").await;

    let b = Inst::new(engine).await;
    let rss_before_kib = proc_status("VmRSS:").unwrap_or(0);
    // Reset the peak-RSS watermark so VmHWM covers the backfill only.
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let cpu = CpuMeter::start(engine);
    let start = Instant::now();
    pair(http, &a, &b, "big").await;
    let mut rss_sampled_kib = 0u64;
    let ok = wait_until(Duration::from_secs(300), || {
        let b = &b;
        rss_sampled_kib = rss_sampled_kib.max(proc_status("VmRSS:").unwrap_or(0));
        async move { b.head("big").await >= head }
    })
    .await;
    let took = start.elapsed();
    let cpu = cpu.stop();
    assert!(ok, "backfill did not finish");
    let hwm_kib = proc_status("VmHWM:").unwrap_or(0);
    b.shutdown().await;
    a.shutdown().await;
    Backfill {
        events: head,
        setup,
        took,
        cpu,
        hwm_kib,
        hwm_reset,
        rss_sampled_kib,
        rss_before_kib,
    }
}

pub struct Propagation {
    /// Sorted.
    pub lat: Vec<Duration>,
}

impl Propagation {
    pub fn p(&self, p: f64) -> Duration {
        percentile(&self.lat, p)
    }

    pub fn max(&self) -> Duration {
        self.lat.last().copied().unwrap_or_default()
    }
}

/// `samples` sequential posts on A, each timed from A's answer (sent after the commit) until
/// `GET /api/v1/posts/{id}` on B finds it. B is polled about once a millisecond (tokio's
/// timer resolution), which bounds the resolution.
pub async fn propagation(http: &reqwest::Client, engine: &Engine, samples: usize) -> Propagation {
    let a = Inst::new(engine).await;
    let b = Inst::new(engine).await;
    a.shared_hive(http, "live").await;
    pair(http, &a, &b, "live").await;
    wait_head(&b, "live", a.head("live").await, Duration::from_secs(30)).await;
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let p = a
            .post(
                http,
                "/posts",
                json!({"hive": "live", "title": format!("latency {i}"), "content": "x"}),
            )
            .await;
        let t0 = Instant::now();
        let id = p["id"].as_str().unwrap().to_string();
        while !b.api_has_post(http, &id).await {
            tokio::time::sleep(Duration::from_micros(200)).await;
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "post {i} never arrived"
            );
        }
        lat.push(t0.elapsed());
    }
    lat.sort();
    b.shutdown().await;
    a.shutdown().await;
    Propagation { lat }
}

pub struct SyncedWrites {
    pub clients: usize,
    /// Posts accepted by A.
    pub writes: u64,
    /// `503` answers (write queue full) that were retried.
    pub rejected: u64,
    /// First request until the last client stopped.
    pub took: Duration,
    /// Last write accepted until B's log head reached A's.
    pub catch_up: Duration,
    /// From the first write until B caught up.
    pub cpu: Cpu,
}

impl SyncedWrites {
    pub fn writes_per_sec(&self) -> f64 {
        self.writes as f64 / self.took.as_secs_f64()
    }

    /// Writes per second counted until B had them all.
    pub fn synced_per_sec(&self) -> f64 {
        self.writes as f64 / (self.took + self.catch_up).as_secs_f64()
    }
}

/// `clients` concurrent clients post through A's HTTP API for `duration`, with B paired
/// and receiving; then waits until B's log holds everything A's does.
pub async fn synced_writes(
    http: &reqwest::Client,
    engine: &Engine,
    clients: usize,
    duration: Duration,
) -> SyncedWrites {
    let a = Arc::new(Inst::new(engine).await);
    let b = Inst::new(engine).await;
    a.shared_hive(http, "load").await;
    pair(http, &a, &b, "load").await;
    wait_head(&b, "load", a.head("load").await, Duration::from_secs(30)).await;

    let writes = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let cpu = CpuMeter::start(engine);
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (a, http) = (a.clone(), http.clone());
            let (writes, rejected) = (writes.clone(), rejected.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let body = json!({
                        "hive": "load",
                        "title": format!("client {c} post {i}"),
                        "content": "lorem ipsum dolor sit amet ".repeat(4),
                    });
                    let (_, r) = a.post_retrying(&http, "/posts", &body).await;
                    writes.fetch_add(1, Ordering::Relaxed);
                    rejected.fetch_add(r, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let took = start.elapsed();
    let head = a.head("load").await;
    wait_head(&b, "load", head, Duration::from_secs(300)).await;
    let catch_up = start.elapsed() - took;
    let cpu = cpu.stop();
    b.shutdown().await;
    let Ok(a) = Arc::try_unwrap(a) else {
        panic!("A is still shared")
    };
    a.shutdown().await;
    SyncedWrites {
        clients,
        writes: writes.load(Ordering::Relaxed),
        rejected: rejected.load(Ordering::Relaxed),
        took,
        catch_up,
        cpu,
    }
}

// ---------------------------------------------------------------------------------------
// A throwaway PostgreSQL server
// ---------------------------------------------------------------------------------------

/// A cluster started with `scripts/pg-cluster.sh`; stopped (and its directory removed)
/// when dropped, also while unwinding from a panic.
pub struct PgCluster {
    dir: PathBuf,
    pub url: String,
    /// The postmaster's pid.
    pub pid: Option<u32>,
}

fn pg_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-cluster.sh")
}

impl PgCluster {
    /// Starts a cluster in a fresh directory under /tmp (the script creates it).
    pub fn start() -> Result<PgCluster, String> {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("openhive-bench-pg.{}.{nonce}", std::process::id()));
        let out = std::process::Command::new("bash")
            .arg(pg_script())
            .arg("start")
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", pg_script().display()))?;
        // From here on the guard owns the directory, whatever happened.
        let mut cluster = PgCluster {
            dir,
            url: String::new(),
            pid: None,
        };
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || url.is_empty() {
            return Err(format!(
                "pg-cluster.sh start failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        cluster.url = url;
        cluster.pid = std::fs::read_to_string(cluster.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse().ok());
        Ok(cluster)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if !self.dir.exists() {
            return;
        }
        match std::process::Command::new("bash")
            .arg(pg_script())
            .arg("stop")
            .arg(&self.dir)
            .stdin(std::process::Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => {
                eprintln!(
                    "stopped the bench's PostgreSQL cluster ({})",
                    self.dir.display()
                );
            }
            Ok(o) => eprintln!(
                "could not stop the PostgreSQL cluster in {}: {}\n{}",
                self.dir.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!(
                "could not stop the PostgreSQL cluster in {}: {e}",
                self.dir.display()
            ),
        }
    }
}
