//! Backpressure: when the write queue is full, API writes get `503` with `Retry-After` in
//! the JSON error shape, are counted, and nothing half-applied remains.

use crate::harness::{Opts, assert_error, json, spawn};
use crate::sync_util::{get, post};
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_write_queue_answers_503_with_retry_after() {
    let s = spawn(Opts {
        configure: Some(Box::new(|c| c.storage.write_queue = 1)),
        ..Opts::local()
    })
    .await;
    // With one slot, a background write at start-up (e.g. the local admin) may hold it, so
    // even the hive creation may be refused; retry it until it lands.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (st, b) = post(&s, "/hives", json!({"name": "busy", "description": "d"})).await;
        match st {
            StatusCode::CREATED => break,
            StatusCode::SERVICE_UNAVAILABLE if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            _ => panic!("{st} {b}"),
        }
    }
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut created, mut refused) = (0u64, 0u64);
    // Bursts of concurrent posts until the queue (one slot) has refused some.
    while refused == 0 {
        assert!(Instant::now() < deadline, "no write was ever refused");
        let burst = (0..64).map(|i| {
            let http = http.clone();
            let url = s.api("/posts");
            async move {
                http.post(url)
                    .json(&json!({"hive": "busy", "title": format!("p{i}"), "content": "x"}))
                    .send()
                    .await
                    .unwrap()
            }
        });
        for resp in futures::future::join_all(burst).await {
            match resp.status() {
                StatusCode::CREATED => created += 1,
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_eq!(
                        resp.headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()),
                        Some("1")
                    );
                    let (status, body) = json(resp).await;
                    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE);
                    refused += 1;
                }
                other => panic!("unexpected status {other}"),
            }
        }
    }
    // Exactly the acknowledged posts exist, and the refusals are counted in status.
    let page = get(&s, "/posts?hive=busy&limit=1").await;
    assert_eq!(page["total"].as_u64(), Some(created), "{page}");
    let status = get(&s, "/sync/status").await;
    let q = &status["storage"]["write_queue"];
    assert_eq!(q["capacity"].as_u64(), Some(1), "{status}");
    assert!(q["refused"].as_u64().unwrap() >= refused, "{status}");
    s.running.shutdown().await.unwrap();
}
