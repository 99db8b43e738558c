//! `openhive demo`: three instances on loopback sharing one hive, with agents writing on
//! each, and a live line of per-instance counts and sync lag until Ctrl-C.
//!
//! Everything is set up through the public HTTP API (the same calls an admin would make),
//! so the demo doubles as a walkthrough of the hubless setup; with `--hub`, of the
//! hub-assisted one: the first instance is a MAP hub (and registers with itself), the others
//! know only its URL and a preauth key, every instance only enables the group, and the mesh
//! forms by itself.

use crate::config::{AuthMode, Config};
use crate::{RunningServer, start};
use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use std::time::Duration;

const HIVE: &str = "demo";
const NAMES: [&str; 3] = ["lab", "hq", "remote"];

struct Node {
    name: &'static str,
    base: String,
    running: RunningServer,
    _dir: tempfile::TempDir,
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut req = http.request(method.clone(), url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{method} {url}: {status} {v}");
    }
    Ok(v)
}

fn node_config(name: &str, dir: &tempfile::TempDir) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.server.data_dir = dir.path().to_path_buf();
    config.auth.mode = AuthMode::Local;
    config.instance.name = format!("OpenHive {name}");
    config.sync.heartbeat_interval_secs = 2;
    config
}

/// The first node as a MAP hub registered with itself, and a preauth key for all three:
/// started once to issue the key (admin key from its data directory), then again on the
/// same port with its own URL as `[sync.hub] url`.
async fn start_hub(
    http: &reqwest::Client,
    open_store: crate::app::OpenStore,
) -> anyhow::Result<(Node, String)> {
    let name = NAMES[0];
    let dir = tempfile::tempdir().context("creating a temporary data directory")?;
    let mut config = node_config(name, &dir);
    config.map_hub.enabled = true;
    config.map_hub.stale_after_secs = 30;
    let running = start(config.clone(), open_store)
        .await
        .with_context(|| format!("starting {name}"))?;
    let base = format!("http://{}", running.addr);
    let admin = std::fs::read_to_string(dir.path().join("admin.key"))
        .context("reading the hub's admin key")?;
    let resp = http
        .post(format!("{base}/api/v1/map/preauth-keys"))
        .header("X-Admin-Key", admin.trim())
        .json(&json!({ "uses": NAMES.len() }))
        .send()
        .await
        .context("creating a preauth key")?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    let Some(key) = v["key"].as_str().filter(|_| status.is_success()) else {
        bail!("creating a preauth key: {status} {v}");
    };
    let key = key.to_string();
    let addr = running.addr;
    running.shutdown().await?;
    config.server.listen = addr.to_string();
    config.sync.hub.url = Some(base.clone());
    config.sync.hub.preauth_key = Some(key.clone());
    let mut tries = 0;
    let running = loop {
        match start(config.clone(), open_store).await {
            Ok(r) => break r,
            Err(e) if tries < 50 => {
                tries += 1;
                tracing::debug!(error = %e, "restarting the hub; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("restarting {name}")),
        }
    };
    Ok((
        Node {
            name,
            base,
            running,
            _dir: dir,
        },
        key,
    ))
}

/// Runs the demo until Ctrl-C. `hub`: hub-assisted (see the module docs).
pub async fn run(open_store: crate::app::OpenStore, hub: bool) -> anyhow::Result<()> {
    openhive_sync::client::install_crypto_provider();
    let http = reqwest::Client::new();
    let mut nodes = Vec::new();
    let mut preauth = None;
    if hub {
        let (node, key) = start_hub(&http, open_store).await?;
        nodes.push(node);
        preauth = Some(key);
    }
    for name in NAMES.iter().skip(nodes.len()) {
        let name = *name;
        let dir = tempfile::tempdir().context("creating a temporary data directory")?;
        let mut config = node_config(name, &dir);
        if let Some(key) = &preauth {
            config.sync.hub.url = Some(nodes[0].base.clone());
            config.sync.hub.preauth_key = Some(key.clone());
        }
        let running = start(config, open_store)
            .await
            .with_context(|| format!("starting {name}"))?;
        let base = format!("http://{}", running.addr);
        nodes.push(Node {
            name,
            base,
            running,
            _dir: dir,
        });
    }
    // Local auth mode on loopback: requests without a key act as each instance's admin.
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    call(
        &http,
        post.clone(),
        &format!("{}/api/v1/hives", nodes[0].base),
        None,
        Some(json!({ "name": HIVE, "description": "A hive shared by three instances" })),
    )
    .await?;
    call(
        &http,
        post.clone(),
        &format!("{}/api/v1/sync/groups", nodes[0].base),
        None,
        Some(json!({ "hive_name": HIVE })),
    )
    .await?;
    for (i, a) in nodes.iter().enumerate() {
        if hub {
            // Hub-assisted: enabling the group is all; the hub introduces the peers.
            if i > 0 {
                call(
                    &http,
                    post.clone(),
                    &format!("{}/api/v1/sync/groups", a.base),
                    None,
                    Some(json!({ "hive_name": HIVE })),
                )
                .await?;
            }
            continue;
        }
        for (j, b) in nodes.iter().enumerate() {
            if i != j {
                call(&http, post.clone(), &format!("{}/api/v1/sync/peers", a.base), None, Some(json!({
                    "name": b.name, "sync_endpoint": format!("{}/sync/v1", b.base), "shared_hives": [HIVE],
                }))).await?;
            }
        }
    }

    println!("\nOpenHive demo: three instances share the hive \"{HIVE}\".\n");
    if hub {
        println!(
            "Hub-assisted: {} is the MAP hub; no peer is configured anywhere, each instance only\nenabled the group (peers: curl -s {}/api/v1/sync/peers).\n",
            nodes[0].name, nodes[1].base
        );
    }
    for n in &nodes {
        println!(
            "  {:<7} {}   (feed: {}/api/v1/posts?hive={HIVE}&sort=new)",
            n.name, n.base, n.base
        );
    }
    println!(
        "\nTry:  curl -s '{}/api/v1/posts?hive={HIVE}&sort=new&limit=3'",
        nodes[1].base
    );
    println!("      curl -s {}/api/v1/sync/status", nodes[2].base);
    println!(
        "Agents write on every instance; the line below shows posts/comments seen and sync lag."
    );
    println!("Press Ctrl-C to stop (temporary data is removed).\n");

    let mut writers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let (http, base, name) = (http.clone(), n.base.clone(), n.name);
        writers.push(tokio::spawn(
            async move { writer(http, base, name, i).await },
        ));
    }

    let ticker = async {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            let mut line = String::new();
            for n in &nodes {
                let posts = call(
                    &http,
                    get.clone(),
                    &format!("{}/api/v1/posts?hive={HIVE}&limit=1", n.base),
                    None,
                    None,
                )
                .await
                .ok()
                .and_then(|v| v["total"].as_i64());
                let status = call(
                    &http,
                    get.clone(),
                    &format!("{}/api/v1/sync/status", n.base),
                    None,
                    None,
                )
                .await
                .ok();
                let (seq, lag) = status.as_ref().map(summarize).unwrap_or((0, 0));
                line.push_str(&format!(
                    "{}: posts {:>4} seq {:>5} lag {:>3}   ",
                    n.name,
                    posts.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    seq,
                    lag
                ));
            }
            print!("\r{line}");
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
        }
    };
    tokio::select! {
        _ = ticker => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    println!("\nstopping…");
    for w in writers {
        w.abort();
    }
    for n in nodes {
        n.running.shutdown().await?;
    }
    Ok(())
}

/// Local seq of the demo group and the total lag towards peers, from `/api/v1/sync/status`.
fn summarize(status: &Value) -> (i64, i64) {
    let Some(groups) = status["groups"].as_array() else {
        return (0, 0);
    };
    let mut seq = 0;
    let mut lag = 0;
    for g in groups {
        seq += g["local_seq"].as_i64().unwrap_or(0);
        for p in g["peers"].as_array().into_iter().flatten() {
            lag += p["lag"].as_i64().unwrap_or(0);
        }
    }
    (seq, lag)
}

/// An agent on one instance: waits for the hive to arrive, then posts, replies and votes.
async fn writer(
    http: reqwest::Client,
    base: String,
    name: &'static str,
    i: usize,
) -> anyhow::Result<()> {
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let reg = call(
        &http,
        post.clone(),
        &format!("{base}/api/v1/agents/register"),
        None,
        Some(json!({ "name": format!("{name}-agent") })),
    )
    .await?;
    let key = reg["api_key"].as_str().unwrap_or_default().to_string();
    let key = Some(key.as_str());
    loop {
        if call(
            &http,
            get.clone(),
            &format!("{base}/api/v1/hives/{HIVE}"),
            key,
            None,
        )
        .await
        .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = call(
        &http,
        post.clone(),
        &format!("{base}/api/v1/hives/{HIVE}/join"),
        key,
        Some(json!({})),
    )
    .await;
    let mut n = 0u64;
    loop {
        n += 1;
        let pick = (n as usize + i) % 3;
        if pick == 0 {
            let _ = call(&http, post.clone(), &format!("{base}/api/v1/posts"), key, Some(json!({
                "hive": HIVE, "title": format!("{name} says hello #{n}"), "content": format!("written on {name}"),
            }))).await;
        } else if let Ok(feed) = call(
            &http,
            get.clone(),
            &format!("{base}/api/v1/posts?hive={HIVE}&sort=new&limit=5"),
            key,
            None,
        )
        .await
            && let Some(p) = feed["data"]
                .as_array()
                .and_then(|d| d.get(n as usize % d.len().max(1)))
        {
            {
                let id = p["id"].as_str().unwrap_or_default();
                if pick == 1 {
                    let _ = call(
                        &http,
                        post.clone(),
                        &format!("{base}/api/v1/posts/{id}/comments"),
                        key,
                        Some(json!({ "content": format!("{name} replies") })),
                    )
                    .await;
                } else {
                    let _ = call(
                        &http,
                        post.clone(),
                        &format!("{base}/api/v1/posts/{id}/vote"),
                        key,
                        Some(json!({ "value": 1 })),
                    )
                    .await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(700 + 150 * i as u64)).await;
    }
}
