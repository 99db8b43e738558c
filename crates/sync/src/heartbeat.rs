//! The heartbeat task: every `heartbeat_interval`, POST `/sync/v1/heartbeat` to each peer
//! we hold a token for, with our head seq and roster per shared group; learn rosters, ask
//! links to pull where the peer is ahead of our cursor, record contact or failure. Then mark
//! peers silent for `peer_timeout` as `unreachable`.

use crate::engine::{SyncHandle, sleep_or_shutdown};
use crate::protocol::*;
use crate::trust;
use openhive_core::time::now_ms;
use openhive_store::sync_state::{self, LinkRow, PeerRow};
use openhive_store::{StoreError, log};
use std::collections::BTreeMap;
use tokio::sync::watch;
use tracing::Instrument as _;

pub(crate) async fn run(h: SyncHandle, mut shutdown: watch::Receiver<bool>) {
    // (Events waiting over 24 h for a key or dependency are expired by the server's hourly
    // task, not here.)
    let interval = h.settings().heartbeat_interval;
    loop {
        if sleep_or_shutdown(interval, &mut shutdown).await {
            return;
        }
        // One app process of the instance speaks for it (its endpoint is the one peers see).
        if !h.holds_lease("heartbeat".into()).await {
            continue;
        }
        if let Err(e) = round(&h).await {
            tracing::warn!(error = %e, "heartbeat round failed");
        }
    }
}

async fn round(h: &SyncHandle) -> Result<(), StoreError> {
    let targets = h
        .store()
        .read(|c| -> Result<Vec<(PeerRow, Vec<LinkRow>)>, StoreError> {
            let mut out = Vec::new();
            for p in sync_state::list_peers(c)? {
                let links: Vec<LinkRow> = sync_state::links_for_peer(c, &p.id)?
                    .into_iter()
                    .filter(|l| l.state != sync_state::STATE_LEFT && l.token_out.is_some())
                    .collect();
                if !links.is_empty() && p.instance_id.is_some() {
                    out.push((p, links));
                }
            }
            Ok(out)
        })
        .await?;
    let beats = targets.into_iter().map(|(p, links)| {
        let label = p.instance_id.clone().unwrap_or_default();
        let span = tracing::info_span!("sync.heartbeat", peer = %label);
        beat(h.clone(), p, links).instrument(span)
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
    Ok(())
}

async fn beat(h: SyncHandle, peer: PeerRow, links: Vec<LinkRow>) {
    let hive_ids: Vec<(String, String)> = links
        .iter()
        .map(|l| (l.hive_id.clone(), l.hive_name.clone()))
        .collect();
    let body = h
        .store()
        .read(
            move |c| -> Result<BTreeMap<String, HeartbeatGroup>, StoreError> {
                let mut groups = BTreeMap::new();
                for (id, name) in &hive_ids {
                    groups.insert(
                        name.clone(),
                        HeartbeatGroup {
                            seq: log::head(c, id)?,
                            roster: trust::roster(c, id)?,
                        },
                    );
                }
                Ok(groups)
            },
        )
        .await;
    let groups = match body {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "building heartbeat");
            return;
        }
    };
    let Some(first) = links.first() else { return };
    let token = first.token_out.clone().unwrap_or_default();
    let req = Heartbeat {
        instance_id: h.me().instance_id.clone(),
        sync_endpoint: Some(h.me().sync_endpoint.clone()),
        groups,
    };
    let res = match h.inner.in_flight.clone().acquire_owned().await {
        Ok(_permit) => {
            h.client()
                .heartbeat(&peer.endpoint, Some(&token), &req)
                .await
        }
        Err(_) => return,
    };
    let peer_id = peer.id.clone();
    match res {
        Ok(resp) => {
            if peer.instance_id.as_deref() != Some(resp.instance_id.as_str()) {
                tracing::warn!(answered_as = %resp.instance_id, "heartbeat answered by another instance");
                return;
            }
            let from = resp.instance_id.clone();
            let links2 = links.clone();
            let r = h
                .store()
                .write(move |tx| -> Result<_, StoreError> {
                    let now = now_ms();
                    sync_state::record_contact(tx, &peer_id, now)?;
                    let mut pulls = Vec::new();
                    let mut changes = Vec::new();
                    let mut released = Vec::new();
                    for l in &links2 {
                        if let Some(g) = resp.groups.get(&l.hive_name) {
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
                    }
                    Ok((pulls, changes, released))
                })
                .await;
            match r {
                Ok((pulls, changes, released)) => {
                    h.emit(changes);
                    for hive in released {
                        h.notify(&hive);
                    }
                    for hive in pulls {
                        h.request_pull(&peer.id, &hive);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "recording heartbeat"),
            }
        }
        Err(e) => {
            let msg = format!("heartbeat: {e}");
            tracing::debug!(error = %msg, "heartbeat failed");
            let after = h.settings().error_after_failures;
            let refused = e.status() == Some(401);
            let hv = first.hive_id.clone();
            let r = h
                .store()
                .write(move |tx| -> Result<(), StoreError> {
                    let now = now_ms();
                    sync_state::record_failure(tx, &peer_id, &msg, after, now)?;
                    if refused {
                        // That token is no longer valid: the link re-handshakes.
                        sync_state::set_token_out(tx, &peer_id, &hv, None)?;
                        sync_state::set_link_state(
                            tx,
                            &peer_id,
                            &hv,
                            sync_state::STATE_HANDSHAKING,
                        )?;
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "recording heartbeat failure");
            }
            if refused {
                h.notify(&first.hive_id);
            }
        }
    }
}
