//! Steps that cover many links of one peer at once: when a worker takes a link, it claims the
//! other queued links of the same peer ([`crate::scheduler::Scheduler::claim_siblings`]) and
//! makes one batched call per kind of work they need (`/sync/v1/batch/handshake`, `.../pull`,
//! `.../push`) instead of one call per hive. Pairing thousands of hives with a peer is then a
//! few dozen requests and transactions, not three of each per hive.
//!
//! Each link of a batch gets exactly the outcome its own step ([`crate::link`]) would have
//! had: the same state changes, the same cursor rules (the pull cursor moves in the
//! transaction holding the events it covers; the push cursor only after the peer
//! acknowledged), the same handling of a refused token or a 429 ([`link::settle`]), and its
//! own backoff. A kind of work needed by a single link goes through the single-link step.
//!
//! Invariants:
//! - a link is in at most one batch at a time (the scheduler marks claimed links running);
//! - a group the peer refused fails only its own link; a failed call fails every link it
//!   carried, except a refused bearer token, which only the link it belongs to answers for;
//! - a group the peer left out of a batched pull (its event budget was spent) is pulled
//!   again at the next step, not counted as a failure.

use crate::accept::{self, Hello, Outcome, Role};
use crate::backoff::SharedDelays;
use crate::engine::{LinkKey, SyncHandle};
use crate::error::LinkError;
use crate::link::{self, Failed, PeerSink, Step};
use crate::outbox;
use crate::protocol::*;
use crate::scheduler::{After, Job};
use crate::trust;
use openhive_core::time::now_ms;
use openhive_store::consumers::ConsumerId;
use openhive_store::sync_state::{self, LinkRow, PeerRow};
use openhive_store::{StoreError, ingest, log};
use std::time::Duration;
use tracing::Instrument as _;

/// A batched step for at least this many hives writes as a bulk job
/// ([`openhive_store::Store::write_bulk_if`]): it touches pages by the thousand, and a
/// savepoint would copy each one into a sub-journal first.
pub(crate) const BULK_GROUPS: usize = 16;

/// One link of a batch: its key, the job it carries through the step, and (once loaded) its
/// row.
struct Member {
    key: LinkKey,
    job: Job,
    link: Option<LinkRow>,
    after: Option<After>,
}

/// Runs one step for many links of one peer (`links` all share its id) and says, for each,
/// what comes next.
pub(crate) async fn run(h: &SyncHandle, links: Vec<(LinkKey, Job)>) -> Vec<(LinkKey, Job, After)> {
    let Some(peer_id) = links.first().map(|(k, _)| k.0.clone()) else {
        return Vec::new();
    };
    let mut members: Vec<Member> = links
        .into_iter()
        .map(|(key, job)| Member {
            key,
            job,
            link: None,
            after: None,
        })
        .collect();
    // Another app process of this instance may run some of these links.
    if h.store().engine() != openhive_store::Engine::Sqlite {
        for m in &mut members {
            if !h.holds_lease(format!("link:{}:{}", m.key.0, m.key.1)).await {
                m.job.need_pull = true;
                m.after = Some(After::Pause(link::LEASE_RETRY));
            }
        }
    }
    let peer = match load(h, &peer_id, &mut members).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            for m in &mut members {
                m.after.get_or_insert(After::Stop);
            }
            return finish(members);
        }
        Err(e) => {
            let msg = Failed::of("loading links")(e).message();
            fail_all(h, &peer_id, &mut members, &msg).await;
            return finish(members);
        }
    };
    let label = peer
        .instance_id
        .clone()
        .unwrap_or_else(|| peer.endpoint.clone());
    let (mut hs, mut pulls, mut pushes) = (Vec::new(), Vec::new(), Vec::new());
    for (i, m) in members.iter_mut().enumerate() {
        if m.after.is_some() {
            continue;
        }
        match &m.link {
            None => m.after = Some(After::Stop),
            Some(l) if l.state == sync_state::LinkState::Left => m.after = Some(After::Stop),
            Some(l) if l.token_out.is_none() => hs.push(i),
            Some(_) if m.job.pull || m.job.need_pull => pulls.push(i),
            Some(_) => pushes.push(i),
        }
    }
    for (kind, idx) in [
        (Kind::Handshake, hs),
        (Kind::Pull, pulls),
        (Kind::Push, pushes),
    ] {
        match idx.len() {
            0 => {}
            1 => {
                let m = &mut members[idx[0]];
                m.after = Some(link::run_step(h, &m.key, &mut m.job).await);
            }
            n => {
                let span = tracing::info_span!("sync.batch", peer = %label, kind = kind.name(), groups = n);
                let results = match kind {
                    Kind::Handshake => {
                        handshake(h, &peer, &mut members, &idx)
                            .instrument(span.clone())
                            .await
                    }
                    Kind::Pull => {
                        pull(h, &peer, &mut members, &idx)
                            .instrument(span.clone())
                            .await
                    }
                    Kind::Push => {
                        push(h, &peer, &mut members, &idx)
                            .instrument(span.clone())
                            .await
                    }
                };
                settle_all(h, &peer, &mut members, &idx, kind, results)
                    .instrument(span)
                    .await;
            }
        }
    }
    finish(members)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Handshake,
    Pull,
    Push,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Handshake => "handshake",
            Kind::Pull => "pull",
            Kind::Push => "push",
        }
    }
}

