//! Exponential backoff with jitter: `initial` doubling up to `max`, retried forever.
//!
//! The delay before attempt `n` (n = consecutive failures, starting at 1) is drawn
//! uniformly from `[d/2, d]` where `d = min(initial * 2^(n-1), max)` ("equal jitter"), so
//! peers that failed together do not retry in lockstep, and the delay never exceeds `max`.

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
