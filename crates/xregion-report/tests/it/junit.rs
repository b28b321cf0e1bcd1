//! junit.xml: one test case per check, verdicts mapped to JUnit elements.

use crate::sample;
use xregion_report::to_junit;

/// Goal: CI sees one test case per check, grouped by suite, with fail as failure, error as error and skipped as
/// skipped. Method: render the sample and count the elements.
#[test]
fn one_testcase_per_check() {
    let r = sample::report();
    let xml = to_junit(&r).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), r.checks.len(), "{xml}");
    for c in &r.checks {
        assert!(xml.contains(&format!("name=\"{}\"", c.id)), "missing {}", c.id);
    }
    assert_eq!(xml.matches("<testsuite ").count(), 3, "cross-region, failover and lab");
    assert!(xml.contains("classname=\"cross-region\""));
    assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
    assert_eq!(xml.matches("<error").count(), 1);
    assert_eq!(xml.matches("<skipped").count(), 1);
    // The failure carries the (escaped) summary, and metrics are properties.
    assert!(xml.contains("lost 2 writes &lt;script&gt;"), "{xml}");
    assert!(!xml.contains("<script>"));
    assert!(xml.contains("name=\"p99_ms_worst\" value=\"80.1\""), "{xml}");
    assert!(xml.contains("name=\"seed\" value=\"7\""));
    assert!(xml.contains("time=\"1.5"), "durations: {xml}");
    // Charts and heatmaps are only named, pointing the reader to report.html.
    assert!(xml.contains("chart (report.html): Latency percentiles over time\n"), "{xml}");
    assert!(xml.contains("heatmap (report.html): Round trip P95 by region pair\n"), "{xml}");
}

/// Goal: a report with no checks, or nonsense durations, still renders. Method: empty checks; negative time.
#[test]
fn degenerate_reports_render() {
    let mut r = sample::report();
    r.checks[0].duration_s = -1.0;
    r.duration_s = f64::NAN;
    assert!(to_junit(&r).is_ok());
    r.checks.clear();
    let xml = to_junit(&r).unwrap();
    assert!(!xml.contains("<testcase"));
}
