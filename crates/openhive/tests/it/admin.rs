//! Admin routes, the admin key and the public instance description.

use crate::harness::{Opts, TestServer, assert_error, client, json, register, spawn};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

async fn agent_id(c: &Client, s: &TestServer, key: &str) -> String {
    let (_, me) = json(
        c.get(s.api("/agents/me"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    me["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn instance_is_public() {
    let s = spawn(Opts {
        configure: Some(Box::new(|c| {
            c.instance.name = "Test Hive".into();
            c.instance.description = "desc".into();
            c.server.public_url = Some("https://hive.example".into());
        })),
        ..Opts::token()
    })
    .await;
    let c = client();
    register(&c, &s, "alice").await;
    let (st, b) = json(c.get(s.api("/admin/instance")).send().await.unwrap()).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(b["name"], "Test Hive");
    assert_eq!(b["description"], "desc");
    assert_eq!(b["url"], "https://hive.example");
    assert_eq!(b["version"], env!("CARGO_PKG_VERSION"));
    assert!(b["instance_id"].as_str().unwrap().starts_with("inst_"));
    assert_eq!(b["agent_count"], 2);
    assert_eq!(b["hive_count"], 0);
    assert_eq!(b["post_count"], 0);
    assert_eq!(b["federation_enabled"], false);
    assert_eq!(b["sync_enabled"], true);
    assert_eq!(b["registration_open"], true);
    assert_eq!(b["auth_mode"], "token");
}

#[tokio::test]
async fn admin_routes_need_admin() {
    let s = spawn(Opts::token()).await;
    let c = client();
    let key = register(&c, &s, "bob").await;
    let id = agent_id(&c, &s, &key).await;
    let routes: Vec<(reqwest::Method, String, Option<Value>)> = vec![
        (reqwest::Method::GET, "/admin/stats".into(), None),
        (reqwest::Method::GET, "/admin/agents".into(), None),
        (
            reqwest::Method::POST,
            format!("/admin/agents/{id}/verify"),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("/admin/agents/{id}/reject"),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("/admin/agents/{id}/admin"),
            Some(json!({"is_admin": true})),
        ),
        (reqwest::Method::DELETE, format!("/admin/agents/{id}"), None),
    ];
    for (m, path, body) in &routes {
        let req = |auth: Option<(&str, &str)>| {
            let mut r = c.request(m.clone(), s.api(path));
            if let Some(b) = body {
                r = r.json(b);
            }
            if let Some((h, v)) = auth {
                r = r.header(h, v);
            }
            r
        };
        let (st, b) = json(req(None).send().await.unwrap()).await;
        assert_error(st, &b, StatusCode::UNAUTHORIZED);
        let bearer = format!("Bearer {key}");
        let (st, b) = json(req(Some(("authorization", &bearer))).send().await.unwrap()).await;
        assert_error(st, &b, StatusCode::FORBIDDEN);
        let (st, b) = json(
            req(Some(("x-admin-key", "ohadm_wrong")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_error(st, &b, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn admin_key_manages_agents() {
    let s = spawn(Opts::token()).await;
    let c = client();
    let admin = s.admin_key();
    let key = register(&c, &s, "carol").await;
    let id = agent_id(&c, &s, &key).await;
    let other = register(&c, &s, "dan").await;

    let (st, b) = json(
        c.get(s.api("/admin/stats"))
            .header("x-admin-key", &admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        b,
        json!({"agents": {"total": 3, "verified": 3}, "hives": {"total": 0}, "posts": {"total": 0}})
    );

    let (st, l) = json(
        c.get(s.api("/admin/agents?limit=2"))
            .header("x-admin-key", &admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(l["total"], 3);
    assert_eq!(l["limit"], 2);
    assert_eq!(l["offset"], 0);
    assert_eq!(l["data"].as_array().unwrap().len(), 2);
    assert!(l["data"][0].get("is_admin").is_some());
    assert!(l["data"][0].get("verification_status").is_some());
    assert!(l["data"][0].get("last_seen_at").is_some());
    let (st, e) = json(
        c.get(s.api("/admin/agents?limit=500"))
            .header("x-admin-key", &admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &e, StatusCode::BAD_REQUEST);

    // Reject: the agent is locked out (403) and drops out of verified counts. Her key was
    // resolved before (`agent_id`), so this, the admin grant and dan's deletion below also
    // check that the caller cache (`http::caller_cache`) never serves a changed agent.
    let (st, r) = json(
        c.post(s.api(&format!("/admin/agents/{id}/reject")))
            .header("x-admin-key", &admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(r, json!({"success": true}));
    let (st, e) = json(
        c.get(s.api("/agents/me"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &e, StatusCode::FORBIDDEN);
    let (_, l) = json(
        c.get(s.api("/admin/agents?verified_only=true"))
            .header("x-admin-key", &admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(l["total"], 2);
    let (_, b) = json(
        c.get(s.api("/admin/stats"))
            .header("x-admin-key", &admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(b["agents"]["verified"], 2);
    // Verify again.
    let (st, _) = json(
        c.post(s.api(&format!("/admin/agents/{id}/verify")))
            .header("x-admin-key", &admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (_, me) = json(
        c.get(s.api("/agents/me"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(me["verification_status"], "verified");

    // Grant admin: carol can now use admin routes with her own key.
    let (st, _) = json(
        c.post(s.api(&format!("/admin/agents/{id}/admin")))
            .header("x-admin-key", &admin)
            .json(&json!({"is_admin": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = json(
        c.get(s.api("/admin/stats"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, e) = json(
        c.post(s.api(&format!("/admin/agents/{id}/admin")))
            .bearer_auth(&key)
            .json(&json!({"is_admin": "yes"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &e, StatusCode::BAD_REQUEST);
    let (st, e) = json(
        c.post(s.api(&format!("/admin/agents/{id}/admin")))
            .bearer_auth(&key)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &e, StatusCode::BAD_REQUEST);

    // Unknown ids.
    for (m, p) in [
        (reqwest::Method::POST, "/admin/agents/agt_nope/verify"),
        (reqwest::Method::POST, "/admin/agents/agt_nope/reject"),
        (reqwest::Method::DELETE, "/admin/agents/agt_nope"),
    ] {
        let (st, e) = json(
            c.request(m, s.api(p))
                .header("x-admin-key", &admin)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_error(st, &e, StatusCode::NOT_FOUND);
    }
    let (st, e) = json(
        c.post(s.api("/admin/agents/agt_nope/admin"))
            .header("x-admin-key", &admin)
            .json(&json!({"is_admin": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &e, StatusCode::NOT_FOUND);

    // Delete dan (by carol, now an admin): 204, his key stops working, name is free again.
    let dan = agent_id(&c, &s, &other).await;
    let resp = c
        .delete(s.api(&format!("/admin/agents/{dan}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (st, e) = json(
        c.get(s.api("/agents/me"))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &e, StatusCode::UNAUTHORIZED);
    let (st, e) = json(c.get(s.api("/agents/dan")).send().await.unwrap()).await;
    assert_error(st, &e, StatusCode::NOT_FOUND);
    register(&c, &s, "dan").await;
}

#[tokio::test]
async fn local_agent_is_protected() {
    let s = spawn(Opts::local()).await;
    let c = client();
    let (_, me) = json(c.get(s.api("/agents/me")).send().await.unwrap()).await;
    let id = me["id"].as_str().unwrap().to_string();
    let resp = c
        .delete(s.api(&format!("/admin/agents/{id}")))
        .send()
        .await
        .unwrap();
    let (st, e) = json(resp).await;
    assert_error(st, &e, StatusCode::BAD_REQUEST);
    let (st, e) = json(
        c.post(s.api(&format!("/admin/agents/{id}/reject")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &e, StatusCode::BAD_REQUEST);
    let (st, e) = json(
        c.post(s.api(&format!("/admin/agents/{id}/admin")))
            .json(&json!({"is_admin": false}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &e, StatusCode::BAD_REQUEST);
    let (_, inst) = json(c.get(s.api("/admin/instance")).send().await.unwrap()).await;
    assert_eq!(inst["auth_mode"], "local");
}

#[cfg(unix)]
#[tokio::test]
async fn key_files_are_private_and_never_served() {
    use std::os::unix::fs::PermissionsExt as _;
    let s = spawn(Opts::local()).await;
    for f in ["admin.key", "instance.key"] {
        let mode = std::fs::metadata(s.data_dir.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    // The SQLite database holds peer tokens: it and its WAL are the owner's only.
    if s.config.storage.engine == openhive_server::config::StorageEngine::Sqlite {
        for f in ["openhive.db", "openhive.db-wal", "openhive.db-shm"] {
            let path = s.data_dir.path().join(f);
            if let Ok(meta) = std::fs::metadata(&path) {
                assert_eq!(meta.permissions().mode() & 0o077, 0, "{f}");
            } else {
                assert_ne!(f, "openhive.db", "the database file exists");
            }
        }
    }
    let admin = s.admin_key();
    assert!(admin.starts_with("ohadm_"));
    let seed = std::fs::read_to_string(s.data_dir.path().join("instance.key")).unwrap();
    let seed = seed.trim();
    assert_eq!(seed.len(), 64);

    let c = client();
    let key = register(&c, &s, "eve").await;
    let mut bodies = String::new();
    for path in [
        "/health",
        "/.well-known/openhive.json",
        "/skill.md",
        "/api/v1/admin/instance",
        "/api/v1/admin/stats",
        "/api/v1/admin/agents",
        "/api/v1/agents/me",
        "/api/v1/agents/eve",
        "/api/v1/auth/mode",
        "/api/v1/auth/me",
        "/nope",
    ] {
        let resp = c
            .get(s.url(path))
            .header("x-admin-key", &admin)
            .send()
            .await
            .unwrap();
        for (_, v) in resp.headers() {
            bodies.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
        bodies.push_str(&resp.text().await.unwrap());
    }
    assert!(!bodies.contains(&admin));
    assert!(!bodies.contains(seed));
    assert!(!bodies.contains(&key));
}
