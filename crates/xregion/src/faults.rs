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

use crate::config::{Config, FaultCommands, InjectorKind};
use crate::drive::clock::now_ms;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use xregion_model::fault::{ActiveFault, FaultKind, FaultSpec, FaultStatus, RegionFaultStatus};
use xregion_model::report::RegionInfo;
use xregion_model::wire::{ErrorBody, Health};

/// Connect timeout of every HTTP call an injector makes: the control API and the regions are expected nearby.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of `POST /regions/{name}/fail`: a complete failure SIGKILLs a process and waits for it to be gone.
pub const FAIL_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of `POST /regions/{name}/restore`: lifting a complete failure restarts the region's process, which
/// may take the lab's readiness timeout (15 s) plus the wait for its replication streams (10 s).
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(45);
/// Timeout of `GET /faults`: the lab checks every region's health, each with its own short timeout.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of a region's `PUT /lab/health`.
const SET_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one `GET /healthz` when the command injector reports health itself.
const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(2);
/// Most stdout bytes kept from one command: enough for a `FaultStatus` of many regions, bounded in memory.
const STDOUT_BYTES_MAX: usize = 1 << 20;
/// Most stderr bytes kept from one command (the tail); errors show its last `STDERR_LINES_SHOWN` lines.
const STDERR_BYTES_MAX: usize = 64 * 1024;
/// Lines of a failed command's stderr shown in its error.
const STDERR_LINES_SHOWN: usize = 20;
/// Longest wait for a killed command to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long the output of an exited command is still read: a background process it left may hold the pipes.
const PIPE_GRACE: Duration = Duration::from_secs(1);
/// Most characters of a status command's text carried in a status report.
const STATUS_TEXT_CHARS_MAX: usize = 4000;

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
            FaultInjector::Command(c) => c.commands().fail_for(kind).map(|_| ()).ok_or_else(|| {
                format!("no command injects {kind} faults: set faults.command.fail or faults.command.fail_{kind}")
            }),
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

