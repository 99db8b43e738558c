//! The MAP hub and hub-assisted discovery (issue 8): the design's hub-assisted walkthrough
//! with real servers (hub on A; B and C know only the hub URL and a preauth key), sync that
//! goes on while the hub is down, the hub's refusals, stale detection and event long polls,
//! and the refusals of introduced handshakes (forged, foreign hub, copied, another endpoint).

use crate::harness::{TestServer, assert_error, json as body_of};
use crate::sync_util::*;
use openhive_core::ids;
use openhive_core::{InstanceKey, Introduction, IntroductionKind, time};
use openhive_sync::hub_client::registration_proof_bytes;
use openhive_sync::protocol::HandshakeProof;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn hub_on(c: &mut openhive_server::Config) {
    c.map_hub.enabled = true;
}

/// A preauth key from the hub `h` for `uses` registrations.
async fn preauth(h: &TestServer, uses: i64) -> String {
    let resp = reqwest::Client::new()
        .post(h.api("/map/preauth-keys"))
        .header("X-Admin-Key", h.admin_key())
        .json(&json!({ "uses": uses }))
        .send()
        .await
        .unwrap();
    let (st, b) = body_of(resp).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_eq!(b["uses_left"], uses);
    assert!(b["expires_at"].is_string() && b["id"].is_string());
    b["key"].as_str().unwrap().to_string()
}

/// An instance that knows only the hub's URL and a preauth key.
async fn hub_client(hub: &TestServer, key: &str) -> TestServer {
    let (url, key) = (hub.base_url.clone(), key.to_string());
    instance_with(move |c| {
        c.sync.hub.url = Some(url);
        c.sync.hub.preauth_key = Some(key);
    })
    .await
}

async fn peers_of(s: &TestServer) -> Vec<Value> {
    get(s, "/sync/peers?limit=100").await["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until `s` has a post titled `title` in `hive`.
async fn wait_post(s: &TestServer, hive: &str, title: &str) {
    let what = format!("post {title:?} in {hive} on {}", s.base_url);
    wait_for(WAIT, &what, || async {
        let (st, b) = call(
            s,
            Method::GET,
            &format!("/posts?hive={hive}&limit=100"),
            None,
        )
        .await;
        (st == StatusCode::OK
            && b["data"]
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p["title"] == title)))
        .then_some(())
    })
    .await
}

/// The design's "Hub-assisted setup walkthrough": hub on A (which registers with itself), B
/// and C configured with nothing but the hub URL and a preauth key; enabling the group on B
/// and C pairs everyone and backfills A's post, with no peer configured anywhere. A restart
/// does not spend the preauth key again; with the hub (and A) stopped, B and C keep syncing
/// through the cached hub peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn map_hub_walkthrough_pairs_backfills_and_survives_the_hub() {
    let a = instance_with(hub_on).await;
    // Exactly three uses: A, B and C register once each, restarts must not register again.
    let key = preauth(&a, 3).await;
    let mut a = a;
    a.config.sync.hub.url = Some(a.base_url.clone());
    a.config.sync.hub.preauth_key = Some(key.clone());
    let a = restart_same_port(a).await;
    create_hive(&a, "engineering").await;
    new_post(&a, "engineering", "from A before anyone joined").await;
    enable_group(&a, "engineering").await;

    let b = hub_client(&a, &key).await;
    let c = hub_client(&a, &key).await;
    // B and C do not have the hive: enabling the group is all they do.
    enable_group(&b, "engineering").await;
    enable_group(&c, "engineering").await;
    wait_post(&b, "engineering", "from A before anyone joined").await;
    wait_post(&c, "engineering", "from A before anyone joined").await;
    new_post(&c, "engineering", "from C").await;
    wait_post(&a, "engineering", "from C").await;
    wait_post(&b, "engineering", "from C").await;

    // Every peer came from the hub, and A's hub knows three swarms sharing the hive.
    for s in [&b, &c] {
        let peers = peers_of(s).await;
        assert_eq!(peers.len(), 2, "{peers:?}");
        assert!(peers.iter().all(|p| p["source"] == "hub"), "{peers:?}");
    }
    let swarms = admin_get(&a, "/map/swarms").await;
    assert_eq!(swarms["total"], 3, "{swarms}");
    assert!(
        swarms["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["hives"] == json!(["engineering"])
                && s["capabilities"]["hive_sync"] == true
                && s["status"] == "online"),
        "{swarms}"
    );
    let keys = admin_get(&a, "/map/preauth-keys").await;
    assert_eq!(keys["data"][0]["uses_left"], 0, "{keys}");

    // C restarts: its registration is remembered (the key has no use left), so a new group
    // it enables still reaches B through the hub.
    let c = restart_same_port(c).await;
    create_hive(&b, "lab").await;
    enable_group(&b, "lab").await;
    enable_group(&c, "lab").await;
    new_post(&b, "lab", "lab post").await;
    wait_post(&c, "lab", "lab post").await;

    // The hub goes away (with A): B and C go on with the peers they cached.
    a.running.shutdown().await.unwrap();
    new_post(&b, "engineering", "while the hub is down").await;
    wait_post(&c, "engineering", "while the hub is down").await;
}

