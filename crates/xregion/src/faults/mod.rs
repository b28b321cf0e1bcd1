//! Fault injection: the only way checks (and `xregion fail`, `restore`, `status`) reach faults.
//!
//! Checks never reach into a deployment's internals; they ask a `FaultInjector`. There are three:
//! - `Lab`: the lab's control API (`POST /regions/{name}/fail`, `POST /regions/{name}/restore`, `GET /faults`),
//!   plus each region's lab-only `PUT /lab/health` for health-check faults.
//! - `Command`: the user's shell commands from `[faults.command]`, for a real deployment. The contract they follow
//!   (environment, exit codes, status JSON) is in `docs/fault-injection.md`.
//! - `None`: no way to inject faults; checks that need one are `skipped` with the reason it carries.
//!
//! Every operation is bounded in time: HTTP calls have connect and request timeouts, and a command that runs past
//! `[faults] timeout_s` has its whole process group killed. An unreachable control URL is an error naming it.
//!
//! `lab` and `command` hold the two real injectors; this module holds what they share: the error type, the status
//! report, region lookup and the HTTP client.

mod command;
mod lab;

pub use command::CommandInjector;
pub use lab::{FAIL_TIMEOUT, LabInjector, RESTORE_TIMEOUT, STATUS_TIMEOUT};

use crate::config::{Config, InjectorKind};
use std::time::Duration;
use xregion_model::fault::{ActiveFault, FaultKind, FaultSpec, FaultStatus};
use xregion_model::report::RegionInfo;

/// Why the command injector cannot inject `kind`: no command is configured for it.
pub(crate) fn no_command(kind: FaultKind) -> String {
    match kind {
        FaultKind::Clock => "no command sets a region's clock off: set faults.command.fail_clock (faults.command.fail \
                             does not stand in for it)"
            .into(),
        _ => format!("no command injects {kind} faults: set faults.command.fail or faults.command.fail_{kind}"),
    }
}

/// Connect timeout of every HTTP call an injector makes: the control API and the regions are expected nearby.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a fault operation failed. Messages name the region and the URL or the command.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FaultError {
    /// The deployment has no fault injector (or not for this operation); the reason says what to configure.
    #[error("{0}")]
    Unavailable(String),
    /// The region is not one of the deployment's.
    #[error("unknown region {region:?}; the deployment has {known}")]
    UnknownRegion {
        /// The name asked for.
        region: String,
        /// The known regions, comma-separated.
        known: String,
    },
    /// The fault spec is invalid.
    #[error("invalid fault for {region}: {reason}")]
    InvalidSpec {
        /// The region.
        region: String,
        /// What is wrong.
        reason: String,
    },
    /// No connection could be made to the injector's URL.
    #[error("{action}: {url} is unreachable: {cause}")]
    Unreachable {
        /// What was being done, for example `fail us-east-1`.
        action: String,
        /// The URL.
        url: String,
        /// What the transport said.
        cause: String,
    },
    /// The request was sent but failed or got no answer in time; its outcome is unknown.
    #[error("{action}: {url} did not answer: {cause}")]
    NoAnswer {
        /// What was being done.
        action: String,
        /// The URL.
        url: String,
        /// Timeout or transport error.
        cause: String,
    },
    /// The injector refused the operation.
    #[error("{action}: {url} answered {status} {code}: {message}")]
    Rejected {
        /// What was being done.
        action: String,
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// `ErrorBody::error`, or `-`.
        code: String,
        /// `ErrorBody::message`, or the start of the body.
        message: String,
    },
    /// The injector answered 200 with a body that is not what the API promises.
    #[error("{action}: {url} answered something that is not {expected}: {cause}")]
    BadAnswer {
        /// What was being done.
        action: String,
        /// The URL.
        url: String,
        /// The expected type.
        expected: &'static str,
        /// The decoding error.
        cause: String,
    },
    /// A command could not be started.
    #[error("cannot run the {what} command for {region} (`{command}`): {cause}")]
    Spawn {
        /// Which command (`fail`, `restore`, `status`, `health_down`, `health_up`).
        what: &'static str,
        /// The region, or `every region`.
        region: String,
        /// The command text.
        command: String,
        /// The OS error.
        cause: String,
    },
    /// A command ran past the timeout; its process group was killed.
    #[error("{what} command for {region} timed out after {} s and was killed (`{command}`)", secs(.timeout))]
    CommandTimeout {
        /// Which command.
        what: &'static str,
        /// The region.
        region: String,
        /// The command text.
        command: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// A command exited unsuccessfully.
    #[error("{what} command for {region} {} (`{command}`){}", how(.code, .signal), tail_text(.tail))]
    CommandFailed {
        /// Which command.
        what: &'static str,
        /// The region.
        region: String,
        /// The command text.
        command: String,
        /// The exit code, if it exited.
        code: Option<i32>,
        /// The signal that killed it, if one did.
        signal: Option<i32>,
        /// The last lines of its stderr (or of its stdout when stderr was empty).
        tail: String,
    },
}

