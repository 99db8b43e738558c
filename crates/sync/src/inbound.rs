//! Server side of `/sync/v1`: one plain async function per endpoint. The HTTP layer extracts
//! the bearer token, the handshake-secret header and the body, calls these, and maps
//! [`SyncError`] to 401/403/404/409/429.
//!
//! What is checked where:
//! - handshake: the mesh secret (`X-Handshake-Secret`) or a configured peer's endpoint
//!   (here); protocol version, a well-formed instance id, key, endpoint and token, and
//!   first-key-wins (409 otherwise) in [`crate::accept`], which also applies the initiator's
//!   data exactly as the initiator applies ours;
//! - every other call: a token we issued (hash lookup, [`crate::tokens`]: 401 otherwise),
//!   bound to one peer and one hive; the hive in the URL must be that hive (403);
//! - heartbeat: the sender must be the token's peer (403); its groups are applied by
//!   [`crate::groups`], as the sender applies our answer;
//! - pushed events: everything `ingest_remote` checks (envelope, origin namespace, strict
//!   signature against the origin's key, payload authority); rejections are counted per link.

use crate::accept::{self, Hello, Outcome, Role};
use crate::engine::SyncHandle;
use crate::error::SyncError;
use crate::groups::{self, Direction};
use crate::protocol::*;
use crate::trust;
use openhive_core::time::{now_ms, rfc3339};
use openhive_store::consumers::{self, ConsumerId};
use openhive_store::sync_state;
use openhive_store::{StoreError, ingest, log};

pub use crate::tokens::{PeerAuth, authenticate};

/// Events of a push whose signatures are checked on the receiving task's own thread.
const VERIFY_HERE: usize = 2;

