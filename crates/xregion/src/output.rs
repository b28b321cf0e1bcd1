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
    #[command(flatten)]
    pub history: HistoryArgs,
}

/// `--history DIR` and `--history-runs N`: where runs are kept, and how many the HTML report's trends show.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HistoryArgs {
    /// A directory of earlier runs' report.json files: report.html draws the trends of the last runs kept there
    /// that started before this one (each check's verdict and headline metrics, run by run). `run` and `merge`
    /// keep their report there too (a shard's and an interrupted run's are not kept: keep the merge's).
    #[arg(long, value_name = "DIR")]
    pub history: Option<PathBuf>,
    /// How many runs the trends show, this one included.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..=100))]
    pub history_runs: u32,
}

/// With `--history DIR`: the runs kept there that started before this one (oldest first, at most `N - 1`),
/// after keeping `report` there when `keep` (as `START-seedSEED.json`; a later render of the same run, such as a
/// second merge of its shards, replaces it). A run is its start time, seed and revision. Nothing here fails the
/// run: a directory that cannot be used, or a file that is not a report, is a warning naming it.
pub fn trend(args: &HistoryArgs, report: &Report, keep: bool) -> Vec<Report> {
    let Some(dir) = &args.history else { return Vec::new() };
    let same_run = |r: &Report| {
        r.started_at == report.started_at && r.seed == report.seed && r.git_revision == report.git_revision
    };
    if keep {
        let name = format!("{}-seed{}.json", report.started_at.replace(':', "-"), report.seed);
        let path = dir.join(name);
        let kept = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, xregion_report::to_json(report)));
        if let Err(e) = kept {
            eprintln!("warning: cannot keep this run in {}: {e}", path.display());
        }
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("warning: cannot read the history {}: {e}; the report has no trends", dir.display());
            return Vec::new();
        }
    };
    let mut earlier: Vec<Report> = Vec::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let read = std::fs::read_to_string(&path).map_err(|e| e.to_string());
        match read.and_then(|t| xregion_report::from_json(&t).map_err(|e| e.to_string())) {
            Ok(r) if r.started_at < report.started_at || (r.started_at == report.started_at && !same_run(&r)) => {
                earlier.push(r)
            }
            // This run itself, or one that started after it.
            Ok(_) => {}
            Err(e) => eprintln!("warning: {} is not a report; the trends leave it out: {e}", path.display()),
        }
    }
    earlier.sort_by(|a, b| (&a.started_at, a.seed).cmp(&(&b.started_at, b.seed)));
    let skip = earlier.len().saturating_sub(args.history_runs as usize - 1);
    earlier.into_iter().skip(skip).collect()
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
pub fn write_outputs(report: &Report, earlier: &[Report], history: &HistoryLog, out: &Path) -> Result<()> {
    if history.overflowed() {
        eprintln!(
            "warning: the history exceeded {} events; later events were not recorded",
            crate::history::EVENTS_MAX
        );
    }
    xregion_report::write_all_with_trend(report, earlier, out)
        .with_context(|| format!("cannot write to {}", out.display()))?;
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
    let earlier = trend(&args.history, &report, false);
    xregion_report::write_all_with_trend(&report, &earlier, &out)
        .with_context(|| format!("cannot write to {}", out.display()))?;
    print!("{}", xregion_report::console::to_console(&report, std::io::IsTerminal::is_terminal(&std::io::stdout())));
    Ok(ExitCode::from(report.exit_code()))
}