/// Seconds for messages: `120`, `1.5`.
fn secs(d: &Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 { format!("{s:.0}") } else { format!("{s:.3}").trim_end_matches('0').to_string() }
}

/// `exited with code 3`, or `was killed by signal 9`.
fn how(code: &Option<i32>, signal: &Option<i32>) -> String {
    match (code, signal) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        (None, None) => "failed".to_string(),
    }
}

fn tail_text(tail: &str) -> String {
    if tail.is_empty() { String::new() } else { format!(":\n{tail}") }
}

impl FaultError {
    /// The CLI's exit code: 2 when the target or the request is wrong (no injector, unknown region, invalid
    /// spec, unreachable injector, a 4xx other than a conflict), 1 when the injector reported a failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            FaultError::Unavailable(_)
            | FaultError::UnknownRegion { .. }
            | FaultError::InvalidSpec { .. }
            | FaultError::Unreachable { .. } => 2,
            FaultError::Rejected { status, .. } if (400..500).contains(status) && *status != 409 => 2,
            _ => 1,
        }
    }
}

/// A status with, for the command injector, the status command's text when it did not print `FaultStatus` JSON.
/// Serialized flat, so `xregion status --json` is a `FaultStatus` with one optional extra field.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StatusReport {
    /// Every region and its fault.
    #[serde(flatten)]
    pub status: FaultStatus,
    /// What the status command printed (or why it failed) when its output was not `FaultStatus` JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_command_output: Option<String>,
}

/// How faults reach the deployment.
#[derive(Debug, Clone)]
pub enum FaultInjector {
    /// The lab's control API.
    Lab(LabInjector),
    /// The user's commands from `[faults.command]`.
    Command(CommandInjector),
    /// No way to inject faults; the reason is shown in skipped checks.
    None(String),
}

impl FaultInjector {
    /// The injector `config` asks for. `regions` are the deployment's regions in config order; `lab_control` is
    /// the control API URL of the lab when the lab is the deployment.
    pub fn from_config(config: &Config, regions: &[RegionInfo], lab_control: Option<&str>) -> FaultInjector {
        let endpoints = regions.iter().map(|r| (r.name.clone(), r.endpoint.clone()));
        match (config.faults.effective_injector(config.deployment.kind), &config.faults.command) {
            (InjectorKind::Lab, _) => FaultInjector::Lab(
                LabInjector::new(lab_control, endpoints).with_client(injector_client(&config.deployment)),
            ),
            (InjectorKind::Command, Some(commands)) => FaultInjector::Command(
                CommandInjector::new(commands.clone(), Duration::from_secs_f64(config.faults.timeout_s), endpoints)
                    .with_client(injector_client(&config.deployment)),
            ),
            (InjectorKind::None, _) if config.faults.injector == Some(InjectorKind::None) => {
                FaultInjector::None("fault injection is off (faults.injector = \"none\" in the config)".into())
            }
            _ => FaultInjector::None(
                "no fault injector is configured: add a [faults] table with injector = \"command\" and a \
                 [faults.command] table (see docs/fault-injection.md)"
                    .into(),
            ),
        }
    }

    /// Why faults cannot be injected, or `None` when they can.
    pub fn unavailable(&self) -> Option<&str> {
        match self {
            FaultInjector::Lab(_) | FaultInjector::Command(_) => None,
            FaultInjector::None(why) => Some(why),
        }
    }

    /// Whether faults of `kind` can be injected; the command injector needs a command for the kind.
    pub fn supports(&self, kind: FaultKind) -> Result<(), String> {
        match self {
            FaultInjector::Lab(_) => Ok(()),
            FaultInjector::Command(c) => c.commands().fail_for(kind).map(|_| ()).ok_or_else(|| no_command(kind)),
            FaultInjector::None(why) => Err(why.clone()),
        }
    }

    /// Whether health-check faults can be injected; the command injector needs `health_down` and `health_up`.
    pub fn supports_health(&self) -> Result<(), String> {
        match self {
            FaultInjector::Lab(_) => Ok(()),
            FaultInjector::Command(c) => match (&c.commands().health_down, &c.commands().health_up) {
                (Some(_), Some(_)) => Ok(()),
                (None, _) => Err("no faults.command.health_down command is configured, so a region's health check \
                                  cannot be made to fail"
                    .into()),
                (_, None) => Err("no faults.command.health_up command is configured, so a region's health check \
                                  cannot be made to pass again"
                    .into()),
            },
            FaultInjector::None(why) => Err(why.clone()),
        }
    }

