//! Handshake acceptance, both roles: what this instance does with the other side's handshake
//! data, whether it came as a request (we are the *responder*, answering
//! `POST /sync/v1/handshake`, [`crate::inbound::handshake`]) or as the answer to ours (we are
//! the *initiator*, [`crate::link`]).
//!
//! Owns, for both roles: checking the other side's data ([`Hello`]), learning its key (first
//! key wins), upserting the peer row (by instance id, then endpoint; rows merge), the link's
//! state, storing the token we present to it (`token_out`), learning its roster and releasing
//! the events that waited for a newly learned key, its head (`remote_seq`), recording the
//! contact ([`accept`], inside the caller's write transaction); then the effects after the
//! commit ([`after_commit`]). The side-specific parts are the [`Role`] parameter; what stays
//! with the callers is only what belongs to one role: the responder's authorization (secret or
//! confirmed endpoint), group lookup, token issue and answer; the initiator's request.
//!
//! Invariants:
//! - never trusts a key it has not checked: the peer's own key is learned only if no other key
//!   is known for its id (otherwise nothing is learned, upserted or stored: only the
//!   `key_conflicts` counter moves); roster keys only through [`trust::learn_roster`];
//! - never stores a token, id, key or endpoint that failed [`Hello`]'s checks;
//! - never advances a cursor (`last_seq_sent`, `last_seq_received`); `remote_seq` is advisory;
//! - never issues a token (the responder issues its own after acceptance, the initiator before
//!   sending its request);
//! - never downgrades a link: only `handshaking` becomes `backfilling`; only the responder
//!   creates a link or reopens a `left` one;
//! - no effect outside the transaction before it commits (realtime, wake-ups, workers).

use crate::engine::SyncHandle;
use crate::error::{PeerInputError, SyncError};
use crate::protocol::{
    HandshakeRequest, HandshakeResponse, PROTOCOL_VERSION, RosterEntry, normalize_endpoint,
};
use crate::trust;
use openhive_core::PublicKey;
use openhive_core::RotationStatement;
use openhive_store::ingest::{self, BatchReport};
use openhive_store::{Conn, StoreError, db, keys, sync_state};

/// Length bounds of a token a peer hands us (we issue `ohs_` + 64 hex).
const TOKEN_LEN: std::ops::RangeInclusive<usize> = 16..=256;

/// Which side of the handshake we are.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role<'a> {
    /// We answer the other side's `POST /handshake`: the handshake is its request to share
    /// the hive, so the link is created, or reopened if `left`, in `backfilling`. The link's
    /// `last_error` is left alone: it records our own outbound failures, and an inbound
    /// handshake proves the peer reaches us, not that we reach it (our worker, woken to pull
    /// at once, clears it when its next call succeeds).
    Responder,
    /// The other side answered the handshake our worker made for the link
    /// (`peer_id`, hive). We only complete that link, never create or reopen one (the caller
    /// drops the answer if the link is gone or left meanwhile); its `last_error` is cleared:
    /// it recorded this worker's failed attempts, and this one succeeded.
    Initiator { peer_id: &'a str },
}

impl Role<'_> {
    /// What the other side is called in messages.
    fn other(&self) -> &'static str {
        match self {
            Role::Responder => "initiator",
            Role::Initiator { .. } => "responder",
        }
    }
}

/// The other side's handshake data, checked: a supported protocol version, a well-formed
/// instance id that is not ours, a decodable key, an http(s) endpoint, a token of sane length.
#[derive(Clone)]
pub(crate) struct Hello {
    pub instance_id: String,
    pub instance_name: String,
    /// The key exactly as sent (compared with what the instance's `/identity` says).
    pub signing_key: String,
    key: PublicKey,
    /// Where the other side is reached: the endpoint it announced (responder), or the one we
    /// called (initiator). Normalized.
    pub endpoint: String,
    pub current_seq: i64,
    pub roster: Vec<RosterEntry>,
    /// The token we present when calling it (stored as the link's `token_out`).
    token: String,
    /// Rotation statements it sent (its own key chain and its roster's).
    pub key_rotations: Vec<RotationStatement>,
    /// Responder only: the introduction and proof it presented, and the endpoint exactly as
    /// it announced it (what both cover); see `admission`.
    pub introduced: Option<Introduced>,
}

