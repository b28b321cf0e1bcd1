//! The console summary: aligned columns, totals and exit meaning.

use crate::sample;
use xregion_model::report::Verdict;
use xregion_report::to_console;

/// Goal: columns line up whatever the lengths. Method: every row's CHECK and TARGET columns start at the same
/// character offset as the header's.
#[test]
fn columns_are_aligned() {
    let mut r = sample::report();
    r.checks[1].target = "a much longer target than the others, with unicode: µs ≤ 5".into();
    let out = to_console(&r, false);
    let lines: Vec<&str> = out.lines().take(1 + r.checks.len()).collect();
    let col = |line: &str, needle: &str| line.find(needle).map(|b| line[..b].chars().count());
    let check_col = col(lines[0], "CHECK").unwrap();
    let target_col = col(lines[0], "TARGET").unwrap();
    let measured_col = col(lines[0], "MEASURED").unwrap();
    for (line, c) in lines[1..].iter().zip(&r.checks) {
        assert_eq!(col(line, &c.id), Some(check_col), "{out}");
        let t: String = c.target.chars().take(20).collect();
        assert_eq!(col(line, &t), Some(target_col), "{out}");
        assert_eq!(col(line, &c.measured), Some(measured_col), "{out}");
    }
    assert!(out.lines().nth(1).unwrap().starts_with("PASS "));
}

/// Goal: the totals and the exit meaning match the verdicts. Method: the sample has one of each non-pass verdict.
#[test]
fn totals_and_exit_meaning() {
    let r = sample::report();
    let out = to_console(&r, false);
    assert!(out.contains("3 passed, 1 failed, 1 errors, 1 skipped"), "{out}");
    assert!(out.contains("exit 1:"), "a failure beats an error: {out}");
    let mut errors_only = r.clone();
    errors_only.checks.retain(|c| c.verdict != Verdict::Fail);
    assert!(to_console(&errors_only, false).contains("exit 2:"));
    let mut ok = r.clone();
    ok.checks.retain(|c| c.verdict == Verdict::Pass);
    assert!(to_console(&ok, false).contains("exit 0: every check passed"));
}

/// Goal: colour is only added when asked, and never changes the alignment. Method: strip ANSI and compare.
#[test]
fn color_only_when_asked() {
    let r = sample::report();
    let plain = to_console(&r, false);
    let colored = to_console(&r, true);
    assert!(!plain.contains('\x1b'));
    assert!(colored.contains("\x1b[1;31mFAIL\x1b[0m"));
    let mut stripped = String::new();
    let mut in_escape = false;
    for ch in colored.chars() {
        match (in_escape, ch) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => stripped.push(c),
        }
    }
    assert_eq!(stripped, plain);
}

/// Goal: each check's time is shown, and every suite's total beside the whole run's. Method: the sample's times,
/// summed by hand per suite.
#[test]
fn times_per_check_and_per_suite() {
    let r = sample::report();
    let out = to_console(&r, false);
    assert!(out.lines().next().unwrap().trim_end().ends_with("TIME"), "{out}");
    let line = out.lines().find(|l| l.starts_with("time by suite: ")).expect("a suite line");
    for s in r.suite_times() {
        let expected: f64 = r.checks.iter().filter(|c| c.suite == s.suite).map(|c| c.duration_s).sum();
        assert!((s.duration_s - expected).abs() < 1e-9);
        let plural = if s.checks == 1 { "" } else { "s" };
        assert!(line.contains(&format!("{} {:.1} s ({} check{plural})", s.suite, expected, s.checks)), "{line}");
    }
    assert!(line.ends_with(&format!("whole run {:.1} s", r.duration_s)), "{line}");
}

/// Goal: the regions that did not pass are named under the table, each with its check and reason, and a passing
/// region is not. Method: the sample's write check has a passing, a failing and an unreachable region.
#[test]
fn regions_that_did_not_pass_are_listed() {
    let out = to_console(&sample::report(), false);
    let block = out.split("regions that did not pass:\n").nth(1).expect("a region block");
    let lines: Vec<&str> = block.lines().take_while(|l| l.starts_with("  ")).collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("FAIL") && lines[0].contains("us-west-2") && lines[0].contains("2 lost"), "{out}");
    assert!(lines[1].contains("ERROR") && lines[1].contains("eu-west-1") && lines[1].contains("refused"), "{out}");
    assert!(!block.contains("us-east-1"), "{out}");
}
