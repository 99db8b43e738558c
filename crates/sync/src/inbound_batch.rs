//! Server side of the batched `/sync/v1/batch/*` calls: one request covers many hives of
//! one peer (pairing thousands of hives is then a few dozen requests, not three per hive).
//!
//! Each group of a batch is checked and applied exactly as the single-hive call for it would
//! be ([`crate::inbound`] shares the pieces: [`inbound::respond`], [`inbound::read_page`],
//! [`inbound::apply_push`]), and refused on its own: a group's refusal is its `error`
//! (the status and message the single call would have answered), never the batch's.
//!
//! Invariants:
//! - the whole batch is one read (pull) or one write transaction (handshake, push): a storage
//!   failure fails the batch, never a part of it silently;
//! - a batched pull or push authenticates every group by its own token (bound to one peer and
//!   one hive, as on the single routes); the bearer token of the call only identifies the
//!   peer, and every group's token must belong to that same peer;
//! - what the whole request shares (the initiator's identity, the rate limit) is checked once,
//!   with the same answer the single call gives.

use crate::accept::{self, Hello, Role};
use crate::engine::SyncHandle;
use crate::error::SyncError;
use crate::inbound::{self, PeerAuth};
use crate::link_batch::BULK_GROUPS;
use crate::protocol::*;
use openhive_core::time::now_ms;
use openhive_store::{Conn, StoreError, ingest, sync_state};

fn check_count(n: usize) -> Result<(), SyncError> {
    if n == 0 || n > MAX_BATCH_GROUPS {
        return Err(SyncError::BadRequest(format!(
            "a batch names 1 to {MAX_BATCH_GROUPS} groups; this one names {n}"
        )));
    }
    Ok(())
}

/// `POST /sync/v1/batch/handshake`.
pub async fn handshake(
    h: &SyncHandle,
    secret_header: Option<&str>,
    mut req: BatchHandshakeRequest,
) -> Result<BatchHandshakeResponse, SyncError> {
    if !h.enabled() {
        return Err(SyncError::disabled());
    }
    check_count(req.groups.len())?;
    let me_id = h.me().instance_id.clone();
    // Every group's data checked as its single request; what they share (version, id, key,
    // endpoint, name) fails the first group, and then the whole request, as it would fail
    // each single one.
    let mut hellos: Vec<(String, Result<Hello, SyncError>)> = Vec::with_capacity(req.groups.len());
    for g in std::mem::take(&mut req.groups) {
        let single = req.single(g);
        let hive = single.hive.clone();
        hellos.push((
            hive,
            Hello::from_request(single, &me_id)
                .map(|(_, hl)| hl)
                .map_err(Into::into),
        ));
    }
    let first = match &hellos[0].1 {
        Ok(hl) => hl.clone(),
        Err(e) => {
            return Err(match e {
                SyncError::BadRequest(m) => SyncError::BadRequest(m.clone()),
                SyncError::Conflict(m) => SyncError::Conflict(m.clone()),
                other => SyncError::BadRequest(other.to_string()),
            });
        }
    };
    let secret_ok = inbound::secret_matches(h, secret_header);
    // Groups without an introduction need the configured endpoint, confirmed once.
    let uninvited = hellos
        .iter()
        .any(|(_, hl)| hl.as_ref().is_ok_and(|hl| hl.introduced.is_none()));
    if !secret_ok && uninvited {
        inbound::confirm_at_configured_endpoint(
            h,
            &first.endpoint,
            &first.instance_id,
            &first.signing_key,
        )
        .await?;
    }
    let me = h.me().clone();
    let hub = h.trusted_hub();
    let max_gossip_peers = h.settings().gossip.max_gossip_peers;
    let label = first.instance_id.clone();
    type Done = (String, Hello, accept::Accepted);
    let bulk = hellos.len() >= BULK_GROUPS;
    let (answers, done) = h
        .store()
        .write_bulk_if(bulk, move |tx| -> Result<_, SyncError> {
            let now = now_ms();
            if !secret_ok && uninvited {
                inbound::check_configured(tx, &first.endpoint)?;
            }
            let mut answers = Vec::with_capacity(hellos.len());
            let mut done: Vec<Done> = Vec::new();
            let mut shared = accept::Shared::default();
            for (hive, hello) in hellos {
                let hello = hello.and_then(|hl| match secret_ok {
                    true => Ok(hl),
                    false => inbound::admit(tx, &hive, &hl, hub.as_ref(), max_gossip_peers, now)
                        .map(|()| hl),
                });
                let answer = match hello {
                    Err(e) => Err(e),
                    Ok(hl) => match inbound::respond(tx, &me, &hive, &hl, now, &mut shared)? {
                        Ok((resp, hive_id, accepted)) => {
                            if !secret_ok {
                                inbound::mark_introduced(tx, &accepted.peer_id, &hl)?;
                            }
                            done.push((hive_id, hl, accepted));
                            Ok(resp)
                        }
                        Err(e) => Err(e),
                    },
                };
                answers.push(match answer {
                    Ok(r) => BatchHandshakeAnswer {
                        hive,
                        current_seq: Some(r.current_seq),
                        roster: r.roster,
                        token: Some(r.token),
                        key_rotations: r.key_rotations,
                        error: None,
                    },
                    Err(e) => BatchHandshakeAnswer {
                        hive,
                        current_seq: None,
                        roster: Vec::new(),
                        token: None,
                        key_rotations: Vec::new(),
                        error: Some(e.group_error()),
                    },
                });
            }
            Ok((answers, done))
        })
        .await?;
    let refused = answers.iter().filter(|a| a.error.is_some()).count();
    tracing::info!(
        peer = %label,
        groups = answers.len(),
        refused,
        "batched handshake answered"
    );
    for (hive_id, hello, accepted) in done {
        accept::after_commit(h, Role::Responder, &hive_id, &hello, accepted).await?;
    }
    Ok(BatchHandshakeResponse {
        protocol_version: PROTOCOL_VERSION,
        instance_id: me_id,
        instance_name: h.me().instance_name.clone(),
        signing_key: h.me().key.public().to_base64(),
        groups: answers,
    })
}