/// Resolves the hive of the URL and checks the token is bound to it.
async fn bound_group(h: &SyncHandle, auth: &PeerAuth, hive: &str) -> Result<String, SyncError> {
    let name = hive.to_string();
    let g = h
        .store()
        .read_point(move |c| sync_state::group_by_name(c, &name))
        .await?;
    match g {
        Some(g) if g.hive_id == auth.hive_id => Ok(g.hive_id),
        Some(_) => Err(SyncError::Forbidden(
            "this sync token is not valid for this group".into(),
        )),
        None => Err(SyncError::Forbidden(
            "this sync token is not valid for this group".into(),
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /sync/v1/identity`: this instance's public identity.
pub fn identity(h: &SyncHandle) -> IdentityDoc {
    let me = h.me();
    IdentityDoc {
        protocol_version: PROTOCOL_VERSION,
        instance_id: me.instance_id.clone(),
        instance_name: me.instance_name.clone(),
        signing_key: me.key.public().to_base64(),
    }
}

/// True if the call carries the mesh-wide handshake secret.
pub(crate) fn secret_matches(h: &SyncHandle, secret_header: Option<&str>) -> bool {
    match (&h.settings().handshake_secret, secret_header) {
        (Some(want), Some(got)) => constant_time_eq(want.as_bytes(), got.as_bytes()),
        _ => false,
    }
}

/// A handshake without the secret is accepted only from a configured peer's endpoint, and
/// only if the instance answering *at that endpoint* is the one the request claims to be:
/// whoever merely knows a configured endpoint cannot impersonate the peer or claim a new
/// instance id there (which, keys being first-learned-wins, would lock the real one out).
pub(crate) async fn confirm_at_configured_endpoint(
    h: &SyncHandle,
    endpoint: &str,
    instance_id: &str,
    signing_key: &str,
) -> Result<(), SyncError> {
    let ep = endpoint.to_string();
    let configured = h
        .store()
        .read(move |c| -> Result<bool, SyncError> {
            Ok(sync_state::peer_by_endpoint(c, &ep)?.is_some_and(|p| configured(p.source)))
        })
        .await?;
    if !configured {
        return Err(SyncError::Forbidden(
            "Invalid or missing handshake secret, and the endpoint is not a configured peer".into(),
        ));
    }
    // One confirmation serves every hive of a pairing for a short while (pairing N hives is
    // N handshakes, and the answer at the endpoint cannot differ between them).
    if h.identity_recently_confirmed(endpoint, instance_id, signing_key) {
        return Ok(());
    }
    match h.client().identity(endpoint).await {
        Ok(doc) if doc.instance_id == instance_id && doc.signing_key == signing_key => {
            h.identity_confirmed(endpoint, instance_id, signing_key);
            Ok(())
        }
        Ok(_) => {
            tracing::warn!(
                endpoint,
                claimed = instance_id,
                "handshake claims a configured endpoint that answers as another instance"
            );
            Err(SyncError::Forbidden(
                "the instance at the configured endpoint is not the one making this handshake"
                    .into(),
            ))
        }
        Err(e) => Err(SyncError::Forbidden(format!(
            "could not confirm the initiator at its configured endpoint: {e}"
        ))),
    }
}

/// `POST /sync/v1/handshake`: the responder side. Authorization (the mesh secret, or a
/// configured endpoint confirmed by its `/identity`), the group lookup, the token we issue and
/// the answer are the responder's; what it does with the initiator's data is
/// [`accept::accept`] (shared with the initiator).
pub async fn handshake(
    h: &SyncHandle,
    secret_header: Option<&str>,
    req: HandshakeRequest,
) -> Result<HandshakeResponse, SyncError> {
    if !h.enabled() {
        return Err(SyncError::disabled());
    }
    let (hive, hello) = Hello::from_request(req, &h.me().instance_id)?;
    let secret_ok = secret_matches(h, secret_header);
    if !secret_ok && hello.introduced.is_none() {
        confirm_at_configured_endpoint(h, &hello.endpoint, &hello.instance_id, &hello.signing_key)
            .await?;
    }
    let me = h.me().clone();
    let hub = h.trusted_hub();
    let max_gossip_peers = h.settings().gossip.max_gossip_peers;
    let (hv, hl) = (hive.clone(), hello.clone());
    let out = h
        .store()
        .write(move |tx| -> Result<_, SyncError> {
            let now = now_ms();
            if !secret_ok {
                admit(tx, &hv, &hl, hub.as_ref(), max_gossip_peers, now)?;
            }
            let r = respond(tx, &me, &hv, &hl, now, &mut accept::Shared::default())?;
            if !secret_ok && let Ok((_, _, a)) = &r {
                mark_introduced(tx, &a.peer_id, &hl)?;
            }
            Ok(r)
        })
        .await
        .and_then(|r| r);
    let (resp, hive_id, accepted) = match out {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(hive = %hive, error = %e, "handshake refused");
            return Err(e);
        }
    };
    accept::after_commit(h, Role::Responder, &hive_id, &hello, accepted).await?;
    Ok(resp)
}

/// Without the mesh secret, a handshake for `hive` is admitted by its introduction (with its
/// proof), or else only from a configured peer's endpoint (confirmed at its `/identity`
/// before the transaction, checked again inside it). See `admission`.
///
/// A *peer* introduction opens a gossip-sourced link (see [`mark_introduced`]), so it is
/// bounded like the links gossip opens here: a new one is refused while the hive already has
/// `max_gossip_peers` gossip-sourced links (a handshake again on an existing link is not).
/// Without this bound an instance that many others learn about by gossip accepts them all.
pub(crate) fn admit(
    tx: &openhive_store::Conn<'_>,
    hive: &str,
    hello: &Hello,
    hub: Option<&crate::admission::TrustedHub>,
    max_gossip_peers: usize,
    now: i64,
) -> Result<(), SyncError> {
    match hello.candidate(hive) {
        None => check_configured(tx, &hello.endpoint),
        Some((i, c)) => {
            let Some(group) = sync_state::group_by_name(tx, hive)? else {
                return Err(SyncError::NotFound(format!(
                    "no sync group for hive {hive:?} on this instance"
                )));
            };
            crate::admission::check_introduced(
                tx,
                &group.hive_id,
                &i.introduction,
                i.proof.as_ref(),
                c,
                hub,
                now,
            )?;
            if i.introduction.kind == openhive_core::IntroductionKind::Peer {
                check_gossip_room(
                    tx,
                    &group.hive_id,
                    hive,
                    &hello.instance_id,
                    max_gossip_peers,
                )?;
            }
            Ok(())
        }
    }
}

/// Whether a link with `instance_id` for `hive_id` admitted by a peer introduction fits under
/// `max_gossip_peers`: it already exists (not `left`), or the hive has fewer gossip-sourced
/// links than the cap. A refusal is a 503: the initiator backs off, and as a gossip peer of
/// its own that keeps failing, we are dropped from its peers after `max_failures`.
fn check_gossip_room(
    tx: &openhive_store::Conn<'_>,
    hive_id: &str,
    hive: &str,
    instance_id: &str,
    max_gossip_peers: usize,
) -> Result<(), SyncError> {
    if let Some(p) = sync_state::peer_by_instance(tx, instance_id)?
        && sync_state::link(tx, &p.id, hive_id)?
            .is_some_and(|l| l.state != sync_state::LinkState::Left)
    {
        return Ok(());
    }
    if sync_state::gossip_peer_count(tx, hive_id)? >= max_gossip_peers as i64 {
        tracing::info!(
            hive,
            peer = instance_id,
            max_gossip_peers,
            "introduced handshake refused: max_gossip_peers reached"
        );
        return Err(SyncError::Full(format!(
            "this instance already has max_gossip_peers ({max_gossip_peers}) gossip peers for hive {hive:?}"
        )));
    }
    Ok(())
}

/// A peer admitted by a *peer* introduction found us through gossip: its row (created by
/// this handshake, source `handshake`) becomes gossip-sourced, so it is removed like any
/// gossiped peer when it vanishes, and passed on no further than a handshake-learned one.
pub(crate) fn mark_introduced(
    tx: &openhive_store::Conn<'_>,
    peer_id: &str,
    hello: &Hello,
) -> Result<(), StoreError> {
    if let Some(i) = &hello.introduced
        && i.introduction.kind == openhive_core::IntroductionKind::Peer
    {
        sync_state::mark_gossip_sourced(tx, peer_id, &i.introduction.issuer, 1)?;
    }
    Ok(())
}

/// Whether a peer row of `source` makes its endpoint one that may handshake without the
/// mesh secret (confirmed at its `/identity`): not a row that came to us by itself, nor one
/// gossip told us about (a gossiped peer pairs by an introduction, see `admission`).
fn configured(source: sync_state::PeerSource) -> bool {
    !matches!(
        source,
        sync_state::PeerSource::Handshake | sync_state::PeerSource::Gossip
    )
}

/// Without the mesh secret, a handshake is accepted only from a configured peer's endpoint
/// (checked again inside the responder's transaction).
pub(crate) fn check_configured(
    tx: &openhive_store::Conn<'_>,
    endpoint: &str,
) -> Result<(), SyncError> {
    if sync_state::peer_by_endpoint(tx, endpoint)?.is_some_and(|p| configured(p.source)) {
        Ok(())
    } else {
        Err(SyncError::Forbidden(
            "Invalid or missing handshake secret, and the endpoint is not a configured peer".into(),
        ))
    }
}

/// The responder's part of one hive's handshake, inside its write transaction: the group
/// lookup, [`accept::accept`], the token we issue and the answer. A refusal is returned as
/// `Ok(Err(_))`: the transaction still commits (a key conflict is counted).
pub(crate) fn respond(
    tx: &openhive_store::Conn<'_>,
    me: &crate::engine::LocalIdentity,
    hive: &str,
    hello: &Hello,
    now: i64,
    shared: &mut accept::Shared,
) -> Result<Result<(HandshakeResponse, String, accept::Accepted), SyncError>, StoreError> {
    let Some(group) = sync_state::group_by_name(tx, hive)? else {
        return Ok(Err(SyncError::NotFound(format!(
            "no sync group for hive {hive:?} on this instance"
        ))));
    };
    let hive_id = group.hive_id;
    let mut accepted = match accept::accept(
        tx,
        &hive_id,
        hello,
        Role::Responder,
        &me.instance_id,
        now,
        shared,
    )? {
        Outcome::Refused(e) => return Ok(Err(e.into())),
        Outcome::Accepted(a) => a,
    };
    let token = sync_state::issue_token(tx, &accepted.peer_id, &hive_id, now)?;
    let head = log::head(tx, &hive_id)?;
    accepted.own_log_empty = head == 0;
    let resp = HandshakeResponse {
        protocol_version: PROTOCOL_VERSION,
        hive: hive.to_string(),
        instance_id: me.instance_id.clone(),
        instance_name: me.instance_name.clone(),
        signing_key: me.key.public().to_base64(),
        current_seq: head,
        roster: trust::roster(tx, &hive_id)?,
        token,
        key_rotations: trust::handshake_rotations(tx, &hive_id, &me.instance_id)?,
    };
    Ok(Ok((resp, hive_id, accepted)))
}

/// `GET /sync/v1/groups/:hive/events?since=&limit=`.
pub async fn pull_events(
    h: &SyncHandle,
    auth: &PeerAuth,
    hive: &str,
    since: Option<i64>,
    limit: Option<i64>,
) -> Result<EventsPage, SyncError> {
    let hive_id = bound_group(h, auth, hive).await?;
    let since = since.unwrap_or(0).max(0);
    let limit = limit.unwrap_or(DEFAULT_PULL_LIMIT).clamp(1, MAX_PULL_LIMIT);
    let auth2 = auth.clone();
    let hv = hive_id.clone();
    let (page, ack, stale) = h
        .store()
        .read(move |c| -> Result<_, StoreError> {
            let (page, ack) = read_page(c, &auth2, &hv, since, limit)?;
            Ok((page, ack, contact_is_stale(c, &auth2.peer_id)?))
        })
        .await?;
    let caught_up = page.next_seq <= since && !page.has_more;
    if ack.is_some() || stale {
        let (hv, peer_id) = (hive_id.clone(), auth.peer_id.clone());
        h.store()
            .write(move |tx| -> Result<(), StoreError> {
                let now = now_ms();
                if let Some(through) = ack {
                    sync_state::advance_sent(tx, &peer_id, &hv, through, now)?;
                }
                if stale {
                    sync_state::record_contact(tx, &peer_id, now)?;
                }
                Ok(())
            })
            .await?;
    }
    // After the acknowledgement committed: a caught-up pull resumes our push to the peer,
    // which must find its cursor already moved (noted before, the push raced the commit
    // and sent again what the pull had just fetched; seen on PostgreSQL).
    h.note_pull(&auth.peer_id, &hive_id, since, page.next_seq, caught_up);
    Ok(page)
}

/// One page of our log of `hive_id` after `since` for the caller (`limit` entries read;
/// events it originated or relayed to us are skipped but covered), and how far our push
/// cursor for it may move if that is further than it is: to its cursor `since` (it durably
/// holds everything up to there), or, for a page that holds no event, to the page's end (the
/// range holds only events the caller originated or relayed to us, which it holds: our
/// outbox leaves such a range to be covered by the next batch with events,
/// `outbox::hold_skipped`, and this is how it is covered when none comes).
pub(crate) fn read_page(
    c: &openhive_store::Conn<'_>,
    auth: &PeerAuth,
    hive_id: &str,
    since: i64,
    limit: i64,
) -> Result<(EventsPage, Option<i64>), StoreError> {
    let peer_inst = auth.peer_instance_id.as_str();
    // At most `limit` seqs: below a compaction point the page holds only the retained
    // events of its range (dropped seqs are covered, not sent), so a caller's check that a
    // page covers at most `limit` seqs holds either way.
    let (raw, next_seq) = log::covering(c, hive_id, since, limit)?;
    let head = log::head(c, hive_id)?;
    let events = raw
        .into_iter()
        .filter(|e| {
            e.event.origin_instance_id != peer_inst && e.received_from.as_deref() != Some(peer_inst)
        })
        .map(|e| WireEvent {
            seq: e.seq,
            event: e.event,
        })
        .collect::<Vec<_>>();
    // The key chains of the page's origins, for a caller that has not heard of a rotation.
    let evs: Vec<openhive_core::Event> = events.iter().map(|w| w.event.clone()).collect();
    let key_rotations = trust::batch_rotations(c, &evs)?;
    // The caller's cursor is `since`: it durably holds everything up to there, so our push
    // cursor may skip ahead to it (or over an event-less page).
    let through = if events.is_empty() {
        next_seq.max(since)
    } else {
        since
    };
    // (Only the link's push cursor is read: loading the whole link opened its sealed token,
    // ~5 % of a responder's CPU while a peer pulled thousands of hives.)
    let ack = consumers::get(c, &ConsumerId::peer(&auth.peer_id), hive_id)?
        .is_some_and(|k| k.cursor < through)
        .then_some(through);
    let page = EventsPage {
        events,
        next_seq,
        has_more: next_seq < head,
        head_seq: Some(head),
        key_rotations,
    };
    Ok((page, ack))
}

/// Contact is recorded at most once a second per peer (no write per page).
pub(crate) fn contact_is_stale(
    c: &openhive_store::Conn<'_>,
    peer_id: &str,
) -> Result<bool, StoreError> {
    Ok(sync_state::peer_by_id(c, peer_id)?.is_none_or(|p| {
        p.status != sync_state::PeerStatus::Active
            || p.last_contact_at.is_none_or(|t| now_ms() - t > 1000)
    }))
}

/// `POST /sync/v1/groups/:hive/events`.
pub async fn push_events(
    h: &SyncHandle,
    auth: &PeerAuth,
    hive: &str,
    req: PushRequest,
) -> Result<PushResponse, SyncError> {
    let hive_id = bound_group(h, auth, hive).await?;
    check_push_claim(&req)?;
    let n = u32::try_from(req.events.len()).unwrap_or(u32::MAX);
    rate_limit(h, auth, hive, n).await?;
    let from = auth.peer_instance_id.clone();
    let (hv, peer_id, hname) = (hive_id.clone(), auth.peer_id.clone(), hive.to_string());
    let (first, last) = (req.first_seq, req.last_seq);
    let events = std::sync::Arc::new(req.events);
    let rotations = req.key_rotations;
    let me_id = h.me().instance_id.clone();
    let ev2 = events.clone();
    // Signatures are checked on a reader thread, in parallel with the writer; a push of one
    // or two events (a steady load) is checked where it arrived: ~60 µs each, less than the
    // two thread wake-ups of a blocking-pool read.
    let verified = h
        .store()
        .read_point_if(events.len() <= VERIFY_HERE, move |c| {
            ingest::preverify(c, &ev2)
        })
        .await?;
    let (report, received_seq, gap, learned) = h
        .store()
        .write(move |tx| {
            apply_push(
                tx,
                (&peer_id, &from, &me_id),
                (&hv, &hname),
                (first, last),
                (&events, &rotations),
                &verified,
                now_ms(),
            )
        })
        .await?;
    h.announce_keys(learned, Some(auth.peer_id.clone()));
    Ok(after_push(
        h,
        auth,
        hive,
        &hive_id,
        report,
        received_seq,
        gap,
        last,
    ))
}

/// The per-peer event rate limit of pushes: a refusal is counted, is a contact, and answers
/// 429 with the wait.
pub(crate) async fn rate_limit(
    h: &SyncHandle,
    auth: &PeerAuth,
    hive: &str,
    n: u32,
) -> Result<(), SyncError> {
    if let Err(wait) = h.inner.limiter.check(&auth.peer_id, n) {
        let peer_id = auth.peer_id.clone();
        let _ = h
            .store()
            .write(move |tx| -> Result<(), StoreError> {
                openhive_store::db::counter_add(tx, sync_state::RATE_LIMITED, 1)?;
                sync_state::record_contact(tx, &peer_id, now_ms())
            })
            .await;
        tracing::info!(peer = %auth.peer_instance_id, hive, events = n, retry_after_s = wait.as_secs(), "push rate-limited");
        return Err(SyncError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    Ok(())
}

/// After a pushed batch committed: a gap asks for a pull, the changes go out, the hive's
/// other links wake. Returns the answer for the batch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn after_push(
    h: &SyncHandle,
    auth: &PeerAuth,
    hive: &str,
    hive_id: &str,
    report: ingest::BatchReport,
    received_seq: i64,
    gap: bool,
    last: i64,
) -> PushResponse {
    if gap {
        tracing::info!(peer = %auth.peer_instance_id, hive, seq = last, received = received_seq, "pushed batch leaves a gap after our cursor; pulling instead");
        h.request_pull(&auth.peer_id, hive_id);
    }
    if report.rejected > 0 {
        tracing::warn!(peer = %auth.peer_instance_id, hive, seq = last, rejected = report.rejected, first = ?report.rejections.first(), "pushed events rejected");
    }
    tracing::debug!(peer = %auth.peer_instance_id, hive, seq = last, accepted = report.accepted, "push received");
    h.emit(report.changes);
    if report.accepted > 0 {
        h.notify(hive_id);
    }
    PushResponse {
        received_seq,
        accepted: report.accepted,
        duplicates: report.duplicates,
        rejected: report.rejected,
        waiting_for_key: report.waiting_for_key,
        rejections: report
            .rejections
            .into_iter()
            .map(|(id, reason)| Rejection { id, reason })
            .collect(),
    }
}

/// Applies one pushed batch for `hive` (id, name) from `peer_id` (instance `from`; `me` is
/// this instance), inside the caller's write transaction: learns the origins' key chains the
/// batch carries, ingests what `verified` allows, moves our cursor for the sender only over a
/// range `(first, last)` that starts where it stands. Returns the report, our cursor after,
/// whether the batch left a gap (then we pull instead), and the rotation statements new here
/// (to relay after the commit).
#[allow(clippy::type_complexity)]
pub(crate) fn apply_push(
    tx: &openhive_store::Conn<'_>,
    (peer_id, from, me): (&str, &str, &str),
    (hive_id, hive_name): (&str, &str),
    (first, last): (i64, i64),
    (events, rotations): (&[openhive_core::Event], &[openhive_core::RotationStatement]),
    verified: &[Option<openhive_core::PublicKey>],
    now: i64,
) -> Result<
    (
        ingest::BatchReport,
        i64,
        bool,
        Vec<openhive_core::RotationStatement>,
    ),
    StoreError,
> {
    // The origins' key chains first: events signed after a rotation verify.
    let learned = trust::learn_rotations(tx, rotations, from, me, now)?.new;
    let r = ingest::ingest_remote_checked(tx, hive_id, hive_name, events, verified, from, now)?;
    let before = sync_state::link(tx, peer_id, hive_id)?.map_or(0, |l| l.last_seq_received);
    // The cursor moves only over a range that starts where it stands (or overlaps it); a
    // batch that leaves a gap is applied, but what it claims to cover is not trusted: the
    // gap (and the claim) are checked by pulling.
    let moved = sync_state::advance_received_contiguous(tx, peer_id, hive_id, first, last, now)?;
    if moved {
        sync_state::set_remote_seq(tx, peer_id, hive_id, last)?;
    }
    sync_state::count_events(tx, peer_id, hive_id, r.accepted as i64, r.rejected as i64)?;
    sync_state::record_contact(tx, peer_id, now)?;
    let received = sync_state::link(tx, peer_id, hive_id)?.map_or(0, |l| l.last_seq_received);
    Ok((r, received, first > before.saturating_add(1), learned))
}

/// `POST /sync/v1/keys`: rotation statements announced by a peer (any token of that peer).
/// New ones are relayed to our other peers after the commit.
pub async fn keys(
    h: &SyncHandle,
    auth: &PeerAuth,
    req: KeysRequest,
) -> Result<KeysResponse, SyncError> {
    if req.key_rotations.len() > MAX_KEY_ROTATIONS {
        return Err(SyncError::BadRequest(format!(
            "at most {MAX_KEY_ROTATIONS} key_rotations per request"
        )));
    }
    let (from, peer_id, me_id) = (
        auth.peer_instance_id.clone(),
        auth.peer_id.clone(),
        h.me().instance_id.clone(),
    );
    let learned = h
        .store()
        .write(move |tx| -> Result<_, StoreError> {
            let now = now_ms();
            let l = trust::learn_rotations(tx, &req.key_rotations, &from, &me_id, now)?;
            sync_state::record_contact(tx, &peer_id, now)?;
            Ok(l)
        })
        .await?;
    let resp = KeysResponse {
        accepted: learned.new.len(),
        known: learned.known,
        refused: learned.refused.len(),
        rejections: learned
            .refused
            .into_iter()
            .take(20)
            .map(|(id, reason)| Rejection { id, reason })
            .collect(),
    };
    h.announce_keys(learned.new, Some(auth.peer_id.clone()));
    Ok(resp)
}

/// Checks what a pushed batch claims to cover (the sender's seqs `first_seq..=last_seq`)
/// before anything is applied: a range that starts at 1 or later and is not reversed, no
/// wider than one push may be (a sender covers at most [`MAX_PULL_LIMIT`] of its seqs per
/// batch: it reads its gap-free log in pages of that size), and holding no more events than
/// seqs. Anything else is refused (400); in particular no batch can move our cursor for the
/// sender by more than one push's width.
pub fn check_push_claim(req: &PushRequest) -> Result<(), SyncError> {
    if req.first_seq < 1 || req.last_seq < req.first_seq {
        return Err(SyncError::BadRequest(
            "first_seq and last_seq must satisfy 1 <= first_seq <= last_seq".into(),
        ));
    }
    if req.events.len() > MAX_PULL_LIMIT as usize {
        return Err(SyncError::BadRequest(format!(
            "at most {MAX_PULL_LIMIT} events per batch"
        )));
    }
    // Both are >= 1 here: no overflow.
    let span = req.last_seq - req.first_seq + 1;
    if span > MAX_PULL_LIMIT {
        return Err(SyncError::BadRequest(format!(
            "a batch covers at most {MAX_PULL_LIMIT} seqs; first_seq..=last_seq spans {span}"
        )));
    }
    if req.events.len() as i64 > span {
        return Err(SyncError::BadRequest(format!(
            "{} events cannot fit in the {span} seqs first_seq..=last_seq covers",
            req.events.len()
        )));
    }
    Ok(())
}

/// `POST /sync/v1/heartbeat`: the receiving side. The check that the heartbeat comes from
/// the token's peer and the answer are the receiver's; what it does with the groups is
/// [`groups::apply`] (shared with the sender, which applies the answer).
pub async fn heartbeat(
    h: &SyncHandle,
    auth: &PeerAuth,
    req: Heartbeat,
) -> Result<Heartbeat, SyncError> {
    if req.instance_id != auth.peer_instance_id {
        return Err(SyncError::Forbidden(
            "instance_id does not match the token's peer".into(),
        ));
    }
    let peer_id = auth.peer_id.clone();
    let from = auth.peer_instance_id.clone();
    let direction = Direction::received(req.sync_endpoint.as_deref());
    // The answer carries our news for this peer (the shared hives that changed since it
    // last heard from us), like our own heartbeats do.
    let due = h.inner.news.take(&auth.peer_id);
    let plan = crate::gossip::plan(h, &auth.peer_id, &due);
    let sent = h.inner.gossip.sent(&auth.peer_id, &plan);
    let (due2, h2) = (due.clone(), h.clone());
    let r = h
        .store()
        .write(move |tx| -> Result<_, StoreError> {
            let now = now_ms();
            let mut applied = groups::apply(tx, &peer_id, &from, &req.groups, &direction, now)?;
            let learned = crate::gossip::incoming_from(
                &h2,
                tx,
                &peer_id,
                &from,
                &req.known_peers,
                req.introduction.as_ref(),
                now,
            )?;
            // Where our pull cursor just moved without a pull, the answer says so.
            let due2 = due2.including(applied.take_skipped_over());
            let ours = groups::ours(tx, &peer_id, &due2, &h2.inner.held)?;
            let out = crate::gossip::outgoing_for(&h2, tx, &peer_id, &plan, &sent)?;
            Ok((ours, out, applied, learned))
        })
        .await;
    let (answer, out, applied, learned) = match r {
        Ok(v) => v,
        Err(e) => {
            h.inner.news.give_back(&auth.peer_id, due);
            return Err(e.into());
        }
    };
    h.inner.gossip.record(
        &auth.peer_id,
        &plan,
        &out,
        tokio::time::Instant::now().into_std(),
    );
    groups::after_commit(h, &auth.peer_id, applied);
    crate::gossip::after_commit(h, learned).await;
    h.count_heartbeat_groups(answer.len());
    Ok(Heartbeat {
        instance_id: h.me().instance_id.clone(),
        sync_endpoint: Some(h.me().sync_endpoint.clone()),
        groups: answer,
        known_peers: out.known_peers,
        introduction: out.introduction,
    })
}

/// The status of one group with all its links (used by the peer and admin APIs).
pub(crate) fn group_status(
    c: &openhive_store::Conn<'_>,
    hive_id: &str,
    hive_name: &str,
) -> Result<GroupStatus, StoreError> {
    let head = log::head(c, hive_id)?;
    let (pending, unverified) = ingest::waiting_counts_for(c, hive_id)?;
    let mut peers = Vec::new();
    let now = openhive_core::time::now_ms();
    for l in sync_state::links_for_hive(c, hive_id)? {
        let Some(p) = sync_state::peer_by_id(c, &l.peer_id)? else {
            continue;
        };
        let lag = (head - l.last_seq_sent).max(0);
        let silent_ms = now - p.last_contact_at.unwrap_or(p.created_at);
        let lagging =
            l.state != sync_state::LinkState::Left && c.context().lag_alert.lagging(lag, silent_ms);
        peers.push(PeerLinkStatus {
            peer_id: p.id,
            instance_id: p.instance_id,
            name: p.name,
            sync_endpoint: p.endpoint,
            status: p.status.as_str().to_string(),
            state: l.state.as_str().to_string(),
            lag,
            last_seq_sent: l.last_seq_sent,
            last_seq_received: l.last_seq_received,
            remote_seq: l.remote_seq,
            events_received: l.events_received,
            events_rejected: l.events_rejected,
            failure_count: p.failure_count,
            last_contact_at: p.last_contact_at.map(rfc3339),
            last_sync_at: l.last_sync_at.map(rfc3339),
            last_error: l.last_error.or(p.last_error),
            lagging,
            progress: None,
        });
    }
    Ok(GroupStatus {
        hive: hive_name.to_string(),
        local_seq: head,
        pending,
        unverified,
        low_water_mark: openhive_store::consumers::low_water_mark(c, hive_id)?,
        peers,
    })
}

/// `GET /sync/v1/groups/:hive/status`.
pub async fn status(h: &SyncHandle, auth: &PeerAuth, hive: &str) -> Result<GroupStatus, SyncError> {
    let hive_id = bound_group(h, auth, hive).await?;
    let name = hive.to_string();
    Ok(h.store()
        .read(move |c| group_status(c, &hive_id, &name))
        .await?)
}

/// `POST /sync/v1/groups/:hive/leave`: the caller stops syncing this hive with us.
pub async fn leave(
    h: &SyncHandle,
    auth: &PeerAuth,
    hive: &str,
) -> Result<LeaveResponse, SyncError> {
    let hive_id = bound_group(h, auth, hive).await?;
    let (p, hv) = (auth.peer_id.clone(), hive_id);
    h.store()
        .write(move |tx| sync_state::mark_left(tx, &p, &hv))
        .await?;
    tracing::info!(peer = %auth.peer_instance_id, hive, "peer left the group");
    h.reconcile().await?;
    Ok(LeaveResponse { ok: true })
}
