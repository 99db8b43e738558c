//! Durability: `kill -9` in the middle of a write load loses no acknowledged write and
//! leaves no half-applied one.

use crate::harness::spawn_binary;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_no_committed_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = spawn_binary(dir.path());
    let http = reqwest::Client::new();
    // Default auth mode is local on loopback: no header acts as the local admin.
    let r = http
        .post(format!("{}/api/v1/hives", srv.base))
        .json(&json!({ "name": "general" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (http, base, acked) = (http.clone(), srv.base.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let body =
                    json!({ "hive": "general", "title": format!("w{w} p{i}"), "content": "x" });
                let Ok(resp) = http
                    .post(format!("{base}/api/v1/posts"))
                    .json(&body)
                    .send()
                    .await
                else {
                    break;
                };
                if resp.status() != 201 {
                    break;
                }
                let Ok(v) = resp.json::<serde_json::Value>().await else {
                    break;
                };
                acked
                    .lock()
                    .await
                    .push(v["id"].as_str().unwrap().to_string());
                // Votes and comments too, so several tables are mid-write.
                let id = v["id"].as_str().unwrap();
                let _ = http
                    .post(format!("{base}/api/v1/posts/{id}/vote"))
                    .json(&json!({ "value": 1 }))
                    .send()
                    .await;
                let _ = http
                    .post(format!("{base}/api/v1/posts/{id}/comments"))
                    .json(&json!({ "content": "c" }))
                    .send()
                    .await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    srv.child.kill().unwrap(); // SIGKILL
    srv.child.wait().unwrap();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().await.clone();
    assert!(acked.len() > 20, "the load barely ran: {}", acked.len());

    // The database is consistent on its own, before the server touches it again.
    {
        let data_dir = dir.path().to_path_buf();
        // Blocking engine clients: off the async runtime.
        let report = std::thread::spawn(move || {
            let mut config = openhive::config::Config::default();
            config.server.data_dir = data_dir.clone();
            crate::harness::use_test_engine(&mut config, &data_dir);
            let store = openhive::open_store(&config).unwrap();
            store
                .read_blocking(openhive_store::check::consistency)
                .unwrap()
        })
        .join()
        .unwrap();
        assert!(report.is_healthy(), "{report:?}");
        assert!(report.posts > 0, "{report:?}");
    }

    let srv2 = spawn_binary(dir.path());
    for id in &acked {
        let r = http
            .get(format!("{}/api/v1/posts/{id}", srv2.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged post {id} was lost");
    }
    let mut child = srv2.child;
    let _ = child.kill();
    let _ = child.wait();
}