fn finish(members: Vec<Member>) -> Vec<(LinkKey, Job, After)> {
    members
        .into_iter()
        .map(|m| (m.key, m.job, m.after.unwrap_or(After::Again)))
        .collect()
}

/// Loads the peer and every member's link in one read.
async fn load(
    h: &SyncHandle,
    peer_id: &str,
    members: &mut [Member],
) -> Result<Option<PeerRow>, LinkError> {
    let p = peer_id.to_string();
    let hives: Vec<String> = members.iter().map(|m| m.key.1.clone()).collect();
    let (peer, links) = h
        .store()
        .read(move |c| -> Result<_, StoreError> {
            let peer = sync_state::peer_by_id(c, &p)?;
            let links = match &peer {
                Some(_) => sync_state::links_for_hives(c, &p, &hives)?,
                None => vec![None; hives.len()],
            };
            Ok((peer, links))
        })
        .await
        .map_err(LinkError::store("reading link state"))?;
    for (m, l) in members.iter_mut().zip(links) {
        m.link = l;
    }
    Ok(peer)
}

/// The same failure for every member still undecided (e.g. the state could not be read).
async fn fail_all(h: &SyncHandle, peer_id: &str, members: &mut [Member], msg: &str) {
    let idx: Vec<usize> = (0..members.len())
        .filter(|i| members[*i].after.is_none())
        .collect();
    let failures = idx.iter().map(|i| (*i, msg.to_string())).collect();
    record_failures(h, peer_id, members, failures).await;
}

/// Records failed links (one transaction) and sets their backoff: one delay per failure
/// count for the whole call ([`SharedDelays`]).
async fn record_failures(
    h: &SyncHandle,
    peer_id: &str,
    members: &mut [Member],
    failures: Vec<(usize, String)>,
) {
    if failures.is_empty() {
        return;
    }
    let mut rows = Vec::with_capacity(failures.len());
    // Failed together, retried together: one batched call again.
    let mut delays = SharedDelays::default();
    for (i, msg) in failures {
        let m = &mut members[i];
        let delay = delays.fail(&mut m.job.backoff, &h.settings().backoff);
        m.after = Some(After::Backoff(delay));
        rows.push((m.key.1.clone(), msg));
    }
    let first = rows.first().map(|(_, m)| m.clone()).unwrap_or_default();
    tracing::warn!(peer = %peer_id, links = rows.len(), error = %first, "sync links failed");
    let p = peer_id.to_string();
    let after = h.settings().error_after_failures;
    let r = h
        .store()
        .write(move |tx| -> Result<(), StoreError> {
            let now = now_ms();
            sync_state::record_failure(tx, &p, &first, after, now)?;
            for (hv, msg) in &rows {
                sync_state::set_link_error(tx, &p, hv, Some(msg))?;
            }
            Ok(())
        })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "recording sync failures");
    }
}

