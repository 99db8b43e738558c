//! Hive Sync against a scripted peer "F": a real instance A talks to a fake `/sync/v1`
//! server the test controls. F pins down what A does with the other side's handshake and
//! heartbeat data and with refused tokens, including orderings a real peer cannot be made to
//! produce on demand (F acts on A between receiving a call and answering it).

use crate::harness::{TestServer, json as body_of};
use crate::sync_util::*;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing;
use axum::{Json, Router};
use openhive_core::InstanceKey;
use openhive_core::ids;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);
const SECRET: &str = "fake-peer-mesh-secret";

/// What F does on the next heartbeat it receives, before answering it.
enum OnHeartbeat {
    /// Handshakes into A for `hive` (A's token for F becomes a fresh one, recorded as
    /// `fresh_token`), then refuses the heartbeat's (now old) token with 401.
    HandshakeThenRefuse { hive: String },
    /// Leaves `hive` on A (with the token A gave F), then answers with `roster` for it.
    LeaveThenAnswer { hive: String, roster: Value },
}

/// How F behaves; tests change it as they go.
#[derive(Default)]
struct Script {
    /// Answer handshakes with this token instead of a fresh one.
    token: Option<String>,
    /// Answer handshakes with this signing key instead of F's.
    key: Option<String>,
    /// Answer every token-authenticated call with 401.
    refuse: bool,
    /// Answer pulls with 429 and this `Retry-After`.
    throttle_pulls: Option<u64>,
    /// Answer a pull from below this seq with an event-less page that ends there (a range
    /// of F's log holding only events A originated: F skips them for A, and F's push cursor
    /// for A moves over them as it serves the page).
    skip_to: Option<i64>,
    /// The head of its log F announces when it answers a handshake (default: `skip_to`,
    /// else 0, an empty log, which A does not pull after the handshake).
    head: Option<i64>,
    on_heartbeat: Option<OnHeartbeat>,
}

/// What F saw.
#[derive(Default)]
struct Seen {
    /// Handshake requests received from A.
    handshakes: usize,
    /// Token-authenticated calls: (when, what, bearer token).
    calls: Vec<(Instant, &'static str, Option<String>)>,
    /// The token A sent in its handshake request (what F presents to A).
    a_token: Option<String>,
    /// `HandshakeThenRefuse`: the token F handed A in its own handshake, and A's status.
    fresh_token: Option<String>,
    trick_status: Option<u16>,
    /// `LeaveThenAnswer`: status of the leave, and when the heartbeat was answered.
    leave_status: Option<u16>,
    answered_at: Option<Instant>,
}

struct Inner {
    id: String,
    key: InstanceKey,
    endpoint: String,
    /// A's base URL, for the calls F makes to A.
    a_base: String,
    script: Mutex<Script>,
    seen: Mutex<Seen>,
}

#[derive(Clone)]
struct Fake(Arc<Inner>);

impl Fake {
    /// Starts F on a free loopback port; it will call A at `a`.
    async fn start(a: &TestServer) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Fake(Arc::new(Inner {
            id: ids::new_instance_id(),
            key: InstanceKey::generate(),
            endpoint: format!("http://{addr}/sync/v1"),
            a_base: a.base_url.clone(),
            script: Mutex::new(Script::default()),
            seen: Mutex::new(Seen::default()),
        }));
        let app = Router::new()
            .route("/sync/v1/identity", routing::get(identity))
            .route("/sync/v1/handshake", routing::post(handshake))
            .route("/sync/v1/heartbeat", routing::post(heartbeat))
            .route(
                "/sync/v1/groups/{hive}/events",
                routing::get(pull).post(push),
            )
            .route("/sync/v1/groups/{hive}/leave", routing::post(leave))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        self.0.script.lock().unwrap()
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.0.seen.lock().unwrap()
    }

    fn record(&self, what: &'static str, headers: &HeaderMap) {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        self.seen().calls.push((Instant::now(), what, bearer));
    }

    /// Calls made with `token` (after `since`, if given).
    fn calls_with(&self, token: &str, since: Option<Instant>) -> usize {
        self.seen()
            .calls
            .iter()
            .filter(|(at, _, b)| b.as_deref() == Some(token) && since.is_none_or(|s| *at >= s))
            .count()
    }

    /// When each pull arrived.
    fn pulls(&self) -> Vec<Instant> {
        self.seen()
            .calls
            .iter()
            .filter(|(_, w, _)| *w == "pull")
            .map(|(at, _, _)| *at)
            .collect()
    }

