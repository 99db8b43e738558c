//! Owner succession over real HTTP: the owner's instance stops; the other two keep writing
//! until the hive's events show it silent longer than `owner_succession_secs`; both then
//! name the same deciding instance (the smaller id of the two active ones), and a
//! concurrent setting change from each converges to the successor's value on both (without
//! succession the later change, the other's, would win).

use crate::harness::TestServer;
use crate::sync_util::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(90);

async fn hive(s: &TestServer) -> Value {
    get(s, "/hives/relay").await
}

/// A `hive_setting_changed` of `description` made by `s` without having seen any other
/// (`prev` null), signed by `s` at `ts` and ingested through its store like any local
/// event: what `s` writes when the other's change has not reached it yet.
async fn concurrent_description(s: &TestServer, value: &str, ts: i64) {
    use openhive_core::payload::{AgentRef, HiveSettingChanged, Payload};
    let state = s.running.state.clone();
    let value = value.to_string();
    let hive_id = tokio::task::spawn_blocking(move || {
        let inst = state.identity.instance_id.clone();
        let by = AgentRef {
            instance_id: inst.clone(),
            agent_id: state.identity.local_agent_id.clone(),
            name: "local".into(),
            avatar_url: None,
        };
        let p = Payload::HiveSettingChanged(HiveSettingChanged {
            key: "description".into(),
            value: json!(value),
            prev: None,
            changed_by: by,
        });
        let v = openhive_store::ingest::Verified::sign(
            &state.identity.key.get(),
            &inst,
            "relay",
            &p,
            ts,
        )
        .unwrap();
        state
            .store
            .write_blocking(move |tx| -> Result<String, openhive_store::StoreError> {
                let hid = openhive_store::hives::id_by_name(tx, "relay")?.unwrap();
                openhive_store::ingest::ingest(tx, &hid, &v, None, ts)?;
                Ok(hid)
            })
            .unwrap()
    })
    .await
    .unwrap();
    s.running.state.sync.notify(&hive_id);
}

#[tokio::test]
async fn a_stopped_owner_is_succeeded_and_both_survivors_agree() {
    let a = instance().await;
    let b = instance().await;
    let c = instance().await;
    let id = |s: &TestServer| s.running.state.identity.instance_id.clone();
    let (a_id, b_id, c_id) = (id(&a), id(&b), id(&c));
    create_hive(&a, "relay").await;
    let (st, body) = call(
        &a,
        Method::PATCH,
        "/hives/relay",
        Some(json!({ "settings": { "owner_succession_secs": 1 } })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["settings"]["owner_succession_secs"], 1, "{body}");
    assert_eq!(body["deciding_instance_id"], a_id.as_str(), "{body}");
    enable_group(&a, "relay").await;
    mesh(&[&a, &b, &c], "relay").await;
    for s in [&b, &c] {
        wait_for(T, "the period reached the others", || async {
            let (st, h) = call(s, Method::GET, "/hives/relay", None).await;
            (st == StatusCode::OK && h["settings"]["owner_succession_secs"] == 1).then_some(())
        })
        .await;
    }

    // The owner's instance stops; the others keep writing until its silence passes 1 s of
    // the hive's own time (their events' timestamps), and both name the same successor.
    a.running.shutdown().await.unwrap();
    let (small, large) = if b_id < c_id { (&b, &c) } else { (&c, &b) };
    let successor = id(small);
    let (bb, cc) = (&b, &c);
    let mut n = 0;
    wait_for(T, "both survivors name the successor", || {
        n += 1;
        let k = n;
        let successor = successor.clone();
        async move {
            new_post(bb, "relay", &format!("b {k}")).await;
            new_post(cc, "relay", &format!("c {k}")).await;
            let (hb, hc) = (hive(bb).await, hive(cc).await);
            (hb["deciding_instance_id"] == successor.as_str()
                && hc["deciding_instance_id"] == successor.as_str())
            .then_some(())
        }
    })
    .await;
    assert_eq!(hive(&b).await["owner_instance_id"], a_id.as_str());

    // Concurrent changes: the successor's first, the other's later.
    let t = openhive_core::time::now_ms() + 10;
    concurrent_description(small, "by the successor", t).await;
    concurrent_description(large, "by the other", t + 1).await;
    wait_converged(&[&b, &c], "relay", T, |snap| {
        snap["hive"]["description"] == "by the successor"
    })
    .await;
    for s in [&b, &c] {
        let h = hive(s).await;
        assert_eq!(h["description"], "by the successor", "{h}");
        assert_eq!(h["deciding_instance_id"], successor.as_str(), "{h}");
    }
}
