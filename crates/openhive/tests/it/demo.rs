//! `openhive demo` (and `demo --hub`): three instances come up, share a hive, converge, and
//! stop on Ctrl-C.

use crate::harness::bin;
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn demo_converges_and_stops_on_ctrl_c() {
    demo_run(&[]);
}

/// `openhive demo --hub`: the mesh forms through the MAP hub, with no peer configured.
#[test]
fn demo_hub_forms_the_mesh_by_itself() {
    let out = demo_run(&["--hub"]);
    assert!(out.contains("Hub-assisted"), "{out}");
}

/// Runs `openhive demo <args>` until a converged status line, then Ctrl-C; returns stdout.
fn demo_run(args: &[&str]) -> String {
    let mut child = crate::harness::KillOnDrop(
        bin()
            .arg("demo")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = String::new();
    // Wait for a status line on which all three instances show the same, non-zero posts.
    let converged = loop {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
            out.push_str(&chunk);
        }
        let done = out.split('\r').any(shows_converged);
        if done || Instant::now() > deadline {
            break done;
        }
    };
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(500)) {
        out.push_str(&chunk);
    }
    assert!(out.contains("three instances share the hive"), "{out}");
    assert!(out.contains("curl -s"), "{out}");
    assert!(converged, "no converged status line within 60 s:\n{out}");
    assert!(status.success(), "{status:?}\n{out}");
    assert!(out.contains("stopping"), "{out}");
    out
}

/// A status line on which the three instances show the same, non-zero number of posts.
/// Only numbers count: the banner's three feed URLs (`…/posts?hive=demo…`) also follow
/// "posts", and read alone in one chunk they once passed for a converged line.
fn shows_converged(line: &str) -> bool {
    let counts: Vec<u64> = line
        .split("posts ")
        .skip(1)
        .filter_map(|s| s.split_whitespace().next()?.parse().ok())
        .collect();
    counts.len() == 3 && counts[0] != 0 && counts.iter().all(|c| *c == counts[0])
}

#[test]
fn the_banner_is_not_a_converged_status_line() {
    let banner = "\nOpenHive demo: three instances share the hive \"demo\".\n\n  \
        lab     http://127.0.0.1:1   (feed: http://127.0.0.1:1/api/v1/posts?hive=demo&sort=new)\n  \
        hq      http://127.0.0.1:2   (feed: http://127.0.0.1:2/api/v1/posts?hive=demo&sort=new)\n  \
        remote  http://127.0.0.1:3   (feed: http://127.0.0.1:3/api/v1/posts?hive=demo&sort=new)\n";
    assert!(!shows_converged(banner));
    let status = |a, b, c| {
        format!(
            "lab: posts {a:>4} seq     9 lag   0   hq: posts {b:>4} seq     9 lag   0   \
             remote: posts {c:>4} seq     9 lag   0   "
        )
    };
    assert!(shows_converged(&status(12, 12, 12)));
    assert!(!shows_converged(&status(12, 11, 12)));
    assert!(!shows_converged(&status(0, 0, 0)));
    assert!(!shows_converged(
        &status(12, 12, 12).replace("posts   12", "posts    -")
    ));
}
