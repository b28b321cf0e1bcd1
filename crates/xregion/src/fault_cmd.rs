//! `xregion fail`, `xregion restore` and `xregion status`: faults by hand, through the same `FaultInjector` the
//! checks use.
//!
//! The target is the deployment of `--config` when it is an http deployment (its `[faults]` injector), and
//! otherwise the lab that `xregion lab up` runs in `--dir`. Exit codes: 0 done, 1 the injector reported a
//! failure, 2 a usage, config or target error.

use crate::config::{self, DeploymentKind};
use crate::faults::{FaultError, FaultInjector, LabInjector, StatusReport};
use crate::lab_cmd::{DEFAULT_LAB_DIR, running_lab};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use xregion_model::fault::{ActiveFault, Direction, FaultKind, FaultSpec};

/// Where the fault goes.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Config file: an http deployment is faulted through its [faults] injector; a lab config names the lab
    /// directory.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Directory of the lab started with `xregion lab up` (default: ./xregion-lab, or lab.dir from the config).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

impl TargetArgs {
    /// The same flags, for a command line printed as a hint.
    fn flags(&self) -> String {
        let mut s = String::new();
        if let Some(c) = &self.config {
            s.push_str(&format!(" --config {}", c.display()));
        }
        if let Some(d) = &self.dir {
            s.push_str(&format!(" --dir {}", d.display()));
        }
        s
    }
}

/// The kinds, for clap.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    /// The region is gone (in the lab: its process is killed).
    Complete,
    /// The region stays up but its store fails writes and/or a share of requests fails.
    Partial,
    /// The region is cut off from its peers (and with --clients, from clients).
    Network,
    /// The region's links gain --extra-delay-ms of one-way latency.
    Latency,
}

impl From<KindArg> for FaultKind {
    fn from(k: KindArg) -> FaultKind {
        match k {
            KindArg::Complete => FaultKind::Complete,
            KindArg::Partial => FaultKind::Partial,
            KindArg::Network => FaultKind::Network,
            KindArg::Latency => FaultKind::Latency,
        }
    }
}

/// The directions, for clap.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DirectionArg {
    /// Both ways.
    Both,
    /// What the region sends to its peers.
    Outbound,
    /// What the peers send to the region.
    Inbound,
}

impl From<DirectionArg> for Direction {
    fn from(d: DirectionArg) -> Direction {
        match d {
            DirectionArg::Both => Direction::Both,
            DirectionArg::Outbound => Direction::Outbound,
            DirectionArg::Inbound => Direction::Inbound,
        }
    }
}

/// A duration such as `30s`, `500ms` or `2m`, above zero.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e}; write for example 30s, 500ms or 2m"))?;
    if d.is_zero() {
        return Err("the duration must be above 0; leave --duration out to keep the fault until restore".into());
    }
    Ok(d)
}

/// Arguments of `xregion fail`.
#[derive(Debug, clap::Args)]
pub struct FailArgs {
    /// The region to fail.
    pub region: String,
    /// The kind of failure.
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// Restore by itself after this long (30s, 500ms, 2m); default: until `xregion restore`.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Network and latency: which way the fault acts.
    #[arg(long, value_enum, default_value = "both")]
    pub direction: DirectionArg,
    /// Network and latency: only the links to and from these peers (comma-separated); default: every peer.
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Network: cut the region off from clients too.
    #[arg(long)]
    pub clients: bool,
    /// Partial: this share (0 to 1) of the region's requests gets 503.
    #[arg(long, default_value_t = 0.0)]
    pub error_share: f64,
    /// Partial: keep writes working (then --error-share must be above 0).
    #[arg(long)]
    pub no_writes_fail: bool,
    /// Latency: one-way delay added to each link, in milliseconds.
    #[arg(long, default_value_t = 0.0)]
    pub extra_delay_ms: f64,
    /// The target.
    #[command(flatten)]
    pub target: TargetArgs,
}

impl FailArgs {
    /// The fault these arguments describe.
    pub fn spec(&self) -> FaultSpec {
        FaultSpec {
            kind: self.kind.into(),
            duration_ms: self.duration.map(|d| d.as_millis().max(1) as u64),
            direction: self.direction.into(),
            peers: self.peers.iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect(),
            clients: self.clients,
            writes_fail: !self.no_writes_fail,
            error_share: self.error_share,
            extra_delay_ms: self.extra_delay_ms,
        }
    }
}

/// Arguments of `xregion restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The region to restore.
    pub region: String,
    /// The target.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Arguments of `xregion status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print the status as JSON (a `FaultStatus`).
    #[arg(long)]
    pub json: bool,
    /// The target.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Prints `message` as an error and returns exit code 2.
fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// Prints a fault error and returns its exit code.
fn fault_error(e: &FaultError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(e.exit_code())
}

/// The injector of the target, or the message that explains why there is none.
fn target(t: &TargetArgs) -> Result<FaultInjector, String> {
    let config = match &t.config {
        Some(path) => Some(config::load(Some(path), &config::process_env()).map_err(|e| e.to_string())?),
        None => None,
    };
    if let Some(c) = &config
        && c.deployment.kind == DeploymentKind::Http
    {
        let regions: Vec<_> = c
            .deployment
            .regions
            .iter()
            .map(|r| xregion_model::report::RegionInfo { name: r.name.clone(), endpoint: r.endpoint.clone() })
            .collect();
        let injector = FaultInjector::from_config(c, &regions, None);
        if let Some(why) = injector.unavailable() {
            let path = t.config.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
            return Err(format!("{path} describes an http deployment, but {why}"));
        }
        return Ok(injector);
    }
    let dir = t
        .dir
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.lab.dir.clone()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_LAB_DIR));
    let lab = running_lab(&dir)?;
    let endpoints = lab.regions.into_iter().map(|r| (r.name, r.endpoint));
    // The lab's CA and admin token, from its directory (a lab without them is an older, plain one).
    let mut c = config.unwrap_or_default();
    if xregion_lab::pki::Pki::ca_path(&dir).exists() {
        crate::cli::fill_lab_security(&mut c, &dir)
            .map_err(|e| format!("cannot read the lab's CA or tokens: {e:#}"))?;
    }
    let client = crate::faults::injector_client(&c.deployment);
    Ok(FaultInjector::Lab(LabInjector::new(Some(&lab.control_url), endpoints).with_client(client)))
}

