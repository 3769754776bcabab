//! Percentiles and the bootstrap confidence interval of a difference of medians.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Seed of the report's bootstrap, so a report is reproducible from its inputs.
pub const BOOTSTRAP_SEED: u64 = 0x0076_6f78_7069_7065; // "voxpipe"
/// Resamples of the report's bootstrap.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// The `p`-th percentile (0..=100) of `values` by linear interpolation between closest ranks
/// (numpy's default); `None` for no values.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    Some(percentile_sorted(&v, p))
}

fn percentile_sorted(v: &[f64], p: f64) -> f64 {
    let rank = (p.clamp(0.0, 100.0) / 100.0) * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

/// A difference `B − A` of medians with its bootstrap confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DiffCi {
    /// `median(B) − median(A)`.
    pub diff: f64,
    /// Lower bound of the interval.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

impl DiffCi {
    /// True when the interval lies entirely on one side of zero.
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// Percentile bootstrap of `median(b) − median(a)`: `resamples` times, resample each group
/// with replacement (independently) and take the difference of medians; the interval is the
/// `(1−level)/2` and `(1+level)/2` percentiles of those differences. Deterministic for a seed.
/// `None` when either group is empty.
pub fn bootstrap_median_diff(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<DiffCi> {
    let diff = percentile(b, 50.0)? - percentile(a, 50.0)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut ra, mut rb) = (vec![0.0; a.len()], vec![0.0; b.len()]);
    let mut diffs = Vec::with_capacity(resamples.max(1));
    for _ in 0..resamples.max(1) {
        for x in ra.iter_mut() {
            *x = a[rng.random_range(0..a.len())];
        }
        for x in rb.iter_mut() {
            *x = b[rng.random_range(0..b.len())];
        }
        ra.sort_by(|x, y| x.total_cmp(y));
        rb.sort_by(|x, y| x.total_cmp(y));
        diffs.push(percentile_sorted(&rb, 50.0) - percentile_sorted(&ra, 50.0));
    }
    diffs.sort_by(|x, y| x.total_cmp(y));
    let tail = (1.0 - level.clamp(0.0, 1.0)) / 2.0 * 100.0;
    Some(DiffCi { diff, low: percentile_sorted(&diffs, tail), high: percentile_sorted(&diffs, 100.0 - tail) })
}

/// Paired percentile bootstrap of `median(b) − median(a)` over `(a, b)` pairs measured on the
/// same item (the same scenario turn through both pipelines): resample pairs with
/// replacement, so the spread between items cancels and only the pipelines' difference is
/// left. Deterministic for a seed; `None` for no pairs.
pub fn bootstrap_paired_median_diff(
    pairs: &[(f64, f64)],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<DiffCi> {
    paired_diff(pairs, resamples, level, seed, median_in_place)
}

/// As [`bootstrap_paired_median_diff`], of `mean(b) − mean(a)` (for scores on a small scale,
/// where a median hides most differences).
pub fn bootstrap_paired_mean_diff(
    pairs: &[(f64, f64)],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<DiffCi> {
    paired_diff(pairs, resamples, level, seed, |v| mean(v))
}

/// The mean of `values` with its percentile-bootstrap interval `(mean, low, high)`;
/// deterministic for a seed, `None` for no values.
pub fn bootstrap_mean(values: &[f64], resamples: usize, level: f64, seed: u64) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut means = Vec::with_capacity(resamples.max(1));
    for _ in 0..resamples.max(1) {
        let sum: f64 = (0..values.len()).map(|_| values[rng.random_range(0..values.len())]).sum();
        means.push(sum / values.len() as f64);
    }
    means.sort_by(|x, y| x.total_cmp(y));
    let tail = (1.0 - level.clamp(0.0, 1.0)) / 2.0 * 100.0;
    Some((mean(values), percentile_sorted(&means, tail), percentile_sorted(&means, 100.0 - tail)))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn median_in_place(v: &mut [f64]) -> f64 {
    v.sort_by(|x, y| x.total_cmp(y));
    percentile_sorted(v, 50.0)
}

/// The paired bootstrap of `stat(b) − stat(a)`.
fn paired_diff(
    pairs: &[(f64, f64)],
    resamples: usize,
    level: f64,
    seed: u64,
    stat: impl Fn(&mut [f64]) -> f64,
) -> Option<DiffCi> {
    if pairs.is_empty() {
        return None;
    }
    let (mut a, mut b): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
    let diff = stat(&mut b) - stat(&mut a);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut ra, mut rb) = (vec![0.0; a.len()], vec![0.0; b.len()]);
    let mut diffs = Vec::with_capacity(resamples.max(1));
    for _ in 0..resamples.max(1) {
        for k in 0..pairs.len() {
            let i = rng.random_range(0..pairs.len());
            (ra[k], rb[k]) = pairs[i];
        }
        diffs.push(stat(&mut rb) - stat(&mut ra));
    }
    diffs.sort_by(|x, y| x.total_cmp(y));
    let tail = (1.0 - level.clamp(0.0, 1.0)) / 2.0 * 100.0;
    Some(DiffCi { diff, low: percentile_sorted(&diffs, tail), high: percentile_sorted(&diffs, 100.0 - tail) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let v = [4.0, 1.0, 3.0, 2.0, 5.0];
        assert_eq!(percentile(&v, 50.0), Some(3.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 100.0), Some(5.0));
        assert_eq!(percentile(&v, 90.0), Some(4.6));
        assert_eq!(percentile(&[10.0, 20.0], 50.0), Some(15.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    fn noisy(base: f64, n: usize) -> Vec<f64> {
        (0..n).map(|i| base + ((i * 37) % 23) as f64 - 11.0).collect()
    }

    #[test]
    fn a_clear_difference_has_an_interval_that_excludes_zero() {
        let (a, b) = (noisy(800.0, 30), noisy(1000.0, 30));
        let ci = bootstrap_median_diff(&a, &b, 2000, 0.95, 1).unwrap();
        assert!((ci.diff - 200.0).abs() < 1e-9, "{ci:?}");
        assert!(ci.excludes_zero() && ci.low > 150.0 && ci.high < 250.0, "{ci:?}");
        assert!(ci.low <= ci.diff && ci.diff <= ci.high);
    }

    #[test]
    fn identical_samples_give_an_interval_around_zero() {
        let a = noisy(800.0, 30);
        let ci = bootstrap_median_diff(&a, &a.clone(), 2000, 0.95, 1).unwrap();
        assert_eq!(ci.diff, 0.0);
        assert!(!ci.excludes_zero(), "{ci:?}");
        assert!(ci.low < 0.0 && ci.high > 0.0, "{ci:?}");
    }

    #[test]
    fn pairing_separates_a_constant_shift_from_spread_between_items() {
        // Items differ a lot (800 vs 1800 ms turns); B is A + 200 on every item.
        let a = [800.0, 820.0, 1800.0, 790.0, 1750.0];
        let pairs: Vec<(f64, f64)> = a.iter().map(|x| (*x, x + 200.0)).collect();
        let paired = bootstrap_paired_median_diff(&pairs, 2000, 0.95, 3).unwrap();
        assert_eq!((paired.diff, paired.low, paired.high), (200.0, 200.0, 200.0));
        let b: Vec<f64> = a.iter().map(|x| x + 200.0).collect();
        let unpaired = bootstrap_median_diff(&a, &b, 2000, 0.95, 3).unwrap();
        assert!(!unpaired.excludes_zero(), "unpaired, the spread hides the shift: {unpaired:?}");
        let same: Vec<(f64, f64)> = a.iter().map(|x| (*x, *x)).collect();
        assert!(!bootstrap_paired_median_diff(&same, 500, 0.95, 3).unwrap().excludes_zero());
        assert!(bootstrap_paired_median_diff(&[], 500, 0.95, 3).is_none());
    }

    #[test]
    fn a_mean_has_an_interval_around_it_and_paired_means_see_a_one_point_shift() {
        let v = [3.0, 4.0, 4.0, 5.0, 4.0, 3.0];
        let (m, low, high) = bootstrap_mean(&v, 2000, 0.95, 7).unwrap();
        assert!((m - 23.0 / 6.0).abs() < 1e-12);
        assert!(low < m && m < high && low >= 3.0 && high <= 5.0, "{low} {m} {high}");
        assert_eq!(bootstrap_mean(&[], 10, 0.95, 7), None);
        let pairs: Vec<(f64, f64)> = v.iter().map(|x| (*x, x - 1.0)).collect();
        let ci = bootstrap_paired_mean_diff(&pairs, 2000, 0.95, 7).unwrap();
        for v in [ci.diff, ci.low, ci.high] {
            assert!((v + 1.0).abs() < 1e-9, "{ci:?}");
        }
    }

    #[test]
    fn the_bootstrap_is_deterministic_for_a_seed() {
        let (a, b) = (noisy(500.0, 12), noisy(520.0, 9));
        let x = bootstrap_median_diff(&a, &b, 500, 0.95, 42);
        assert_eq!(x, bootstrap_median_diff(&a, &b, 500, 0.95, 42));
        assert!(bootstrap_median_diff(&[], &b, 500, 0.95, 42).is_none());
    }
}
