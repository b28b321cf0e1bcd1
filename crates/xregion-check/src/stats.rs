//! Latency statistics: an HdrHistogram in microseconds, and its summary as a report `Distribution`.
//!
//! Every latency or delay xregion measures goes into a `LatencyRecorder` (one per check, region pair or endpoint).
//! Recorders are cheap to merge, so a load engine can keep one per core and merge them at the end. Values are
//! stored in microseconds with 3 significant digits, which keeps the relative error below 0.1% from 1 us to
//! an hour; reports show milliseconds. Recording never panics: values beyond the range are clamped and counted.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;
use xregion_model::report::{Distribution, Table};

/// Largest value a recorder tracks, in microseconds (one hour). Larger values are clamped to it, because a
/// delay of more than an hour means the measurement is broken, and a bounded range keeps memory fixed.
pub const VALUE_US_MAX: u64 = 3_600 * 1_000_000;

/// Significant digits kept: 3 gives a relative error below 0.1%, as the design notes ask.
const SIGFIG: u8 = 3;

/// Percentiles every distribution reports; `100.0` is the maximum.
pub const PERCENTILES: [f64; 6] = [50.0, 90.0, 95.0, 99.0, 99.9, 100.0];

/// Bucket count aimed at when drawing the shape: enough to show a tail, few enough for a readable bar chart.
const BUCKETS_TARGET: u64 = 30;

/// Buckets for the body (minimum to p99) when the distribution has a tail; the tail gets `TAIL_BUCKETS`.
const BODY_BUCKETS: u64 = 26;
const TAIL_BUCKETS: u64 = 4;

/// The maximum counts as a tail when it exceeds p99 by more than p99 / this (20%).
const TAIL_RATIO_DIVISOR: u64 = 5;

