//! The web UI: what the server sends (assets, headers, routes left alone), and what a
//! person sees in a real browser. Headless Chromium loads the pages from a real server and
//! dumps the DOM once its scripts have run (`--dump-dom` with a virtual time budget); the
//! tests read the text of that DOM.
//!
//! Chromium is required: `chromium` on the PATH (or `OPENHIVE_TEST_CHROMIUM=<path>`).
//! `.ci/run` installs it; a missing browser fails these tests, it never skips them.

use crate::harness::{Opts, TestServer, assert_error, client, json, register, spawn};
use crate::sync_util::{self, add_peer, create_hive, enable_group, endpoint, new_post};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one page load may take before the browser is stopped.
const PAGE_DEADLINE: Duration = Duration::from_secs(90);
/// Deadline of conditions that need the sync engine to act (pairing, peer timeout).
const T: Duration = Duration::from_secs(60);

/// The browser's path: `OPENHIVE_TEST_CHROMIUM`, else the first of `chromium` and
/// `chromium-browser` that answers `--version`. Panics with the fix when there is none.
fn chromium() -> String {
    let candidates: Vec<String> = match std::env::var("OPENHIVE_TEST_CHROMIUM") {
        Ok(p) if !p.is_empty() => vec![p],
        _ => vec!["chromium".into(), "chromium-browser".into()],
    };
    for c in &candidates {
        let ok = Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return c.clone();
        }
    }
    panic!(
        "the web UI tests need headless Chromium and found none of {candidates:?}: install it \
         (Debian: apt-get install -y --no-install-recommends chromium; .ci/run does) or set \
         OPENHIVE_TEST_CHROMIUM to its path"
    );
}

/// Loads `url` in headless Chromium (fresh profile) and returns the DOM after its scripts
/// ran for `budget_ms` of virtual time.
async fn dump_dom(url: &str, budget_ms: u64) -> String {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || dump_dom_blocking(&url, budget_ms))
        .await
        .unwrap()
}

fn dump_dom_blocking(url: &str, budget_ms: u64) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting chromium: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + PAGE_DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish loading {url} within {PAGE_DEADLINE:?}: {}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = out.join().unwrap();
    let log = err.join().unwrap_or_default();
    assert!(
        status.success() && dom.contains("<html"),
        "chromium failed on {url} ({status}): {log}\n{dom}"
    );
    dom
}

/// The text a person sees in an HTML fragment: tags removed, entities decoded, runs of
/// white space collapsed.
fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The outer HTML of the first element whose start tag contains `marker` (an attribute
/// such as `data-peer="B"`), up to the first end tag of that name after it (so a nested
/// element of the same name ends it: a reply's text still lies inside its parent's span).
fn element<'a>(dom: &'a str, tag: &str, marker: &str) -> Option<&'a str> {
    let open = format!("<{tag} ");
    let mut from = 0;
    while let Some(i) = dom[from..].find(&open) {
        let start = from + i;
        let head_end = start + dom[start..].find('>')?;
        if dom[start..head_end].contains(marker) {
            let close = format!("</{tag}>");
            let end = head_end + dom[head_end..].find(&close)? + close.len();
            return Some(&dom[start..end]);
        }
        from = head_end;
    }
    None
}