/// An initiator's introduction with its proof, as received.
#[derive(Debug, Clone)]
pub(crate) struct Introduced {
    pub introduction: openhive_core::Introduction,
    pub proof: Option<crate::protocol::HandshakeProof>,
    pub announced_endpoint: String,
}

impl std::fmt::Debug for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hello")
            .field("instance_id", &self.instance_id)
            .field("endpoint", &self.endpoint)
            .field("current_seq", &self.current_seq)
            .field("roster", &self.roster.len())
            .finish_non_exhaustive()
    }
}

/// The other side's handshake fields, as sent (request and response share them).
struct Raw {
    protocol_version: u32,
    instance_id: String,
    instance_name: String,
    signing_key: String,
    current_seq: i64,
    roster: Vec<RosterEntry>,
    token: String,
    key_rotations: Vec<RotationStatement>,
}

/// The checks both roles make, in the order the responder reports them.
fn check(role: Role<'_>, me: &str, endpoint: &str, raw: Raw) -> Result<Hello, PeerInputError> {
    use PeerInputError::{Conflict, Malformed};
    let Raw {
        protocol_version,
        instance_id,
        instance_name,
        signing_key,
        current_seq,
        roster,
        token,
        key_rotations,
    } = raw;
    if protocol_version != PROTOCOL_VERSION {
        return Err(Malformed(format!(
            "unsupported protocol_version {protocol_version} (this instance speaks {PROTOCOL_VERSION})"
        )));
    }
    if openhive_core::ids::instance_suffix(&instance_id).is_none() {
        return Err(Malformed("malformed instance_id".into()));
    }
    if instance_id == me {
        return Err(Conflict(match role {
            Role::Responder => "the initiator claims this instance's own id".into(),
            Role::Initiator { .. } => format!("the peer at {endpoint} is this instance"),
        }));
    }
    if openhive_core::validate::url(endpoint).is_err() {
        return Err(Malformed("sync_endpoint must be an http(s) URL".into()));
    }
    openhive_core::validate::display_name(&instance_name, "instance_name").map_err(Malformed)?;
    if current_seq < 0 {
        return Err(Malformed("current_seq must be >= 0".into()));
    }
    if !TOKEN_LEN.contains(&token.len()) {
        return Err(Malformed(format!(
            "token must be {}-{} characters",
            TOKEN_LEN.start(),
            TOKEN_LEN.end()
        )));
    }
    let key = PublicKey::from_base64(&signing_key)
        .map_err(|_| Malformed("malformed signing_key".into()))?;
    Ok(Hello {
        instance_id,
        instance_name,
        signing_key,
        key,
        endpoint: normalize_endpoint(endpoint),
        current_seq,
        roster,
        token,
        key_rotations,
        introduced: None,
    })
}

impl Hello {
    /// What `admission` checks of an introduced handshake for `hive`.
    pub(crate) fn candidate<'a>(
        &'a self,
        hive: &'a str,
    ) -> Option<(&'a Introduced, crate::admission::Candidate<'a>)> {
        let i = self.introduced.as_ref()?;
        Some((
            i,
            crate::admission::Candidate {
                hive,
                instance_id: &self.instance_id,
                signing_key: &self.signing_key,
                sync_endpoint: &i.announced_endpoint,
                token: &self.token,
            },
        ))
    }

    /// The responder's view of a request. Returns the hive name it asks for (the caller
    /// resolves it: 404 if there is no such group here).
    pub fn from_request(
        req: HandshakeRequest,
        me: &str,
    ) -> Result<(String, Hello), PeerInputError> {
        let raw = Raw {
            protocol_version: req.protocol_version,
            instance_id: req.instance_id,
            instance_name: req.instance_name,
            signing_key: req.signing_key,
            current_seq: req.current_seq,
            roster: req.roster,
            token: req.token,
            key_rotations: req.key_rotations,
        };
        let mut hello = check(Role::Responder, me, &req.sync_endpoint, raw)?;
        hello.introduced = req.introduction.map(|introduction| Introduced {
            introduction,
            proof: req.proof,
            announced_endpoint: req.sync_endpoint.clone(),
        });
        Ok((req.hive, hello))
    }

    /// The initiator's view of the answer to its request for `hive`, sent to `endpoint`.
    pub fn from_response(
        resp: HandshakeResponse,
        hive: &str,
        endpoint: &str,
        me: &str,
        peer_id: &str,
    ) -> Result<Hello, PeerInputError> {
        if resp.protocol_version == PROTOCOL_VERSION && resp.hive != hive {
            return Err(PeerInputError::Malformed(format!(
                "handshake answered for hive {:?}, not {hive:?}",
                resp.hive
            )));
        }
        let raw = Raw {
            protocol_version: resp.protocol_version,
            instance_id: resp.instance_id,
            instance_name: resp.instance_name,
            signing_key: resp.signing_key,
            current_seq: resp.current_seq,
            roster: resp.roster,
            token: resp.token,
            key_rotations: resp.key_rotations,
        };
        check(Role::Initiator { peer_id }, me, endpoint, raw)
    }
}

