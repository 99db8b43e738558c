//! The worker of one (peer, hive) link: handshake until it has a token, pull (backfill or
//! catch-up) when asked, then push the outbox, sleeping until a local commit wakes it.
//!
//! Invariants:
//! - one request in flight per link; all state lives in the database, so a worker can be
//!   aborted at any await point and restarted without loss;
//! - the pull cursor moves in the same transaction as the events it covers;
//! - `last_seq_sent` moves only after the peer acknowledged (2xx) the batch;
//! - events the peer originated or delivered to us are skipped, but count as covered (no
//!   echo);
//! - failures back off exponentially with jitter and are retried forever; a 429 (to any of
//!   the three calls) waits `Retry-After` and is a contact, not a failure;
//! - a 401 forgets the refused token ([`crate::tokens`]) and the link handshakes again;
//! - what the worker does after a failed step is a `match` on [`LinkError`]; `anyhow` only
//!   formats the failure (with the operation as context) for the log and `last_error`.
//!
//! The handshake's answer is applied by [`crate::accept`], shared with the responder side.

use crate::accept::{self, Hello, Outcome, Role};
use crate::engine::{LinkKey, SyncHandle};
use crate::error::LinkError;
use crate::outbox::{self, Progress};
use crate::protocol::*;
use crate::pull_ahead::{self, Fetched, PullAhead};
use crate::scheduler::{After, Job};
use crate::{tokens, trust};
use openhive_core::time::now_ms;
use openhive_store::consumers::ConsumerId;
use openhive_store::log::LoggedEvent;
use openhive_store::sync_state::{self, LinkRow, PeerRow};
use openhive_store::{Store, StoreError, ingest, log};
use std::time::Duration;
use tracing::Instrument as _;

/// How often a link whose lease another process holds checks whether it is free.
pub(crate) const LEASE_RETRY: Duration = Duration::from_secs(2);

/// Approximate cap of one pushed batch's body.
pub(crate) const PUSH_MAX_BYTES: usize = 4 * 1024 * 1024;

/// What a step of the worker decided.
#[derive(Debug)]
pub(crate) enum Step {
    /// More work is ready: loop at once.
    More,
    /// Nothing to do until woken.
    Idle,
    /// The link is gone or left: exit.
    Stop,
    /// The peer asked us to slow down.
    RetryAfter(Duration),
}

/// A failed step: which operation, and why.
#[derive(Debug)]
pub(crate) struct Failed {
    op: &'static str,
    error: LinkError,
}

impl Failed {
    pub(crate) fn of(op: &'static str) -> impl FnOnce(LinkError) -> Failed {
        move |error| Failed { op, error }
    }

    /// The text logged and recorded as the link's `last_error` (the error chain, with the
    /// operation as context: the one place `anyhow` is used).
    pub(crate) fn message(self) -> String {
        format!("{:#}", anyhow::Error::new(self.error).context(self.op))
    }
}

/// Runs one step of the link `key` for the scheduler ([`crate::scheduler`]): checks the
/// lease, steps, records a failure (with the backoff it earns), and says what comes next.
pub(crate) async fn run_step(h: &SyncHandle, key: &LinkKey, job: &mut Job) -> After {
    let (peer_id, hive_id) = key;
    // Another app process of this instance may run this link: wait until it is ours.
    if !h.holds_lease(format!("link:{peer_id}:{hive_id}")).await {
        job.need_pull = true;
        return After::Pause(LEASE_RETRY);
    }
    match step(h, peer_id, hive_id, job).await {
        Ok(Step::More) => {
            job.backoff.reset();
            After::Again
        }
        Ok(Step::Idle) => {
            job.backoff.reset();
            After::Idle
        }
        Ok(Step::Stop) => After::Stop,
        Ok(Step::RetryAfter(d)) => After::Pause(d),
        Err(failed) => {
            let delay = job.backoff.fail(&h.settings().backoff);
            let msg = failed.message();
            tracing::warn!(peer = %peer_id, hive = %hive_id, error = %msg, retry_in_ms = delay.as_millis() as u64, failures = job.backoff.failures(), "sync link failed");
            let (p, hv) = (peer_id.clone(), hive_id.clone());
            let after = h.settings().error_after_failures;
            let r = h
                .store()
                .write(move |tx| -> Result<(), StoreError> {
                    let now = now_ms();
                    sync_state::record_failure(tx, &p, &msg, after, now)?;
                    sync_state::set_link_error(tx, &p, &hv, Some(&msg))?;
                    Ok(())
                })
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "recording a sync failure");
            }
            // A pull request from the peer (it handshook again) ends the backoff early.
            After::Backoff(delay)
        }
    }
}