/// Turns each member's result into what comes next, as [`link::run_step`] does for one link:
/// a 429 or a refused token through [`link::settle`], failures recorded and backed off.
async fn settle_all(
    h: &SyncHandle,
    peer: &PeerRow,
    members: &mut [Member],
    idx: &[usize],
    kind: Kind,
    results: Vec<Result<Step, LinkError>>,
) {
    let mut failures = Vec::new();
    for (&i, r) in idx.iter().zip(results) {
        let m = &mut members[i];
        let Some(link) = m.link.clone() else {
            m.after = Some(After::Stop);
            continue;
        };
        let token = match kind {
            Kind::Handshake => None,
            Kind::Pull | Kind::Push => link.token_out.clone(),
        };
        let r = match r {
            // Only errors need the settling's writes; keep the common path free of them.
            Ok(s) => Ok(s),
            Err(e) => link::settle(h, peer, &link, token.as_deref(), Err(e)).await,
        };
        match r {
            Ok(Step::More) => {
                m.job.backoff.reset();
                m.after = Some(After::Again);
            }
            Ok(Step::Idle) => {
                m.job.backoff.reset();
                m.after = Some(After::Idle);
            }
            Ok(Step::Stop) => m.after = Some(After::Stop),
            Ok(Step::RetryAfter(d)) => m.after = Some(After::Pause(d)),
            Err(e) => failures.push((i, Failed::of(kind.name())(e).message())),
        }
    }
    record_failures(h, &peer.id, members, failures).await;
}

/// The same error for `n` links (a call that failed as a whole). A refused bearer token is
/// the first link's alone (`first_refused`): the others are asked to run again.
fn fan_out(e: LinkError, n: usize, first_refused: bool) -> Vec<Result<Step, LinkError>> {
    let one = |e: &LinkError| -> LinkError {
        match e {
            LinkError::Refused(c) => LinkError::Refused(c.clone()),
            LinkError::RateLimited(d) => LinkError::RateLimited(*d),
            LinkError::Transport(c) => LinkError::Transport(c.clone()),
            LinkError::PeerInput(p) => LinkError::PeerInput(p.clone()),
            LinkError::Shutdown => LinkError::Shutdown,
            other => LinkError::Task(error_chain(other)),
        }
    };
    (0..n)
        .map(|i| {
            if first_refused && matches!(e, LinkError::Refused(_)) && i > 0 {
                Ok(Step::More)
            } else {
                Err(one(&e))
            }
        })
        .collect()
}

