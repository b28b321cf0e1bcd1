//! Command-line parsing and dispatch: each subcommand's arguments and function live in its own module; this one
//! composes them, runs the chosen one, and turns its error into one printed line and an exit code (`error`).

use crate::error::Error;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    Run(crate::runner::RunArgs),
    /// List every suite and check with its target.
    List {
        /// Config file, to show its targets.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Render console, junit.xml and report.html again from a report.json.
    Report(crate::output::ReportArgs),
    /// Compare two runs' reports: verdicts that changed, and metrics that moved beyond a tolerance, flagged as
    /// regressions or improvements (`--fail-on-regression` exits 1 on any regression, for CI).
    Compare(crate::compare_cmd::CompareArgs),
    /// Merge the shards of a run (`xregion run --shard I/N`, each with its --out directory) exactly, and judge the
    /// load checks on the union; the other checks come from shard 0.
    Merge(crate::merge_cmd::MergeArgs),
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
    /// xregion's table in a database target: print its DDL, or create it.
    Db {
        /// Db subcommand.
        #[command(subcommand)]
        command: crate::db_cmd::DbCommand,
    },
    /// Run the lab's WAN emulator as a standalone TCP proxy driven by a links file, so that a third-party cluster on
    /// one machine replicates through inter-region delays; `PUT /links/FROM/TO` on its admin API with
    /// `{"rule":"refuse"}` (or `drop`, `delay`, `pass`) cuts or slows a link.
    Wan {
        /// The links file (TOML: `[[link]]` from, to, listen, upstream, one_way_ms; optional jitter_ms, admin).
        #[arg(long)]
        links: PathBuf,
    },
    /// Send HTTP load to one URL (closed model with --vus, open model with --rate) and print the latency table.
    Load(Box<crate::load_cmd::LoadArgs>),
    /// Run a load plan read as JSON on stdin and print the result as JSON (used by the runner).
    #[command(hide = true)]
    LoadWorker,
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
            Command::Run(args) => crate::runner::run(args).await,
            Command::List { config } => crate::runner::list(config.as_deref()),
            Command::Report(args) => crate::output::rerender(&args),
            Command::Compare(args) => crate::compare_cmd::run(&args),
            Command::Merge(args) => crate::merge_cmd::run(&args).await,
            Command::Lab { command } => crate::lab_cmd::run(command).await.map_err(Error::Other),
            Command::Fail(args) => crate::fault_cmd::fail(args).await,
            Command::Restore(args) => crate::fault_cmd::restore(args).await,
            Command::Status(args) => crate::fault_cmd::status(args).await,
            Command::Chaos(args) => crate::chaos::run(args).await,
            Command::Wan { links } => crate::lab_cmd::wan(&links).await.map_err(Error::Other),
            Command::Db { command } => crate::db_cmd::run(command).await,
            Command::Load(args) if args.journey.is_some() => {
                crate::load_cmd::run_journeys(&args).await.map_err(Error::Other)
            }
            Command::Load(args) => crate::load_cmd::run_load(*args).map_err(Error::Other),
            Command::LoadWorker => crate::load_cmd::run_worker().map_err(Error::Other),
        }
    });
    // Do not wait for stray tasks (for example a poll still waiting on a dead endpoint) at exit.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", e.to_message());
            e.exit_code()
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("XREGION_LOG")
        // The database pool's own warnings (a connection that broke, one that could not be made) are what the
        // region clients already turn into one classified error per operation; they are not for the console.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,deadpool=error,tokio_postgres=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
