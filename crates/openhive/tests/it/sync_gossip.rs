//! Peer gossip (docs/PROTOCOL-sync.md, "Gossip"): a fourth instance that knows one seed peer
//! learns the others from heartbeats' `known_peers`, pairs with them on the seed's
//! introduction, and keeps converging after the seed is gone; vanished gossip-sourced peers
//! are removed and configured ones are not; and the refusals of introduced handshakes.

use crate::harness::{TestServer, json as body_of};
use crate::sync_util::*;
use openhive_core::{InstanceKey, Introduction, IntroductionKind, ids, time};
use openhive_server::config::Config;
use openhive_sync::protocol::HandshakeProof;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const HIVE: &str = "eng";
const WAIT: Duration = Duration::from_secs(60);

/// Gossip without waiting: changes go out at the next heartbeat.
fn fast_gossip(c: &mut Config) {
    c.sync.gossip.exchange_interval = 200;
}

async fn gossiping() -> TestServer {
    instance_with(fast_gossip).await
}

/// The peers `s` lists, as (instance id, source).
async fn peers(s: &TestServer) -> Vec<(String, String)> {
    let b = get(s, "/sync/peers?limit=500").await;
    b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["instance_id"].as_str().unwrap_or("").to_string(),
                p["source"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn inst(s: &TestServer) -> String {
    s.running.state.identity.instance_id.clone()
}

/// Waits until `s` has an active link for `hive` with the instance `other`.
async fn wait_linked(s: &TestServer, other: &TestServer, hive: &str) {
    let want = inst(other);
    wait_for(WAIT, &format!("a link to {want}"), || async {
        let b = get(s, &format!("/sync/peers?limit=500&hive={hive}")).await;
        b["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| {
                p["instance_id"] == want.as_str()
                    && p["groups"].as_array().is_some_and(|g| {
                        g.iter()
                            .any(|g| g["hive"] == hive && g["state"] == "active")
                    })
            })
            .then_some(())
    })
    .await
}

/// A, B, C share `eng` in a configured full mesh; D and A configure each other only.
async fn seeded_mesh(d_config: impl FnOnce(&mut Config) + Send + 'static) -> [TestServer; 4] {
    let a = gossiping().await;
    let b = gossiping().await;
    let c = gossiping().await;
    let d = instance_with(move |cfg| {
        fast_gossip(cfg);
        d_config(cfg);
    })
    .await;
    create_hive(&a, HIVE).await;
    mesh(&[&a, &b, &c], HIVE).await;
    add_peer(&d, "seed", &a, &[HIVE]).await;
    add_peer(&a, "newcomer", &d, &[HIVE]).await;
    [a, b, c, d]
}

#[tokio::test]
async fn a_newcomer_with_one_seed_learns_the_mesh_by_gossip_and_outlives_the_seed() {
    let [a, b, c, d] = seeded_mesh(|_| {}).await;
    // D learns B and C from A and pairs with them (on A's introduction); they learn D.
    wait_linked(&d, &b, HIVE).await;
    wait_linked(&d, &c, HIVE).await;
    wait_linked(&b, &d, HIVE).await;
    wait_linked(&c, &d, HIVE).await;
    let on_d = peers(&d).await;
    for o in [&b, &c] {
        let src = on_d
            .iter()
            .find(|(i, _)| *i == inst(o))
            .map(|(_, s)| s.as_str());
        assert_eq!(src, Some("gossip"), "{on_d:?}");
    }
    assert!(
        on_d.iter().any(|(i, s)| *i == inst(&a) && s == "api"),
        "the seed stays as configured: {on_d:?}"
    );
    // A peer known only by gossip is not a configured endpoint: B itself, without an
    // introduction (and without the mesh secret), is refused by D.
    let (st, body) = handshake_raw(
        &d,
        &inst(&b),
        &b.running.state.identity.key.get(),
        &endpoint(&b),
        HIVE,
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");

    // The seed goes away; the rest keep converging, D included.
    let a_inst = inst(&a);
    a.running.shutdown().await.unwrap();
    new_post(&b, HIVE, "from b after the seed left").await;
    new_post(&d, HIVE, "from d after the seed left").await;
    new_post(&c, HIVE, "from c after the seed left").await;
    let snap = wait_converged(&[&b, &c, &d], HIVE, WAIT, |s| post_count(s) == 3).await;
    assert_eq!(post_count(&snap), 3);
    // The configured seed is never removed, however dead.
    assert!(peers(&d).await.iter().any(|(i, _)| *i == a_inst));
}

#[tokio::test]
async fn vanished_gossip_peers_are_removed_and_configured_ones_are_kept() {
    let [a, b, c, d] = seeded_mesh(|cfg| {
        cfg.sync.gossip.max_failures = 2;
        cfg.sync.gossip.stale_timeout = 600_000;
    })
    .await;
    wait_linked(&d, &b, HIVE).await;
    wait_linked(&d, &c, HIVE).await;
    let (a_inst, b_inst, c_inst) = (inst(&a), inst(&b), inst(&c));
    a.running.shutdown().await.unwrap();
    b.running.shutdown().await.unwrap();
    wait_for(WAIT, "B removed from D's peers", || async {
        let p = peers(&d).await;
        (!p.iter().any(|(i, _)| *i == b_inst)).then_some(p)
    })
    .await;
    let p = peers(&d).await;
    assert!(
        p.iter().any(|(i, s)| *i == a_inst && s == "api"),
        "the configured seed stays: {p:?}"
    );
    assert!(
        p.iter().any(|(i, _)| *i == c_inst),
        "a live gossip peer stays: {p:?}"
    );
    // And D still syncs with C.
    new_post(&c, HIVE, "still here").await;
    wait_converged(&[&c, &d], HIVE, WAIT, |s| post_count(s) == 1).await;
    drop(c);
}

/// POSTs a handshake for `hive` to `s` as `instance_id` with `key`, announcing `endpoint`,
/// with an optional introduction and proof; no mesh secret.
async fn handshake_raw(
    s: &TestServer,
    instance_id: &str,
    key: &InstanceKey,
    endpoint: &str,
    hive: &str,
    introduction: Option<&Introduction>,
    proof: Option<&HandshakeProof>,
) -> (StatusCode, Value) {
    handshake_with_token(
        s,
        instance_id,
        key,
        endpoint,
        hive,
        introduction,
        proof,
        &ids::new_secret_token("ohs_"),
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn handshake_with_token(
    s: &TestServer,
    instance_id: &str,
    key: &InstanceKey,
    endpoint: &str,
    hive: &str,
    introduction: Option<&Introduction>,
    proof: Option<&HandshakeProof>,
    token: &str,
) -> (StatusCode, Value) {
    let mut body = json!({
        "protocol_version": 1,
        "hive": hive,
        "instance_id": instance_id,
        "instance_name": "stranger",
        "signing_key": key.public().to_base64(),
        "sync_endpoint": endpoint,
        "current_seq": 0,
        "roster": [],
        "token": token,
    });
    if let Some(i) = introduction {
        body["introduction"] = serde_json::to_value(i).unwrap();
    }
    if let Some(p) = proof {
        body["proof"] = serde_json::to_value(p).unwrap();
    }
    let resp = reqwest::Client::new()
        .post(s.url("/sync/v1/handshake"))
        .json(&body)
        .send()
        .await
        .unwrap();
    body_of(resp).await
}

/// A stranger M asks B to pair for `eng` on an introduction: refused unless a member of B's
/// roster (A) vouches for exactly M's id, key, endpoint and hive, unexpired, and M proves it
/// holds the key.
#[tokio::test]
async fn introduced_handshakes_are_refused_unless_a_member_vouches_for_exactly_this_peer() {
    let a = gossiping().await;
    // M is admitted at the end, then unreachable: keep it long enough to look at it.
    let b = instance_with(|c| {
        fast_gossip(c);
        c.sync.gossip.max_failures = 1000;
    })
    .await;
    create_hive(&a, HIVE).await;
    mesh(&[&a, &b], HIVE).await;
    wait_linked(&b, &a, HIVE).await;
    let a_key = a.running.state.identity.key.get();
    let a_id = inst(&a);

    let m_key = InstanceKey::generate();
    let m_id = ids::new_instance_id();
    let m_ep = format!("http://127.0.0.1:9/{m_id}/sync/v1");
    let now = time::now_ms();
    let intro = |issuer_key: &InstanceKey,
                 issuer: &str,
                 subject_key: &str,
                 ep: &str,
                 hives: &[&str],
                 expires_at: i64| {
        Introduction::sign(
            issuer_key,
            IntroductionKind::Peer,
            issuer,
            &m_id,
            subject_key,
            ep,
            hives.iter().map(|h| h.to_string()).collect(),
            now - 1000,
            expires_at,
        )
    };
    let m_pub = m_key.public().to_base64();
    let good = intro(&a_key, &a_id, &m_pub, &m_ep, &[HIVE], now + 3_600_000);

    // Sends M's handshake with `i` and a proof signed by `prover`.
    let attempt = |i: Option<Introduction>, prover: Option<InstanceKey>| {
        let (b, m_id, m_key, m_ep) = (&b, m_id.clone(), m_key.clone(), m_ep.clone());
        async move {
            let token = ids::new_secret_token("ohs_");
            let proof = prover
                .map(|k| HandshakeProof::sign(&k, HIVE, &m_id, &m_ep, &token, time::now_ms()));
            handshake_with_token(
                b,
                &m_id,
                &m_key,
                &m_ep,
                HIVE,
                i.as_ref(),
                proof.as_ref(),
                &token,
            )
            .await
        }
    };

    let stranger = InstanceKey::generate();
    let stranger_id = ids::new_instance_id();
    let other_key = InstanceKey::generate().public().to_base64();
    let cases: Vec<(&str, Option<Introduction>, Option<InstanceKey>)> = vec![
        ("no voucher at all", None, None),
        (
            "a voucher by a non-member",
            Some(intro(
                &stranger,
                &stranger_id,
                &m_pub,
                &m_ep,
                &[HIVE],
                now + 3_600_000,
            )),
            Some(m_key.clone()),
        ),
        (
            "a member's name on a statement it did not sign",
            Some(intro(
                &stranger,
                &a_id,
                &m_pub,
                &m_ep,
                &[HIVE],
                now + 3_600_000,
            )),
            Some(m_key.clone()),
        ),
        (
            "a voucher for another key",
            Some(intro(
                &a_key,
                &a_id,
                &other_key,
                &m_ep,
                &[HIVE],
                now + 3_600_000,
            )),
            Some(m_key.clone()),
        ),
        (
            "a voucher for another endpoint",
            Some(intro(
                &a_key,
                &a_id,
                &m_pub,
                "http://127.0.0.1:8/sync/v1",
                &[HIVE],
                now + 3_600_000,
            )),
            Some(m_key.clone()),
        ),
        (
            "a voucher for another hive",
            Some(intro(
                &a_key,
                &a_id,
                &m_pub,
                &m_ep,
                &["ops"],
                now + 3_600_000,
            )),
            Some(m_key.clone()),
        ),
        (
            "an expired voucher",
            Some(intro(&a_key, &a_id, &m_pub, &m_ep, &[HIVE], now - 500)),
            Some(m_key.clone()),
        ),
        ("a voucher without a proof", Some(good.clone()), None),
        (
            "a voucher copied without the key (proof by another key)",
            Some(good.clone()),
            Some(InstanceKey::generate()),
        ),
    ];
    for (what, i, prover) in cases {
        let (st, body) = attempt(i, prover).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{what}: {body}");
        assert!(body["message"].is_string(), "{what}: {body}");
    }
    // B has no peer row for M after all that.
    assert!(!peers(&b).await.iter().any(|(i, _)| *i == m_id));

    // The control: the same handshake with the right voucher and proof is admitted, and M
    // counts as a gossip-sourced peer at B.
    let (st, body) = attempt(Some(good), Some(m_key.clone())).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let p = peers(&b).await;
    assert!(p.iter().any(|(i, s)| *i == m_id && s == "gossip"), "{p:?}");
    let (st, _) = call(&b, Method::GET, "/sync/status", None).await;
    assert_eq!(st, StatusCode::OK);
}

/// M (a fresh identity) asks `s` to pair for `eng` with an introduction by `voucher` (a
/// member of `s`'s roster) and a valid proof.
async fn vouched_handshake(
    s: &TestServer,
    voucher: &TestServer,
    m_key: &InstanceKey,
    m_id: &str,
) -> (StatusCode, Value) {
    let m_ep = format!("http://127.0.0.1:9/{m_id}/sync/v1");
    let now = time::now_ms();
    let intro = Introduction::sign(
        &voucher.running.state.identity.key.get(),
        IntroductionKind::Peer,
        &inst(voucher),
        m_id,
        &m_key.public().to_base64(),
        &m_ep,
        vec![HIVE.to_string()],
        now - 1000,
        now + 3_600_000,
    );
    let token = ids::new_secret_token("ohs_");
    let proof = HandshakeProof::sign(m_key, HIVE, m_id, &m_ep, &token, now);
    handshake_with_token(
        s,
        m_id,
        m_key,
        &m_ep,
        HIVE,
        Some(&intro),
        Some(&proof),
        &token,
    )
    .await
}

/// The accepting side keeps `max_gossip_peers` too: a responder whose hive already has that
/// many gossip-sourced links refuses a new introduced handshake with 503 (the initiator backs
/// off and drops it after `max_failures`), while a peer already linked may handshake again.
/// Before, only the links gossip opened were capped, and an instance many others learned of
/// accepted them all (54 links at 100 instances in the engine simulation).
#[tokio::test]
async fn introduced_handshakes_beyond_max_gossip_peers_are_refused() {
    let a = gossiping().await;
    let b = instance_with(|c| {
        fast_gossip(c);
        c.sync.gossip.max_gossip_peers = 1;
        c.sync.gossip.max_failures = 1000;
    })
    .await;
    create_hive(&a, HIVE).await;
    mesh(&[&a, &b], HIVE).await;
    wait_linked(&b, &a, HIVE).await;

    let (k1, id1) = (InstanceKey::generate(), ids::new_instance_id());
    let (k2, id2) = (InstanceKey::generate(), ids::new_instance_id());
    let (st, body) = vouched_handshake(&b, &a, &k1, &id1).await;
    assert_eq!(st, StatusCode::OK, "the first gossip peer fits: {body}");
    let (st, body) = vouched_handshake(&b, &a, &k2, &id2).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_gossip_peers")),
        "{body}"
    );
    let p = peers(&b).await;
    assert!(
        !p.iter().any(|(i, _)| *i == id2),
        "no row for the refused one: {p:?}"
    );
    // The admitted one handshakes again (a lost token, a restart): still admitted.
    let (st, body) = vouched_handshake(&b, &a, &k1, &id1).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    // The configured peer is not a gossip peer: A's handshakes go on being admitted.
    wait_linked(&b, &a, HIVE).await;
}
