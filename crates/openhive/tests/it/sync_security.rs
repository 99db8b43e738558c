//! Hive Sync trust boundaries, driven by a hand-rolled peer "M" speaking `/sync/v1`:
//! forged or altered events pushed with a valid token are rejected and counted, tokens are
//! bound to one group, key conflicts are refused, and a flooding sender gets 429 and backs
//! off but still completes.

use crate::harness::{TestServer, json as body_of};
use crate::sync_util::*;
use openhive_core::ids::{self, Kind};
use openhive_core::payload::{AgentRef, Payload, PostCreated};
use openhive_core::{Event, InstanceKey, time};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SECRET: &str = "test-mesh-secret-42";

/// A fake peer instance driven by the test.
struct Fake {
    id: String,
    key: InstanceKey,
    http: reqwest::Client,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            id: ids::new_instance_id(),
            key: InstanceKey::generate(),
            http: reqwest::Client::new(),
        }
    }

    fn agent(&self) -> AgentRef {
        AgentRef {
            instance_id: self.id.clone(),
            agent_id: ids::new_id(Kind::Agent, &self.id),
            name: "mallory".into(),
            avatar_url: None,
        }
    }

    /// Handshakes with `s` for `hive` and returns (status, body).
    async fn handshake(
        &self,
        s: &TestServer,
        hive: &str,
        key: &InstanceKey,
    ) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(s.url("/sync/v1/handshake"))
            .header("X-Handshake-Secret", SECRET)
            .json(&json!({
                "protocol_version": 1,
                "hive": hive,
                "instance_id": self.id,
                "instance_name": "fake",
                "signing_key": key.public().to_base64(),
                // One endpoint per fake: two fakes are two peers.
                "sync_endpoint": format!("http://127.0.0.1:9/{}/sync/v1", self.id),
                "current_seq": 0,
                "roster": [],
                "token": ids::new_secret_token("ohs_"),
            }))
            .send()
            .await
            .unwrap();
        body_of(resp).await
    }

    async fn token(&self, s: &TestServer, hive: &str) -> String {
        let (st, b) = self.handshake(s, hive, &self.key).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(
            b["instance_id"],
            s.running.state.identity.instance_id.as_str()
        );
        b["token"].as_str().unwrap().to_string()
    }

    fn post_event(&self, hive: &str, author: AgentRef, origin: &str, key: &InstanceKey) -> Event {
        let p = Payload::PostCreated(PostCreated {
            post_id: ids::new_id(Kind::Post, origin),
            title: "forged?".into(),
            content: Some("x".into()),
            url: None,
            author,
        });
        Event::sign_new(
            key,
            origin,
            hive,
            p.event_type(),
            time::now_ms(),
            p.to_json(),
        )
    }

    async fn req(
        &self,
        method: reqwest::Method,
        url: String,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, Option<String>) {
        let mut r = self.http.request(method, url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let (st, b) = body_of(resp).await;
        (st, b, retry)
    }
}

async fn secured() -> TestServer {
    instance_with(|c| c.sync.handshake_secret = Some(SECRET.into())).await
}

