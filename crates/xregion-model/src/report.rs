//! The report: the source of truth of a run.
//!
//! `report.json` is this structure serialized; the console summary, `junit.xml` and `report.html` are rendered
//! from it, so an old report can be rendered again. `SCHEMA_VERSION` changes whenever a field changes meaning or a
//! required field is added; `schema/report.schema.json` describes it and a test validates real output against it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the report format written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The promise held.
    Pass,
    /// The promise was broken.
    Fail,
    /// The check could not measure (for example an endpoint was unreachable).
    Error,
    /// The check did not run, with the reason in the summary.
    Skipped,
}

impl Verdict {
    /// Lower-case name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
            Verdict::Skipped => "skipped",
        }
    }
}

/// A latency (or delay) distribution for charts and tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// What was measured, for example `us-east-1 -> us-west-2`.
    pub name: String,
    /// Number of samples.
    pub count: u64,
    /// Unit of every value, for example `ms`.
    pub unit: String,
    /// Percentiles as `(percentile, value)`, for example `(99.0, 41.2)`; `100.0` is the maximum.
    pub percentiles: Vec<(f64, f64)>,
    /// Histogram buckets as `(upper bound, count)`, ascending, for drawing the shape.
    pub buckets: Vec<(f64, u64)>,
}

/// A table shown under a check in the HTML report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Caption.
    pub title: String,
    /// Column headings.
    pub columns: Vec<String>,
    /// Rows of cells, already formatted.
    pub rows: Vec<Vec<String>>,
}

/// One line of a chart: values over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Legend label, for example `p95` or `us-east-1`.
    pub name: String,
    /// Points as `(seconds since the check started, value)`, in time order.
    pub points: Vec<(f64, f64)>,
}

/// A moment worth marking on a time chart, for example a fault or a recovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    /// Seconds since the check started.
    pub t_s: f64,
    /// What happened, for example `us-east-1 killed`.
    pub label: String,
}

/// A time chart: several series sharing one y unit, with optional markers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    /// Title, for example `Latency percentiles over time`.
    pub title: String,
    /// Unit of every y value, for example `ms`, `req/s`, `users`, `%`.
    pub y_unit: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Vertical markers.
    #[serde(default)]
    pub markers: Vec<Marker>,
}

/// A matrix of values drawn as a heatmap, for example region-to-region round trips.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heatmap {
    /// Title, for example `Round trip P95 by region pair`.
    pub title: String,
    /// Unit of every cell.
    pub unit: String,
    /// Row labels (for example the source region).
    pub rows: Vec<String>,
    /// Column labels (for example the destination region).
    pub columns: Vec<String>,
    /// `values[row][column]`; `None` where nothing was measured (for example a region to itself).
    pub values: Vec<Vec<Option<f64>>>,
}

/// A waterfall: the steps of a flow one after the other, each drawn from where the previous one ended (at their
/// medians), with its median and its P95, as k6's groups or a browser's network panel show them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waterfall {
    /// Title, for example `Journey order-and-pay: steps at P50 and P95`.
    pub title: String,
    /// Unit of every value, for example `ms`.
    pub unit: String,
    /// The steps, in order.
    pub steps: Vec<WaterfallStep>,
}

/// One step of a waterfall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaterfallStep {
    /// The step's name.
    pub label: String,
    /// Where it starts: the sum of the earlier steps' medians (and pauses).
    pub start: f64,
    /// Its median.
    pub p50: f64,
    /// Its 95th percentile.
    pub p95: f64,
    /// Its samples.
    pub count: u64,
}

/// The verdict of one region (or one endpoint: a routing record, the CDN) in a check that judges regions one by
/// one. The check fails when a region fails; it is `error` only when none failed and one could not be measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionVerdict {
    /// The region's name, or the endpoint's label (`router latency`, `CDN`).
    pub region: String,
    /// Pass, fail or error (could not be reached or verified).
    pub verdict: Verdict,
    /// One sentence: what was measured, what is wrong, or why it could not be measured.
    pub reason: String,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Stable id, `suite.area.name`, for example `cross-region.consistency.write-replicate`.
    pub id: String,
    /// The suite, the first part of the id.
    pub suite: String,
    /// Pass, fail, error or skipped.
    pub verdict: Verdict,
    /// One line: the measured figure against the target, or why it could not be measured.
    pub summary: String,
    /// The promise in words, for example `P99 < 100 ms for every region pair`.
    pub target: String,
    /// The headline figure, formatted, for the console table.
    pub measured: String,
    /// Named numbers with their unit in the name, for example `p99_ms`.
    pub metrics: BTreeMap<String, f64>,
    /// How the figures were measured and what bounds their accuracy.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Distributions to draw.
    #[serde(default)]
    pub distributions: Vec<Distribution>,
    /// Tables to show.
    #[serde(default)]
    pub tables: Vec<Table>,
    /// Time charts to draw.
    #[serde(default)]
    pub charts: Vec<Chart>,
    /// Heatmaps to draw.
    #[serde(default)]
    pub heatmaps: Vec<Heatmap>,
    /// Waterfalls to draw (the steps of a business journey).
    #[serde(default)]
    pub waterfalls: Vec<Waterfall>,
    /// Each region's own verdict, in a check that judges regions one by one; empty otherwise.
    #[serde(default)]
    pub regions: Vec<RegionVerdict>,
    /// Wall time the check took, in seconds.
    pub duration_s: f64,
}