    /// F as a configured peer of A (so A accepts F's handshakes by confirming its endpoint).
    async fn add_to(&self, a: &TestServer, hive: &str) {
        let (st, b) = post(
            a,
            "/sync/peers",
            json!({ "name": "F", "sync_endpoint": self.0.endpoint, "shared_hives": [hive] }),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
    }
}

fn refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "Unauthorized", "message": "Invalid or expired sync token"})),
    )
        .into_response()
}

async fn identity(State(f): State<Fake>) -> Json<Value> {
    Json(json!({
        "protocol_version": 1, "instance_id": f.0.id, "instance_name": "fake",
        "signing_key": f.0.key.public().to_base64(),
    }))
}

async fn handshake(State(f): State<Fake>, Json(req): Json<Value>) -> Json<Value> {
    let (token, key, head) = {
        let s = f.script();
        (
            s.token.clone(),
            s.key.clone(),
            s.head.or(s.skip_to).unwrap_or(0),
        )
    };
    {
        let mut seen = f.seen();
        seen.handshakes += 1;
        seen.a_token = req["token"].as_str().map(str::to_string);
    }
    Json(json!({
        "protocol_version": 1, "hive": req["hive"], "instance_id": f.0.id,
        "instance_name": "fake",
        "signing_key": key.unwrap_or_else(|| f.0.key.public().to_base64()),
        "current_seq": head, "roster": [],
        "token": token.unwrap_or_else(|| ids::new_secret_token("ohs_")),
    }))
}

async fn pull(
    State(f): State<Fake>,
    Path(_hive): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    f.record("pull", &headers);
    let (refuse, throttle, skip_to) = {
        let s = f.script();
        (s.refuse, s.throttle_pulls, s.skip_to)
    };
    if refuse {
        return refused();
    }
    if let Some(secs) = throttle {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            Json(json!({"error": "Too Many Requests", "message": "Sync rate limit exceeded"})),
        )
            .into_response();
    }
    let since: i64 = q.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    if let Some(end) = skip_to.filter(|end| since < *end) {
        return Json(json!({ "events": [], "next_seq": end, "has_more": false, "head_seq": end }))
            .into_response();
    }
    Json(json!({ "events": [], "next_seq": since, "has_more": false })).into_response()
}

async fn push(
    State(f): State<Fake>,
    Path(_hive): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    f.record("push", &headers);
    if f.script().refuse {
        return refused();
    }
    Json(json!({
        "received_seq": body["last_seq"],
        "accepted": body["events"].as_array().map_or(0, Vec::len),
        "duplicates": 0, "rejected": 0, "waiting_for_key": 0,
    }))
    .into_response()
}

async fn leave(State(f): State<Fake>, headers: HeaderMap) -> Json<Value> {
    f.record("leave", &headers);
    Json(json!({ "ok": true }))
}

async fn heartbeat(State(f): State<Fake>, headers: HeaderMap, Json(_): Json<Value>) -> Response {
    f.record("heartbeat", &headers);
    let (trick, refuse) = {
        let mut s = f.script();
        (s.on_heartbeat.take(), s.refuse)
    };
    let http = reqwest::Client::new();
    match trick {
        Some(OnHeartbeat::HandshakeThenRefuse { hive }) => {
            let fresh = ids::new_secret_token("ohs_");
            let resp = http
                .post(format!("{}/sync/v1/handshake", f.0.a_base))
                .json(&json!({
                    "protocol_version": 1, "hive": hive, "instance_id": f.0.id,
                    "instance_name": "fake", "signing_key": f.0.key.public().to_base64(),
                    "sync_endpoint": f.0.endpoint, "current_seq": 0, "roster": [],
                    "token": fresh,
                }))
                .send()
                .await
                .unwrap();
            let mut seen = f.seen();
            seen.trick_status = Some(resp.status().as_u16());
            seen.fresh_token = Some(fresh);
            return refused();
        }
        Some(OnHeartbeat::LeaveThenAnswer { hive, roster }) => {
            let token = f.seen().a_token.clone().unwrap_or_default();
            let resp = http
                .post(format!("{}/sync/v1/groups/{hive}/leave", f.0.a_base))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            f.seen().leave_status = Some(resp.status().as_u16());
            let answer = json!({
                "instance_id": f.0.id, "sync_endpoint": f.0.endpoint,
                "groups": { hive: { "seq": 5, "roster": roster } },
            });
            f.seen().answered_at = Some(Instant::now());
            return Json(answer).into_response();
        }
        None => {}
    }
    if refuse {
        return refused();
    }
    Json(json!({ "instance_id": f.0.id, "sync_endpoint": f.0.endpoint, "groups": {} }))
        .into_response()
}

/// The one peer A knows (F), as `GET /sync/peers` shows it.
async fn the_peer(a: &TestServer) -> Value {
    get(a, "/sync/peers").await["data"][0].clone()
}