/// Authenticates one group of a batched pull or push: its token must be one we issued to the
/// caller's peer, bound to the hive the group names. Returns the hive's local id.
fn group_auth(
    c: &Conn<'_>,
    auth: &PeerAuth,
    hive: &str,
    token: &str,
) -> Result<Result<String, SyncError>, StoreError> {
    match sync_state::authenticate(c, token, now_ms())? {
        Some((peer_id, hive_id)) if peer_id == auth.peer_id => {
            match sync_state::group_by_name(c, hive)? {
                Some(g) if g.hive_id == hive_id => Ok(Ok(hive_id)),
                _ => Ok(Err(SyncError::Forbidden(
                    "this sync token is not valid for this group".into(),
                ))),
            }
        }
        _ => Ok(Err(SyncError::Unauthorized(
            "Invalid or expired sync token".into(),
        ))),
    }
}

/// `POST /sync/v1/batch/pull`: pages of many hives, in request order, until the event budget
/// (`limit`, at most [`MAX_PULL_LIMIT`]) is spent; groups past it are left out.
pub async fn pull(
    h: &SyncHandle,
    auth: &PeerAuth,
    req: BatchPullRequest,
) -> Result<BatchPullResponse, SyncError> {
    check_count(req.groups.len())?;
    let budget = req
        .limit
        .unwrap_or(DEFAULT_PULL_LIMIT)
        .clamp(1, MAX_PULL_LIMIT);
    let auth2 = auth.clone();
    let (pages, acks, stale) = h
        .store()
        .read(move |c| -> Result<_, StoreError> {
            let mut left = budget;
            let mut pages = Vec::new();
            let mut acks: Vec<(String, i64, i64, Option<i64>, bool)> = Vec::new();
            for g in req.groups {
                if left <= 0 {
                    break;
                }
                let since = g.since.max(0);
                let page = match group_auth(c, &auth2, &g.hive, &g.token)? {
                    Err(e) => BatchPage {
                        hive: g.hive,
                        page: None,
                        error: Some(e.group_error()),
                    },
                    Ok(hive_id) => {
                        let (page, ack) = inbound::read_page(c, &auth2, &hive_id, since, left)?;
                        left -= (page.next_seq - since).max(0);
                        let caught_up = page.next_seq <= since && !page.has_more;
                        acks.push((hive_id, since, page.next_seq, ack, caught_up));
                        BatchPage {
                            hive: g.hive,
                            page: Some(page),
                            error: None,
                        }
                    }
                };
                pages.push(page);
            }
            Ok((pages, acks, inbound::contact_is_stale(c, &auth2.peer_id)?))
        })
        .await?;
    let pulls: Vec<(String, i64, i64, bool)> = acks
        .iter()
        .map(|(hive_id, since, next, _, caught_up)| (hive_id.clone(), *since, *next, *caught_up))
        .collect();
    let acks: Vec<(String, i64)> = acks
        .into_iter()
        .filter_map(|(h, _, _, ack, _)| ack.map(|through| (h, through)))
        .collect();
    if !acks.is_empty() || stale {
        let peer_id = auth.peer_id.clone();
        h.store()
            .write_bulk_if(
                acks.len() >= BULK_GROUPS,
                move |tx| -> Result<(), StoreError> {
                    let now = now_ms();
                    for (hive_id, through) in &acks {
                        sync_state::advance_sent(tx, &peer_id, hive_id, *through, now)?;
                    }
                    if stale {
                        sync_state::record_contact(tx, &peer_id, now)?;
                    }
                    Ok(())
                },
            )
            .await?;
    }
    // After the acknowledgements committed (see `inbound::pull_events`).
    for (hive_id, since, next, caught_up) in &pulls {
        h.note_pull(&auth.peer_id, hive_id, *since, *next, *caught_up);
    }
    Ok(BatchPullResponse { groups: pages })
}

