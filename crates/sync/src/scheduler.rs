//! The link scheduler: a fixed pool of workers runs the steps of every (peer, hive) link.
//!
//! A link costs nothing while idle: it is a small slot in a map, not a task or a timer. It
//! runs when something happens to it:
//! - a commit grew its hive's log ([`Scheduler::wake`]),
//! - the peer is ahead or handshook with us ([`Scheduler::request_pull`]),
//! - a retry or a pause it asked for is due (the timer task),
//! - its previous step reported more work (it goes to the back of the queue, so one busy
//!   link cannot starve the others).
//!
//! Invariants:
//! - a link is in the ready queue at most once and runs on at most one worker at a time
//!   (`Queued` and `Running` are exclusive phases of its slot), so its steps never overlap;
//! - a wake-up that arrives while the link runs is not lost: the link runs again after;
//! - the number of tasks is `workers + 1` whatever the number of links; blocking threads are
//!   bounded by the store's pools.

use crate::backoff::Backoff;
use crate::engine::LinkKey;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Waits that end this close together end together: the links of a batched call that
/// failed set their backoff one after the other, microseconds apart, with the same delay
/// (`crate::backoff::SharedDelays`); queued by one timer tick, they are batched again.
const COALESCE: Duration = Duration::from_millis(20);

/// The per-link state the worker carries through a step (kept in the slot in between).
#[derive(Debug, Clone, Default)]
pub(crate) struct Job {
    /// Pull from the peer at the next step (asked by the peer or the heartbeat).
    pub pull: bool,
    /// Pull before pushing (set at start, after a handshake, after a failed pull).
    pub need_pull: bool,
    pub backoff: Backoff,
}

/// What the worker decided after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// More work is ready: queue again (at the back).
    Again,
    /// Nothing to do until woken.
    Idle,
    /// Run again after this pause (backpressure, a lease held elsewhere); wake-ups wait.
    Pause(Duration),
    /// Run again after this backoff; a pull request (the peer is back) ends it early.
    Backoff(Duration),
    /// The link is gone or left: forget it.
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Queued,
    Running,
    Waiting { until: Instant, backoff: bool },
}

#[derive(Debug)]
struct Slot {
    phase: Phase,
    job: Job,
    /// Woken while running: run again when the step ends.
    woken: bool,
    /// Removed while running: forget when the step ends.
    removed: bool,
}

#[derive(Default)]
struct State {
    slots: HashMap<LinkKey, Slot>,
    /// The peers with a slot, by hive (what a commit to a hive wakes).
    by_hive: HashMap<String, Vec<String>>,
    ready: VecDeque<LinkKey>,
    timers: BinaryHeap<Reverse<(Instant, LinkKey)>>,
}

/// Figures for status and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SchedulerStats {
    pub links: usize,
    pub queued: usize,
    pub running: usize,
    pub waiting: usize,
}

#[derive(Default)]
pub(crate) struct Scheduler {
    state: Mutex<State>,
    /// Signalled when the ready queue grows.
    ready: Notify,
    /// Signalled when a timer earlier than the current first one is set.
    timer: Notify,
}

impl Scheduler {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enqueue(&self, st: &mut State, key: LinkKey) {
        st.ready.push_back(key);
        self.ready.notify_one();
    }

    /// Adds a link (queued at once, to pull and then push); no-op if it is known. Returns
    /// true if the link is new.
    pub fn insert(&self, key: LinkKey) -> bool {
        let mut st = self.lock();
        if st.slots.contains_key(&key) {
            return false;
        }
        st.by_hive
            .entry(key.1.clone())
            .or_default()
            .push(key.0.clone());
        st.slots.insert(
            key.clone(),
            Slot {
                phase: Phase::Queued,
                job: Job {
                    need_pull: true,
                    ..Job::default()
                },
                woken: false,
                removed: false,
            },
        );
        self.enqueue(&mut st, key);
        true
    }

    /// Forgets a link (after its running step, if one runs).
    #[cfg(test)]
    pub fn remove(&self, key: &LinkKey) {
        let mut st = self.lock();
        Self::forget(&mut st, key);
    }