/// The innermost cause of a transport error: reqwest's own message is only "error sending request".
pub(crate) fn root_cause(e: &reqwest::Error) -> String {
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    cause
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

/// The lab's injector: its control API, and each region's `/lab/health`.
#[derive(Debug, Clone)]
pub struct LabInjector {
    /// Base URL of the lab's control API (`xregion_lab::ControlServer`); `None` when the lab runs without one,
    /// and then only `set_health` works.
    control_url: Option<String>,
    /// Region name to probe-contract base URL, in config order: `set_health` talks to the region itself.
    endpoints: Vec<(String, String)>,
    /// HTTP client with a connect timeout; every call sets its own request timeout.
    client: reqwest::Client,
}

impl LabInjector {
    /// An injector for the lab whose control API is at `control_url`.
    pub fn new(control_url: Option<&str>, endpoints: impl IntoIterator<Item = (String, String)>) -> LabInjector {
        LabInjector {
            control_url: control_url.map(|u| u.trim_end_matches('/').to_string()),
            endpoints: endpoints.into_iter().map(|(n, e)| (n, e.trim_end_matches('/').to_string())).collect(),
            client: http_client(),
        }
    }

    /// The same injector calling through `client` (TLS and token of the deployment).
    pub fn with_client(mut self, client: reqwest::Client) -> LabInjector {
        self.client = client;
        self
    }

    /// The control API's base URL.
    pub fn control_url(&self) -> Option<&str> {
        self.control_url.as_deref()
    }

    /// `{control}/{segments…}`, with each segment percent-encoded so that a region name stays one segment.
    fn url(&self, segments: &[&str]) -> Result<String, FaultError> {
        let Some(base) = &self.control_url else {
            return Err(FaultError::Unavailable(
                "the lab runs without its control API, so only health-check faults can be injected".into(),
            ));
        };
        let mut url = reqwest::Url::parse(base)
            .map_err(|e| FaultError::Unavailable(format!("the lab's control URL {base:?} is not a URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|_| FaultError::Unavailable(format!("the lab's control URL {base:?} cannot take a path")))?
            .pop_if_empty()
            .extend(segments);
        Ok(url.to_string())
    }

    /// Sends one control request and decodes its answer.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        action: String,
        req: reqwest::RequestBuilder,
        url: &str,
        timeout: Duration,
        expected: &'static str,
    ) -> Result<T, FaultError> {
        let resp = req.timeout(timeout).send().await.map_err(|e| {
            if e.is_connect() {
                FaultError::Unreachable { action: action.clone(), url: url.to_string(), cause: root_cause(&e) }
            } else if e.is_timeout() {
                FaultError::NoAnswer {
                    action: action.clone(),
                    url: url.to_string(),
                    cause: format!("no answer within {} s", secs(&timeout)),
                }
            } else {
                FaultError::NoAnswer { action: action.clone(), url: url.to_string(), cause: root_cause(&e) }
            }
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| FaultError::NoAnswer {
            action: action.clone(),
            url: url.to_string(),
            cause: if e.is_timeout() {
                format!("the answer did not arrive within {} s", secs(&timeout))
            } else {
                root_cause(&e)
            },
        })?;
        if !status.is_success() {
            let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => (b.error, b.message),
                Err(_) => ("-".to_string(), String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()),
            };
            return Err(FaultError::Rejected { action, url: url.to_string(), status: status.as_u16(), code, message });
        }
        serde_json::from_slice(&bytes).map_err(|e| FaultError::BadAnswer {
            action,
            url: url.to_string(),
            expected,
            cause: e.to_string(),
        })
    }

    /// `POST /regions/{region}/fail`.
    pub async fn fail(&self, region: &str, spec: &FaultSpec) -> Result<ActiveFault, FaultError> {
        region_endpoint(&self.endpoints, region)?;
        if let Some(reason) = spec.problem() {
            return Err(FaultError::InvalidSpec { region: region.to_string(), reason });
        }
        let url = self.url(&["regions", region, "fail"])?;
        let req = self.client.post(&url).json(spec);
        self.call(format!("fail {region}"), req, &url, FAIL_TIMEOUT, "an ActiveFault").await
    }

    /// `POST /regions/{region}/restore`: the region's state afterwards.
    pub async fn restore_region(&self, region: &str) -> Result<RegionFaultStatus, FaultError> {
        region_endpoint(&self.endpoints, region)?;
        let url = self.url(&["regions", region, "restore"])?;
        let req = self.client.post(&url);
        self.call(format!("restore {region}"), req, &url, RESTORE_TIMEOUT, "a RegionFaultStatus").await
    }

    /// `GET /faults`.
    pub async fn status(&self) -> Result<FaultStatus, FaultError> {
        let url = self.url(&["faults"])?;
        let req = self.client.get(&url);
        self.call("fault status".to_string(), req, &url, STATUS_TIMEOUT, "a FaultStatus").await
    }

    /// `PUT {endpoint}/lab/health` on the region itself.
    pub async fn set_health(&self, region: &str, healthy: bool) -> Result<(), String> {
        let base = region_endpoint(&self.endpoints, region)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("unknown region {region}"))?;
        let status = if healthy { "ok" } else { "down" };
        let resp = self
            .client
            .put(format!("{base}/lab/health"))
            .json(&serde_json::json!({ "status": status }))
            .timeout(SET_HEALTH_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("cannot set the health of {region} at {base}: {}", root_cause(&e)))?;
        if resp.status().is_success() { Ok(()) } else { Err(format!("{base}/lab/health answered {}", resp.status())) }
    }
}

/// A fault the command injector injected, with a number that tells a later re-injection apart.
#[derive(Debug, Clone)]
struct Injected {
    /// The fault as reported.
    fault: ActiveFault,
    /// Increases with every injection; an auto-restore only lifts the injection it was scheduled for.
    generation: u64,
}

/// State shared by the clones of one command injector.
#[derive(Debug)]
struct CommandShared {
    /// The commands.
    commands: FaultCommands,
    /// Longest one command may run.
    timeout: Duration,
    /// Region name to probe-contract base URL, in config order.
    endpoints: Vec<(String, String)>,
    /// For `GET /healthz` when the status command gives no `FaultStatus`.
    client: reqwest::Client,
    /// Faults this process injected and has not restored, by region.
    injected: std::sync::Mutex<BTreeMap<String, Injected>>,
    /// Pending automatic restores (faults with a duration), by region.
    auto_restores: std::sync::Mutex<BTreeMap<String, tokio::task::JoinHandle<Result<(), FaultError>>>>,
    /// Serializes fail and restore commands, so that a region never has two running at once.
    op_lock: tokio::sync::Mutex<()>,
    /// Source of `Injected::generation`.
    generation: std::sync::atomic::AtomicU64,
}

/// The injector for a real deployment: runs the user's shell commands (`[faults.command]`).
///
/// A fault with a duration is lifted by running the restore command when it has passed, as long as this
/// process runs; `restore_injected` lifts the rest before exit.
#[derive(Debug, Clone)]
pub struct CommandInjector {
    /// Shared by every clone, so that checks running concurrently see the same injected faults.
    shared: Arc<CommandShared>,
}

/// What a command printed, bounded.
struct CommandOutput {
    /// The first `STDOUT_BYTES_MAX` bytes of stdout.
    stdout: Vec<u8>,
}

/// Kills a command's process group when dropped while armed: on a timeout and when the caller's future is
/// cancelled (Ctrl-C), so that no grandchild outlives it.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads all of `r`, keeping the first `max` bytes.
async fn read_head(mut r: impl AsyncRead + Unpin, max: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

/// Reads all of `r`, keeping the last `max` bytes.
async fn read_tail(mut r: impl AsyncRead + Unpin, max: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&chunk[..n]);
                // Trim in steps of `max` so that the copy costs O(1) per byte.
                if kept.len() > 2 * max {
                    kept.drain(..kept.len() - max);
                }
            }
        }
    }
    if kept.len() > max {
        kept.drain(..kept.len() - max);
    }
    kept
}

