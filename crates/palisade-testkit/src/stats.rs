//! Summaries of measured samples, for the benches' reports.

/// The nearest-rank `p`-th percentile (`p` in percent, 0 to 100) of
/// samples sorted in ascending order: the smallest sample that at least
/// `p` % of the samples are less than or equal to. `p = 50` is the median
/// (the lower one for an even count); any `p` above `100 × (n - 1) / n` is
/// the maximum, so the p99 of fewer than 100 samples is their max.
///
/// Panics when `sorted` is empty (a bench without samples has nothing to
/// report) or `p` is outside 0..=100.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    assert!(!sorted.is_empty(), "the percentile of no samples");
    assert!(
        (0.0..=100.0).contains(&p),
        "percentile {p} is not in 0..=100"
    );
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// How many trials a bench runs. Under `cargo bench`, which passes
/// `--bench`: `PALISADE_BENCH_TRIALS` if set (at least 1), else `default`.
/// Under `cargo test --benches`, which does not: `smoke`, a smoke test.
pub fn bench_trials(default: usize, smoke: usize) -> usize {
    if !std::env::args().any(|a| a == "--bench") {
        return smoke;
    }
    let trials = std::env::var("PALISADE_BENCH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    assert!(trials >= 1, "PALISADE_BENCH_TRIALS must be at least 1");
    trials
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let v = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
        assert_eq!(percentile(&v, 0.0), 10);
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 90.0), 90);
        assert_eq!(percentile(&v, 99.0), 100);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 50.0), 7);
        assert_eq!(percentile(&[1, 2, 3], 50.0), 2);
    }
}
