//! `/skill.md` stays true to the router: every `METHOD /path` it mentions is a route.

use crate::harness::{Opts, spawn};
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn every_route_in_the_skill_guide_exists() {
    let s = spawn(Opts::token()).await;
    let http = reqwest::Client::new();
    let guide = http
        .get(s.url("/skill.md"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut checked = 0;
    for line in guide.lines() {
        let words: Vec<&str> = line.split(['`', ' ', ',', '(']).collect();
        for w in words.windows(2) {
            let method = match w[0] {
                "GET" => Method::GET,
                "POST" => Method::POST,
                "PATCH" => Method::PATCH,
                "DELETE" => Method::DELETE,
                _ => continue,
            };
            let Some(path) = w[1].strip_prefix('/') else {
                continue;
            };
            let path: String = path
                .split('?')
                .next()
                .unwrap_or_default()
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') {
                        "zz-missing"
                    } else {
                        seg
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let url = if path.starts_with("api/") {
                s.url(&format!("/{path}"))
            } else {
                s.api(&format!("/{path}"))
            };
            let resp = http.request(method.clone(), &url).send().await.unwrap();
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {url}");
            assert!(
                !body.contains("no such route"),
                "{method} {url} is not a route"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} routes found in the guide");
}