/// Waits a short while for a pipe reader of an exited command, then gives up on it.
async fn join_reader(mut task: tokio::task::JoinHandle<Vec<u8>>) -> Vec<u8> {
    match tokio::time::timeout(PIPE_GRACE, &mut task).await {
        Ok(Ok(v)) => v,
        _ => {
            task.abort();
            Vec::new()
        }
    }
}

/// The last `n` non-empty lines of `bytes`.
fn last_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The environment a fault command gets for `spec` (empty values when there is none).
fn spec_env(spec: Option<&FaultSpec>) -> Vec<(&'static str, String)> {
    let Some(s) = spec else {
        return [
            "XREGION_FAULT_KIND",
            "XREGION_FAULT_DURATION_S",
            "XREGION_FAULT_DIRECTION",
            "XREGION_FAULT_PEERS",
            "XREGION_FAULT_CLIENTS",
            "XREGION_FAULT_WRITES_FAIL",
            "XREGION_FAULT_ERROR_SHARE",
            "XREGION_FAULT_EXTRA_DELAY_MS",
            "XREGION_FAULT_SPEC",
        ]
        .into_iter()
        .map(|k| (k, String::new()))
        .collect();
    };
    let flag = |b: bool| if b { "1" } else { "0" }.to_string();
    vec![
        ("XREGION_FAULT_KIND", s.kind.name().to_string()),
        ("XREGION_FAULT_DURATION_S", s.duration_ms.map_or_else(String::new, |ms| (ms as f64 / 1000.0).to_string())),
        ("XREGION_FAULT_DIRECTION", s.direction.name().to_string()),
        ("XREGION_FAULT_PEERS", s.peers.join(",")),
        ("XREGION_FAULT_CLIENTS", flag(s.clients)),
        ("XREGION_FAULT_WRITES_FAIL", flag(s.writes_fail)),
        ("XREGION_FAULT_ERROR_SHARE", s.error_share.to_string()),
        ("XREGION_FAULT_EXTRA_DELAY_MS", s.extra_delay_ms.to_string()),
        ("XREGION_FAULT_SPEC", serde_json::to_string(s).unwrap_or_default()),
    ]
}

