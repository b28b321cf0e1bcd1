//! `xregion compare OLD NEW`: what changed between two runs, and whether it regressed
//! (`xregion_report::compare` judges; this module reads the files and picks the exit code).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use xregion_model::report::Report;

/// Arguments of `xregion compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The earlier run: its report.json, or the directory holding it.
    pub old: PathBuf,
    /// The later run: its report.json, or the directory holding it.
    pub new: PathBuf,
    /// How far, in percent of the old value, a metric may move the wrong way before it is a regression (beyond
    /// the floors of 5 ms, 0.5 s and half a percentage point).
    #[arg(long, default_value_t = 20.0)]
    pub tolerance: f64,
    /// Exit 1 when anything regressed (a verdict or a metric), for CI.
    #[arg(long)]
    pub fail_on_regression: bool,
    /// Show every metric, not only regressions and improvements.
    #[arg(long)]
    pub all: bool,
}

/// Runs `xregion compare`: exit 0, or 1 with `--fail-on-regression` when something regressed, 2 on bad input.
pub fn run(args: &CompareArgs) -> Result<ExitCode> {
    if !(args.tolerance.is_finite() && args.tolerance >= 0.0) {
        return Err(Error::Usage(format!("--tolerance must be a percentage of 0 or more, not {}", args.tolerance)));
    }
    let old = read(&args.old)?;
    let new = read(&args.new)?;
    let c = xregion_report::compare::compare(&old, &new, args.tolerance / 100.0);
    println!("old: {} ({}, {}, seed {})", args.old.display(), old.started_at, old.git_revision, old.seed);
    println!("new: {} ({}, {}, seed {})", args.new.display(), new.started_at, new.git_revision, new.seed);
    if old.target_kind != new.target_kind {
        println!("note: the runs are of different targets ({} then {})", old.target_kind, new.target_kind);
    }
    print!("{}", c.to_text(args.all));
    Ok(ExitCode::from(if args.fail_on_regression && c.regressions() > 0 { 1 } else { 0 }))
}

/// Reads a report.json, given it or its directory.
fn read(path: &Path) -> Result<Report> {
    crate::output::read_report(&if path.is_dir() { path.join("report.json") } else { path.to_path_buf() })
}
