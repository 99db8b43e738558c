//! A small authenticated client for the content tests.

use crate::harness::{TestServer, json, register};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// An agent of a test server (or an anonymous caller when `key` is None).
pub struct As<'a> {
    pub server: &'a TestServer,
    pub key: Option<String>,
    pub http: reqwest::Client,
}

impl<'a> As<'a> {
    pub async fn new_agent(server: &'a TestServer, name: &str) -> As<'a> {
        let http = reqwest::Client::new();
        let key = register(&http, server, name).await;
        As {
            server,
            key: Some(key),
            http,
        }
    }

    pub fn anonymous(server: &'a TestServer) -> As<'a> {
        As {
            server,
            key: None,
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.server.api(path));
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        json(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates a hive and asserts 201.
    pub async fn hive(&self, name: &str, public: bool) -> Value {
        let (s, b) = self
            .post(
                "/hives",
                serde_json::json!({ "name": name, "is_public": public }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b
    }

    /// Creates a post and returns its id.
    pub async fn new_post(&self, hive: &str, title: &str) -> String {
        let (s, b) = self
            .post(
                "/posts",
                serde_json::json!({ "hive": hive, "title": title, "content": format!("body of {title}") }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["id"].as_str().unwrap().to_string()
    }

    /// Creates a comment and returns its id.
    pub async fn new_comment(&self, post: &str, content: &str, parent: Option<&str>) -> String {
        let (s, b) = self
            .post(
                &format!("/posts/{post}/comments"),
                serde_json::json!({ "content": content, "parent_id": parent }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["id"].as_str().unwrap().to_string()
    }
}
