//! What one event's signature costs on this machine: the floor under every synced write
//! (the origin signs it) and every applied event (each replica checks it, whatever the
//! path: push, pull or backfill; alone, or a page or a pushed batch at once). Prints
//! figures; asserts nothing about speed.
//!
//! ```sh
//! cargo bench -p openhive-core --bench signing_bench
//! ```
//!
//! docs/PERFORMANCE.md, "The floor per event", reads these beside the load generator's
//! CPU per post, taken in the same sitting.

use openhive_core::event::{Event, EventType};
use openhive_core::ids;
use openhive_core::signing::InstanceKey;
use std::hint::black_box;
use std::time::Instant;

/// Rounds of each measurement; the best round is printed (the least disturbed by the
/// shared machine), and the median beside it.
const ROUNDS: usize = 7;
/// Operations per round.
const OPS: usize = 2_000;

fn measure(name: &str, mut op: impl FnMut(usize)) {
    let mut per_op: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for i in 0..OPS {
                op(i);
            }
            start.elapsed().as_secs_f64() * 1e6 / OPS as f64
        })
        .collect();
    per_op.sort_by(f64::total_cmp);
    println!(
        "{name:<44} best {:>7.2} µs   median {:>7.2} µs",
        per_op[0],
        per_op[ROUNDS / 2]
    );
}

fn main() {
    let key = InstanceKey::from_seed(&[7u8; 32]);
    let public = key.public();
    let instance = ids::new_instance_id();
    // A post as the load generator writes it (title, a few sentences of content).
    let payload = format!(
        r#"{{"post_id":"{}","title":"bench post 12345","content":"{}","url":null,"author":{{"instance_id":"{instance}","agent_id":"agent_01","name":"bench-agent-3","avatar_url":null}}}}"#,
        ids::new_instance_id(),
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(4)
    );
    let events: Vec<Event> = (0..OPS)
        .map(|i| {
            Event::sign_new(
                &key,
                &instance,
                "general",
                EventType::PostCreated,
                1_700_000_000_000 + i as i64,
                payload.clone(),
            )
        })
        .collect();
    println!(
        "one event: {} bytes signed ({} bytes of payload)",
        events[0].signing_bytes().len(),
        payload.len()
    );
    measure("sign a new event (Event::sign_new)", |i| {
        black_box(Event::sign_new(
            &key,
            &instance,
            "general",
            EventType::PostCreated,
            i as i64,
            payload.clone(),
        ));
    });
    measure("check an event (Event::verify)", |i| {
        black_box(events[i].verify(&public).is_ok());
    });
    // Per event, in batches as pushes (tens) and pulled pages (hundreds) bring them.
    for batch in [8, 64, 500] {
        measure(
            &format!("check in batches of {batch} (Event::verify_each)"),
            |i| {
                if i % batch == 0 {
                    let end = (i + batch).min(OPS);
                    let items: Vec<(&Event, &_)> =
                        events[i..end].iter().map(|e| (e, &public)).collect();
                    black_box(Event::verify_each(&items));
                }
            },
        );
    }
    // The strict rule used before (RFC 8032 strict, one by one), for comparison.
    let strict = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes(&public)).ok();
    if let Some(strict) = strict {
        measure("check an event, verify_strict (before)", |i| {
            let raw = base64_decode(&events[i].signature);
            let sig = ed25519_dalek::Signature::from_bytes(&raw);
            black_box(
                strict
                    .verify_strict(&events[i].signing_bytes(), &sig)
                    .is_ok(),
            );
        });
    }
    measure("signing bytes alone (Event::signing_bytes)", |i| {
        black_box(events[i].signing_bytes());
    });
}

fn key_bytes(public: &openhive_core::signing::PublicKey) -> [u8; 32] {
    let der = base64_decode_vec(&public.to_base64());
    der[12..].try_into().unwrap_or([0; 32])
}

fn base64_decode(s: &str) -> [u8; 64] {
    base64_decode_vec(s).try_into().unwrap_or([0; 64])
}

fn base64_decode_vec(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_default()
}