async fn load(
    store: &Store,
    peer_id: &str,
    hive_id: &str,
) -> Result<Option<(PeerRow, LinkRow)>, LinkError> {
    let (p, hv) = (peer_id.to_string(), hive_id.to_string());
    store
        .read_point(move |c| -> Result<_, StoreError> {
            let Some(peer) = sync_state::peer_by_id(c, &p)? else {
                return Ok(None);
            };
            Ok(sync_state::link(c, &p, &hv)?.map(|l| (peer, l)))
        })
        .await
        .map_err(LinkError::store("reading link state"))
}

fn peer_label(peer: &PeerRow) -> String {
    peer.instance_id
        .clone()
        .unwrap_or_else(|| peer.endpoint.clone())
}

async fn step(h: &SyncHandle, peer_id: &str, hive_id: &str, job: &mut Job) -> Result<Step, Failed> {
    let Some((peer, link)) = load(h.store(), peer_id, hive_id)
        .await
        .map_err(Failed::of("loading the link"))?
    else {
        return Ok(Step::Stop);
    };
    if link.state == sync_state::LinkState::Left {
        return Ok(Step::Stop);
    }
    let label = peer_label(&peer);
    let Some(token) = link.token_out.clone() else {
        // `seq`: the head we announce, recorded once read.
        let span = tracing::info_span!("sync.handshake", peer = %label, hive = %link.hive_name, seq = tracing::field::Empty);
        let r = handshake(h, &peer, &link).instrument(span.clone()).await;
        let pull = r.as_ref().is_ok_and(|pull| *pull);
        let r = settle(h, &peer, &link, None, r.map(|_| Step::More))
            .instrument(span)
            .await
            .map_err(Failed::of("handshake"))?;
        if let Step::More = r {
            job.need_pull = pull;
        }
        return Ok(r);
    };
    if std::mem::take(&mut job.pull) || job.need_pull {
        job.need_pull = false;
        let span = tracing::info_span!("sync.pull", peer = %label, hive = %link.hive_name, seq = link.last_seq_received);
        let r = pull_all(h, &peer, &link, &token)
            .instrument(span.clone())
            .await;
        if r.is_err() {
            job.need_pull = true;
        }
        return settle(h, &peer, &link, Some(&token), r.map(|()| Step::More))
            .instrument(span)
            .await
            .map_err(Failed::of("pull"));
    }
    let span = tracing::info_span!("sync.push", peer = %label, hive = %link.hive_name, seq = link.last_seq_sent);
    let r = push_once(h, &peer, &link, &token)
        .instrument(span.clone())
        .await;
    settle(h, &peer, &link, Some(&token), r)
        .instrument(span)
        .await
        .map_err(Failed::of("push"))
}