    fn forget(st: &mut State, key: &LinkKey) {
        let Some(slot) = st.slots.get_mut(key) else {
            return;
        };
        if slot.phase == Phase::Running {
            slot.removed = true;
            return;
        }
        st.slots.remove(key);
        if let Some(peers) = st.by_hive.get_mut(&key.1) {
            peers.retain(|p| *p != key.0);
            if peers.is_empty() {
                st.by_hive.remove(&key.1);
            }
        }
    }

    /// Keeps only the links `keep` says yes to.
    pub fn retain(&self, mut keep: impl FnMut(&LinkKey) -> bool) {
        let mut st = self.lock();
        let gone: Vec<LinkKey> = st.slots.keys().filter(|k| !keep(k)).cloned().collect();
        for k in &gone {
            Self::forget(&mut st, k);
        }
    }

    /// Makes the scheduled links exactly `live`: forgets the others and adds the missing
    /// ones, queued in key order (peer, then hive id), whatever the order of `live`. Returns
    /// whether any link went, and the links added.
    ///
    /// Key order matters for a pairing: the links queued now are batched in queue order,
    /// and a batch of neighbouring hive ids writes neighbouring rows. Queued in a hash set's
    /// order, every batched step of a pairing wrote rows spread over every index, and the
    /// pages written per hive grew with the number of hives (docs/PERFORMANCE.md, "Seventh
    /// round").
    pub fn reconcile(&self, mut live: Vec<LinkKey>) -> (bool, Vec<LinkKey>) {
        live.sort_unstable();
        live.dedup();
        let before = self.stats().links;
        self.retain(|k| live.binary_search(k).is_ok());
        let removed = self.stats().links != before;
        let added = live
            .into_iter()
            .filter(|k| self.insert(k.clone()))
            .collect();
        (removed, added)
    }

