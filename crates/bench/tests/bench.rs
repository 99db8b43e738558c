//! Black-box tests of `openhive-bench`: real servers (the `openhive` binary's own `start`,
//! on 127.0.0.1:0 with a temporary SQLite data directory) and the real `openhive-bench`
//! binary against them, reading its `--json` report. No test asserts a timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openhive_server::RunningServer;
use openhive_server::config::{AuthMode, Config};
use serde_json::Value;
use std::process::Stdio;
use tempfile::TempDir;

struct Server {
    base: String,
    running: RunningServer,
    _dir: TempDir,
}

async fn server(auth: AuthMode) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.server.data_dir = dir.path().to_path_buf();
    c.auth.mode = auth;
    // Sync fast enough for a short test.
    c.sync.heartbeat_interval_secs = 1;
    c.sync.backoff_initial_ms = 100;
    c.sync.backoff_max_secs = 1;
    let running = openhive::start(c).await.unwrap();
    Server {
        base: format!("http://{}", running.addr),
        running,
        _dir: dir,
    }
}

/// Runs `openhive-bench --json` with `args`; its report.
async fn bench(args: &[&str]) -> Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_openhive-bench"))
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "openhive-bench {args:?} failed:\n{stderr}"
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_against_a_token_mode_server_reports_ops_and_no_errors() {
    let s = server(AuthMode::Token).await;
    let pid = std::process::id().to_string();
    let r = bench(&[
        "--url",
        &s.base,
        "-c",
        "4",
        "-d",
        "2",
        "--seed-posts",
        "5",
        "--mix",
        "post=40,comment=20,reply=10,vote=20,read=4,thread=2,list=2,search=2,health=2",
        "--pid",
        &pid,
    ])
    .await;
    let load = &r["load"];
    assert!(n(&load["ops"]) > 0, "{r:#}");
    assert_eq!(n(&load["errors"]), 0, "{r:#}");
    assert!(load["latency_ms"]["p99"].is_number(), "{r:#}");
    assert!(!load["kinds"].as_array().unwrap().is_empty(), "{r:#}");
    // This test process runs the server: its CPU and memory are reported.
    assert_eq!(r["processes"][0]["pid"].to_string(), pid, "{r:#}");
    assert!(
        r["processes"][0]["rss_mib"].as_f64().unwrap() > 0.0,
        "{r:#}"
    );
    assert!(r["bench"]["cpu_s"].is_number(), "{r:#}");

    // A fixed number of operations, open loop, into the same hive.
    let hive = r["config"]["hive"].as_str().unwrap().to_string();
    let r = bench(&[
        "--url",
        &s.base,
        "-c",
        "2",
        "-n",
        "40",
        "--rate",
        "400",
        "--mix",
        "post=1,read=1",
        "--hive",
        &hive,
    ])
    .await;
    let load = &r["load"];
    assert_eq!(n(&load["ops"]) + n(&load["errors"]), 40, "{r:#}");
    assert_eq!(n(&load["errors"]), 0, "{r:#}");
    assert_eq!(r["config"]["rate"], 400.0);
    s.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_written_on_one_instance_are_seen_on_its_peer() {
    let a = server(AuthMode::Local).await;
    let b = server(AuthMode::Local).await;
    // The bench creates the hive on A and shares it with B through the admin API (local
    // auth mode: no admin key needed), then subscribes on B.
    let r = bench(&[
        "--url",
        &a.base,
        "--propagate-to",
        &b.base,
        "-c",
        "2",
        "-d",
        "1",
        "--mix",
        "post=3,vote=1",
        "--seed-posts",
        "2",
        "--burst",
        "100",
        "--rate",
        "200",
        "--after",
        "1",
        "--subscribers",
        "3",
        "--propagate-timeout",
        "60",
    ])
    .await;
    assert_eq!(n(&r["load"]["errors"]), 0, "{r:#}");
    let p = &r["propagation"];
    assert!(n(&p["load"]["posts"]) > 0, "{r:#}");
    assert_eq!(n(&p["load"]["missing"]), 0, "{r:#}");
    assert!(p["load"]["latency_ms"]["p50"].is_number(), "{r:#}");
    let burst = &p["burst"];
    assert_eq!(n(&burst["write"]["errors"]), 0, "{r:#}");
    assert_eq!(n(&burst["propagation"]["posts"]), 100, "{r:#}");
    assert_eq!(n(&burst["propagation"]["visible"]), 100, "{r:#}");
    assert!(burst["all_visible_after_s"].is_number(), "{r:#}");
    // --after: the load again at --rate right after the burst, reported on its own.
    let after = &p["after"];
    assert_eq!(n(&after["write"]["errors"]), 0, "{r:#}");
    assert!(n(&after["propagation"]["posts"]) > 0, "{r:#}");
    assert_eq!(n(&after["propagation"]["missing"]), 0, "{r:#}");
    assert!(
        after["propagation"]["latency_ms"]["p99"].is_number(),
        "{r:#}"
    );
    assert_eq!(r["config"]["after_s"], 1.0, "{r:#}");
    assert_eq!(r["config"]["subscribers"], 3, "{r:#}");
    // The two other subscribers received every post too (load, burst and after).
    let posts = n(&p["load"]["posts"]) + 100 + n(&after["propagation"]["posts"]);
    assert!(n(&p["notices"]) >= posts, "{r:#}");
    assert!(n(&p["other_subscribers_notices"]) >= 2 * posts, "{r:#}");
    a.running.shutdown().await.unwrap();
    b.running.shutdown().await.unwrap();
}
