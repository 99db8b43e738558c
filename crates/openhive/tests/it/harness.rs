//! Starts real servers in-process on 127.0.0.1:0 with a temporary data directory.
//!
//! Engine: SQLite by default. With `OPENHIVE_TEST_PG_URL` set (a URL to any database of a
//! throwaway PostgreSQL server, see `scripts/pg-cluster.sh`), every server, in-process or
//! spawned binary, gets a fresh PostgreSQL database of its own instead.

use openhive::start;
use openhive_server::RunningServer;
use openhive_server::config::{AuthMode, Config};
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

/// A change to the configuration applied before start.
pub type Configure = Box<dyn FnOnce(&mut Config) + Send>;

/// Options of [`spawn`].
pub struct Opts {
    pub auth_mode: AuthMode,
    /// Further changes to the configuration before start.
    pub configure: Option<Configure>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            auth_mode: AuthMode::Token,
            configure: None,
        }
    }
}

impl Opts {
    pub fn local() -> Self {
        Opts {
            auth_mode: AuthMode::Local,
            configure: None,
        }
    }

    pub fn token() -> Self {
        Opts::default()
    }
}

pub struct TestServer {
    /// `http://127.0.0.1:<port>`
    pub base_url: String,
    pub data_dir: TempDir,
    pub running: RunningServer,
    pub config: Config,
}

/// A configuration for a test server in `dir` on a free loopback port.
pub fn test_config(dir: &TempDir, auth_mode: AuthMode) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.server.data_dir = dir.path().to_path_buf();
    c.auth.mode = auth_mode;
    use_test_engine(&mut c, dir.path());
    c
}

/// The admin URL of the test PostgreSQL server, if the suite runs on PostgreSQL.
pub fn test_pg_url() -> Option<String> {
    std::env::var("OPENHIVE_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The scratch database of the instance whose data directory is `data_dir` (created on
/// first use, then remembered in the directory so restarts find the same data).
pub fn scratch_pg_url(data_dir: &std::path::Path) -> Option<String> {
    let admin = test_pg_url()?;
    let memo = data_dir.join("test-pg-url");
    if let Ok(url) = std::fs::read_to_string(&memo) {
        return Some(url.trim().to_string());
    }
    // A blocking client: keep it off the test's async runtime.
    let url = std::thread::spawn(move || {
        let db = openhive_store_postgres::ScratchDatabase::create(&admin, "oh_it").unwrap();
        let url = db.url().to_string();
        // Restarts on this data directory reuse the database until the test process
        // ends; the next test's `create` then drops it (it reaps those of dead processes).
        std::mem::forget(db);
        url
    })
    .join()
    .unwrap();
    std::fs::create_dir_all(data_dir).unwrap();
    std::fs::write(&memo, &url).unwrap();
    Some(url)
}

/// Points `c` at the suite's engine (see the module docs).
pub fn use_test_engine(c: &mut Config, data_dir: &std::path::Path) {
    if let Some(url) = scratch_pg_url(data_dir) {
        c.storage.engine = openhive_server::config::StorageEngine::Postgres;
        c.storage.url = Some(url);
    }
}

/// With `OPENHIVE_TEST_LOG` set (an env filter such as `warn`), servers' logs go to stderr.
fn init_test_log() {
    if let Ok(filter) = std::env::var("OPENHIVE_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

pub async fn spawn(opts: Opts) -> TestServer {
    init_test_log();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir, opts.auth_mode);
    if let Some(f) = opts.configure {
        f(&mut config);
    }
    spawn_with(dir, config).await
}

/// Starts a server with `config` (whose data_dir should be inside `dir`).
pub async fn spawn_with(dir: TempDir, config: Config) -> TestServer {
    let running = start(config.clone()).await.unwrap();
    TestServer {
        base_url: format!("http://{}", running.addr),
        data_dir: dir,
        running,
        config,
    }
}

impl TestServer {
    /// `base_url` + `/api/v1` + `path`.
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base_url)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Stops the server and starts it again on the same data directory (new port).
    pub async fn restart(self) -> TestServer {
        let TestServer {
            data_dir,
            running,
            config,
            ..
        } = self;
        running.shutdown().await.unwrap();
        spawn_with(data_dir, config).await
    }

    /// Contents of the admin key file.
    pub fn admin_key(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("admin.key"))
            .unwrap()
            .trim()
            .to_string()
    }
}

pub fn client() -> Client {
    Client::new()
}

/// Registers `name` and returns its API key.
pub async fn register(client: &Client, server: &TestServer, name: &str) -> String {
    let resp = client
        .post(server.api("/agents/register"))
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .unwrap();
    let (status, body) = json(resp).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["api_key"].as_str().unwrap().to_string()
}

/// Status and JSON body of a response.
pub async fn json(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, body)
}

/// Asserts the API error shape: `{"error": <reason phrase>, "message": <string>, ...}`.
pub fn assert_error(status: StatusCode, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(
        body["error"].as_str(),
        expected.canonical_reason(),
        "error field: {body}"
    );
    assert!(body["message"].is_string(), "message field: {body}");
}

/// The `openhive` binary, with the developer's `OPENHIVE_*` environment removed.
pub fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_openhive"));
    // Keep the developer's environment from leaking into the tests.
    for (k, _) in std::env::vars() {
        if k.starts_with("OPENHIVE_") {
            c.env_remove(k);
        }
    }
    c
}

pub fn strip_ansi(s: &str) -> String {
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

/// A child process that is killed (and reaped) when dropped: a test that fails half-way
/// leaves no server running behind it.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Already exited (a test that stopped it): both calls fail harmlessly.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `openhive` binary serving in a child process (killed when dropped).
pub struct BinaryServer {
    pub child: KillOnDrop,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// Log lines up to and including the "listening on" line.
    pub logs: String,
}

/// Starts `openhive serve` on a free loopback port with `data_dir`; waits until it listens.
pub fn spawn_binary(data_dir: &std::path::Path) -> BinaryServer {
    spawn_binary_env(data_dir, &[])
}

/// [`spawn_binary`] with extra environment variables (e.g. `OPENHIVE_SYNC__...`).
pub fn spawn_binary_env(data_dir: &std::path::Path, env: &[(&str, &str)]) -> BinaryServer {
    use std::io::{BufRead as _, BufReader};
    use std::time::{Duration, Instant};
    let mut cmd = bin();
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(url) = scratch_pg_url(data_dir) {
        cmd.env("OPENHIVE_STORAGE__ENGINE", "postgres")
            .env("OPENHIVE_STORAGE__URL", url);
    }
    let mut child = KillOnDrop(
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::io::Result::ok)
        {
            let _ = tx.send(strip_ansi(&line));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut logs = String::new();
    let base = loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            panic!("server did not report its address; logs:\n{logs}")
        };
        logs.push_str(&line);
        logs.push('\n');
        if let Some(i) = line.find("listening on http://") {
            let rest = &line[i + "listening on ".len()..];
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    BinaryServer { child, base, logs }
}
