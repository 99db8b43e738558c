//! What each peer has not heard yet: per peer, the shared hives whose head or roster changed
//! since the last heartbeat message that reached it (our heartbeat, or our answer to its).
//!
//! This is what makes a heartbeat cost nothing per idle hive: a heartbeat carries only the
//! hives in the peer's news (taken when the message is built, given back if it fails), and a
//! hive enters the news when something happens to it: a commit grew its log, a roster key
//! was learned from another peer, the engine started (every live link: what the peer heard
//! before is unknown). A link created at run time is not news: its handshake told the peer
//! our head and roster, so a heartbeat landing in the middle of a pairing carries only what
//! changed since. Once an hour a peer gets everything again (a refresh that bounds the
//! effect of an answer lost after it was sent), counted from its first message.
//!
//! Invariants:
//! - news is only ever a superset of what changed that the peer did not hear otherwise (a
//!   handshake with it carries our head and roster): marking too much costs a few bytes,
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
    /// When the peer last got everything, or its first message (`None`: no message yet).
    refreshed: Option<Instant>,
    /// A message carrying everything did not get through: the next one does.
    all_due: bool,
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
        let Some(refreshed) = n.refreshed else {
            // The first message: what was marked (at start, every live link).
            n.refreshed = Some(Instant::now());
            return Due::Some(std::mem::take(&mut n.hives));
        };
        if n.all_due || refreshed.elapsed() >= REFRESH_EVERY {
            n.refreshed = Some(Instant::now());
            n.all_due = false;
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
            Due::All => n.all_due = true,
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

    #[tokio::test(start_paused = true)]
    async fn only_what_changed_failures_give_it_back_and_everything_hourly() {
        let news = News::default();
        let p = "p".to_string();
        // The first message carries what was marked (not every shared hive).
        news.mark("h0", [&p]);
        assert_eq!(news.take("p"), Due::Some(["h0".to_string()].into()));
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
        // Everything again an hour after the first message; a failed full refresh is due
        // again at once.
        tokio::time::advance(REFRESH_EVERY).await;
        let all = news.take("p");
        assert_eq!(all, Due::All);
        assert_eq!(news.take("p"), Due::Some(HashSet::new()));
        news.give_back("p", all);
        assert_eq!(news.take("p"), Due::All);
        assert_eq!(news.take("p"), Due::Some(HashSet::new()));
        // A forgotten peer starts again from its news.
        news.forget("p");
        assert_eq!(news.take("p"), Due::Some(HashSet::new()));
    }
}
