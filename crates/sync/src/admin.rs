//! Logic of the local admin API (`/api/v1/sync/*`) and the `sync` section of
//! `/api/v1/federation/status`. The HTTP layer checks `AdminCaller` and maps [`SyncError`].
//!
//! No view here carries a token or a private key: peers are shown with their endpoint,
//! instance id, status and cursors only.

use crate::engine::SyncHandle;
use crate::error::SyncError;
use crate::inbound::group_status;
use crate::paging::{self, ListQuery, Page, StateFilter};
use crate::protocol::*;
use openhive_core::time::{now_ms, rfc3339};
use openhive_core::validate;
use openhive_store::sync_state::{self, PeerRow};
use openhive_store::{StoreError, db, hives, ingest, log};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// A sync group as listed. `id`, `hive_name`, `sync_group_name` and `seq` are the
/// reference's fields: `id` is the hive id (a group is identified by its hive here, and
/// `/sync/groups/:id` accepts it as well as the hive name), `sync_group_name` is the hive
/// name (groups pair by hive name), `seq` the head of the hive's log (= `local_seq`).
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub id: String,
    pub hive_name: String,
    pub sync_group_name: String,
    pub seq: i64,
    pub name: String,
    pub hive_id: String,
    pub local_seq: i64,
    pub peer_count: usize,
    /// True while the hive itself has not arrived yet (a group enabled for a hive this
    /// instance does not have: it fills from the first peer that shares it).
    pub awaiting_hive: bool,
    pub created_at: String,
}

