//! How much a sample can tell: exact (Clopper–Pearson) confidence bounds of a success proportion, and
//! distribution-free confidence bounds of a percentile from order statistics.
//!
//! A verdict on a proportion or a percentile is taken on a bound, not on the point estimate: it passes only when
//! the bound on the favourable side clears the limit, fails only when the bound on the other side misses it, and
//! otherwise says the sample is too small to tell. Both rest on the binomial distribution, computed here in log
//! space so that millions of trials neither overflow nor underflow.

/// Confidence of every bound a verdict is taken on (one-sided).
pub const CONFIDENCE: f64 = 0.95;

/// What a sample says about a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The limit is met with the stated confidence.
    Met,
    /// The limit is missed with the stated confidence.
    Missed,
    /// The sample cannot tell either way.
    Undecided,
}

/// ln C(n, k) through ln Γ.
fn ln_choose(n: u64, k: u64) -> f64 {
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9: about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// P(X <= k) for X ~ Binomial(n, p), summed in log space from the side with fewer terms.
pub fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    if k >= n {
        return 1.0;
    }
    if p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return 0.0;
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let term = |j: u64| (ln_choose(n, j) + j as f64 * lp + (n - j) as f64 * lq).exp();
    if k < n / 2 {
        (0..=k).map(term).sum::<f64>().min(1.0)
    } else {
        (1.0 - ((k + 1)..=n).map(term).sum::<f64>()).max(0.0)
    }
}

