//! The `openhive` binary: help text, configuration errors, serve and graceful shutdown.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_openhive"));
    // Keep the developer's environment from leaking into the tests.
    for (k, _) in std::env::vars() {
        if k.starts_with("OPENHIVE_") {
            c.env_remove(k);
        }
    }
    c
}

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

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn binary_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(strip_ansi(&line));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut logs = String::new();
    let base = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("server did not report its address; logs:\n{logs}")
            });
        logs.push_str(&line);
        logs.push('\n');
        if let Some(i) = line.find("listening on http://") {
            let rest = &line[i + "listening on ".len()..];
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
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
