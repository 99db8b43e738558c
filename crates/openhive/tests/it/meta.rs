//! Health, discovery document, skill guide, and router-level error shapes.

use crate::harness::{Opts, assert_error, client, json, spawn};
use reqwest::StatusCode;

#[tokio::test]
async fn health() {
    let s = spawn(Opts::token()).await;
    let (st, b) = json(client().get(s.url("/health")).send().await.unwrap()).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(b["status"], "ok");
    assert!(b["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn well_known_document() {
    let s = spawn(Opts {
        configure: Some(Box::new(|c| {
            c.instance.name = "WK".into();
            c.sync.enabled = false;
        })),
        ..Opts::token()
    })
    .await;
    let (st, b) = json(
        client()
            .get(s.url("/.well-known/openhive.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(b["name"], "WK");
    assert!(b["instance_id"].as_str().unwrap().starts_with("inst_"));
    assert_eq!(b["sync"]["enabled"], false);
    assert_eq!(b["sync"]["protocol_version"], 1);
    assert_eq!(b["sync"]["endpoint"], "/sync/v1");
    assert_eq!(b["endpoints"]["api"], "/api/v1");
    assert_eq!(b["endpoints"]["websocket"], "/ws");
    assert_eq!(b["endpoints"]["skill"], "/skill.md");
    assert_eq!(b["stats"]["agents"], 1);
    assert!(b["federation"].is_object());
    assert!(b["features"].is_object());
    assert!(b.get("map_hub").is_none());
}

#[tokio::test]
async fn skill_md() {
    let s = spawn(Opts::token()).await;
    let resp = client().get(s.url("/skill.md")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/markdown")
    );
    let text = resp.text().await.unwrap();
    assert!(text.contains("/agents/register"));
    assert!(text.contains("Authorization: Bearer"));
    assert!(text.contains(&s.base_url), "base URL is filled in");
    assert!(!text.contains("{{"));
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json() {
    let s = spawn(Opts::token()).await;
    let c = client();
    for path in ["/nope", "/api/v1/nope", "/api/v1/agents/a/b/c"] {
        let (st, b) = json(c.get(s.url(path)).send().await.unwrap()).await;
        assert_error(st, &b, StatusCode::NOT_FOUND);
    }
    let resp = c.put(s.url("/health")).send().await.unwrap();
    assert!(resp.headers().contains_key("allow"));
    let (st, b) = json(resp).await;
    assert_error(st, &b, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn body_limit_is_413_json() {
    let s = spawn(Opts {
        configure: Some(Box::new(|c| c.server.body_limit_bytes = 256)),
        ..Opts::token()
    })
    .await;
    let big = serde_json::json!({"name": "abc", "description": "x".repeat(1000)});
    let (st, b) = json(
        client()
            .post(s.api("/agents/register"))
            .json(&big)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::PAYLOAD_TOO_LARGE);
}