/// Ratio of the largest to the smallest sample above which buckets are spaced logarithmically, so that a long
/// tail does not squash the body of the distribution into one bar.
const LOG_SPACING_RATIO_MIN: u64 = 20;

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    /// The samples, in microseconds, from 0 to `VALUE_US_MAX`.
    hist: Histogram<u64>,
    /// Samples above `VALUE_US_MAX` that were recorded as `VALUE_US_MAX`, so the report can say the maximum is
    /// a floor rather than a measurement.
    clamped_count: u64,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        // The bounds are constants that satisfy hdrhistogram's preconditions (low >= 1, high >= 2 * low,
        // sigfig <= 5), so construction cannot fail.
        let hist = Histogram::new_with_bounds(1, VALUE_US_MAX, SIGFIG).expect("constant histogram bounds are valid");
        Self { hist, clamped_count: 0 }
    }

    /// Records one sample; durations beyond `VALUE_US_MAX` are clamped.
    pub fn record(&mut self, d: Duration) {
        self.record_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records one sample in microseconds; values beyond `VALUE_US_MAX` are clamped.
    pub fn record_us(&mut self, us: u64) {
        if us > VALUE_US_MAX {
            self.clamped_count += 1;
        }
        self.hist.saturating_record(us.min(VALUE_US_MAX));
    }

    /// Adds every sample of `other` to this recorder.
    pub fn merge(&mut self, other: &LatencyRecorder) {
        // Both histograms have the same bounds, so `add` cannot run out of range; the fallback keeps the
        // no-panic promise should that ever change.
        if self.hist.add(&other.hist).is_err() {
            for v in other.hist.iter_recorded() {
                self.hist.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.clamped_count += other.clamped_count;
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Number of samples that were above `VALUE_US_MAX` and were clamped to it.
    pub fn clamped_count(&self) -> u64 {
        self.clamped_count
    }

    /// The value at percentile `pct` (0 to 100), in milliseconds; 0 when empty.
    pub fn value_ms_at(&self, pct: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        let q = if pct.is_nan() { 1.0 } else { (pct / 100.0).clamp(0.0, 1.0) };
        us_to_ms(self.hist.value_at_quantile(q))
    }

    /// The `rank`-th smallest sample (1-based, clamped to the count), in milliseconds within the histogram's
    /// precision; 0 when empty.
    pub fn value_ms_at_rank(&self, rank: u64) -> f64 {
        let n = self.count();
        if n == 0 {
            return 0.0;
        }
        us_to_ms(self.hist.value_at_quantile(rank.clamp(1, n) as f64 / n as f64))
    }

    /// Judges "the `q` quantile (0 < q < 1) is below `limit_ms`" (`evidence::judge_quantile`): no verdict from a
    /// sample too small to estimate it (a P99 needs 500 samples).
    pub fn judge_below(&self, q: f64, limit_ms: f64) -> crate::evidence::QuantileJudgement {
        crate::evidence::judge_quantile(self.count(), q, limit_ms, |r| self.value_ms_at_rank(r))
    }

    /// The largest sample, in milliseconds (within the 0.1% precision); 0 when empty.
    pub fn max_ms(&self) -> f64 {
        if self.hist.is_empty() { 0.0 } else { us_to_ms(self.hist.max()) }
    }

    /// The smallest sample, in milliseconds; 0 when empty.
    pub fn min_ms(&self) -> f64 {
        if self.hist.is_empty() { 0.0 } else { us_to_ms(self.hist.min()) }
    }

    /// The mean, in milliseconds; 0 when empty.
    pub fn mean_ms(&self) -> f64 {
        if self.hist.is_empty() { 0.0 } else { self.hist.mean() / 1000.0 }
    }

    /// The distribution for a report: unit `ms`, the `PERCENTILES`, and about 30 buckets over the observed range
    /// (linear, or logarithmic when the largest sample is 20 times the smallest or more).
    pub fn to_distribution(&self, name: impl Into<String>) -> Distribution {
        let percentiles = if self.hist.is_empty() {
            Vec::new()
        } else {
            PERCENTILES.iter().map(|&p| (p, self.value_ms_at(p))).collect()
        };
        Distribution {
            name: name.into(),
            count: self.count(),
            unit: "ms".to_string(),
            percentiles,
            buckets: self.buckets(),
        }
    }

    /// Histogram buckets as `(upper bound in ms, count)`, ascending; each bucket holds the samples above the
    /// previous bound and up to its own.
    ///
    /// When the maximum is well above p99, the body (minimum to p99) gets `BODY_BUCKETS` buckets and the tail
    /// (p99 to maximum) `TAIL_BUCKETS` geometric ones, so a few slow samples do not squash the body of the
    /// distribution into one bar.
    fn buckets(&self) -> Vec<(f64, u64)> {
        if self.hist.is_empty() {
            return Vec::new();
        }
        let lo_us = self.hist.min();
        let hi_us = self.hist.max();
        let p99_us = self.hist.value_at_quantile(0.99);
        let has_tail = hi_us > p99_us + p99_us / TAIL_RATIO_DIVISOR;
        let (body_hi_us, body_buckets) = if has_tail { (p99_us, BODY_BUCKETS) } else { (hi_us, BUCKETS_TARGET) };
        let mut edges_us = if lo_us > 0 && body_hi_us / lo_us >= LOG_SPACING_RATIO_MIN {
            geometric_edges_us(lo_us, body_hi_us, body_buckets)
        } else {
            linear_edges_us(lo_us, body_hi_us, body_buckets)
        };
        let body_top_us = *edges_us.last().expect("edge functions return at least one edge");
        if body_top_us < hi_us {
            edges_us.extend(geometric_edges_us(body_top_us.max(1), hi_us, TAIL_BUCKETS));
            edges_us.dedup();
        }
        let mut counts = vec![0u64; edges_us.len()];
        for v in self.hist.iter_recorded() {
            let value_us = v.value_iterated_to();
            // Values at or above the last edge go into the last bucket: the last edge is the maximum itself.
            let i = edges_us.partition_point(|&e| e < value_us).min(edges_us.len() - 1);
            counts[i] += v.count_at_value();
        }
        edges_us.into_iter().map(us_to_ms).zip(counts).collect()
    }
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// `n` bucket upper bounds at a round step (1, 2 or 5 times a power of ten microseconds) from just below `lo_us`
/// to `hi_us` or just above, at most `n + 1` of them.
fn linear_edges_us(lo_us: u64, hi_us: u64, n: u64) -> Vec<u64> {
    let step_us = nice_step(hi_us.saturating_sub(lo_us).div_ceil(n).max(1));
    let mut edge = (lo_us / step_us) * step_us + step_us;
    let mut edges = vec![edge];
    while edge < hi_us {
        edge += step_us;
        edges.push(edge);
    }
    edges
}

/// `n` bucket upper bounds spaced by a constant ratio above `lo_us` (> 0) up to `hi_us`, rounded up to 3
/// significant digits; the last bound is `hi_us` itself.
fn geometric_edges_us(lo_us: u64, hi_us: u64, n: u64) -> Vec<u64> {
    let ratio = (hi_us as f64 / lo_us as f64).powf(1.0 / n as f64);
    let mut edges: Vec<u64> = (1..n)
        .map(|i| round_up_sig3((lo_us as f64 * ratio.powi(i as i32)).ceil() as u64))
        .filter(|&e| e > lo_us && e < hi_us)
        .collect();
    edges.push(hi_us);
    edges.dedup();
    edges
}

/// The smallest of 1, 2, 5 times a power of ten that is at least `x`.
fn nice_step(x: u64) -> u64 {
    let mut pow = 1u64;
    loop {
        for m in [1, 2, 5] {
            if m * pow >= x {
                return m * pow;
            }
        }
        match pow.checked_mul(10) {
            Some(p) => pow = p,
            None => return x,
        }
    }
}

/// Rounds up to 3 significant digits, so bucket labels stay short.
fn round_up_sig3(v: u64) -> u64 {
    let mut scale = 1u64;
    while v / scale >= 1000 {
        scale *= 10;
    }
    v.div_ceil(scale) * scale
}

/// The entry with the highest value at percentile `pct`, ignoring empty recorders; ties go to the first key.
/// The runner uses it for headlines such as "worst pair: a -> b, p99 41.2 ms".
pub fn worst_at<K: Ord>(recorders: &BTreeMap<K, LatencyRecorder>, pct: f64) -> Option<(&K, f64)> {
    let mut worst: Option<(&K, f64)> = None;
    for (k, r) in recorders.iter().filter(|(_, r)| r.count() > 0) {
        let v = r.value_ms_at(pct);
        if worst.is_none_or(|(_, w)| v > w) {
            worst = Some((k, v));
        }
    }
    worst
}

/// All recorders merged into one, for an "all pairs" figure.
pub fn merged<'a>(recorders: impl IntoIterator<Item = &'a LatencyRecorder>) -> LatencyRecorder {
    let mut all = LatencyRecorder::new();
    for r in recorders {
        all.merge(r);
    }
    all
}

/// A table with one row per recorder: name, samples, p50, p90, p99, p99.9 and max in milliseconds.
pub fn percentile_table<K: std::fmt::Display>(title: &str, recorders: &BTreeMap<K, LatencyRecorder>) -> Table {
    let columns = ["name", "samples", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"];
    let rows = recorders
        .iter()
        .map(|(k, r)| {
            let mut row = vec![k.to_string(), r.count().to_string()];
            row.extend([50.0, 90.0, 99.0, 99.9].iter().map(|&p| format!("{:.3}", r.value_ms_at(p))));
            row.push(format!("{:.3}", r.max_ms()));
            row
        })
        .collect();
    Table { title: title.to_string(), columns: columns.iter().map(|c| c.to_string()).collect(), rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(values_us: impl IntoIterator<Item = u64>) -> LatencyRecorder {
        let mut r = LatencyRecorder::new();
        for v in values_us {
            r.record_us(v);
        }
        r
    }

    /// Goal: percentiles, max and mean are right in ms. Method: record 1..=1000 ms and compare within 0.1%.
    #[test]
    fn percentiles_in_ms() {
        let r = recorder((1..=1000).map(|ms| ms * 1000));
        assert_eq!(r.count(), 1000);
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 1e-9;
        assert!(close(r.value_ms_at(50.0), 500.0), "{}", r.value_ms_at(50.0));
        assert!(close(r.value_ms_at(99.0), 990.0), "{}", r.value_ms_at(99.0));
        assert!(close(r.max_ms(), 1000.0));
        assert!(close(r.mean_ms(), 500.5));
    }

    /// Goal: ranks map to the sorted samples, and a quantile verdict needs enough samples: 100 samples give no
    /// P99 verdict, 600 below the limit pass, and 600 with a tenth above it fail.
    #[test]
    fn ranks_and_quantile_verdicts() {
        let r = recorder((1..=1000).map(|ms| ms * 1000));
        assert!((r.value_ms_at_rank(1) - 1.0).abs() < 0.01 && (r.value_ms_at_rank(990) - 990.0).abs() < 1.0);
        assert_eq!(recorder((0..100).map(|_| 10_000)).judge_below(0.99, 100.0).below, None);
        assert_eq!(recorder((0..600).map(|_| 10_000)).judge_below(0.99, 100.0).below, Some(true));
        let slow = recorder((0..600).map(|i| if i % 10 == 0 { 150_000 } else { 10_000 }));
        assert_eq!(slow.judge_below(0.99, 100.0).below, Some(false));
    }

    /// Goal: recording never panics and huge values are clamped and counted. Method: record extremes.
    #[test]
    fn extremes_are_clamped_not_panics() {
        let mut r = LatencyRecorder::new();
        r.record(Duration::MAX);
        r.record_us(u64::MAX);
        r.record_us(0);
        assert_eq!(r.count(), 3);
        assert_eq!(r.clamped_count(), 2);
        assert!(r.max_ms() >= VALUE_US_MAX as f64 / 1000.0);
        assert_eq!(r.min_ms(), 0.0);
        let d = r.to_distribution("x");
        assert_eq!(d.buckets.iter().map(|b| b.1).sum::<u64>(), 3);
    }

    /// Goal: an empty recorder gives zeros and an empty distribution, not a panic. Method: summarize nothing.
    #[test]
    fn empty_recorder() {
        let r = LatencyRecorder::new();
        assert_eq!(r.value_ms_at(99.0), 0.0);
        assert_eq!(r.mean_ms(), 0.0);
        let d = r.to_distribution("empty");
        assert_eq!(d.count, 0);
        assert!(d.buckets.is_empty() && d.percentiles.is_empty());
    }

    /// Goal: buckets are ascending, cover every sample and number 1 to ~40, for narrow, wide and single-valued
    /// data. Method: check the invariants on three shapes.
    #[test]
    fn buckets_cover_every_sample() {
        let shapes: Vec<Vec<u64>> = vec![
            (0..5000).map(|i| 10_000 + (i % 100) * 37).collect(),
            (0..5000).map(|i| 100 + i * i).collect(),
            vec![7_000; 10],
        ];
        for values in shapes {
            let r = recorder(values.iter().copied());
            let d = r.to_distribution("d");
            assert!(!d.buckets.is_empty() && d.buckets.len() <= 40, "{} buckets", d.buckets.len());
            assert!(d.buckets.windows(2).all(|w| w[0].0 < w[1].0), "ascending: {:?}", d.buckets);
            assert_eq!(d.buckets.iter().map(|b| b.1).sum::<u64>(), values.len() as u64);
            assert!(d.buckets.last().unwrap().0 >= r.max_ms());
            assert_eq!(d.unit, "ms");
            assert_eq!(d.percentiles.iter().map(|p| p.0).collect::<Vec<_>>(), PERCENTILES.to_vec());
        }
    }

    /// Goal: a few slow samples do not squash the body into one bar. Method: 990 samples in 10-20 ms and 10 at
    /// 1 s; most buckets must lie below p99 and the last must reach the maximum.
    #[test]
    fn tail_keeps_body_resolution() {
        let r = recorder((0..990).map(|i| 10_000 + i * 10).chain((0..10).map(|_| 1_000_000)));
        let d = r.to_distribution("tail");
        let p99 = r.value_ms_at(99.0);
        let body = d.buckets.iter().filter(|b| b.0 <= p99 + 1.0).count();
        assert!(body >= 20, "{} body buckets: {:?}", body, d.buckets);
        assert!(d.buckets.len() <= 40);
        assert!(d.buckets.last().unwrap().0 >= r.max_ms());
        assert_eq!(d.buckets.iter().map(|b| b.1).sum::<u64>(), 1000);
    }

    /// Goal: merging adds samples. Method: merge two recorders and compare counts and max.
    #[test]
    fn merge_adds() {
        let mut a = recorder([1000, 2000]);
        let b = recorder([50_000]);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert!((a.max_ms() - 50.0).abs() < 0.1);
        assert_eq!(merged([&a, &b]).count(), 4);
    }

    /// Goal: the worst pair is the one with the highest percentile; empty recorders are skipped. Method: three
    /// recorders, one empty.
    #[test]
    fn worst_pair() {
        let mut m = BTreeMap::new();
        m.insert("a->b", recorder([1000, 2000]));
        m.insert("a->c", recorder([9000]));
        m.insert("b->c", LatencyRecorder::new());
        let (k, v) = worst_at(&m, 99.0).unwrap();
        assert_eq!(*k, "a->c");
        assert!((v - 9.0).abs() < 0.01);
        assert!(worst_at(&BTreeMap::<u8, LatencyRecorder>::new(), 99.0).is_none());
        let t = percentile_table("delays", &m);
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.rows[0].len(), t.columns.len());
    }
}
