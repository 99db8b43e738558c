//! `GET /metrics` (Prometheus text format 0.0.4) and the middleware counting HTTP requests.
//!
//! Access (`[metrics] access`): `local` (default) lets loopback callers and administrators
//! in, `admin` administrators only (admin key, or an admin agent; in local auth mode a
//! loopback caller without a header is the local admin), `public` anyone. A caller let out
//! gets 403 in the API's error shape (401 if it presented a key that is not valid).
//!
//! Figures (see README, "Metrics"): HTTP requests and latency by route template (axum's
//! [`MatchedPath`], never the raw path) and status class; the writer queue; the store's
//! event counters; per hive (the first [`MAX_HIVE_SERIES`] hives by name) events logged and
//! events waiting; per sync link lag, backfill progress and the `lagging` flag; per peer
//! consecutive failures and seconds since last contact; the link scheduler. Store figures
//! are read in one `Store::read` call per scrape.

use super::auth::AdminCaller;
use super::error::{ApiError, ApiResult};
use crate::app::AppState;
use crate::config::MetricsAccess;
use crate::metrics::{CONTENT_TYPE, Encoder, HttpMetrics, Kind, UNMATCHED_ROUTE};
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use openhive_store::db::TRANSACTION_SECONDS_BUCKETS;
use openhive_store::{Conn, StoreError, ingest, log, sync_state};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Most hives with series of their own (in hive-name order); the rest are only counted in
/// the instance-wide figures. `openhive_metrics_hives_truncated` says when it applies.
pub const MAX_HIVE_SERIES: i64 = 1000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Middleware: times every request and records it under its route template.
pub async fn track(State(m): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    m.observe(
        &route,
        &method,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

async fn metrics(State(state): State<AppState>, req: Request) -> ApiResult<Response> {
    let (mut parts, _) = req.into_parts();
    let loopback = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(a)| a.ip().is_loopback());
    let allowed = match state.config.metrics.access {
        MetricsAccess::Public => true,
        MetricsAccess::Local if loopback => true,
        MetricsAccess::Local | MetricsAccess::Admin => {
            match AdminCaller::from_request_parts(&mut parts, &state).await {
                Ok(_) => true,
                // A key or token was presented and is not valid: the usual 401.
                Err(e @ ApiError::Unauthorized(_)) if presented_credentials(&parts) => {
                    return Err(e);
                }
                Err(_) => false,
            }
        }
    };
    if !allowed {
        return Err(ApiError::Forbidden(match state.config.metrics.access {
            MetricsAccess::Admin => "metrics are available to administrators only".into(),
            _ => "metrics are available to loopback callers and administrators only".into(),
        }));
    }
    let text = render(&state).await?;
    let mut resp = text.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(resp)
}

fn presented_credentials(parts: &axum::http::request::Parts) -> bool {
    parts.headers.contains_key(header::AUTHORIZATION)
        || parts.headers.contains_key(super::auth::ADMIN_KEY_HEADER)
}

/// One sync link's figures (also what the lag alert checks).
#[derive(Debug, Clone)]
pub struct LinkFigures {
    pub peer_id: String,
    pub peer: String,
    pub hive: String,
    pub state: &'static str,
    /// Log head − last seq the peer took.
    pub lag: i64,
    /// Milliseconds since the peer was last heard from (or since it was added).
    pub silent_ms: i64,
    pub last_seq_received: i64,
    pub remote_seq: i64,
    pub events_received: i64,
    pub events_rejected: i64,
    pub lagging: bool,
}

/// The live (not `left`) links with their lag, by the same rule as sync status.
pub fn link_figures(c: &Conn<'_>, now_ms: i64) -> Result<Vec<LinkFigures>, StoreError> {
    let peers: HashMap<String, sync_state::PeerRow> = sync_state::list_peers(c)?
        .into_iter()
        .map(|p| (p.id.clone(), p))
        .collect();
    let mut heads: HashMap<String, i64> = HashMap::new();
    let mut out = Vec::new();
    for l in sync_state::live_links(c)? {
        let Some(p) = peers.get(&l.peer_id) else {
            continue;
        };
        let head = match heads.get(&l.hive_id) {
            Some(h) => *h,
            None => {
                let h = log::head(c, &l.hive_id)?;
                heads.insert(l.hive_id.clone(), h);
                h
            }
        };
        let lag = (head - l.last_seq_sent).max(0);
        let silent_ms = (now_ms - p.last_contact_at.unwrap_or(p.created_at)).max(0);
        out.push(LinkFigures {
            peer_id: p.id.clone(),
            peer: p.name.clone(),
            hive: l.hive_name.clone(),
            state: l.state.as_str(),
            lag,
            silent_ms,
            last_seq_received: l.last_seq_received,
            remote_seq: l.remote_seq,
            events_received: l.events_received,
            events_rejected: l.events_rejected,
            lagging: c.context().lag_alert.lagging(lag, silent_ms),
        });
    }
    Ok(out)
}

struct PeerFigures {
    id: String,
    name: String,
    status: &'static str,
    failure_count: i64,
    silent_ms: i64,
}

struct HiveFigures {
    name: String,
    head: i64,
    pending: i64,
    unverified: i64,
}

/// What one scrape reads from the store.
struct StoreFigures {
    counters: Vec<(&'static str, &'static str, i64)>,
    hives: Vec<HiveFigures>,
    hives_truncated: bool,
    waiting_total: (i64, i64),
    links: Vec<LinkFigures>,
    peers: Vec<PeerFigures>,
}

fn read_store(c: &Conn<'_>) -> Result<StoreFigures, StoreError> {
    use openhive_store::db::counter_get;
    let now = openhive_core::time::now_ms();
    let mut counters = Vec::new();
    for (name, counter, help) in [
        (
            "openhive_events_rejected_total",
            ingest::REJECTED,
            "Peer events refused (bad signature, wrong namespace, invalid payload...).",
        ),
        (
            "openhive_events_ignored_total",
            ingest::IGNORED,
            "Events ignored on ingest (duplicates of logged events and the like).",
        ),
        (
            "openhive_events_waiting_dropped_total",
            ingest::PENDING_DROPPED,
            "Waiting events dropped after waiting too long for a dependency or a key.",
        ),
        (
            "openhive_events_waiting_refused_total",
            ingest::WAITING_REFUSED,
            "Events refused because the queue of events waiting for a key was full.",
        ),
    ] {
        counters.push((name, help, counter_get(c, counter)?));
    }
    let waiting = ingest::waiting_counts_by_hive(c)?;
    let waiting_total = waiting
        .values()
        .fold((0, 0), |(p, u), (a, b)| (p + a, u + b));
    let mut heads = log::heads(c, MAX_HIVE_SERIES + 1)?;
    let hives_truncated = heads.len() as i64 > MAX_HIVE_SERIES;
    heads.truncate(MAX_HIVE_SERIES as usize);
    let hives = heads
        .into_iter()
        .map(|(id, name, head)| {
            let (pending, unverified) = waiting.get(&id).copied().unwrap_or((0, 0));
            HiveFigures {
                name: if name.is_empty() { id } else { name },
                head,
                pending,
                unverified,
            }
        })
        .collect();
    let peers = sync_state::list_peers(c)?
        .into_iter()
        .map(|p| PeerFigures {
            status: p.status.as_str(),
            failure_count: p.failure_count,
            silent_ms: (now - p.last_contact_at.unwrap_or(p.created_at)).max(0),
            id: p.id,
            name: p.name,
        })
        .collect();
    Ok(StoreFigures {
        counters,
        hives,
        hives_truncated,
        waiting_total,
        links: link_figures(c, now)?,
        peers,
    })
}

/// The whole exposition text.
pub async fn render(state: &AppState) -> ApiResult<String> {
    let figures = state.store.read(read_store).await?;
    let queue = state.store.queue_stats();
    let sched = state.sync.scheduler_stats();
    let mut e = Encoder::new();
    state.http_metrics.encode(&mut e);

    let gauge = |e: &mut Encoder, name: &str, help: &str, v: i64| {
        e.family(name, Kind::Gauge, help);
        e.int(name, &[], v);
    };
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    gauge(
        &mut e,
        "openhive_store_write_queue_depth",
        "Writes queued for the writer thread.",
        count(queue.depth),
    );
    gauge(
        &mut e,
        "openhive_store_write_queue_capacity",
        "Most writes that may wait (storage.write_queue).",
        count(queue.capacity),
    );
    e.family(
        "openhive_store_write_refused_total",
        Kind::Counter,
        "API writes refused with 503 because the write queue was full, since start.",
    );
    e.int(
        "openhive_store_write_refused_total",
        &[],
        i64::try_from(queue.refused).unwrap_or(i64::MAX),
    );
    for (name, help, v) in [
        (
            "openhive_store_write_transactions_total",
            "Write transactions the writer committed, since start.",
            queue.transactions,
        ),
        (
            "openhive_store_write_jobs_total",
            "Writes those transactions held (group commit), since start.",
            queue.jobs,
        ),
    ] {
        e.family(name, Kind::Counter, help);
        e.int(name, &[], i64::try_from(v).unwrap_or(i64::MAX));
    }
    write_transaction_seconds(&mut e, &queue);

    gauge(
        &mut e,
        "openhive_realtime_channels",
        "WebSocket channels at least one session subscribed to (changes on others are not \
         rendered).",
        count(state.realtime.channels_wanted()),
    );
    e.family(
        "openhive_realtime_messages_total",
        Kind::Counter,
        "WebSocket messages rendered (each sent to every session on its channel), since start.",
    );
    e.int(
        "openhive_realtime_messages_total",
        &[],
        i64::try_from(state.realtime.rendered()).unwrap_or(i64::MAX),
    );

    e.family(
        "openhive_sync_heartbeat_groups_sent_total",
        Kind::Counter,
        "Hive groups our heartbeats and heartbeat answers carried (only hives that changed \
         since the peer last heard from us), since start.",
    );
    e.int(
        "openhive_sync_heartbeat_groups_sent_total",
        &[],
        i64::try_from(state.sync.heartbeat_groups_sent()).unwrap_or(i64::MAX),
    );

    for (name, help, v) in &figures.counters {
        e.family(name, Kind::Counter, help);
        e.int(name, &[], *v);
    }
    e.family(
        "openhive_events_waiting",
        Kind::Gauge,
        "Events waiting, instance-wide, by what they wait for.",
    );
    e.int(
        "openhive_events_waiting",
        &[("reason", "dependency")],
        figures.waiting_total.0,
    );
    e.int(
        "openhive_events_waiting",
        &[("reason", "key")],
        figures.waiting_total.1,
    );
    gauge(
        &mut e,
        "openhive_metrics_hives_truncated",
        "1 if only the first 1000 hives (by name) have per-hive series.",
        i64::from(figures.hives_truncated),
    );
    e.family(
        "openhive_hive_events_total",
        Kind::Counter,
        "Events in the hive's log (local and received), i.e. its head seq.",
    );
    for h in &figures.hives {
        e.int("openhive_hive_events_total", &[("hive", &h.name)], h.head);
    }
    e.family(
        "openhive_hive_events_waiting",
        Kind::Gauge,
        "Events of the hive waiting, by what they wait for.",
    );
    for h in &figures.hives {
        e.int(
            "openhive_hive_events_waiting",
            &[("hive", &h.name), ("reason", "dependency")],
            h.pending,
        );
        e.int(
            "openhive_hive_events_waiting",
            &[("hive", &h.name), ("reason", "key")],
            h.unverified,
        );
    }

    type LinkValue = fn(&LinkFigures) -> i64;
    let link_families: [(&str, Kind, &str, LinkValue); 7] = [
        (
            "openhive_sync_link_lag_events",
            Kind::Gauge,
            "Events of the hive's log the peer has not taken yet (head - last seq sent).",
            |l| l.lag,
        ),
        (
            "openhive_sync_link_lagging",
            Kind::Gauge,
            "1 if the link passes [sync] lag_alert_events or lag_alert_secs.",
            |l| i64::from(l.lagging),
        ),
        (
            "openhive_sync_link_received_seq",
            Kind::Gauge,
            "Highest seq of the peer's log received (backfill progress).",
            |l| l.last_seq_received,
        ),
        (
            "openhive_sync_link_remote_seq",
            Kind::Gauge,
            "Last known head seq of the peer's log (backfill target).",
            |l| l.remote_seq,
        ),
        (
            "openhive_sync_link_events_received_total",
            Kind::Counter,
            "Events received from the peer on this link.",
            |l| l.events_received,
        ),
        (
            "openhive_sync_link_events_rejected_total",
            Kind::Counter,
            "Events from the peer on this link that were rejected.",
            |l| l.events_rejected,
        ),
        (
            "openhive_sync_link_lag_seconds",
            Kind::Gauge,
            "Seconds since the link's peer was last heard from (or since it was added).",
            |l| l.silent_ms / 1000,
        ),
    ];
    for (name, kind, help, value) in link_families {
        e.family(name, kind, help);
        for l in &figures.links {
            e.int(
                name,
                &[
                    ("peer_id", &l.peer_id),
                    ("peer", &l.peer),
                    ("hive", &l.hive),
                ],
                value(l),
            );
        }
    }
    e.family(
        "openhive_sync_link_state",
        Kind::Gauge,
        "1 for the link's current state (handshaking, backfilling, active).",
    );
    for l in &figures.links {
        e.int(
            "openhive_sync_link_state",
            &[
                ("peer_id", &l.peer_id),
                ("peer", &l.peer),
                ("hive", &l.hive),
                ("state", l.state),
            ],
            1,
        );
    }
    e.family(
        "openhive_sync_peer_failures",
        Kind::Gauge,
        "Consecutive failed handshakes, pushes or pulls with the peer.",
    );
    for p in &figures.peers {
        e.int(
            "openhive_sync_peer_failures",
            &[("peer_id", &p.id), ("peer", &p.name)],
            p.failure_count,
        );
    }
    e.family(
        "openhive_sync_peer_last_contact_age_seconds",
        Kind::Gauge,
        "Seconds since the peer was last heard from (or since it was added).",
    );
    for p in &figures.peers {
        e.int(
            "openhive_sync_peer_last_contact_age_seconds",
            &[("peer_id", &p.id), ("peer", &p.name)],
            p.silent_ms / 1000,
        );
    }
    e.family(
        "openhive_sync_peer_status",
        Kind::Gauge,
        "1 for the peer's current status (pending, active, error, unreachable...).",
    );
    for p in &figures.peers {
        e.int(
            "openhive_sync_peer_status",
            &[("peer_id", &p.id), ("peer", &p.name), ("status", p.status)],
            1,
        );
    }
    for (name, help, v) in [
        (
            "openhive_sync_scheduler_links",
            "Links known to the link scheduler.",
            sched.links,
        ),
        (
            "openhive_sync_scheduler_queued",
            "Links ready to run a step.",
            sched.queued,
        ),
        (
            "openhive_sync_scheduler_running",
            "Link steps running now.",
            sched.running,
        ),
        (
            "openhive_sync_scheduler_waiting",
            "Links waiting for a timer (backoff, retry).",
            sched.waiting,
        ),
    ] {
        gauge(&mut e, name, help, count(v));
    }
    Ok(e.finish())
}

/// The writer's committed transactions by duration, a histogram (its count is the sum of
/// its buckets, so it agrees with itself while transactions commit during the scrape).
fn write_transaction_seconds(e: &mut Encoder, queue: &openhive_store::QueueStats) {
    const NAME: &str = "openhive_store_write_transaction_seconds";
    e.family(
        NAME,
        Kind::Histogram,
        "Write transactions the writer committed, by time from BEGIN to the end of COMMIT, \
         in seconds (the work of a few writes takes under a millisecond: longer ones waited \
         for the CPU or the disk), since start.",
    );
    e.histogram(
        NAME,
        &[],
        &TRANSACTION_SECONDS_BUCKETS,
        &queue.transactions_by_duration,
        queue.transactions_by_duration.iter().sum(),
        queue.transaction_seconds,
    );
}
