//! Server side of `/sync/v1`: one plain async function per endpoint. The HTTP layer extracts
//! the bearer token, the handshake-secret header and the body, calls these, and maps
//! [`SyncError`] to 401/403/404/409/429.
//!
//! What is checked where:
//! - handshake: the mesh secret (`X-Handshake-Secret`) or a configured peer's endpoint;
//!   protocol version; a well-formed instance id and key; first-key-wins (409 otherwise);
//! - every other call: a token we issued (hash lookup), bound to one peer and one hive; the
//!   hive in the URL must be that hive (403);
//! - pushed events: everything `ingest_remote` checks (envelope, origin namespace, strict
//!   signature against the origin's key, payload authority); rejections are counted per link.

use crate::engine::SyncHandle;
use crate::error::SyncError;
use crate::protocol::*;
use crate::trust;
use openhive_core::PublicKey;
use openhive_core::time::{now_ms, rfc3339};
use openhive_store::sync_state::{self, PeerRow};
use openhive_store::{StoreError, ingest, keys, log};
use std::collections::BTreeMap;

/// A caller authenticated by a sync token.
#[derive(Debug, Clone)]
pub struct PeerAuth {
    pub peer_id: String,
    pub peer_instance_id: String,
    /// The hive the token is bound to (local id).
    pub hive_id: String,
}

fn disabled() -> SyncError {
    SyncError::NotFound("Hive Sync is disabled on this instance".into())
}

/// Checks a bearer token. `None` or an unknown token → 401.
pub async fn authenticate(h: &SyncHandle, token: Option<&str>) -> Result<PeerAuth, SyncError> {
    if !h.enabled() {
        return Err(disabled());
    }
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(SyncError::Unauthorized(
            "Missing Authorization header. Provide a sync token.".into(),
        ));
    };
    let token = token.to_string();
    let found = h
        .store()
        .read(
            move |c| -> Result<Option<(String, String, Option<PeerRow>)>, StoreError> {
                let Some((peer_id, hive_id)) = sync_state::authenticate(c, &token)? else {
                    return Ok(None);
                };
                let peer = sync_state::peer_by_id(c, &peer_id)?;
                Ok(Some((peer_id, hive_id, peer)))
            },
        )
        .await?;
    match found {
        Some((peer_id, hive_id, Some(peer))) => Ok(PeerAuth {
            peer_id,
            peer_instance_id: peer.instance_id.unwrap_or_default(),
            hive_id,
        }),
        _ => Err(SyncError::Unauthorized(
            "Invalid or expired sync token".into(),
        )),
    }
}