async fn key_conflicts(a: &TestServer) -> i64 {
    get(a, "/sync/status").await["counters"]["key_conflicts"]
        .as_i64()
        .unwrap()
}

async fn shared_hive(a: &TestServer, hive: &str) {
    create_hive(a, hive).await;
    enable_group(a, hive).await;
}

/// A handshake offering another key for a known instance id is refused on both sides, and
/// counted in `key_conflicts` (the count used to be written inside the refused transaction,
/// so it was rolled back with it and stayed 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_handshake_key_conflicts_are_counted_on_both_sides() {
    // Responder: F claims its id again with another key.
    let a = instance_with(|c| c.sync.handshake_secret = Some(SECRET.into())).await;
    shared_hive(&a, "kc").await;
    let f_id = ids::new_instance_id();
    let hello = |key: &InstanceKey| {
        json!({
            "protocol_version": 1, "hive": "kc", "instance_id": f_id, "instance_name": "f",
            "signing_key": key.public().to_base64(),
            "sync_endpoint": "http://127.0.0.1:9/sync/v1", "current_seq": 0, "roster": [],
            "token": ids::new_secret_token("ohs_"),
        })
    };
    let http = reqwest::Client::new();
    for (key, want) in [
        (InstanceKey::generate(), StatusCode::OK),
        (InstanceKey::generate(), StatusCode::CONFLICT),
    ] {
        let resp = http
            .post(a.url("/sync/v1/handshake"))
            .header("X-Handshake-Secret", SECRET)
            .json(&hello(&key))
            .send()
            .await
            .unwrap();
        let (st, b) = body_of(resp).await;
        assert_eq!(st, want, "{b}");
    }
    assert_eq!(key_conflicts(&a).await, 1);

    // Initiator: F answers A2's first handshake with its key, then refuses A2's token (A2
    // forgets it and handshakes again) and answers with another key.
    let a2 = instance().await;
    shared_hive(&a2, "kc").await;
    let f = Fake::start(&a2).await;
    f.add_to(&a2, "kc").await;
    wait_for(T, "the first handshake", || async {
        (the_peer(&a2).await["groups"][0]["state"] == "active").then_some(())
    })
    .await;
    {
        let mut s = f.script();
        s.key = Some(InstanceKey::generate().public().to_base64());
        s.refuse = true;
    }
    wait_for(T, "the second handshake refused", || async {
        let e = the_peer(&a2).await["last_error"]
            .as_str()
            .unwrap_or("")
            .to_string();
        e.contains("different signing key").then_some(())
    })
    .await;
    assert!(f.seen().handshakes >= 2);
    assert!(key_conflicts(&a2).await >= 1);
}

/// The initiator checks the token in a handshake answer as the responder checks the one in a
/// request (16-256 characters). It used to store any token and present it to the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_initiator_refuses_a_malformed_token_in_the_handshake_answer() {
    let a = instance().await;
    shared_hive(&a, "tok").await;
    let f = Fake::start(&a).await;
    f.script().token = Some("short".into());
    f.add_to(&a, "tok").await;
    wait_for(T, "the answer refused", || async {
        let e = the_peer(&a).await["last_error"]
            .as_str()
            .unwrap_or("")
            .to_string();
        e.contains("token must be 16-256 characters").then_some(())
    })
    .await;
    assert_eq!(f.calls_with("short", None), 0, "the bad token was used");
    assert_eq!(the_peer(&a).await["groups"][0]["state"], "handshaking");
    // Once F answers properly the link comes up.
    f.script().token = None;
    wait_for(T, "the link up", || async {
        (the_peer(&a).await["groups"][0]["state"] == "active").then_some(())
    })
    .await;
}

/// A 401 to a token A no longer uses does not throw away the one it holds now. F handshakes
/// into A while A's heartbeat (carrying the old token) is in flight, then refuses that
/// heartbeat: A must keep the fresh token F just gave it. It used to forget whatever token
/// the link held and handshake again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_a_refusal_of_an_old_token_keeps_the_fresh_one() {
    let a = instance().await;
    shared_hive(&a, "race").await;
    let f = Fake::start(&a).await;
    f.script().on_heartbeat = Some(OnHeartbeat::HandshakeThenRefuse {
        hive: "race".into(),
    });
    f.add_to(&a, "race").await;
    let fresh = wait_for(T, "F's handshake into A", || async {
        let seen = f.seen();
        seen.fresh_token.clone().zip(seen.trick_status)
    })
    .await;
    assert_eq!(fresh.1, 200, "F's handshake into A");
    let after = Instant::now();
    // A goes on with the fresh token (it pulls at once after F's handshake, then heartbeats),
    // or (the bug) forgets it and handshakes again.
    wait_for(
        T,
        "A using the fresh token, or handshaking again",
        || async {
            (f.calls_with(&fresh.0, Some(after)) >= 2 || f.seen().handshakes > 1).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        f.seen().handshakes,
        1,
        "A forgot the fresh token and handshook again"
    );
    assert!(f.calls_with(&fresh.0, Some(after)) >= 2);
    assert_ne!(the_peer(&a).await["groups"][0]["state"], "handshaking");
}

