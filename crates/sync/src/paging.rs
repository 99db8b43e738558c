//! Pages and filters of the admin listings (`/api/v1/sync/status`, `/sync/groups`,
//! `/sync/peers`): `?limit=&cursor=&hive=&peer=&state=`.
//!
//! A listing is ordered by a key (hive name for groups and status, peer id for peers); the
//! cursor is the last key of the page, and the next page starts after it, so a page costs
//! what it shows, not what the instance holds. Filters are applied while scanning in key
//! order, chunk by chunk, until the page is full.
//!
//! `state` matches a link state (`handshaking`, `backfilling`, `active`, `left`), a peer
//! status (`pending`, `active`, `error`, `unreachable`), or `lagging`: a link whose outbox is
//! behind its log (`lag > 0`) or whose peer is in `error` or `unreachable`.

use crate::error::SyncError;
use crate::protocol::PeerLinkStatus;
use openhive_store::sync_state::{LinkState, PeerStatus};
use serde::{Deserialize, Serialize};

/// Rows of a page when `limit` is not given (a status page of 5 peers per group stays well
/// under 64 KiB).
pub const DEFAULT_LIMIT: usize = 25;
/// The most rows one page may ask for.
pub const MAX_LIMIT: usize = 500;

/// The query of an admin listing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only this hive (by name).
    pub hive: Option<String>,
    /// Only this peer (by id, name or instance id).
    pub peer: Option<String>,
    /// Only links or peers in this state (see the module documentation).
    pub state: Option<String>,
}

/// A validated [`ListQuery`].
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub limit: usize,
    pub after: String,
    pub hive: Option<String>,
    pub peer: Option<String>,
    pub state: Option<StateFilter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateFilter {
    Link(LinkState),
    Peer(PeerStatus),
    Lagging,
}

impl ListQuery {
    pub(crate) fn check(&self) -> Result<Filter, SyncError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(SyncError::BadRequest(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        let state = match self.state.as_deref() {
            None => None,
            Some("lagging") => Some(StateFilter::Lagging),
            Some(s) => Some(
                LinkState::parse(s)
                    .map(StateFilter::Link)
                    .or_else(|_| PeerStatus::parse(s).map(StateFilter::Peer))
                    .map_err(|_| {
                        SyncError::BadRequest(format!(
                            "unknown state {s:?}: expected a link state (handshaking, \
                             backfilling, active, left), a peer status (pending, active, error, \
                             unreachable) or lagging"
                        ))
                    })?,
            ),
        };
        Ok(Filter {
            limit,
            after: self.cursor.clone().unwrap_or_default(),
            hive: self.hive.clone(),
            peer: self.peer.clone(),
            state,
        })
    }
}

impl Filter {
    /// Whether a hive (by name) is the one asked for.
    pub fn hive_matches(&self, name: &str) -> bool {
        self.hive.as_deref().is_none_or(|h| h == name)
    }

    /// Whether a peer (by its id, name and instance id) is the one asked for.
    pub fn peer_matches(&self, id: &str, name: &str, instance_id: Option<&str>) -> bool {
        self.peer
            .as_deref()
            .is_none_or(|p| p == id || p == name || Some(p) == instance_id)
    }

    /// Whether a link, seen in a status report, passes the peer and state filters.
    pub fn link_matches(&self, l: &PeerLinkStatus) -> bool {
        self.peer_matches(&l.peer_id, &l.name, l.instance_id.as_deref())
            && match self.state {
                None => true,
                Some(StateFilter::Link(s)) => l.state == s.as_str(),
                Some(StateFilter::Peer(s)) => l.status == s.as_str(),
                Some(StateFilter::Lagging) => lagging(l.lag, &l.status),
            }
    }

