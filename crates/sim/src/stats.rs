//! Small statistics helpers: running sums with the integer arithmetic of Linux's
//! `dma_map_benchmark` (reference `software.md` §4.7), and log2 histograms for the
//! report's distributions.

use serde::Serialize;

/// Running count, sum, sum of squares, minimum and maximum of `u64` samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub count: u64,
    /// Sum of samples (saturating).
    pub sum: u64,
    /// Sum of squared samples (saturating, 128-bit).
    pub sum_sq: u128,
    /// Smallest sample (0 when empty).
    pub min: u64,
    /// Largest sample.
    pub max: u64,
}

impl Summary {
    /// Add a sample.
    pub fn add(&mut self, x: u64) {
        self.min = if self.count == 0 { x } else { self.min.min(x) };
        self.max = self.max.max(x);
        self.count += 1;
        self.sum = self.sum.saturating_add(x);
        self.sum_sq = self.sum_sq.saturating_add(u128::from(x) * u128::from(x));
    }

    /// Merge another summary (per-thread sums into a total).
    pub fn merge(&mut self, o: &Summary) {
        if o.count == 0 {
            return;
        }
        self.min = if self.count == 0 {
            o.min
        } else {
            self.min.min(o.min)
        };
        self.max = self.max.max(o.max);
        self.count += o.count;
        self.sum = self.sum.saturating_add(o.sum);
        self.sum_sq = self.sum_sq.saturating_add(o.sum_sq);
    }

    /// Integer mean (truncating), 0 when empty.
    pub fn mean(&self) -> u64 {
        self.sum.checked_div(self.count).unwrap_or(0)
    }

    /// Integer population standard deviation `isqrt(E[x²] − mean²)`, the formula of
    /// the kernel benchmark (truncating at each step like it does).
    pub fn stddev(&self) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let mean = u128::from(self.mean());
        let e_sq = self.sum_sq / u128::from(self.count);
        let var = e_sq.saturating_sub(mean * mean);
        u64::try_from(var.isqrt()).unwrap_or(u64::MAX)
    }
}

/// A histogram with power-of-two buckets: bucket `i` holds samples in `[2^(i-1), 2^i)`
/// (bucket 0 holds 0).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Log2Histogram {
    /// Bucket counts.
    pub buckets: Vec<u64>,
}

impl Default for Log2Histogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; 65],
        }
    }
}

impl Log2Histogram {
    /// Bucket index of `x`.
    pub fn bucket_of(x: u64) -> usize {
        (u64::BITS - x.leading_zeros()) as usize
    }

    /// Lower bound of bucket `i`.
    pub fn lower_bound(i: usize) -> u64 {
        if i == 0 { 0 } else { 1u64 << (i - 1).min(63) }
    }

    /// Add a sample.
    pub fn add(&mut self, x: u64) {
        self.buckets[Self::bucket_of(x)] += 1;
    }

    /// Merge another histogram.
    pub fn merge(&mut self, o: &Log2Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
    }

    /// Total samples.
    pub fn total(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The non-empty range of buckets, `(first, last)` inclusive.
    pub fn span(&self) -> Option<(usize, usize)> {
        let first = self.buckets.iter().position(|&c| c != 0)?;
        let last = self.buckets.iter().rposition(|&c| c != 0)?;
        Some((first, last))
    }
}

/// A hit rate in `[0, 1]`, `None` when nothing was looked up.
pub fn hit_rate(hits: u64, misses: u64) -> Option<f64> {
    let total = hits.checked_add(misses)?;
    if total == 0 {
        None
    } else {
        Some(hits as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_hand_computation() {
        let mut s = Summary::default();
        for x in [2, 4, 4, 4, 5, 5, 7, 9] {
            s.add(x);
        }
        assert_eq!((s.count, s.sum, s.min, s.max), (8, 40, 2, 9));
        assert_eq!(s.mean(), 5);
        assert_eq!(s.stddev(), 2);
        let mut a = Summary::default();
        let mut b = Summary::default();
        for x in [2, 4, 4, 4] {
            a.add(x);
        }
        for x in [5, 5, 7, 9] {
            b.add(x);
        }
        a.merge(&b);
        assert_eq!(a, s);
        assert_eq!(Summary::default().stddev(), 0);
    }

    #[test]
    fn stddev_truncates_like_the_kernel() {
        // samples 1 and 2: mean 1 (truncated), E[x²] = 5/2 = 2, var = 1, sd = 1.
        let mut s = Summary::default();
        s.add(1);
        s.add(2);
        assert_eq!((s.mean(), s.stddev()), (1, 1));
    }

    #[test]
    fn histogram_buckets() {
        let mut h = Log2Histogram::default();
        for x in [0, 1, 2, 3, 4, 1000, u64::MAX] {
            h.add(x);
        }
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[2], 2);
        assert_eq!(h.buckets[3], 1);
        assert_eq!(h.buckets[10], 1);
        assert_eq!(h.buckets[64], 1);
        assert_eq!(h.total(), 7);
        assert_eq!(h.span(), Some((0, 64)));
        assert_eq!(Log2Histogram::lower_bound(10), 512);
        assert_eq!(hit_rate(3, 1), Some(0.75));
        assert_eq!(hit_rate(0, 0), None);
    }
}
