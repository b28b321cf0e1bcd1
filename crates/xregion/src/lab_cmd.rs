//! `xregion lab …`: glue between the CLI and `xregion-lab`.
//!
//! `up`, `status` and `down` are for people; `node`, `wan` and `router` are hidden: the lab's supervisor starts them as
//! child processes of the same binary.

use anyhow::Context;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use xregion_lab::LabConfig;

use crate::target::DEFAULT_LAB_DIR;

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Start the lab in the foreground and keep it running until Ctrl-C or `xregion lab down`.
    Up {
        /// Config file; only its `[lab]` table is used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Lab data directory (default: ./xregion-lab, or lab.dir from the config).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Show the running lab's regions and their health (a crashed region: how and when its process ended).
    Status {
        /// Lab data directory.
        #[arg(long, default_value = DEFAULT_LAB_DIR)]
        dir: PathBuf,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop the running lab and wait until every process is gone.
    Down {
        /// Lab data directory.
        #[arg(long, default_value = DEFAULT_LAB_DIR)]
        dir: PathBuf,
    },
    /// Run one region (started by the supervisor).
    #[command(hide = true)]
    Node {
        /// The lab spec file.
        #[arg(long)]
        spec: PathBuf,
        /// The region to run.
        #[arg(long)]
        region: String,
    },
    /// Run the WAN emulator (started by the supervisor).
    #[command(hide = true)]
    Wan {
        /// The lab spec file.
        #[arg(long)]
        spec: PathBuf,
    },
    /// Run the global router and CDN edges (started by the supervisor).
    #[command(hide = true)]
    Router {
        /// The lab spec file.
        #[arg(long)]
        spec: PathBuf,
    },
}

/// Runs a lab subcommand.
pub async fn run(command: LabCommand) -> anyhow::Result<ExitCode> {
    match command {
        LabCommand::Up { config, dir } => {
            let cfg = match &config {
                Some(path) => load_lab_config(path)?,
                None => LabConfig::default(),
            };
            let dir = dir.or_else(|| cfg.dir.clone()).unwrap_or_else(|| PathBuf::from(DEFAULT_LAB_DIR));
            let exe = std::env::current_exe().context("cannot find the xregion executable to start the lab")?;
            xregion_lab::run_foreground(&cfg, &dir, &exe).await?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Status { dir, json } => {
            let status = xregion_lab::status(&dir).await?;
            let all_ok = status.supervisor_alive && status.regions.iter().all(|r| r.health == "ok");
            if json {
                println!("{}", serde_json::to_string_pretty(&status).context("cannot write the status as JSON")?);
            } else {
                let state = if status.supervisor_alive { "running" } else { "NOT running (stale lab.json)" };
                println!("lab in {}: {state}, supervisor pid {}", status.dir.display(), status.supervisor_pid);
                println!("control {}", status.control_url);
                for r in &status.regions {
                    let pid = r.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
                    println!("  {:<16} {:<28} pid {:<8} {}", r.name, r.endpoint, pid, r.health);
                }
            }
            Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        LabCommand::Down { dir } => {
            xregion_lab::down(&dir).await?;
            println!("lab in {} stopped", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Node { spec, region } => {
            xregion_lab::run_node(&spec, &region).await?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Wan { spec } => {
            xregion_lab::run_wan(&spec).await?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Router { spec } => {
            xregion_lab::run_router(&spec).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads the `[lab]` table of a config file (the rest of the file is ignored here) and validates it.
fn load_lab_config(path: &Path) -> anyhow::Result<LabConfig> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        lab: LabConfig,
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // Only [lab] matters here; other tables belong to the full config loader.
    let value: toml::Table = toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let lab = value.get("lab").cloned().unwrap_or(toml::Value::Table(toml::Table::new()));
    let file: File = toml::Value::Table(toml::Table::from_iter([("lab".to_string(), lab)]))
        .try_into()
        .with_context(|| format!("{}: invalid [lab] table", path.display()))?;
    file.lab.validate().with_context(|| format!("{}: invalid [lab] table", path.display()))?;
    Ok(file.lab)
}

/// `xregion wan --links FILE`: the lab's WAN emulator as a standalone proxy, until SIGTERM or Ctrl-C.
pub async fn wan(links: &std::path::Path) -> anyhow::Result<ExitCode> {
    xregion_lab::run_links(links).await?;
    Ok(ExitCode::SUCCESS)
}
