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
        let done = out.split('\r').any(|line| {
            let counts: Vec<&str> = line
                .split("posts")
                .skip(1)
                .filter_map(|s| s.split_whitespace().next())
                .collect();
            counts.len() == 3 && counts[0] != "0" && counts.iter().all(|c| *c == counts[0])
        });
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