/// An error with its sources, as one line.
fn error_chain(e: &LinkError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// A batched handshake for the members `idx` (none has a token yet).
async fn handshake(
    h: &SyncHandle,
    peer: &PeerRow,
    members: &mut [Member],
    idx: &[usize],
) -> Vec<Result<Step, LinkError>> {
    let me = h.me().clone();
    let wanted: Vec<(String, String)> = idx
        .iter()
        .filter_map(|&i| members[i].link.as_ref())
        .map(|l| (l.hive_id.clone(), l.hive_name.clone()))
        .collect();
    let p = peer.id.clone();
    let me_id = me.instance_id.clone();
    let (key, endpoint) = (me.key.get(), me.sync_endpoint.clone());
    let bulk = wanted.len() >= BULK_GROUPS;
    let prepared = h
        .store()
        .write_bulk_if(bulk, move |tx| -> Result<_, StoreError> {
            let now = now_ms();
            let mut groups = Vec::with_capacity(wanted.len());
            let held = openhive_store::introductions::own_valid(tx, now)?;
            let via = sync_state::gossip_meta(tx, &p)?.and_then(|(_, via)| via);
            for (hive_id, hive_name) in &wanted {
                let token = sync_state::issue_token(tx, &p, hive_id, now)?;
                let introduction =
                    crate::admission::pick_own_preferring(&held, hive_name, via.as_deref());
                let proof = introduction
                    .as_ref()
                    .map(|_| HandshakeProof::sign(&key, hive_name, &me_id, &endpoint, &token, now));
                groups.push(BatchHandshakeGroup {
                    hive: hive_name.clone(),
                    token,
                    current_seq: log::head(tx, hive_id)?,
                    roster: trust::roster(tx, hive_id)?,
                    key_rotations: trust::handshake_rotations(tx, hive_id, &me_id)?,
                    introduction,
                    proof,
                });
            }
            Ok(groups)
        })
        .await;
    let groups = match prepared {
        Ok(g) => g,
        Err(e) => return fan_out(LinkError::store("preparing handshake")(e), idx.len(), false),
    };
    let req = BatchHandshakeRequest {
        protocol_version: PROTOCOL_VERSION,
        instance_id: me.instance_id.clone(),
        instance_name: me.instance_name.clone(),
        signing_key: me.key.public().to_base64(),
        sync_endpoint: me.sync_endpoint.clone(),
        groups,
    };
    // The responder pulls as soon as it accepts, unless our log is empty (see
    // `link::handshake`).
    // (`groups` follows the members that have a link, in order, as `wanted` did.)
    let linked = idx.iter().filter_map(|&i| members[i].link.as_ref());
    for (l, g) in linked.zip(&req.groups) {
        if g.current_seq > 0 {
            h.expect_pull(&peer.id, &l.hive_id);
        }
    }
    let resp = {
        let permit = link::permit(h).await;
        match permit {
            Ok(_p) => h.client().batch_handshake(&peer.endpoint, &req).await,
            Err(e) => return fan_out(e, idx.len(), false),
        }
    };
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return fan_out(e.into(), idx.len(), false),
    };
    // Each answer checked as a single answer for its hive would be.
    let mut results: Vec<Option<Result<Step, LinkError>>> = Vec::with_capacity(idx.len());
    let mut hellos: Vec<(usize, String, Hello)> = Vec::new();
    for (pos, a) in resp.groups.iter().enumerate() {
        let hive = a.hive.clone();
        if let Some(e) = &a.error {
            results.push(Some(Err(LinkError::of_group(e))));
            continue;
        }
        let Some(single) = resp.single(a) else {
            results.push(Some(Err(LinkError::PeerInput(
                crate::error::PeerInputError::Malformed(format!(
                    "batched handshake answer for {hive:?} has neither a token nor an error"
                )),
            ))));
            continue;
        };
        match Hello::from_response(single, &hive, &peer.endpoint, &me.instance_id, &peer.id) {
            Ok(hl) => {
                let hive_id = members[idx[pos]]
                    .link
                    .as_ref()
                    .map(|l| l.hive_id.clone())
                    .unwrap_or_default();
                hellos.push((pos, hive_id, hl));
                results.push(None);
            }
            Err(e) => results.push(Some(Err(e.into()))),
        }
    }
    let (p, hl2, me_id) = (peer.id.clone(), hellos.clone(), me.instance_id.clone());
    let accepted = h
        .store()
        .write_bulk_if(
            hl2.len() >= BULK_GROUPS,
            move |tx| -> Result<_, StoreError> {
                let now = now_ms();
                let mut out = Vec::with_capacity(hl2.len());
                let mut shared = accept::Shared::default();
                for (pos, hive_id, hello) in &hl2 {
                    // Only a link that is still there is completed (see `link::handshake`).
                    if sync_state::link(tx, &p, hive_id)?
                        .is_none_or(|l| l.state == sync_state::LinkState::Left)
                    {
                        out.push((*pos, None));
                        continue;
                    }
                    let o = accept::accept(
                        tx,
                        hive_id,
                        hello,
                        Role::Initiator { peer_id: &p },
                        &me_id,
                        now,
                        &mut shared,
                    )?;
                    out.push((*pos, Some(o)));
                }
                Ok(out)
            },
        )
        .await;
    let accepted = match accepted {
        Ok(a) => a,
        Err(e) => {
            return fan_out(
                LinkError::store("accepting the handshake")(e),
                idx.len(),
                false,
            );
        }
    };
    for ((pos, outcome), (_, hive_id, hello)) in accepted.into_iter().zip(hellos) {
        results[pos] = Some(match outcome {
            None => Ok(Step::More),
            Some(Outcome::Refused(e)) => Err(e.into()),
            Some(Outcome::Accepted(a)) => {
                let role = Role::Initiator { peer_id: &peer.id };
                let pull = !a.peer_log_empty;
                if let Err(e) = accept::after_commit(h, role, &hive_id, &hello, a).await {
                    tracing::error!(error = %e, "after the handshake");
                }
                members[idx[pos]].job.need_pull = pull;
                Ok(Step::More)
            }
        });
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or(Ok(Step::More)))
        .collect()
}

/// What the commit of one pulled page would leave as it is (see [`pull`]).
struct Unchanged {
    /// The page ends where it began (`next == since`).
    cursor: bool,
    /// The head it reports is the link's `remote_seq` already.
    remote_seq: bool,
    /// The link is `active` without an error.
    settled: bool,
}