/// One group in detail; the reference's fields as in [`GroupView`].
#[derive(Debug, Clone, Serialize)]
pub struct GroupDetail {
    pub id: String,
    pub hive_name: String,
    pub sync_group_name: String,
    pub seq: i64,
    pub name: String,
    pub hive_id: String,
    pub awaiting_hive: bool,
    pub created_at: String,
    pub event_count: i64,
    #[serde(flatten)]
    pub status: GroupStatus,
    pub roster: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerGroupView {
    pub hive: String,
    pub state: sync_state::LinkState,
    pub lag: i64,
    pub last_seq_sent: i64,
    pub last_seq_received: i64,
    pub events_received: i64,
    pub events_rejected: i64,
    pub last_error: Option<String>,
    /// While the link pulls a long way: how far it is ([`crate::progress`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::progress::LinkProgress>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerView {
    pub id: String,
    pub name: String,
    pub sync_endpoint: String,
    pub instance_id: Option<String>,
    pub source: sync_state::PeerSource,
    pub status: sync_state::PeerStatus,
    pub failure_count: i64,
    pub last_contact_at: Option<String>,
    pub last_error: Option<String>,
    pub shared_hives: Vec<String>,
    pub groups: Vec<PeerGroupView>,
    /// Links with this peer that are not `left`. A listing shows at most
    /// [`LISTED_GROUPS_PER_PEER`] of them in `shared_hives` and `groups` (filter by `hive`,
    /// or get the peer, for the rest).
    pub group_count: usize,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddPeer {
    pub name: String,
    pub sync_endpoint: String,
    #[serde(default)]
    pub shared_hives: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchPeer {
    pub name: Option<String>,
    pub sync_endpoint: Option<String>,
    pub shared_hives: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub reachable: bool,
    pub authenticated: bool,
    pub latency_ms: u64,
    pub peer_instance_id: Option<String>,
    pub status: Option<u16>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResyncResult {
    pub hive: String,
    pub peers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventsView {
    pub data: Vec<WireEvent>,
    pub next_before: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Counters {
    pub events_rejected: i64,
    pub events_ignored: i64,
    pub pending_dropped: i64,
    pub rate_limited: i64,
    pub key_conflicts: i64,
    /// Events from unknown origins refused because the waiting queue was full.
    pub waiting_refused: i64,
}

/// The queues of waiting events, instance-wide (each group's status shows its own hive's).
#[derive(Debug, Clone, Serialize)]
pub struct WaitingView {
    /// Events logged but waiting for a dependency.
    pub pending: i64,
    /// Events waiting for their origin's key.
    pub unverified: i64,
    /// Bounds of `unverified` (`[sync] max_waiting_per_peer`, `max_waiting_total`).
    pub max_per_peer: i64,
    pub max_total: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub enabled: bool,
    pub instance_id: String,
    pub sync_endpoint: String,
    pub groups: Vec<GroupStatus>,
    pub counters: Counters,
    pub waiting: WaitingView,
    /// The storage engine and its write queue (depth, capacity, API writes refused with 503).
    pub storage: StorageStatus,
    /// Give it as `cursor` for the next page of `groups`; `null` on the last page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
    /// The link scheduler: links known, and how many are queued, running or waiting (a
    /// retry or a pause); the rest are idle and cost nothing.
    pub links: crate::scheduler::SchedulerStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct StorageStatus {
    pub engine: &'static str,
    pub write_queue: openhive_store::QueueStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct FedPeer {
    pub name: String,
    pub instance_id: Option<String>,
    pub status: String,
    pub lag: i64,
    pub last_sync: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FedGroup {
    pub name: String,
    pub local_seq: i64,
    pub peers: Vec<FedPeer>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FederationSync {
    pub groups: Vec<FedGroup>,
}

fn bad(msg: impl Into<String>) -> SyncError {
    SyncError::BadRequest(msg.into())
}

fn group_not_found(name: &str) -> SyncError {
    SyncError::NotFound(format!("no sync group for hive {name:?}"))
}

fn peer_not_found() -> SyncError {
    SyncError::NotFound("peer not found".into())
}

/// How many of a peer's groups a listing shows.
pub const LISTED_GROUPS_PER_PEER: usize = 50;

fn peer_view(c: &openhive_store::Conn<'_>, p: PeerRow) -> Result<PeerView, StoreError> {
    peer_view_of(c, p, usize::MAX, None)
}

/// A peer's view showing at most `max_groups` of its groups (only `hive`'s, if given).
fn peer_view_of(
    c: &openhive_store::Conn<'_>,
    p: PeerRow,
    max_groups: usize,
    hive: Option<&str>,
) -> Result<PeerView, StoreError> {
    let mut groups = Vec::new();
    let mut shared = Vec::new();
    let mut group_count = 0;
    for l in sync_state::links_for_peer(c, &p.id)? {
        if l.state != sync_state::LinkState::Left {
            group_count += 1;
        }
        if groups.len() >= max_groups || hive.is_some_and(|h| h != l.hive_name) {
            continue;
        }
        let head = log::head(c, &l.hive_id)?;
        if l.state != sync_state::LinkState::Left {
            shared.push(l.hive_name.clone());
        }
        groups.push(PeerGroupView {
            hive: l.hive_name,
            state: l.state,
            lag: (head - l.last_seq_sent).max(0),
            last_seq_sent: l.last_seq_sent,
            last_seq_received: l.last_seq_received,
            events_received: l.events_received,
            events_rejected: l.events_rejected,
            last_error: l.last_error,
            progress: None,
        });
    }
    Ok(PeerView {
        id: p.id,
        name: p.name,
        sync_endpoint: p.endpoint,
        instance_id: p.instance_id,
        source: p.source,
        status: p.status,
        failure_count: p.failure_count,
        last_contact_at: p.last_contact_at.map(rfc3339),
        last_error: p.last_error,
        shared_hives: shared,
        groups,
        group_count,
        created_at: rfc3339(p.created_at),
        updated_at: rfc3339(p.updated_at),
    })
}

/// Fills in the progress of the links of `v` that are pulling in this process.
fn with_progress(h: &SyncHandle, mut v: PeerView) -> PeerView {
    for g in &mut v.groups {
        g.progress = h.progress().get(&v.id, &g.hive);
    }
    v
}

/// Fills in the progress of the links of `g` that are pulling in this process.
fn group_with_progress(h: &SyncHandle, g: &mut GroupStatus) {
    for p in &mut g.peers {
        p.progress = h.progress().get(&p.peer_id, &g.hive);
    }
}

fn group_view(
    c: &openhive_store::Conn<'_>,
    g: sync_state::GroupRow,
) -> Result<GroupView, StoreError> {
    let seq = log::head(c, &g.hive_id)?;
    Ok(GroupView {
        id: g.hive_id.clone(),
        hive_name: g.hive_name.clone(),
        sync_group_name: g.hive_name.clone(),
        seq,
        local_seq: seq,
        peer_count: sync_state::links_for_hive(c, &g.hive_id)?
            .iter()
            .filter(|l| l.state != sync_state::LinkState::Left)
            .count(),
        awaiting_hive: hives::get_by_name(c, &g.hive_name)?.is_none(),
        name: g.hive_name,
        hive_id: g.hive_id,
        created_at: rfc3339(g.created_at),
    })
}

/// A group by hive name, or else by id (the hive id).
fn group_by_ref(
    c: &openhive_store::Conn<'_>,
    name_or_id: &str,
) -> Result<sync_state::GroupRow, SyncError> {
    if let Some(g) = sync_state::group_by_name(c, name_or_id)? {
        return Ok(g);
    }
    sync_state::group_by_hive_id(c, name_or_id)?.ok_or_else(|| group_not_found(name_or_id))
}

/// `POST /api/v1/sync/groups {hive_name}`: enables sync for a hive. Idempotent; the bool
/// says whether the group was created by this call. For a hive this instance does not have
/// yet, the group is created pending, over an empty log, and fills from the first peer
/// that shares the hive (the design's hubless walkthrough, §3.2 step 3).
pub async fn create_group(h: &SyncHandle, hive_name: &str) -> Result<(GroupView, bool), SyncError> {
    validate::hive_name(hive_name).map_err(bad)?;
    let name = hive_name.to_string();
    let me = h.me().instance_id.clone();
    let out = h
        .store()
        .write(move |tx| -> Result<_, SyncError> {
            let hive_id = match hives::get_by_name(tx, &name)? {
                Some(hive) => hive.id,
                None => hives::ensure_log(tx, &name)?,
            };
            let created = sync_state::ensure_group(tx, &hive_id, &name, &me, now_ms())?;
            let g = sync_state::group_by_hive_id(tx, &hive_id)?
                .ok_or_else(|| group_not_found(&name))?;
            Ok((group_view(tx, g)?, created))
        })
        .await;
    if matches!(out, Ok((_, true))) {
        h.groups_changed();
    }
    out
}

/// `POST /api/v1/sync/groups/join` (design §3.3 step 4): enables the group for
/// `hive_name` (as [`create_group`], pending if the hive is not here yet) and adds (or
/// extends, by endpoint) the peer at `peer_endpoint` sharing that hive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinGroup {
    pub hive_name: String,
    /// Accepted for compatibility and ignored: groups pair by hive name here.
    #[serde(default)]
    pub sync_group_name: Option<String>,
    /// The peer's `/sync/v1` endpoint. Required: there is no MAP hub to resolve
    /// `peer_swarm_id` through.
    #[serde(default)]
    pub peer_endpoint: Option<String>,
    /// The design's hub-resolved peer id; accepted, but an endpoint is still required.
    #[serde(default)]
    pub peer_swarm_id: Option<String>,
    /// The peer's display name (default: the endpoint's host).
    #[serde(default)]
    pub peer_name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JoinView {
    pub group: GroupView,
    pub peer: PeerView,
}

/// See [`JoinGroup`]. The bool says whether the group or the peer was created.
pub async fn join_group(h: &SyncHandle, input: JoinGroup) -> Result<(JoinView, bool), SyncError> {
    validate::hive_name(&input.hive_name).map_err(bad)?;
    if let Some(n) = &input.sync_group_name {
        validate::display_name(n, "sync_group_name").map_err(bad)?;
    }
    let Some(endpoint) = input.peer_endpoint.filter(|e| !e.trim().is_empty()) else {
        return Err(bad(
            "peer_endpoint is required (the peer's /sync/v1 URL; there is no hub to resolve peer_swarm_id)",
        ));
    };
    let endpoint = endpoint.trim().to_string();
    validate::url(&endpoint).map_err(|_| bad("peer_endpoint must be an http(s) URL"))?;
    let name = match input.peer_name {
        Some(n) => n,
        None => endpoint_host(&endpoint),
    };
    let (_, group_created) = create_group(h, &input.hive_name).await?;
    let (peer, peer_created) = add_peer(
        h,
        AddPeer {
            name,
            sync_endpoint: endpoint,
            shared_hives: vec![input.hive_name.clone()],
        },
    )
    .await?;
    let hive = input.hive_name;
    let group = h
        .store()
        .read(move |c| -> Result<_, SyncError> {
            let g = sync_state::group_by_name(c, &hive)?.ok_or_else(|| group_not_found(&hive))?;
            Ok(group_view(c, g)?)
        })
        .await?;
    Ok((JoinView { group, peer }, group_created || peer_created))
}

/// `host[:port]` of an endpoint URL (a default peer name).
fn endpoint_host(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest);
    let host: String = host.chars().take(100).collect();
    if host.trim().is_empty() {
        "peer".into()
    } else {
        host
    }
}

/// The status of group `g` with only the links `f` keeps; `None` if `f` drops the group
/// (another hive, or no link left once the peer and state filters apply).
fn filtered_group_status(
    c: &openhive_store::Conn<'_>,
    f: &paging::Filter,
    g: &sync_state::GroupRow,
) -> Result<Option<GroupStatus>, StoreError> {
    if !f.hive_matches(&g.hive_name) {
        return Ok(None);
    }
    let mut st = group_status(c, &g.hive_id, &g.hive_name)?;
    if f.narrows_links() {
        st.peers.retain(|l| f.link_matches(l));
        if st.peers.is_empty() {
            return Ok(None);
        }
    }
    Ok(Some(st))
}

/// `GET /api/v1/sync/groups`: a page of groups by hive name ([`crate::paging`]).
pub async fn list_groups(h: &SyncHandle, q: &ListQuery) -> Result<Page<GroupView>, SyncError> {
    let f = q.check()?;
    Ok(h.store()
        .read(move |c| -> Result<_, StoreError> {
            paging::scan(
                &f,
                |after, n| sync_state::groups_after(c, after, n),
                |g| g.hive_name.clone(),
                |g| {
                    // The links are only read when a filter is about them.
                    let keep = if f.narrows_links() {
                        filtered_group_status(c, &f, &g)?.is_some()
                    } else {
                        f.hive_matches(&g.hive_name)
                    };
                    if keep {
                        group_view(c, g).map(Some)
                    } else {
                        Ok(None)
                    }
                },
            )
        })
        .await?)
}

pub async fn get_group(h: &SyncHandle, name: &str) -> Result<GroupDetail, SyncError> {
    let n = name.to_string();
    h.store()
        .read(move |c| -> Result<_, SyncError> {
            let g = group_by_ref(c, &n)?;
            let status = group_status(c, &g.hive_id, &g.hive_name)?;
            let roster = sync_state::roster(c, &g.hive_id)?
                .into_iter()
                .map(|(i, _)| i)
                .collect();
            Ok(GroupDetail {
                id: g.hive_id.clone(),
                hive_name: g.hive_name.clone(),
                sync_group_name: g.hive_name.clone(),
                seq: status.local_seq,
                awaiting_hive: hives::get_by_name(c, &g.hive_name)?.is_none(),
                name: g.hive_name,
                event_count: status.local_seq,
                hive_id: g.hive_id,
                created_at: rfc3339(g.created_at),
                status,
                roster,
            })
        })
        .await
        .map(|mut d: GroupDetail| {
            group_with_progress(h, &mut d.status);
            d
        })
}

/// Sends `leave` for each given link, best effort, without blocking the caller long.
fn send_leaves(h: &SyncHandle, leaves: Vec<(String, String, String)>) {
    for (endpoint, token, hive) in leaves {
        let client = h.client().clone();
        tokio::spawn(async move {
            if let Err(e) = client.leave(&endpoint, &token, &hive).await {
                tracing::info!(hive = %hive, error = %e, "leave notification not delivered");
            }
        });
    }
}

/// `DELETE /api/v1/sync/groups/:name`: stops syncing the hive (peers are told we left); the
/// hive and its log stay.
pub async fn delete_group(h: &SyncHandle, name: &str) -> Result<(), SyncError> {
    let n = name.to_string();
    let leaves = h
        .store()
        .write(move |tx| -> Result<_, SyncError> {
            let g = group_by_ref(tx, &n)?;
            let mut leaves = Vec::new();
            for l in sync_state::links_for_hive(tx, &g.hive_id)? {
                if let (Some(t), Some(p)) = (l.token_out, sync_state::peer_by_id(tx, &l.peer_id)?)
                    && l.state != sync_state::LinkState::Left
                {
                    leaves.push((p.endpoint, t, g.hive_name.clone()));
                }
            }
            sync_state::delete_group(tx, &g.hive_id)?;
            Ok(leaves)
        })
        .await?;
    send_leaves(h, leaves);
    h.groups_changed();
    h.reconcile().await
}

/// `POST /api/v1/sync/groups/:name/resync`: pulls the whole log again from every linked peer
/// (idempotent: what we already have is skipped as duplicates). Returns at once.
pub async fn resync(h: &SyncHandle, name: &str) -> Result<ResyncResult, SyncError> {
    let n = name.to_string();
    let (hive_id, hive_name, peers) = h
        .store()
        .write(move |tx| -> Result<_, SyncError> {
            let g = group_by_ref(tx, &n)?;
            sync_state::reset_received(tx, &g.hive_id)?;
            let peers: Vec<String> = sync_state::links_for_hive(tx, &g.hive_id)?
                .into_iter()
                .filter(|l| l.state != sync_state::LinkState::Left)
                .map(|l| l.peer_id)
                .collect();
            Ok((g.hive_id, g.hive_name, peers))
        })
        .await?;
    for p in &peers {
        h.request_pull(p, &hive_id);
    }
    Ok(ResyncResult {
        hive: hive_name,
        peers,
    })
}

/// What `POST /api/v1/sync/groups/:name/compact` answers.
#[derive(Debug, Clone, Serialize)]
pub struct CompactResult {
    pub hive: String,
    #[serde(flatten)]
    pub compacted: openhive_store::compact::Compacted,
    /// The low-water mark of the hive's live consumers when it ran (`null`: nothing reads
    /// the hive, so the point is the head).
    pub low_water_mark: Option<i64>,
}

/// Compacts the log of one group's hive up to `point(retention)` in one write transaction
/// (see `openhive_store::compact`).
async fn compact_hive(
    h: &SyncHandle,
    name: &str,
    retention_ms: Option<i64>,
) -> Result<CompactResult, SyncError> {
    let n = name.to_string();
    let span = tracing::info_span!("sync.compact", hive = %name, seq = tracing::field::Empty);
    let r = h
        .store()
        .write(move |tx| -> Result<_, SyncError> {
            let g = group_by_ref(tx, &n)?;
            let now = now_ms();
            let lwm = openhive_store::consumers::low_water_mark(tx, &g.hive_id)?;
            let point = openhive_store::compact::point(tx, &g.hive_id, retention_ms, now)?;
            let compacted = openhive_store::compact::compact(tx, &g.hive_id, point, now)?;
            Ok(CompactResult {
                hive: g.hive_name,
                compacted,
                low_water_mark: lwm,
            })
        })
        .await?;
    span.record("seq", r.compacted.compacted_through_seq);
    span.in_scope(|| {
        tracing::info!(
            dropped = r.compacted.dropped,
            snapshot_size = r.compacted.snapshot_size,
            "compacted the hive's log"
        );
    });
    Ok(r)
}

/// `POST /api/v1/sync/groups/:name/compact`: compacts now, up to the low-water mark of the
/// hive's live consumers whatever the retention. Idempotent.
pub async fn compact(h: &SyncHandle, name: &str) -> Result<CompactResult, SyncError> {
    compact_hive(h, name, None).await
}

/// The scheduled compaction: every group, up to its low-water mark and below the events
/// younger than `retention_ms`. One transaction per group; a failing group is logged and
/// the others still run. Returns the number of events dropped.
pub async fn compact_all(h: &SyncHandle, retention_ms: i64) -> Result<i64, SyncError> {
    let groups = h.store().read(sync_state::list_groups).await?;
    let mut dropped = 0;
    for g in groups {
        match compact_hive(h, &g.hive_name, Some(retention_ms)).await {
            Ok(r) => dropped += r.compacted.dropped,
            Err(e) => {
                tracing::warn!(hive = %g.hive_name, error = %e, "scheduled compaction failed")
            }
        }
    }
    Ok(dropped)
}

/// `GET /api/v1/sync/groups/:name/events?limit&before`: the local log, newest first.
pub async fn group_events(
    h: &SyncHandle,
    name: &str,
    limit: Option<i64>,
    before: Option<i64>,
) -> Result<EventsView, SyncError> {
    let n = name.to_string();
    let limit = limit.unwrap_or(50).clamp(1, 500);
    let before = before.unwrap_or(i64::MAX);
    h.store()
        .read(move |c| -> Result<_, SyncError> {
            let g = group_by_ref(c, &n)?;
            let rows = log::page_desc(c, &g.hive_id, before, limit)?;
            let next_before = if rows.len() as i64 == limit {
                rows.last().map(|e| e.seq)
            } else {
                None
            };
            Ok(EventsView {
                data: rows
                    .into_iter()
                    .map(|e| WireEvent {
                        seq: e.seq,
                        event: e.event,
                    })
                    .collect(),
                next_before,
                limit,
            })
        })
        .await
}

fn validate_peer_input(
    name: Option<&str>,
    endpoint: Option<&str>,
    hives: Option<&[String]>,
) -> Result<(), SyncError> {
    if let Some(n) = name {
        validate::display_name(n, "name").map_err(bad)?;
    }
    if let Some(e) = endpoint {
        validate::url(e).map_err(|_| bad("sync_endpoint must be an http(s) URL"))?;
    }
    for hv in hives.unwrap_or_default() {
        validate::hive_name(hv).map_err(|e| bad(format!("shared_hives: {hv:?}: {e}")))?;
    }
    Ok(())
}

/// Creates the group (and an empty log if the hive is not here yet) and the link for each
/// shared hive. Returns true if anything changed.
fn share_hives(
    tx: &openhive_store::Conn<'_>,
    peer_id: &str,
    hives_: &[String],
    me: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let mut changed = false;
    for name in hives_ {
        let hive_id = hives::ensure_log(tx, name)?;
        changed |= sync_state::ensure_group(tx, &hive_id, name, me, now)?;
        changed |=
            sync_state::ensure_link(tx, peer_id, &hive_id, sync_state::LinkState::Handshaking)?;
    }
    Ok(changed)
}

/// Adds (or updates, by endpoint) a configured peer and starts handshakes for its hives.
pub async fn add_peer_with_source(
    h: &SyncHandle,
    input: AddPeer,
    source: sync_state::PeerSource,
) -> Result<(PeerView, bool), SyncError> {
    validate_peer_input(
        Some(&input.name),
        Some(&input.sync_endpoint),
        Some(&input.shared_hives),
    )?;
    let endpoint = normalize_endpoint(&input.sync_endpoint);
    if endpoint == normalize_endpoint(&h.me().sync_endpoint) {
        return Err(bad("sync_endpoint is this instance's own endpoint"));
    }
    let me = h.me().instance_id.clone();
    let out = h
        .store()
        .write(move |tx| -> Result<_, SyncError> {
            let now = now_ms();
            let (peer, created) =
                sync_state::upsert_configured_peer(tx, input.name.trim(), &endpoint, source, now)?;
            share_hives(tx, &peer.id, &input.shared_hives, &me, now)?;
            let p = sync_state::peer_by_id(tx, &peer.id)?.ok_or_else(peer_not_found)?;
            Ok((peer_view(tx, p)?, created))
        })
        .await?;
    h.reconcile().await?;
    tracing::info!(peer = %out.0.sync_endpoint, hives = ?out.0.shared_hives, "sync peer configured");
    Ok(out)
}

/// `POST /api/v1/sync/peers`.
pub async fn add_peer(h: &SyncHandle, input: AddPeer) -> Result<(PeerView, bool), SyncError> {
    add_peer_with_source(h, input, sync_state::PeerSource::Api).await
}

/// Seeds `[[sync.peers]]` from the configuration at start.
pub async fn seed_config_peers(h: &SyncHandle, peers: Vec<AddPeer>) -> Result<(), SyncError> {
    for p in peers {
        add_peer_with_source(h, p, sync_state::PeerSource::Config).await?;
    }
    Ok(())
}

/// `GET /api/v1/sync/peers`: a page of peers by id ([`crate::paging`]); each shows at most
/// [`LISTED_GROUPS_PER_PEER`] of its groups.
pub async fn list_peers(h: &SyncHandle, q: &ListQuery) -> Result<Page<PeerView>, SyncError> {
    let f = q.check()?;
    Ok(h.store()
        .read(move |c| -> Result<_, StoreError> {
            paging::scan(
                &f,
                |after, n| sync_state::peers_after(c, after, n),
                |p| p.id.clone(),
                |p| {
                    if !f.peer_matches(&p.id, &p.name, p.instance_id.as_deref()) {
                        return Ok(None);
                    }
                    let v = peer_view_of(c, p, LISTED_GROUPS_PER_PEER, f.hive.as_deref())?;
                    if f.hive.is_some() && v.groups.is_empty() {
                        return Ok(None);
                    }
                    let keep = match f.state {
                        None => true,
                        Some(StateFilter::Peer(s)) => v.status == s,
                        Some(StateFilter::Link(s)) => v.groups.iter().any(|g| g.state == s),
                        Some(StateFilter::Lagging) => {
                            paging::lagging(0, v.status.as_str())
                                || v.groups.iter().any(|g| g.lag > 0)
                        }
                    };
                    Ok(keep.then_some(v))
                },
            )
        })
        .await
        .map(|mut page: Page<PeerView>| {
            page.data = page.data.into_iter().map(|v| with_progress(h, v)).collect();
            page
        })?)
}

pub async fn get_peer(h: &SyncHandle, id: &str) -> Result<PeerView, SyncError> {
    let id = id.to_string();
    h.store()
        .read(move |c| -> Result<_, SyncError> {
            let p = sync_state::peer_by_id(c, &id)?.ok_or_else(peer_not_found)?;
            Ok(peer_view(c, p)?)
        })
        .await
        .map(|v| with_progress(h, v))
}

/// `PATCH /api/v1/sync/peers/:id`: rename, move, or change the shared hives (removed hives
/// are left: the peer is told, the link stops).
pub async fn update_peer(
    h: &SyncHandle,
    id: &str,
    patch: PatchPeer,
) -> Result<PeerView, SyncError> {
    validate_peer_input(
        patch.name.as_deref(),
        patch.sync_endpoint.as_deref(),
        patch.shared_hives.as_deref(),
    )?;
    let id = id.to_string();
    let me = h.me().instance_id.clone();
    let (view, leaves) = h
        .store()
        .write(move |tx| -> Result<_, SyncError> {
            let now = now_ms();
            let p = sync_state::peer_by_id(tx, &id)?.ok_or_else(peer_not_found)?;
            let endpoint = patch.sync_endpoint.as_deref().map(normalize_endpoint);
            if let Some(e) = &endpoint
                && let Some(other) = sync_state::peer_by_endpoint(tx, e)?
                && other.id != p.id
            {
                return Err(SyncError::Conflict(
                    "another peer already uses this sync_endpoint".into(),
                ));
            }
            sync_state::update_peer(
                tx,
                &p.id,
                patch.name.as_deref().map(str::trim),
                endpoint.as_deref(),
                now,
            )?;
            let mut leaves = Vec::new();
            if let Some(want) = &patch.shared_hives {
                for l in sync_state::links_for_peer(tx, &p.id)? {
                    if l.state != sync_state::LinkState::Left && !want.contains(&l.hive_name) {
                        if let Some(t) = &l.token_out {
                            leaves.push((p.endpoint.clone(), t.clone(), l.hive_name.clone()));
                        }
                        sync_state::mark_left(tx, &p.id, &l.hive_id)?;
                    }
                }
                share_hives(tx, &p.id, want, &me, now)?;
            }
            let p = sync_state::peer_by_id(tx, &p.id)?.ok_or_else(peer_not_found)?;
            Ok((peer_view(tx, p)?, leaves))
        })
        .await?;
    send_leaves(h, leaves);
    h.reconcile().await?;
    Ok(view)
}

/// `DELETE /api/v1/sync/peers/:id`: tells the peer we left each group, then forgets it.
pub async fn delete_peer(h: &SyncHandle, id: &str) -> Result<(), SyncError> {
    let id = id.to_string();
    h.inner.news.forget(&id);
    h.inner.gossip.forget(&id);
    let leaves = h
        .store()
        .write(move |tx| -> Result<_, SyncError> {
            let p = sync_state::peer_by_id(tx, &id)?.ok_or_else(peer_not_found)?;
            let mut leaves = Vec::new();
            for l in sync_state::links_for_peer(tx, &p.id)? {
                if let Some(t) = l.token_out
                    && l.state != sync_state::LinkState::Left
                {
                    leaves.push((p.endpoint.clone(), t, l.hive_name));
                }
            }
            sync_state::delete_peer(tx, &p.id)?;
            Ok(leaves)
        })
        .await?;
    send_leaves(h, leaves);
    h.reconcile().await
}

/// What [`rotate_token`] did.
#[derive(Debug, Clone, Serialize)]
pub struct TokenRotation {
    pub peer_id: String,
    /// Tokens we issued to the peer that now expire at `expires_at`.
    pub retired_tokens: usize,
    pub grace_secs: u64,
    pub expires_at: String,
    /// Links handshaking again (each handshake exchanges a fresh token in both directions).
    pub rehandshaking: usize,
}

/// `POST /api/v1/sync/peers/:id/rotate-token`: every token we issued to the peer (all its
/// hives) stops working after `grace`; each live link forgets the token it presents to the
/// peer and handshakes again at once, which hands the peer a fresh token for us and us a
/// fresh one for it. Tokens are never shown: they only travel in handshakes.
pub async fn rotate_token(
    h: &SyncHandle,
    id: &str,
    grace: std::time::Duration,
) -> Result<TokenRotation, SyncError> {
    let id = id.to_string();
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let (peer_id, retired, expires_at, links) = h
        .store()
        .write(move |tx| -> Result<_, SyncError> {
            let now = now_ms();
            let p = sync_state::peer_by_id(tx, &id)?.ok_or_else(peer_not_found)?;
            let expires_at = now.saturating_add(grace_ms);
            let retired = sync_state::retire_tokens(tx, &p.id, expires_at)?;
            let mut links = Vec::new();
            for l in sync_state::links_for_peer(tx, &p.id)? {
                if l.state == sync_state::LinkState::Left {
                    continue;
                }
                sync_state::set_token_out(tx, &p.id, &l.hive_id, None)?;
                sync_state::set_link_state(
                    tx,
                    &p.id,
                    &l.hive_id,
                    sync_state::LinkState::Handshaking,
                )?;
                links.push(l.hive_id);
            }
            Ok((p.id, retired, expires_at, links))
        })
        .await?;
    tracing::info!(peer = %peer_id, retired, grace_secs = grace.as_secs(), links = links.len(), "rotating sync tokens");
    for hive in &links {
        h.schedule_link(&peer_id, hive).await?;
        h.wake_link(&peer_id, hive);
    }
    Ok(TokenRotation {
        peer_id,
        retired_tokens: retired,
        grace_secs: grace.as_secs(),
        expires_at: rfc3339(expires_at),
        rehandshaking: links.len(),
    })
}

/// `POST /api/v1/sync/peers/:id/test`: one heartbeat round trip (authenticated if we hold a
/// token for the peer, otherwise a reachability probe that expects 401).
pub async fn test_peer(h: &SyncHandle, id: &str) -> Result<TestResult, SyncError> {
    let id = id.to_string();
    let (peer, link) = h
        .store()
        .read(move |c| -> Result<_, SyncError> {
            let p = sync_state::peer_by_id(c, &id)?.ok_or_else(peer_not_found)?;
            let l = sync_state::links_for_peer(c, &p.id)?
                .into_iter()
                .find(|l| l.token_out.is_some() && l.state != sync_state::LinkState::Left);
            Ok((p, l))
        })
        .await?;
    let token = link.as_ref().and_then(|l| l.token_out.clone());
    let body = Heartbeat {
        instance_id: h.me().instance_id.clone(),
        sync_endpoint: Some(h.me().sync_endpoint.clone()),
        groups: Default::default(),
        known_peers: Vec::new(),
        introduction: None,
    };
    let start = Instant::now();
    let res = h
        .client()
        .heartbeat(&peer.endpoint, token.as_deref(), &body)
        .await;
    let latency_ms = start.elapsed().as_millis() as u64;
    Ok(match res {
        Ok(resp) => {
            let pid = peer.id.clone();
            // The answer may carry gossip the peer now counts as told: take it.
            let gossip = (peer.instance_id.as_deref() == Some(resp.instance_id.as_str()))
                .then(|| (resp.known_peers.clone(), resp.introduction.clone()));
            let (h2, from) = (h.clone(), resp.instance_id.clone());
            let learned = h
                .store()
                .write(move |tx| -> Result<_, StoreError> {
                    let now = now_ms();
                    sync_state::record_contact(tx, &pid, now)?;
                    match gossip {
                        Some((known, intro)) => crate::gossip::incoming_from(
                            &h2,
                            tx,
                            &pid,
                            &from,
                            &known,
                            intro.as_ref(),
                            now,
                        )
                        .map(Some),
                        None => Ok(None),
                    }
                })
                .await?;
            if let Some(l) = learned {
                crate::gossip::after_commit(h, l).await;
            }
            TestResult {
                reachable: true,
                authenticated: true,
                latency_ms,
                peer_instance_id: Some(resp.instance_id),
                status: Some(200),
                error: None,
            }
        }
        Err(crate::client::ClientError::Status {
            status, message, ..
        }) => TestResult {
            reachable: true,
            authenticated: false,
            latency_ms,
            peer_instance_id: peer.instance_id,
            status: Some(status),
            error: Some(message),
        },
        Err(e) => TestResult {
            reachable: false,
            authenticated: false,
            latency_ms,
            peer_instance_id: peer.instance_id,
            status: None,
            error: Some(e.to_string()),
        },
    })
}

/// `GET /api/v1/sync/status`: instance-wide figures and a page of groups with their links
/// ([`crate::paging`]: by hive name; `peer` and `state` filter the links, and drop groups
/// left with none).
pub async fn status(h: &SyncHandle, q: &ListQuery) -> Result<StatusView, SyncError> {
    let f = q.check()?;
    let groups = h
        .store()
        .read(move |c| -> Result<_, StoreError> {
            let out = paging::scan(
                &f,
                |after, n| sync_state::groups_after(c, after, n),
                |g| g.hive_name.clone(),
                |g| filtered_group_status(c, &f, &g),
            )?;
            let counters = Counters {
                events_rejected: db::counter_get(c, ingest::REJECTED)?,
                events_ignored: db::counter_get(c, ingest::IGNORED)?,
                pending_dropped: db::counter_get(c, ingest::PENDING_DROPPED)?,
                rate_limited: db::counter_get(c, sync_state::RATE_LIMITED)?,
                key_conflicts: db::counter_get(c, sync_state::KEY_CONFLICTS)?,
                waiting_refused: db::counter_get(c, ingest::WAITING_REFUSED)?,
            };
            let (pending, unverified) = ingest::waiting_counts(c)?;
            let limits = c.context().waiting;
            let waiting = WaitingView {
                pending,
                unverified,
                max_per_peer: limits.per_peer,
                max_total: limits.total,
            };
            Ok((out, counters, waiting))
        })
        .await?;
    Ok(StatusView {
        enabled: h.enabled(),
        instance_id: h.me().instance_id.clone(),
        sync_endpoint: h.me().sync_endpoint.clone(),
        next_cursor: groups.0.next_cursor,
        has_more: groups.0.has_more,
        groups: {
            let mut gs = groups.0.data;
            gs.iter_mut().for_each(|g| group_with_progress(h, g));
            gs
        },
        counters: groups.1,
        waiting: groups.2,
        storage: StorageStatus {
            engine: h.store().engine().as_str(),
            write_queue: h.store().queue_stats(),
        },
        links: h.scheduler_stats(),
    })
}

/// The `sync` section of `GET /api/v1/federation/status`.
pub async fn federation_section(h: &SyncHandle) -> Result<FederationSync, SyncError> {
    let s = status(
        h,
        &ListQuery {
            limit: Some(paging::MAX_LIMIT),
            ..ListQuery::default()
        },
    )
    .await?;
    Ok(FederationSync {
        groups: s
            .groups
            .into_iter()
            .map(|g| FedGroup {
                name: g.hive,
                local_seq: g.local_seq,
                peers: g
                    .peers
                    .into_iter()
                    .filter(|p| p.state != sync_state::LinkState::Left.as_str())
                    .map(|p| FedPeer {
                        name: p.name,
                        instance_id: p.instance_id,
                        status: p.status,
                        lag: p.lag,
                        last_sync: p.last_sync_at,
                    })
                    .collect(),
            })
            .collect(),
    })
}

/// Every configured or learned peer, oldest first (the legacy `/api/v1/federation/peers`
/// and the counts of `/api/v1/federation/status`).
pub async fn all_peers(h: &SyncHandle) -> Result<Vec<PeerView>, SyncError> {
    Ok(h.store()
        .read(move |c| -> Result<_, StoreError> {
            sync_state::list_peers(c)?
                .into_iter()
                .map(|p| peer_view_of(c, p, LISTED_GROUPS_PER_PEER, None))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?
        .into_iter()
        .map(|v| with_progress(h, v))
        .collect())
}