/// What [`accept`] did.
#[derive(Debug)]
pub(crate) enum Outcome {
    Accepted(Accepted),
    /// Refused; nothing was learned or stored except the `key_conflicts` counter, which the
    /// caller must commit (return `Ok` from its transaction) before reporting the refusal.
    Refused(PeerInputError),
}

/// A handshake accepted and written.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The peer row (after any merge).
    pub peer_id: String,
    /// Initiator: the link's peer row was merged into another one (its worker must move).
    pub merged: bool,
    /// Events released by the keys learned (the peer's own and its roster's).
    pub released: BatchReport,
    /// Rotation statements new here (relayed to the other peers after the commit).
    pub rotations: Vec<RotationStatement>,
    /// The peer's log of the hive is empty (it announced head 0): there is nothing to pull,
    /// the link was left `active` and no pull follows the handshake.
    pub peer_log_empty: bool,
    /// Responder: our log of the hive is empty (we answered head 0), so the initiator will
    /// not pull; our pushes need not wait for that pull. Set by [`crate::inbound::respond`].
    pub own_log_empty: bool,
}

/// What the handshakes of one batch (one transaction, one peer) share: once the peer's key
/// was learned, its row upserted, its waiting events released and its contact recorded for
/// one group, the next groups with the same identity skip those steps, which would only
/// repeat them with the same result (a batch of N hives did them N times).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The identity accepted last in this transaction (instance id, key as sent, endpoint,
    /// name) and the peer row it gave.
    accepted: Option<(String, String, String, String, String)>,
    /// The roster entries settled in this transaction.
    roster: trust::RosterMemo,
}

impl Shared {
    /// The peer row of `hello` if a group of this transaction accepted the same identity.
    fn peer_of(&self, hello: &Hello) -> Option<String> {
        self.accepted.as_ref().and_then(|(i, k, e, n, p)| {
            (*i == hello.instance_id
                && *k == hello.signing_key
                && *e == hello.endpoint
                && *n == hello.instance_name)
                .then(|| p.clone())
        })
    }
}

