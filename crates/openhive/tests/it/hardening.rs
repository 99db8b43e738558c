//! Holes found by probing the HTTP surface, each closed: unknown JSON fields refused on every
//! route that takes a body, control characters refused in names, titles and content, the
//! sync token checked before anything else of a `/sync/v1` call, errors raised before
//! routing in the JSON error shape (414, 431, 413 for any oversized body), and a data
//! directory that is the owner's only.

use crate::harness::{Opts, TestServer, assert_error, json, spawn};
use crate::sync_util::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn send(s: &TestServer, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .request(method, s.api(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    json(resp).await
}

#[tokio::test]
async fn unknown_fields_are_refused_on_every_route_that_takes_a_body() {
    let s = spawn(Opts::local()).await;
    create_hive(&s, "fields").await;
    let (st, peer) = send(
        &s,
        Method::POST,
        "/sync/peers",
        json!({ "name": "p", "sync_endpoint": "http://127.0.0.1:9/sync/v1" }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{peer}");
    let peer_id = peer["id"].as_str().unwrap().to_string();
    let local_id = s.running.state.identity.local_agent_id.clone();
    let cases = [
        (
            Method::POST,
            "/agents/register".to_string(),
            json!({ "name": "newbie", "nmae": "typo" }),
        ),
        (
            Method::PATCH,
            "/agents/me".to_string(),
            json!({ "description": "d", "is_admin": true }),
        ),
        (
            Method::POST,
            "/sync/groups".to_string(),
            json!({ "hive_name": "fields", "extra": 1 }),
        ),
        (
            Method::POST,
            "/sync/peers".to_string(),
            json!({ "name": "q", "sync_endpoint": "http://127.0.0.1:8/sync/v1", "token": "x" }),
        ),
        (
            Method::PATCH,
            format!("/sync/peers/{peer_id}"),
            json!({ "name": "q", "status": "active" }),
        ),
        (
            Method::POST,
            format!("/admin/agents/{local_id}/admin"),
            json!({ "is_admin": true, "why": "x" }),
        ),
    ];
    for (method, path, body) in cases {
        let (st, b) = send(&s, method.clone(), &path, body).await;
        assert_error(st, &b, StatusCode::BAD_REQUEST);
        assert!(
            b["details"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("unknown field")),
            "{method} {path}: {b}"
        );
    }
    // Nothing was created or changed by the refused calls.
    let (st, _) = send(&s, Method::GET, "/agents/newbie", json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, b) = send(&s, Method::GET, "/sync/peers", json!({})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(b["data"].as_array().unwrap().len(), 1, "{b}");
}

#[tokio::test]
async fn control_characters_are_refused_in_names_titles_and_content() {
    let s = spawn(Opts::local()).await;
    create_hive(&s, "ctl").await;
    for bad in [
        "nul\u{0}",
        "bidi \u{202e}txt.exe",
        "isolate\u{2066}",
        "esc\u{1b}[2J",
        "c1\u{85}",
    ] {
        let cases = [
            (
                Method::POST,
                "/hives".to_string(),
                json!({ "name": "ctl-x", "description": bad }),
            ),
            (
                Method::PATCH,
                "/hives/ctl".to_string(),
                json!({ "description": bad }),
            ),
            (
                Method::POST,
                "/posts".to_string(),
                json!({ "hive": "ctl", "title": bad, "content": "ok" }),
            ),
            (
                Method::POST,
                "/posts".to_string(),
                json!({ "hive": "ctl", "title": "ok", "content": bad }),
            ),
            (
                Method::POST,
                "/agents/register".to_string(),
                json!({ "name": "ctl-agent", "description": bad }),
            ),
            (
                Method::PATCH,
                "/agents/me".to_string(),
                json!({ "description": bad }),
            ),
            (
                Method::POST,
                "/sync/peers".to_string(),
                json!({ "name": bad, "sync_endpoint": "http://127.0.0.1:9/sync/v1" }),
            ),
        ];
        for (method, path, body) in cases {
            let (st, b) = send(&s, method.clone(), &path, body).await;
            assert_error(st, &b, StatusCode::BAD_REQUEST);
            assert!(
                b["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("control characters")),
                "{method} {path} {bad:?}: {b}"
            );
        }
        let post = new_post(&s, "ctl", "a post").await;
        let (st, b) = send(
            &s,
            Method::POST,
            &format!("/posts/{post}/comments"),
            json!({ "content": bad }),
        )
        .await;
        assert_error(st, &b, StatusCode::BAD_REQUEST);
    }
    // Tab, newline and CRLF line breaks are text.
    let (st, b) = send(
        &s,
        Method::POST,
        "/posts",
        json!({ "hive": "ctl", "title": "tab\there", "content": "line 1\nline 2\r\nline 3\tend" }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_eq!(b["content"], "line 1\nline 2\r\nline 3\tend");
}

#[tokio::test]
async fn sync_v1_checks_the_token_before_reading_the_request() {
    let s = spawn(Opts::local()).await;
    create_hive(&s, "tok").await;
    enable_group(&s, "tok").await;
    let http = reqwest::Client::new();
    // Garbage bodies, wrong content types, bad queries: without a valid token, 401.
    let calls = [
        (Method::POST, "/sync/v1/groups/tok/events", "not json {"),
        (
            Method::POST,
            "/sync/v1/groups/tok/events",
            "{\"events\": 5}",
        ),
        (Method::POST, "/sync/v1/heartbeat", "\u{0}\u{1}"),
        (
            Method::GET,
            "/sync/v1/groups/tok/events?since=abc&limit=x",
            "",
        ),
        (Method::GET, "/sync/v1/groups/tok/status", ""),
        (Method::POST, "/sync/v1/groups/tok/leave", "garbage"),
    ];
    for token in [None, Some("ohs_not_a_token")] {
        for (method, path, body) in &calls {
            let mut req = http
                .request(method.clone(), s.url(path))
                .header("content-type", "text/plain")
                .body(body.to_string());
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let (st, b) = json(req.send().await.unwrap()).await;
            assert_error(st, &b, StatusCode::UNAUTHORIZED);
            assert!(!b.to_string().contains("JSON"), "{method} {path}: {b}");
        }
    }
}

#[tokio::test]
async fn errors_before_routing_come_in_the_json_error_shape() {
    let s = spawn(Opts::local()).await;
    let http = reqwest::Client::new();
    // A long URI: 414.
    let long = format!("/hives?x={}", "a".repeat(10_000));
    let (st, b) = json(http.get(s.api(&long)).send().await.unwrap()).await;
    assert_error(st, &b, StatusCode::URI_TOO_LONG);
    // Large headers: 431.
    let mut req = http.get(s.api("/hives"));
    for i in 0..40 {
        req = req.header(format!("x-filler-{i}"), "v".repeat(1000));
    }
    let (st, b) = json(req.send().await.unwrap()).await;
    assert_error(st, &b, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // Many small headers (more than hyper's default of 100 fields): 431 in JSON too.
    let mut req = http.get(s.api("/hives"));
    for i in 0..150 {
        req = req.header(format!("x-f{i}"), "v");
    }
    let (st, b) = json(req.send().await.unwrap()).await;
    assert_error(st, &b, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // Within the limits: served.
    let mut req = http.get(s.api("/hives"));
    for i in 0..50 {
        req = req.header(format!("x-f{i}"), "v");
    }
    assert_eq!(req.send().await.unwrap().status(), StatusCode::OK);
    // A body over the limit is a 413 however it comes: with a length (refused before it is
    // read), chunked, and chunked without a JSON content type.
    let big =
        json!({ "hive": "x", "title": "t", "content": "a".repeat(2 * 1024 * 1024) }).to_string();
    let (st, b) = json(
        http.post(s.api("/posts"))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::PAYLOAD_TOO_LARGE);
    for content_type in ["application/json", "text/plain"] {
        let (st, b) = chunked_post(&s, "/api/v1/hives", content_type, big.as_bytes()).await;
        assert_error(st, &b, StatusCode::PAYLOAD_TOO_LARGE);
    }
    // A request line hyper cannot parse never reaches our code: hyper answers 400 itself,
    // with an empty body (see `http::request_limits`). What it lets through, we shape.
    let (st, b) = json(http.get(s.url("/no/such/route")).send().await.unwrap()).await;
    assert_error(st, &b, StatusCode::NOT_FOUND);
}

/// POSTs `body` with `Transfer-Encoding: chunked` (no length) over a raw connection and
/// returns the status and JSON body of the answer.
async fn chunked_post(
    s: &TestServer,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (StatusCode, Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut conn = tokio::net::TcpStream::connect(s.running.addr)
        .await
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close before the whole body is sent.
    for chunk in body.chunks(64 * 1024) {
        let mut c = format!("{:x}\r\n", chunk.len()).into_bytes();
        c.extend_from_slice(chunk);
        c.extend_from_slice(b"\r\n");
        if conn.write_all(&c).await.is_err() {
            break;
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let body: Value =
        serde_json::from_str(body.trim()).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (StatusCode::from_u16(status).unwrap(), body)
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_is_the_owners_only() {
    use std::os::unix::fs::PermissionsExt as _;
    // A directory created 0755 beforehand (as `mkdir` would) is tightened at start.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = crate::harness::test_config(&dir, openhive_server::config::AuthMode::Local);
    let s = crate::harness::spawn_with(dir, config).await;
    // Some writes, so the database and its WAL exist.
    create_hive(&s, "perm").await;
    new_post(&s, "perm", "p").await;
    let mode = std::fs::metadata(s.data_dir.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "data dir mode {mode:o}");
    let mut seen = 0;
    for entry in std::fs::read_dir(s.data_dir.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if name == "test-pg-url" {
            continue; // the test harness's note, not the server's
        }
        let mode = entry.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{name} is {mode:o}");
        seen += 1;
    }
    assert!(seen >= 2, "the key files at least");
}