    /// Injects `spec` into `region`.
    pub async fn fail(&self, region: &str, spec: &FaultSpec) -> Result<ActiveFault, FaultError> {
        match self {
            FaultInjector::Lab(l) => l.fail(region, spec).await,
            FaultInjector::Command(c) => c.fail(region, spec).await,
            FaultInjector::None(why) => Err(FaultError::Unavailable(why.clone())),
        }
    }

    /// Lifts every fault of `region`; restoring a region without a fault is not an error.
    pub async fn restore(&self, region: &str) -> Result<(), FaultError> {
        match self {
            FaultInjector::Lab(l) => l.restore_region(region).await.map(|_| ()),
            FaultInjector::Command(c) => c.restore(region).await,
            FaultInjector::None(why) => Err(FaultError::Unavailable(why.clone())),
        }
    }

    /// Every region's health and fault.
    pub async fn status(&self) -> Result<FaultStatus, FaultError> {
        self.status_report().await.map(|r| r.status)
    }

    /// `status`, plus the status command's own text when it printed something other than `FaultStatus` JSON.
    pub async fn status_report(&self) -> Result<StatusReport, FaultError> {
        match self {
            FaultInjector::Lab(l) => {
                l.status().await.map(|status| StatusReport { status, status_command_output: None })
            }
            FaultInjector::Command(c) => c.status_report().await,
            FaultInjector::None(why) => Err(FaultError::Unavailable(why.clone())),
        }
    }

    /// Makes `region`'s health check fail (`healthy = false`) or pass again, while it keeps serving requests.
    pub async fn set_health(&self, region: &str, healthy: bool) -> Result<(), String> {
        match self {
            FaultInjector::Lab(l) => l.set_health(region, healthy).await,
            FaultInjector::Command(c) => c.set_health(region, healthy).await.map_err(|e| e.to_string()),
            FaultInjector::None(why) => Err(why.clone()),
        }
    }

    /// Lifts every fault this process injected that may still be in force (the command injector's; the lab
    /// lifts its own when it stops). Call it before exiting. Returns the regions that could not be restored.
    pub async fn restore_injected(&self) -> Vec<(String, FaultError)> {
        match self {
            FaultInjector::Command(c) => c.restore_injected().await,
            FaultInjector::Lab(_) | FaultInjector::None(_) => Vec::new(),
        }
    }
}

/// The known regions, for errors.
fn known(endpoints: &[(String, String)]) -> String {
    endpoints.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
}

/// Checks that `region` is one of `endpoints` (when any are known) and returns its endpoint.
fn region_endpoint<'a>(endpoints: &'a [(String, String)], region: &str) -> Result<Option<&'a str>, FaultError> {
    if endpoints.is_empty() {
        return Ok(None);
    }
    endpoints
        .iter()
        .find(|(n, _)| n == region)
        .map(|(_, e)| Some(e.as_str()))
        .ok_or_else(|| FaultError::UnknownRegion { region: region.to_string(), known: known(endpoints) })
}

/// What went wrong with a request, in words (reqwest's own message is only "error sending request"): a
/// timeout, or the transport's cause as `net::transport_problem` words it.
pub(crate) fn root_cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".to_string();
    }
    let host = e.url().and_then(|u| u.host_str()).unwrap_or("the endpoint").to_string();
    crate::net::transport_problem(e, &host, None)
}

/// The HTTP client of an injector (plain, no CA, no token: for tests and deployments without TLS).
fn http_client() -> reqwest::Client {
    crate::net::client_builder(&crate::config::Deployment::default(), crate::net::Role::Anonymous)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(RESTORE_TIMEOUT)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The HTTP client of an injector for `deployment`: TLS trusting its CA, and its admin token (the control API
/// and `/lab/*` need the admin scope).
pub fn injector_client(deployment: &crate::config::Deployment) -> reqwest::Client {
    crate::net::client_builder(deployment, crate::net::Role::Admin)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(RESTORE_TIMEOUT)
        .build()
        .unwrap_or_else(|_| http_client())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the exit code separates a wrong request or target (2) from an injector failure (1).
    #[test]
    fn exit_codes() {
        let rejected = |status| FaultError::Rejected {
            action: "fail a".into(),
            url: "http://x".into(),
            status,
            code: "-".into(),
            message: String::new(),
        };
        assert_eq!(rejected(404).exit_code(), 2);
        assert_eq!(rejected(409).exit_code(), 1);
        assert_eq!(rejected(500).exit_code(), 1);
        assert_eq!(FaultError::Unavailable("x".into()).exit_code(), 2);
        assert_eq!(secs(&Duration::from_secs(120)), "120");
        assert_eq!(secs(&Duration::from_millis(1500)), "1.5");
    }
}