/// One batched pull round for the members `idx` (each has a token): every page answered is
/// ingested with its cursor move, all in one transaction.
async fn pull(
    h: &SyncHandle,
    peer: &PeerRow,
    members: &mut [Member],
    idx: &[usize],
) -> Vec<Result<Step, LinkError>> {
    let mut groups = Vec::with_capacity(idx.len());
    for &i in idx {
        let m = &mut members[i];
        m.job.pull = false;
        m.job.need_pull = true; // until a complete page says otherwise
        let Some(l) = &m.link else { continue };
        groups.push(BatchPullGroup {
            hive: l.hive_name.clone(),
            token: l.token_out.clone().unwrap_or_default(),
            since: l.last_seq_received,
        });
    }
    let auth = groups.first().map(|g| g.token.clone()).unwrap_or_default();
    let req = BatchPullRequest {
        groups,
        limit: Some(MAX_PULL_LIMIT),
    };
    let resp = match link::permit(h).await {
        Ok(_p) => h.client().batch_pull(&peer.endpoint, &auth, &req).await,
        Err(e) => return fan_out(e, idx.len(), false),
    };
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return fan_out(e.into(), idx.len(), true),
    };
    let from = peer.instance_id.clone().unwrap_or_else(|| peer.id.clone());
    let mut results: Vec<Result<Step, LinkError>> =
        (0..idx.len()).map(|_| Ok(Step::More)).collect();
    // (position, hive id, hive name, next seq, has_more, events, advanced)
    let mut pages = Vec::new();
    // Per page: (cursor before it, peer head it reported, the link's remote_seq).
    let mut marks = Vec::new();
    // Per page: what of the link's row its commit would rewrite to the same value (an
    // event-less page that moved nothing, such as the pull acknowledging the last page,
    // writes nothing then).
    let mut unchanged = Vec::new();
    let mut rotations = Vec::new();
    for (pos, g) in resp.groups.into_iter().enumerate() {
        let l = members[idx[pos]].link.as_ref();
        let (Some(l), Some(page)) = (l, g.page) else {
            if let Some(e) = &g.error {
                results[pos] = Err(LinkError::of_group(e));
            }
            continue;
        };
        let since = l.last_seq_received;
        let next = page.next_seq.max(since);
        let has_more = page.has_more && next > since;
        let head = page.head_seq.filter(|hd| *hd >= next);
        marks.push((since, head, l.remote_seq));
        unchanged.push(Unchanged {
            cursor: next == since,
            remote_seq: head.unwrap_or(next) == l.remote_seq,
            settled: l.state == sync_state::LinkState::Active && l.last_error.is_none(),
        });
        let events: Vec<openhive_core::Event> = page.events.into_iter().map(|w| w.event).collect();
        let advanced = next > since && !events.is_empty();
        rotations.extend(page.key_rotations);
        pages.push((
            pos,
            l.hive_id.clone(),
            l.hive_name.clone(),
            next,
            has_more,
            events,
            advanced,
        ));
    }
    if pages.is_empty() {
        return results;
    }
    let pages = std::sync::Arc::new(pages);
    let pages2 = pages.clone();
    // Signatures are checked on a reader thread, in parallel with the writer.
    let verified = h
        .store()
        .read(
            move |c| -> Result<Vec<Vec<Option<openhive_core::PublicKey>>>, StoreError> {
                pages2.iter().map(|p| ingest::preverify(c, &p.5)).collect()
            },
        )
        .await;
    let verified = match verified {
        Ok(v) => v,
        Err(e) => {
            return fan_out(
                LinkError::store("verifying pulled events")(e),
                idx.len(),
                false,
            );
        }
    };
    let (p, pages2, me_id) = (peer.id.clone(), pages.clone(), h.me().instance_id.clone());
    let marks2 = marks.clone();
    let reports = h
        .store()
        .write_bulk_if(
            pages2.len() >= BULK_GROUPS,
            move |tx| -> Result<_, StoreError> {
                let now = now_ms();
                // The origins' key chains first: events signed after a rotation verify.
                let learned = trust::learn_rotations(tx, &rotations, &from, &me_id, now)?.new;
                let mut out = Vec::with_capacity(pages2.len());
                let mut stale = Vec::new();
                for ((page, ok), same) in pages2.iter().zip(&verified).zip(&unchanged) {
                    let (_, hv, hname, next, has_more, events, _) = page;
                    let head = marks2.get(out.len()).and_then(|m| m.1);
                    if events.is_empty() && same.cursor && same.remote_seq && same.settled {
                        out.push(ingest::BatchReport::default());
                        continue;
                    }
                    let r = ingest::ingest_remote_checked(tx, hv, hname, events, ok, &from, now)?;
                    let since = marks2.get(out.len()).map_or(0, |m| m.0);
                    if !sync_state::advance_received(tx, &p, hv, since, *next, now)? {
                        // The cursor went back below this page meanwhile (a resync): the
                        // events are in; the link's next step pulls again from its cursor.
                        stale.push(out.len());
                    }
                    sync_state::set_remote_seq(tx, &p, hv, head.unwrap_or(*next))?;
                    sync_state::count_events(tx, &p, hv, r.accepted as i64, r.rejected as i64)?;
                    if !has_more {
                        sync_state::set_link_state(tx, &p, hv, sync_state::LinkState::Active)?;
                        sync_state::set_link_error(tx, &p, hv, None)?;
                    }
                    out.push(r);
                }
                sync_state::record_contact(tx, &p, now)?;
                Ok((out, learned, stale))
            },
        )
        .await;
    let (reports, stale) = match reports {
        Ok((r, learned, stale)) => {
            h.announce_keys(learned, Some(peer.id.clone()));
            (r, stale)
        }
        Err(e) => {
            return fan_out(
                LinkError::store("ingesting pulled events")(e),
                idx.len(),
                false,
            );
        }
    };
    let mut accepted = 0usize;
    let label = peer
        .instance_id
        .clone()
        .unwrap_or_else(|| peer.endpoint.clone());
    for (i, ((page, report), (since, head, remote_seq))) in
        pages.iter().zip(reports).zip(marks).enumerate()
    {
        let (pos, hv, hname, next, has_more, _, advanced) = page;
        accepted += report.accepted;
        h.emit(report.changes);
        if report.accepted > 0 {
            h.notify(hv);
        }
        if stale.contains(&i) {
            tracing::info!(hive = %hv, seq = since, "pull cursor reset meanwhile; pulling again from it");
            members[idx[*pos]].job.need_pull = true;
            continue;
        }
        h.progress().page(
            &(peer.id.clone(), hv.clone()),
            crate::progress::Page {
                peer_label: &label,
                hive_name: hname,
                since,
                next: *next,
                head: head.or(Some(remote_seq)),
                has_more: *has_more,
            },
        );
        if report.rejected > 0 {
            tracing::warn!(hive = %hv, rejected = report.rejected, first = ?report.rejections.first(), "pulled events rejected");
        }
        // A page that moved the cursor past events is followed by one more pull, also when
        // it was the last: that pull acknowledges the page on the peer (its `since` moves the
        // peer's push cursor), so the peer does not push the same events again. It is sent
        // after this commit, so the acknowledgement never runs ahead of our data. A page
        // without events needs none: the peer moved its cursor over that range when it
        // served it (`inbound::read_page`).
        members[idx[*pos]].job.need_pull = *has_more || *advanced;
        tracing::debug!(hive = %hv, seq = next, accepted = report.accepted, "pulled page (batch)");
    }
    tracing::debug!(groups = pages.len(), accepted, "batched pull ingested");
    results
}