    /// The peers with a link to `hive_id`.
    pub fn peers_of(&self, hive_id: &str) -> Vec<String> {
        self.lock()
            .by_hive
            .get(hive_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Wakes every link of a hive (its log grew).
    #[cfg(test)]
    pub fn wake_hive(&self, hive_id: &str) {
        for p in self.peers_of(hive_id) {
            self.wake(&(p, hive_id.to_string()));
        }
    }

    #[cfg(test)]
    pub fn contains(&self, key: &LinkKey) -> bool {
        self.lock().slots.get(key).is_some_and(|s| !s.removed)
    }

    /// Something for the link to do (a commit to push): run it unless it waits or runs.
    pub fn wake(&self, key: &LinkKey) {
        let mut st = self.lock();
        let Some(slot) = st.slots.get_mut(key) else {
            return;
        };
        match slot.phase {
            Phase::Idle => {
                slot.phase = Phase::Queued;
                self.enqueue(&mut st, key.clone());
            }
            Phase::Running => slot.woken = true,
            Phase::Queued | Phase::Waiting { .. } => {}
        }
    }

    /// What the link paused for is over (not a backoff): run it now; as [`Scheduler::wake`]
    /// otherwise.
    pub fn resume(&self, key: &LinkKey) {
        let mut st = self.lock();
        let Some(slot) = st.slots.get_mut(key) else {
            return;
        };
        match slot.phase {
            Phase::Idle | Phase::Waiting { backoff: false, .. } => {
                slot.phase = Phase::Queued;
                self.enqueue(&mut st, key.clone());
            }
            Phase::Running => slot.woken = true,
            Phase::Queued | Phase::Waiting { backoff: true, .. } => {}
        }
    }

    /// The link should pull from its peer: run it now, even if it was backing off (the peer
    /// is evidently reachable again).
    pub fn request_pull(&self, key: &LinkKey) {
        self.run_now(key, true);
    }

    /// The peer just completed a handshake with this link and has nothing for it to pull
    /// (its log is empty): run it now, even if it was backing off (its own handshake may
    /// have failed moments before, while the peer did not know us yet), without a pull.
    /// The pull a new or failed link still owes (`need_pull`) is dropped too: what the peer
    /// logs from now on reaches us by its push. (A running step keeps the job it returns:
    /// at worst one pull of an empty log.) Pairing 10,000 hives with a peer that did not
    /// know us yet, that pull was one page per hive, every one empty.
    pub fn handshook(&self, key: &LinkKey) {
        if let Some(slot) = self.lock().slots.get_mut(key)
            && slot.phase != Phase::Running
        {
            slot.job.need_pull = false;
        }
        self.run_now(key, false);
    }

    fn run_now(&self, key: &LinkKey, pull: bool) {
        let mut st = self.lock();
        let Some(slot) = st.slots.get_mut(key) else {
            return;
        };
        slot.job.pull |= pull;
        match slot.phase {
            Phase::Idle | Phase::Waiting { backoff: true, .. } => {
                slot.phase = Phase::Queued;
                self.enqueue(&mut st, key.clone());
            }
            Phase::Running => slot.woken = true,
            Phase::Queued | Phase::Waiting { backoff: false, .. } => {}
        }
    }

    /// The next link to run, with its job; `None` once `shutdown` is signalled.
    pub async fn next(&self, shutdown: &mut watch::Receiver<bool>) -> Option<(LinkKey, Job)> {
        loop {
            if *shutdown.borrow() {
                return None;
            }
            {
                let mut st = self.lock();
                while let Some(key) = st.ready.pop_front() {
                    let Some(slot) = st.slots.get_mut(&key) else {
                        continue;
                    };
                    if slot.phase != Phase::Queued {
                        continue;
                    }
                    slot.phase = Phase::Running;
                    slot.woken = false;
                    let job = slot.job.clone();
                    slot.job.pull = false;
                    // Leave a wake-up for another worker if more is queued.
                    if !st.ready.is_empty() {
                        self.ready.notify_one();
                    }
                    return Some((key, job));
                }
            }
            tokio::select! {
                _ = self.ready.notified() => {}
                r = shutdown.wait_for(|v| *v) => { let _ = r; return None; }
            }
        }
    }

    /// Claims up to `max` more queued links of `peer` (they become running, exactly as if
    /// [`Scheduler::next`] had handed them out), so one step can cover many hives of one peer
    /// in one request. Each must be given back with [`Scheduler::done`].
    pub fn claim_siblings(&self, peer: &str, max: usize) -> Vec<(LinkKey, Job)> {
        let mut st = self.lock();
        let mut out = Vec::new();
        if max == 0 || st.ready.is_empty() {
            return out;
        }
        let mut kept = VecDeque::with_capacity(st.ready.len());
        let ready = std::mem::take(&mut st.ready);
        for key in ready {
            if out.len() < max && key.0 == peer {
                if let Some(slot) = st.slots.get_mut(&key)
                    && slot.phase == Phase::Queued
                {
                    slot.phase = Phase::Running;
                    slot.woken = false;
                    let job = slot.job.clone();
                    slot.job.pull = false;
                    out.push((key, job));
                    continue;
                }
                // A stale entry (the link runs, waits or is gone): drop it, as `next` would.
                continue;
            }
            kept.push_back(key);
        }
        st.ready = kept;
        out
    }

    /// The step of `key` ended with `job` (its updated state) and decided `after`.
    pub fn done(&self, key: LinkKey, job: Job, after: After) {
        let mut st = self.lock();
        let Some(slot) = st.slots.get_mut(&key) else {
            return;
        };
        if slot.removed || after == After::Stop {
            slot.removed = false;
            slot.phase = Phase::Idle;
            Self::forget(&mut st, &key);
            return;
        }
        // A pull asked for while running stays asked for.
        let pull = slot.job.pull || job.pull;
        slot.job = Job { pull, ..job };
        let woken = std::mem::take(&mut slot.woken);
        let wait = |d: Duration, backoff: bool| Phase::Waiting {
            until: Instant::now() + d,
            backoff,
        };
        slot.phase = match after {
            After::Again => Phase::Queued,
            After::Idle if woken || pull => Phase::Queued,
            After::Idle => Phase::Idle,
            After::Backoff(d) if pull => {
                // The peer asked for a pull while we failed: it is back, try at once.
                let _ = d;
                Phase::Queued
            }
            After::Backoff(d) => wait(d, true),
            After::Pause(d) => wait(d, false),
            After::Stop => return,
        };
        match slot.phase {
            Phase::Queued => self.enqueue(&mut st, key),
            Phase::Waiting { until, .. } => {
                let earliest = st.timers.peek().is_none_or(|Reverse((t, _))| until < *t);
                st.timers.push(Reverse((until, key)));
                if earliest {
                    self.timer.notify_one();
                }
            }
            Phase::Idle | Phase::Running => {}
        }
    }

    /// Queues the links whose wait is over, or ends within [`COALESCE`]; returns when the
    /// next one is due.
    fn fire_due(&self, now: Instant) -> Option<Instant> {
        let mut st = self.lock();
        loop {
            let Reverse((at, _)) = st.timers.peek()?;
            if *at > now + COALESCE {
                return Some(*at);
            }
            let Reverse((at, key)) = st.timers.pop()?;
            if let Some(slot) = st.slots.get_mut(&key)
                && matches!(slot.phase, Phase::Waiting { until, .. } if until == at)
            {
                slot.phase = Phase::Queued;
                self.enqueue(&mut st, key);
            }
        }
    }

    /// The timer task: queues links when their pause or backoff ends.
    pub async fn run_timers(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let next = self.fire_due(Instant::now());
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.timer.notified() => {}
                r = shutdown.wait_for(|v| *v) => { let _ = r; return; }
            }
        }
    }

