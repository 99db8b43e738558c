//! Latency histograms (HdrHistogram, microseconds) and counts per operation kind, kept per
//! client without locking and merged at the end of a phase.

use crate::cli::OpKind;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Largest latency recorded exactly (longer ones are clamped): one hour.
const MAX_MICROS: u64 = 3_600_000_000;

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("creating a histogram: {0}")]
    Create(#[from] hdrhistogram::CreationError),
    #[error("merging histograms: {0}")]
    Add(#[from] hdrhistogram::AdditionError),
    #[error("no statistics for this operation kind")]
    NoKind,
}

/// A histogram of durations in microseconds, 3 significant digits (32-bit counters: a
/// client records far fewer than 4 billion operations in one bucket).
pub fn histogram() -> Result<Histogram<u32>, StatsError> {
    Ok(Histogram::new_with_bounds(1, MAX_MICROS, 3)?)
}

/// Records `d` (at least 1 µs, at most an hour).
pub fn record(h: &mut Histogram<u32>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(MAX_MICROS).max(1);
    h.saturating_record(us);
}

/// Counts and latencies of one operation kind.
#[derive(Debug, Clone)]
pub struct KindStats {
    /// Latency of successful operations.
    pub hist: Histogram<u32>,
    pub ok: u64,
    /// Failed operations by HTTP status ("503") or transport error ("timeout", "io", ...).
    pub errors: BTreeMap<String, u64>,
}

impl KindStats {
    fn new() -> Result<Self, StatsError> {
        Ok(KindStats {
            hist: histogram()?,
            ok: 0,
            errors: BTreeMap::new(),
        })
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn merge(&mut self, other: &KindStats) -> Result<(), StatsError> {
        self.hist.add(&other.hist)?;
        self.ok += other.ok;
        for (k, n) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += n;
        }
        Ok(())
    }
}

/// Per-kind statistics of one client or of a whole phase. A kind's histogram is made on
/// its first operation (kinds outside the mix cost nothing).
#[derive(Debug, Clone)]
pub struct Stats {
    kinds: Vec<Option<KindStats>>,
}

impl Stats {
    pub fn new() -> Result<Self, StatsError> {
        Ok(Stats {
            kinds: OpKind::ALL.iter().map(|_| None).collect(),
        })
    }

    fn kind_mut(&mut self, kind: OpKind) -> Result<&mut KindStats, StatsError> {
        let slot = self.kinds.get_mut(kind.index()).ok_or(StatsError::NoKind)?;
        if slot.is_none() {
            *slot = Some(KindStats::new()?);
        }
        slot.as_mut().ok_or(StatsError::NoKind)
    }

    /// The statistics of `kind`, if it ran.
    pub fn kind(&self, kind: OpKind) -> Option<&KindStats> {
        self.kinds.get(kind.index())?.as_ref()
    }

    pub fn ok(&mut self, kind: OpKind, latency: Duration) -> Result<(), StatsError> {
        let k = self.kind_mut(kind)?;
        record(&mut k.hist, latency);
        k.ok += 1;
        Ok(())
    }

    pub fn error(&mut self, kind: OpKind, key: &str) -> Result<(), StatsError> {
        let k = self.kind_mut(kind)?;
        match k.errors.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                k.errors.insert(key.to_string(), 1);
            }
        }
        Ok(())
    }

    pub fn merge(&mut self, other: &Stats) -> Result<(), StatsError> {
        for kind in OpKind::ALL {
            if let Some(b) = other.kind(kind) {
                self.kind_mut(kind)?.merge(b)?;
            }
        }
        Ok(())
    }

    /// All kinds together.
    pub fn total(&self) -> Result<KindStats, StatsError> {
        let mut t = KindStats::new()?;
        for k in self.kinds.iter().flatten() {
            t.merge(k)?;
        }
        Ok(t)
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Latency {
    /// `None` for an empty histogram.
    pub fn of(h: &Histogram<u32>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        Some(Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: (h.mean()).round() / 1000.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_counts_errors_and_latencies() {
        let mut a = Stats::new().unwrap();
        let mut b = Stats::new().unwrap();
        for i in 1..=100u64 {
            a.ok(OpKind::Post, Duration::from_micros(i * 10)).unwrap();
        }
        b.ok(OpKind::Post, Duration::from_secs(2)).unwrap();
        b.error(OpKind::Vote, "503").unwrap();
        b.error(OpKind::Vote, "503").unwrap();
        b.error(OpKind::Vote, "timeout").unwrap();
        a.merge(&b).unwrap();
        let post = a.kind(OpKind::Post).unwrap();
        assert_eq!(post.ok, 101);
        let l = Latency::of(&post.hist).unwrap();
        assert!((0.49..=0.52).contains(&l.p50), "{l:?}");
        assert!((1999.0..=2002.0).contains(&l.max), "{l:?}");
        let vote = a.kind(OpKind::Vote).unwrap();
        assert_eq!(vote.errors["503"], 2);
        assert_eq!(vote.error_count(), 3);
        let t = a.total().unwrap();
        assert_eq!((t.ok, t.error_count()), (101, 3));
        assert!(a.kind(OpKind::Read).is_none());
    }

    #[test]
    fn extreme_durations_are_clamped() {
        let mut h = histogram().unwrap();
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(10 * 3600));
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
    }
}