#[tokio::test]
async fn sync_forged_and_altered_events_are_rejected_and_counted() {
    let a = secured().await;
    create_hive(&a, "guarded").await;
    enable_group(&a, "guarded").await;
    let m = Fake::new();
    let token = m.token(&a, "guarded").await;
    let a_id = a.running.state.identity.instance_id.clone();

    let good = m.post_event("guarded", m.agent(), &m.id, &m.key);
    let mut altered = m.post_event("guarded", m.agent(), &m.id, &m.key);
    altered.payload = altered.payload.replace("forged?", "altered");
    // Signed correctly by M, but speaks for an agent of A.
    let impostor = m.post_event(
        "guarded",
        AgentRef {
            instance_id: a_id.clone(),
            agent_id: ids::new_id(Kind::Agent, &a_id),
            name: "local".into(),
            avatar_url: None,
        },
        &m.id,
        &m.key,
    );
    // Claims to come from A (ids in A's namespace) but is signed with M's key.
    let spoofed = {
        let mut author = m.agent();
        author.instance_id = a_id.clone();
        m.post_event("guarded", author, &a_id, &m.key)
    };
    let (st, b, _) = m
        .req(
            reqwest::Method::POST,
            a.url("/sync/v1/groups/guarded/events"),
            Some(&token),
            Some(json!({ "events": [good, altered, impostor, spoofed], "first_seq": 1, "last_seq": 4 })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["accepted"], 1, "{b}");
    assert_eq!(b["rejected"], 3, "{b}");
    assert_eq!(b["received_seq"], 4, "{b}");

    // Only the good post is visible; the rejections are counted, per link and globally.
    assert_eq!(post_total(&a, "guarded").await, 1);
    let st = get(&a, "/sync/status").await;
    assert_eq!(st["counters"]["events_rejected"], 3, "{st}");
    let link = st["groups"][0]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["instance_id"] == m.id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(link["events_rejected"], 3, "{link}");
    assert_eq!(link["events_received"], 1, "{link}");

    // The peer status endpoint (token-bound) shows the same.
    let (st, b, _) = m
        .req(
            reqwest::Method::GET,
            a.url("/sync/v1/groups/guarded/status"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["hive"], "guarded");

    // Claiming M's id with another key: 409, and the first key stays.
    let (st, b) = m.handshake(&a, "guarded", &InstanceKey::generate()).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    // Handshake without the secret: 403.
    let (st, b, _) = m
        .req(
            reqwest::Method::POST,
            a.url("/sync/v1/handshake"),
            None,
            Some(json!({
                "protocol_version": 1, "hive": "guarded", "instance_id": ids::new_instance_id(),
                "instance_name": "x", "signing_key": InstanceKey::generate().public().to_base64(),
                "sync_endpoint": "http://127.0.0.1:9/sync/v1", "current_seq": 0, "roster": [],
                "token": ids::new_secret_token("ohs_"),
            })),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
}

#[tokio::test]
async fn sync_tokens_are_bound_to_one_group() {
    let a = secured().await;
    for h in ["g-one", "g-two"] {
        create_hive(&a, h).await;
        enable_group(&a, h).await;
    }
    let m = Fake::new();
    let t1 = m.token(&a, "g-one").await;
    let get_events = |hive: &str| a.url(&format!("/sync/v1/groups/{hive}/events?since=0"));

    let (st, b, _) = m
        .req(reqwest::Method::GET, get_events("g-one"), Some(&t1), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert!(!b["events"].as_array().unwrap().is_empty());
    let (st, b, _) = m
        .req(reqwest::Method::GET, get_events("g-two"), Some(&t1), None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    let ev = m.post_event("g-two", m.agent(), &m.id, &m.key);
    let (st, b, _) = m
        .req(
            reqwest::Method::POST,
            a.url("/sync/v1/groups/g-two/events"),
            Some(&t1),
            Some(json!({ "events": [ev], "first_seq": 1, "last_seq": 1 })),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(post_total(&a, "g-two").await, 0);
    let (st, b, _) = m
        .req(reqwest::Method::GET, get_events("g-one"), None, None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");
    let (st, b, _) = m
        .req(
            reqwest::Method::GET,
            get_events("g-one"),
            Some("ohs_bogus"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");
    // A heartbeat claiming another instance id is refused.
    let (st, b, _) = m
        .req(
            reqwest::Method::POST,
            a.url("/sync/v1/heartbeat"),
            Some(&t1),
            Some(json!({ "instance_id": ids::new_instance_id(), "groups": {} })),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    // After leaving, the token is dead.
    let (st, b, _) = m
        .req(
            reqwest::Method::POST,
            a.url("/sync/v1/groups/g-one/leave"),
            Some(&t1),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["ok"], true);
    let (st, b, _) = m
        .req(reqwest::Method::GET, get_events("g-one"), Some(&t1), None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");
}

#[tokio::test]
async fn sync_flooding_peer_gets_429_and_sender_backs_off() {
    // A accepts 20 events/s with a burst of 20; slow heartbeats so the data moves by push.
    let a = instance_with(|c| {
        c.sync.rate_limit_events_per_sec = 20;
        c.sync.rate_limit_burst = 20;
        c.sync.heartbeat_interval_secs = 30;
    })
    .await;
    let b = instance_with(|c| c.sync.heartbeat_interval_secs = 30).await;
    create_hive(&b, "flood").await;
    enable_group(&b, "flood").await;
    add_peer(&a, "B", &b, &["flood"]).await;
    add_peer(&b, "A", &a, &["flood"]).await;
    wait_visible(&a, "/hives/flood").await;
    // Pairing is over (A pulled what B had and acknowledged it), so what B writes next goes
    // by push, not by A's pairing pulls.
    wait_for(Duration::from_secs(30), "pairing settled", || async {
        let s = get(&b, "/sync/status").await;
        let p = &s["groups"][0]["peers"][0];
        (p["lag"] == 0 && p["state"] == "active").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 120 events arrive at B in twelve bursts within ~0.6 s (far above 20/s plus the burst
    // of 20, however B batches them); B pushes them to A, which refuses what exceeds its
    // budget with 429 + Retry-After.
    let start = Instant::now();
    for _ in 0..12 {
        bulk_posts(&b, "flood", 10).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for(Duration::from_secs(60), "A has all 120 posts", || async {
        (post_total(&a, "flood").await == 120).then_some(())
    })
    .await;
    let elapsed = start.elapsed();
    let st = get(&a, "/sync/status").await;
    let limited = st["counters"]["rate_limited"].as_i64().unwrap();
    assert!(limited >= 1, "expected at least one 429: {st}");
    // Honouring Retry-After (≥ 1 s per refusal) bounds the refusals by the elapsed time.
    assert!(
        limited <= elapsed.as_secs() as i64 + 3,
        "{limited} refusals in {elapsed:?}: sender did not back off"
    );
    // B saw the backpressure as a contact, not a failure.
    let peers = get(&b, "/sync/peers").await;
    assert_eq!(peers["data"][0]["failure_count"], 0, "{peers}");
    assert_eq!(peers["data"][0]["status"], "active", "{peers}");

    // A raw flood by a hand-rolled client gets 429 with Retry-After.
    let m = Fake::new();
    let a2 = instance_with(|c| {
        c.sync.handshake_secret = Some(SECRET.into());
        c.sync.rate_limit_events_per_sec = 5;
        c.sync.rate_limit_burst = 5;
    })
    .await;
    create_hive(&a2, "flood").await;
    enable_group(&a2, "flood").await;
    let token = m.token(&a2, "flood").await;
    let events: Vec<Event> = (0..6)
        .map(|_| m.post_event("flood", m.agent(), &m.id, &m.key))
        .collect();
    let (st, b, retry) = m
        .req(
            reqwest::Method::POST,
            a2.url("/sync/v1/groups/flood/events"),
            Some(&token),
            Some(json!({ "events": events[..5], "first_seq": 1, "last_seq": 5 })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert!(retry.is_none());
    let (st, b, retry) = m
        .req(
            reqwest::Method::POST,
            a2.url("/sync/v1/groups/flood/events"),
            Some(&token),
            Some(json!({ "events": events[5..], "first_seq": 6, "last_seq": 6 })),
        )
        .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert_eq!(b["error"], "Too Many Requests");
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
}

/// Knowing a configured peer's endpoint is not enough to handshake as it: the responder asks
/// the instance at that endpoint who it is. The impostor is refused and the real peer, whose
/// id the impostor tried to pre-empt, still pairs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_impostor_claiming_a_configured_endpoint_is_refused() {
    let a = instance().await;
    let b = instance().await;
    create_hive(&b, "eng").await;
    enable_group(&b, "eng").await;
    add_peer(&b, "A", &a, &["eng"]).await;

    let a_id = a.running.state.identity.instance_id.clone();
    let mallory = InstanceKey::generate();
    for (claimed_id, key) in [(ids::new_instance_id(), &mallory), (a_id.clone(), &mallory)] {
        let resp = reqwest::Client::new()
            .post(b.url("/sync/v1/handshake"))
            .json(&json!({
                "protocol_version": 1,
                "hive": "eng",
                "instance_id": claimed_id,
                "instance_name": "mallory",
                "signing_key": key.public().to_base64(),
                "sync_endpoint": endpoint(&a),
                "current_seq": 0,
                "roster": [],
                "token": ids::new_secret_token("ohs_"),
            }))
            .send()
            .await
            .unwrap();
        let (st, body) = body_of(resp).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    }

    // The genuine A pairs normally afterwards.
    let p = new_post(&b, "eng", "for the real A").await;
    add_peer(&a, "B", &b, &["eng"]).await;
    wait_visible(&a, &format!("/posts/{p}")).await;
}

/// A handshake of M for `hive` announcing `signing_key` (any text).
async fn handshake_with_key(
    m: &Fake,
    s: &TestServer,
    hive: &str,
    signing_key: &str,
    roster: Value,
) -> (StatusCode, Value) {
    let resp = m
        .http
        .post(s.url("/sync/v1/handshake"))
        .header("X-Handshake-Secret", SECRET)
        .json(&json!({
            "protocol_version": 1,
            "hive": hive,
            "instance_id": m.id,
            "instance_name": "fake",
            "signing_key": signing_key,
            "sync_endpoint": format!("http://127.0.0.1:9/{}/sync/v1", m.id),
            "current_seq": 0,
            "roster": roster,
            "token": ids::new_secret_token("ohs_"),
        }))
        .send()
        .await
        .unwrap();
    body_of(resp).await
}

/// The SPKI base64 text of 32 raw key bytes.
fn spki(raw: [u8; 32]) -> String {
    use base64::Engine as _;
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(&raw);
    base64::engine::general_purpose::STANDARD.encode(der)
}

#[tokio::test]
async fn sync_weak_and_non_canonical_keys_are_refused_at_handshake() {
    let a = secured().await;
    create_hive(&a, "keys").await;
    enable_group(&a, "keys").await;
    let m = Fake::new();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut y_over_p = [0xffu8; 32];
    y_over_p[0] = 0xee;
    y_over_p[31] = 0x7f;
    let good = m.key.public().to_base64();
    // The same key bytes with a non-zero padding bit in the base64 text (the character
    // before the `=` carries 4 data bits and 2 padding bits: flip the lowest).
    let alt_padding = {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut b = good.clone().into_bytes();
        let i = b.len() - 2;
        let idx = ALPHABET.iter().position(|c| *c == b[i]).unwrap();
        b[i] = ALPHABET[idx ^ 1];
        String::from_utf8(b).unwrap()
    };
    for key in [spki([0; 32]), spki(identity), spki(y_over_p), alt_padding] {
        let (st, b) = handshake_with_key(&m, &a, "keys", &key, json!([])).await;
        assert_error_shape(st, &b, StatusCode::BAD_REQUEST);
    }
    // A peer name with control characters (a bidi override) is refused like a bad key.
    let resp = m
        .http
        .post(a.url("/sync/v1/handshake"))
        .header("X-Handshake-Secret", SECRET)
        .json(&json!({
            "protocol_version": 1, "hive": "keys", "instance_id": m.id,
            "instance_name": "trusted\u{202e}evil", "signing_key": good,
            "sync_endpoint": format!("http://127.0.0.1:9/{}/sync/v1", m.id),
            "current_seq": 0, "roster": [], "token": ids::new_secret_token("ohs_"),
        }))
        .send()
        .await
        .unwrap();
    let (st, b) = body_of(resp).await;
    assert_error_shape(st, &b, StatusCode::BAD_REQUEST);
    // Nothing was pinned: M's real key is still accepted for its id. A roster entry with a
    // weak key is ignored (never learned, never in the group's roster).
    let weak_member = ids::new_instance_id();
    let (st, b) = handshake_with_key(
        &m,
        &a,
        "keys",
        &good,
        json!([{ "instance_id": weak_member, "signing_key": spki([0; 32]) }]),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let g = get(&a, "/sync/groups/keys").await;
    let roster: Vec<&str> = g["roster"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(roster.contains(&m.id.as_str()), "{g}");
    assert!(!roster.contains(&weak_member.as_str()), "{g}");
}

fn assert_error_shape(st: StatusCode, b: &Value, want: StatusCode) {
    crate::harness::assert_error(st, b, want);
}

#[tokio::test]
async fn sync_push_cursor_claims_are_checked() {
    let a = secured().await;
    create_hive(&a, "cursor").await;
    enable_group(&a, "cursor").await;
    let m = Fake::new();
    let token = m.token(&a, "cursor").await;
    let push = |events: Vec<Event>, first: i64, last: i64| {
        let (m, url, token) = (&m, a.url("/sync/v1/groups/cursor/events"), token.clone());
        async move {
            let (st, b, _) = m
                .req(
                    reqwest::Method::POST,
                    url,
                    Some(&token),
                    Some(json!({ "events": events, "first_seq": first, "last_seq": last })),
                )
                .await;
            (st, b)
        }
    };
    let ev = || m.post_event("cursor", m.agent(), &m.id, &m.key);
    // Absurd claims: refused, nothing applied, the cursor untouched.
    for (events, first, last) in [
        (vec![ev()], 1, i64::MAX),
        (vec![ev()], 0, 1),
        (vec![ev()], 5, 4),
        (vec![ev()], 1, 1001),
        (vec![ev(), ev()], 1, 1),
    ] {
        let (st, b) = push(events, first, last).await;
        assert_error_shape(st, &b, StatusCode::BAD_REQUEST);
    }
    assert_eq!(post_total(&a, "cursor").await, 0);
    let link = |st: &Value| {
        st["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["hive"] == "cursor")
            .and_then(|g| {
                g["peers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["instance_id"] == m.id.as_str())
                    .cloned()
            })
            .unwrap()
    };
    // A contiguous batch moves the cursor.
    let (st, b) = push(vec![ev()], 1, 1).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["received_seq"], 1, "{b}");
    // One that leaves a gap is applied, but the cursor (and the peer's advertised head)
    // stay: the gap is for a pull to fill.
    let (st, b) = push(vec![ev()], 5000, 5000).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["accepted"], 1, "{b}");
    assert_eq!(b["received_seq"], 1, "{b}");
    let l = link(&get(&a, "/sync/status").await);
    assert_eq!(l["last_seq_received"], 1, "{l}");
    assert!(l["remote_seq"].as_i64().unwrap() < 5000, "{l}");
    // The widest batch one push may cover moves it by that much, no more.
    let (st, b) = push(vec![], 2, 1001).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["received_seq"], 1001, "{b}");
    let (st, b) = push(vec![], 1002, 2002).await;
    assert_error_shape(st, &b, StatusCode::BAD_REQUEST);
    assert_eq!(post_total(&a, "cursor").await, 2);
}

/// Events of `hive` from an origin A does not know (a fresh instance id and key).
fn unknown_origin_events(m: &Fake, hive: &str, n: usize) -> Vec<Event> {
    (0..n)
        .map(|_| {
            let origin = ids::new_instance_id();
            let author = AgentRef {
                instance_id: origin.clone(),
                agent_id: ids::new_id(Kind::Agent, &origin),
                name: "ghost".into(),
                avatar_url: None,
            };
            m.post_event(hive, author, &origin, &InstanceKey::generate())
        })
        .collect()
}

#[tokio::test]
async fn sync_waiting_queue_is_bounded_counted_and_reported_per_hive() {
    let a = instance_with(|c| {
        c.sync.handshake_secret = Some(SECRET.into());
        c.sync.max_waiting_per_peer = 3;
        c.sync.max_waiting_total = 4;
    })
    .await;
    for h in ["wa", "wb"] {
        create_hive(&a, h).await;
        enable_group(&a, h).await;
    }
    let (m1, m2) = (Fake::new(), Fake::new());
    let t1 = m1.token(&a, "wa").await;
    let t2 = m2.token(&a, "wb").await;
    // M1 parks 3 events for unknown keys; the 4th and 5th are refused, with the reason.
    let (st, b, _) = m1
        .req(
            reqwest::Method::POST,
            a.url("/sync/v1/groups/wa/events"),
            Some(&t1),
            Some(json!({ "events": unknown_origin_events(&m1, "wa", 5), "first_seq": 1, "last_seq": 5 })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["waiting_for_key"], 3, "{b}");
    assert_eq!(b["rejected"], 2, "{b}");
    assert!(
        b["rejections"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("waiting queue full") && r.contains("max_waiting_per_peer")),
        "{b}"
    );
    // M2 (another peer, another hive) may park one more before the total bound.
    let (st, b, _) = m2
        .req(
            reqwest::Method::POST,
            a.url("/sync/v1/groups/wb/events"),
            Some(&t2),
            Some(json!({ "events": unknown_origin_events(&m2, "wb", 3), "first_seq": 1, "last_seq": 3 })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["waiting_for_key"], 1, "{b}");
    assert_eq!(b["rejected"], 2, "{b}");
    assert!(
        b["rejections"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("max_waiting_total")),
        "{b}"
    );
    // Counts per hive, to the peers of that hive and to the admin; the instance-wide queue
    // and the refusals in the admin's status.
    let (st, b, _) = m1
        .req(
            reqwest::Method::GET,
            a.url("/sync/v1/groups/wa/status"),
            Some(&t1),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["unverified"], 3, "{b}");
    assert_eq!(get(&a, "/sync/groups/wb").await["unverified"], 1);
    let st = get(&a, "/sync/status").await;
    let per_hive: Vec<(String, i64)> = st["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["hive"].as_str().unwrap().to_string(),
                g["unverified"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        per_hive,
        vec![("wa".to_string(), 3), ("wb".to_string(), 1)],
        "{st}"
    );
    assert_eq!(st["waiting"]["unverified"], 4, "{st}");
    assert_eq!(st["waiting"]["max_per_peer"], 3, "{st}");
    assert_eq!(st["waiting"]["max_total"], 4, "{st}");
    assert_eq!(st["counters"]["waiting_refused"], 4, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_outbound_tokens_are_sealed_at_rest() {
    let a = instance().await;
    let b = instance().await;
    create_hive(&b, "sealed").await;
    enable_group(&b, "sealed").await;
    add_peer(&a, "B", &b, &["sealed"]).await;
    add_peer(&b, "A", &a, &["sealed"]).await;
    let p = new_post(&b, "sealed", "through sealed tokens").await;
    wait_visible(&a, &format!("/posts/{p}")).await;
    for s in [&a, &b] {
        let stored: Vec<String> = s
            .running
            .state
            .store
            .read(|c| -> Result<Vec<String>, openhive_store::StoreError> {
                Ok(
                    c.prepare("SELECT token_out FROM peer_groups WHERE token_out IS NOT NULL")?
                        .query_map((), |r| r.get(0))?
                        .collect::<Result<Vec<String>, _>>()?,
                )
            })
            .await
            .unwrap();
        assert!(!stored.is_empty());
        for t in &stored {
            assert!(t.starts_with("sealed:v1:"), "stored in clear: {t}");
            assert!(!t.contains("ohs_"), "{t}");
        }
    }
}

/// The batched routes keep every boundary of the single ones: each group is authenticated
/// by its own token, bound to its hive and to the caller's peer; no token is a 401 before
/// the body is read; a handshake without the secret from an unknown endpoint is refused.
#[tokio::test]
async fn sync_batched_calls_check_every_group_token() {
    let a = secured().await;
    for h in ["b-one", "b-two"] {
        create_hive(&a, h).await;
        enable_group(&a, h).await;
        new_post(&a, h, &format!("in {h}")).await;
    }
    let m = Fake::new();
    let other = Fake::new();
    let t1 = m.token(&a, "b-one").await;
    let t2 = m.token(&a, "b-two").await;
    let o2 = other.token(&a, "b-two").await;
    let pull = |groups: Value| json!({ "groups": groups, "limit": 100 });
    // Both groups served, each with its own token.
    let (st, b, _) = m
        .req(
            reqwest::Method::POST,
            a.url("/sync/v1/batch/pull"),
            Some(&t1),
            Some(pull(json!([
                { "hive": "b-one", "token": t1, "since": 0 },
                { "hive": "b-two", "token": t2, "since": 0 },
            ]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["groups"][0]["hive"], "b-one");
    assert!(
        !b["groups"][0]["events"].as_array().unwrap().is_empty(),
        "{b}"
    );
    assert!(
        !b["groups"][1]["events"].as_array().unwrap().is_empty(),
        "{b}"
    );
    // A token bound to another hive (403), and another peer's token (401), fail their group
    // only.
    let (st, b, _) = m
        .req(
            reqwest::Method::POST,
            a.url("/sync/v1/batch/pull"),
            Some(&t1),
            Some(pull(json!([
                { "hive": "b-two", "token": t1, "since": 0 },
                { "hive": "b-two", "token": o2, "since": 0 },
                { "hive": "b-one", "token": t1, "since": 0 },
            ]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["groups"][0]["error"]["status"], 403, "{b}");
    assert!(b["groups"][0].get("events").is_none(), "{b}");
    assert_eq!(b["groups"][1]["error"]["status"], 401, "{b}");
    assert!(b["groups"][2]["events"].is_array(), "{b}");
    // A push whose group token is not for its hive stores nothing.
    let ev = m.post_event("b-two", m.agent(), &m.id, &m.key);
    let before = post_total(&a, "b-two").await;
    let (st, b, _) = m
        .req(
            reqwest::Method::POST,
            a.url("/sync/v1/batch/push"),
            Some(&t1),
            Some(json!({ "groups": [
                { "hive": "b-two", "token": t1, "events": [ev], "first_seq": 1, "last_seq": 1 }
            ] })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["groups"][0]["error"]["status"], 403, "{b}");
    assert_eq!(post_total(&a, "b-two").await, before);
    // With its own token it is applied.
    let (st, b, _) = m
        .req(
            reqwest::Method::POST,
            a.url("/sync/v1/batch/push"),
            Some(&t1),
            Some(json!({ "groups": [
                { "hive": "b-two", "token": t2, "events": [ev], "first_seq": 1, "last_seq": 1 }
            ] })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["groups"][0]["accepted"], 1, "{b}");
    assert_eq!(post_total(&a, "b-two").await, before + 1);
    // No bearer token: 401 whatever the body.
    let (st, b, _) = m
        .req(
            reqwest::Method::POST,
            a.url("/sync/v1/batch/pull"),
            None,
            Some(json!({ "nonsense": true })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");
    // An empty batch is malformed.
    let (st, b, _) = m
        .req(
            reqwest::Method::POST,
            a.url("/sync/v1/batch/pull"),
            Some(&t1),
            Some(pull(json!([]))),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    // A batched handshake without the secret, from an endpoint nobody configured: 403.
    let (st, b, _) = m
        .req(
            reqwest::Method::POST,
            a.url("/sync/v1/batch/handshake"),
            None,
            Some(json!({
                "protocol_version": 1,
                "instance_id": m.id,
                "instance_name": "fake",
                "signing_key": m.key.public().to_base64(),
                "sync_endpoint": "http://127.0.0.1:9/nobody/sync/v1",
                "groups": [{ "hive": "b-one", "current_seq": 0, "token": ids::new_secret_token("ohs_") }],
            })),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
}
