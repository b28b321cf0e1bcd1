//! `junit.xml`: one test suite per xregion suite, one test case per check, for CI systems that show JUnit.
//!
//! Verdicts map to JUnit as: pass → success, fail → `<failure>`, error → `<error>`, skipped → `<skipped>`, each
//! carrying the check's summary as its message. Metrics become test-case properties, and the target, measured
//! figure, notes and the titles of charts and heatmaps go to `system-out`, so a CI page shows why a check failed
//! without opening the HTML report.

use crate::ReportError;
use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;
use xregion_model::report::{CheckResult, Report, Verdict};

/// The report as a JUnit XML document.
pub fn to_junit(report: &Report) -> Result<String, ReportError> {
    let mut junit = quick_junit::Report::new("xregion");
    junit.set_time(seconds(report.duration_s));
    // Suites keep the run order of their first check, so the XML reads like the console.
    let mut suites: Vec<TestSuite> = Vec::new();
    for check in &report.checks {
        let i = match suites.iter().position(|s| s.name.as_str() == check.suite) {
            Some(i) => i,
            None => {
                let mut s = TestSuite::new(check.suite.as_str());
                s.add_properties([
                    Property::new("seed", report.seed.to_string()),
                    Property::new("git_revision", report.git_revision.as_str()),
                    Property::new("tool_version", report.tool_version.as_str()),
                    Property::new("target_kind", report.target_kind.as_str()),
                    Property::new("started_at", report.started_at.as_str()),
                ]);
                suites.push(s);
                suites.len() - 1
            }
        };
        suites[i].add_test_case(test_case(check));
    }
    for s in &mut suites {
        let total: f64 = report.checks.iter().filter(|c| c.suite == s.name.as_str()).map(|c| c.duration_s).sum();
        s.set_time(seconds(total));
    }
    junit.add_test_suites(suites);
    Ok(junit.to_string()?)
}

fn test_case(check: &CheckResult) -> TestCase {
    let status = match check.verdict {
        Verdict::Pass => TestCaseStatus::success(),
        Verdict::Fail => non_success(NonSuccessKind::Failure, "fail", check),
        Verdict::Error => non_success(NonSuccessKind::Error, "error", check),
        Verdict::Skipped => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(check.summary.as_str());
            s
        }
    };
    let mut tc = TestCase::new(check.id.as_str(), status);
    tc.set_classname(check.suite.as_str());
    tc.set_time(seconds(check.duration_s));
    tc.add_properties(check.metrics.iter().map(|(k, v)| Property::new(k.as_str(), v.to_string())));
    tc.set_system_out(system_out(check));
    tc
}

fn non_success(kind: NonSuccessKind, ty: &str, check: &CheckResult) -> TestCaseStatus {
    let mut s = TestCaseStatus::non_success(kind);
    s.set_message(check.summary.as_str());
    s.set_type(ty);
    s.set_description(format!("target: {}\nmeasured: {}", check.target, check.measured));
    s
}

fn system_out(check: &CheckResult) -> String {
    let mut out = format!("{}\ntarget: {}\nmeasured: {}\n", check.summary, check.target, check.measured);
    for n in &check.notes {
        out.push_str("note: ");
        out.push_str(n);
        out.push('\n');
    }
    // The drawings themselves exist only in report.html; naming them tells a CI reader there is more to see.
    for c in &check.charts {
        out.push_str("chart (report.html): ");
        out.push_str(&c.title);
        out.push('\n');
    }
    for m in &check.heatmaps {
        out.push_str("heatmap (report.html): ");
        out.push_str(&m.title);
        out.push('\n');
    }
    out
}

/// A duration from seconds; negative or non-finite inputs (a runner bug) become zero instead of panicking.
fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}
