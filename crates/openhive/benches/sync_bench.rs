//! Hive Sync benchmark: late-joiner backfill throughput and peak RSS, steady-state
//! propagation latency, and convergence time of three instances with concurrent writers.
//!
//! Run: `cargo bench -p openhive-server --bench sync_bench`
//! (`OPENHIVE_BENCH_BACKFILL=100000` sets the backfill size; default 100 000.)
//!
//! All instances run in this process on 127.0.0.1:0 and talk real HTTP to each other, so
//! every figure includes both ends sharing the same cores (2 vCPU here): the origin serving
//! pages and the joiner verifying signatures, logging and materializing.
//! Peak RSS is the process's VmHWM, reset (via /proc/self/clear_refs) just before the
//! backfill: it covers the serving and the joining instance together.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openhive::start;
use openhive_core::ids::{self, Kind};
use openhive_core::payload::{AgentRef, Payload, PostCreated};
use openhive_core::{Event, time};
use openhive_server::RunningServer;
use openhive_server::config::{AuthMode, Config};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct Inst {
    _dir: tempfile::TempDir,
    srv: RunningServer,
    base: String,
}

impl Inst {
    async fn new(secret: bool) -> Inst {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.server.listen = "127.0.0.1:0".into();
        c.server.data_dir = dir.path().to_path_buf();
        c.auth.mode = AuthMode::Local;
        c.sync.heartbeat_interval_secs = 1;
        c.sync.backoff_initial_ms = 100;
        c.sync.backoff_max_secs = 2;
        if secret {
            c.sync.handshake_secret = Some("bench-secret".into());
        }
        let srv = start(c).await.unwrap();
        let base = format!("http://{}", srv.addr);
        Inst {
            _dir: dir,
            srv,
            base,
        }
    }

    fn endpoint(&self) -> String {
        format!("{}/sync/v1", self.base)
    }

    async fn post(&self, http: &reqwest::Client, path: &str, body: Value) -> Value {
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

    async fn hive_id(&self, hive: &str) -> Option<String> {
        let h = hive.to_string();
        self.srv
            .state
            .store
            .read(move |c| openhive_store::hives::id_by_name(c, &h))
            .await
            .unwrap()
    }

    async fn head(&self, hive: &str) -> i64 {
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

    async fn has_post(&self, id: &str) -> bool {
        let id = id.to_string();
        self.srv
            .state
            .store
            .read(move |c| openhive_store::posts::get(c, &id, None))
            .await
            .unwrap()
            .is_some()
    }
}

async fn pair(http: &reqwest::Client, a: &Inst, b: &Inst, hive: &str) {
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

/// Appends `n` signed `post_created` events to `hive` on `s` through the store.
async fn bulk(s: &Inst, hive: &str, n: usize) {
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
            let events: Vec<(Event, Payload)> = (start..end)
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
                    let ev = Event::sign_new(
                        &state.identity.key,
                        &inst,
                        &hive,
                        p.event_type(),
                        t0 + i as i64,
                        p.to_json(),
                    );
                    (ev, p)
                })
                .collect();
            let hid = hive_id.clone();
            state
                .store
                .write_blocking(move |tx| -> Result<(), openhive_store::StoreError> {
                    for (ev, p) in &events {
                        openhive_store::ingest::ingest(tx, &hid, ev, p, None, time::now_ms())?;
                    }
                    Ok(())
                })
                .unwrap();
        }
    })
    .await
    .unwrap();
}