async fn admin_get(h: &TestServer, path: &str) -> Value {
    let resp = reqwest::Client::new()
        .get(h.api(path))
        .header("X-Admin-Key", h.admin_key())
        .send()
        .await
        .unwrap();
    let (st, b) = body_of(resp).await;
    assert_eq!(st, StatusCode::OK, "{path}: {b}");
    b
}

/// A swarm driven by the test: its own instance id, key and endpoint.
struct Fake {
    id: String,
    key: InstanceKey,
    endpoint: String,
}

impl Fake {
    fn new() -> Fake {
        let id = ids::new_instance_id();
        Fake {
            endpoint: format!("http://127.0.0.1:9/{id}/sync/v1"),
            id,
            key: InstanceKey::generate(),
        }
    }

    fn register_body(&self, preauth: Option<&str>) -> Value {
        let at = time::now_ms();
        let signing_key = self.key.public().to_base64();
        let sig = self.key.sign_b64(&registration_proof_bytes(
            &self.id,
            &signing_key,
            &self.endpoint,
            at,
        ));
        let mut b = json!({
            "name": "fake",
            "instance_id": self.id,
            "signing_key": signing_key,
            "sync_endpoint": self.endpoint,
            "capabilities": { "hive_sync": true, "observation": false },
            "map_transport": "websocket",
            "proof": { "at": at, "signature": sig },
        });
        if let Some(k) = preauth {
            b["preauth_key"] = json!(k);
        }
        b
    }

    async fn register(&self, h: &TestServer, preauth: Option<&str>) -> (StatusCode, Value) {
        let resp = reqwest::Client::new()
            .post(h.api("/map/swarms"))
            .json(&self.register_body(preauth))
            .send()
            .await
            .unwrap();
        body_of(resp).await
    }

    /// Registers and returns (swarm id, token, introduction).
    async fn registered(&self, h: &TestServer, preauth: &str) -> (String, String, Value) {
        let (st, b) = self.register(h, Some(preauth)).await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
        (
            b["swarm"]["id"].as_str().unwrap().to_string(),
            b["token"].as_str().unwrap().to_string(),
            b["introduction"].clone(),
        )
    }

    /// A handshake for `hive` claiming `endpoint`, carrying `intro`, with a proof signed by
    /// `prover` (None: no proof).
    fn handshake(
        &self,
        hive: &str,
        endpoint: &str,
        intro: Option<&Value>,
        prover: Option<&InstanceKey>,
    ) -> Value {
        let token = ids::new_secret_token("ohs_");
        let mut b = json!({
            "protocol_version": 1,
            "hive": hive,
            "instance_id": self.id,
            "instance_name": "fake",
            "signing_key": self.key.public().to_base64(),
            "sync_endpoint": endpoint,
            "current_seq": 0,
            "roster": [],
            "token": token,
        });
        if let Some(i) = intro {
            b["introduction"] = i.clone();
        }
        if let Some(k) = prover {
            let p = HandshakeProof::sign(k, hive, &self.id, endpoint, &token, time::now_ms());
            b["proof"] = serde_json::to_value(p).unwrap();
        }
        b
    }
}

