//! `xregion compare` on real runs of the lab: an unchanged rerun passes, an injected replication delay is flagged,
//! and a missing report is a clear error.

use crate::common::{TempDir, lab_lock, run_xregion, text};
use crate::run::RUN_LIMIT;
use std::path::Path;

/// Runs write-replicate against the lab, with `defects` under `[lab.defects]`, writing its reports to `out`.
fn replicate(dir: &TempDir, name: &str, defects: &str) -> String {
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
            "-q",
        ],
        &[],
        RUN_LIMIT,
    );
    assert!(Path::new(&out).join("report.json").exists(), "{}", text(&o));
    out.display().to_string()
}

/// Goal: `compare --fail-on-regression` passes an unchanged rerun and flags a replication delay of 150 ms (a
/// verdict that went from pass to fail, and the P99s that grew), exiting 1; a missing report exits 2 naming it.
/// The tolerance is 50%: reruns of the same build on a shared 2-core machine move a P99 by up to about 15%.
#[test]
fn compare_flags_an_injected_regression_and_passes_an_unchanged_rerun() {
    let _g = lab_lock();
    let dir = TempDir::new("compare");
    let base = replicate(&dir, "base", "");
    let rerun = replicate(&dir, "rerun", "");
    let slow = replicate(&dir, "slow", "replication_delay_ms = 150");
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
}