    /// Whether any filter narrows the links of a group.
    pub fn narrows_links(&self) -> bool {
        self.peer.is_some() || self.state.is_some()
    }
}

/// A link is lagging when its outbox is behind, or its peer is failing or silent.
pub(crate) fn lagging(lag: i64, peer_status: &str) -> bool {
    lag > 0
        || peer_status == PeerStatus::Error.as_str()
        || peer_status == PeerStatus::Unreachable.as_str()
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Give it as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// Fills a page by scanning rows in key order: `fetch(after, n)` returns up to `n` rows
/// after the key `after`, `keep` turns a row into an entry (or drops it), `key` gives a
/// row's key.
pub(crate) fn scan<R, T, E>(
    f: &Filter,
    mut fetch: impl FnMut(&str, usize) -> Result<Vec<R>, E>,
    key: impl Fn(&R) -> String,
    mut keep: impl FnMut(R) -> Result<Option<T>, E>,
) -> Result<Page<T>, E> {
    let chunk = (f.limit + 1).max(64);
    let mut after = f.after.clone();
    let mut data = Vec::new();
    let mut last_key: Option<String> = None;
    loop {
        let rows = fetch(&after, chunk)?;
        let exhausted = rows.len() < chunk;
        for r in rows {
            let k = key(&r);
            after.clone_from(&k);
            if let Some(t) = keep(r)? {
                if data.len() == f.limit {
                    // One more exists: the page is full.
                    return Ok(Page {
                        data,
                        next_cursor: last_key,
                        has_more: true,
                    });
                }
                data.push(t);
                last_key = Some(k);
            }
        }
        if exhausted {
            return Ok(Page {
                data,
                next_cursor: None,
                has_more: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn filter(limit: usize, after: &str) -> Filter {
        ListQuery {
            limit: Some(limit),
            cursor: Some(after.into()),
            ..ListQuery::default()
        }
        .check()
        .unwrap()
    }

    /// Rows are the numbers 1..=n as zero-padded keys; `keep` keeps the even ones.
    fn page(f: &Filter, n: u32) -> Page<u32> {
        let rows: Vec<u32> = (1..=n).collect();
        scan(
            f,
            |after, k| -> Result<Vec<u32>, ()> {
                Ok(rows
                    .iter()
                    .copied()
                    .filter(|r| format!("{r:05}").as_str() > after)
                    .take(k)
                    .collect())
            },
            |r| format!("{r:05}"),
            |r| Ok((r % 2 == 0).then_some(r)),
        )
        .unwrap()
    }

    #[test]
    fn pages_walk_every_kept_row_once_in_order() {
        let mut seen = Vec::new();
        let mut f = filter(7, "");
        loop {
            let p = page(&f, 300);
            assert!(p.data.len() <= 7);
            seen.extend(p.data.iter().copied());
            match p.next_cursor {
                Some(c) => {
                    assert!(p.has_more);
                    f.after = c;
                }
                None => {
                    assert!(!p.has_more);
                    break;
                }
            }
        }
        assert_eq!(seen, (1..=150).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn an_exact_last_page_has_no_cursor() {
        let p = page(&filter(5, ""), 10);
        assert_eq!(p.data, vec![2, 4, 6, 8, 10]);
        assert!(!p.has_more);
        assert_eq!(p.next_cursor, None);
    }

    #[test]
    fn bad_limits_and_states_are_refused() {
        for q in [
            ListQuery {
                limit: Some(0),
                ..ListQuery::default()
            },
            ListQuery {
                limit: Some(MAX_LIMIT + 1),
                ..ListQuery::default()
            },
            ListQuery {
                state: Some("sleepy".into()),
                ..ListQuery::default()
            },
        ] {
            assert!(matches!(q.check(), Err(SyncError::BadRequest(_))), "{q:?}");
        }
        let f = ListQuery {
            state: Some("unreachable".into()),
            ..ListQuery::default()
        }
        .check()
        .unwrap();
        assert_eq!(f.state, Some(StateFilter::Peer(PeerStatus::Unreachable)));
    }
}
