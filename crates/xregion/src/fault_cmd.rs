//! `xregion fail`, `xregion restore` and `xregion status`: faults by hand, through the same `FaultInjector` the
//! checks use.
//!
//! The target is the deployment of `--config` when it is an http deployment (its `[faults]` injector), and
//! otherwise the lab that `xregion lab up` runs in `--dir`. Exit codes: 0 done, 1 the injector reported a
//! failure, 2 a usage, config or target error.

use crate::drive::clock::{clock, now_ms};
use crate::error::{Error, Result};
use crate::faults::{FaultError, FaultInjector, StatusReport};
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
    /// The region's clock runs --clock-offset-ms off.
    Clock,
}

impl From<KindArg> for FaultKind {
    fn from(k: KindArg) -> FaultKind {
        match k {
            KindArg::Complete => FaultKind::Complete,
            KindArg::Partial => FaultKind::Partial,
            KindArg::Network => FaultKind::Network,
            KindArg::Latency => FaultKind::Latency,
            KindArg::Clock => FaultKind::Clock,
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
    /// Clock: how far to set the region's clock off, in milliseconds (400 ahead, -400 behind).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub clock_offset_ms: i64,
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
            clock_offset_ms: self.clock_offset_ms,
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

/// The injector of the target flags.
fn target(t: &TargetArgs) -> Result<FaultInjector> {
    crate::target::injector_for(t.config.as_deref(), t.dir.as_deref())
}

/// `complete failure`, `network failure (outbound, peers eu-west-1)`.
fn what(spec: &FaultSpec) -> String {
    let plain = FaultSpec { duration_ms: None, ..spec.clone() }.describe();
    let kind = spec.kind.name();
    format!("{kind} failure{}", plain.strip_prefix(kind).unwrap_or(""))
}

/// `xregion fail`.
pub async fn fail(args: FailArgs) -> Result<ExitCode> {
    let spec = args.spec();
    if let Some(problem) = spec.problem() {
        return Err(Error::Usage(format!("invalid fault for {}: {problem}", args.region)));
    }
    let injector = target(&args.target)?;
    injector.supports(spec.kind).map_err(Error::Usage)?;
    let fault = injector.fail(&args.region, &spec).await?;
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
async fn wait_and_restore(c: &crate::faults::CommandInjector, fault: &ActiveFault) -> Result<ExitCode> {
    let Some(mut task) = c.take_auto_restore(&fault.region) else {
        return Ok(ExitCode::SUCCESS);
    };
    let result = tokio::select! {
        r = &mut task => r.unwrap_or_else(|e| Err(FaultError::Unavailable(format!("the restore task failed: {e}")))),
        _ = crate::target::interrupted() => {
            task.abort();
            c.restore(&fault.region).await
        }
    };
    result?;
    println!("{}: restored at {}", fault.region, clock(now_ms()));
    Ok(ExitCode::SUCCESS)
}

/// `xregion restore`.
pub async fn restore(args: RestoreArgs) -> Result<ExitCode> {
    let injector = target(&args.target)?;
    let health = match &injector {
        FaultInjector::Lab(l) => {
            let health = l.restore_region(&args.region).await?.health;
            // The lab restarts a region that is down and waits for it; one still down is no restore.
            if health.starts_with("down") {
                return Err(Error::Target(format!(
                    "{} is still {health} after the restore; see its node.log in the lab directory, then run \
                     `xregion restore {}{}` again",
                    args.region,
                    args.region,
                    args.target.flags()
                )));
            }
            Some(health)
        }
        _ => {
            injector.restore(&args.region).await?;
            None
        }
    };
    let health = health.map_or_else(String::new, |h| format!(" (health {h})"));
    println!("{}: restored at {}{health}", args.region, clock(now_ms()));
    Ok(ExitCode::SUCCESS)
}

/// `xregion status`.
pub async fn status(args: StatusArgs) -> Result<ExitCode> {
    let injector = target(&args.target)?;
    let report = injector.status_report().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| Error::Other(e.into()))?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The status as a table.
fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    // A down region's health says how and when its process ended, wider than `ok`: the column fits the widest.
    let hw = report.status.regions.iter().map(|r| r.health.chars().count()).fold(12, usize::max);
    out.push_str(&format!("{:<16} {:<28} {:<8} {:<hw$} fault\n", "region", "endpoint", "pid", "health"));
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
        out.push_str(&format!("{:<16} {:<28} {:<8} {:<hw$} {fault}\n", r.name, r.endpoint, pid, r.health));
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
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    }

    /// Goal: a crashed region's long health keeps the fault column aligned; method: render two regions and
    /// compare where the fault column starts on every line.
    #[test]
    fn status_columns_fit_a_crash() {
        use xregion_model::fault::{FaultStatus, RegionFaultStatus};
        let region = |name: &str, pid, health: &str| RegionFaultStatus {
            name: name.into(),
            endpoint: "https://127.0.1.1:4000".into(),
            pid,
            health: health.into(),
            fault: None,
        };
        let crashed = "down (killed by signal 9 at 07:31:02 UTC)";
        let report = StatusReport {
            status: FaultStatus {
                regions: vec![region("us-east-1", Some(42), "ok"), region("us-west-2", None, crashed)],
            },
            status_command_output: None,
        };
        let text = render(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[2].contains(&format!(" -        {crashed} -")), "{text}");
        let fault_at: Vec<usize> = lines.iter().map(|l| l.rfind(" -").or_else(|| l.rfind(" fault")).unwrap()).collect();
        assert!(fault_at.windows(2).all(|w| w[0] == w[1]), "{text}");
    }
}