/// `HH:MM:SS.mmm UTC` of a time in ms since the Unix epoch.
pub fn clock(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    let s = humantime::format_rfc3339_millis(t).to_string();
    // 2024-05-01T12:00:01.123Z
    s.get(11..23).map_or(s.clone(), |hms| format!("{hms} UTC"))
}

/// `complete failure`, `network failure (outbound, peers eu-west-1)`.
fn what(spec: &FaultSpec) -> String {
    let plain = FaultSpec { duration_ms: None, ..spec.clone() }.describe();
    let kind = spec.kind.name();
    format!("{kind} failure{}", plain.strip_prefix(kind).unwrap_or(""))
}

/// `xregion fail`.
pub async fn fail(args: FailArgs) -> anyhow::Result<ExitCode> {
    let spec = args.spec();
    if let Some(problem) = spec.problem() {
        return Ok(usage_error(&format!("invalid fault for {}: {problem}", args.region)));
    }
    let injector = match target(&args.target) {
        Ok(i) => i,
        Err(e) => return Ok(usage_error(&e)),
    };
    if let Err(why) = injector.supports(spec.kind) {
        return Ok(usage_error(&why));
    }
    let fault = match injector.fail(&args.region, &spec).await {
        Ok(f) => f,
        Err(e) => return Ok(fault_error(&e)),
    };
    let restore_hint = format!("`xregion restore {}{}`", args.region, args.target.flags());
    let injected = format!("{}: {} injected at {}", fault.region, what(&fault.spec), clock(fault.since_ms));
    match (&injector, fault.until_ms) {
        (FaultInjector::Command(c), Some(until)) => {
            // Nothing else would run the restore command: stay until it has.
            println!("{injected}; xregion restores it at {} (Ctrl-C restores it now)", clock(until));
            wait_and_restore(c, &fault).await
        }
        (_, Some(until)) => {
            println!("{injected}; it restores by itself at {} (or restore now with {restore_hint})", clock(until));
            Ok(ExitCode::SUCCESS)
        }
        (_, None) => {
            println!("{injected}; restore with {restore_hint}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Waits for the command injector's automatic restore of `fault`; Ctrl-C restores at once.
async fn wait_and_restore(c: &crate::faults::CommandInjector, fault: &ActiveFault) -> anyhow::Result<ExitCode> {
    let Some(mut task) = c.take_auto_restore(&fault.region) else {
        return Ok(ExitCode::SUCCESS);
    };
    let result = tokio::select! {
        r = &mut task => r.unwrap_or_else(|e| Err(FaultError::Unavailable(format!("the restore task failed: {e}")))),
        _ = tokio::signal::ctrl_c() => {
            task.abort();
            c.restore(&fault.region).await
        }
    };
    match result {
        Ok(()) => {
            println!("{}: restored at {}", fault.region, clock(crate::faults::now_ms()));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fault_error(&e)),
    }
}

/// `xregion restore`.
pub async fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let injector = match target(&args.target) {
        Ok(i) => i,
        Err(e) => return Ok(usage_error(&e)),
    };
    let health = match &injector {
        FaultInjector::Lab(l) => match l.restore_region(&args.region).await {
            Ok(r) => Some(r.health),
            Err(e) => return Ok(fault_error(&e)),
        },
        _ => match injector.restore(&args.region).await {
            Ok(()) => None,
            Err(e) => return Ok(fault_error(&e)),
        },
    };
    let health = health.map_or_else(String::new, |h| format!(" (health {h})"));
    println!("{}: restored at {}{health}", args.region, clock(crate::faults::now_ms()));
    Ok(ExitCode::SUCCESS)
}

/// `xregion status`.
pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let injector = match target(&args.target) {
        Ok(i) => i,
        Err(e) => return Ok(usage_error(&e)),
    };
    let report = match injector.status_report().await {
        Ok(r) => r,
        Err(e) => return Ok(fault_error(&e)),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The status as a table.
fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    out.push_str(&format!("{:<16} {:<28} {:<8} {:<12} fault\n", "region", "endpoint", "pid", "health"));
    for r in &report.status.regions {
        let pid = r.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
        let fault = match &r.fault {
            None => "-".to_string(),
            Some(f) => {
                let mut s = format!("{} since {}", what(&f.spec), clock(f.since_ms));
                if let Some(u) = f.until_ms {
                    s.push_str(&format!(", until {}", clock(u)));
                }
                s
            }
        };
        out.push_str(&format!("{:<16} {:<28} {:<8} {:<12} {fault}\n", r.name, r.endpoint, pid, r.health));
    }
    if let Some(text) = &report.status_command_output {
        out.push_str("status command:\n");
        for line in text.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the printed fault reads naturally and times are wall-clock UTC with milliseconds.
    #[test]
    fn messages_read_well() {
        assert_eq!(what(&FaultSpec::new(FaultKind::Complete)), "complete failure");
        let n =
            FaultSpec { direction: Direction::Outbound, duration_ms: Some(5000), ..FaultSpec::new(FaultKind::Network) };
        assert_eq!(what(&n), "network failure (outbound)");
        assert_eq!(clock(43_201_123), "12:00:01.123 UTC");
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    }
}