/// Resolves the hive of the URL and checks the token is bound to it.
async fn bound_group(h: &SyncHandle, auth: &PeerAuth, hive: &str) -> Result<String, SyncError> {
    let name = hive.to_string();
    let g = h
        .store()
        .read(move |c| sync_state::group_by_name(c, &name))
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

/// `POST /sync/v1/handshake`.
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

/// A handshake without the secret is accepted only from a configured peer's endpoint, and
/// only if the instance answering *at that endpoint* is the one the request claims to be:
/// whoever merely knows a configured endpoint cannot impersonate the peer or claim a new
/// instance id there (which, keys being first-learned-wins, would lock the real one out).
async fn confirm_at_configured_endpoint(
    h: &SyncHandle,
    endpoint: &str,
    instance_id: &str,
    signing_key: &str,
) -> Result<(), SyncError> {
    let ep = endpoint.to_string();
    let configured = h
        .store()
        .read(move |c| -> Result<bool, SyncError> {
            Ok(sync_state::peer_by_endpoint(c, &ep)?
                .is_some_and(|p| p.source != sync_state::SOURCE_HANDSHAKE))
        })
        .await?;
    if !configured {
        return Err(SyncError::Forbidden(
            "Invalid or missing handshake secret, and the endpoint is not a configured peer".into(),
        ));
    }
    match h.client().identity(endpoint).await {
        Ok(doc) if doc.instance_id == instance_id && doc.signing_key == signing_key => Ok(()),
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

pub async fn handshake(
    h: &SyncHandle,
    secret_header: Option<&str>,
    req: HandshakeRequest,
) -> Result<HandshakeResponse, SyncError> {
    if !h.enabled() {
        return Err(disabled());
    }
    if req.protocol_version != PROTOCOL_VERSION {
        return Err(SyncError::BadRequest(format!(
            "unsupported protocol_version {} (this instance speaks {PROTOCOL_VERSION})",
            req.protocol_version
        )));
    }
    if openhive_core::ids::instance_suffix(&req.instance_id).is_none() {
        return Err(SyncError::BadRequest("malformed instance_id".into()));
    }
    if req.instance_id == h.me().instance_id {
        return Err(SyncError::Conflict(
            "the initiator claims this instance's own id".into(),
        ));
    }
    if openhive_core::validate::url(&req.sync_endpoint).is_err() {
        return Err(SyncError::BadRequest(
            "sync_endpoint must be an http(s) URL".into(),
        ));
    }
    if req.token.len() < 16 || req.token.len() > 256 {
        return Err(SyncError::BadRequest(
            "token must be 16-256 characters".into(),
        ));
    }
    let key = PublicKey::from_base64(&req.signing_key)
        .map_err(|_| SyncError::BadRequest("malformed signing_key".into()))?;
    let endpoint = normalize_endpoint(&req.sync_endpoint);

    let secret_ok = match (&h.settings().handshake_secret, secret_header) {
        (Some(want), Some(got)) => constant_time_eq(want.as_bytes(), got.as_bytes()),
        _ => false,
    };
    if !secret_ok {
        confirm_at_configured_endpoint(h, &endpoint, &req.instance_id, &req.signing_key).await?;
    }
    let me = h.me().clone();
    let hive = req.hive.clone();
    let out = h
        .store()
        .write(move |tx| -> Result<_, SyncError> {
            let now = now_ms();
            if !secret_ok {
                let configured = sync_state::peer_by_endpoint(tx, &endpoint)?
                    .is_some_and(|p| p.source != sync_state::SOURCE_HANDSHAKE);
                if !configured {
                    return Err(SyncError::Forbidden(
                        "Invalid or missing handshake secret, and the endpoint is not a configured peer"
                            .into(),
                    ));
                }
            }
            let Some(group) = sync_state::group_by_name(tx, &req.hive)? else {
                return Err(SyncError::NotFound(format!(
                    "no sync group for hive {:?} on this instance",
                    req.hive
                )));
            };
            let hive_id = group.hive_id;
            match keys::learn(tx, &req.instance_id, &key, Some(&req.instance_id), now)? {
                keys::Learned::Conflict => {
                    openhive_store::db::counter_add(tx, sync_state::KEY_CONFLICTS, 1)?;
                    return Err(SyncError::Conflict(format!(
                        "instance {} is known here with a different signing key",
                        req.instance_id
                    )));
                }
                keys::Learned::New | keys::Learned::AlreadyKnown => {}
            }
            let peer_id = sync_state::upsert_handshake_peer(
                tx,
                &req.instance_id,
                &req.instance_name,
                &endpoint,
                now,
            )?;
            sync_state::ensure_link(tx, &peer_id, &hive_id, sync_state::STATE_BACKFILLING)?;
            if let Some(l) = sync_state::link(tx, &peer_id, &hive_id)?
                && l.state == sync_state::STATE_HANDSHAKING
            {
                sync_state::set_link_state(tx, &peer_id, &hive_id, sync_state::STATE_BACKFILLING)?;
            }
            sync_state::set_token_out(tx, &peer_id, &hive_id, Some(&req.token))?;
            let token = sync_state::issue_token(tx, &peer_id, &hive_id, now)?;
            sync_state::add_member(tx, &hive_id, &req.instance_id)?;
            let mut report = ingest::release_unverified(tx, &req.instance_id, now)?;
            let r = trust::learn_roster(tx, &hive_id, &req.roster, &req.instance_id, now)?;
            report.accepted += r.accepted;
            report.changes.extend(r.changes);
            sync_state::set_remote_seq(tx, &peer_id, &hive_id, req.current_seq)?;
            sync_state::record_contact(tx, &peer_id, now)?;
            let resp = HandshakeResponse {
                protocol_version: PROTOCOL_VERSION,
                hive: req.hive.clone(),
                instance_id: me.instance_id.clone(),
                instance_name: me.instance_name.clone(),
                signing_key: me.key.public().to_base64(),
                current_seq: log::head(tx, &hive_id)?,
                roster: trust::roster(tx, &hive_id)?,
                token,
            };
            Ok((resp, peer_id, hive_id, report))
        })
        .await;
    let (resp, peer_id, hive_id, report) = match out {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(hive = %hive, error = %e, "handshake refused");
            return Err(e);
        }
    };
    tracing::info!(peer = %resp_peer(&peer_id), hive = %hive, seq = resp.current_seq, "handshake accepted");
    h.emit(report.changes);
    h.reconcile().await?;
    if report.accepted > 0 {
        h.notify(&hive_id);
    }
    h.request_pull(&peer_id, &hive_id);
    Ok(resp)
}

fn resp_peer(id: &str) -> &str {
    id
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
    let peer_inst = auth.peer_instance_id.clone();
    let (hv, peer_id) = (hive_id.clone(), auth.peer_id.clone());
    let (page, ack, stale) = h
        .store()
        .read(move |c| -> Result<_, StoreError> {
            let raw = log::since(c, &hv, since, limit)?;
            let head = log::head(c, &hv)?;
            let next_seq = raw.last().map_or(since, |e| e.seq);
            let events = raw
                .into_iter()
                .filter(|e| {
                    e.event.origin_instance_id != peer_inst
                        && e.received_from.as_deref() != Some(peer_inst.as_str())
                })
                .map(|e| WireEvent {
                    seq: e.seq,
                    event: e.event,
                })
                .collect();
            // The caller's cursor is `since`: it durably holds everything up to there, so our
            // push cursor may skip ahead to it.
            let ack = sync_state::link(c, &peer_id, &hv)?.is_some_and(|l| l.last_seq_sent < since);
            // Contact is recorded at most once a second per peer (no write per page).
            let stale = sync_state::peer_by_id(c, &peer_id)?.is_none_or(|p| {
                p.status != sync_state::STATUS_ACTIVE
                    || p.last_contact_at.is_none_or(|t| now_ms() - t > 1000)
            });
            let page = EventsPage {
                events,
                next_seq,
                has_more: next_seq < head,
            };
            Ok((page, ack, stale))
        })
        .await?;
    h.note_pulled(&auth.peer_id, &hive_id, since);
    if ack || stale {
        let (hv, peer_id) = (hive_id, auth.peer_id.clone());
        h.store()
            .write(move |tx| -> Result<(), StoreError> {
                let now = now_ms();
                if ack {
                    sync_state::advance_sent(tx, &peer_id, &hv, since, now)?;
                }
                if stale {
                    sync_state::record_contact(tx, &peer_id, now)?;
                }
                Ok(())
            })
            .await?;
    }
    Ok(page)
}

/// `POST /sync/v1/groups/:hive/events`.
pub async fn push_events(
    h: &SyncHandle,
    auth: &PeerAuth,
    hive: &str,
    req: PushRequest,
) -> Result<PushResponse, SyncError> {
    let hive_id = bound_group(h, auth, hive).await?;
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
    let n = u32::try_from(req.events.len()).unwrap_or(u32::MAX);
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
    let from = auth.peer_instance_id.clone();
    let (hv, peer_id, hname) = (hive_id.clone(), auth.peer_id.clone(), hive.to_string());
    let (first, last) = (req.first_seq, req.last_seq);
    let events = std::sync::Arc::new(req.events);
    let ev2 = events.clone();
    // Signatures are checked on a reader thread, in parallel with the writer.
    let verified = h.store().read(move |c| ingest::preverify(c, &ev2)).await?;
    let (report, received_seq) = h
        .store()
        .write(move |tx| -> Result<_, StoreError> {
            let now = now_ms();
            let r = ingest::ingest_remote_checked(tx, &hv, &hname, &events, &verified, &from, now)?;
            sync_state::advance_received_contiguous(tx, &peer_id, &hv, first, last, now)?;
            sync_state::count_events(tx, &peer_id, &hv, r.accepted as i64, r.rejected as i64)?;
            sync_state::set_remote_seq(tx, &peer_id, &hv, last)?;
            sync_state::record_contact(tx, &peer_id, now)?;
            let received = sync_state::link(tx, &peer_id, &hv)?.map_or(0, |l| l.last_seq_received);
            Ok((r, received))
        })
        .await?;
    if report.rejected > 0 {
        tracing::warn!(peer = %auth.peer_instance_id, hive, seq = last, rejected = report.rejected, first = ?report.rejections.first(), "pushed events rejected");
    }
    tracing::debug!(peer = %auth.peer_instance_id, hive, seq = last, accepted = report.accepted, "push received");
    h.emit(report.changes);
    if report.accepted > 0 {
        h.notify(&hive_id);
    }
    Ok(PushResponse {
        received_seq,
        accepted: report.accepted,
        duplicates: report.duplicates,
        rejected: report.rejected,
        waiting_for_key: report.waiting_for_key,
    })
}

/// `POST /sync/v1/heartbeat`.
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
    let moved_to = req
        .sync_endpoint
        .as_deref()
        .filter(|e| openhive_core::validate::url(e).is_ok())
        .map(normalize_endpoint);
    let (groups, pulls, changes, released) = h
        .store()
        .write(move |tx| -> Result<_, StoreError> {
            let now = now_ms();
            sync_state::record_contact(tx, &peer_id, now)?;
            // The peer announces where it listens now (e.g. restarted on another port).
            if let Some(e) = &moved_to
                && sync_state::peer_by_endpoint(tx, e)?.is_none()
            {
                tracing::info!(peer = %from, endpoint = %e, "peer moved to a new sync endpoint");
                sync_state::update_peer(tx, &peer_id, None, Some(e), now)?;
            }
            let mut out = BTreeMap::new();
            let mut pulls = Vec::new();
            let mut changes = Vec::new();
            let mut released = Vec::new();
            for l in sync_state::links_for_peer(tx, &peer_id)? {
                if l.state == sync_state::STATE_LEFT {
                    continue;
                }
                if let Some(g) = req.groups.get(&l.hive_name) {
                    let r = trust::learn_roster(tx, &l.hive_id, &g.roster, &from, now)?;
                    if r.accepted > 0 {
                        released.push(l.hive_id.clone());
                    }
                    changes.extend(r.changes);
                    sync_state::set_remote_seq(tx, &peer_id, &l.hive_id, g.seq)?;
                    if g.seq > l.last_seq_received {
                        pulls.push(l.hive_id.clone());
                    }
                }
                out.insert(
                    l.hive_name.clone(),
                    HeartbeatGroup {
                        seq: log::head(tx, &l.hive_id)?,
                        roster: trust::roster(tx, &l.hive_id)?,
                    },
                );
            }
            Ok((out, pulls, changes, released))
        })
        .await?;
    h.emit(changes);
    for hv in released {
        h.notify(&hv);
    }
    for hv in pulls {
        h.request_pull(&auth.peer_id, &hv);
    }
    Ok(Heartbeat {
        instance_id: h.me().instance_id.clone(),
        sync_endpoint: Some(h.me().sync_endpoint.clone()),
        groups,
    })
}

/// The status of one group with all its links (used by the peer and admin APIs).
pub(crate) fn group_status(
    c: &openhive_store::Conn<'_>,
    hive_id: &str,
    hive_name: &str,
) -> Result<GroupStatus, StoreError> {
    let head = log::head(c, hive_id)?;
    let (pending, unverified) = ingest::waiting_counts(c)?;
    let mut peers = Vec::new();
    for l in sync_state::links_for_hive(c, hive_id)? {
        let Some(p) = sync_state::peer_by_id(c, &l.peer_id)? else {
            continue;
        };
        peers.push(PeerLinkStatus {
            peer_id: p.id,
            instance_id: p.instance_id,
            name: p.name,
            sync_endpoint: p.endpoint,
            status: p.status,
            state: l.state,
            lag: (head - l.last_seq_sent).max(0),
            last_seq_sent: l.last_seq_sent,
            last_seq_received: l.last_seq_received,
            remote_seq: l.remote_seq,
            events_received: l.events_received,
            events_rejected: l.events_rejected,
            failure_count: p.failure_count,
            last_contact_at: p.last_contact_at.map(rfc3339),
            last_sync_at: l.last_sync_at.map(rfc3339),
            last_error: l.last_error.or(p.last_error),
        });
    }
    Ok(GroupStatus {
        hive: hive_name.to_string(),
        local_seq: head,
        pending,
        unverified,
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
