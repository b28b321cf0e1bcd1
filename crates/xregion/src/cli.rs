//! Command-line parsing and dispatch. Exit codes: 0 every check passed, 1 a check failed, 2 the run could not
//! be done (bad config, unusable deployment, a check that could not measure).

use crate::config::{self, Config, DeploymentKind};
use crate::runner::{self, CheckDef, Ctx};
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xregion_model::report::{RegionInfo, Report, SCHEMA_VERSION};

/// Proves that a multi-region active-active system keeps its promises.
#[derive(Debug, Parser)]
#[command(name = "xregion", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run suites of checks against the lab (default) or the deployment in the config file.
    Run(RunArgs),
    /// List every suite and check with its target.
    List {
        /// Config file, to show its targets.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Render console, junit.xml and report.html again from a report.json.
    Report {
        /// The report.json to render.
        file: PathBuf,
        /// Where to write junit.xml and report.html (default: beside the file).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Manage the embedded lab: a 3-region active-active deployment on this machine.
    Lab {
        /// Lab subcommand.
        #[command(subcommand)]
        command: crate::lab_cmd::LabCommand,
    },
    /// Inject a fault into a region of the lab (from `xregion lab up`) or of the --config deployment.
    Fail(crate::fault_cmd::FailArgs),
    /// Lift every fault of a region.
    Restore(crate::fault_cmd::RestoreArgs),
    /// Show every region's health and fault.
    Status(crate::fault_cmd::StatusArgs),
    /// Run a randomized fault campaign: seeded schedules of kills, partitions and latency spikes under concurrent
    /// writers, each judged for lost writes, wrong winners and divergence.
    Chaos(crate::chaos::ChaosArgs),
    /// Send HTTP load to one URL (closed model with --vus, open model with --rate) and print the latency table.
    Load(crate::load_cmd::LoadArgs),
    /// Run a load plan read as JSON on stdin and print the result as JSON (used by the runner).
    #[command(hide = true)]
    LoadWorker,
}

/// Arguments of `xregion run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// TOML config file (deployment, targets, check tuning); without it the lab runs with the defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Suite to run; repeat for several. Default: every suite.
    #[arg(long = "suite")]
    pub suites: Vec<String>,
    /// Run only the checks whose id starts with this; repeat for several.
    #[arg(long = "check")]
    pub checks: Vec<String>,
    /// Output directory for report.json, junit.xml, report.html and history.jsonl.
    #[arg(long, default_value = "xregion-out")]
    pub out: PathBuf,
    /// Seed of every random choice (default: derived from the clock, and recorded in the report).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Size of the performance suite's load: `quick` (default against the lab: at least 2,000 users, a few
    /// minutes) or `spec` (the specification's: MAX_CONCURRENT_USERS users, ramp 5 min, hold 10 min; default
    /// against a real deployment).
    #[arg(long, value_enum)]
    pub profile: Option<crate::suites::performance::Profile>,
    /// Print only the final table.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // reqwest is built with `rustls-no-provider`: a client built without a preconfigured TLS config (the lab's
    // own, the supervisor's) takes the process default, which is ring like every other TLS user here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Child processes of the lab log to stderr, which the supervisor sends to a log file.
    init_tracing();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::List { config } => list(config.as_deref()),
            Command::Report { file, out } => rerender(&file, out.as_deref()),
            Command::Lab { command } => crate::lab_cmd::run(command).await,
            Command::Fail(args) => crate::fault_cmd::fail(args).await,
            Command::Restore(args) => crate::fault_cmd::restore(args).await,
            Command::Status(args) => crate::fault_cmd::status(args).await,
            Command::Chaos(args) => crate::chaos::run(args).await,
            Command::Load(args) => crate::load_cmd::run_load(args),
            Command::LoadWorker => crate::load_cmd::run_worker(),
        }
    });
    // Do not wait for stray tasks (for example a poll still waiting on a dead endpoint) at exit.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("XREGION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Loads the config or prints its error; `Err(code)` means exit with it.
pub(crate) fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    config::load(path, &config::process_env()).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// Selects checks by `--suite` and `--check`; unknown names are errors.
fn select(suites: &[String], checks: &[String]) -> anyhow::Result<Vec<CheckDef>> {
    for s in suites {
        if !runner::SUITES.iter().any(|d| d.name == s) {
            let known: Vec<_> = runner::SUITES.iter().map(|d| d.name).collect();
            anyhow::bail!("unknown suite {s:?}; known suites: {}", known.join(", "));
        }
    }
    let all = runner::catalogue();
    let selected: Vec<CheckDef> = all
        .iter()
        .filter(|c| suites.is_empty() || suites.iter().any(|s| s == c.suite()))
        .filter(|c| checks.is_empty() || checks.iter().any(|p| c.id.starts_with(p.as_str())))
        .copied()
        .collect();
    if selected.is_empty() {
        anyhow::bail!("no check matches the selection; `xregion list` shows them");
    }
    Ok(selected)
}

