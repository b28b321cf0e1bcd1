//! Thresholds as data: `[request:] metric op value`, for example `p95 < 2000ms`, `p(99.9) <= 1s`,
//! `error_rate < 1%`, `rps > 100` or `london: p95 < 200ms`. They serialize as the text they were parsed from, so a
//! plan file reads like the command line.
//!
//! Latency metrics use the corrected latency (from the intended start in the open model), which is what a user
//! would have seen.

use crate::error::ThresholdError;
use crate::result::LoadResult;
// The outcome is part of the result; this path is kept for callers that name it here.
pub use crate::result::ThresholdResult;
use serde::{Deserialize, Serialize};

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// Latency percentile (0..=100), in ms.
    Percentile(f64),
    /// Highest latency, in ms.
    Max,
    /// Mean latency, in ms.
    Mean,
    /// Errors over requests, a fraction.
    ErrorRate,
    /// Requests per second over the run.
    Rps,
    /// Requests.
    Count,
    /// Iterations dropped because `max_in_flight` was reached (whole run only).
    Dropped,
}

/// Comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    fn holds(self, measured: f64, limit: f64) -> bool {
        match self {
            Op::Lt => measured < limit,
            Op::Le => measured <= limit,
            Op::Gt => measured > limit,
            Op::Ge => measured >= limit,
        }
    }
}

/// A parsed threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Threshold {
    /// Request name it applies to; `None` for the whole run.
    pub scope: Option<String>,
    /// What is measured.
    pub metric: Metric,
    /// How it is compared.
    pub op: Op,
    /// The limit, in the metric's unit (ms, fraction, per second, count).
    pub limit: f64,
    /// The text it was parsed from.
    pub source: String,
}

impl TryFrom<String> for Threshold {
    type Error = ThresholdError;
    fn try_from(s: String) -> Result<Self, ThresholdError> {
        s.parse()
    }
}