/// The answer to a heartbeat is applied to the links A shares with the peer when the answer
/// arrives, not to those it shared when it sent the heartbeat: a peer that left the hive
/// meanwhile vouches for nobody there. A used to apply the answer to its pre-call snapshot,
/// learning the roster of a hive the peer had just left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_heartbeat_answer_for_a_hive_left_meanwhile_teaches_no_keys() {
    let a = instance().await;
    shared_hive(&a, "gone").await;
    let f = Fake::start(&a).await;
    let x = ids::new_instance_id();
    f.script().on_heartbeat = Some(OnHeartbeat::LeaveThenAnswer {
        hive: "gone".into(),
        roster: json!([{ "instance_id": x, "signing_key": InstanceKey::generate().public().to_base64() }]),
    });
    f.add_to(&a, "gone").await;
    let answered = wait_for(T, "the heartbeat answered", || async {
        let seen = f.seen();
        seen.answered_at.zip(seen.leave_status)
    })
    .await;
    assert_eq!(answered.1, 200, "F's leave");
    assert_eq!(the_peer(&a).await["groups"][0]["state"], "left");
    // Leave A time to apply the answer.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let roster = get(&a, "/sync/groups/gone").await["roster"].clone();
    assert!(
        !roster.as_array().unwrap().iter().any(|i| i == x.as_str()),
        "learned a roster from a peer that left: {roster}"
    );
}

/// A 429 to a pull is backpressure, as for a push: A waits `Retry-After` and counts a
/// contact, not a failure. A pull used to treat it as a failure (failure count up, backoff).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_a_429_to_a_pull_is_backpressure_not_a_failure() {
    // No heartbeats: nothing else resets the failure count.
    let a = instance_with(|c| c.sync.heartbeat_interval_secs = 60).await;
    shared_hive(&a, "slow").await;
    let f = Fake::start(&a).await;
    f.script().throttle_pulls = Some(1);
    f.script().head = Some(1);
    f.add_to(&a, "slow").await;
    wait_for(T, "three pulls refused", || async {
        (f.pulls().len() >= 3).then_some(())
    })
    .await;
    let peer = the_peer(&a).await;
    assert_eq!(peer["failure_count"], 0, "{peer}");
    assert_eq!(peer["status"], "active", "{peer}");
    assert_eq!(
        peer["groups"][0]["last_error"], "rate limited (429)",
        "{peer}"
    );
    // Retry-After is honoured between pulls.
    let pulls = f.pulls();
    for w in pulls.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(900),
            "pulled again after {:?}",
            w[1] - w[0]
        );
    }
    // When F stops throttling, the link comes up.
    f.script().throttle_pulls = None;
    wait_for(T, "the link up", || async {
        (the_peer(&a).await["groups"][0]["state"] == "active").then_some(())
    })
    .await;
}

/// A pulled page without events that moves the cursor (a range of the peer's log holding
/// only events we originated, skipped for us) is not acknowledged by another pull: the peer
/// moved its push cursor over that range when it served the page. (A page with events is:
/// see `sync_backfill`.)
#[tokio::test]
async fn sync_an_event_less_page_is_not_followed_by_an_acknowledging_pull() {
    // No heartbeats: only the link's own steps pull.
    let a = instance_with(|c| c.sync.heartbeat_interval_secs = 60).await;
    shared_hive(&a, "echo").await;
    let f = Fake::start(&a).await;
    f.script().skip_to = Some(5);
    f.add_to(&a, "echo").await;
    wait_for(T, "the cursor over the skipped range", || async {
        (the_peer(&a).await["groups"][0]["last_seq_received"] == 5).then_some(())
    })
    .await;
    // A's outbox (the hive's own events) goes to F after the pull: once F saw a push, A's
    // pull steps are over, and an acknowledging pull would have come before it.
    wait_for(Duration::from_secs(60), "a push from A", || async {
        f.seen()
            .calls
            .iter()
            .any(|(_, w, _)| *w == "push")
            .then_some(())
    })
    .await;
    let pulls = f.pulls().len();
    assert_eq!(pulls, 1, "{pulls} pulls for one event-less page");
    assert_eq!(the_peer(&a).await["groups"][0]["state"], "active");
}
