//! The `openhive` binary: help text, configuration errors, serve and graceful shutdown.

use crate::harness::{BinaryServer, bin, spawn_binary};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn help_documents_options_and_env_scheme() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("serve"), "{text}");
    assert!(text.contains("OPENHIVE_<SECTION>__<KEY>"), "{text}");

    let out = bin().args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--config",
        "--data-dir",
        "--listen",
        "OPENHIVE_SERVER__LISTEN",
        "body_limit_bytes",
        "allowed_cidrs",
    ] {
        assert!(text.contains(opt), "missing {opt}: {text}");
    }
}

#[test]
fn unknown_key_is_a_startup_error_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openhive.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:0\"\nbody_limit = 5\n",
    )
    .unwrap();
    let out = bin()
        .args(["serve", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("body_limit"), "{err}");
    assert!(err.contains("openhive.toml"), "{err}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created on a config error"
    );

    std::fs::write(&file, "[server\n").unwrap();
    let out = bin()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("openhive.toml"));

    let out = bin()
        .args(["serve"])
        .env("OPENHIVE_AUTH__MOD", "token")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mod"));
}

#[tokio::test]
async fn binary_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let BinaryServer {
        mut child,
        base,
        logs,
    } = spawn_binary(dir.path());
    assert!(
        !logs.contains(
            &std::fs::read_to_string(dir.path().join("admin.key"))
                .unwrap()
                .trim()
                .to_string()
        )
    );
    let resp = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(resp.status(), 200);

    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    // The WAL was checkpointed on shutdown.
    let wal = dir.path().join("openhive.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
}

/// A test that fails half-way drops its servers: the process must not outlive it (before,
/// a failing multiprocess test left `openhive serve` running).
#[test]
fn a_dropped_binary_server_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let srv = spawn_binary(dir.path());
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", srv.child.id()));
    assert!(proc_dir.exists());
    drop(srv);
    // Killed and reaped by the drop: no process, not even a zombie, is left.
    assert!(!proc_dir.exists(), "{} still exists", proc_dir.display());
}