fn list(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = match load_config(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let all = runner::catalogue();
    for suite in runner::SUITES {
        println!("{}  ({})", suite.name, suite.about);
        let checks: Vec<_> = all.iter().filter(|c| c.suite() == suite.name).collect();
        if checks.is_empty() {
            println!("  (no checks in this build yet)");
        }
        for c in checks {
            println!("  {:<45} {}", c.id, (c.target)(&config));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn rerender(file: &Path, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let report =
        xregion_report::json::from_json(&text).with_context(|| format!("{} is not a report", file.display()))?;
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| file.parent().unwrap_or(Path::new(".")).to_path_buf());
    xregion_report::write_all(&report, &out).with_context(|| format!("cannot write to {}", out.display()))?;
    print!("{}", xregion_report::console::to_console(&report, std::io::IsTerminal::is_terminal(&std::io::stdout())));
    Ok(ExitCode::from(report.exit_code()))
}

/// The lab's routing records and CDN in the runner's terms.
fn lab_traffic(lab: &xregion_lab::Lab) -> Option<config::Traffic> {
    let t = lab.traffic()?;
    Some(config::Traffic {
        records: t.records,
        cdn: Some(t.cdn),
        nearest: t.nearest,
        geolocation: t.geolocation,
        locations: t.locations,
        weights: t.weights.into_iter().map(|(k, v)| (k, f64::from(v))).collect(),
        capacity: t.capacity.into_iter().map(|(k, v)| (k, u64::from(v))).collect(),
        failover_order: t.failover_order,
        ..config::Traffic::default()
    })
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, so that either stops a run cleanly and takes the lab down with it.
pub(crate) async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// The git revision xregion was built from, if the build saw one.
fn git_revision() -> String {
    option_env!("XREGION_GIT_REVISION").unwrap_or("unknown").to_string()
}

/// Lifts the faults this process injected that may still be in force, then stops the lab if there is one.
pub(crate) async fn teardown(
    faults: &crate::faults::FaultInjector,
    lab: Option<xregion_lab::ControlServer>,
    progress: &crate::progress::Progress,
) {
    for (region, e) in faults.restore_injected().await {
        eprintln!("warning: could not restore {region}: {e}");
    }
    if let Some(lab) = lab {
        progress.line("[xregion] stopping the lab");
        if let Err(e) = lab.shutdown().await {
            eprintln!("warning: lab shutdown: {e}");
        }
    }
}

/// The report of a run (or campaign) of `checks` against `regions`.
pub(crate) fn new_report(
    config: &Config,
    seed: u64,
    started_at: String,
    duration: Duration,
    regions: Vec<RegionInfo>,
    checks: Vec<xregion_model::report::CheckResult>,
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
pub(crate) fn write_outputs(report: &Report, history: &crate::history::HistoryLog, out: &Path) -> anyhow::Result<()> {
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

/// The deployment a command tests, ready to use.
pub(crate) struct Target {
    /// The lab, inside its control API server, when the command started one; shut it down on every path.
    pub lab: Option<xregion_lab::ControlServer>,
    /// The regions, in configuration order.
    pub regions: Vec<RegionInfo>,
    /// Routing records and CDN: the lab's, or the config's for a real deployment.
    pub traffic: Option<config::Traffic>,
    /// How faults reach the deployment.
    pub faults: crate::faults::FaultInjector,
    /// One probe per region, in configuration order.
    pub probes: Vec<crate::probe::Probe>,
    /// The config with what the lab filled in (CA, tokens, residency, raw paths).
    pub config: Config,
}

/// The deployment of `config`: for the lab, starts it in `lab.dir` (default `OUT/lab`, cleared first) inside its
/// control API. `Ok(Err(code))` means exit with it: the lab did not start (2) or Ctrl-C came first (130).
/// Shared by `run` and `chaos`.
pub(crate) async fn start_target(
    config: &Config,
    out: &Path,
    progress: &crate::progress::Progress,
) -> anyhow::Result<Result<Target, ExitCode>> {
    let mut config = config.clone();
    let (lab, regions, traffic) = match config.deployment.kind {
        DeploymentKind::Http => {
            let regions = config.deployment.regions.iter();
            let regions = regions.map(|r| RegionInfo { name: r.name.clone(), endpoint: r.endpoint.clone() }).collect();
            (None, regions, config.deployment.traffic.clone())
        }
        DeploymentKind::Lab => {
            let dir = config.lab.dir.clone().unwrap_or_else(|| out.join("lab"));
            if dir.exists() && config.lab.dir.is_none() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot clear old lab data {}", dir.display()))?;
            }
            progress.line(&format!("[xregion] starting the lab in {}", dir.display()));
            let exe = std::env::current_exe().context("cannot find the xregion executable to start the lab")?;
            let started = tokio::select! {
                r = xregion_lab::Lab::start(&config.lab, &dir, &exe) => r,
                _ = interrupted() => {
                    eprintln!("interrupted while starting the lab");
                    return Ok(Err(ExitCode::from(130)));
                }
            };
            let l = match started {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: the lab did not start: {e}");
                    return Ok(Err(ExitCode::from(2)));
                }
            };
            let regions = l.regions();
            let traffic = lab_traffic(&l);
            if let Err(e) = fill_lab_security(&mut config, &dir) {
                eprintln!("error: cannot read the lab's CA or tokens: {e:#}");
                drop(l);
                return Ok(Err(ExitCode::from(2)));
            }
            // Binding a loopback port is quick; if it fails, dropping the lab SIGKILLs its processes.
            match xregion_lab::ControlServer::start(l).await {
                Ok(server) => (Some(server), regions, traffic),
                Err(e) => {
                    eprintln!("error: the lab's control API did not start: {e}");
                    return Ok(Err(ExitCode::from(2)));
                }
            }
        }
    };
    // A CA file must be usable; without one, the system's roots must be there if any endpoint is HTTPS.
    let https = regions.iter().any(|r| r.endpoint.starts_with("https://"));
    if (config.deployment.tls.ca_file.is_some() || https)
        && let Err(e) = crate::net::tls_config(config.deployment.tls.ca_file.as_deref())
    {
        eprintln!("error: {e:#}");
        teardown_lab(lab).await;
        return Ok(Err(ExitCode::from(2)));
    }
    let timeout = Duration::from_millis(config.deployment.request_timeout_ms);
    let client = crate::probe::client(&config.deployment);
    let faults = crate::faults::FaultInjector::from_config(&config, &regions, lab.as_ref().map(|l| l.url()));
    let probes =
        regions.iter().map(|r| crate::probe::Probe::new(&r.name, &r.endpoint, client.clone(), timeout)).collect();
    Ok(Ok(Target { lab, regions, traffic, faults, probes, config }))
}

async fn teardown_lab(lab: Option<xregion_lab::ControlServer>) {
    if let Some(lab) = lab
        && let Err(e) = lab.shutdown().await
    {
        eprintln!("warning: lab shutdown: {e}");
    }
}

/// Fills in what clients of the lab in `dir` need and the config does not set: the CA the lab's listeners chain
/// to, its tokens (read, write, admin), its residency policy, and its directory as the raw files to scan.
pub(crate) fn fill_lab_security(config: &mut Config, dir: &Path) -> anyhow::Result<()> {
    let d = &mut config.deployment;
    if d.tls.ca_file.is_none() {
        d.tls.ca_file = Some(xregion_lab::pki::Pki::ca_path(dir));
    }
    let tokens = xregion_lab::auth::Tokens::load(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    for (slot, who) in [
        (&mut d.auth.read_token, xregion_lab::auth::READER),
        (&mut d.auth.write_token, xregion_lab::auth::WRITER),
        (&mut d.auth.admin_token, xregion_lab::auth::ADMIN),
    ] {
        if slot.is_none() {
            *slot = tokens.token_of(who).map(config::Secret::new);
        }
    }
    let s = &mut d.security;
    if s.residency_regions.is_empty()
        && let Some(regions) = config.lab.residency_policy().get(&s.residency_tag)
    {
        s.residency_regions = regions.clone();
    }
    if s.raw_paths.is_empty() {
        s.raw_paths = vec![dir.to_path_buf()];
    }
    if s.replication.is_empty()
        && let Ok(spec) = xregion_lab::spec::Spec::load(&dir.join("spec.json"))
    {
        s.replication = spec
            .regions
            .iter()
            .filter(|r| r.repl_port != 0)
            .map(|r| (r.name.clone(), r.repl_addr().to_string()))
            .collect();
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = match load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let defs = match select(&args.suites, &args.checks) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    });
    let progress = crate::progress::Progress::new(args.quiet);
    let start = Instant::now();

    // The lab (inside its control API server, which the fault injector calls) lives exactly as long as this
    // function: shut down on every path, Ctrl-C included.
    let Target { lab, regions, traffic, faults, probes, config } =
        match start_target(&config, &args.out, &progress).await? {
            Ok(t) => t,
            Err(code) => return Ok(code),
        };
    let ctx = Ctx {
        config: config.clone(),
        probes,
        history: Arc::new(crate::history::HistoryLog::new(start)),
        seed,
        traffic: traffic.clone(),
        profile: args.profile.unwrap_or(match config.deployment.kind {
            DeploymentKind::Lab => crate::suites::performance::Profile::Quick,
            DeploymentKind::Http => crate::suites::performance::Profile::Spec,
        }),
        faults: faults.clone(),
        key_prefix: format!(
            "xr/{seed:016x}-{}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
        ),
        progress,
        scenarios: Default::default(),
    };
    let outcome = tokio::select! {
        results = runner::run_checks(&defs, &ctx) => Some(results),
        _ = interrupted() => None,
    };
    // Faults a check left in force (an interrupted run, a check that failed before restoring) are lifted here.
    teardown(&faults, lab, &ctx.progress).await;
    let Some(checks) = outcome else {
        eprintln!("interrupted: the lab was stopped and no report was written");
        return Ok(ExitCode::from(130));
    };
    let report = new_report(&config, seed, started_at, start.elapsed(), regions, checks);
    write_outputs(&report, &ctx.history, &args.out)?;
    println!("reports: {}", args.out.join("report.html").display());
    Ok(ExitCode::from(report.exit_code()))
}
