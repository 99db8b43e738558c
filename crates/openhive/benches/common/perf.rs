//! `perf record` of one benchmark process (`OPENHIVE_BENCH_PERF_DIR`): where its CPU went
//! during the measured part, for `perf report -i <dir>/<name>.data`.

use std::process::{Child, Command, Stdio};

/// `perf record` of one process until stopped (SIGINT), if `OPENHIVE_BENCH_PERF_DIR` is set.
pub fn record(pid: u32, name: &str) -> Option<Child> {
    let dir = std::env::var("OPENHIVE_BENCH_PERF_DIR").ok()?;
    std::fs::create_dir_all(&dir).ok()?;
    Command::new("perf")
        .args([
            "record",
            "-F",
            "299",
            "-e",
            "cpu-clock",
            "--call-graph",
            "dwarf,16384",
            "-p",
        ])
        .arg(pid.to_string())
        .arg("-o")
        .arg(format!("{dir}/{name}.data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

pub fn stop(p: Option<Child>) {
    if let Some(mut c) = p {
        let _ = Command::new("kill")
            .args(["-INT", &c.id().to_string()])
            .status();
        let _ = c.wait();
    }
}
