//! Run-to-run comparison: `xregion compare OLD NEW` reads two reports and says, check by check, which verdicts and
//! metrics changed, and which changes are regressions.
//!
//! A metric's direction (lower or higher is better) comes from its name ([`direction`]): times and latencies
//! (`…_ms`, `…_s`) and counts of bad outcomes (errors, lost, divergent, violations…) are better lower;
//! availability, hit rates, throughput and success shares are better higher. Measuring-side figures
//! (`measurement.*`), settings echoed into the report (intervals, tolerances, fault times), resolutions and maxima
//! (one sample each) are shown but never judged. A judged metric regresses when it moves the wrong way by more
//! than the tolerance (a share of the old value) and more than its unit's floor, so that a 0.3 ms wobble in a
//! 1 ms figure is not a regression, while any lost write where there was none is. A verdict that gets worse
//! (pass to fail or error) is always a regression.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use xregion_model::report::{Report, Verdict};

/// Which way a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Times, latencies, counts of bad outcomes.
    Lower,
    /// Availability, hit rates, throughput, success shares.
    Higher,
}

/// Names (substrings) of metrics that are settings, measuring precision or single samples: shown, never judged.
const NOT_JUDGED: &[&str] = &[
    "measurement.",
    "interval",
    "tolerance",
    "resolution",
    "max",
    "fault_injected_at",
    "phase_from",
    "phase_to",
    "fault_s",
    "target",
    "evidence_min",
    "pause",
    "slowest",
];
/// Names (substrings) of metrics that are better higher.
const HIGHER: &[&str] = &[
    "availability",
    "hit_rate",
    "rps",
    "ok_pct",
    "reads_ok",
    "share_pct_min",
    "lower_bound_pct",
    "days_left_min",
    "worst_window_pct",
    "correct_winners",
    "survived",
];
/// Names (substrings) of metrics that count bad outcomes, better lower.
const BAD_COUNTS: &[&str] = &[
    "error",
    "lost",
    "divergent",
    "never_visible",
    "failed",
    "violat",
    "wrong",
    "dropped",
    "phantom",
    "raw_hits",
    "plaintext_hits",
    "unaudited",
    "unexplained",
    "corrupt",
    "late",
    "refused",
    "not_ok",
    "legacy_versions_accepted",
    "minority_acks",
    "missing",
    "bad_windows",
    "thin_windows",
    "reconnects",
    "deviation_sigma",
    "version_conflicts",
    "oversold",
];

/// Which way `metric` is better, or `None` when it is not judged.
pub fn direction(metric: &str) -> Option<Better> {
    let m = metric.to_ascii_lowercase();
    // Per-pair and per-location metrics carry their subject after the first dot.
    let name = m.split('.').next().unwrap_or(&m);
    if NOT_JUDGED.iter().any(|s| m.contains(s)) || m.starts_with("x_cache") || m.starts_with("status.") {
        return None;
    }
    if HIGHER.iter().any(|s| name.contains(s)) {
        return Some(Better::Higher);
    }
    // `hit_rate_pct` is higher-better (above); other `hits` (raw, plaintext) are findings.
    if BAD_COUNTS.iter().any(|s| name.contains(s)) || is_time(name) {
        return Some(Better::Lower);
    }
    None
}

/// Whether a metric name is a time: `…_ms`, `…_s`, or a percentile of one (`…_ms_p99`).
fn is_time(name: &str) -> bool {
    name.ends_with("_ms") || name.ends_with("_s") || name.contains("_ms_p") || name.contains("_s_p")
}

/// The smallest change of `metric` that can count as a regression, in its unit: 5 ms, 0.5 s, half a percentage
/// point; 0 for counts.
fn floor(metric: &str) -> f64 {
    let name = metric.split('.').next().unwrap_or(metric);
    if name.ends_with("_ms") || name.contains("_ms_p") {
        5.0
    } else if name.ends_with("_s") || name.contains("_s_p") || name.ends_with("_pct") {
        0.5
    } else {
        0.0
    }
}

/// What became of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Moved the wrong way beyond the tolerance.
    Regression,
    /// Moved the right way beyond the tolerance.
    Improvement,
    /// Within the tolerance.
    Within,
    /// Not judged (no direction), or only in one report.
    Info,
}

