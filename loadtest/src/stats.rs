//! Medians of measurements, and latency distributions kept
//! as HDR histograms (microseconds, 3 significant digits).

use hdrhistogram::Histogram;
use serde::Serialize;

/// The median (the upper one of an even count); NaN for no values.
pub fn median(values: &[f64]) -> f64 {
    let sorted = sorted(values);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Nearest-rank percentile of a few exact samples (e.g. 20 start-up times),
/// where an HDR histogram's buckets would add nothing.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let sorted = sorted(values);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len().max(1)) - 1)
        .copied()
        .unwrap_or(f64::NAN)
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted
}

/// A histogram of microseconds from 1 µs to 100 s.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

pub fn record(histogram: &mut Histogram<u64>, elapsed: std::time::Duration) {
    histogram.saturating_record((elapsed.as_micros() as u64).max(1));
}

/// The summary of one latency distribution, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p99_9_us: f64,
    pub max_us: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        let q = |p: f64| h.value_at_quantile(p) as f64;
        Self {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p99_9_us: q(0.999),
            max_us: h.max() as f64,
        }
    }
}

/// The distribution as (percentile 0–100, µs) points for plots and the JSON
/// report: each point is the percentile up to which that value holds (the
/// value applies from the previous point's percentile on), finer towards the tail.
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = Vec::new();
    for step in h.iter_quantiles(4) {
        let point = (
            step.quantile_iterated_to() * 100.0,
            h.highest_equivalent(step.value_iterated_to()) as f64,
        );
        // Keep the curve small: one point per value, where it stops holding.
        match points.last_mut() {
            Some(last) if last.1 == point.1 => *last = point,
            _ => points.push(point),
        }
    }
    if let Some(last) = points.last_mut() {
        *last = (100.0, h.max() as f64);
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_take_the_upper_middle() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 3.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&twenty, 90.0), 18.0);
        assert_eq!(percentile(&twenty, 100.0), 20.0);
        assert_eq!(percentile(&twenty, 0.0), 1.0);
        assert!(percentile(&[], 90.0).is_nan());
    }

    #[test]
    fn latency_summaries_and_curves_come_from_the_histogram() {
        let mut h = histogram();
        for us in 1..=1000u64 {
            record(&mut h, std::time::Duration::from_micros(us));
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50_us - 500.0).abs() <= 1.0, "{l:?}");
        assert!((l.p99_us - 990.0).abs() <= 1.0, "{l:?}");
        assert_eq!(l.max_us, 1000.0);
        let points = curve(&h);
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1)
        );
        assert_eq!(points.last(), Some(&(100.0, 1000.0)));
    }
}