async fn swarm_call(
    h: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().request(method, h.api(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    body_of(req.send().await.unwrap()).await
}

/// The hub refuses registrations without a valid preauth key (missing, wrong, used up,
/// expired) or without a proof by the registered key, its admin route without the admin key,
/// and swarm routes without the swarm's own token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_hub_refusals() {
    let h = instance_with(hub_on).await;
    let http = reqwest::Client::new();
    // Admin-only preauth keys: no key (even in local auth mode on loopback), a wrong key.
    let (st, b) = body_of(
        http.post(h.api("/map/preauth-keys"))
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);
    let (st, b) = body_of(
        http.post(h.api("/map/preauth-keys"))
            .header("X-Admin-Key", "not-the-key")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);
    let one = preauth(&h, 1).await;

    let m = Fake::new();
    let (st, b) = m.register(&h, None).await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);
    let (st, b) = m.register(&h, Some("ohpak_wrong")).await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);
    // A proof by another key: refused, and the key is not spent.
    let mut forged = m.register_body(Some(&one));
    let other = InstanceKey::generate();
    forged["signing_key"] = json!(other.public().to_base64());
    let (st, b) = body_of(
        http.post(h.api("/map/swarms"))
            .json(&forged)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (id, token, intro) = m.registered(&h, &one).await;
    assert_eq!(intro["kind"], "hub");
    assert_eq!(intro["subject"], m.id.as_str());
    assert_eq!(
        intro["issuer"],
        h.running.state.identity.instance_id.as_str()
    );
    // Used up.
    let (st, b) = Fake::new().register(&h, Some(&one)).await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);
    assert!(
        b["message"].as_str().unwrap().contains("no uses left"),
        "{b}"
    );
    // Expired (an expired key cannot be made through the API: put one in the store).
    let expired = "ohpak_expired_for_the_test";
    let hash = ids::hash_secret(expired);
    h.running
        .state
        .store
        .write(move |tx| {
            let now = time::now_ms();
            openhive_store::map_hub::create_preauth_key(tx, &hash, 5, now - 1, now - 10)
        })
        .await
        .unwrap();
    let (st, b) = Fake::new().register(&h, Some(expired)).await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);
    assert!(b["message"].as_str().unwrap().contains("expired"), "{b}");

    // Swarm routes: no token, a wrong token, another swarm's token.
    let path = format!("/map/swarms/{id}/heartbeat");
    let (st, b) = swarm_call(&h, Method::POST, &path, None, None).await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);
    let (st, b) = swarm_call(&h, Method::POST, &path, Some("ohmap_nope"), None).await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);
    let two = preauth(&h, 1).await;
    let (_, other_token, _) = Fake::new().registered(&h, &two).await;
    let (st, b) = swarm_call(&h, Method::POST, &path, Some(&other_token), None).await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (st, b) = swarm_call(&h, Method::POST, &path, Some(&token), None).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["introduction"]["subject"], m.id.as_str());
    // Bad input: JSON errors, no panic.
    let (st, b) = swarm_call(
        &h,
        Method::POST,
        &format!("/map/swarms/{id}/hives"),
        Some(&token),
        Some(json!({ "hive_name": "Not A Hive!" })),
    )
    .await;
    assert_error(st, &b, StatusCode::BAD_REQUEST);
    // No response shows a token hash; the admin listing has both swarms.
    let swarms = admin_get(&h, "/map/swarms").await;
    assert_eq!(swarms["total"], 2);
    assert!(!swarms.to_string().contains("token"), "{swarms}");
}

