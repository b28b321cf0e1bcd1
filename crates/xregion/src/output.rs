//! What a run leaves behind: the report (`report.json`, `junit.xml`, `report.html`), `history.jsonl` and the
//! console table; and `xregion report`, which renders an old `report.json` again.

use crate::config::{Config, DeploymentKind};
use crate::error::{Error, Result};
use crate::history::HistoryLog;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use xregion_model::report::{CheckResult, RegionInfo, Report, SCHEMA_VERSION};

/// Arguments of `xregion report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The report.json to render.
    pub file: PathBuf,
    /// Where to write junit.xml and report.html (default: beside the file).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The git revision xregion was built from, if the build saw one.
fn git_revision() -> String {
    option_env!("XREGION_GIT_REVISION").unwrap_or("unknown").to_string()
}

/// The report of a run (or campaign) of `checks` against `regions`.
pub fn new_report(
    config: &Config,
    seed: u64,
    started_at: String,
    duration: Duration,
    regions: Vec<RegionInfo>,
    checks: Vec<CheckResult>,
) -> Report {
    Report {
        schema_version: SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        git_revision: git_revision(),
        seed,
        started_at,
        duration_s: duration.as_secs_f64(),
        target_kind: match config.deployment.kind {
            DeploymentKind::Lab => "lab".into(),
            DeploymentKind::Http => "http".into(),
        },
        regions,
        config: serde_json::to_value(config).unwrap_or(serde_json::Value::Null),
        checks,
    }
}

/// Writes report.json, junit.xml, report.html and history.jsonl into `out`, and prints the console table.
pub fn write_outputs(report: &Report, history: &HistoryLog, out: &Path) -> Result<()> {
    if history.overflowed() {
        eprintln!(
            "warning: the history exceeded {} events; later events were not recorded",
            crate::history::EVENTS_MAX
        );
    }
    xregion_report::write_all(report, out).with_context(|| format!("cannot write to {}", out.display()))?;
    history
        .write_jsonl(&out.join("history.jsonl"))
        .with_context(|| format!("cannot write {}", out.join("history.jsonl").display()))?;
    print!("{}", xregion_report::console::to_console(report, std::io::IsTerminal::is_terminal(&std::io::stdout())));
    Ok(())
}

/// Reads a report.json; a file that cannot be read, or is not a report, is a usage error naming it.
pub fn read_report(file: &Path) -> Result<Report> {
    let text =
        std::fs::read_to_string(file).map_err(|e| Error::Usage(format!("cannot read {}: {e}", file.display())))?;
    xregion_report::json::from_json(&text).map_err(|e| Error::Usage(format!("{} is not a report: {e}", file.display())))
}

/// `xregion report`: renders the console table, junit.xml and report.html again from a report.json.
pub fn rerender(args: &ReportArgs) -> Result<ExitCode> {
    let file = &args.file;
    let report = read_report(file)?;
    let out = args.out.clone().unwrap_or_else(|| file.parent().unwrap_or(Path::new(".")).to_path_buf());
    xregion_report::write_all(&report, &out).with_context(|| format!("cannot write to {}", out.display()))?;
    print!("{}", xregion_report::console::to_console(&report, std::io::IsTerminal::is_terminal(&std::io::stdout())));
    Ok(ExitCode::from(report.exit_code()))
}