/// Accepts the other side's handshake data for the group `hive_id`, inside the caller's write
/// transaction. `role` carries what differs between the two sides (see [`Role`]); `shared`
/// is what the groups of one transaction share (a new one for a single handshake).
pub(crate) fn accept(
    tx: &Conn<'_>,
    hive_id: &str,
    hello: &Hello,
    role: Role<'_>,
    me: &str,
    now: i64,
    shared: &mut Shared,
) -> Result<Outcome, StoreError> {
    let inst = hello.instance_id.as_str();
    // A group carrying rotation statements may change the key chain: it takes every step.
    if !hello.key_rotations.is_empty() {
        shared.accepted = None;
        shared.roster = trust::RosterMemo::default();
    }
    // Rotation statements first: a key the other side rotated to since we learned its first
    // one is then part of its chain (checked statements only; they are facts signed by the
    // keys involved, kept even if the handshake is refused below).
    let rotations = trust::learn_rotations(tx, &hello.key_rotations, inst, me, now)?.new;
    let known = shared.peer_of(hello);
    let peer_id = match known.clone() {
        // Learned, upserted and recorded by an earlier group of this transaction.
        Some(p) => p,
        None => {
            // First key wins (a later key only through the chain). Checked before anything
            // is written: a conflict leaves only the count.
            if keys::learn(tx, inst, &hello.key, Some(inst), now)? == keys::Learned::Conflict {
                db::counter_add(tx, sync_state::KEY_CONFLICTS, 1)?;
                tracing::warn!(
                    peer = inst,
                    "the {} presented a different key than the one we know; refused",
                    role.other()
                );
                return Ok(Outcome::Refused(PeerInputError::Conflict(format!(
                    "instance {inst} is known here with a different signing key"
                ))));
            }
            sync_state::upsert_handshake_peer(tx, inst, &hello.instance_name, &hello.endpoint, now)?
        }
    };
    if let Role::Responder = role {
        sync_state::ensure_link(tx, &peer_id, hive_id, sync_state::LinkState::Backfilling)?;
    }
    // A link still handshaking backfills next. With an empty log on the other side there is
    // nothing to backfill: the link is active at once and no pull follows (pairing thousands
    // of new hives, the side that holds none of them answers head 0 for each).
    let peer_log_empty = hello.current_seq == 0;
    let link = sync_state::link(tx, &peer_id, hive_id)?;
    let had_error = link.as_ref().is_some_and(|l| l.last_error.is_some());
    let next_state = match link.map(|l| l.state) {
        Some(sync_state::LinkState::Handshaking | sync_state::LinkState::Backfilling)
            if peer_log_empty =>
        {
            Some(sync_state::LinkState::Active)
        }
        Some(sync_state::LinkState::Handshaking) => Some(sync_state::LinkState::Backfilling),
        _ => None,
    };
    if let Some(state) = next_state {
        sync_state::set_link_state(tx, &peer_id, hive_id, state)?;
    }
    sync_state::set_token_out(tx, &peer_id, hive_id, Some(&hello.token))?;
    sync_state::add_member(tx, hive_id, inst)?;
    // (Once the key is learned, nothing more waits for it in this transaction.)
    let mut released = match known {
        Some(_) => BatchReport::default(),
        None => ingest::release_unverified(tx, inst, now)?,
    };
    let r =
        trust::learn_roster(tx, hive_id, &hello.roster, inst, now, &mut shared.roster)?.released;
    released.accepted += r.accepted;
    released.duplicates += r.duplicates;
    released.rejected += r.rejected;
    released.changes.extend(r.changes);
    sync_state::set_remote_seq(tx, &peer_id, hive_id, hello.current_seq)?;
    // The link works: a failure recorded before is over. (On the responder's side, the
    // link's own handshake may have failed moments before, while the peer did not know us
    // yet; with nothing to pull, no later step of the link would clear it.)
    if had_error || matches!(role, Role::Initiator { .. }) {
        sync_state::set_link_error(tx, &peer_id, hive_id, None)?;
    }
    if known.is_none() {
        sync_state::record_contact(tx, &peer_id, now)?;
        shared.accepted = Some((
            hello.instance_id.clone(),
            hello.signing_key.clone(),
            hello.endpoint.clone(),
            hello.instance_name.clone(),
            peer_id.clone(),
        ));
    }
    let merged = matches!(role, Role::Initiator { peer_id: p } if p != peer_id);
    Ok(Outcome::Accepted(Accepted {
        peer_id,
        merged,
        released,
        rotations,
        peer_log_empty,
        own_log_empty: false,
    }))
}