/// One batched push round for the members `idx` (each has a token): every link's next
/// outbox batch in one call; each cursor moves once the peer acknowledged its group.
async fn push(
    h: &SyncHandle,
    peer: &PeerRow,
    members: &mut [Member],
    idx: &[usize],
) -> Vec<Result<Step, LinkError>> {
    let limit = h.settings().push_batch;
    let peer_instance = peer.instance_id.clone().unwrap_or_default();
    let links: Vec<LinkRow> = idx
        .iter()
        .filter_map(|&i| members[i].link.clone())
        .collect();
    if links.len() != idx.len() {
        return idx.iter().map(|_| Ok(Step::Stop)).collect();
    }
    let tokens: Vec<String> = links
        .iter()
        .map(|l| l.token_out.clone().unwrap_or_default())
        .collect();
    let sinks: Vec<PeerSink<'_>> = links
        .iter()
        .zip(&tokens)
        .map(|(l, t)| PeerSink {
            h,
            consumer: ConsumerId::peer(&peer.id),
            peer,
            peer_instance: peer_instance.clone(),
            link: l,
            token: t,
        })
        .collect();
    let pending = match outbox::read_many(h.store(), &h.inner.held, &sinks, limit).await {
        Ok(p) => p,
        Err(e) => return fan_out(LinkError::store("reading the outbox")(e), idx.len(), false),
    };
    let mut results: Vec<Result<Step, LinkError>> =
        (0..idx.len()).map(|_| Ok(Step::Idle)).collect();
    let mut groups = Vec::new();
    let mut sent: Vec<(usize, i64)> = Vec::new();
    let mut acks = Vec::new();
    let mut bytes_left = link::PUSH_MAX_BYTES;
    for (pos, (sink, read)) in sinks.iter().zip(pending).enumerate() {
        if read.covered <= read.after {
            continue; // up to date: Idle
        }
        // Pulling from us right now (or about to): its pulls carry it (see `link::push_once`).
        if let Some(left) = h.peer_is_pulling(&peer.id, &sink.link.hive_id, link::PULL_QUIET) {
            results[pos] = Ok(Step::RetryAfter(left.max(Duration::from_millis(50))));
            continue;
        }
        // It fetched all of this by a pull it has not acknowledged yet (busy committing a
        // long backfill, its acknowledging pull comes later than `PULL_QUIET`): pushing now
        // would send it all again; its acknowledgement resumes this link.
        if let Some((through, left)) = h.peer_fetched_through(&peer.id, &sink.link.hive_id)
            && read.covered <= through
        {
            results[pos] = Ok(Step::RetryAfter(left.max(Duration::from_millis(50))));
            continue;
        }
        if bytes_left == 0 {
            results[pos] = Ok(Step::More); // next round
            continue;
        }
        let after = read.after;
        let batch = outbox::select(sink, read, bytes_left);
        let (id, hive) = outbox::Sink::consumer(sink);
        if outbox::hold_skipped(&batch, limit) {
            // Only entries the peer must not get: held (see `hold_skipped`), Idle.
            h.inner.held.hold(id, hive, after, batch.last_seq);
            continue;
        }
        h.inner.held.forget(id, hive);
        let size: usize = batch
            .events
            .iter()
            .map(|e| e.payload.len() + e.signature.len() + 256)
            .sum();
        bytes_left = bytes_left.saturating_sub(size.max(1));
        results[pos] = Ok(Step::More);
        sent.push((pos, batch.last_seq));
        groups.push(BatchPushGroup {
            hive: sink.link.hive_name.clone(),
            token: sink.token.to_string(),
            events: batch.events,
            first_seq: batch.first_seq,
            last_seq: batch.last_seq,
            key_rotations: Vec::new(),
        });
    }
    if !groups.is_empty() {
        // The key chains of each group's origins (see `PeerSink::deliver`).
        let evs: Vec<Vec<openhive_core::Event>> = groups.iter().map(|g| g.events.clone()).collect();
        let chains = h
            .store()
            .read(move |c| -> Result<Vec<_>, StoreError> {
                evs.iter().map(|e| trust::batch_rotations(c, e)).collect()
            })
            .await;
        match chains {
            Ok(chains) => {
                for (g, c) in groups.iter_mut().zip(chains) {
                    g.key_rotations = c;
                }
            }
            Err(e) => {
                return fan_out(
                    LinkError::store("reading key rotations")(e),
                    idx.len(),
                    false,
                );
            }
        }
        let auth = groups[0].token.clone();
        let req = BatchPushRequest { groups };
        let resp = match link::permit(h).await {
            Ok(_p) => h.client().batch_push(&peer.endpoint, &auth, &req).await,
            Err(e) => Err(crate::client::ClientError::Transport(e.to_string())),
        };
        match resp {
            Err(e) => {
                // The call failed as a whole: every group it carried fails (a refused bearer
                // token only its own).
                let fails = fan_out(e.into(), sent.len(), true);
                for ((pos, _), r) in sent.iter().zip(fails) {
                    results[*pos] = r;
                }
            }
            Ok(resp) => {
                for ((pos, through), a) in sent.iter().zip(resp.groups) {
                    if let Some(e) = &a.error {
                        results[*pos] = Err(LinkError::of_group(e));
                        continue;
                    }
                    if let Some(r) = &a.result
                        && r.rejected > 0
                    {
                        tracing::warn!(hive = %a.hive, rejected = r.rejected, seq = through, "peer rejected pushed events");
                    }
                    let sink = &sinks[*pos];
                    acks.push(outbox::Ack {
                        consumer: ConsumerId::peer(&peer.id),
                        hive_id: sink.link.hive_id.clone(),
                        through: *through,
                        then: outbox::Sink::on_acked(sink, true),
                    });
                }
            }
        }
    }
    if let Err(e) = outbox::ack_many(h.store(), acks).await {
        return fan_out(
            LinkError::store("moving the outbox cursor")(e),
            idx.len(),
            false,
        );
    }
    results
}