async fn authed_post(s: &TestServer, key: &str, path: &str, body: Value) -> Value {
    let resp = client()
        .post(s.api(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (st, b) = json(resp).await;
    assert_eq!(st, StatusCode::CREATED, "POST {path}: {b}");
    b
}

#[tokio::test]
async fn ui_assets_are_served_with_types_validators_and_a_strict_policy() {
    let s = spawn(Opts::token()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // `/` sends the browser to the UI.
    let r = http.get(s.url("/")).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], "/ui/");

    let r = http.get(s.url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let etag = h["etag"].to_str().unwrap().to_string();
    let body = r.text().await.unwrap();
    assert!(
        body.contains(r#"<script type="module" src="/ui/app.js">"#),
        "{body}"
    );
    // No outside origin anywhere in the page.
    assert!(
        !body.contains("http://") && !body.contains("https://"),
        "{body}"
    );

    // Revalidation costs a 304 without a body.
    let r = http
        .get(s.url("/ui/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()["etag"], etag.as_str());

    for (file, ty) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("sync.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
    ] {
        let r = http
            .get(s.url(&format!("/ui/{file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{file}");
        assert_eq!(r.headers()["content-type"], ty, "{file}");
        assert!(r.headers().contains_key("content-security-policy"));
    }

    // Unknown files, and every route that existed before, answer as before.
    let (st, b) = json(http.get(s.url("/ui/nope.js")).send().await.unwrap()).await;
    assert_error(st, &b, StatusCode::NOT_FOUND);
    let (st, b) = json(http.get(s.url("/ui/../admin.key")).send().await.unwrap()).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    let (st, b) = json(http.get(s.api("/nope")).send().await.unwrap()).await;
    assert_error(st, &b, StatusCode::NOT_FOUND);
    let (st, b) = json(http.get(s.url("/health")).send().await.unwrap()).await;
    assert_eq!((st, b["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (st, b) = json(
        http.get(s.url("/.well-known/openhive.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (st, b) = json(http.get(s.api("/hives")).send().await.unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert!(b["data"].is_array());
    // The admin API stays closed to a browser without the key.
    let (st, b) = json(http.get(s.api("/sync/status")).send().await.unwrap()).await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn ui_in_chromium_shows_hives_posts_threads_and_search_as_text() {
    let s = spawn(Opts::token()).await;
    let http = client();
    let key = register(&http, &s, "alice").await;
    authed_post(
        &s,
        &key,
        "/hives",
        json!({ "name": "gardening", "description": "Growing things together" }),
    )
    .await;
    let post = authed_post(
        &s,
        &key,
        "/posts",
        json!({ "hive": "gardening", "title": "Tomatoes in November",
                "content": "Still ripening on the vine." }),
    )
    .await;
    let post_id = post["id"].as_str().unwrap();
    let c1 = authed_post(
        &s,
        &key,
        &format!("/posts/{post_id}/comments"),
        json!({ "content": "Water them less." }),
    )
    .await;
    authed_post(
        &s,
        &key,
        &format!("/posts/{post_id}/comments"),
        json!({ "content": "Agreed, and pick them green.", "parent_id": c1["id"] }),
    )
    .await;
    // Agent-written markup must be shown as text, never run.
    let hostile = r#"<img src=x onerror="document.title='pwned'"> bold <b>claim</b>"#;
    authed_post(
        &s,
        &key,
        "/posts",
        json!({ "hive": "gardening", "title": hostile, "content": "<script>alert(1)</script>" }),
    )
    .await;

    // The hive list, as a person sees it.
    let dom = dump_dom(&s.url("/ui/"), 5000).await;
    let list = element(&dom, "ul", r#"id="hive-list""#)
        .unwrap_or_else(|| panic!("no hive list in the page:\n{dom}"));
    let text = visible_text(list);
    assert!(text.contains("gardening"), "{text}");
    assert!(text.contains("Growing things together"), "{text}");
    assert!(visible_text(&dom).contains("Tomatoes in November"), "{dom}");

    // One post and its thread, the reply inside its parent.
    let dom = dump_dom(&s.url(&format!("/ui/#/p/{post_id}")), 5000).await;
    let article = element(&dom, "article", "data-post=")
        .unwrap_or_else(|| panic!("no post in the page:\n{dom}"));
    let text = visible_text(article);
    assert!(text.contains("Tomatoes in November"), "{text}");
    assert!(text.contains("Still ripening on the vine."), "{text}");
    assert!(text.contains("by alice"), "{text}");
    let parent = element(
        &dom,
        "li",
        &format!(r#"data-comment="{}""#, c1["id"].as_str().unwrap()),
    )
    .unwrap_or_else(|| panic!("no comment in the page:\n{dom}"));
    let text = visible_text(parent);
    assert!(text.contains("Water them less."), "{text}");
    assert!(text.contains("Agreed, and pick them green."), "{text}");

    // The hostile post: its markup is text on the page, no element came out of it.
    let dom = dump_dom(&s.url("/ui/#/h/gardening"), 5000).await;
    assert!(visible_text(&dom).contains(hostile), "{dom}");
    assert!(
        !dom.contains("<img"),
        "markup from a post became an element:\n{dom}"
    );
    assert!(!dom.contains("<b>claim"), "{dom}");
    assert!(!dom.contains("pwned</title>"), "{dom}");
    assert!(visible_text(&dom).contains("Tomatoes in November"), "{dom}");

    // Search.
    let dom = dump_dom(&s.url("/ui/#/search?q=tomatoes"), 5000).await;
    let text = visible_text(&dom);
    assert!(text.contains("Search: tomatoes"), "{text}");
    assert!(text.contains("Posts (1)"), "{text}");
    assert!(text.contains("Tomatoes in November"), "{text}");

    // An unknown post is an error message on the page, not a blank one.
    let dom = dump_dom(&s.url("/ui/#/p/post_nope"), 5000).await;
    assert!(visible_text(&dom).contains("not found"), "{dom}");
}

/// The text of the dashboard row of peer `name` on `s`'s UI, if the page shows one.
async fn peer_row(s: &TestServer, admin_key: Option<&str>, name: &str) -> (String, Option<String>) {
    let url = match admin_key {
        Some(k) => s.url(&format!("/ui/#/sync?admin_key={k}")),
        None => s.url("/ui/#/sync"),
    };
    let dom = dump_dom(&url, 4000).await;
    let row = element(&dom, "tr", &format!(r#"data-peer="{name}""#)).map(visible_text);
    (dom, row)
}

#[tokio::test]
async fn ui_sync_dashboard_shows_a_peer_turning_from_active_to_unreachable() {
    // A: token mode (the dashboard needs the admin key), quick to call a silent peer
    // unreachable. B: the peer that will be killed.
    let a = spawn(Opts {
        configure: Some(Box::new(|c| {
            sync_util::fast_sync(c);
            c.sync.peer_timeout_secs = 4;
        })),
        ..Opts::token()
    })
    .await;
    let b = sync_util::instance().await;
    let admin_key = a.admin_key();
    create_hive(&b, "eng").await;
    new_post(&b, "eng", "from B").await;
    enable_group(&b, "eng").await;
    add_peer(&b, "A", &a, &["eng"]).await;
    let resp = client()
        .post(a.api("/sync/peers"))
        .header("x-admin-key", &admin_key)
        .json(&json!({ "name": "B", "sync_endpoint": endpoint(&b), "shared_hives": ["eng"] }))
        .send()
        .await
        .unwrap();
    let (st, body) = json(resp).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");

    // Without the key the page asks for it and shows no peer.
    let (dom, row) = peer_row(&a, None, "B").await;
    assert!(row.is_none(), "{dom}");
    assert!(visible_text(&dom).contains("Admin key required"), "{dom}");
    let (dom, row) = peer_row(&a, Some("not-the-key"), "B").await;
    assert!(row.is_none(), "{dom}");
    assert!(
        visible_text(&dom).contains("admin key was refused"),
        "{dom}"
    );

    // With the key: B's row, added through the API, active once the pairing is done.
    let row = sync_util::wait_for(T, "B's row active on A's dashboard", || async {
        let (_, row) = peer_row(&a, Some(&admin_key), "B").await;
        row.filter(|r| r.contains(" active "))
    })
    .await;
    assert!(row.contains(" api "), "the peer's source: {row}");
    assert!(row.contains(&endpoint(&b)), "{row}");
    let (dom, _) = peer_row(&a, Some(&admin_key), "B").await;
    let groups = element(&dom, "table", r#"id="groups""#)
        .map(visible_text)
        .unwrap_or_else(|| panic!("no groups table:\n{dom}"));
    assert!(
        groups.contains("eng") && groups.contains("Resync"),
        "{groups}"
    );
    assert!(row.contains("Test"), "the peer's actions: {row}");
    // The page follows the shared hive over the WebSocket (the CSP lets it connect).
    let metrics = client().get(a.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(r#"route="/ws",method="GET",status="1xx""#),
        "no WebSocket upgrade from the dashboard:\n{metrics}"
    );
    // The key left the address bar: the page never shows it.
    assert!(!dom.contains(&admin_key), "the admin key is in the page");

    // Kill B: the same row turns unreachable.
    let b_endpoint = endpoint(&b);
    b.running.shutdown().await.unwrap();
    let row = sync_util::wait_for(T, "B's row unreachable on A's dashboard", || async {
        let (_, row) = peer_row(&a, Some(&admin_key), "B").await;
        row.filter(|r| r.contains(" unreachable "))
    })
    .await;
    assert!(!row.contains(" active "), "{row}");
    assert!(row.contains(&b_endpoint), "{row}");
}
