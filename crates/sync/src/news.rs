//! What each peer has not heard yet: per peer, the shared hives whose head or roster changed
//! since the last heartbeat message that reached it (our heartbeat, or our answer to its).
//!
//! This is what makes a heartbeat cost nothing per idle hive: a heartbeat carries only the
//! hives in the peer's news (taken when the message is built, given back if it fails), and a
//! hive enters the news when something happens to it: a commit grew its log, a roster key
//! was learned, a link to it was created. Once an hour a peer gets everything again (a
//! refresh that bounds the effect of an answer lost after it was sent).
//!
//! Invariants:
//! - news is only ever a superset of what changed: marking too much costs a few bytes,
//!   marking too little would only delay the heartbeat's safety net (pushes and pulls do not
//!   depend on it);
//! - taking the news and giving it back on failure are the only ways it shrinks.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How often a peer gets every shared hive again, changed or not.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(3600);

/// What a heartbeat message to one peer should carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Due {
    /// Every hive shared with the peer.
    All,
    /// Only these hives (ids); may be empty (the heartbeat is then a bare contact).
    Some(HashSet<String>),
}

impl Due {
    /// `self` and `hives` too.
    pub fn including(self, hives: impl IntoIterator<Item = String>) -> Due {
        match self {
            Due::All => Due::All,
            Due::Some(mut h) => {
                h.extend(hives);
                Due::Some(h)
            }
        }
    }
}

#[derive(Debug, Default)]
struct PeerNews {
    hives: HashSet<String>,
    /// When the peer last got everything (`None`: never, since we started).
    refreshed: Option<Instant>,
}

#[derive(Debug, Default)]
pub(crate) struct News {
    peers: Mutex<HashMap<String, PeerNews>>,
}

impl News {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PeerNews>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Something changed in `hive_id`, shared with each of `peers`.
    pub fn mark<'a>(&self, hive_id: &str, peers: impl IntoIterator<Item = &'a String>) {
        let mut all = self.lock();
        for p in peers {
            all.entry(p.clone())
                .or_default()
                .hives
                .insert(hive_id.to_string());
        }
    }

    /// Takes what the next message to `peer_id` must carry.
    pub fn take(&self, peer_id: &str) -> Due {
        let mut all = self.lock();
        let n = all.entry(peer_id.to_string()).or_default();
        if n.refreshed.is_none_or(|t| t.elapsed() >= REFRESH_EVERY) {
            n.refreshed = Some(Instant::now());
            n.hives.clear();
            return Due::All;
        }
        Due::Some(std::mem::take(&mut n.hives))
    }

    /// The message carrying `due` did not reach `peer_id`: it is news again.
    pub fn give_back(&self, peer_id: &str, due: Due) {
        let mut all = self.lock();
        let n = all.entry(peer_id.to_string()).or_default();
        match due {
            Due::All => n.refreshed = None,
            Due::Some(h) => n.hives.extend(h),
        }
    }

    /// Forgets a peer (deleted).
    pub fn forget(&self, peer_id: &str) {
        self.lock().remove(peer_id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn first_everything_then_only_what_changed_and_failures_give_it_back() {
        let news = News::default();
        let p = "p".to_string();
        assert_eq!(news.take("p"), Due::All);
        assert_eq!(news.take("p"), Due::Some(HashSet::new()));
        news.mark("h1", [&p]);
        news.mark("h2", [&p]);
        news.mark("h1", [&p]);
        let due = news.take("p");
        assert_eq!(
            due,
            Due::Some(["h1".to_string(), "h2".to_string()].into_iter().collect())
        );
        news.give_back("p", due);
        news.mark("h3", [&p]);
        let Due::Some(h) = news.take("p") else {
            panic!("expected a delta")
        };
        assert_eq!(h.len(), 3);
        // A failed full refresh is due again.
        news.forget("p");
        let all = news.take("p");
        assert_eq!(all, Due::All);
        news.give_back("p", all);
        assert_eq!(news.take("p"), Due::All);
    }
}