/// The effects of an accepted handshake, after its commit: realtime changes and relays of
/// released events (both roles); the responder then starts or wakes the link's worker and
/// asks it to pull once; the initiator's worker pulls next by itself and, if the peer row was
/// merged, the workers are reconciled in the background (this very worker may be the one that
/// stops, so it must not wait for it).
pub(crate) async fn after_commit(
    h: &SyncHandle,
    role: Role<'_>,
    hive_id: &str,
    hello: &Hello,
    accepted: Accepted,
) -> Result<(), SyncError> {
    tracing::info!(
        peer = %hello.instance_id,
        seq = hello.current_seq,
        released = accepted.released.accepted,
        "handshake accepted"
    );
    let relay = accepted.released.accepted > 0;
    h.announce_keys(accepted.rotations, Some(accepted.peer_id.clone()));
    h.emit(accepted.released.changes);
    // The roster may have grown: the hive's other peers hear of it at their next heartbeat
    // (this one told us, and heard our roster in the same handshake).
    h.mark_news_except(hive_id, &accepted.peer_id);
    // A peer paired (its key known, its status active): it may be passed on by gossip.
    h.inner.gossip.bump();
    match role {
        Role::Responder => {
            // The initiator pulls right after its handshake: leave delivery to its pull
            // rather than push the same events at the same time (`link::push_once`). It does
            // not pull an empty log.
            if !accepted.own_log_empty {
                h.expect_pull(&accepted.peer_id, hive_id);
            }
            // The handshake created or reopened exactly this link (`accept` left it
            // `backfilling` or `active` in the transaction that just committed): schedule it
            // without reading it again (a full reconcile per handshake would make pairing N
            // hives cost N², and even one read per hive shows when pairing thousands).
            h.schedule_live_link(&accepted.peer_id, hive_id);
            if relay {
                h.notify(hive_id);
            }
            // The peer evidently reaches us: a link backing off (its own handshake failed
            // while the peer did not know us yet) runs now, with a pull unless the peer's
            // log is empty. Without that, its pushes waited for the backoff.
            if accepted.peer_log_empty {
                h.handshook(&accepted.peer_id, hive_id);
            } else {
                h.request_pull(&accepted.peer_id, hive_id);
            }
        }
        Role::Initiator { .. } => {
            // (The responder's pull was announced before the request: `link::handshake`.)
            if relay {
                h.notify(hive_id);
            }
            if accepted.merged {
                let h2 = h.clone();
                tokio::spawn(async move {
                    if let Err(e) = h2.reconcile().await {
                        tracing::error!(error = %e, "reconciling links");
                    }
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const ME: &str = "inst_me";

    fn key() -> String {
        openhive_core::InstanceKey::generate().public().to_base64()
    }

    fn request() -> HandshakeRequest {
        HandshakeRequest {
            protocol_version: PROTOCOL_VERSION,
            hive: "eng".into(),
            instance_id: "inst_other".into(),
            instance_name: "other".into(),
            signing_key: key(),
            sync_endpoint: "http://10.0.0.1:3000/sync/v1/".into(),
            current_seq: 7,
            roster: vec![],
            token: "ohs_0123456789abcdef".into(),
            key_rotations: vec![],
            introduction: None,
            proof: None,
        }
    }

    fn response() -> HandshakeResponse {
        let r = request();
        HandshakeResponse {
            protocol_version: r.protocol_version,
            hive: r.hive,
            instance_id: r.instance_id,
            instance_name: r.instance_name,
            signing_key: r.signing_key,
            current_seq: r.current_seq,
            roster: r.roster,
            token: r.token,
            key_rotations: r.key_rotations,
        }
    }

    fn from_response(resp: HandshakeResponse) -> Result<Hello, PeerInputError> {
        Hello::from_response(resp, "eng", "http://10.0.0.2:3000/sync/v1", ME, "peer_1")
    }

    #[test]
    fn a_well_formed_hello_is_accepted_on_both_sides() {
        let (hive, h) = Hello::from_request(request(), ME).unwrap();
        assert_eq!(hive, "eng");
        assert_eq!(h.endpoint, "http://10.0.0.1:3000/sync/v1");
        assert_eq!(h.current_seq, 7);
        let h = from_response(response()).unwrap();
        // The initiator reaches the responder where it called it, whatever it announces.
        assert_eq!(h.endpoint, "http://10.0.0.2:3000/sync/v1");
        assert!(!format!("{h:?}").contains("ohs_"));
    }

    #[test]
    fn the_responder_reports_what_it_always_reported() {
        type Edit = fn(&mut HandshakeRequest);
        let cases: Vec<(Edit, PeerInputError)> = vec![
            (
                |r| r.protocol_version = 2,
                PeerInputError::Malformed(
                    "unsupported protocol_version 2 (this instance speaks 1)".into(),
                ),
            ),
            (
                |r| r.instance_id = "nope".into(),
                PeerInputError::Malformed("malformed instance_id".into()),
            ),
            (
                |r| r.instance_id = ME.into(),
                PeerInputError::Conflict("the initiator claims this instance's own id".into()),
            ),
            (
                |r| r.sync_endpoint = "ftp://x".into(),
                PeerInputError::Malformed("sync_endpoint must be an http(s) URL".into()),
            ),
            (
                |r| r.token = "short".into(),
                PeerInputError::Malformed("token must be 16-256 characters".into()),
            ),
            (
                |r| r.token = "x".repeat(257),
                PeerInputError::Malformed("token must be 16-256 characters".into()),
            ),
            (
                |r| r.signing_key = "AAAA".into(),
                PeerInputError::Malformed("malformed signing_key".into()),
            ),
        ];
        for (edit, want) in cases {
            let mut r = request();
            edit(&mut r);
            assert_eq!(Hello::from_request(r, ME).unwrap_err(), want);
        }
    }

    /// A handshake answered with head 0 leaves the link `active` and asks for no pull (the
    /// peer's log is empty); any other head leaves it `backfilling` for the pull that
    /// follows. Before, the initiator pulled every hive after its handshake: pairing
    /// thousands of hives with an instance that held none of them, one empty page each.
    #[test]
    fn an_empty_log_on_the_other_side_is_not_pulled() {
        use openhive_store::sync_state::{self, LinkState, PeerSource};
        let (_dir, store) = crate::temp_store();
        for (head, want_state, want_empty) in [
            (0, LinkState::Active, true),
            (7, LinkState::Backfilling, false),
        ] {
            let got = store
                .write_blocking(move |tx| -> Result<_, StoreError> {
                    let hive = format!("eng{head}");
                    let hive_id = openhive_store::hives::ensure_log(tx, &hive)?;
                    sync_state::ensure_group(tx, &hive_id, &hive, ME, 1)?;
                    let endpoint = format!("http://10.0.0.{head}:3000/sync/v1");
                    let (p, _) = sync_state::upsert_configured_peer(
                        tx,
                        "other",
                        &endpoint,
                        PeerSource::Api,
                        1,
                    )?;
                    sync_state::ensure_link(tx, &p.id, &hive_id, LinkState::Handshaking)?;
                    let mut r = response();
                    r.hive = hive.clone();
                    r.current_seq = head;
                    r.instance_id = format!("inst_other{head}");
                    let hello = Hello::from_response(r, &hive, &endpoint, ME, &p.id).unwrap();
                    let o = accept(
                        tx,
                        &hive_id,
                        &hello,
                        Role::Initiator { peer_id: &p.id },
                        ME,
                        2,
                        &mut Shared::default(),
                    )?;
                    let Outcome::Accepted(a) = o else {
                        panic!("refused: {o:?}")
                    };
                    let link = sync_state::link(tx, &p.id, &hive_id)?.unwrap();
                    Ok((link.state, a.peer_log_empty, link.token_out.is_some()))
                })
                .unwrap();
            assert_eq!(got, (want_state, want_empty, true), "head {head}");
        }
    }

    /// The initiator checked the answer's version, hive, id and key, but stored any token:
    /// an empty or oversized one was kept as `token_out` and sent to the peer.
    #[test]
    fn the_initiator_checks_the_answer_as_the_responder_checks_the_request() {
        let mut r = response();
        r.token = String::new();
        assert!(matches!(
            from_response(r),
            Err(PeerInputError::Malformed(m)) if m.contains("token")
        ));
        let mut r = response();
        r.token = "t".repeat(10_000);
        assert!(matches!(
            from_response(r),
            Err(PeerInputError::Malformed(m)) if m.contains("token")
        ));
        let mut r = response();
        r.hive = "other".into();
        assert!(matches!(
            from_response(r),
            Err(PeerInputError::Malformed(m)) if m.contains("hive")
        ));
        let mut r = response();
        r.protocol_version = 9;
        assert!(matches!(
            from_response(r),
            Err(PeerInputError::Malformed(m)) if m.contains("protocol_version")
        ));
        let mut r = response();
        r.instance_id = ME.into();
        assert!(matches!(
            from_response(r),
            Err(PeerInputError::Conflict(m)) if m.contains("is this instance")
        ));
        let mut r = response();
        r.signing_key = "garbage".into();
        assert!(matches!(
            from_response(r),
            Err(PeerInputError::Malformed(m)) if m.contains("signing_key")
        ));
    }
}
