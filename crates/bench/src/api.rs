//! The API calls of the setup (not measured): agents, the hive, seed content, and sharing
//! the hive between two instances through the admin API.

use crate::http::{Conn, HttpError, Response};
use anyhow::{Context as _, bail};
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The header of the admin key.
pub const ADMIN_KEY: HeaderName = HeaderName::from_static("x-admin-key");

/// How a setup call authenticates.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    /// No header (in local auth mode: the instance's built-in admin agent).
    None,
    /// `Authorization: Bearer <api key>`.
    Bearer(&'a HeaderValue),
    /// `X-Admin-Key`.
    Admin(&'a HeaderValue),
}

impl<'a> Auth<'a> {
    /// An admin call: the key if given, else no header (local mode).
    pub fn admin(key: Option<&'a HeaderValue>) -> Auth<'a> {
        key.map_or(Auth::None, Auth::Admin)
    }
}

/// Sends a request with an optional JSON body; returns the status and the body as JSON
/// (`null` if empty or not JSON).
pub async fn call(
    conn: &mut Conn,
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Option<&Value>,
) -> Result<(StatusCode, Value), HttpError> {
    let body = body.map(|b| Bytes::from(b.to_string()));
    let (bearer, extra) = match auth {
        Auth::None => (None, None),
        Auth::Bearer(k) => (Some(k), None),
        Auth::Admin(k) => (None, Some((ADMIN_KEY, k))),
    };
    let Response { status, body } = conn.request(method, path, bearer, extra, body).await?;
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok((status, v))
}

/// Like [`call`], but fails unless the status is one of `ok`.
async fn expect(
    conn: &mut Conn,
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Option<&Value>,
    ok: &[StatusCode],
) -> anyhow::Result<Value> {
    let url = conn.target().url.clone();
    let (status, v) = call(conn, method.clone(), path, auth, body)
        .await
        .with_context(|| format!("{method} {url}{path}"))?;
    if !ok.contains(&status) {
        let msg = v["message"]
            .as_str()
            .map_or_else(|| v.to_string(), str::to_string);
        bail!("{method} {url}{path}: {status}: {msg}");
    }
    Ok(v)
}

fn string_field(v: &Value, field: &str, what: &str) -> anyhow::Result<String> {
    v[field]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{what}: the response has no {field:?}: {v}"))
}

/// Registers an agent; returns its API key.
pub async fn register_agent(conn: &mut Conn, name: &str) -> anyhow::Result<String> {
    let body = json!({ "name": name, "description": "openhive-bench load generator" });
    let v = expect(
        conn,
        Method::POST,
        "/api/v1/agents/register",
        Auth::None,
        Some(&body),
        &[StatusCode::CREATED],
    )
    .await
    .context("registering an agent")?;
    string_field(&v, "api_key", "registration")
}

/// Whether `hive` is readable on the instance of `conn`.
pub async fn hive_exists(conn: &mut Conn, auth: Auth<'_>, hive: &str) -> anyhow::Result<bool> {
    let path = format!("/api/v1/hives/{hive}");
    let url = conn.target().url.clone();
    let (status, v) = call(conn, Method::GET, &path, auth, None)
        .await
        .with_context(|| format!("GET {url}{path}"))?;
    match status {
        StatusCode::OK => Ok(true),
        StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => Ok(false),
        s => bail!("GET {url}{path}: {s}: {v}"),
    }
}

/// Creates `hive` unless it exists. Returns true if it was created.
pub async fn ensure_hive(conn: &mut Conn, auth: Auth<'_>, hive: &str) -> anyhow::Result<bool> {
    if hive_exists(conn, auth, hive).await? {
        return Ok(false);
    }
    let body = json!({ "name": hive, "description": "written by openhive-bench" });
    expect(
        conn,
        Method::POST,
        "/api/v1/hives",
        auth,
        Some(&body),
        // 409: created meanwhile by someone else.
        &[StatusCode::CREATED, StatusCode::CONFLICT],
    )
    .await
    .context("creating the hive")?;
    Ok(true)
}

/// Writes a post; returns its id.
pub async fn create_post(
    conn: &mut Conn,
    auth: Auth<'_>,
    hive: &str,
    title: &str,
    content: &str,
) -> anyhow::Result<String> {
    let body = json!({ "hive": hive, "title": title, "content": content });
    let v = expect(
        conn,
        Method::POST,
        "/api/v1/posts",
        auth,
        Some(&body),
        &[StatusCode::CREATED],
    )
    .await?;
    string_field(&v, "id", "post")
}

/// Writes a top-level comment; returns its id.
pub async fn create_comment(
    conn: &mut Conn,
    auth: Auth<'_>,
    post: &str,
    content: &str,
) -> anyhow::Result<String> {
    let body = json!({ "content": content });
    let v = expect(
        conn,
        Method::POST,
        &format!("/api/v1/posts/{post}/comments"),
        auth,
        Some(&body),
        &[StatusCode::CREATED],
    )
    .await?;
    string_field(&v, "id", "comment")
}

#[derive(Debug, Deserialize)]
struct PeerView {
    name: String,
    sync_endpoint: String,
}

#[derive(Debug, Deserialize)]
struct PeerList {
    data: Vec<PeerView>,
}

/// Makes `peer` (reached at `endpoint`) share `hive` with the instance of `conn`: adds the
/// peer if unknown (keeping the name of a known one) with the hive in its shared hives.
async fn add_peer(
    conn: &mut Conn,
    admin: Option<&HeaderValue>,
    endpoint: &str,
    hive: &str,
) -> anyhow::Result<()> {
    let auth = Auth::admin(admin);
    let peers = expect(
        conn,
        Method::GET,
        "/api/v1/sync/peers",
        auth,
        None,
        &[StatusCode::OK],
    )
    .await?;
    let list: PeerList = serde_json::from_value(peers).context("reading the peer list")?;
    let name = list
        .data
        .into_iter()
        .find(|p| p.sync_endpoint.trim_end_matches('/') == endpoint)
        .map_or_else(
            || format!("bench-{}", endpoint.trim_start_matches("http://")),
            |p| p.name,
        );
    let body = json!({ "name": name, "sync_endpoint": endpoint, "shared_hives": [hive] });
    expect(
        conn,
        Method::POST,
        "/api/v1/sync/peers",
        auth,
        Some(&body),
        &[StatusCode::CREATED, StatusCode::OK],
    )
    .await?;
    Ok(())
}

/// Shares `hive` (on `a`) with `b` in both directions through the admin API (the hubless
/// walkthrough of docs/PROTOCOL-sync.md): a sync group on `a`, each a peer of the other.
pub async fn share_hive(
    a: &mut Conn,
    a_admin: Option<&HeaderValue>,
    b: &mut Conn,
    b_admin: Option<&HeaderValue>,
    hive: &str,
) -> anyhow::Result<()> {
    let hint = "sharing the hive needs admin rights on both instances: local auth mode, or \
                --admin-key / --to-admin-key (or share it yourself and pass --hive with --no-pair)";
    let body = json!({ "hive_name": hive });
    expect(
        a,
        Method::POST,
        "/api/v1/sync/groups",
        Auth::admin(a_admin),
        Some(&body),
        &[StatusCode::CREATED, StatusCode::OK],
    )
    .await
    .context(hint)?;
    let a_endpoint = format!("{}/sync/v1", a.target().url);
    let b_endpoint = format!("{}/sync/v1", b.target().url);
    add_peer(a, a_admin, &b_endpoint, hive)
        .await
        .context(hint)?;
    add_peer(b, b_admin, &a_endpoint, hive)
        .await
        .context(hint)?;
    Ok(())
}

/// Polls until `hive` is readable on `conn`'s instance.
pub async fn wait_for_hive(conn: &mut Conn, hive: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if hive_exists(conn, Auth::None, hive).await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the hive {hive:?} did not become visible on {} within {timeout:?}: is it shared \
                 between the instances?",
                conn.target().url
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the post is readable on `conn`'s instance.
pub async fn post_visible(conn: &mut Conn, id: &str) -> anyhow::Result<bool> {
    let (status, _) = call(
        conn,
        Method::GET,
        &format!("/api/v1/posts/{id}"),
        Auth::None,
        None,
    )
    .await?;
    Ok(status == StatusCode::OK)
}