/// One region of the deployment under test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionInfo {
    /// Region name.
    pub name: String,
    /// Probe-contract base URL.
    pub endpoint: String,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `SCHEMA_VERSION` of the build that wrote it.
    pub schema_version: u32,
    /// xregion's version.
    pub tool_version: String,
    /// Git revision of xregion's source, or `unknown`.
    pub git_revision: String,
    /// Seed of every randomized choice in the run.
    pub seed: u64,
    /// Start of the run, RFC 3339 UTC.
    pub started_at: String,
    /// Wall time of the whole run, in seconds.
    pub duration_s: f64,
    /// `lab` or `http`.
    pub target_kind: String,
    /// The regions tested.
    pub regions: Vec<RegionInfo>,
    /// The effective configuration, as TOML-equivalent JSON.
    pub config: serde_json::Value,
    /// Every check that was selected, in run order.
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// Each suite with its checks and their summed time, in the order the suites first appear.
    pub fn suite_times(&self) -> Vec<SuiteTime> {
        let mut out: Vec<SuiteTime> = Vec::new();
        for c in &self.checks {
            match out.iter_mut().find(|s| s.suite == c.suite) {
                Some(s) => {
                    s.checks += 1;
                    s.duration_s += c.duration_s;
                }
                None => out.push(SuiteTime { suite: c.suite.clone(), checks: 1, duration_s: c.duration_s }),
            }
        }
        out
    }

    /// Process exit code for this report: 0 when every check passed (or was skipped), 1 when one failed (even if
    /// another could not be measured: a broken promise is the finding that matters), 2 when none failed and one
    /// could not be measured.
    pub fn exit_code(&self) -> u8 {
        exit_code_of(self.checks.iter().map(|c| c.verdict))
    }
}

/// The exit code of a run whose checks ended with `verdicts`: 1 when one failed, else 2 when one could not
/// measure, else 0.
pub fn exit_code_of(verdicts: impl IntoIterator<Item = Verdict>) -> u8 {
    let (mut failed, mut errored) = (false, false);
    for v in verdicts {
        failed |= v == Verdict::Fail;
        errored |= v == Verdict::Error;
    }
    if failed {
        1
    } else if errored {
        2
    } else {
        0
    }
}

/// One suite's share of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteTime {
    /// The suite.
    pub suite: String,
    /// Its checks in the report.
    pub checks: usize,
    /// Their summed time, in seconds.
    pub duration_s: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(verdict: Verdict) -> CheckResult {
        CheckResult {
            id: "s.c".into(),
            suite: "s".into(),
            verdict,
            summary: String::new(),
            target: String::new(),
            measured: String::new(),
            metrics: BTreeMap::new(),
            notes: Vec::new(),
            distributions: Vec::new(),
            tables: Vec::new(),
            charts: Vec::new(),
            heatmaps: Vec::new(),
            waterfalls: Vec::new(),
            regions: Vec::new(),
            duration_s: 0.0,
        }
    }

    fn report(verdicts: &[Verdict]) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            tool_version: String::new(),
            git_revision: String::new(),
            seed: 0,
            started_at: String::new(),
            duration_s: 0.0,
            target_kind: "http".into(),
            regions: Vec::new(),
            config: serde_json::Value::Null,
            checks: verdicts.iter().map(|v| check(*v)).collect(),
        }
    }

    /// Goal: a failed check decides the exit code even beside one that could not be measured (1 beats 2), so a
    /// broken promise found on one region is never hidden behind another region's outage.
    #[test]
    fn a_failure_beats_an_error() {
        use Verdict::*;
        assert_eq!(report(&[Pass, Skipped]).exit_code(), 0);
        assert_eq!(report(&[Pass, Error]).exit_code(), 2);
        assert_eq!(report(&[Error, Fail, Pass]).exit_code(), 1);
        assert_eq!(report(&[Fail]).exit_code(), 1);
    }

    /// Goal: a report written before per-region verdicts existed still reads (the field defaults to empty).
    #[test]
    fn per_region_verdicts_are_optional() {
        let mut v = serde_json::to_value(check(Verdict::Pass)).unwrap();
        v.as_object_mut().unwrap().remove("regions");
        let c: CheckResult = serde_json::from_value(v).unwrap();
        assert!(c.regions.is_empty());
    }
}
