//! Per-peer token bucket, counted in events.
//!
//! The bucket holds at most `burst` tokens and refills at `rate` per second. A batch of `n`
//! events is admitted if `n` tokens are available, or if the bucket is full (so a batch
//! larger than `burst` still gets through, leaving the bucket in debt). Otherwise the caller
//! gets the number of whole seconds after which the batch would be admitted (`Retry-After`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_sec: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(rate_per_sec.max(1)),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes `n` tokens, or returns how long to wait (rounded up to whole seconds, ≥ 1 s).
    pub fn try_take(&mut self, n: u32, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        let n = f64::from(n);
        if self.tokens >= n || self.tokens >= self.burst {
            self.tokens -= n;
            return Ok(());
        }
        let need = n.min(self.burst) - self.tokens;
        let secs = (need / self.rate).ceil().max(1.0);
        Err(Duration::from_secs(secs as u64))
    }
}

/// Buckets per key (peer id), created on first use.
#[derive(Debug)]
pub struct RateLimiter {
    rate: u32,
    burst: u32,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl RateLimiter {
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        RateLimiter {
            rate: rate_per_sec,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(&self, key: &str, n: u32) -> Result<(), Duration> {
        let now = tokio::time::Instant::now().into_std();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_string())
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst, now))
            .try_take(n, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 20, t0);
        assert!(b.try_take(15, t0).is_ok());
        // 5 left; 10 needs 5 more at 10/s → 1 s (rounded up).
        assert_eq!(b.try_take(10, t0), Err(Duration::from_secs(1)));
        assert!(b.try_take(10, t0 + Duration::from_millis(500)).is_ok());
        assert!(b.try_take(1, t0 + Duration::from_millis(500)).is_err());
        // Refill caps at burst.
        assert!(b.try_take(20, t0 + Duration::from_secs(100)).is_ok());
        assert!(b.try_take(1, t0 + Duration::from_secs(100)).is_err());
    }

    #[test]
    fn oversized_batches_pass_when_full_and_leave_debt() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 20, t0);
        assert!(b.try_take(50, t0).is_ok());
        // Debt of 30: a full bucket again needs (20 + 30) / 10 = 5 s.
        assert_eq!(b.try_take(20, t0), Err(Duration::from_secs(5)));
        assert!(b.try_take(20, t0 + Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn limiter_is_per_key() {
        let l = RateLimiter::new(1, 5);
        assert!(l.check("a", 5).is_ok());
        assert!(l.check("a", 5).is_err());
        assert!(l.check("b", 5).is_ok());
    }
}