impl From<Threshold> for String {
    fn from(t: Threshold) -> String {
        t.source
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Threshold {
    type Err = ThresholdError;

    fn from_str(input: &str) -> Result<Self, ThresholdError> {
        let err = |reason: &str| ThresholdError { input: input.to_string(), reason: reason.to_string() };
        let text = input.trim();
        let op_at = text.find(['<', '>']).ok_or_else(|| err("no comparison (<, <=, >, >=)"))?;
        let (lhs, rest) = text.split_at(op_at);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else {
            (Op::Gt, &rest[1..])
        };
        // The scope ends at the last colon, so request names may themselves hold colons.
        let (scope, metric) = match lhs.rsplit_once(':') {
            Some((s, m)) if !s.trim().is_empty() => (Some(s.trim().to_string()), m.trim()),
            Some(_) => return Err(err("empty request name before `:`")),
            None => (None, lhs.trim()),
        };
        let metric = parse_metric(metric).ok_or_else(|| err("unknown metric"))?;
        let value = value.trim();
        let limit = match metric {
            Metric::Percentile(_) | Metric::Max | Metric::Mean => parse_ms(value),
            Metric::ErrorRate => match value.strip_suffix('%') {
                Some(p) => p.trim().parse::<f64>().ok().map(|p| p / 100.0),
                None => value.parse().ok(),
            },
            Metric::Rps => value.strip_suffix("/s").unwrap_or(value).trim().parse().ok(),
            Metric::Count | Metric::Dropped => value.parse().ok(),
        }
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| err("the value does not fit the metric (ms/s/us for latency, % for error_rate)"))?;
        if scope.is_some() && metric == Metric::Dropped {
            return Err(err("dropped applies to the whole run, not to one request"));
        }
        Ok(Threshold { scope, metric, op, limit, source: text.to_string() })
    }
}

fn parse_metric(m: &str) -> Option<Metric> {
    match m {
        "max" => return Some(Metric::Max),
        "mean" | "avg" => return Some(Metric::Mean),
        "error_rate" | "errors" => return Some(Metric::ErrorRate),
        "rps" => return Some(Metric::Rps),
        "count" | "requests" => return Some(Metric::Count),
        "dropped" => return Some(Metric::Dropped),
        "med" => return Some(Metric::Percentile(50.0)),
        _ => {}
    }
    let p = m.strip_prefix('p')?;
    let p = p.strip_prefix('(').and_then(|p| p.strip_suffix(')')).unwrap_or(p);
    let p: f64 = p.trim().parse().ok()?;
    (p > 0.0 && p <= 100.0).then_some(Metric::Percentile(p))
}

/// A duration in ms: `250ms`, `1.5s`, `800us`, or a bare number of ms.
fn parse_ms(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("us").or_else(|| v.strip_suffix("µs")) {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (v, 1.0)
    };
    num.trim().parse::<f64>().ok().map(|n| n * scale)
}

impl Threshold {
    /// Evaluates against a result. An unknown request name or a latency metric without samples fails.
    pub fn evaluate(&self, r: &LoadResult) -> ThresholdResult {
        let unit = match self.metric {
            Metric::Percentile(_) | Metric::Max | Metric::Mean => "ms",
            Metric::ErrorRate => "ratio",
            Metric::Rps => "per_s",
            Metric::Count | Metric::Dropped => "count",
        };
        let measured: Result<f64, String> = (|| {
            let (count, errors, hist) = match &self.scope {
                Some(name) => {
                    let s = r.per_request.get(name).ok_or_else(|| format!("no request named {name:?}"))?;
                    (s.count, s.errors, s.latency.0.clone())
                }
                None => (r.requests, r.errors.total(), r.latency_all()),
            };
            let latency = |f: &dyn Fn(&hdrhistogram::Histogram<u64>) -> f64| {
                if hist.is_empty() { Err("no latency was recorded".to_string()) } else { Ok(f(&hist) / 1000.0) }
            };
            match self.metric {
                Metric::Percentile(p) => latency(&|h| h.value_at_quantile(p / 100.0) as f64),
                Metric::Max => latency(&|h| h.max() as f64),
                Metric::Mean => latency(&|h| h.mean()),
                Metric::ErrorRate if count == 0 => Err("no requests were made".to_string()),
                Metric::ErrorRate => Ok(errors as f64 / count as f64),
                Metric::Rps => Ok(if r.duration_s > 0.0 { count as f64 / r.duration_s } else { 0.0 }),
                Metric::Count => Ok(count as f64),
                Metric::Dropped => Ok(r.dropped as f64),
            }
        })();
        match measured {
            Ok(m) => ThresholdResult {
                threshold: self.source.clone(),
                pass: self.op.holds(m, self.limit),
                measured: Some(m),
                unit: unit.to_string(),
                detail: None,
            },
            Err(why) => ThresholdResult {
                threshold: self.source.clone(),
                pass: false,
                measured: None,
                unit: unit.to_string(),
                detail: Some(why),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{Latency, RequestStats};

    fn t(s: &str) -> Threshold {
        s.parse().unwrap()
    }

    // Goal: every documented form parses into the right metric, operator, unit-converted limit and scope.
    #[test]
    fn parses_forms() {
        let x = t("p95 < 2000ms");
        assert_eq!((x.metric, x.op, x.limit, x.scope), (Metric::Percentile(95.0), Op::Lt, 2000.0, None));
        let x = t("p(99.9) <= 1s");
        assert_eq!((x.metric, x.op, x.limit), (Metric::Percentile(99.9), Op::Le, 1000.0));
        let x = t("error_rate < 1%");
        assert_eq!((x.metric, x.limit), (Metric::ErrorRate, 0.01));
        let x = t("rps > 100");
        assert_eq!((x.metric, x.op, x.limit), (Metric::Rps, Op::Gt, 100.0));
        let x = t("london: p95 < 200ms");
        assert_eq!((x.scope.as_deref(), x.metric, x.limit), (Some("london"), Metric::Percentile(95.0), 200.0));
        let x = t("a:b: max>=250us");
        assert_eq!((x.scope.as_deref(), x.metric, x.op, x.limit), (Some("a:b"), Metric::Max, Op::Ge, 0.25));
        assert_eq!(t("p50<7").limit, 7.0);
        assert_eq!(t("error_rate <= 0.05").limit, 0.05);
        let json = serde_json::to_string(&t("p95 < 2s")).unwrap();
        assert_eq!(json, r#""p95 < 2s""#);
        assert_eq!(serde_json::from_str::<Threshold>(&json).unwrap(), t("p95 < 2s"));
    }

    // Goal: malformed thresholds are refused with the input in the message.
    #[test]
    fn refuses_garbage() {
        for bad in ["", "p95", "p95 = 2s", "p101 < 1s", "p95 < fast", "latency < 1s", ": p95 < 1s", "rps > -1"] {
            let e = bad.parse::<Threshold>().unwrap_err();
            assert!(e.to_string().contains("cannot parse threshold"), "{bad}: {e}");
        }
        assert!("x: dropped < 1".parse::<Threshold>().is_err());
    }

    fn result() -> LoadResult {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for ms in 1..=100u64 {
            h.record(ms * 1000).unwrap();
        }
        let mut r = LoadResult { duration_s: 10.0, requests: 100, ..LoadResult::default() };
        r.errors.status = 3;
        r.per_request.insert(
            "london".into(),
            RequestStats {
                count: 100,
                errors: 3,
                latency: Latency(h.clone()),
                latency_uncorrected: Latency(h),
                latency_errors: Latency::default(),
                header_counts: Default::default(),
            },
        );
        r
    }

    // Goal: thresholds pass and fail on the measured values, and a missing request name fails instead of passing.
    #[test]
    fn evaluates() {
        let r = result();
        let check = |s: &str| t(s).evaluate(&r);
        assert!(check("p95 < 100ms").pass);
        assert!(!check("p95 < 90ms").pass);
        assert!((check("p95 < 90ms").measured.unwrap() - 95.0).abs() < 0.1);
        assert!(check("london: p(99) <= 100ms").pass);
        assert!(!check("error_rate < 1%").pass);
        assert!(check("error_rate < 5%").pass);
        assert!(check("rps >= 10").pass);
        assert!(!check("rps > 10").pass);
        assert!(check("max <= 0.11s").pass); // HdrHistogram reports the top of the 100 ms bucket.
        assert!(!check("max < 99ms").pass);
        let missing = check("paris: p95 < 1s");
        assert!(!missing.pass && missing.measured.is_none() && missing.detail.unwrap().contains("paris"));
        assert!(check("dropped < 1").pass);
    }
}