/// One metric of one check in both reports.
#[derive(Debug, Clone)]
pub struct MetricDelta {
    /// The check.
    pub check: String,
    /// The metric.
    pub metric: String,
    /// Old value, if the old report has it.
    pub old: Option<f64>,
    /// New value, if the new report has it.
    pub new: Option<f64>,
    /// The judgement.
    pub change: Change,
}

/// One check's verdicts in both reports.
#[derive(Debug, Clone)]
pub struct VerdictDelta {
    /// The check.
    pub check: String,
    /// Old verdict, if the old report ran the check.
    pub old: Option<Verdict>,
    /// New verdict, if the new report ran the check.
    pub new: Option<Verdict>,
}

impl VerdictDelta {
    /// Whether the verdict got worse: a pass (or skip) that became fail or error, or an error that became a fail.
    pub fn is_regression(&self) -> bool {
        let rank = |v: Verdict| match v {
            Verdict::Pass | Verdict::Skipped => 0,
            Verdict::Error => 1,
            Verdict::Fail => 2,
        };
        matches!((self.old, self.new), (Some(o), Some(n)) if rank(n) > rank(o))
    }
}

/// Two reports compared.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The tolerance used, as a share (0.2 = 20%).
    pub tolerance: f64,
    /// Every check in either report, in the new report's order, then the old report's leftovers.
    pub verdicts: Vec<VerdictDelta>,
    /// Every metric in either report.
    pub metrics: Vec<MetricDelta>,
}

/// Compares `new` against `old`; a judged metric that moves the wrong way by more than `tolerance` (a share of the
/// old value) and more than its unit's floor is a regression.
pub fn compare(old: &Report, new: &Report, tolerance: f64) -> Comparison {
    let old_checks: BTreeMap<&str, _> = old.checks.iter().map(|c| (c.id.as_str(), c)).collect();
    let new_checks: BTreeMap<&str, _> = new.checks.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut ids: Vec<&str> = new.checks.iter().map(|c| c.id.as_str()).collect();
    ids.extend(old.checks.iter().map(|c| c.id.as_str()).filter(|id| !new_checks.contains_key(id)));
    let mut verdicts = Vec::new();
    let mut metrics = Vec::new();
    for id in ids {
        let (o, n) = (old_checks.get(id), new_checks.get(id));
        verdicts.push(VerdictDelta { check: id.to_string(), old: o.map(|c| c.verdict), new: n.map(|c| c.verdict) });
        let mut names: Vec<&String> = n.map(|c| c.metrics.keys().collect()).unwrap_or_default();
        if let Some(o) = o {
            names.extend(o.metrics.keys().filter(|k| n.is_none_or(|n| !n.metrics.contains_key(*k))));
        }
        for name in names {
            let ov = o.and_then(|c| c.metrics.get(name).copied());
            let nv = n.and_then(|c| c.metrics.get(name).copied());
            let change = match (ov, nv, direction(name)) {
                (Some(ov), Some(nv), Some(better)) => judge(ov, nv, better, tolerance, floor(name)),
                _ => Change::Info,
            };
            metrics.push(MetricDelta { check: id.to_string(), metric: name.clone(), old: ov, new: nv, change });
        }
    }
    Comparison { tolerance, verdicts, metrics }
}

fn judge(old: f64, new: f64, better: Better, tolerance: f64, floor: f64) -> Change {
    let worse_by = match better {
        Better::Lower => new - old,
        Better::Higher => old - new,
    };
    let threshold = (tolerance * old.abs()).max(floor);
    if worse_by > threshold {
        Change::Regression
    } else if -worse_by > threshold {
        Change::Improvement
    } else {
        Change::Within
    }
}

impl Comparison {
    /// Verdicts and metrics that regressed.
    pub fn regressions(&self) -> usize {
        self.verdicts.iter().filter(|v| v.is_regression()).count()
            + self.metrics.iter().filter(|m| m.change == Change::Regression).count()
    }