/// `POST /sync/v1/batch/push`: every group applied as its single push would be, in one
/// transaction.
pub async fn push(
    h: &SyncHandle,
    auth: &PeerAuth,
    req: BatchPushRequest,
) -> Result<BatchPushResponse, SyncError> {
    check_count(req.groups.len())?;
    let total: usize = req.groups.iter().map(|g| g.events.len()).sum();
    inbound::rate_limit(h, auth, "(batch)", u32::try_from(total).unwrap_or(u32::MAX)).await?;
    // Checked claims, tokens and signatures (on a reader thread, in parallel with the writer).
    let auth2 = auth.clone();
    let checked = h
        .store()
        .read(move |c| -> Result<_, StoreError> {
            let mut out = Vec::with_capacity(req.groups.len());
            for g in req.groups {
                let claim = PushRequest {
                    events: g.events,
                    first_seq: g.first_seq,
                    last_seq: g.last_seq,
                    key_rotations: g.key_rotations,
                };
                let ok = match inbound::check_push_claim(&claim) {
                    Err(e) => Err(e),
                    Ok(()) => group_auth(c, &auth2, &g.hive, &g.token)?,
                };
                let verified = match &ok {
                    Ok(_) => ingest::preverify(c, &claim.events)?,
                    Err(_) => Vec::new(),
                };
                out.push((g.hive, ok, claim, verified));
            }
            Ok(out)
        })
        .await?;
    let (peer_id, from) = (auth.peer_id.clone(), auth.peer_instance_id.clone());
    let me_id = h.me().instance_id.clone();
    let applied = h
        .store()
        .write_bulk_if(
            checked.len() >= BULK_GROUPS,
            move |tx| -> Result<_, StoreError> {
                let now = now_ms();
                let mut out = Vec::with_capacity(checked.len());
                let mut learned = Vec::new();
                for (hive, ok, claim, verified) in checked {
                    let r = match ok {
                        Err(e) => Err(e),
                        Ok(hive_id) => {
                            let (report, received, gap, new) = inbound::apply_push(
                                tx,
                                (&peer_id, &from, &me_id),
                                (&hive_id, &hive),
                                (claim.first_seq, claim.last_seq),
                                (&claim.events, &claim.key_rotations),
                                &verified,
                                now,
                            )?;
                            learned.extend(new);
                            Ok((hive_id, report, received, gap, claim.last_seq))
                        }
                    };
                    out.push((hive, r));
                }
                Ok((out, learned))
            },
        )
        .await?;
    let (applied, learned) = applied;
    h.announce_keys(learned, Some(auth.peer_id.clone()));
    let mut answers = Vec::with_capacity(applied.len());
    for (hive, r) in applied {
        answers.push(match r {
            Err(e) => BatchPushAnswer {
                hive,
                result: None,
                error: Some(e.group_error()),
            },
            Ok((hive_id, report, received, gap, last)) => {
                let resp =
                    inbound::after_push(h, auth, &hive, &hive_id, report, received, gap, last);
                BatchPushAnswer {
                    hive,
                    result: Some(resp),
                    error: None,
                }
            }
        });
    }
    Ok(BatchPushResponse { groups: answers })
}