    pub fn stats(&self) -> SchedulerStats {
        let st = self.lock();
        let mut s = SchedulerStats {
            links: 0,
            queued: 0,
            running: 0,
            waiting: 0,
        };
        for slot in st.slots.values().filter(|s| !s.removed) {
            s.links += 1;
            match slot.phase {
                Phase::Queued => s.queued += 1,
                Phase::Running => s.running += 1,
                Phase::Waiting { .. } => s.waiting += 1,
                Phase::Idle => {}
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn key(p: &str, h: &str) -> LinkKey {
        (p.to_string(), h.to_string())
    }

    async fn take(s: &Scheduler) -> Option<(LinkKey, Job)> {
        let (_tx, mut rx) = watch::channel(false);
        tokio::time::timeout(Duration::from_millis(50), s.next(&mut rx))
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn a_new_link_runs_once_and_pulls_first() {
        let s = Scheduler::default();
        s.insert(key("p", "h"));
        s.insert(key("p", "h"));
        let (k, job) = take(&s).await.unwrap();
        assert_eq!(k, key("p", "h"));
        assert!(job.need_pull);
        // Inserted twice, queued once.
        assert!(take(&s).await.is_none());
    }

    /// A link backing off after its own handshake failed (the peer did not know us yet)
    /// runs at once when the peer's handshake completes, and without the pull a new link
    /// owes: the peer's log was empty.
    #[tokio::test]
    async fn a_peer_handshake_with_an_empty_log_ends_the_backoff_without_a_pull() {
        let s = Scheduler::default();
        s.insert(key("p", "h"));
        let (k, job) = take(&s).await.unwrap();
        assert!(job.need_pull);
        s.done(k, job, After::Backoff(Duration::from_secs(3600)));
        assert!(take(&s).await.is_none());
        s.handshook(&key("p", "h"));
        let (k, job) = take(&s).await.unwrap();
        assert_eq!(k, key("p", "h"));
        assert!(!job.need_pull && !job.pull, "{job:?}");
        // A pull asked for meanwhile is still made.
        s.done(k, job, After::Backoff(Duration::from_secs(3600)));
        s.request_pull(&key("p", "h"));
        s.handshook(&key("p", "h"));
        let (_, job) = take(&s).await.unwrap();
        assert!(job.pull);
    }

    #[tokio::test]
    async fn a_paused_link_ignores_wakes_but_resumes_and_a_backoff_does_not() {
        let s = Scheduler::default();
        s.insert(key("p", "a"));
        s.insert(key("p", "b"));
        let (ka, ja) = take(&s).await.unwrap();
        let (kb, jb) = take(&s).await.unwrap();
        s.done(ka, ja, After::Pause(Duration::from_secs(3600)));
        s.done(kb, jb, After::Backoff(Duration::from_secs(3600)));
        s.wake(&key("p", "a"));
        assert!(take(&s).await.is_none(), "a commit does not end a pause");
        s.resume(&key("p", "b"));
        assert!(take(&s).await.is_none(), "resume does not cut a backoff");
        s.resume(&key("p", "a"));
        let (k, _) = take(&s).await.unwrap();
        assert_eq!(k, key("p", "a"));
    }

    /// Links added together are queued in key order, whatever order they come in; a
    /// reconcile forgets links that are no longer live and does not queue known ones again.
    #[tokio::test]
    async fn reconciled_links_are_queued_in_key_order() {
        let s = Scheduler::default();
        let mut live: Vec<LinkKey> = (0..64).map(|i| key("p", &format!("h{i:03}"))).collect();
        live.push(key("a", "h999"));
        // A shuffled order, as a hash set would give.
        live.sort_by_key(|k| (k.1.bytes().map(u32::from).sum::<u32>() * 7919) % 101);
        let (removed, added) = s.reconcile(live.clone());
        assert!(!removed);
        assert_eq!(added.len(), 65);
        let mut queued = Vec::new();
        while let Some((k, _)) = take(&s).await {
            queued.push(k);
        }
        let mut sorted = live.clone();
        sorted.sort();
        assert_eq!(queued, sorted);
        // Again with one link gone: nothing is added or queued, the gone link is forgotten.
        live.retain(|k| k.0 != "a");
        let (removed, added) = s.reconcile(live);
        assert!(removed);
        assert!(added.is_empty());
        assert_eq!(s.stats().links, 64);
    }

    #[tokio::test]
    async fn siblings_of_one_peer_are_claimed_together_and_run_once() {
        let s = Scheduler::default();
        for h in ["a", "b", "c", "d"] {
            s.insert(key("p", h));
        }
        s.insert(key("q", "a"));
        let (k, job) = take(&s).await.unwrap();
        assert_eq!(k, key("p", "a"));
        let more = s.claim_siblings("p", 2);
        let hives: Vec<&str> = more.iter().map(|(k, _)| k.1.as_str()).collect();
        assert_eq!(hives, ["b", "c"]);
        assert!(more.iter().all(|(_, j)| j.need_pull));
        assert_eq!(s.stats().running, 3);
        // Claimed links are running: a wake-up marks them, it does not queue them twice.
        s.wake(&key("p", "b"));
        // What is left runs in queue order: p/d, then q/a.
        let (k2, j2) = take(&s).await.unwrap();
        assert_eq!(k2, key("p", "d"));
        assert!(s.claim_siblings("p", 10).is_empty());
        let (k3, j3) = take(&s).await.unwrap();
        assert_eq!(k3, key("q", "a"));
        assert!(take(&s).await.is_none());
        for (k, j) in more {
            s.done(k, j, After::Idle);
        }
        s.done(k, job, After::Idle);
        s.done(k2, j2, After::Idle);
        s.done(k3, j3, After::Idle);
        // p/b was woken while claimed: it runs again; nothing else does.
        let (k4, _) = take(&s).await.unwrap();
        assert_eq!(k4, key("p", "b"));
        assert!(take(&s).await.is_none());
    }

    #[tokio::test]
    async fn a_wake_while_running_runs_it_again_after() {
        let s = Scheduler::default();
        s.insert(key("p", "h"));
        let (k, job) = take(&s).await.unwrap();
        s.wake(&k);
        s.wake(&k);
        // Not runnable twice at once.
        assert!(take(&s).await.is_none());
        s.done(k.clone(), job, After::Idle);
        let (k2, job) = take(&s).await.unwrap();
        assert_eq!(k2, k);
        s.done(k2, job, After::Idle);
        // Idle and not woken: stays idle.
        assert!(take(&s).await.is_none());
        assert_eq!(s.stats().links, 1);
    }

    #[tokio::test]
    async fn a_wake_does_not_cut_a_pause_but_a_pull_request_cuts_a_backoff() {
        let s = Scheduler::default();
        let (a, b) = (key("p", "a"), key("p", "b"));
        s.insert(a.clone());
        s.insert(b.clone());
        let (ka, ja) = take(&s).await.unwrap();
        let (kb, jb) = take(&s).await.unwrap();
        s.done(ka, ja, After::Pause(Duration::from_secs(60)));
        s.done(kb, jb, After::Backoff(Duration::from_secs(60)));
        s.wake_hive("a");
        s.wake_hive("b");
        assert!(take(&s).await.is_none());
        s.request_pull(&a);
        s.request_pull(&b);
        let (k, job) = take(&s).await.unwrap();
        assert_eq!(k, b);
        assert!(job.pull);
        assert!(take(&s).await.is_none());
        assert_eq!(s.stats().waiting, 1);
    }

    /// A handshake the peer completed with a link in backoff (its own handshake failed a
    /// moment before) runs the link at once, without a pull. Before, with no pull to ask
    /// for, the link kept its backoff, and its pushes waited for it (propagation p99 of
    /// 0.5-0.9 s right after pairing).
    #[tokio::test]
    async fn a_handshake_from_the_peer_ends_a_backoff_without_a_pull() {
        let s = Scheduler::default();
        let a = key("p", "a");
        s.insert(a.clone());
        let (k, j) = take(&s).await.unwrap();
        s.done(k, j, After::Backoff(Duration::from_secs(60)));
        assert!(take(&s).await.is_none());
        s.handshook(&a);
        let (k, job) = take(&s).await.unwrap();
        assert_eq!(k, a);
        assert!(!job.pull);
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_timer_queues_the_link() {
        let s = std::sync::Arc::new(Scheduler::default());
        let (tx, rx) = watch::channel(false);
        let timers = tokio::spawn({
            let s = s.clone();
            async move { s.run_timers(rx).await }
        });
        s.insert(key("p", "h"));
        let (k, job) = take(&s).await.unwrap();
        s.done(k.clone(), job, After::Backoff(Duration::from_secs(5)));
        assert!(take(&s).await.is_none());
        tokio::time::sleep(Duration::from_secs(6)).await;
        let (k2, _) = take(&s).await.unwrap();
        assert_eq!(k2, k);
        tx.send(true).unwrap();
        timers.await.unwrap();
    }

    /// Links whose backoffs end a few milliseconds apart (set one after the other by one
    /// failed batched call) are queued by one timer tick, so they are claimed as one batch.
    #[tokio::test(start_paused = true)]
    async fn waits_ending_milliseconds_apart_are_queued_together() {
        let s = std::sync::Arc::new(Scheduler::default());
        s.insert(key("p", "a"));
        s.insert(key("p", "b"));
        let (ka, ja) = take(&s).await.unwrap();
        let (kb, jb) = take(&s).await.unwrap();
        s.done(ka, ja, After::Backoff(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_millis(5)).await;
        s.done(kb, jb, After::Backoff(Duration::from_secs(5)));
        // The first wait is over, the second ends 4 ms later: both are queued now.
        tokio::time::advance(Duration::from_millis(4996)).await;
        s.fire_due(Instant::now());
        let batch = s.claim_siblings("p", 8);
        assert_eq!(batch.len(), 2, "{batch:?}");
    }

    #[tokio::test]
    async fn removal_while_running_takes_effect_when_the_step_ends() {
        let s = Scheduler::default();
        s.insert(key("p", "h"));
        let (k, job) = take(&s).await.unwrap();
        s.remove(&k);
        assert!(!s.contains(&k));
        s.done(k.clone(), job, After::Again);
        assert!(take(&s).await.is_none());
        assert_eq!(s.stats().links, 0);
        s.wake_hive("h");
        assert!(take(&s).await.is_none());
        // A link removed while queued is skipped by the workers.
        s.insert(k.clone());
        s.remove(&k);
        assert!(take(&s).await.is_none());
    }
}
