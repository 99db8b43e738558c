//! An `openhive serve` binary in its own process, for figures that must be one instance's
//! own (CPU seconds, threads, RSS from /proc): the links and backfill benches.

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The release binary on a temporary data directory, reached at `base`; killed when dropped.
pub struct ServeProcess {
    pub child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Drop for ServeProcess {
    /// SIGTERM first, with 20 s to stop (so that a profiler wrapping the binary, e.g.
    /// `valgrind --tool=callgrind` through `OPENHIVE_BENCH_BIN`, writes its output), then
    /// SIGKILL.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid, which it still is until we reap it.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl ServeProcess {
    /// Starts `openhive serve` on a free loopback port (local auth) with `env` on top, and
    /// waits (up to `start_within`) until `/health` answers. `output` gives each stream
    /// for the port chosen.
    pub async fn spawn(
        http: &reqwest::Client,
        env: &[(&str, String)],
        output: impl FnOnce(u16) -> (Stdio, Stdio),
        start_within: Duration,
    ) -> ServeProcess {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let (stdout, stderr) = output(port);
        // `OPENHIVE_BENCH_BIN` runs another build (comparing two builds in one sitting).
        let bin = std::env::var("OPENHIVE_BENCH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_openhive").to_string());
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .env("OPENHIVE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("OPENHIVE_SERVER__DATA_DIR", dir.path())
            .env("OPENHIVE_AUTH__MODE", "local")
            .stdout(stdout)
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + start_within;
        loop {
            if let Ok(r) = http.get(format!("{base}/health")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "instance did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ServeProcess {
            child,
            base,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An API call (`/api/v1` + `path`) that must succeed; its JSON answer.
    pub async fn call(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut req = http.request(method, format!("{}/api/v1{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let st = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(st.is_success(), "{path}: {st} {v}");
        v
    }

    /// utime + stime of the process, in clock ticks ([`super::CLK_TCK`] per second).
    pub fn cpu_ticks(&self) -> u64 {
        super::stat_fields(&self.pid().to_string()).map_or(0, |f| f[10] + f[11])
    }

    /// A `/proc/<pid>/status` figure (`"VmRSS:"`, `"VmHWM:"` in KiB, `"Threads:"`); 0 if
    /// unreadable.
    pub fn status(&self, field: &str) -> u64 {
        super::proc_status_of(&self.pid().to_string(), field).unwrap_or(0)
    }
}