/// Bisection for the p in (0, 1) where the decreasing function `f(p)` crosses `target`.
fn solve_decreasing(f: impl Fn(f64) -> f64, target: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if f(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// One-sided Clopper–Pearson bounds of a proportion: `(lower, upper)` such that the true proportion is at least
/// `lower`, and at most `upper`, each with `confidence`. With no trials the bounds are (0, 1).
pub fn proportion_bounds(successes: u64, trials: u64, confidence: f64) -> (f64, f64) {
    if trials == 0 {
        return (0.0, 1.0);
    }
    let alpha = 1.0 - confidence;
    let lower = if successes == 0 {
        0.0
    } else {
        // P(X >= s | p) = alpha, i.e. P(X <= s - 1 | p) = 1 - alpha; P(X <= s - 1) decreases in p.
        solve_decreasing(|p| binomial_cdf(successes - 1, trials, p), 1.0 - alpha)
    };
    let upper = if successes == trials {
        1.0
    } else {
        // P(X <= s | p) = alpha.
        solve_decreasing(|p| binomial_cdf(successes, trials, p), alpha)
    };
    (lower, upper)
}

/// Judges "the proportion is at least `min`" from `successes` of `trials`: met if the lower bound is at least
/// `min`, missed if the upper bound is below it, undecided otherwise.
pub fn judge_proportion_at_least(successes: u64, trials: u64, min: f64) -> Decision {
    let (lower, upper) = proportion_bounds(successes, trials, CONFIDENCE);
    if lower >= min {
        Decision::Met
    } else if upper < min {
        Decision::Missed
    } else {
        Decision::Undecided
    }
}

/// Fewest trials, all successful, for which "at least `min`" is met.
pub fn trials_needed(min: f64) -> u64 {
    // With no failure the lower bound is (1 - confidence)^(1/n).
    ((1.0 - CONFIDENCE).ln() / min.ln()).ceil() as u64
}

/// Ranks (1-based, in the sorted sample) of distribution-free confidence bounds of the `q` quantile (0 < q < 1)
/// from `n` samples: `(lower, upper)`. The `lower`-th smallest sample is at most the true quantile, and the
/// `upper`-th is at least it, each with `confidence`. `None` where the sample is too small for that bound: a P99
/// has no upper bound below 299 samples.
pub fn quantile_ranks(n: u64, q: f64, confidence: f64) -> (Option<u64>, Option<u64>) {
    if n == 0 {
        return (None, None);
    }
    // P(X_(r) <= ξ) = P(B >= r) = 1 - F(r - 1) with B ~ Binomial(n, q): the largest r with F(r - 1) <= 1 - c.
    // P(X_(s) >= ξ) = P(B <= s - 1) = F(s - 1): the smallest s with F(s - 1) >= c. One pass over F, in log space.
    let (lp, lq) = (q.ln(), (1.0 - q).ln());
    let (mut ln_pmf, mut cdf) = (n as f64 * lq, 0.0f64);
    let (mut lower, mut upper) = (None, None);
    for k in 0..n {
        cdf = (cdf + ln_pmf.exp()).min(1.0);
        // cdf = F(k); rank r = k + 1.
        if cdf <= 1.0 - confidence {
            lower = Some(k + 1);
        }
        if upper.is_none() && cdf >= confidence {
            upper = Some(k + 1);
            break;
        }
        ln_pmf += ((n - k) as f64).ln() - ((k + 1) as f64).ln() + lp - lq;
    }
    (lower, upper)
}

/// Judges "the `q` quantile is below `limit`" from `n` samples, where `value_at_rank(r)` is the `r`-th smallest:
/// met if the upper bound is below the limit, missed if the lower bound is at or above it.
pub fn judge_quantile_below(n: u64, q: f64, limit: f64, value_at_rank: impl Fn(u64) -> f64) -> Decision {
    let (lower, upper) = quantile_ranks(n, q, CONFIDENCE);
    if upper.is_some_and(|s| value_at_rank(s) < limit) {
        Decision::Met
    } else if lower.is_some_and(|r| value_at_rank(r) >= limit) {
        Decision::Missed
    } else {
        Decision::Undecided
    }
}

/// Fewest samples for which the `q` quantile has an upper confidence bound at all.
pub fn samples_needed(q: f64) -> u64 {
    // The largest sample is an upper bound once P(B <= n - 1) = 1 - q^n >= confidence.
    ((1.0 - CONFIDENCE).ln() / q.ln()).ceil() as u64
}

/// Samples expected above a quantile for a sample to estimate it: a P99 needs 500 samples, a P95 100. Below
/// that, the "P99" is one of the few largest samples, and says more about one hiccup than about the tail.
pub const TAIL_SAMPLES_MIN: f64 = 5.0;

/// Fewest samples that estimate the `q` quantile (`TAIL_SAMPLES_MIN` expected above it).
pub fn samples_to_estimate(q: f64) -> u64 {
    (TAIL_SAMPLES_MIN / (1.0 - q)).ceil() as u64
}

/// A quantile judged against a limit ("below `limit`"), with what the sample can say.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileJudgement {
    /// The quantile, 0 < q < 1.
    pub q: f64,
    /// Samples.
    pub n: u64,
    /// The sample quantile.
    pub estimate: f64,
    /// Its 95% lower and upper confidence bounds, where the sample has them.
    pub lower: Option<f64>,
    /// See `lower`.
    pub upper: Option<f64>,
    /// `Some(true)` below the limit, `Some(false)` not, `None` when the sample is too small to estimate it.
    pub below: Option<bool>,
}

impl QuantileJudgement {
    /// `P99 70.8 ms (95% CI 69.1 to 72.4 ms, 600 samples)`.
    pub fn describe(&self, unit: &str) -> String {
        let name = format!("P{}", (self.q * 1000.0).round() / 10.0);
        let ci = match (self.lower, self.upper) {
            (Some(l), Some(u)) => format!("95% CI {l:.1} to {u:.1} {unit}, "),
            (Some(l), None) => format!("95% CI from {l:.1} {unit}, "),
            _ => String::new(),
        };
        format!("{name} {:.1} {unit} ({ci}{} samples)", self.estimate, self.n)
    }
}

/// Judges "the `q` quantile is below `limit`" from `n` samples, where `value_at_rank(r)` is the `r`-th smallest.
/// A lower confidence bound at or above the limit is a miss, from any sample. Otherwise a sample too small to
/// estimate the quantile (`samples_to_estimate`) gives no verdict; a larger one is met when the upper bound is
/// below the limit, and between the bounds the sample quantile decides: the sample is large enough that a few
/// outliers do not move it.
pub fn judge_quantile(n: u64, q: f64, limit: f64, value_at_rank: impl Fn(u64) -> f64) -> QuantileJudgement {
    let (lo, up) = quantile_ranks(n, q, CONFIDENCE);
    let estimate = if n == 0 { 0.0 } else { value_at_rank(((q * n as f64).ceil() as u64).clamp(1, n)) };
    let (lower, upper) = (lo.map(&value_at_rank), up.map(&value_at_rank));
    let below = if lower.is_some_and(|l| l >= limit) {
        Some(false)
    } else if n < samples_to_estimate(q) {
        None
    } else if upper.is_some_and(|u| u < limit) {
        Some(true)
    } else {
        Some(estimate < limit)
    };
    QuantileJudgement { q, n, estimate, lower, upper, below }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a quantile needs enough samples to be judged at all; then a few outliers above the limit do not
    /// fail a P99 whose sample quantile is well below it, and a tail above the limit fails it.
    #[test]
    fn quantile_judgement() {
        let sorted = |v: &mut Vec<f64>| v.sort_by(f64::total_cmp);
        assert_eq!(samples_to_estimate(0.99), 500);
        assert_eq!(samples_to_estimate(0.95), 100);
        let thin = judge_quantile(300, 0.99, 100.0, |_| 10.0);
        assert_eq!(thin.below, None);
        // 32 samples all above the limit show a P95 above it: a clear miss needs no large sample.
        assert_eq!(judge_quantile(32, 0.95, 2000.0, |_| 2100.0).below, Some(false));
        let mut v: Vec<f64> = (0..600).map(|i| if i < 3 { 150.0 } else { 70.0 }).collect();
        sorted(&mut v);
        let j = judge_quantile(600, 0.99, 100.0, |r| v[(r - 1) as usize]);
        assert_eq!(j.below, Some(true), "{j:?}");
        assert!(
            j.describe("ms").starts_with("P99 70.0 ms (95% CI 70.0 to 150.0 ms, 600 samples)"),
            "{}",
            j.describe("ms")
        );
        let mut v: Vec<f64> = (0..600).map(|i| if i < 30 { 150.0 } else { 70.0 }).collect();
        sorted(&mut v);
        assert_eq!(judge_quantile(600, 0.99, 100.0, |r| v[(r - 1) as usize]).below, Some(false));
    }

    /// Goal: the binomial tail matches values computed independently (R's pbinom).
    #[test]
    fn binomial_cdf_matches_known_values() {
        assert!((binomial_cdf(3, 10, 0.5) - 0.171_875).abs() < 1e-9);
        assert!((binomial_cdf(0, 20, 0.99) - 1e-40).abs() < 1e-45);
        assert!((binomial_cdf(19, 20, 0.99) - (1.0 - 0.99f64.powi(20))).abs() < 1e-12);
        // Large n in log space: mean 1e6 * 1e-4 = 100, P(X <= 100) is a little above one half.
        let p = binomial_cdf(100, 1_000_000, 1e-4);
        assert!(p > 0.5 && p < 0.56, "{p}");
    }

    /// Goal: Clopper–Pearson bounds match the closed forms where they exist, and known tabulated values.
    #[test]
    fn proportion_bounds_match_closed_forms() {
        // No failure: lower = alpha^(1/n).
        let (lower, upper) = proportion_bounds(30_000, 30_000, 0.95);
        assert!((lower - 0.05f64.powf(1.0 / 30_000.0)).abs() < 1e-9);
        assert_eq!(upper, 1.0);
        // No success: upper = 1 - alpha^(1/n).
        let (lower, upper) = proportion_bounds(0, 10, 0.95);
        assert_eq!(lower, 0.0);
        assert!((upper - (1.0 - 0.05f64.powf(0.1))).abs() < 1e-9);
        // 5 of 10, one-sided 95%: 0.2224 and 0.7776.
        let (lower, upper) = proportion_bounds(5, 10, 0.95);
        assert!((lower - 0.2224).abs() < 1e-4 && (upper - 0.7776).abs() < 1e-4, "{lower} {upper}");
    }

    /// Goal: the availability rule's three outcomes, and the sample size a pass at 99.99% takes (about 30,000).
    #[test]
    fn availability_needs_about_30000_clean_requests() {
        let n = trials_needed(0.9999);
        assert!((29_900..=30_000).contains(&n), "{n}");
        assert_eq!(judge_proportion_at_least(n, n, 0.9999), Decision::Met);
        assert_eq!(judge_proportion_at_least(n - 100, n - 100, 0.9999), Decision::Undecided);
        assert_eq!(judge_proportion_at_least(99_000, 100_000, 0.9999), Decision::Missed);
        assert_eq!(judge_proportion_at_least(0, 0, 0.9999), Decision::Undecided);
    }

    /// Goal: a P99 of 20 samples has no upper bound (it cannot pass), and the rank bounds bracket the quantile's
    /// rank.
    #[test]
    fn quantile_bounds_need_enough_samples() {
        assert_eq!(quantile_ranks(20, 0.99, 0.95).1, None);
        assert_eq!(samples_needed(0.99), 299);
        assert_eq!(quantile_ranks(299, 0.99, 0.95).1, Some(299));
        assert_eq!(quantile_ranks(298, 0.99, 0.95).1, None);
        let (lo, hi) = quantile_ranks(10_000, 0.99, 0.95);
        let (lo, hi) = (lo.unwrap(), hi.unwrap());
        assert!(lo < 9_900 && hi > 9_900 && hi - lo < 60, "{lo} {hi}");
        // Values = ranks: P99 of 1..=10000 is about 9900.
        let v = |r: u64| r as f64;
        assert_eq!(judge_quantile_below(10_000, 0.99, 10_001.0, v), Decision::Met);
        assert_eq!(judge_quantile_below(10_000, 0.99, 9_000.0, v), Decision::Missed);
        assert_eq!(judge_quantile_below(10_000, 0.99, 9_900.0, v), Decision::Undecided);
        // 20 samples whose largest is over the limit, the rest under: undecided, not a failure.
        assert_eq!(judge_quantile_below(20, 0.99, 100.0, |r| if r == 20 { 118.0 } else { 60.0 }), Decision::Undecided);
    }
}