/// Decides what a step's error means for the link, by its kind:
/// - `RateLimited`: backpressure, not a failure: recorded as a contact, then wait;
/// - `Refused`: the peer no longer knows `token` (re-issued or revoked): forget it
///   ([`tokens::forget_refused`]) so the next step handshakes again, and fail (back off);
/// - anything else: fail (the caller backs off and records it).
pub(crate) async fn settle(
    h: &SyncHandle,
    peer: &PeerRow,
    link: &LinkRow,
    token: Option<&str>,
    r: Result<Step, LinkError>,
) -> Result<Step, LinkError> {
    let (p, hv) = (peer.id.clone(), link.hive_id.clone());
    match r {
        Ok(s) => Ok(s),
        Err(LinkError::RateLimited(d)) => {
            tracing::info!(retry_after_s = d.as_secs(), "peer rate-limited us; waiting");
            h.store()
                .write(move |tx| -> Result<(), StoreError> {
                    // Backpressure is a contact, not a failure.
                    sync_state::record_contact(tx, &p, now_ms())?;
                    sync_state::set_link_error(tx, &p, &hv, Some("rate limited (429)"))
                })
                .await
                .map_err(LinkError::store("recording backpressure"))?;
            Ok(Step::RetryAfter(d))
        }
        Err(LinkError::Refused(e)) => {
            if let Some(t) = token {
                let t = t.to_string();
                let forgot = h
                    .store()
                    .write(move |tx| tokens::forget_refused(tx, &p, &hv, &t))
                    .await
                    .map_err(LinkError::store("forgetting a refused token"))?;
                tokens::log_forgotten(forgot);
            }
            Err(LinkError::Refused(e))
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn permit(h: &SyncHandle) -> Result<tokio::sync::OwnedSemaphorePermit, LinkError> {
    h.inner
        .in_flight
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| LinkError::Shutdown)
}

/// Initiator side of the handshake: the request is ours; what we do with the answer is
/// [`accept::accept`] (shared with the responder). Returns whether a pull follows (not when
/// the peer's log of the hive is empty).
async fn handshake(h: &SyncHandle, peer: &PeerRow, link: &LinkRow) -> Result<bool, LinkError> {
    let me = h.me().clone();
    let (p, hv) = (peer.id.clone(), link.hive_id.clone());
    let me_id = me.instance_id.clone();
    let hive_name = link.hive_name.clone();
    let (token, head, roster, key_rotations, introduction) = h
        .store()
        .write(move |tx| -> Result<_, StoreError> {
            let now = now_ms();
            let token = sync_state::issue_token(tx, &p, &hv, now)?;
            Ok((
                token,
                log::head(tx, &hv)?,
                trust::roster(tx, &hv)?,
                trust::handshake_rotations(tx, &hv, &me_id)?,
                crate::admission::pick_own_preferring(
                    &openhive_store::introductions::own_valid(tx, now)?,
                    &hive_name,
                    sync_state::gossip_meta(tx, &p)?
                        .and_then(|(_, via)| via)
                        .as_deref(),
                ),
            ))
        })
        .await
        .map_err(LinkError::store("preparing handshake"))?;
    let proof = introduction.as_ref().map(|_| {
        crate::protocol::HandshakeProof::sign(
            &me.key.get(),
            &link.hive_name,
            &me.instance_id,
            &me.sync_endpoint,
            &token,
            now_ms(),
        )
    });
    tracing::Span::current().record("seq", head);
    let req = HandshakeRequest {
        protocol_version: PROTOCOL_VERSION,
        hive: link.hive_name.clone(),
        instance_id: me.instance_id.clone(),
        instance_name: me.instance_name.clone(),
        signing_key: me.key.public().to_base64(),
        sync_endpoint: me.sync_endpoint.clone(),
        current_seq: head,
        roster,
        token,
        key_rotations,
        introduction,
        proof,
    };
    // The responder pulls from us as soon as it accepts, maybe before its answer reaches us:
    // announce that pull now, so our push leaves the backlog to it (none from an empty log).
    if head > 0 {
        h.expect_pull(&peer.id, &link.hive_id);
    }
    let resp = {
        let _permit = permit(h).await?;
        h.client().handshake(&peer.endpoint, &req).await?
    };
    let hello = Hello::from_response(
        resp,
        &link.hive_name,
        &peer.endpoint,
        &me.instance_id,
        &peer.id,
    )?;
    let (p, hv, hl) = (peer.id.clone(), link.hive_id.clone(), hello.clone());
    let me_id = me.instance_id.clone();
    let accepted = h
        .store()
        .write(move |tx| -> Result<_, StoreError> {
            // We only complete a link that is still there: the admin may have deleted the
            // peer or the group, or the peer may have left, while the request was in flight.
            if sync_state::link(tx, &p, &hv)?.is_none_or(|l| l.state == sync_state::LinkState::Left)
            {
                return Ok(None);
            }
            accept::accept(
                tx,
                &hv,
                &hl,
                Role::Initiator { peer_id: &p },
                &me_id,
                now_ms(),
                &mut accept::Shared::default(),
            )
            .map(Some)
        })
        .await
        .map_err(LinkError::store("accepting the handshake"))?;
    match accepted {
        None => {
            tracing::info!("link gone or left during the handshake; answer dropped");
            Ok(false)
        }
        Some(Outcome::Refused(e)) => Err(e.into()),
        Some(Outcome::Accepted(a)) => {
            let role = Role::Initiator { peer_id: &peer.id };
            let pull = !a.peer_log_empty;
            // Only the responder's post-commit path can fail (reconcile).
            if let Err(e) = accept::after_commit(h, role, &link.hive_id, &hello, a).await {
                tracing::error!(error = %e, "after the handshake");
            }
            Ok(pull)
        }
    }
}

/// Pulls from the peer until it has nothing more; each page is ingested with its cursor
/// update in one transaction.
async fn pull_all(
    h: &SyncHandle,
    peer: &PeerRow,
    link: &LinkRow,
    token: &str,
) -> Result<(), LinkError> {
    let mut since = link.last_seq_received;
    let from = peer.instance_id.clone().unwrap_or_else(|| peer.id.clone());
    let mut total = 0usize;
    let key = (peer.id.clone(), link.hive_id.clone());
    let label = peer_label(peer);
    // The next pages are fetched and their signatures checked (on reader threads, split
    // over the cores) while the current one is ingested by the writer (`pull_ahead`). A
    // signature checked ahead counts only if the writer, holding the origin's key chain as
    // of its transaction, assigns the event the same key (else it checks it again); the
    // cursor still moves only with the data it covers.
    let source = || pull_ahead::Source {
        endpoint: peer.endpoint.clone(),
        token: token.to_string(),
        hive: link.hive_name.clone(),
    };
    let mut pages = PullAhead::start(h, source(), since);
    loop {
        if h.is_shutting_down() {
            return Ok(());
        }
        let Some(page) = pages.next().await else {
            // The chain ends only after a page that said it was the last, handled below.
            break;
        };
        let page = page?;
        if page.since != since {
            // Never written elsewhere than where it was fetched: its cursor would skip data.
            return Err(LinkError::Task(format!(
                "pulled page after {} arrived at cursor {since}",
                page.since
            )));
        }
        let next = page.next_seq.max(since);
        let has_more = page.has_more && next > since;
        // The peer's head, if it says (a claim below the page's own cursor is ignored).
        let head = page.head_seq.filter(|hd| *hd >= next);
        let Fetched {
            events,
            verified,
            key_rotations: rotations,
            ..
        } = page;
        let me_id = h.me().instance_id.clone();
        let n = events.len();
        let (p, hv, hname, from2) = (
            peer.id.clone(),
            link.hive_id.clone(),
            link.hive_name.clone(),
            from.clone(),
        );
        let (report, learned, joined) = h
            .store()
            .write(move |tx| -> Result<_, StoreError> {
                let now = now_ms();
                // The origins' key chains first: events signed after a rotation verify.
                let learned = trust::learn_rotations(tx, &rotations, &from2, &me_id, now)?.new;
                let r = ingest::ingest_remote_checked(
                    tx, &hv, &hname, &events, &verified, &from2, now,
                )?;
                let joined = sync_state::advance_received(tx, &p, &hv, since, next, now)?;
                sync_state::set_remote_seq(tx, &p, &hv, head.unwrap_or(next))?;
                sync_state::count_events(tx, &p, &hv, r.accepted as i64, r.rejected as i64)?;
                sync_state::record_contact(tx, &p, now)?;
                if !has_more {
                    sync_state::set_link_state(tx, &p, &hv, sync_state::LinkState::Active)?;
                    sync_state::set_link_error(tx, &p, &hv, None)?;
                }
                Ok((r, learned, joined))
            })
            .await
            .map_err(LinkError::store("ingesting pulled events"))?;
        h.announce_keys(learned, Some(peer.id.clone()));
        if !joined {
            // The cursor went back below this page while it was in flight (a resync): the
            // events are in (and announced like any commit), but this pull's position is
            // stale. Stop here; the pull the resync asked for starts again from the cursor.
            h.emit(report.changes);
            if report.accepted > 0 {
                h.notify(&link.hive_id);
            }
            tracing::info!(
                seq = since,
                "pull cursor reset meanwhile; pulling again from it"
            );
            drop(pages);
            h.request_pull(&peer.id, &link.hive_id);
            return Ok(());
        }
        h.progress().page(
            &key,
            crate::progress::Page {
                peer_label: &label,
                hive_name: &link.hive_name,
                since,
                next,
                head: head.or(Some(link.remote_seq)),
                has_more,
            },
        );
        total += report.accepted;
        if report.rejected > 0 {
            tracing::warn!(rejected = report.rejected, first = ?report.rejections.first(), "pulled events rejected");
        }
        tracing::debug!(
            events = n,
            accepted = report.accepted,
            seq = next,
            "pulled page"
        );
        h.emit(report.changes);
        if report.accepted > 0 {
            h.notify(&link.hive_id);
        }
        // A page that moved the cursor past events is followed by one more pull, also when
        // it was the last: that pull acknowledges the page on the peer (its `since` moves the
        // peer's push cursor), so the peer does not push the same events again. It is sent
        // only now, after this commit, so the acknowledgement never runs ahead of our data.
        // A page without events needs none: the peer moved its cursor over that range when
        // it served it (`inbound::read_page`).
        let advanced = next > since && n > 0;
        since = next;
        if !has_more {
            if advanced {
                pages = PullAhead::start(h, source(), since);
            } else {
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(accepted = total, seq = since, "pull caught up");
    }
    Ok(())
}

/// A peer link's outbox sink: pushes batches to the peer with the link's token; events the
/// peer originated or delivered to us are not sent back to it (no echo).
pub(crate) struct PeerSink<'a> {
    pub h: &'a SyncHandle,
    pub consumer: ConsumerId,
    pub peer: &'a PeerRow,
    pub peer_instance: String,
    pub link: &'a LinkRow,
    pub token: &'a str,
}

impl outbox::Sink for PeerSink<'_> {
    type Error = LinkError;

    fn consumer(&self) -> (&ConsumerId, &str) {
        (&self.consumer, &self.link.hive_id)
    }

    fn wants(&self, e: &LoggedEvent) -> bool {
        e.event.origin_instance_id != self.peer_instance
            && e.received_from.as_deref() != Some(self.peer_instance.as_str())
    }

    fn skips_known_to(&self) -> Option<&str> {
        // Exactly what `wants` rejects; with no instance id yet it rejects nothing.
        (!self.peer_instance.is_empty()).then_some(self.peer_instance.as_str())
    }

    async fn deliver(&self, batch: outbox::Batch) -> Result<(), LinkError> {
        let n = batch.events.len();
        // The key chains of the batch's origins, for a receiver that has not heard of a
        // rotation yet (one query per origin; nothing when nobody rotated).
        let events = std::sync::Arc::new(batch.events);
        let ev2 = events.clone();
        let key_rotations = self
            .h
            .store()
            .read(move |c| trust::batch_rotations(c, &ev2))
            .await
            .map_err(LinkError::store("reading key rotations"))?;
        let events = std::sync::Arc::try_unwrap(events).unwrap_or_else(|a| (*a).clone());
        let (seq, body) = (
            batch.last_seq,
            PushRequest {
                events,
                first_seq: batch.first_seq,
                last_seq: batch.last_seq,
                key_rotations,
            },
        );
        let resp = {
            let _permit = permit(self.h).await?;
            self.h
                .client()
                .push(&self.peer.endpoint, self.token, &self.link.hive_name, &body)
                .await?
        };
        tracing::debug!(events = n, seq, accepted = resp.accepted, "pushed batch");
        if resp.rejected > 0 {
            tracing::warn!(rejected = resp.rejected, seq, "peer rejected pushed events");
        }
        Ok(())
    }

    fn on_acked(&self, delivered: bool) -> Option<outbox::OnAcked> {
        let (p, hv) = (self.peer.id.clone(), self.link.hive_id.clone());
        Some(Box::new(move |tx, _through, now| {
            sync_state::touch_link(tx, &p, &hv, now)?;
            if delivered {
                // An acknowledged push is a contact, and clears the link's error.
                sync_state::record_contact(tx, &p, now)?;
                sync_state::set_link_error(tx, &p, &hv, None)?;
            }
            Ok(())
        }))
    }

    fn store_error(op: &'static str, e: StoreError) -> LinkError {
        LinkError::store(op)(e)
    }
}

/// How long after a peer's last pull (or its handshake) we leave delivery to its pulls. A
/// pull that catches up ends the wait at once ([`SyncHandle::note_pull`], after its
/// acknowledgement committed); this only bounds the wait for a puller that stopped half-way.
pub(crate) const PULL_QUIET: Duration = Duration::from_secs(2);

/// One outbox step of the link: sends one batch, or advances over skipped events.
async fn push_once(
    h: &SyncHandle,
    peer: &PeerRow,
    link: &LinkRow,
    token: &str,
) -> Result<Step, LinkError> {
    let limit = h.settings().push_batch;
    // Pulling from us right now (or about to: it just handshook): let its pull carry what
    // we have (each page it fetches acknowledges our push cursor, and its last pull ends
    // with an empty page that acknowledges the rest); push resumes when it stops pulling.
    // This keeps one stream per direction, and no event crosses twice.
    if let Some(left) = h.peer_is_pulling(&peer.id, &link.hive_id, PULL_QUIET) {
        return Ok(Step::RetryAfter(left.max(Duration::from_millis(50))));
    }
    let sink = PeerSink {
        h,
        consumer: ConsumerId::peer(&peer.id),
        peer,
        peer_instance: peer.instance_id.clone().unwrap_or_default(),
        link,
        token,
    };
    let limits = outbox::Limits {
        events: limit,
        bytes: PUSH_MAX_BYTES,
    };
    Ok(
        match outbox::step(h.store(), &h.inner.held, &sink, limits).await? {
            Progress::UpToDate => Step::Idle,
            Progress::Delivered { .. } => Step::More,
        },
    )
}
