//! Latency samples and their percentiles.
//!
//! **Invariant:** percentiles are nearest-rank over every sample taken (no sampling, no
//! histogram buckets), so p99 of 100,000 calls is the 99,000th smallest latency exactly.

use std::time::Duration;

/// Per-call latencies, in nanoseconds.
#[derive(Default)]
pub struct Samples {
    nanos: Vec<u64>,
}

/// What a set of samples reduces to, in microseconds.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub count: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

// === impl Samples ===

impl Samples {
    pub fn with_capacity(n: usize) -> Self {
        Samples {
            nanos: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, d: Duration) {
        self.nanos
            .push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: Samples) {
        self.nanos.extend(other.nanos);
    }

    pub fn summary(mut self) -> Summary {
        self.nanos.sort_unstable();
        let n = self.nanos.len();
        let us = |ns: u64| ns as f64 / 1_000.0;
        let sum: u128 = self.nanos.iter().map(|&x| u128::from(x)).sum();
        Summary {
            count: n,
            p50_us: us(nearest_rank(&self.nanos, 50.0)),
            p99_us: us(nearest_rank(&self.nanos, 99.0)),
            max_us: us(self.nanos.last().copied().unwrap_or(0)),
            mean_us: if n == 0 {
                0.0
            } else {
                sum as f64 / n as f64 / 1_000.0
            },
        }
    }
}

/// The smallest sample with at least `p` percent of the samples at or below it.
fn nearest_rank(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len()) - 1)
        .copied()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        for i in 1..=100u64 {
            s.push(Duration::from_micros(i));
        }
        let m = s.summary();
        assert_eq!(
            (m.p50_us, m.p99_us, m.max_us, m.count),
            (50.0, 99.0, 100.0, 100)
        );
        assert_eq!(Samples::default().summary().p99_us, 0.0);
    }
}
