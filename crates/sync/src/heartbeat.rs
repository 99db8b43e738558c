//! The heartbeat task: every `heartbeat_interval`, POST `/sync/v1/heartbeat` to each peer
//! we hold a token for: one message per peer, carrying head seq and roster of only the shared
//! groups that changed since the peer last heard from us ([`crate::news`]; an idle mesh
//! exchanges bare contacts whatever the number of hives); apply the answer's
//! groups ([`crate::groups`], shared with the receiving side: contact, rosters, pulls where
//! the peer is ahead of our cursor), or record the failure (a refused token is forgotten
//! through [`crate::tokens`]). Then mark peers silent for `peer_timeout` as `unreachable`.

use crate::client::ClientError;
use crate::engine::{SyncHandle, sleep_or_shutdown};
use crate::error::LinkError;
use crate::gossip;
use crate::groups::{self, Direction};
use crate::protocol::*;
use crate::tokens;
use openhive_core::time::now_ms;
use openhive_store::StoreError;
use openhive_store::sync_state::{self, LinkRow, PeerRow};
use tokio::sync::watch;
use tracing::Instrument as _;

/// Every how many rounds the heartbeat looks for links behind their log (a missed wake-up
/// is repaired within this many intervals).
const SAFETY_NET_EVERY: u64 = 12;

pub(crate) async fn run(h: SyncHandle, mut shutdown: watch::Receiver<bool>) {
    // (Events waiting over 24 h for a key or dependency are expired by the server's hourly
    // task, not here.)
    let interval = h.settings().heartbeat_interval;
    let mut rounds: u64 = 0;
    loop {
        if sleep_or_shutdown(interval, &mut shutdown).await {
            return;
        }
        // Links created through another app process of this instance (PostgreSQL) get a
        // worker here too; the lease decides which process runs it.
        if h.store().engine() != openhive_store::Engine::Sqlite
            && let Err(e) = h.reconcile().await
        {
            tracing::warn!(error = %e, "reconciling links");
        }
        // One app process of the instance speaks for it (its endpoint is the one peers see).
        if !h.holds_lease("heartbeat".into()).await {
            continue;
        }
        if let Err(e) = round(&h).await {
            tracing::warn!(error = %e, "heartbeat round failed");
        }
        // The safety net under commit wake-ups, once a minute or so: links left behind
        // their log run now (one query, but over every link: not every round).
        rounds += 1;
        if !rounds.is_multiple_of(SAFETY_NET_EVERY) {
            continue;
        }
        match h.store().read(sync_state::links_behind).await {
            Ok(behind) => {
                for (peer, hive) in behind {
                    h.wake_link(&peer, &hive);
                }
            }
            Err(e) => tracing::warn!(error = %e, "looking for links behind their log"),
        }
    }
}

async fn round(h: &SyncHandle) -> Result<(), StoreError> {
    // One cheap lookup per peer (not per link): the peer and one token of ours for it.
    let targets = h
        .store()
        .read(|c| -> Result<Vec<(PeerRow, LinkRow)>, StoreError> {
            let mut out = Vec::new();
            for p in sync_state::list_peers(c)? {
                if p.instance_id.is_none() {
                    continue;
                }
                if let Some(l) = sync_state::heartbeat_link(c, &p.id)? {
                    out.push((p, l));
                }
            }
            Ok(out)
        })
        .await?;
    let beats = targets.into_iter().map(|(p, link)| {
        let label = p.instance_id.clone().unwrap_or_default();
        let span = tracing::info_span!("sync.heartbeat", peer = %label);
        beat(h.clone(), p, link).instrument(span)
    });
    futures::future::join_all(beats).await;
    let timeout_ms = h.settings().peer_timeout.as_millis() as i64;
    let marked = h
        .store()
        .write(move |tx| {
            let now = now_ms();
            sync_state::mark_unreachable(tx, now - timeout_ms, now)
        })
        .await?;
    for id in marked {
        tracing::warn!(peer = %id, "peer unreachable (no contact within peer_timeout)");
    }
    gossip::cleanup(h).await?;
    Ok(())
}