    /// The comparison as text: every changed verdict, then every regression and improvement (every metric with
    /// `all`), then a one-line summary.
    pub fn to_text(&self, all: bool) -> String {
        let v = |v: Option<Verdict>| v.map_or("-".to_string(), |v| v.as_str().to_string());
        let x = |x: Option<f64>| x.map_or("-".to_string(), fmt_value);
        let mut out = String::new();
        let changed: Vec<&VerdictDelta> = self.verdicts.iter().filter(|d| d.old != d.new).collect();
        if !changed.is_empty() {
            let _ = writeln!(out, "verdicts that changed:");
            for d in &changed {
                let flag = if d.is_regression() { "REGRESSION" } else { "" };
                let _ = writeln!(out, "  {:<48} {:>8} -> {:<8} {flag}", d.check, v(d.old), v(d.new));
            }
        }
        let shown: Vec<&MetricDelta> = self
            .metrics
            .iter()
            .filter(|m| all || matches!(m.change, Change::Regression | Change::Improvement))
            .collect();
        if !shown.is_empty() {
            let _ = writeln!(out, "{:<48} {:<40} {:>12} {:>12} {:>9}", "CHECK", "METRIC", "OLD", "NEW", "CHANGE");
            for m in shown {
                let pct = match (m.old, m.new) {
                    (Some(o), Some(n)) if o != 0.0 => format!("{:+.1}%", (n - o) / o.abs() * 100.0),
                    (Some(_), Some(n)) if n != 0.0 => "new".to_string(),
                    _ => String::new(),
                };
                let flag = match m.change {
                    Change::Regression => "REGRESSION",
                    Change::Improvement => "improved",
                    Change::Within | Change::Info => "",
                };
                let _ = writeln!(
                    out,
                    "{:<48} {:<40} {:>12} {:>12} {:>9} {flag}",
                    m.check,
                    m.metric,
                    x(m.old),
                    x(m.new),
                    pct
                );
            }
        }
        let judged = self.metrics.iter().filter(|m| m.change != Change::Info).count();
        let improved = self.metrics.iter().filter(|m| m.change == Change::Improvement).count();
        let _ = writeln!(
            out,
            "{} regressions, {improved} improvements, {} verdicts changed; {judged} metrics judged (tolerance {}%, \
             floors 5 ms, 0.5 s, 0.5 points), {} not judged",
            self.regressions(),
            changed.len(),
            fmt_value(self.tolerance * 100.0),
            self.metrics.len() - judged
        );
        out
    }
}

fn fmt_value(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{x:.0}") } else { format!("{x:.2}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: names say which way a metric is better, and settings, resolutions and single samples are not judged.
    #[test]
    fn directions_come_from_names() {
        assert_eq!(direction("p99_ms"), Some(Better::Lower));
        assert_eq!(direction("p99_ms.us-east-1_to_eu-west-1"), Some(Better::Lower));
        assert_eq!(direction("replication_p99_ms"), Some(Better::Lower));
        assert_eq!(direction("write_ack_ms_p99"), Some(Better::Lower));
        assert_eq!(direction("lost_writes"), Some(Better::Lower));
        assert_eq!(direction("error_rate_pct"), Some(Better::Lower));
        assert_eq!(direction("availability_pct"), Some(Better::Higher));
        assert_eq!(direction("hit_rate_pct"), Some(Better::Higher));
        assert_eq!(direction("rps"), Some(Better::Higher));
        for unjudged in
            ["poll_interval_ms", "resolution_ms_p99", "max_ms", "slowest_ms", "measurement.lag_ms_p99", "writes_acked"]
        {
            assert_eq!(direction(unjudged), None, "{unjudged}");
        }
    }

    /// Goal: a regression needs both the tolerance and the floor; any bad count where there was none regresses.
    #[test]
    fn tolerance_and_floor_both_apply() {
        assert_eq!(judge(68.0, 78.0, Better::Lower, 0.2, 5.0), Change::Within);
        assert_eq!(judge(68.0, 120.0, Better::Lower, 0.2, 5.0), Change::Regression);
        assert_eq!(judge(1.0, 3.0, Better::Lower, 0.2, 5.0), Change::Within);
        assert_eq!(judge(0.0, 1.0, Better::Lower, 0.2, 0.0), Change::Regression);
        assert_eq!(judge(99.99, 98.0, Better::Higher, 0.01, 0.5), Change::Regression);
        assert_eq!(judge(120.0, 68.0, Better::Lower, 0.2, 5.0), Change::Improvement);
    }
}
