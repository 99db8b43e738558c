//! Exponential backoff with jitter: `initial` doubling up to `max`, retried forever.
//!
//! The delay before attempt `n` (n = consecutive failures, starting at 1) is drawn
//! uniformly from `[d/2, d]` where `d = min(initial * 2^(n-1), max)` ("equal jitter"), so
//! peers that failed together do not retry in lockstep, and the delay never exceeds `max`.
//!
//! Links of one peer that failed in one batched call are the exception: they share one
//! draw per failure count ([`SharedDelays`]), so that their retry is one batched call again.

use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl BackoffPolicy {
    /// The un-jittered ceiling for the `failures`-th consecutive failure (≥ 1).
    pub fn ceiling(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        let d = self.initial.saturating_mul(1u32 << exp);
        d.min(self.max)
    }

    /// A jittered delay for the `failures`-th consecutive failure.
    pub fn delay(&self, failures: u32) -> Duration {
        let ceil = self.ceiling(failures);
        let half = ceil / 2;
        let span = ceil.saturating_sub(half).as_millis() as u64;
        let jitter = if span == 0 {
            0
        } else {
            rand::random::<u64>() % (span + 1)
        };
        half + Duration::from_millis(jitter)
    }
}

/// Consecutive-failure counter of one worker.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Records a failure; returns how long to wait before the next attempt.
    pub fn fail(&mut self, policy: &BackoffPolicy) -> Duration {
        self.failures = self.failures.saturating_add(1);
        policy.delay(self.failures)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// One jittered delay per consecutive-failure count, drawn for the first link that needs it
/// and given to every other link that failed in the same call with the same count: links
/// that failed together retry together, as one batched call. (Drawn per link, the 10,000
/// links of a pairing that failed in 40 calls of 256, because the peer did not know us yet,
/// retried in over a hundred calls of a few links each.)
#[derive(Debug, Default)]
pub struct SharedDelays {
    drawn: HashMap<u32, Duration>,
}

impl SharedDelays {
    /// Records a failure of `backoff`'s link; returns how long to wait before the next
    /// attempt, the same as for the other links of this call with the same count.
    pub fn fail(&mut self, backoff: &mut Backoff, policy: &BackoffPolicy) -> Duration {
        backoff.failures = backoff.failures.saturating_add(1);
        let n = backoff.failures;
        *self.drawn.entry(n).or_insert_with(|| policy.delay(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let p = BackoffPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_secs(1));
        assert_eq!(p.ceiling(2), Duration::from_secs(2));
        assert_eq!(p.ceiling(6), Duration::from_secs(32));
        assert_eq!(p.ceiling(7), Duration::from_secs(60));
        assert_eq!(p.ceiling(1000), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        let p = BackoffPolicy::default();
        for n in 1..20 {
            let c = p.ceiling(n);
            for _ in 0..50 {
                let d = p.delay(n);
                assert!(
                    d >= c / 2 && d <= c,
                    "{n}: {d:?} not in [{:?}, {c:?}]",
                    c / 2
                );
            }
        }
    }

    #[test]
    fn links_failing_together_share_one_delay_per_failure_count() {
        let p = BackoffPolicy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(600),
        };
        // Independent draws from [5 s, 10 s] in ms: 64 of them all equal is impossible
        // but for a shared draw.
        let mut shared = SharedDelays::default();
        let mut first = vec![Backoff::default(); 64];
        let delays: Vec<Duration> = first.iter_mut().map(|b| shared.fail(b, &p)).collect();
        assert!(delays.iter().all(|d| *d == delays[0]), "{delays:?}");
        assert!(first.iter().all(|b| b.failures() == 1));
        // A link on its second failure in the same call gets the second count's draw.
        let mut again = Backoff::default();
        again.fail(&p);
        let d2 = shared.fail(&mut again, &p);
        assert_eq!(again.failures(), 2);
        assert!(d2 >= p.ceiling(2) / 2 && d2 <= p.ceiling(2), "{d2:?}");
        // Another call draws again.
        let mut next = SharedDelays::default();
        let others: Vec<Duration> = (0..8)
            .map(|_| next.fail(&mut Backoff::default(), &p))
            .collect();
        assert!(others.iter().all(|d| *d == others[0]));
    }

    #[test]
    fn counter_resets() {
        let p = BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
        };
        let mut b = Backoff::default();
        for _ in 0..5 {
            assert!(b.fail(&p) <= Duration::from_millis(400));
        }
        assert_eq!(b.failures(), 5);
        b.reset();
        assert_eq!(b.failures(), 0);
        assert!(b.fail(&p) <= Duration::from_millis(100));
    }
}