/// One heartbeat to `peer`, authenticated with `link`'s token, carrying the peer's news
/// (the shared hives that changed since it last heard from us: [`crate::news`]).
async fn beat(h: SyncHandle, peer: PeerRow, link: LinkRow) {
    let Some(token) = link.token_out.clone() else {
        return;
    };
    let due = h.inner.news.take(&peer.id);
    let plan = gossip::plan(&h, &peer.id, &due);
    let sent = h.inner.gossip.sent(&peer.id, &plan);
    let (pid, d, h2) = (peer.id.clone(), due.clone(), h.clone());
    let built = h
        .store()
        .read(move |c| -> Result<_, StoreError> {
            let ours = groups::ours(c, &pid, &d, &h2.inner.held)?;
            let out = gossip::outgoing_for(&h2, c, &pid, &plan, &sent)?;
            Ok((ours, out))
        })
        .await;
    let (ours, out) = match built {
        Ok(g) => g,
        Err(e) => {
            h.inner.news.give_back(&peer.id, due);
            tracing::warn!(error = %e, "building heartbeat");
            return;
        }
    };
    h.inner.gossip.record(
        &peer.id,
        &plan,
        &out,
        tokio::time::Instant::now().into_std(),
    );
    h.count_heartbeat_groups(ours.len());
    let req = Heartbeat {
        instance_id: h.me().instance_id.clone(),
        sync_endpoint: Some(h.me().sync_endpoint.clone()),
        groups: ours,
        known_peers: out.known_peers,
        introduction: out.introduction,
    };
    let res = match h.inner.in_flight.clone().acquire_owned().await {
        Ok(_permit) => {
            h.client()
                .heartbeat(&peer.endpoint, Some(&token), &req)
                .await
        }
        Err(_) => {
            h.inner.news.give_back(&peer.id, due);
            h.inner.gossip.give_back(&peer.id);
            return;
        }
    };
    let peer_id = peer.id.clone();
    match res {
        Ok(resp) => {
            if peer.instance_id.as_deref() != Some(resp.instance_id.as_str()) {
                h.inner.news.give_back(&peer.id, due);
                h.inner.gossip.give_back(&peer.id);
                tracing::warn!(answered_as = %resp.instance_id, "heartbeat answered by another instance");
                return;
            }
            tracing::debug!(
                sent = req.groups.len(),
                answered = resp.groups.len(),
                "heartbeat"
            );
            let from = resp.instance_id.clone();
            let h2 = h.clone();
            let r = h
                .store()
                .write(move |tx| -> Result<_, StoreError> {
                    let now = now_ms();
                    let applied =
                        groups::apply(tx, &peer_id, &from, &resp.groups, &Direction::Answer, now)?;
                    let learned = gossip::incoming_from(
                        &h2,
                        tx,
                        &peer_id,
                        &from,
                        &resp.known_peers,
                        resp.introduction.as_ref(),
                        now,
                    )?;
                    Ok((applied, learned))
                })
                .await;
            match r {
                Ok((applied, learned)) => {
                    groups::after_commit(&h, &peer.id, applied);
                    gossip::after_commit(&h, learned).await;
                }
                Err(e) => tracing::warn!(error = %e, "recording heartbeat"),
            }
        }
        Err(e) => {
            h.inner.news.give_back(&peer.id, due);
            h.inner.gossip.give_back(&peer.id);
            failed(&h, &peer, &link, &token, e).await
        }
    }
}

/// A heartbeat that was not answered with 2xx. A refusal (401) of the token we presented
/// forgets it (the link handshakes again); a 429 is backpressure, a contact; anything else is
/// a failure. A refusal is a failure too: the call did not get through.
async fn failed(h: &SyncHandle, peer: &PeerRow, link: &LinkRow, token: &str, e: ClientError) {
    let msg = format!("heartbeat: {e}");
    tracing::debug!(error = %msg, "heartbeat failed");
    let error = LinkError::from(e);
    let after = h.settings().error_after_failures;
    let (peer_id, hive_id, token) = (peer.id.clone(), link.hive_id.clone(), token.to_string());
    // `Some(forgot)` for a refusal.
    let r = h
        .store()
        .write(move |tx| -> Result<Option<bool>, StoreError> {
            let now = now_ms();
            match error {
                LinkError::RateLimited(_) => {
                    sync_state::record_contact(tx, &peer_id, now)?;
                    Ok(None)
                }
                LinkError::Refused(_) => {
                    sync_state::record_failure(tx, &peer_id, &msg, after, now)?;
                    tokens::forget_refused(tx, &peer_id, &hive_id, &token).map(Some)
                }
                _ => {
                    sync_state::record_failure(tx, &peer_id, &msg, after, now)?;
                    Ok(None)
                }
            }
        })
        .await;
    match r {
        Ok(Some(forgot)) => {
            tokens::log_forgotten(forgot);
            if forgot {
                h.wake_link(&peer.id, &link.hive_id);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "recording heartbeat failure"),
    }
}
