//! The pages of one pull, fetched and their signatures checked ahead of the writer.
//!
//! A pull is a chain of pages: each request's `since` is the previous page's `next_seq`, so
//! the fetches are sequential. Checking a page's signatures (one batch per page, the largest
//! part of a backfill's CPU) is not: [`PullAhead`] fetches the next page as soon as the
//! previous one arrived and checks each page on the store's reader threads while the writer
//! ingests earlier ones, up to [`PAGES_AHEAD`] pages ahead. With one page ahead, the wait for
//! each page's round trip left the cores idle between pages.
//!
//! Never trusted on its own: a signature checked ahead counts only if the writer, holding the
//! origin's key chain as of its transaction, assigns the event the same key
//! (`ingest::ingest_remote_checked`). Nothing here writes; the cursor moves only with the
//! writer's commit of the page.

use crate::engine::SyncHandle;
use crate::error::LinkError;
use crate::protocol::EventsPage;
use openhive_core::{Event, PublicKey, RotationStatement};
use openhive_store::{Store, StoreError, ingest};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

/// Pages fetched (and being checked) beyond the one the writer is ingesting. Each holds up
/// to `sync.pull_batch` events (1000 by default): a few MB at most.
pub(crate) const PAGES_AHEAD: usize = 3;

/// Events per reader below which a page is checked on one reader only.
const VERIFY_CHUNK_MIN: usize = 64;

/// A pulled page, its signatures checked ahead of the write ([`preverify_parallel`]).
pub(crate) struct Fetched {
    /// The cursor the page was fetched after: the puller writes it only there.
    pub since: i64,
    pub events: Arc<Vec<Event>>,
    pub verified: Vec<Option<PublicKey>>,
    pub next_seq: i64,
    pub has_more: bool,
    pub head_seq: Option<i64>,
    pub key_rotations: Vec<RotationStatement>,
}

/// Where a pull fetches from.
pub(crate) struct Source {
    pub endpoint: String,
    pub token: String,
    pub hive: String,
}

/// The pages after `since`, in order, until the first one that says it is the last (or an
/// error, which ends the chain). Dropping it stops the fetching.
pub(crate) struct PullAhead {
    pages: mpsc::Receiver<JoinHandle<Result<Fetched, LinkError>>>,
    fetcher: JoinHandle<()>,
}

impl PullAhead {
    pub(crate) fn start(h: &SyncHandle, source: Source, since: i64) -> PullAhead {
        let (tx, pages) = mpsc::channel(PAGES_AHEAD);
        // In the link's span (peer, group): the fetches and checks log under it.
        let fetcher = tokio::spawn(fetch_chain(h.clone(), source, since, tx).in_current_span());
        PullAhead { pages, fetcher }
    }

    /// The next page in order, checked; `None` after the last one.
    pub(crate) async fn next(&mut self) -> Option<Result<Fetched, LinkError>> {
        let checking = self.pages.recv().await?;
        Some(match checking.await {
            Ok(page) => page,
            Err(e) => Err(LinkError::Task(format!("pull task: {e}"))),
        })
    }
}

impl Drop for PullAhead {
    fn drop(&mut self) {
        self.fetcher.abort();
    }
}

async fn fetch_chain(
    h: SyncHandle,
    source: Source,
    mut since: i64,
    pages: mpsc::Sender<JoinHandle<Result<Fetched, LinkError>>>,
) {
    loop {
        let page = fetch(&h, &source, since).await;
        let (checking, more) = match page {
            Ok(page) => {
                let next = page.next_seq.max(since);
                let more = page.has_more && next > since;
                let checking = tokio::spawn(check(h.clone(), since, page).in_current_span());
                since = next;
                (checking, more)
            }
            Err(e) => (tokio::spawn(async move { Err(e) }), false),
        };
        // Waits while PAGES_AHEAD pages are queued; fails once the puller stopped.
        if pages.send(checking).await.is_err() || !more {
            return;
        }
    }
}

async fn fetch(h: &SyncHandle, source: &Source, since: i64) -> Result<EventsPage, LinkError> {
    let _permit = crate::link::permit(h).await?;
    h.client()
        .pull(
            &source.endpoint,
            &source.token,
            &source.hive,
            since,
            h.settings().pull_batch,
        )
        .await
        .map_err(LinkError::from)
}

async fn check(h: SyncHandle, since: i64, page: EventsPage) -> Result<Fetched, LinkError> {
    let EventsPage {
        events,
        next_seq,
        has_more,
        head_seq,
        key_rotations,
    } = page;
    let events: Vec<Event> = events.into_iter().map(|w| w.event).collect();
    let events = Arc::new(events);
    let verified = preverify_parallel(h.store(), &events)
        .await
        .map_err(LinkError::store("verifying pulled events"))?;
    Ok(Fetched {
        since,
        events,
        verified,
        next_seq,
        has_more,
        head_seq,
        key_rotations,
    })
}

/// [`ingest::preverify`] of `events` split into contiguous chunks checked on up to as many
/// reader threads as the machine has cores, at the same time; the answer is aligned with
/// `events`.
pub(crate) async fn preverify_parallel(
    store: &Store,
    events: &Arc<Vec<Event>>,
) -> Result<Vec<Option<PublicKey>>, StoreError> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let parts = (events.len() / VERIFY_CHUNK_MIN).clamp(1, cores.min(8));
    let size = events.len().div_ceil(parts).max(1);
    let reads = (0..parts).map(|i| {
        let events = events.clone();
        let range = (i * size).min(events.len())..((i + 1) * size).min(events.len());
        store.read(move |c| ingest::preverify(c, &events[range]))
    });
    let mut out = Vec::with_capacity(events.len());
    for part in futures::future::join_all(reads).await {
        out.extend(part?);
    }
    Ok(out)
}