impl CommandInjector {
    /// An injector running `commands`, each bounded by `timeout`, for the regions in `endpoints` (config order).
    pub fn new(
        commands: FaultCommands,
        timeout: Duration,
        endpoints: impl IntoIterator<Item = (String, String)>,
    ) -> CommandInjector {
        CommandInjector {
            shared: Arc::new(CommandShared {
                commands,
                timeout,
                endpoints: endpoints.into_iter().map(|(n, e)| (n, e.trim_end_matches('/').to_string())).collect(),
                client: http_client(),
                injected: std::sync::Mutex::new(BTreeMap::new()),
                auto_restores: std::sync::Mutex::new(BTreeMap::new()),
                op_lock: tokio::sync::Mutex::new(()),
                generation: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// The same injector calling `/healthz` through `client`; only before it is cloned.
    pub fn with_client(mut self, client: reqwest::Client) -> CommandInjector {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.client = client;
        }
        self
    }

    /// The commands.
    pub fn commands(&self) -> &FaultCommands {
        &self.shared.commands
    }

    fn injected(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Injected>> {
        self.shared.injected.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn auto_restores(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<String, tokio::task::JoinHandle<Result<(), FaultError>>>> {
        self.shared.auto_restores.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `command` with `sh -c` in its own process group, stdin closed, with `env` added to this process's
    /// environment; bounded by the timeout, its output bounded in memory.
    async fn run(
        &self,
        what: &'static str,
        region: &str,
        command: &str,
        env: &[(&'static str, String)],
    ) -> Result<CommandOutput, FaultError> {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let spawn_error =
            |cause: String| FaultError::Spawn { what, region: region.to_string(), command: command.to_string(), cause };
        let mut child = cmd.spawn().map_err(|e| spawn_error(e.to_string()))?;
        // The child leads its own group, so the group id is its pid.
        let mut guard = GroupGuard(child.id().and_then(|p| i32::try_from(p).ok()));
        let stdout = child.stdout.take().map(|s| tokio::spawn(read_head(s, STDOUT_BYTES_MAX)));
        let stderr = child.stderr.take().map(|s| tokio::spawn(read_tail(s, STDERR_BYTES_MAX)));
        let waited = tokio::time::timeout(self.shared.timeout, child.wait()).await;
        let status = match waited {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => return Err(spawn_error(format!("cannot wait for it: {e}"))),
            Err(_) => {
                guard.kill();
                let _ = tokio::time::timeout(KILL_WAIT, child.wait()).await;
                for t in [stdout, stderr].into_iter().flatten() {
                    t.abort();
                }
                return Err(FaultError::CommandTimeout {
                    what,
                    region: region.to_string(),
                    command: command.to_string(),
                    timeout: self.shared.timeout,
                });
            }
        };
        // It exited: whatever it left running in the background is its own business.
        guard.0 = None;
        let stdout = match stdout {
            Some(t) => join_reader(t).await,
            None => Vec::new(),
        };
        let stderr = match stderr {
            Some(t) => join_reader(t).await,
            None => Vec::new(),
        };
        if status.success() {
            return Ok(CommandOutput { stdout });
        }
        let mut tail = last_lines(&stderr, STDERR_LINES_SHOWN);
        if tail.is_empty() {
            tail = last_lines(&stdout, STDERR_LINES_SHOWN);
        }
        Err(FaultError::CommandFailed {
            what,
            region: region.to_string(),
            command: command.to_string(),
            code: status.code(),
            signal: std::os::unix::process::ExitStatusExt::signal(&status),
            tail,
        })
    }

    /// `XREGION_REGION` and `XREGION_ENDPOINT`.
    fn region_env(&self, region: &str) -> Result<Vec<(&'static str, String)>, FaultError> {
        let endpoint = region_endpoint(&self.shared.endpoints, region)?.unwrap_or_default().to_string();
        Ok(vec![("XREGION_REGION", region.to_string()), ("XREGION_ENDPOINT", endpoint)])
    }

    /// Runs the fail command for `spec.kind`; a fault with a duration is restored when it has passed.
    pub async fn fail(&self, region: &str, spec: &FaultSpec) -> Result<ActiveFault, FaultError> {
        let mut env = self.region_env(region)?;
        if let Some(reason) = spec.problem() {
            return Err(FaultError::InvalidSpec { region: region.to_string(), reason });
        }
        let Some(command) = self.shared.commands.fail_for(spec.kind) else {
            return Err(FaultError::Unavailable(format!(
                "no command injects {} faults: set faults.command.fail or faults.command.fail_{}",
                spec.kind, spec.kind
            )));
        };
        env.extend(spec_env(Some(spec)));
        let _op = self.shared.op_lock.lock().await;
        let since_ms = now_ms();
        self.run("fail", region, command, &env).await?;
        let fault = ActiveFault {
            region: region.to_string(),
            spec: spec.clone(),
            since_ms,
            until_ms: spec.duration_ms.map(|d| since_ms + d),
        };
        let generation = self.shared.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.injected().insert(region.to_string(), Injected { fault: fault.clone(), generation });
        let task = spec.duration_ms.map(|d| {
            let me = self.clone();
            let region = region.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(d)).await;
                me.auto_restore(&region, generation).await
            })
        });
        if let Some(old) = match task {
            Some(t) => self.auto_restores().insert(region.to_string(), t),
            None => self.auto_restores().remove(region),
        } {
            old.abort();
        }
        Ok(fault)
    }

    /// Restores `region` when the injection numbered `generation` is still the one in force.
    async fn auto_restore(&self, region: &str, generation: u64) -> Result<(), FaultError> {
        let _op = self.shared.op_lock.lock().await;
        let current = self.injected().get(region).map(|i| i.generation);
        if current != Some(generation) {
            return Ok(());
        }
        self.restore_locked(region).await
    }

    /// Takes the pending automatic restore of `region`, to wait for it (`xregion fail --duration` does).
    pub fn take_auto_restore(&self, region: &str) -> Option<tokio::task::JoinHandle<Result<(), FaultError>>> {
        self.auto_restores().remove(region)
    }

    /// Runs the restore command, with the fault this process injected (if any) in the environment.
    async fn restore_locked(&self, region: &str) -> Result<(), FaultError> {
        let mut env = self.region_env(region)?;
        let Some(command) = &self.shared.commands.restore else {
            return Err(FaultError::Unavailable("no faults.command.restore command is configured".into()));
        };
        let spec = self.injected().get(region).map(|i| i.fault.spec.clone());
        env.extend(spec_env(spec.as_ref()));
        self.run("restore", region, command, &env).await?;
        self.injected().remove(region);
        Ok(())
    }

    /// Runs the restore command for `region` and cancels its pending automatic restore.
    pub async fn restore(&self, region: &str) -> Result<(), FaultError> {
        region_endpoint(&self.shared.endpoints, region)?;
        if let Some(t) = self.auto_restores().remove(region) {
            t.abort();
        }
        let _op = self.shared.op_lock.lock().await;
        self.restore_locked(region).await
    }

    /// Restores every region this process injected a fault into and has not restored.
    pub async fn restore_injected(&self) -> Vec<(String, FaultError)> {
        let regions: Vec<String> = self.injected().keys().cloned().collect();
        let mut failed = Vec::new();
        for r in regions {
            if let Err(e) = self.restore(&r).await {
                failed.push((r, e));
            }
        }
        failed
    }

    /// Faults this process injected that are still in force.
    fn injected_now(&self) -> BTreeMap<String, ActiveFault> {
        let now = now_ms();
        self.injected()
            .iter()
            .filter(|(_, i)| i.fault.until_ms.is_none_or(|u| u > now))
            .map(|(r, i)| (r.clone(), i.fault.clone()))
            .collect()
    }

    /// The status command's `FaultStatus` if it prints one; otherwise each region's `/healthz` plus the faults
    /// this process injected, with the command's text.
    pub async fn status_report(&self) -> Result<StatusReport, FaultError> {
        let mut text = None;
        if let Some(command) = &self.shared.commands.status {
            let regions = self.shared.endpoints.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(",");
            let env =
                [("XREGION_REGION", String::new()), ("XREGION_ENDPOINT", String::new()), ("XREGION_REGIONS", regions)];
            match self.run("status", "every region", command, &env).await {
                Ok(out) => match serde_json::from_slice::<FaultStatus>(&out.stdout) {
                    Ok(status) => return Ok(StatusReport { status, status_command_output: None }),
                    Err(_) => {
                        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
                        text = Some(s.chars().take(STATUS_TEXT_CHARS_MAX).collect());
                    }
                },
                Err(e) => text = Some(e.to_string().chars().take(STATUS_TEXT_CHARS_MAX).collect()),
            }
        }
        let injected = self.injected_now();
        let checks = self.shared.endpoints.iter().map(|(name, endpoint)| {
            let fault = injected.get(name).cloned();
            async move {
                RegionFaultStatus {
                    name: name.clone(),
                    endpoint: endpoint.clone(),
                    pid: None,
                    health: healthz(&self.shared.client, endpoint).await,
                    fault,
                }
            }
        });
        let regions = futures::future::join_all(checks).await;
        Ok(StatusReport { status: FaultStatus { regions }, status_command_output: text })
    }

    /// Runs `health_down` or `health_up`.
    pub async fn set_health(&self, region: &str, healthy: bool) -> Result<(), FaultError> {
        let (what, command) = if healthy {
            ("health_up", &self.shared.commands.health_up)
        } else {
            ("health_down", &self.shared.commands.health_down)
        };
        let Some(command) = command else {
            return Err(FaultError::Unavailable(format!(
                "no faults.command.{what} command is configured, so health-check faults cannot be injected"
            )));
        };
        let mut env = self.region_env(region)?;
        env.push(("XREGION_HEALTH", if healthy { "ok" } else { "down" }.to_string()));
        self.run(what, region, command, &env).await.map(|_| ())
    }
}

/// A region's health through the probe contract: the `status` of `GET /healthz` (also on a non-2xx answer that
/// carries one), or why the check failed.
async fn healthz(client: &reqwest::Client, endpoint: &str) -> String {
    let resp = match client.get(format!("{endpoint}/healthz")).timeout(HEALTHZ_TIMEOUT).send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return format!("no answer within {} s", secs(&HEALTHZ_TIMEOUT)),
        Err(e) => return format!("unreachable: {}", root_cause(&e)),
    };
    let code = resp.status();
    match resp.bytes().await.ok().and_then(|b| serde_json::from_slice::<Health>(&b).ok()) {
        Some(h) if code.is_success() => h.status,
        Some(h) => format!("{} (http {})", h.status, code.as_u16()),
        None => format!("http {}", code.as_u16()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: bounded readers keep the right end of a long output.
    #[tokio::test]
    async fn readers_keep_head_and_tail() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(read_head(&data[..], 1000).await, data[..1000]);
        assert_eq!(read_tail(&data[..], 1000).await, data[data.len() - 1000..]);
        assert_eq!(last_lines(b"a\nb\n\nc\nd\n", 2), "c\nd");
    }

    /// Goal: every fault variable is set, empty when there is no fault, and numbers are plain.
    #[test]
    fn spec_env_is_complete() {
        let spec = FaultSpec { duration_ms: Some(1500), error_share: 0.5, ..FaultSpec::new(FaultKind::Partial) };
        let env: BTreeMap<_, _> = spec_env(Some(&spec)).into_iter().collect();
        assert_eq!(env["XREGION_FAULT_DURATION_S"], "1.5");
        assert_eq!(env["XREGION_FAULT_ERROR_SHARE"], "0.5");
        assert_eq!(env["XREGION_FAULT_EXTRA_DELAY_MS"], "0");
        let empty = spec_env(None);
        assert_eq!(empty.len(), env.len());
        assert!(empty.iter().all(|(_, v)| v.is_empty()));
    }

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

    /// Goal: an unreachable control URL is an error naming it, quickly, and an unknown region is refused
    /// before any request.
    #[tokio::test]
    async fn unreachable_control_url_is_named() {
        // Port 9 on loopback: nothing listens there, so the connection is refused at once.
        let l = LabInjector::new(Some("http://127.0.0.1:9"), [("a".to_string(), "http://127.0.0.1:9".to_string())]);
        let e = l.fail("a", &FaultSpec::new(FaultKind::Complete)).await.unwrap_err();
        assert!(matches!(e, FaultError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("http://127.0.0.1:9/regions/a/fail"), "{e}");
        let e = l.restore_region("b").await.unwrap_err();
        assert!(matches!(e, FaultError::UnknownRegion { .. }), "{e}");
    }
}
