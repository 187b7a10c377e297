//! Distributions of durations: the atomic histogram the counters record
//! into, and the [`Distribution`] a snapshot reports.

use std::time::Duration;

use crate::sync::{AtomicU64, Ordering};

/// Bucket `i` holds waits below `2^i` microseconds; the last one the rest.
const BUCKETS: usize = 28;

/// A distribution of durations in power-of-two buckets of microseconds,
/// with exact count, sum, minimum and maximum.
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_nanos: AtomicU64,
    min_nanos: AtomicU64,
    max_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
            min_nanos: AtomicU64::new(u64::MAX),
            max_nanos: AtomicU64::new(0),
        }
    }
}

/// The upper bound of bucket `index`.
fn bucket_bound(index: usize) -> Duration {
    Duration::from_micros(1u64 << index)
}

impl Histogram {
    pub(crate) fn record(&self, value: Duration) {
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let micros = nanos / 1_000;
        let index = if micros == 0 {
            0
        } else {
            (64 - micros.leading_zeros() as usize).min(BUCKETS - 1)
        };
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.min_nanos.fetch_min(nanos, Ordering::Relaxed);
        self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Distribution {
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .collect();
        let count: u64 = buckets.iter().sum();
        if count == 0 {
            return Distribution::default();
        }
        let max = Duration::from_nanos(self.max_nanos.load(Ordering::Relaxed));
        let min = Duration::from_nanos(
            self.min_nanos
                .load(Ordering::Relaxed)
                .min(max.as_nanos() as u64),
        );
        let sum = Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed));
        let percentile = |fraction: f64| {
            let rank = ((count as f64) * fraction).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (index, bucket) in buckets.iter().enumerate() {
                seen += bucket;
                if seen >= rank {
                    return bucket_bound(index).min(max).max(min);
                }
            }
            max
        };
        Distribution {
            count,
            min,
            max,
            mean: sum / u32::try_from(count).unwrap_or(u32::MAX).max(1),
            p50: percentile(0.5),
            p90: percentile(0.9),
            p99: percentile(0.99),
            sum,
            buckets: buckets
                .iter()
                .enumerate()
                .map(|(index, count)| (bucket_bound(index), *count))
                .collect(),
        }
    }
}

/// A summary of durations: exact count, minimum, maximum and mean;
/// percentiles accurate to their power-of-two bucket (an upper bound,
/// never above the maximum).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Distribution {
    /// How many durations were recorded.
    pub count: u64,
    /// The shortest.
    pub min: Duration,
    /// The longest.
    pub max: Duration,
    /// The mean.
    pub mean: Duration,
    /// Half were at most this long.
    pub p50: Duration,
    /// 90% were at most this long.
    pub p90: Duration,
    /// 99% were at most this long.
    pub p99: Duration,
    /// The total.
    pub sum: Duration,
    /// Per bucket: its upper bound and how many durations fell in it (not
    /// cumulative). The last bucket also holds everything longer.
    pub buckets: Vec<(Duration, u64)>,
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn distribution_bounds_hold() {
        let histogram = Histogram::default();
        for micros in 1..=100u64 {
            histogram.record(Duration::from_micros(micros));
        }
        let d = histogram.snapshot();
        assert_eq!(d.count, 100);
        assert_eq!(d.min, Duration::from_micros(1));
        assert_eq!(d.max, Duration::from_micros(100));
        assert_eq!(d.mean, Duration::from_nanos(50_500));
        // Percentiles are upper bounds within a factor of two.
        assert!(d.p50 >= Duration::from_micros(50) && d.p50 <= Duration::from_micros(100));
        assert!(d.p90 >= Duration::from_micros(90) && d.p90 <= Duration::from_micros(100));
        assert_eq!(d.p99, Duration::from_micros(100));
        assert_eq!(d.buckets.iter().map(|(_, c)| c).sum::<u64>(), 100);
    }

    #[test]
    fn empty_distribution_is_zero() {
        assert_eq!(Histogram::default().snapshot(), Distribution::default());
    }
}
