//! Who may handshake: the admission rules of a responder, one place for the single and the
//! batched handshake (docs/PROTOCOL-sync.md, "Trust model" and "Introductions").
//!
//! A handshake is admitted by one of:
//! 1. the mesh secret (`X-Handshake-Secret`);
//! 2. a configured peer's endpoint, confirmed at its `/identity` (`inbound`);
//! 3. an **introduction** from an issuer this instance trusts for its kind, with the
//!    initiator's **proof** that it holds the introduced key:
//!    - kind `hub`: signed by the MAP hub this instance is registered with
//!      ([`SyncHandle::trusted_hub`]);
//!    - kind `peer`: signed by a member of the hive's roster here other than the subject
//!      (a member's key is known only through peers we hold a token with, so the chain of
//!      vouching ends at instances we paired with ourselves).
//!
//! Invariants: never admits on an introduction without a proof by the subject's key dated
//! within [`HANDSHAKE_PROOF_WINDOW_MS`]; never trusts an issuer's key it learned from the
//! introduction itself; a refusal is a 403 that says why, never a half-applied handshake.

use crate::error::SyncError;
use crate::protocol::HandshakeProof;
use openhive_core::introduction::{
    Claim, HANDSHAKE_PROOF_WINDOW_MS, IntroductionError, handshake_proof_bytes,
};
use openhive_core::{Introduction, IntroductionKind, PublicKey};
use openhive_store::{Conn, keys, sync_state};

/// The MAP hub whose introductions this instance accepts: its instance id and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedHub {
    pub instance_id: String,
    pub key: PublicKey,
}

/// What the responder knows of the handshake it checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate<'a> {
    pub hive: &'a str,
    pub instance_id: &'a str,
    pub signing_key: &'a str,
    pub sync_endpoint: &'a str,
    /// The token the initiator sent (covered by its proof).
    pub token: &'a str,
}

fn forbidden(why: impl std::fmt::Display) -> SyncError {
    SyncError::Forbidden(format!("handshake not admitted: {why}"))
}

/// Checks an introduced handshake inside the responder's transaction. `hive_id` is the
/// group's hive; `hub` the hub trusted now (if any).
pub(crate) fn check_introduced(
    tx: &Conn<'_>,
    hive_id: &str,
    intro: &Introduction,
    proof: Option<&HandshakeProof>,
    c: Candidate<'_>,
    hub: Option<&TrustedHub>,
    now: i64,
) -> Result<(), SyncError> {
    intro
        .check_form()
        .map_err(|e: IntroductionError| forbidden(e))?;
    let issuer_key = match intro.kind {
        IntroductionKind::Hub => {
            let Some(hub) = hub.filter(|h| h.instance_id == intro.issuer) else {
                return Err(forbidden(
                    "the introduction's hub is not the hub this instance trusts",
                ));
            };
            hub.key
        }
        IntroductionKind::Peer => {
            let member = sync_state::roster(tx, hive_id)?
                .iter()
                .any(|(id, _)| id == &intro.issuer);
            if !member || intro.issuer == c.instance_id {
                return Err(forbidden(
                    "the introduction's issuer is not a member of this hive here",
                ));
            }
            match keys::chain(tx, &intro.issuer)? {
                Some(chain) => chain.key_for(intro.issued_at),
                None => return Err(forbidden("the introduction's issuer has no known key")),
            }
        }
    };
    let claim = Claim {
        instance_id: c.instance_id,
        signing_key: c.signing_key,
        sync_endpoint: c.sync_endpoint,
        hive: c.hive,
    };
    intro.verify(&issuer_key, claim, now).map_err(forbidden)?;
    check_proof(proof, c, now)
}

/// The initiator's proof that it holds the key it (and its introduction) names.
fn check_proof(
    proof: Option<&HandshakeProof>,
    c: Candidate<'_>,
    now: i64,
) -> Result<(), SyncError> {
    let Some(p) = proof else {
        return Err(forbidden("an introduced handshake needs a proof"));
    };
    if (now - p.at).abs() > HANDSHAKE_PROOF_WINDOW_MS {
        return Err(forbidden(
            "the handshake proof is too old or from the future",
        ));
    }
    let key = PublicKey::from_base64(c.signing_key).map_err(|_| forbidden("signing_key"))?;
    let bytes = handshake_proof_bytes(c.hive, c.instance_id, c.sync_endpoint, c.token, p.at);
    key.verify(&bytes, &p.signature)
        .map_err(|_| forbidden("the handshake proof does not verify"))
}

/// Of the introductions held for ourselves, the one to present for `hive`: a hub's first,
/// then the one valid longest (`held` comes newest expiry first).
#[allow(dead_code)] // kept for callers without a preference (the hub client)
pub(crate) fn pick_own(held: &[Introduction], hive: &str) -> Option<Introduction> {
    pick_own_preferring(held, hive, None)
}

/// [`pick_own`], but among peer introductions the one issued by `prefer` comes first: for a
/// peer learned by gossip, the instance that told us about it, which shares the hive with it
/// and so is the issuer most likely to be in its roster.
pub(crate) fn pick_own_preferring(
    held: &[Introduction],
    hive: &str,
    prefer: Option<&str>,
) -> Option<Introduction> {
    held.iter()
        .filter(|i| i.covers(hive))
        .min_by_key(|i| {
            (
                i.kind != IntroductionKind::Hub,
                prefer.is_none_or(|p| i.issuer != p),
                std::cmp::Reverse(i.expires_at),
            )
        })
        .cloned()
}