/// A swarm silent past `stale_after_secs` goes offline (the task runs by itself), and the
/// swarms sharing a hive with it hear of it, as of joins, through the events long poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_hub_stale_detection_and_join_events() {
    let h = instance_with(|c| {
        c.map_hub.enabled = true;
        c.map_hub.stale_after_secs = 3;
    })
    .await;
    let key = preauth(&h, 2).await;
    let (s1, t1, _) = Fake::new().registered(&h, &key).await;
    let (s2, t2, _) = Fake::new().registered(&h, &key).await;
    let join = |id: &str, t: &str| {
        let (path, t) = (format!("/map/swarms/{id}/hives"), t.to_string());
        let h = &h;
        async move {
            let (st, b) = swarm_call(
                h,
                Method::POST,
                &path,
                Some(&t),
                Some(json!({ "hive_name": "eng" })),
            )
            .await;
            assert_eq!(st, StatusCode::OK, "{b}");
        }
    };
    join(&s1, &t1).await;
    // S1 waits for events from now on; S2's join wakes it (a long poll, not the next poll).
    let (_, now) = swarm_call(
        &h,
        Method::GET,
        &format!("/map/swarms/{s1}/events"),
        Some(&t1),
        None,
    )
    .await;
    let since = now["next_since"].as_i64().unwrap();
    let poll = {
        let url = h.api(&format!(
            "/map/swarms/{s1}/events?since={since}&wait_ms=30000"
        ));
        let t1 = t1.clone();
        tokio::spawn(async move {
            body_of(
                reqwest::Client::new()
                    .get(url)
                    .bearer_auth(t1)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    join(&s2, &t2).await;
    let (st, ev) = poll.await.unwrap();
    assert_eq!(st, StatusCode::OK, "{ev}");
    let joined = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "swarm_joined_hive")
        .cloned()
        .unwrap_or_else(|| panic!("no join event: {ev}"));
    assert_eq!(joined["swarm_id"], s2.as_str());
    assert_eq!(joined["hive_name"], "eng");
    let (_, peers) = swarm_call(
        &h,
        Method::GET,
        &format!("/map/peers/{s1}"),
        Some(&t1),
        None,
    )
    .await;
    assert_eq!(peers["peers"][0]["swarm_id"], s2.as_str(), "{peers}");
    assert_eq!(peers["peers"][0]["shared_hives"], json!(["eng"]));
    assert!(peers["peers"][0]["sync_endpoint"].is_string());

    // S1 keeps beating, S2 goes silent: S2 goes offline and S1 hears of it.
    let since = ev["next_since"].as_i64().unwrap();
    wait_for(WAIT, "S2 offline", || async {
        swarm_call(
            &h,
            Method::POST,
            &format!("/map/swarms/{s1}/heartbeat"),
            Some(&t1),
            None,
        )
        .await;
        let swarms = admin_get(&h, "/map/swarms").await;
        let s = swarms["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == s2.as_str())
            .cloned()
            .unwrap();
        (s["status"] == "offline").then_some(())
    })
    .await;
    let swarms = admin_get(&h, "/map/swarms").await;
    let s1_row = swarms["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == s1.as_str())
        .cloned()
        .unwrap();
    assert_eq!(s1_row["status"], "online");
    let (_, ev) = swarm_call(
        &h,
        Method::GET,
        &format!("/map/swarms/{s1}/events?since={since}"),
        Some(&t1),
        None,
    )
    .await;
    assert!(
        ev["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "swarm_offline" && e["swarm_id"] == s2.as_str()),
        "{ev}"
    );
}

/// Handshakes with an instance registered with hub H, from a host nobody configured: only a
/// valid introduction by H, about the caller as it presents itself, with the caller's proof,
/// is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_hub_introduced_handshakes_and_their_refusals() {
    let h = instance_with(hub_on).await;
    let key = preauth(&h, 3).await;
    let r = hub_client(&h, &key).await;
    enable_group(&r, "eng").await;
    // R holds its own introduction once registered (it trusts H from then on).
    wait_for(WAIT, "R registered with the hub", || async {
        let swarms = admin_get(&h, "/map/swarms").await;
        (swarms["total"] == 1 && swarms["data"][0]["hives"] == json!(["eng"])).then_some(())
    })
    .await;
    let http = reqwest::Client::new();
    let shake = |body: Value| {
        let (http, url) = (http.clone(), r.url("/sync/v1/handshake"));
        async move { body_of(http.post(url).json(&body).send().await.unwrap()).await }
    };

    let m = Fake::new();
    let (_, _, intro) = m.registered(&h, &key).await;
    // No introduction, unconfigured endpoint: 403.
    let (st, b) = shake(m.handshake("eng", &m.endpoint, None, None)).await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    // Forged: H's id, another key.
    let forger = InstanceKey::generate();
    let forged = sign_intro(
        &forger,
        h.running.state.identity.instance_id.as_str(),
        &m,
        &m.endpoint,
    );
    let (st, b) = shake(m.handshake("eng", &m.endpoint, Some(&forged), Some(&m.key))).await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    // A foreign hub's (valid, but R does not trust that hub).
    let other_hub = ids::new_instance_id();
    let foreign = sign_intro(&InstanceKey::generate(), &other_hub, &m, &m.endpoint);
    let (st, b) = shake(m.handshake("eng", &m.endpoint, Some(&foreign), Some(&m.key))).await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    // Copied: M's introduction presented by someone holding another key (the proof fails),
    // or with no proof at all.
    let (st, b) = shake(m.handshake("eng", &m.endpoint, Some(&intro), Some(&forger))).await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let (st, b) = shake(m.handshake("eng", &m.endpoint, Some(&intro), None)).await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    // M's valid introduction, but M claims another endpoint.
    let elsewhere = "http://127.0.0.1:9/elsewhere/sync/v1";
    let (st, b) = shake(m.handshake("eng", elsewhere, Some(&intro), Some(&m.key))).await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    // The control: the valid introduction with M's proof is admitted.
    let (st, b) = shake(m.handshake("eng", &m.endpoint, Some(&intro), Some(&m.key))).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(
        b["instance_id"],
        r.running.state.identity.instance_id.as_str()
    );
    // A host that never registered is refused by the hub too.
    let (st, b) = Fake::new().register(&h, None).await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED);
}

fn sign_intro(key: &InstanceKey, issuer: &str, m: &Fake, endpoint: &str) -> Value {
    let now = time::now_ms();
    let i = Introduction::sign(
        key,
        IntroductionKind::Hub,
        issuer,
        &m.id,
        &m.key.public().to_base64(),
        endpoint,
        vec!["*".into()],
        now,
        now + 3_600_000,
    );
    serde_json::to_value(i).unwrap()
}

/// The mesh-only preset: `allowed_cidrs = ["tailscale"]` admits only the Tailscale ranges on
/// `/sync/v1` (a loopback caller is refused), and leaves the rest of the API alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailscale_preset_fences_the_sync_protocol() {
    let s = instance_with(|c| c.sync.allowed_cidrs = vec!["tailscale".into()]).await;
    let (st, b) = body_of(
        reqwest::Client::new()
            .get(s.url("/sync/v1/identity"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    assert_eq!(
        s.running.state.config.sync.allowed_cidrs,
        vec![
            "100.64.0.0/10".to_string(),
            "fd7a:115c:a1e0::/48".to_string()
        ]
    );
    get(&s, "/sync/status").await;
}
