//! Registration, profiles, follows, auth modes and persistence across restarts.

use crate::harness::{Opts, assert_error, client, json, register, spawn};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn register_returns_agent_and_key() {
    let s = spawn(Opts::token()).await;
    let c = client();
    let resp = c
        .post(s.api("/agents/register"))
        .json(&json!({"name": "alice", "description": "hi", "invite_code": "x", "metadata": {"k": 1}}))
        .send()
        .await
        .unwrap();
    let (st, body) = json(resp).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(body["agent"]["name"], "alice");
    assert_eq!(body["agent"]["description"], "hi");
    assert_eq!(body["agent"]["is_verified"], true);
    assert_eq!(body["agent"]["karma"], 0);
    assert_eq!(body["agent"]["account_type"], "agent");
    assert!(body["agent"]["id"].as_str().unwrap().starts_with("agt_"));
    assert!(body["agent"]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["verification"]["status"], "verified");
    let key = body["api_key"].as_str().unwrap();
    assert!(key.starts_with("oh_") && key.len() > 40);
}

#[tokio::test]
async fn register_validation_and_conflict() {
    let s = spawn(Opts::token()).await;
    let c = client();
    register(&c, &s, "bob").await;
    let cases = [
        (json!({"name": "bob"}), StatusCode::CONFLICT),
        (json!({"name": "local"}), StatusCode::CONFLICT),
        (json!({"name": "b"}), StatusCode::BAD_REQUEST),
        (json!({"name": "x".repeat(33)}), StatusCode::BAD_REQUEST),
        (json!({"name": "has space"}), StatusCode::BAD_REQUEST),
        (json!({"name": "me"}), StatusCode::BAD_REQUEST),
        (json!({"name": "register"}), StatusCode::BAD_REQUEST),
        (
            json!({"name": "carol", "description": "d".repeat(501)}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"name": "carol", "metadata": [1]}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"description": "no name"}), StatusCode::BAD_REQUEST),
        (json!({"name": 5}), StatusCode::BAD_REQUEST),
    ];
    for (body, want) in cases {
        let resp = c
            .post(s.api("/agents/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (st, b) = json(resp).await;
        assert_error(st, &b, want);
    }
    // Field-level details on validation errors.
    let (st, b) = json(
        c.post(s.api("/agents/register"))
            .json(&json!({"name": "b"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);
    assert_eq!(b["details"]["field"], "name");
    // Exactly 500 characters of description is fine.
    let (st, _) = json(
        c.post(s.api("/agents/register"))
            .json(&json!({"name": "carol", "description": "é".repeat(500)}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
}

#[tokio::test]
async fn malformed_bodies_are_json_errors() {
    let s = spawn(Opts::token()).await;
    let c = client();
    let (st, b) = json(
        c.post(s.api("/agents/register"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);
    assert!(b["details"]["reason"].is_string(), "{b}");
    let (st, b) = json(
        c.post(s.api("/agents/register"))
            .body(r#"{"name":"zed"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn me_get_and_patch() {
    let s = spawn(Opts::token()).await;
    let c = client();
    let key = register(&c, &s, "dave").await;
    let (st, me) = json(
        c.get(s.api("/agents/me"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["name"], "dave");
    assert_eq!(me["is_admin"], false);
    assert_eq!(me["verification_status"], "verified");
    assert_eq!(me["follower_count"], 0);
    assert_eq!(me["following_count"], 0);

    let (st, p) = json(
        c.patch(s.api("/agents/me"))
            .bearer_auth(&key)
            .json(&json!({"description": "new", "avatar_url": "https://x.example/a.png", "metadata": {"a": 1}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["description"], "new");
    assert_eq!(p["avatar_url"], "https://x.example/a.png");

    // Absent fields stay; null clears the avatar.
    let (st, p) = json(
        c.patch(s.api("/agents/me"))
            .bearer_auth(&key)
            .json(&json!({"avatar_url": null}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(p["description"], "new");
    assert!(p["avatar_url"].is_null());

    for (body, field) in [
        (json!({"avatar_url": "javascript:alert(1)"}), "avatar_url"),
        (json!({"description": "x".repeat(501)}), "description"),
        (json!({"metadata": "str"}), "metadata"),
    ] {
        let (st, b) = json(
            c.patch(s.api("/agents/me"))
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_error(st, &b, StatusCode::BAD_REQUEST);
        assert_eq!(b["details"]["field"], field);
    }
    let (st, b) = json(
        c.patch(s.api("/agents/me"))
            .json(&json!({"description": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn token_mode_requires_a_valid_key() {
    let s = spawn(Opts::token()).await;
    let c = client();
    let key = register(&c, &s, "erin").await;
    for path in ["/agents/me", "/auth/me"] {
        let (st, b) = json(c.get(s.api(path)).send().await.unwrap()).await;
        assert_error(st, &b, StatusCode::UNAUTHORIZED);
        let (st, b) = json(
            c.get(s.api(path))
                .bearer_auth("oh_wrong")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_error(st, &b, StatusCode::UNAUTHORIZED);
        let (st, b) = json(
            c.get(s.api(path))
                .header("authorization", format!("Basic {key}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_error(st, &b, StatusCode::UNAUTHORIZED);
        let (st, b) = json(c.get(s.api(path)).bearer_auth(&key).send().await.unwrap()).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(b["name"], "erin");
    }
    let (st, b) = json(c.get(s.api("/auth/mode")).send().await.unwrap()).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(b, json!({"mode": "token"}));
}

#[tokio::test]
async fn local_mode_no_header_is_local_admin() {
    let s = spawn(Opts::local()).await;
    let c = client();
    let (st, me) = json(c.get(s.api("/agents/me")).send().await.unwrap()).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["name"], "local");
    assert_eq!(me["is_admin"], true);
    let (st, m) = json(c.get(s.api("/auth/mode")).send().await.unwrap()).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(m["mode"], "local");
    assert_eq!(m["agent"]["name"], "local");
    // A present but invalid header is still 401 in local mode.
    let (st, b) = json(
        c.get(s.api("/auth/me"))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);
    // A valid key still names its own agent.
    let key = register(&c, &s, "frank").await;
    let (_, me) = json(
        c.get(s.api("/auth/me"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(me["name"], "frank");
    // The local agent can use admin routes without any key.
    let (st, _) = json(c.get(s.api("/admin/stats")).send().await.unwrap()).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn profiles_and_follows() {
    let s = spawn(Opts::token()).await;
    let c = client();
    let a = register(&c, &s, "gina").await;
    let b = register(&c, &s, "hank").await;

    let (st, p) = json(c.get(s.api("/agents/hank")).send().await.unwrap()).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(p["name"], "hank");
    assert_eq!(p["is_following"], false);
    assert_eq!(p["follower_count"], 0);
    assert!(
        p.get("is_admin").is_none(),
        "public profile must not show admin flag"
    );

    let (st, r) = json(
        c.post(s.api("/agents/hank/follow"))
            .bearer_auth(&a)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(r, json!({"success": true}));
    let (st, e) = json(
        c.post(s.api("/agents/hank/follow"))
            .bearer_auth(&a)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &e, StatusCode::BAD_REQUEST);
    let (st, e) = json(
        c.post(s.api("/agents/gina/follow"))
            .bearer_auth(&a)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &e, StatusCode::BAD_REQUEST);
    let (st, e) = json(
        c.post(s.api("/agents/nobody/follow"))
            .bearer_auth(&a)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &e, StatusCode::NOT_FOUND);
    let (st, e) = json(c.post(s.api("/agents/hank/follow")).send().await.unwrap()).await;
    assert_error(st, &e, StatusCode::UNAUTHORIZED);

    let (_, p) = json(
        c.get(s.api("/agents/hank"))
            .bearer_auth(&a)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(p["is_following"], true);
    assert_eq!(p["follower_count"], 1);
    let (_, p) = json(
        c.get(s.api("/agents/hank"))
            .bearer_auth(&b)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(p["is_following"], false);
    let (_, me) = json(
        c.get(s.api("/agents/me"))
            .bearer_auth(&a)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(me["following_count"], 1);

    let (st, l) = json(c.get(s.api("/agents/hank/followers")).send().await.unwrap()).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(l["total"], 1);
    assert_eq!(l["limit"], 50);
    assert_eq!(l["offset"], 0);
    assert_eq!(l["data"][0]["name"], "gina");
    let (_, l) = json(
        c.get(s.api("/agents/gina/following?limit=1&offset=0"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(l["data"][0]["name"], "hank");
    assert_eq!(l["limit"], 1);
    let (_, l) = json(
        c.get(s.api("/agents/gina/following?offset=5"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(l["total"], 1);
    assert_eq!(l["data"].as_array().unwrap().len(), 0);
    for q in ["limit=0", "limit=101", "offset=-1", "limit=abc"] {
        let (st, e) = json(
            c.get(s.api(&format!("/agents/hank/followers?{q}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_error(st, &e, StatusCode::BAD_REQUEST);
    }
    let (st, e) = json(
        c.get(s.api("/agents/nobody/followers"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &e, StatusCode::NOT_FOUND);
    let (st, e) = json(c.get(s.api("/agents/nobody")).send().await.unwrap()).await;
    assert_error(st, &e, StatusCode::NOT_FOUND);

    let (st, r) = json(
        c.delete(s.api("/agents/hank/follow"))
            .bearer_auth(&a)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(r, json!({"success": true}));
    let (st, e) = json(
        c.delete(s.api("/agents/hank/follow"))
            .bearer_auth(&a)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &e, StatusCode::BAD_REQUEST);
    let (st, e) = json(
        c.delete(s.api("/agents/nobody/follow"))
            .bearer_auth(&a)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &e, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn restart_keeps_instance_id_agents_and_keys() {
    let s = spawn(Opts::token()).await;
    let c = client();
    let key = register(&c, &s, "ivan").await;
    let (_, inst) = json(c.get(s.api("/admin/instance")).send().await.unwrap()).await;
    let id = inst["instance_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("inst_"));
    let admin_key = s.admin_key();
    let seed = std::fs::read_to_string(s.data_dir.path().join("instance.key")).unwrap();

    let s = s.restart().await;
    let (_, inst) = json(c.get(s.api("/admin/instance")).send().await.unwrap()).await;
    assert_eq!(inst["instance_id"], id.as_str());
    assert_eq!(inst["agent_count"], 2, "{inst}"); // ivan + local
    let (st, me) = json(
        c.get(s.api("/agents/me"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["name"], "ivan");
    assert_eq!(s.admin_key(), admin_key);
    assert_eq!(
        std::fs::read_to_string(s.data_dir.path().join("instance.key")).unwrap(),
        seed
    );
    let (st, _) = json(
        c.get(s.api("/admin/stats"))
            .header("x-admin-key", &admin_key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn api_keys_are_not_stored_in_plaintext() {
    let s = spawn(Opts::token()).await;
    let c = client();
    let key = register(&c, &s, "judy").await;
    let s = s.restart().await; // checkpoint: everything is in the main db file
    if let Some(url) = crate::harness::scratch_pg_url(s.data_dir.path()) {
        // PostgreSQL: no file to read; the key column holds the hash, not the key.
        let k = key.clone();
        let (by_key, by_hash) = std::thread::spawn(move || {
            let mut config = openhive::config::Config::default();
            config.storage.engine = openhive::config::StorageEngine::Postgres;
            config.storage.url = Some(url);
            let store = openhive::open_store(&config).unwrap();
            store
                .read_blocking(|c| {
                    let by_key = openhive_store::agents::get_by_api_key_hash(c, &k)?;
                    let hash = openhive_core::ids::hash_secret(&k);
                    let by_hash = openhive_store::agents::get_by_api_key_hash(c, &hash)?;
                    Ok::<_, openhive_store::StoreError>((by_key, by_hash))
                })
                .unwrap()
        })
        .join()
        .unwrap();
        assert!(by_key.is_none(), "API key stored in plaintext");
        assert_eq!(by_hash.map(|a| a.name).as_deref(), Some("judy"));
        return;
    }
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(s.data_dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("openhive.db")
        {
            bytes.extend(std::fs::read(&p).unwrap());
        }
    }
    assert!(!bytes.is_empty());
    let hay = String::from_utf8_lossy(&bytes);
    assert!(!hay.contains(&key), "API key found in the database");
    assert!(!hay.contains(&key["oh_".len()..]));
    assert!(
        !hay.contains(&s.admin_key()),
        "admin key found in the database"
    );
    assert!(hay.contains(&openhive_core::ids::hash_secret(&key)));
}
