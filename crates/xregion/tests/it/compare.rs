//! `xregion compare` on real runs of the lab: an unchanged rerun passes, an injected replication delay is flagged,
//! and a missing report is a clear error. The same runs keep their reports in a history directory, whose trends
//! the HTML report draws.

use crate::common::{TempDir, lab_lock, run_xregion, text};
use crate::run::RUN_LIMIT;
use std::path::Path;

/// Runs write-replicate against the lab, with `defects` under `[lab.defects]`, writing its reports to `out` and
/// keeping its report.json in `DIR/history`.
fn replicate(dir: &TempDir, name: &str, defects: &str) -> (String, std::process::Output) {
    let config = dir.path().join(format!("{name}.toml"));
    std::fs::write(&config, format!("[lab.defects]\n{defects}\n")).expect("config");
    let out = dir.path().join(name);
    let o = run_xregion(
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--check",
            "cross-region.consistency.write-replicate",
            "--out",
            out.to_str().unwrap(),
            "--history",
            dir.path().join("history").to_str().unwrap(),
            "-q",
        ],
        &[],
        RUN_LIMIT,
    );
    assert!(Path::new(&out).join("report.json").exists(), "{}", text(&o));
    (out.display().to_string(), o)
}

/// `DIR/report.html`.
fn html(dir: &str) -> String {
    std::fs::read_to_string(Path::new(dir).join("report.html")).expect("report.html")
}

/// Goal: `compare --fail-on-regression` passes an unchanged rerun and flags a replication delay of 150 ms (a
/// verdict that went from pass to fail, and the P99s that grew), exiting 1; a missing report exits 2 naming it.
/// The tolerance is 50%: reruns of the same build on a shared 2-core machine move a P99 by up to about 15%.
#[test]
fn compare_flags_an_injected_regression_and_passes_an_unchanged_rerun() {
    let _g = lab_lock();
    let dir = TempDir::new("compare");
    let (base, _) = replicate(&dir, "base", "");
    let (rerun, _) = replicate(&dir, "rerun", "");
    std::fs::write(dir.path().join("history").join("notes.json"), "{}").expect("a stray file");
    let (slow, slow_run) = replicate(&dir, "slow", "replication_delay_ms = 150");
    let compare =
        |new: &str| run_xregion(&["compare", &base, new, "--tolerance", "50", "--fail-on-regression"], &[], RUN_LIMIT);

    let same = compare(&rerun);
    let out = String::from_utf8_lossy(&same.stdout).to_string();
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    assert!(out.contains("0 regressions") && out.contains("metrics judged"), "{out}");

    let worse = compare(&slow);
    let out = String::from_utf8_lossy(&worse.stdout).to_string();
    assert_eq!(worse.status.code(), Some(1), "{}", text(&worse));
    let p99 = out.lines().find(|l| l.contains(" p99_ms ")).unwrap_or_default();
    assert!(p99.contains("REGRESSION"), "{out}");
    assert!(out.lines().any(|l| l.contains("write-replicate") && l.contains("pass -> fail")), "{out}");

    let missing = run_xregion(&["compare", &base, "/nonexistent/report.json"], &[], RUN_LIMIT);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/report.json"),
        "{}",
        text(&missing)
    );

    // The history: three runs kept; the first has no trends, the third draws three, with the failure and the P99
    // that grew; the stray file is left out, named.
    let kept: Vec<_> = std::fs::read_dir(dir.path().join("history")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(kept.len(), 4, "three runs and the stray file: {kept:?}");
    assert!(!html(&base).contains("id=\"trends\""), "the first run has nothing to trend");
    let h = html(&slow);
    assert!(h.contains("Trends over the last 3 runs"), "{}", text(&slow_run));
    let row = h
        .lines()
        .find(|l| l.contains("<tr><td class=\"mono\">cross-region.consistency.write-replicate</td><td class=\"cell"));
    let row = row.expect("a verdict row");
    assert_eq!(row.matches("cell v-pass").count(), 2, "{row}");
    assert_eq!(row.matches("cell v-fail").count(), 1, "{row}");
    let p99 = h.lines().find(|l| l.contains("<td class=\"mono\">p99_ms</td>")).expect("a p99_ms trend row");
    assert!(p99.contains("<svg class=\"spark\"") && p99.contains("class=\"worse\""), "{p99}");
    assert!(String::from_utf8_lossy(&slow_run.stderr).contains("notes.json is not a report"), "{}", text(&slow_run));
    // Rendering a kept run again does not count it twice.
    let again = dir.path().join("again");
    let o = run_xregion(
        &[
            "report",
            &format!("{slow}/report.json"),
            "--out",
            again.to_str().unwrap(),
            "--history",
            dir.path().join("history").to_str().unwrap(),
            "--history-runs",
            "2",
        ],
        &[],
        RUN_LIMIT,
    );
    assert_eq!(o.status.code(), Some(1), "the slow run's exit code: {}", text(&o));
    let h = html(again.to_str().unwrap());
    assert!(h.contains("Trends over the last 2 runs"), "{}", text(&o));
    let row = h.lines().find(|l| l.contains("write-replicate</td><td class=\"cell")).expect("a verdict row");
    assert_eq!(row.matches("cell v-pass").count(), 1, "the rerun, before it: {row}");
    assert_eq!(row.matches("cell v-fail").count(), 1, "the slow run, once: {row}");
}