fn proc_status(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn wait_until<F, Fut>(timeout: Duration, mut f: F) -> bool
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

async fn backfill(http: &reqwest::Client, n: usize) {
    let a = Inst::new(false).await;
    a.post(http, "/hives", json!({"name": "big"})).await;
    a.post(http, "/sync/groups", json!({"hive_name": "big"}))
        .await;
    let t = Instant::now();
    bulk(&a, "big", n).await;
    let head = a.head("big").await;
    println!(
        "setup: {n} signed events written on A in {:.1} s (log head {head})",
        t.elapsed().as_secs_f64()
    );

    let b = Inst::new(false).await;
    let rss_before = proc_status("VmRSS:").unwrap_or(0);
    // Reset the peak-RSS watermark so VmHWM covers the backfill only.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let start = Instant::now();
    pair(http, &a, &b, "big").await;
    let mut peak_sampled = 0u64;
    let ok = wait_until(Duration::from_secs(150), || {
        let b = &b;
        peak_sampled = peak_sampled.max(proc_status("VmRSS:").unwrap_or(0));
        async move { b.head("big").await >= head }
    })
    .await;
    let took = start.elapsed();
    assert!(ok, "backfill did not finish");
    let hwm = proc_status("VmHWM:").unwrap_or(0);
    println!(
        "backfill: {head} events (verify + log + materialize) in {:.2} s = {:.0} events/s",
        took.as_secs_f64(),
        head as f64 / took.as_secs_f64()
    );
    println!(
        "backfill peak RSS (whole process: A serving + B ingesting): VmHWM {} MiB{} (sampled VmRSS max {} MiB, before {} MiB)",
        hwm / 1024,
        if reset { "" } else { " [watermark not reset]" },
        peak_sampled / 1024,
        rss_before / 1024
    );
    b.srv.shutdown().await.unwrap();
    a.srv.shutdown().await.unwrap();
}

async fn latency(http: &reqwest::Client, samples: usize) {
    let a = Inst::new(false).await;
    let b = Inst::new(false).await;
    a.post(http, "/hives", json!({"name": "live"})).await;
    a.post(http, "/sync/groups", json!({"hive_name": "live"}))
        .await;
    pair(http, &a, &b, "live").await;
    let head = a.head("live").await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            b.head("live").await >= head
        })
        .await
    );
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let p = a
            .post(
                http,
                "/posts",
                json!({"hive": "live", "title": format!("latency {i}"), "content": "x"}),
            )
            .await;
        // The response is sent after the commit on A.
        let t0 = Instant::now();
        let id = p["id"].as_str().unwrap().to_string();
        loop {
            if b.has_post(&id).await {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "post {i} never arrived"
            );
        }
        lat.push(t0.elapsed());
    }
    lat.sort();
    println!(
        "propagation A→B (commit on A → visible in B's store), {samples} sequential posts: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );
    b.srv.shutdown().await.unwrap();
    a.srv.shutdown().await.unwrap();
}

async fn convergence(http: &reqwest::Client, per_writer: usize) {
    let a = Inst::new(false).await;
    let b = Inst::new(false).await;
    let c = Inst::new(false).await;
    a.post(http, "/hives", json!({"name": "mesh"})).await;
    a.post(http, "/sync/groups", json!({"hive_name": "mesh"}))
        .await;
    pair(http, &a, &b, "mesh").await;
    pair(http, &a, &c, "mesh").await;
    pair(http, &b, &c, "mesh").await;
    let head = a.head("mesh").await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            b.head("mesh").await >= head && c.head("mesh").await >= head
        })
        .await
    );
    let insts = [&a, &b, &c];
    let start = Instant::now();
    let writers = insts.iter().enumerate().map(|(w, s)| {
        let http = http.clone();
        async move {
            let mut last = None;
            for i in 0..per_writer {
                let p = s
                    .post(
                        &http,
                        "/posts",
                        json!({"hive": "mesh", "title": format!("w{w} {i}"), "content": "c"}),
                    )
                    .await;
                let id = p["id"].as_str().unwrap().to_string();
                if i % 4 == 1
                    && let Some(prev) = &last
                {
                    s.post(
                        &http,
                        &format!("/posts/{prev}/comments"),
                        json!({"content": "re"}),
                    )
                    .await;
                    s.post(&http, &format!("/posts/{prev}/vote"), json!({"value": 1}))
                        .await;
                }
                last = Some(id);
            }
        }
    });
    futures::future::join_all(writers).await;
    let stop = Instant::now();
    let writes = start.elapsed();
    let heads = [
        a.head("mesh").await,
        b.head("mesh").await,
        c.head("mesh").await,
    ];
    let ok = wait_until(Duration::from_secs(60), || async {
        let h = [
            a.head("mesh").await,
            b.head("mesh").await,
            c.head("mesh").await,
        ];
        h[0] == h[1] && h[1] == h[2] && h[0] >= *heads.iter().max().unwrap()
    })
    .await;
    assert!(ok, "3 instances did not converge");
    let conv = stop.elapsed();
    let total = a.head("mesh").await;
    println!(
        "3 instances × {per_writer} posts (+ comments, votes) written concurrently in {:.2} s; all logs identical ({total} events) {:.0} ms after the last write",
        writes.as_secs_f64(),
        conv.as_secs_f64() * 1e3
    );
    for s in [c, b, a] {
        s.srv.shutdown().await.unwrap();
    }
}

fn main() {
    let n: usize = std::env::var("OPENHIVE_BENCH_BACKFILL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = Instant::now();
    rt.block_on(async {
        let http = reqwest::Client::new();
        println!(
            "== Hive Sync benchmark ({} CPUs) ==",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        backfill(&http, n).await;
        latency(&http, 300).await;
        convergence(&http, 300).await;
    });
    println!("total bench time {:.1} s", t.elapsed().as_secs_f64());
}
